//! `greeter`: the smallest useful service. `hello(name)` answers
//! `"Hello, {name}!"` and dispatches a `greeted` event with `{"name": name}`.
//!
//! Run with: `cargo run --example greeter`
//! (add `-- run --broker amqp://guest:guest@localhost` to serve it on RabbitMQ),
//! or everything at once: `cargo run`.

use enoki::prelude::*;
use serde_json::json;

/// Greets people and tells everyone it did.
#[derive(Debug, Dependencies)]
pub struct Greeter {
    #[dependency(EventDispatcher)]
    dispatch: Dispatcher,
}

#[service(name = "greeter")]
impl Greeter {
    /// Returns `"Hello, {name}!"` and dispatches `greeted`.
    #[rpc]
    pub async fn hello(&self, name: String) -> Result<String, RemoteError> {
        self.dispatch
            .emit("greeted", json!({ "name": name }))
            .await?;
        Ok(format!("Hello, {name}!"))
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    enoki::cli::main([enoki::service::<Greeter>()]).await
}
