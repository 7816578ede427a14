//! The paths the gateway serves itself, in one place: the router mounts
//! them, auth keeps the infrastructure ones public, route files may not
//! take them.

/// Liveness: `{"status": "ok"}`.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: services up and the broker connected.
pub const READYZ: &str = "/readyz";
/// Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// The OpenAPI document of the routes.
pub const OPENAPI: &str = "/openapi.json";
/// The AsyncAPI document of the services.
pub const ASYNCAPI: &str = "/asyncapi.json";
/// What the page shows: routes, services, transport.
pub const INFO: &str = "/api/info";
/// The WebSocket.
pub const WS: &str = "/ws";
/// Server-Sent Events.
pub const EVENTS: &str = "/events";
/// The generic RPC endpoint.
pub const RPC: &str = "/rpc/{service}/{method}";
/// The page (`static/`).
pub const ROOT: &str = "/";

/// Always public, even with auth on (static files are too).
pub const PUBLIC: &[&str] = &[HEALTHZ, READYZ, METRICS, OPENAPI, ASYNCAPI, INFO];

/// Served by the gateway itself; route files may not take them.
pub const RESERVED: &[&str] = &[
    ROOT, WS, EVENTS, HEALTHZ, READYZ, METRICS, OPENAPI, ASYNCAPI, INFO, RPC,
];

/// `%` and `/` inside a path segment: what [`rpc`] escapes so that
/// [`normalize_path`](super::auth::normalize_path) gives back the same
/// segments.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(b'/');

/// The path of the generic RPC endpoint for `service.method`, as auth rules
/// see it: the resolved names, each one segment whatever it contains.
///
/// ```
/// use enoki::gateway::{auth::normalize_path, paths};
///
/// assert_eq!(paths::rpc("greeter", "hello"), "/rpc/greeter/hello");
/// assert_eq!(normalize_path(&paths::rpc("a/b", "c")), "/rpc/a%2Fb/c");
/// ```
pub fn rpc(service: &str, method: &str) -> String {
    let encode = |s| percent_encoding::utf8_percent_encode(s, SEGMENT);
    format!("/rpc/{}/{}", encode(service), encode(method))
}
