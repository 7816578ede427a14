//! The macro form of `examples/manual_service.rs`: its expansion,
//! `manual_service.expanded.rs`, is what the hand-written twin mirrors, and
//! `tests/twins.rs` checks that both behave the same.

use enoki::prelude::*;

/// The service struct: its fields are its dependencies.
#[derive(Debug, Dependencies)]
pub struct ManualService {
    #[dependency(Config)]
    config: Settings,
}

#[service(name = "manual_service")]
impl ManualService {
    /// Adds two numbers.
    #[rpc]
    pub async fn add(&self, a: i64, b: i64) -> Result<i64, RemoteError> {
        a.checked_add(b)
            .ok_or_else(|| RemoteError::new("OverflowError", "integer overflow"))
    }

    /// Greets someone, with an optional greeting.
    #[rpc]
    pub async fn greet(
        &self,
        name: String,
        greeting: Option<String>,
    ) -> Result<String, RemoteError> {
        let greeting = greeting.unwrap_or_else(|| "Hello".to_owned());
        Ok(format!("{greeting}, {name}!"))
    }

    /// Who called, as the worker context tells: call-id stack, context data
    /// and the RPC exchange from the config.
    #[rpc]
    pub async fn whoami(&self, ctx: &WorkerCtx) -> Result<serde_json::Value, RemoteError> {
        Ok(serde_json::json!({
            "call_id_stack": ctx.call_id_stack(),
            "context_data": ctx.context_data(),
            "rpc_exchange": self.config.rpc_exchange(),
        }))
    }
}
