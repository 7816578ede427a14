//! [`GatewayState`]: what every handler shares (the RPC client, the config,
//! the routes, the event bridge, metrics, auth), built by
//! [`GatewayBuilder`], read through named accessors.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use super::auth::Auth;
use super::bridge::EventBridge;
use super::config::GatewayConfig;
use super::metrics::GatewayMetrics;
use super::openapi;
use super::rate_limit::Limiter;
use super::routes::RouteTable;
use crate::client::ClusterRpc;
use crate::config::Settings;
use crate::container::ServiceDef;
use crate::error::Result;
use crate::service::EntrypointKind;
use crate::service_metrics::ServiceMetrics;
use crate::transport::Transport;
use crate::web::WebServer;

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
    /// Its `#[http]` entrypoints (served beside the gateway's routes when
    /// it is embedded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<crate::describe::HttpDescription>,
    /// What it receives, with schemas, when its definition is at hand
    /// (for `/asyncapi.json`).
    #[serde(skip)]
    pub contract: Option<crate::asyncapi::Contract>,
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
        let http = def
            .entrypoints()
            .iter()
            .filter_map(|e| match e.kind {
                EntrypointKind::Http(spec) => Some(crate::describe::HttpDescription {
                    method: e.method.to_owned(),
                    http_method: spec.method.to_owned(),
                    path: spec.path.to_owned(),
                }),
                _ => None,
            })
            .collect();
        ServiceInfo {
            name: def.name().to_owned(),
            methods,
            events: Vec::new(),
            embedded,
            http,
            contract: Some(crate::asyncapi::Contract::of(def)),
        }
    }
}

/// The AsyncAPI document of `services`, as JSON text: the contracts of
/// those whose definitions the gateway has, the routed methods of the
/// others.
fn asyncapi_document(services: &[ServiceInfo], rpc_exchange: &str) -> crate::error::Result<String> {
    let contracts: Vec<crate::asyncapi::Contract> = services
        .iter()
        .map(|info| {
            info.contract
                .clone()
                .unwrap_or_else(|| crate::asyncapi::Contract::named(&info.name, &info.methods))
        })
        .collect();
    serde_json::to_string_pretty(&crate::asyncapi::document(&contracts, rpc_exchange))
        .map_err(crate::error::Error::Encoding)
}

/// The `#[http]` entrypoints the gateway mounts: those of embedded services.
fn mounted_http(services: &[ServiceInfo]) -> Vec<(&str, &crate::describe::HttpDescription)> {
    services
        .iter()
        .filter(|s| s.embedded)
        .flat_map(|s| s.http.iter().map(move |h| (s.name.as_str(), h)))
        .collect()
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    inner: Arc<Inner>,
}

struct Inner {
    rpc: ClusterRpc,
    config: GatewayConfig,
    routes: RouteTable,
    bridge: EventBridge,
    metrics: GatewayMetrics,
    auth: Auth,
    services: Vec<ServiceInfo>,
    static_dir: Option<PathBuf>,
    services_ready: AtomicBool,
    shutdown: CancellationToken,
    openapi: String,
    asyncapi: String,
    transport: Arc<dyn Transport>,
    web: WebServer,
    /// The generic endpoint's rate limit.
    rpc_limiter: Option<Limiter>,
    /// The metrics of the services embedded beside the gateway.
    service_metrics: Option<ServiceMetrics>,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState")
            .field("routes", &self.inner.routes.routes.len())
            .field("bridge", &self.inner.bridge)
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
    web: WebServer,
    service_metrics: Option<ServiceMetrics>,
}

impl GatewayBuilder {
    /// The metrics registry of the services embedded beside the gateway
    /// (the one given to their [`ServiceRunner::metrics`]): `/metrics`
    /// shows them after the gateway's own.
    ///
    /// [`ServiceRunner::metrics`]: crate::ServiceRunner::metrics
    #[must_use]
    pub fn service_metrics(mut self, metrics: ServiceMetrics) -> Self {
        self.service_metrics = Some(metrics);
        self
    }

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

    /// The web server whose routes (the `#[http]` entrypoints of embedded
    /// services) the gateway serves beside its own: give the same server
    /// to the [`ServiceRunner`](crate::ServiceRunner) of those services
    /// ([`ServiceRunner::web_server`](crate::ServiceRunner::web_server)).
    /// `build` reserves the gateway's paths and routes on it, so that an
    /// `#[http]` route that clashes with one stops its service's start-up,
    /// naming both. Default: a [`WebServer::mounted`] of its own.
    #[must_use]
    pub fn web_server(mut self, server: WebServer) -> Self {
        self.web = server;
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
        for path in super::paths::RESERVED {
            self.web.reserve(None, path, "the gateway")?;
        }
        for route in &self.routes.routes {
            let owner = format!(
                "the route at {} (-> {}.{})",
                route.origin, route.service, route.rpc_method
            );
            self.web
                .reserve(Some(route.method.clone()), &route.path, &owner)?;
        }
        let rpc_limiter = match &config.rpc.rate_limit {
            None => None,
            Some(limit) => Some(Limiter::new(limit.clone()).map_err(|err| {
                crate::error::Error::Config(format!(
                    "{}.rpc.rate_limit: {err}",
                    super::config::CONFIG_KEY
                ))
            })?),
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
                        http: Vec::new(),
                        contract: None,
                    });
                    services.last_mut().expect("just pushed")
                }
            };
            if !info.methods.contains(&route.rpc_method) {
                info.methods.push(route.rpc_method.clone());
            }
        }
        let mut openapi = serde_json::to_value(openapi::document_with(
            &self.routes,
            &config,
            &mounted_http(&services),
        ))?;
        let schemas: Vec<(&str, &crate::schema::MethodSchema)> = services
            .iter()
            .filter_map(|info| Some((info.name.as_str(), info.contract.as_ref()?)))
            .flat_map(|(service, contract)| {
                contract
                    .rpc
                    .iter()
                    .filter_map(move |m| Some((service, m.schema.as_ref()?)))
            })
            .collect();
        openapi::with_schemas(&mut openapi, &self.routes, &schemas);
        let openapi = serde_json::to_string_pretty(&openapi)?;
        let asyncapi = asyncapi_document(&services, self.settings.rpc_exchange())?;
        Ok(GatewayState {
            inner: Arc::new(Inner {
                auth: Auth::new(config.auth.clone()),
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
                asyncapi,
                web: self.web,
                rpc_limiter,
                service_metrics: self.service_metrics,
            }),
        })
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
            web: WebServer::mounted(),
            service_metrics: None,
        }
    }

    /// The web server whose routes the gateway mounts beside its own.
    pub fn web_server(&self) -> &WebServer {
        &self.inner.web
    }

    /// Marks the embedded services as up (or not) for `/readyz`.
    pub fn set_services_ready(&self, ready: bool) {
        self.inner.services_ready.store(ready, Ordering::Release);
    }

    /// Whether the embedded services are up.
    pub fn services_ready(&self) -> bool {
        self.inner.services_ready.load(Ordering::Acquire)
    }

    /// Whether the broker link is up: the bridge consumes and the
    /// transport is connected.
    pub fn broker_ready(&self) -> bool {
        // The bridge's consumer survives reconnections, so ask the transport too.
        self.inner.bridge.is_consuming() && self.inner.transport.is_connected()
    }

    /// Whether `/readyz` says ready.
    pub fn is_ready(&self) -> bool {
        self.services_ready() && self.inner.bridge.is_consuming()
    }

    /// The metrics.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.inner.metrics
    }

    /// The event bridge.
    pub fn bridge(&self) -> &EventBridge {
        &self.inner.bridge
    }

    /// The config in use.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The metrics of the embedded services, if the gateway was given them.
    pub fn service_metrics(&self) -> Option<&ServiceMetrics> {
        self.inner.service_metrics.as_ref()
    }

    /// The rate limit of `POST /rpc/{service}/{method}`, if it has one.
    pub fn rpc_limiter(&self) -> Option<&Limiter> {
        self.inner.rpc_limiter.as_ref()
    }

    /// The gateway's RPC client.
    pub fn rpc(&self) -> &ClusterRpc {
        &self.inner.rpc
    }

    /// The routes.
    pub fn routes(&self) -> &RouteTable {
        &self.inner.routes
    }

    /// The auth checker.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// A client queue for `user`: with auth on, it only receives the events
    /// the event rules let `user` see, each decided on its own
    /// `service.event_type`.
    pub fn event_client(&self, user: Option<&str>) -> Arc<super::bridge::ClientQueue> {
        if !self.auth().enabled() {
            return self.bridge().client();
        }
        let state = self.clone();
        let user = user.map(str::to_owned);
        let allowed: super::bridge::EventFilter = Box::new(move |service, event_type| {
            let name = format!("{service}.{event_type}");
            state.auth().check_event(&name, user.as_deref()).is_ok()
        });
        self.bridge().client_with(Some(allowed))
    }

    /// Whether the gateway knows `service.method` (an embedded service's
    /// RPC method, or the target of a route).
    pub fn knows_method(&self, service: &str, method: &str) -> bool {
        self.inner
            .services
            .iter()
            .any(|s| s.name == service && s.methods.iter().any(|m| m == method))
    }

    /// Whether the gateway knows `service` (embedded, or a route's target).
    pub fn knows_service(&self, service: &str) -> bool {
        self.inner.services.iter().any(|s| s.name == service)
    }

    /// Whether clients may subscribe to events of `service`: it is
    /// embedded, a route's target, in `GATEWAY.event_sources`, or its
    /// `<service>.events` exchange exists on the broker (asked without
    /// creating it).
    pub async fn event_source_known(&self, service: &str) -> Result<bool> {
        if self.knows_service(service) || self.config().event_sources.iter().any(|s| s == service) {
            return Ok(true);
        }
        self.transport()
            .exchange_exists(&crate::names::event_exchange(service))
            .await
    }

    /// The services the gateway knows about.
    pub fn services(&self) -> &[ServiceInfo] {
        &self.inner.services
    }

    /// The directory served at `/`, if one was given.
    pub fn static_dir(&self) -> Option<&std::path::Path> {
        self.inner.static_dir.as_deref()
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The OpenAPI document, as JSON.
    pub fn openapi(&self) -> &str {
        &self.inner.openapi
    }

    /// The AsyncAPI document of the services, as served at `/asyncapi.json`.
    pub fn asyncapi(&self) -> &str {
        &self.inner.asyncapi
    }

    /// Cancelled when the gateway shuts down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Ends WebSocket and SSE streams (they would otherwise keep a graceful
    /// shutdown waiting) and stops the event bridge.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Stops the RPC client (after [`shutdown`](Self::shutdown)).
    pub async fn close(&self) {
        self.shutdown();
        self.inner.rpc.close().await;
    }
}
