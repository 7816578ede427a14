//! `use enoki::prelude::*;`: what a service module needs.

pub use crate::client::{ClusterRpc, EventPublisher};
pub use crate::config::Settings;
pub use crate::container_ctx::ContainerCtx;
pub use crate::context::WorkerCtx;
pub use crate::dependency::{
    Config, Dependencies, DependencyProvider, Dispatcher, EventDispatcher, RpcProxy,
};
pub use crate::error::RemoteError;
pub use crate::runner::ServiceRunner;
pub use crate::service::{HandlerType, Service};

#[cfg(feature = "macros")]
pub use enoki_macros::{Dependencies, entrypoint, event_handler, http, rpc, service, timer};
