use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

#[service(name = "greeter")]
impl Greeter {
    #[rpc]
    fn hello(&self, name: String) -> Result<String, RemoteError> {
        Ok(name)
    }
}

fn main() {}
