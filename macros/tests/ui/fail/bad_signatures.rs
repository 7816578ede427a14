use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

#[service(name = "greeter")]
impl Greeter {
    #[rpc]
    #[timer(interval = 1)]
    async fn twice(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    #[rpc]
    async fn generic<T>(&self, value: T) -> Result<(), RemoteError> {
        let _ = value;
        Ok(())
    }

    #[rpc]
    async fn pattern(&self, (a, b): (u8, u8)) -> Result<u8, RemoteError> {
        Ok(a + b)
    }

    #[rpc]
    async fn borrowed(&self, name: &str) -> Result<(), RemoteError> {
        let _ = name;
        Ok(())
    }

    #[rpc]
    async fn aliased(&self) -> MyResult {
        Ok(())
    }

    #[event_handler("payments", "paid")]
    async fn two_payloads(&self, a: u8, b: u8) -> Result<(), RemoteError> {
        let _ = (a, b);
        Ok(())
    }

    #[timer(interval = 1)]
    async fn with_param(&self, a: u8, ctx: &mut WorkerCtx) -> Result<(), RemoteError> {
        let _ = (a, ctx);
        Ok(())
    }

    #[event_handler("payments", handler_type = everyone, colour = "red")]
    async fn bad_args(&self) -> Result<(), RemoteError> {
        Ok(())
    }
}

type MyResult = Result<(), RemoteError>;

fn main() {}
