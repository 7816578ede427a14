use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

#[service(name = "greeter")]
impl Greeter {
    #[rpc]
    async fn hello(&self, name: String) -> String {
        name
    }

    #[timer(interval = 1)]
    async fn tick(&self) -> u32 {
        1
    }

    #[event_handler("payments", "paid")]
    async fn on_paid(&self) {}
}

fn main() {}
