//! A service's description of itself: what `enoki shell` completes, and
//! what any client can ask an enoki service for.
//!
//! Every enoki service with RPC methods answers the reserved method
//! [`DESCRIBE_METHOD`] (`__describe__`) with a [`ServiceDescription`], without
//! running a worker (so it counts against no `max_workers` and needs no
//! dependency). A method of the service's own with that name takes
//! precedence. Python nameko services lack it: they answer
//! `MethodNotFound`, which tells a client the service exists but not what
//! it offers.
//!
//! ```
//! use enoki::prelude::*;
//! use enoki::describe::{DESCRIBE_METHOD, ServiceDescription};
//!
//! #[derive(Dependencies)]
//! struct Greeter;
//!
//! #[service(name = "greeter")]
//! impl Greeter {
//!     #[rpc]
//!     async fn hello(&self, name: String) -> Result<String, RemoteError> {
//!         Ok(format!("Hello, {name}!"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
//! let transport = enoki::transport::MemoryTransport::new();
//! let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
//! runner.add(enoki::service::<Greeter>());
//! runner.start().await?;
//! let rpc = ClusterRpc::connect(transport, &Settings::new()).await?;
//! let reply = rpc.call("greeter", DESCRIBE_METHOD, serde_json::json!([]), Default::default()).await?;
//! let description: ServiceDescription = serde_json::from_value(reply)?;
//! assert_eq!(description.rpc, ["hello"]);
//! runner.stop().await;
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use crate::service::{EntrypointKind, EntrypointSpec, HandlerType};

/// The reserved RPC method every enoki service answers with its
/// [`ServiceDescription`].
pub const DESCRIBE_METHOD: &str = "__describe__";

/// What a service offers: its RPC methods, event handlers and timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDescription {
    /// The service name.
    pub service: String,
    /// What serves it, e.g. `enoki 0.1.0`.
    pub framework: String,
    /// The RPC methods, in declaration order.
    pub rpc: Vec<String>,
    /// The event handlers.
    #[serde(default)]
    pub events: Vec<EventDescription>,
    /// The timers.
    #[serde(default)]
    pub timers: Vec<TimerDescription>,
    /// The `#[http]` entrypoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpDescription>,
}

/// One `#[http]` entrypoint, as [`ServiceDescription`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpDescription {
    /// The handler method.
    pub method: String,
    /// The HTTP method.
    pub http_method: String,
    /// The path.
    pub path: String,
}

/// One event handler, as [`ServiceDescription`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDescription {
    /// The handler method.
    pub method: String,
    /// The service whose events it handles.
    pub source_service: String,
    /// The event type (or pattern).
    pub event_type: String,
    /// nameko's `handler_type`: `service_pool`, `singleton` or `broadcast`.
    pub handler_type: String,
}

/// One timer, as [`ServiceDescription`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerDescription {
    /// The timer method.
    pub method: String,
    /// Seconds between runs.
    pub interval: f64,
}

impl ServiceDescription {
    /// The description of service `name` with these entrypoints.
    pub fn of(name: &str, entrypoints: &[EntrypointSpec]) -> Self {
        let mut description = ServiceDescription {
            service: name.to_owned(),
            framework: concat!("enoki ", env!("CARGO_PKG_VERSION")).to_owned(),
            rpc: Vec::new(),
            events: Vec::new(),
            timers: Vec::new(),
            http: Vec::new(),
        };
        for spec in entrypoints {
            match &spec.kind {
                EntrypointKind::Rpc => description.rpc.push(spec.method.to_owned()),
                EntrypointKind::Event(event) => description.events.push(EventDescription {
                    method: spec.method.to_owned(),
                    source_service: event.source_service.to_owned(),
                    event_type: event.event_type.to_owned(),
                    handler_type: match event.handler_type {
                        HandlerType::ServicePool => "service_pool",
                        HandlerType::Singleton => "singleton",
                        HandlerType::Broadcast => "broadcast",
                    }
                    .to_owned(),
                }),
                EntrypointKind::Timer(timer) => description.timers.push(TimerDescription {
                    method: spec.method.to_owned(),
                    interval: timer.interval.as_secs_f64(),
                }),
                EntrypointKind::Http(http) => description.http.push(HttpDescription {
                    method: spec.method.to_owned(),
                    http_method: http.method.to_owned(),
                    path: http.path.to_owned(),
                }),
                EntrypointKind::Custom => {}
            }
        }
        description
    }
}
