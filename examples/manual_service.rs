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

impl Dependencies for ManualService {
    fn providers() -> enoki::ProviderSet {
        enoki::ProviderSet::new().with("config", Config::default())
    }

    fn inject(providers: &enoki::ProviderSet, worker: &WorkerCtx) -> Self {
        ManualService {
            config: providers.get(0, worker),
        }
    }
}

// ===== what #[service(name = "manual_service")] generates =====

const ADD_PARAMS: &[Param] = &[
    Param {
        name: "a",
        required: true,
    },
    Param {
        name: "b",
        required: true,
    },
];
const GREET_PARAMS: &[Param] = &[
    Param {
        name: "name",
        required: true,
    },
    Param {
        name: "greeting",
        required: false,
    },
];

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
                    let args = Args::bind("add", payload, ADD_PARAMS)?;
                    self.add(args.get(0)?, args.get(1)?).await.into_outcome()
                }
                "greet" => {
                    let args = Args::bind("greet", payload, GREET_PARAMS)?;
                    self.greet(args.get(0)?, args.get(1)?).await.into_outcome()
                }
                "whoami" => {
                    Args::bind("whoami", payload, &[])?;
                    self.whoami(ctx).await.into_outcome()
                }
                other => Err(RemoteError::method_not_found(other)),
            }
        })
    }
}

/// The typed client `#[service]` generates: one async method per `#[rpc]`.
#[derive(Debug, Clone)]
pub struct ManualServiceClient {
    rpc: ClusterRpc,
}

impl ManualServiceClient {
    /// A client calling through `rpc`.
    pub fn new(rpc: impl AsRef<ClusterRpc>) -> Self {
        ManualServiceClient {
            rpc: rpc.as_ref().clone(),
        }
    }

    /// Calls `manual_service.add`.
    pub async fn add(&self, a: i64, b: i64) -> enoki::Result<i64> {
        self.rpc.call_typed("manual_service", "add", &(a, b)).await
    }

    /// Calls `manual_service.greet`.
    pub async fn greet(&self, name: String, greeting: Option<String>) -> enoki::Result<String> {
        self.rpc
            .call_typed("manual_service", "greet", &(name, greeting))
            .await
    }

    /// Calls `manual_service.whoami`.
    pub async fn whoami(&self) -> enoki::Result<serde_json::Value> {
        self.rpc
            .call_typed("manual_service", "whoami", &[(); 0])
            .await
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    enoki::cli::main([enoki::service::<ManualService>()]).await
}
