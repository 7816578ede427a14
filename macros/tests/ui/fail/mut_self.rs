use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

#[service(name = "greeter")]
impl Greeter {
    #[rpc]
    async fn hello(&mut self, name: String) -> Result<String, RemoteError> {
        Ok(name)
    }

    #[timer(interval = 1)]
    async fn tick() -> Result<(), RemoteError> {
        Ok(())
    }
}

fn main() {}
