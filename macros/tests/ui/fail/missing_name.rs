use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

#[service]
impl Greeter {
    #[rpc]
    async fn hello(&self) -> Result<(), RemoteError> {
        Ok(())
    }
}

#[derive(Dependencies)]
struct Other;

#[service("other")]
impl Other {}

fn main() {}
