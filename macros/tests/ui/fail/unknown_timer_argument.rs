use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

#[service(name = "greeter")]
impl Greeter {
    #[timer(intervall = 5)]
    async fn tick(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    #[timer(interval = 0)]
    async fn never(&self) -> Result<(), RemoteError> {
        Ok(())
    }
}

fn main() {}
