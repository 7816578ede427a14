use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

#[service(name = "greeter")]
impl Greeter {
    #[event_handler("payments", "paid", handler_type = broadcast, reliable_delivery = true)]
    async fn on_paid(&self, payment: serde_json::Value) -> Result<(), RemoteError> {
        let _ = payment;
        Ok(())
    }
}

fn main() {}
