//! # enoki
//!
//! nameko-style microservices for Rust. Services are plain types whose
//! methods are *entrypoints* (RPC methods, event handlers, timers); they
//! talk to each other only through a broker, with RPC (request/reply) and
//! events (publish/subscribe), and they are **wire-compatible with nameko
//! 2.x**: a Python nameko service can call an enoki service and the reverse.
//!
//! ```
//! use enoki::prelude::*;
//! use serde_json::json;
//!
//! #[derive(Dependencies)]
//! struct Greeter {
//!     #[dependency(EventDispatcher)]
//!     dispatch: Dispatcher,
//! }
//!
//! #[service(name = "greeter")]
//! impl Greeter {
//!     #[rpc]
//!     async fn hello(&self, name: String) -> Result<String, RemoteError> {
//!         self.dispatch.emit("greeted", json!({ "name": name })).await?;
//!         Ok(format!("Hello, {name}!"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
//! // Everything in one process, on the embedded broker.
//! let transport = enoki::transport::MemoryTransport::new();
//! let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
//! runner.add(enoki::service::<Greeter>());
//! runner.start().await?;
//!
//! let rpc = ClusterRpc::connect(transport, &Settings::new()).await?;
//! let greeter = GreeterClient::new(&rpc);
//! assert_eq!(greeter.hello("Ann".into()).await?, "Hello, Ann!");
//! runner.stop().await;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - [`service`](mod@service): the [`Service`] trait the `#[service]` macro implements;
//! - [`dependency`]: [`DependencyProvider`] and the built-in providers;
//! - [`entrypoint`]: RPC, event and timer entrypoints;
//! - [`container`] and [`runner`]: lifecycle, workers, `max_workers`;
//! - [`context`]: [`WorkerCtx`], the call-id stack and context data;
//! - [`message`]: the wire envelope and nameko's names;
//! - [`transport`]: the broker seam and the embedded memory broker;
//! - [`client`]: [`ClusterRpc`] and [`EventPublisher`];
//! - [`config`]: nameko-style YAML settings;
//! - [`testing`]: nameko.testing for Rust;
//! - [`cli`]: the `enoki` command line, for your own binaries too;
//! - `gateway`: the HTTP/WebSocket gateway (routes → RPC, events → browsers).
//!
//! ## Features
//! - `macros` (default): `#[service]`, `#[derive(Dependencies)]`;
//! - `testing` (default): [`testing`];
//! - `cli` (default): [`cli`] and the `enoki` binary;
//! - `gateway` (default): the HTTP/WebSocket gateway, `enoki::gateway`.

pub mod client;
pub mod config;
pub mod container;
pub mod context;
pub mod dependency;
pub mod entrypoint;
pub mod error;
pub mod message;
pub mod prelude;
pub mod runner;
pub mod service;
pub mod transport;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(inline)]
pub use crate::client::{ClusterRpc, EventPublisher};
#[doc(inline)]
pub use crate::config::Settings;
#[doc(inline)]
pub use crate::container::{ServiceContainer, ServiceDef};
#[doc(inline)]
pub use crate::context::{ContainerCtx, WorkerCtx};
#[doc(inline)]
pub use crate::dependency::{
    Config, Dependencies, DependencyProvider, Dispatcher, EventDispatcher, ProviderSet, RpcProxy,
};
#[doc(inline)]
pub use crate::error::{Error, RemoteError, Result};
#[doc(inline)]
pub use crate::runner::ServiceRunner;
#[doc(inline)]
pub use crate::service::{HandlerType, Service};

#[cfg(feature = "macros")]
#[doc(inline)]
pub use enoki_macros::{Dependencies, event_handler, rpc, service, timer};

/// A service definition for a container or runner: `enoki::service::<Greeter>()`.
pub fn service<S: Service>() -> ServiceDef {
    ServiceDef::new::<S>()
}

/// What generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::dependency::assert_provides;
    pub use crate::service::{
        Args, EntrypointSpec, EventHandlerSpec, IntoOutcome, Outcome, Param, TimerSpec,
        event_payload,
    };
    pub use futures::future::BoxFuture;
    pub use serde;
    pub use serde_json;

    /// Boxes an entrypoint future.
    pub fn boxed<'a, F>(future: F) -> BoxFuture<'a, crate::service::Outcome>
    where
        F: std::future::Future<Output = crate::service::Outcome> + Send + 'a,
    {
        Box::pin(future)
    }

    /// `null`, the result of methods that return `()`.
    pub fn unit() -> crate::service::Outcome {
        Ok(serde_json::value::RawValue::NULL.to_owned())
    }
}
