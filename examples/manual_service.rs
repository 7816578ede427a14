//! `manual_service`: a service written without macros, the readable twin of
//! what `#[derive(Dependencies)]` and `#[service]` generate.
//!
//! Run with: `cargo run --example manual_service -- run`
//! Then, from another shell: `cargo run -- call manual_service.add '[2, 3]'`
//! (with `--broker amqp://guest:guest@localhost` on both for RabbitMQ).
//!
//! Everything below is what you would otherwise get from:
//!
//! ```ignore
//! #[derive(Dependencies)]
//! pub struct ManualService {
//!     #[dependency(Config)]
//!     config: Settings,
//! }
//!
//! #[service(name = "manual_service")]
//! impl ManualService {
//!     #[rpc]
//!     async fn add(&self, a: i64, b: i64) -> Result<i64, RemoteError> { Ok(a + b) }
//!
//!     #[rpc]
//!     async fn greet(&self, name: String, greeting: Option<String>) -> Result<String, RemoteError> { ... }
//!
//!     #[rpc]
//!     async fn whoami(&self, ctx: &WorkerCtx) -> Result<serde_json::Value, RemoteError> { ... }
//! }
//! ```

use enoki::args::{Args, Param};
use enoki::outcome::{IntoOutcome, Outcome};
use enoki::prelude::*;
use enoki::service::EntrypointSpec;
use futures::future::BoxFuture;

/// The service struct: its fields are its dependencies.
#[derive(Debug)]
pub struct ManualService {
    config: Settings,
}

// ===== the service's own code: ordinary methods =====

impl ManualService {
    /// Adds two numbers.
    pub async fn add(&self, a: i64, b: i64) -> Result<i64, RemoteError> {
        a.checked_add(b)
            .ok_or_else(|| RemoteError::new("OverflowError", "integer overflow"))
    }

    /// Greets someone, with an optional greeting.
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
    pub async fn whoami(&self, ctx: &WorkerCtx) -> Result<serde_json::Value, RemoteError> {
        Ok(serde_json::json!({
            "call_id_stack": ctx.call_id_stack(),
            "context_data": ctx.context_data(),
            "rpc_exchange": self.config.rpc_exchange(),
        }))
    }
}

// ===== what #[derive(Dependencies)] generates =====
//
// (`tests/expand/manual_service.expanded.rs` is the macros' own expansion of
// the same service; `tests/twins.rs` checks that the two behave the same.)

impl Dependencies for ManualService {
    fn providers() -> enoki::ProviderSet {
        // (The macro also checks, at compile time, that each provider gives
        // its field's type.)
        enoki::ProviderSet::new().with("config", Config::default())
    }

    fn inject(providers: &enoki::ProviderSet, worker: &WorkerCtx) -> Self {
        ManualService {
            config: providers.get(0, worker),
        }
    }
}

// ===== what #[service(name = "manual_service")] generates =====

impl Service for ManualService {
    const NAME: &'static str = "manual_service";

    fn entrypoints() -> Vec<EntrypointSpec> {
        vec![
            EntrypointSpec::rpc("add"),
            EntrypointSpec::rpc("greet"),
            EntrypointSpec::rpc("whoami"),
        ]
    }

    fn dispatch<'a>(
        &'a self,
        method: &'a str,
        payload: &'a [u8],
        ctx: &'a WorkerCtx,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match method {
                "add" => {
                    const PARAMS: &[Param] = &[
                        Param {
                            name: "a",
                            required: true,
                        },
                        Param {
                            name: "b",
                            required: true,
                        },
                    ];
                    let args = Args::bind("add", payload, PARAMS)?;
                    let returned = self.add(args.get(0)?, args.get(1)?).await;
                    returned.into_outcome()
                }
                "greet" => {
                    const PARAMS: &[Param] = &[
                        Param {
                            name: "name",
                            required: true,
                        },
                        Param {
                            name: "greeting",
                            required: false,
                        },
                    ];
                    let args = Args::bind("greet", payload, PARAMS)?;
                    let returned = self.greet(args.get(0)?, args.get(1)?).await;
                    returned.into_outcome()
                }
                "whoami" => {
                    const PARAMS: &[Param] = &[];
                    Args::bind("whoami", payload, PARAMS)?;
                    let returned = self.whoami(ctx).await;
                    returned.into_outcome()
                }
                other => Err(RemoteError::method_not_found(other)),
            }
        })
    }
}

/// A typed client of the `manual_service` service: one method per `#[rpc]`
/// of `ManualService`.
///
/// Generated by `#[service]`.
#[derive(Debug, Clone)]
pub struct ManualServiceClient {
    rpc: ClusterRpc,
}

impl ManualServiceClient {
    /// The service name, `manual_service`.
    pub const SERVICE: &'static str = "manual_service";

    /// A client calling through `rpc`.
    pub fn new(rpc: impl AsRef<ClusterRpc>) -> Self {
        ManualServiceClient {
            rpc: rpc.as_ref().clone(),
        }
    }

    /// Adds two numbers.
    ///
    /// Calls `manual_service.add`.
    pub async fn add(&self, a: i64, b: i64) -> enoki::Result<i64> {
        self.rpc.call_typed(Self::SERVICE, "add", &(a, b)).await
    }

    /// Greets someone, with an optional greeting.
    ///
    /// Calls `manual_service.greet`.
    pub async fn greet(&self, name: String, greeting: Option<String>) -> enoki::Result<String> {
        self.rpc
            .call_typed(Self::SERVICE, "greet", &(name, greeting))
            .await
    }

    /// Who called, as the worker context tells: call-id stack, context data
    /// and the RPC exchange from the config.
    ///
    /// Calls `manual_service.whoami`.
    pub async fn whoami(&self) -> enoki::Result<serde_json::Value> {
        self.rpc.call_typed(Self::SERVICE, "whoami", &[(); 0]).await
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    enoki::cli::main([enoki::service::<ManualService>()]).await
}
