//! `/metrics`: the gateway's Prometheus metrics, on a recorder of its own
//! (not the process-global one, so several gateways, e.g. in tests, never
//! mix their numbers).
//!
//! - `enoki_gateway_http_requests_total{route, method, status}`
//! - `enoki_gateway_rpc_duration_seconds{service, method, outcome}` (histogram)
//! - `enoki_gateway_ws_clients`, `enoki_gateway_sse_clients` (gauges)
//! - `enoki_gateway_events_received_total`: events taken from the broker
//! - `enoki_gateway_events_forwarded_total`: event deliveries queued to clients
//! - `enoki_gateway_events_dropped_total`: deliveries lost to full client queues
//! - `enoki_gateway_slow_clients_disconnected_total`
//! - `enoki_gateway_requests_shed_total`: requests refused by the concurrency limit
//! - `enoki_gateway_requests_rate_limited_total`: requests refused by a rate limit
//! - `enoki_gateway_connections_refused_total`: connections over `max_connections`
//!
//! Label values are bounded: `route` is a declared route (or `(static)`),
//! `method` an HTTP method of RFC 9110 (others count as `other`), and the
//! RPC labels name services and methods the gateway knows or that answered
//! (made-up names count as `other`); past [`MAX_RPC_SERIES`] label sets,
//! new ones count as `other` too.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use parking_lot::RwLock;

const METADATA: Metadata<'static> = Metadata::new("enoki::gateway", Level::INFO, None);

/// Latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The most `(service, method, outcome)` label sets of the RPC histogram;
/// calls beyond count under `other`.
pub const MAX_RPC_SERIES: usize = 1024;

/// The label for whatever is not a known name.
pub const OTHER: &str = "other";

/// The HTTP methods counted by name (RFC 9110); others are `other`.
fn http_method_label(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => {
            method
        }
        _ => OTHER,
    }
}

/// The gateway's metrics. Cheap to clone.
#[derive(Clone)]
pub struct GatewayMetrics(Arc<Inner>);

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    hasher: foldhash::fast::RandomState,
    http: RwLock<HashMap<u64, Counter>>,
    rpc: RwLock<HashMap<u64, Histogram>>,
    /// WebSocket clients connected.
    pub(crate) ws_clients: Gauge,
    /// SSE clients connected.
    pub(crate) sse_clients: Gauge,
    /// Events taken from the broker.
    pub(crate) events_received: Counter,
    /// Deliveries queued to clients.
    pub(crate) events_forwarded: Counter,
    /// Deliveries dropped.
    pub(crate) events_dropped: Counter,
    /// Slow clients disconnected.
    pub(crate) slow_disconnects: Counter,
    /// Requests shed.
    pub(crate) shed: Counter,
    /// Requests refused by a rate limit.
    pub(crate) rate_limited: Counter,
    /// Connections closed at once for being over the limit.
    pub(crate) connections_refused: Counter,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayMetrics")
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    /// A fresh recorder with every metric registered.
    pub fn new() -> Self {
        let recorder = crate::service_metrics::recorder(BUCKETS);
        let handle = recorder.handle();
        let counter =
            |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &METADATA);
        let gauge =
            |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &METADATA);
        let inner = Inner {
            ws_clients: gauge("enoki_gateway_ws_clients"),
            sse_clients: gauge("enoki_gateway_sse_clients"),
            events_received: counter("enoki_gateway_events_received_total"),
            events_forwarded: counter("enoki_gateway_events_forwarded_total"),
            events_dropped: counter("enoki_gateway_events_dropped_total"),
            slow_disconnects: counter("enoki_gateway_slow_clients_disconnected_total"),
            shed: counter("enoki_gateway_requests_shed_total"),
            rate_limited: counter("enoki_gateway_requests_rate_limited_total"),
            connections_refused: counter("enoki_gateway_connections_refused_total"),
            hasher: foldhash::fast::RandomState::default(),
            http: RwLock::default(),
            rpc: RwLock::default(),
            handle,
            recorder,
        };
        // Zero values show up at once.
        inner.ws_clients.set(0.0);
        inner.sse_clients.set(0.0);
        GatewayMetrics(Arc::new(inner))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.0.handle.run_upkeep();
        self.0.handle.render()
    }

    fn hash(&self, parts: &[&str], n: u16) -> u64 {
        let mut h = self.0.hasher.build_hasher();
        parts.hash(&mut h);
        n.hash(&mut h);
        h.finish()
    }

    /// Counts one HTTP response.
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        let method = http_method_label(method);
        let id = self.hash(&[route, method], status);
        if let Some(c) = self.0.http.read().get(&id) {
            c.increment(1);
            return;
        }
        let key = Key::from_parts(
            "enoki_gateway_http_requests_total",
            vec![
                Label::new("route", route.to_owned()),
                Label::new("method", method.to_owned()),
                Label::new("status", status.to_string()),
            ],
        );
        let counter = self.0.recorder.register_counter(&key, &METADATA);
        counter.increment(1);
        self.0.http.write().insert(id, counter);
    }

    /// Records one RPC call's latency. Pass [`OTHER`] for names that may be
    /// made up; past [`MAX_RPC_SERIES`] label sets, new ones are `other`.
    pub fn rpc_call(&self, service: &str, method: &str, outcome: &'static str, took: Duration) {
        let id = self.hash(&[service, method, outcome], 0);
        if let Some(h) = self.0.rpc.read().get(&id) {
            h.record(took.as_secs_f64());
            return;
        }
        if self.0.rpc.read().len() >= MAX_RPC_SERIES && (service, method) != (OTHER, OTHER) {
            return self.rpc_call(OTHER, OTHER, outcome, took);
        }
        let key = Key::from_parts(
            "enoki_gateway_rpc_duration_seconds",
            vec![
                Label::new("service", service.to_owned()),
                Label::new("method", method.to_owned()),
                Label::new("outcome", outcome),
            ],
        );
        let histogram = self.0.recorder.register_histogram(&key, &METADATA);
        histogram.record(took.as_secs_f64());
        self.0.rpc.write().insert(id, histogram);
    }

    /// A WebSocket client came (+1) or went (-1).
    pub fn ws_clients(&self, delta: f64) {
        self.0.ws_clients.increment(delta);
    }

    /// An SSE client came (+1) or went (-1).
    pub fn sse_clients(&self, delta: f64) {
        self.0.sse_clients.increment(delta);
    }

    /// An event arrived from the broker.
    pub fn event_received(&self) {
        self.0.events_received.increment(1);
    }

    /// `n` deliveries were queued to clients.
    pub fn events_forwarded(&self, n: u64) {
        self.0.events_forwarded.increment(n);
    }

    /// `n` deliveries were dropped.
    pub fn events_dropped(&self, n: u64) {
        self.0.events_dropped.increment(n);
    }

    /// A slow client was disconnected.
    pub fn slow_disconnect(&self) {
        self.0.slow_disconnects.increment(1);
    }

    /// A request was shed.
    pub fn request_shed(&self) {
        self.0.shed.increment(1);
    }

    /// A request was refused by a rate limit.
    pub fn request_rate_limited(&self) {
        self.0.rate_limited.increment(1);
    }

    /// A connection was closed for being over `GATEWAY.max_connections`.
    pub fn connection_refused(&self) {
        self.0.connections_refused.increment(1);
    }
}
