use enoki::prelude::*;

struct Greeter;

impl Greeter {
    #[rpc]
    async fn hello(&self) -> Result<(), RemoteError> {
        Ok(())
    }
}

#[timer(interval = 1)]
async fn tick() {}

fn main() {}
