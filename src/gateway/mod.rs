//! The HTTP/WebSocket gateway: an axum app that maps HTTP routes to RPC
//! calls and forwards broker events to browsers, beside (optionally) the
//! services themselves on the embedded broker. `cargo run` starts it.
//!
//! - Routes are data, in `routes/*.yaml` ([`routes`], `routes/README.md`);
//!   `POST /rpc/{service}/{method}` calls anything exposed ([`rpc`]).
//! - RPC errors become HTTP statuses with JSON bodies ([`rpc`]).
//! - `GET /ws` speaks a small JSON protocol: subscribe to events, call
//!   methods (`ws`, `static/PROTOCOL.md`); `GET /events?subscribe=...` is
//!   Server-Sent Events (`sse`). Both are fed by the [`bridge`].
//! - `/` serves `static/` (a page to try it all), `/healthz`, `/readyz`,
//!   `/metrics` ([`metrics`]), `/openapi.json` ([`openapi`]), `/asyncapi.json`
//!   ([`asyncapi`](crate::asyncapi)), `/api/info`.
//! - CORS, request ids, access logs, timeouts, body limits, compression,
//!   concurrency limit with load shedding come from tower and tower-http,
//!   configured by the `GATEWAY` config key ([`config`]); optional bearer
//!   auth ([`auth`]).
//!
//! ```no_run
//! # async fn run() -> enoki::Result<()> {
//! use enoki::gateway::{GatewayState, router};
//! let transport = enoki::transport::MemoryTransport::new();
//! let state = GatewayState::builder(transport)
//!     .routes_dir("routes")?
//!     .static_dir("static")
//!     .build()
//!     .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, router(state)).await?;
//! # Ok(()) }
//! ```

mod assets;
pub mod auth;
pub mod bridge;
mod builtin;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod error;
mod layers;
mod leave;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod paths;
pub mod protocol;
pub mod rate_limit;
mod record;
pub mod routes;
pub mod rpc;
pub mod serve;
mod shed;
mod span;
mod sse;
pub mod state;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::routing::{MethodFilter, MethodRouter, get, post};

pub use self::auth::{Auth, AuthConfig, Identity};
pub use self::bridge::{EventBridge, EventPattern};
#[cfg(feature = "cli")]
pub use self::cli::{GatewayArgs, run};
pub use self::config::{GatewayConfig, SlowClient};
pub use self::error::ApiError;
pub use self::metrics::GatewayMetrics;
pub use self::rate_limit::RateLimit;
pub use self::routes::{BuiltinRoutes, Route, RouteTable};
pub use self::state::{GatewayBuilder, GatewayState, ServiceInfo};

/// The gateway's axum app.
pub fn router(state: GatewayState) -> Router {
    router_with(state, Router::new())
}

/// The gateway's axum app with routes of your own beside its own, behind
/// the same layers (auth, limits, timeouts, metrics, JSON errors). Your
/// routes may not take the gateway's own paths ([`paths::RESERVED`]):
/// axum refuses overlapping routes.
///
/// ```no_run
/// # async fn run(state: enoki::gateway::GatewayState) -> enoki::Result<()> {
/// use axum::routing::get;
/// let extra = axum::Router::new().route("/version", get(|| async { "1.0" }));
/// let app = enoki::gateway::router_with(state, extra);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
pub fn router_with(state: GatewayState, extra: Router<GatewayState>) -> Router {
    let mut app: Router<GatewayState> = extra
        .route(paths::HEALTHZ, get(builtin::healthz))
        .route(paths::READYZ, get(builtin::readyz))
        .route(paths::METRICS, get(builtin::metrics))
        .route(paths::OPENAPI, get(builtin::openapi))
        .route(paths::ASYNCAPI, get(builtin::asyncapi))
        .route(paths::INFO, get(builtin::info))
        .route(paths::WS, get(ws::handler))
        .route(paths::EVENTS, get(sse::handler));
    if state.config().rpc.enabled {
        app = app.route(paths::RPC, post(rpc::generic));
    }
    // Route files and the `#[http]` routes of embedded services, one
    // method router per path (the web server's table refused clashes).
    let mut by_path: Vec<(String, MethodRouter<GatewayState>)> = Vec::new();
    let mut add = |path: &str, methods: MethodRouter<GatewayState>| match by_path
        .iter_mut()
        .find(|(p, _)| p == path)
    {
        Some((_, existing)) => *existing = std::mem::take(existing).merge(methods),
        None => by_path.push((path.to_owned(), methods)),
    };
    for (path, group) in state.routes().by_path() {
        let mut methods: MethodRouter<GatewayState> = MethodRouter::new();
        for route in group {
            let route = Arc::new(route.clone());
            let filter = MethodFilter::try_from(route.method.clone())
                .expect("route methods are checked when loaded");
            methods = methods.on(
                filter,
                move |State(state): State<GatewayState>, identity: Identity, request: Request| {
                    rpc::routed(state, route.clone(), identity, request)
                },
            );
        }
        add(path, methods);
    }
    for route in state.web_server().routes() {
        add(&route.path, route.method_router());
    }
    for (path, methods) in by_path {
        app = app.route(&path, methods);
    }
    app = match state.static_dir().filter(|d| d.is_dir()) {
        Some(dir) => app.fallback_service(
            tower_http::services::ServeDir::new(dir)
                .call_fallback_on_method_not_allowed(true)
                .fallback(axum::handler::HandlerWithoutStateExt::into_service(
                    assets::not_found,
                )),
        ),
        None => app.fallback(assets::embedded_static),
    };
    layers::apply(app, &state).with_state(state)
}
