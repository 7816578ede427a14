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
//!   `/metrics` ([`metrics`]), `/openapi.json` ([`openapi`]), `/api/info`.
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

pub mod auth;
pub mod bridge;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
mod layers;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod rpc;
mod sse;
mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use self::auth::{Auth, AuthConfig};
pub use self::bridge::{EventBridge, EventPattern};
#[cfg(feature = "cli")]
pub use self::cli::{GatewayArgs, run};
pub use self::config::{GatewayConfig, SlowClient};
pub use self::metrics::GatewayMetrics;
pub use self::routes::{Route, RouteTable};
pub use self::rpc::ApiError;

use crate::client::ClusterRpc;
use crate::config::Settings;
use crate::container::ServiceDef;
use crate::error::Result;
use crate::service::EntrypointKind;
use crate::transport::Transport;

/// A service the gateway knows about (for the page and `/api/info`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceInfo {
    /// The service name.
    pub name: String,
    /// Its RPC methods, as far as known.
    pub methods: Vec<String>,
    /// The events it is known to dispatch.
    pub events: Vec<String>,
    /// Whether it runs inside this process.
    pub embedded: bool,
}

impl ServiceInfo {
    /// What a service definition tells.
    pub fn from_def(def: &ServiceDef, embedded: bool) -> Self {
        let methods = def
            .entrypoints()
            .iter()
            .filter(|e| matches!(e.kind, EntrypointKind::Rpc))
            .map(|e| e.method.to_owned())
            .collect();
        ServiceInfo {
            name: def.name().to_owned(),
            methods,
            events: Vec::new(),
            embedded,
        }
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct GatewayState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) rpc: ClusterRpc,
    pub(crate) config: GatewayConfig,
    pub(crate) routes: RouteTable,
    pub(crate) bridge: EventBridge,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) auth: Auth,
    pub(crate) services: Vec<ServiceInfo>,
    pub(crate) static_dir: Option<PathBuf>,
    pub(crate) services_ready: AtomicBool,
    pub(crate) shutdown: CancellationToken,
    pub(crate) openapi: String,
    pub(crate) transport_kind: &'static str,
    pub(crate) transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState")
            .field("routes", &self.0.routes.routes.len())
            .field("bridge", &self.0.bridge)
            .finish_non_exhaustive()
    }
}

/// Builds a [`GatewayState`].
#[derive(Debug)]
pub struct GatewayBuilder {
    transport: Arc<dyn Transport>,
    settings: Settings,
    config: Option<GatewayConfig>,
    routes: RouteTable,
    static_dir: Option<PathBuf>,
    services: Vec<ServiceInfo>,
    ready: bool,
}

impl GatewayBuilder {
    /// Settings (RPC exchange, event exchange flags; `GATEWAY` unless
    /// [`config`](Self::config) is given).
    #[must_use]
    pub fn settings(mut self, settings: &Settings) -> Self {
        self.settings = settings.clone();
        self
    }

    /// The gateway config (default: from the settings' `GATEWAY` key).
    #[must_use]
    pub fn config(mut self, config: GatewayConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The routes.
    #[must_use]
    pub fn routes(mut self, routes: RouteTable) -> Self {
        self.routes = routes;
        self
    }

    /// Loads the routes of a directory (see [`RouteTable::load_dir`]).
    pub fn routes_dir(mut self, dir: impl Into<PathBuf>) -> Result<Self> {
        self.routes = RouteTable::load_dir(dir.into())?;
        Ok(self)
    }

    /// Serves this directory at `/` (default: the built-in page).
    #[must_use]
    pub fn static_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.static_dir = Some(dir.into());
        self
    }

    /// Services to list on the page (e.g. the embedded ones).
    #[must_use]
    pub fn services(mut self, services: Vec<ServiceInfo>) -> Self {
        self.services = services;
        self
    }

    /// Whether `/readyz` starts ready (default true; see
    /// [`GatewayState::set_services_ready`]).
    #[must_use]
    pub fn ready(mut self, ready: bool) -> Self {
        self.ready = ready;
        self
    }

    /// Connects the RPC client and the event bridge.
    pub async fn build(self) -> Result<GatewayState> {
        let config = match self.config {
            Some(config) => {
                config.validate()?;
                config
            }
            None => GatewayConfig::from_settings(&self.settings)?,
        };
        let metrics = GatewayMetrics::new();
        let shutdown = CancellationToken::new();
        let rpc = ClusterRpc::builder(self.transport.clone())
            .settings(&self.settings)
            .owner("enoki_gateway")
            .timeout(config.rpc_timeout())
            .connect()
            .await?;
        let bridge = EventBridge::start(
            self.transport.clone(),
            &self.settings,
            config.client_queue,
            config.slow_client,
            metrics.clone(),
            shutdown.clone(),
        )
        .await?;
        let mut services = self.services;
        for route in &self.routes.routes {
            let info = match services.iter_mut().find(|s| s.name == route.service) {
                Some(info) => info,
                None => {
                    services.push(ServiceInfo {
                        name: route.service.clone(),
                        methods: Vec::new(),
                        events: Vec::new(),
                        embedded: false,
                    });
                    services.last_mut().expect("just pushed")
                }
            };
            if !info.methods.contains(&route.rpc_method) {
                info.methods.push(route.rpc_method.clone());
            }
        }
        let openapi = openapi::document(&self.routes, &config)
            .to_pretty_json()
            .map_err(crate::error::Error::Encoding)?;
        Ok(GatewayState(Arc::new(Inner {
            auth: Auth::new(config.auth.clone()),
            transport_kind: self.transport.kind(),
            transport: self.transport.clone(),
            rpc,
            config,
            routes: self.routes,
            bridge,
            metrics,
            services,
            static_dir: self.static_dir,
            services_ready: AtomicBool::new(self.ready),
            shutdown,
            openapi,
        })))
    }
}

impl GatewayState {
    /// A builder on `transport`.
    pub fn builder(transport: Arc<dyn Transport>) -> GatewayBuilder {
        GatewayBuilder {
            transport,
            settings: Settings::new(),
            config: None,
            routes: RouteTable::default(),
            static_dir: None,
            services: Vec::new(),
            ready: true,
        }
    }

    /// Marks the embedded services as up (or not) for `/readyz`.
    pub fn set_services_ready(&self, ready: bool) {
        self.0.services_ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` says ready.
    pub fn is_ready(&self) -> bool {
        self.0.services_ready.load(Ordering::Acquire) && self.0.bridge.is_consuming()
    }

    /// The metrics.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.0.metrics
    }

    /// The event bridge.
    pub fn bridge(&self) -> &EventBridge {
        &self.0.bridge
    }

    /// The config in use.
    pub fn config(&self) -> &GatewayConfig {
        &self.0.config
    }

    /// Ends WebSocket and SSE streams (they would otherwise keep a graceful
    /// shutdown waiting) and stops the event bridge.
    pub fn shutdown(&self) {
        self.0.shutdown.cancel();
    }

    /// Stops the RPC client (after [`shutdown`](Self::shutdown)).
    pub async fn close(&self) {
        self.shutdown();
        self.0.rpc.close().await;
    }
}

/// The gateway's axum app.
pub fn router(state: GatewayState) -> Router {
    let mut app: Router<GatewayState> = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/openapi.json", get(openapi_handler))
        .route("/api/info", get(info))
        .route("/ws", get(ws::handler))
        .route("/events", get(sse::handler));
    if state.0.config.rpc.enabled {
        app = app.route("/rpc/{service}/{method}", post(rpc::generic));
    }
    for (path, group) in state.0.routes.by_path() {
        let mut methods: MethodRouter<GatewayState> = MethodRouter::new();
        for route in group {
            let route = Arc::new(route.clone());
            let filter = MethodFilter::try_from(route.method.clone())
                .expect("route methods are checked when loaded");
            methods = methods.on(
                filter,
                move |State(state): State<GatewayState>, request: Request| {
                    rpc::routed(state, route.clone(), request)
                },
            );
        }
        app = app.route(path, methods);
    }
    app = match state.0.static_dir.as_ref().filter(|d| d.is_dir()) {
        Some(dir) => app.fallback_service(
            tower_http::services::ServeDir::new(dir)
                .call_fallback_on_method_not_allowed(true)
                .fallback(axum::handler::HandlerWithoutStateExt::into_service(
                    not_found,
                )),
        ),
        None => app.fallback(embedded_static),
    };
    layers::apply(app, &state).with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<GatewayState>) -> Response {
    let services = state.0.services_ready.load(Ordering::Acquire);
    // The bridge's consumer survives reconnections, so ask the transport too.
    let broker = state.0.bridge.is_consuming() && state.0.transport.is_connected();
    let body = json!({
        "ready": services && broker,
        "services": services,
        "broker": broker,
        "transport": state.0.transport_kind,
    });
    let status = if services && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_handler(State(state): State<GatewayState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.0.metrics.render(),
    )
        .into_response()
}

async fn openapi_handler(State(state): State<GatewayState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.0.openapi.clone(),
    )
        .into_response()
}

async fn info(State(state): State<GatewayState>) -> impl IntoResponse {
    let inner = &state.0;
    let routes: Vec<Value> = inner
        .routes
        .routes
        .iter()
        .map(|r| {
            json!({
                "method": r.method.as_str(),
                "path": r.path,
                "rpc": format!("{}.{}", r.service, r.rpc_method),
                "params": r.params,
                "body": r.reads_body(),
                "status": r.status.as_u16(),
                "summary": r.summary,
            })
        })
        .collect();
    axum::Json(json!({
        "name": "enoki gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "transport": inner.transport_kind,
        "routes": routes,
        "services": inner.services,
        "rpc": { "enabled": inner.config.rpc.enabled, "services": inner.config.rpc.services },
        "auth": inner.auth.enabled(),
    }))
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("no route for {}", uri.path()),
    )
    .into_response()
}

/// The page, built in, for when there is no `static/` directory.
async fn embedded_static(uri: axum::http::Uri) -> Response {
    let (body, content_type) = match uri.path() {
        "/" | "/index.html" => (
            include_str!("../../static/index.html"),
            "text/html; charset=utf-8",
        ),
        "/app.js" => (
            include_str!("../../static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "/style.css" => (
            include_str!("../../static/style.css"),
            "text/css; charset=utf-8",
        ),
        "/PROTOCOL.md" => (
            include_str!("../../static/PROTOCOL.md"),
            "text/markdown; charset=utf-8",
        ),
        _ => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route for {}", uri.path()),
            )
            .into_response();
        }
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
