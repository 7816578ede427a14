//! The `RpcProxy` provider: a [`ClusterRpc`] bound to each worker.

use tokio::sync::OnceCell;

use crate::client::ClusterRpc;
use crate::container_ctx::ContainerCtx;
use crate::context::WorkerCtx;
use crate::dependency::DependencyProvider;
use crate::error::Result;

/// Provides a [`ClusterRpc`] bound to the worker, so calls carry the
/// worker's context data and call-id stack (nameko's `RpcProxy` /
/// `ClusterRpc`). All `RpcProxy` fields of a container share one reply
/// queue, `rpc.reply-<service>-<uuid>`.
///
/// ```
/// use enoki::prelude::*;
///
/// #[derive(Dependencies)]
/// struct Frontdesk {
///     #[dependency(RpcProxy)]
///     rpc: ClusterRpc,
/// }
///
/// #[service(name = "frontdesk")]
/// impl Frontdesk {
///     #[rpc]
///     async fn welcome(&self, name: String) -> Result<serde_json::Value, RemoteError> {
///         // Dynamic call; `GreeterClient::new(&self.rpc)` gives a typed one.
///         Ok(self.rpc.service("greeter").call("hello", serde_json::json!([name])).await?)
///     }
/// }
/// ```
#[derive(Debug, Default)]
pub struct RpcProxy {
    client: OnceCell<ClusterRpc>,
}

impl DependencyProvider for RpcProxy {
    type Dependency = ClusterRpc;

    async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        let client = ctx.rpc().await?;
        let _ = self.client.set(client);
        Ok(())
    }

    fn get_dependency(&self, worker: &WorkerCtx) -> ClusterRpc {
        self.client
            .get()
            .expect("RpcProxy::setup runs before any worker")
            .bind(worker)
    }
}
