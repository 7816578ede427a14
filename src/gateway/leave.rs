//! [`Leave`]: what a WebSocket session or an SSE stream holds while it
//! lives, so that however it ends (the client goes, the gateway shuts
//! down, a panic) its subscriptions leave the event bridge and its count
//! leaves the gauge.

use std::sync::Arc;

use super::bridge::{ClientQueue, EventBridge};
use super::metrics::GatewayMetrics;
use super::state::GatewayState;

/// Which gauge a client counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    WebSocket,
    Sse,
}

/// Counts a client in while alive; removes it when dropped.
pub(crate) struct Leave {
    bridge: EventBridge,
    client: Arc<ClientQueue>,
    metrics: GatewayMetrics,
    kind: Kind,
}

impl Leave {
    pub(crate) fn new(state: &GatewayState, client: &Arc<ClientQueue>, kind: Kind) -> Self {
        let leave = Leave {
            bridge: state.bridge().clone(),
            client: client.clone(),
            metrics: state.metrics().clone(),
            kind,
        };
        leave.count(1.0);
        leave
    }

    fn count(&self, delta: f64) {
        match self.kind {
            Kind::WebSocket => self.metrics.ws_clients(delta),
            Kind::Sse => self.metrics.sse_clients(delta),
        }
    }
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.count(-1.0);
        let (bridge, client) = (self.bridge.clone(), self.client.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { bridge.remove(&client).await });
        }
    }
}
