use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

#[service(name = "greeter")]
impl Greeter {
    #[rpc]
    async fn new(&self) -> Result<(), RemoteError> {
        Ok(())
    }
}

fn main() {}
