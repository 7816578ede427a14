//! The gateway's HTTP server: [`crate::web::serve`] with the limits of
//! the gateway's config, counting refused connections in its metrics.

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

use super::config::GatewayConfig;
use super::metrics::GatewayMetrics;
pub use crate::web::serve::ServeLimits;

impl ServeLimits {
    /// The limits of a gateway config.
    pub fn from_config(config: &GatewayConfig) -> Self {
        ServeLimits {
            header_timeout: config.header_timeout(),
            max_connections: config.max_connections,
            ..ServeLimits::default()
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves (see
/// [`crate::web::serve::serve`]); refused connections are counted in
/// `metrics`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    metrics: Option<GatewayMetrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let on_refused = move || {
        if let Some(metrics) = &metrics {
            metrics.connection_refused();
        }
    };
    crate::web::serve::serve(listener, app, limits, on_refused, shutdown).await
}
