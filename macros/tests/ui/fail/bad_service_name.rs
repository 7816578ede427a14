use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

#[service(name = "greeter.v2")]
impl Greeter {
    #[rpc]
    async fn hello(&self) -> Result<(), RemoteError> {
        Ok(())
    }
}

#[derive(Dependencies)]
struct Other;

#[service(name = "")]
impl Other {}

#[derive(Dependencies)]
struct Third;

#[service(name = "a b", version = 2)]
impl Third {}

fn main() {}
