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
//! ## Where each concept lives
//!
//! | nameko | enoki | module |
//! |---|---|---|
//! | service class, `name` | [`Service`] (what `#[service]` implements), its entrypoint table | [`service`](mod@service) |
//! | `@rpc`, `@event_handler`, `@timer`, your own `Entrypoint` | [`Entrypoint`](entrypoint::Entrypoint), [`RpcEntrypoint`](entrypoint::rpc::RpcEntrypoint), [`EventEntrypoint`](entrypoint::event::EventEntrypoint), [`TimerEntrypoint`](entrypoint::timer::TimerEntrypoint) | [`entrypoint`](mod@entrypoint) |
//! | `container.spawn_worker`, `max_workers` | [`WorkerPool`](worker::WorkerPool) | [`worker`] |
//! | `ServiceContainer` | [`ServiceContainer`], [`ServiceDef`] | [`container`] |
//! | an extension's `self.container` | [`ContainerCtx`] | [`container_ctx`] |
//! | `ServiceRunner` | [`ServiceRunner`] | [`runner`] |
//! | `DependencyProvider`, `Config`, `RpcProxy`, `EventDispatcher` | [`DependencyProvider`], [`Dependencies`], the built-in providers | [`dependency`] |
//! | `WorkerContext`, `call_id_stack`, context data | [`WorkerCtx`], [`ContextData`](context::ContextData) | [`context`] |
//! | `getcallargs`, `IncorrectSignature` | [`Args`](args::Args): `args`/`kwargs` bound to a signature | [`args`] |
//! | a worker's result | [`Outcome`](outcome::Outcome), [`IntoOutcome`](outcome::IntoOutcome) | [`outcome`] |
//! | kombu message, serializer | [`Message`](message::Message), request and reply bodies | [`message`] |
//! | `rpc-<service>`, `<service>.events`, `evt-…` | nameko's naming rules | [`names`] |
//! | kombu connection, exchanges, queues | [`Transport`](transport::Transport), [`MemoryTransport`](transport::MemoryTransport), AMQP (lapin) | [`transport`] |
//! | `ClusterRpcProxy`, standalone `event_dispatcher` | [`ClusterRpc`], [`EventPublisher`] | [`client`] |
//! | `config.yaml`, `${VAR:default}` | [`Settings`], the table of config keys | [`config`] |
//! | exceptions, `serialize(exc)` | [`Error`], [`RemoteError`] | [`error`] |
//! | (nameko has none; nameko-prometheus) | per service and entrypoint: workers, outcomes, latencies, redeliveries, dead letters, queue depths, in Prometheus' format: [`ServiceMetrics`](service_metrics::ServiceMetrics) | [`service_metrics`] |
//! | (nameko-opentelemetry) | W3C trace context on every request and event (`nameko.traceparent` and `traceparent`), spans for HTTP requests, publishes and workers, OTLP export (feature `otel`) | [`telemetry`] |
//! | (nameko-opentelemetry's `traceparent` context data) | the W3C trace context a message carries, [`TraceContext`](trace_context::TraceContext): a field in process, `nameko.traceparent` and `traceparent` headers on the wire | [`trace_context`] |
//! | `nameko run` handling SIGTERM | [`shutdown_signal`](shutdown::shutdown_signal) | [`shutdown`] |
//! | `nameko.testing` | `worker_factory`, `entrypoint_hook`, … | `testing` (feature `testing`) |
//! | (nameko has none) | a service's description of its entrypoints, `__describe__` | [`describe`] |
//! | (nameko has none) | each RPC method's parameters and result and each event handler's payload as JSON Schema, from the Rust types: [`MethodSchema`](schema::MethodSchema) | [`schema`] |
//! | (nameko has none; nameko-asyncapi) | the AsyncAPI 3.0 document of a set of services: channels, operations, messages; `/asyncapi.json`, `enoki asyncapi` | [`asyncapi`] |
//! | nameko-amqp-retry's backoff | a failed `requeue_on_error` event waits in `<queue>.retry.<ms>`, then goes to `<queue>.dlq`: [`Backoff`](entrypoint::retry::Backoff); crash loops stopped on classic queues: [`RedeliveryLimit`](entrypoint::poison::RedeliveryLimit) | [`entrypoint`](mod@entrypoint) |
//! | (nameko-amqp-retry's dead letters) | `<queue>.dlq` listed and replayed: [`dlq::list`], [`dlq::replay`]; `x-death` read and written by [`transport::death`] | [`dlq`] |
//! | nameko-sqlalchemy's `Database`, `DB_URIS` | `Database` (a pool per container, a transaction per worker), `Db` | `db` (feature `db`) |
//! | `nameko run / show-config` | the `enoki` command line | `cli` (feature `cli`) |
//! | `nameko shell`, `n.rpc` | `enoki shell`: `rpc.greeter.hello("Ann")` | `shell` (feature `cli`) |
//! | `@http`, `WebServer` | `#[http]` entrypoints, one web server per process, the JSON errors they share with the gateway | `web` (feature `http`), `entrypoint::http` |
//! | (a web gateway) | routes → RPC, events → browsers | `gateway` (feature `gateway`) |
//! | | `use enoki::prelude::*` | [`prelude`] |
//!
//! `tests/architecture.rs` checks that no module imports one that imports
//! it back, and that this table names every module.
//!
//! ## Features
//! - `macros` (default): `#[service]`, `#[derive(Dependencies)]`;
//! - `testing` (default): `enoki::testing`;
//! - `cli` (default): `enoki::cli` and the `enoki` binary;
//! - `amqp` (default): the RabbitMQ transport;
//! - `http` (default): `#[http]` entrypoints and `enoki::web` (axum);
//! - `gateway` (default): the HTTP/WebSocket gateway, `enoki::gateway`.

pub mod args;
pub mod asyncapi;
pub mod client;
pub mod config;
pub mod container;
pub mod container_ctx;
pub mod context;
pub mod dependency;
pub mod describe;
pub mod dlq;
pub mod entrypoint;
pub mod error;
pub mod message;
pub mod names;
pub mod outcome;
pub mod prelude;
pub mod runner;
pub mod schema;
pub mod service;
pub mod service_metrics;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;
pub mod transport;
pub mod worker;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "cli")]
pub mod shell;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "http")]
pub mod web;

/// axum, as `#[http]` methods use it: `enoki::axum::extract::Path`.
#[cfg(feature = "http")]
pub use axum;

/// schemars, whose `JsonSchema` derive gives a message its schema
/// (feature `schemars`).
#[cfg(feature = "schemars")]
pub use schemars;

#[doc(inline)]
pub use crate::client::{ClusterRpc, EventPublisher};
#[doc(inline)]
pub use crate::config::Settings;
#[doc(inline)]
pub use crate::container::{ServiceContainer, ServiceDef};
#[doc(inline)]
pub use crate::container_ctx::ContainerCtx;
#[doc(inline)]
pub use crate::context::WorkerCtx;
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
pub use enoki_macros::{Dependencies, entrypoint, event_handler, http, rpc, service, timer};

/// A service definition for a container or runner: `enoki::service::<Greeter>()`.
pub fn service<S: Service>() -> ServiceDef {
    ServiceDef::new::<S>()
}

/// Entry points for the fuzz targets in `fuzz/` and the budget bench
/// (`benches/budget.rs`): decoders that are internal otherwise. Not public API.
#[cfg(feature = "amqp")]
#[doc(hidden)]
pub mod __fuzz {
    /// An AMQP headers table as enoki reads it.
    pub fn headers_from_table(table: &lapin::types::FieldTable) -> crate::message::Headers {
        crate::transport::amqp::codec::from_table(table).into()
    }

    /// A W3C `traceparent` as enoki reads it: trace id, parent id and the
    /// sampled flag, or `None`.
    pub fn traceparent(text: &str) -> Option<([u8; 16], [u8; 8], bool)> {
        crate::trace_context::parse_traceparent(text)
            .map(|parsed| (parsed.trace_id, parsed.parent_id, parsed.sampled))
    }

    /// Headers as an AMQP table, as enoki writes them.
    pub fn table_from_headers(
        headers: &crate::message::Headers,
    ) -> crate::Result<lapin::types::FieldTable> {
        crate::transport::amqp::codec::to_table(headers)
    }
}

/// What generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::args::{Args, Param, event_payload};
    pub use crate::dependency::assert_provides;
    pub use crate::outcome::{IntoOutcome, Outcome, unit};
    pub use crate::schema::{
        MethodSchema, Probed, SchemaProbe, ViaAny, ViaJsonSchema, any as schema_any,
    };
    pub use crate::service::{CronSpec, EntrypointSpec, EventHandlerSpec, TimerSpec};
    pub use futures::future::BoxFuture;
    pub use serde;
    pub use serde_json;

    pub use crate::service::HttpSpec;

    /// axum's extractors and responses, as `#[http]` methods use them.
    #[cfg(feature = "http")]
    pub mod http {
        pub use crate::web::{Request, Response};
        use axum::extract::{FromRequest, FromRequestParts};
        pub use axum::response::IntoResponse;

        /// One extractor from the request head; its rejection is the
        /// response.
        pub async fn from_parts<T: FromRequestParts<()>>(
            parts: &mut axum::http::request::Parts,
        ) -> Result<T, Response> {
            match T::from_request_parts(parts, &()).await {
                Ok(value) => Ok(value),
                Err(rejected) => Err(crate::web::error::rejection(rejected.into_response()).await),
            }
        }

        /// The last extractor, which may take the body.
        pub async fn from_request<T: FromRequest<(), M>, M>(
            parts: axum::http::request::Parts,
            body: axum::body::Body,
        ) -> Result<T, Response> {
            match T::from_request(Request::from_parts(parts, body), &()).await {
                Ok(value) => Ok(value),
                Err(rejected) => Err(crate::web::error::rejection(rejected.into_response()).await),
            }
        }

        /// Splits a request into its head and body.
        pub fn split(request: Request) -> (axum::http::request::Parts, axum::body::Body) {
            request.into_parts()
        }

        /// Boxes an `#[http]` dispatch future.
        pub fn boxed<'a, F>(future: F) -> super::BoxFuture<'a, Response>
        where
            F: std::future::Future<Output = Response> + Send + 'a,
        {
            Box::pin(future)
        }

        /// 404 `MethodNotFound`: a method that is not an `#[http]` one.
        pub fn method_not_found(method: &str) -> Response {
            crate::RemoteError::method_not_found(method).into_response()
        }
    }

    /// Boxes an entrypoint future.
    pub fn boxed<'a, F>(future: F) -> BoxFuture<'a, Outcome>
    where
        F: std::future::Future<Output = Outcome> + Send + 'a,
    {
        Box::pin(future)
    }
}
