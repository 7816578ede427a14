//! [`ContainerCtx`]: what a container shares with its dependency providers
//! and entrypoints (nameko's `container` attribute of an extension): the
//! service name, the settings, the transport, and one RPC client per
//! container.

use std::sync::Arc;

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::client::ClusterRpc;
use crate::config::Settings;
use crate::error::Result;
use crate::service_metrics::{QueueMetrics, ServiceMetrics};
use crate::transport::Transport;

/// What a container shares with its providers and entrypoints: the service
/// name, the settings, the transport, and the container's RPC client (one
/// reply queue per container, as nameko's shared `ReplyListener`). Cheap to
/// clone.
///
/// ```
/// use enoki::{ContainerCtx, Settings};
///
/// let ctx = ContainerCtx::new("greeter", Settings::new(), enoki::transport::MemoryTransport::new());
/// assert_eq!(ctx.service_name(), "greeter");
/// assert_eq!(ctx.transport().kind(), "memory");
/// assert_eq!(ctx.settings().max_workers(), 10);
/// ```
#[derive(Clone, Debug)]
pub struct ContainerCtx {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service_name: String,
    settings: Settings,
    transport: Arc<dyn Transport>,
    rpc: OnceCell<ClusterRpc>,
    /// Shared with every worker's context (an `Arc` clone, where cloning
    /// the token itself takes a lock).
    kill: Arc<CancellationToken>,
    metrics: std::sync::OnceLock<ServiceMetrics>,
    #[cfg(feature = "http")]
    web: std::sync::OnceLock<crate::web::WebServer>,
}

impl ContainerCtx {
    /// A context for the container of `service_name`.
    pub fn new(service_name: &str, settings: Settings, transport: Arc<dyn Transport>) -> Self {
        ContainerCtx {
            inner: Arc::new(Inner {
                service_name: service_name.to_owned(),
                settings,
                transport,
                rpc: OnceCell::new(),
                kill: Arc::new(CancellationToken::new()),
                metrics: std::sync::OnceLock::new(),
                #[cfg(feature = "http")]
                web: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The service name.
    pub fn service_name(&self) -> &str {
        &self.inner.service_name
    }

    /// The container's settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The transport the container runs on.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The container's RPC client, created (with its reply queue
    /// `rpc.reply-<service>-<uuid>`) on first use and shared by every
    /// provider of the container; the container closes it when it stops.
    pub async fn rpc(&self) -> Result<ClusterRpc> {
        self.inner
            .rpc
            .get_or_try_init(|| {
                ClusterRpc::builder(self.inner.transport.clone())
                    .owner(&self.inner.service_name)
                    .settings(&self.inner.settings)
                    .connect()
            })
            .await
            .cloned()
    }

    /// The web server of the container's `#[http]` entrypoints: the one
    /// set with [`set_web_server`](Self::set_web_server), else the
    /// process's server at `WEB_SERVER_ADDRESS`
    /// ([`WebServer::shared`](crate::web::WebServer::shared)).
    #[cfg(feature = "http")]
    pub fn web_server(&self) -> &crate::web::WebServer {
        self.inner
            .web
            .get_or_init(|| crate::web::WebServer::shared(self.inner.settings.web_server_address()))
    }

    /// Sets the web server of the container's `#[http]` entrypoints
    /// (before it starts); `false` if one was already chosen.
    #[cfg(feature = "http")]
    pub fn set_web_server(&self, server: crate::web::WebServer) -> bool {
        self.inner.web.set(server).is_ok()
    }

    /// The registry the container records its metrics in, if it was given
    /// one ([`ServiceRunner::metrics`](crate::ServiceRunner::metrics)).
    pub fn metrics(&self) -> Option<&ServiceMetrics> {
        self.inner.metrics.get()
    }

    /// Sets the metrics registry (before the container starts); `false` if
    /// one was already set.
    pub fn set_metrics(&self, metrics: ServiceMetrics) -> bool {
        self.inner.metrics.set(metrics).is_ok()
    }

    /// The counters of the work queue `queue` of an entrypoint, when the
    /// container records metrics.
    pub fn queue_metrics(&self, queue: &str) -> Option<QueueMetrics> {
        self.metrics()
            .map(|metrics| metrics.queue(&self.inner.service_name, queue, &self.inner.transport))
    }

    /// Cancelled when the container is killed; workers see it through
    /// [`WorkerCtx::cancelled`](crate::WorkerCtx::cancelled).
    pub(crate) fn kill_token(&self) -> &Arc<CancellationToken> {
        &self.inner.kill
    }

    /// Closes the container's RPC client, if it was created.
    pub(crate) async fn close_rpc(&self) {
        if let Some(rpc) = self.inner.rpc.get() {
            rpc.close().await;
        }
    }
}
