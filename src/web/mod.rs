//! The HTTP side of services: the server of `#[http]` entrypoints
//! (nameko's `WebServer` and `@http`), and what it shares with the gateway.
//!
//! - **One server per process.** Every container whose service has
//!   `#[http]` methods registers its routes with the [`WebServer`] of its
//!   `WEB_SERVER_ADDRESS` (default `0.0.0.0:8000`): one per address in the
//!   process ([`WebServer::shared`]), bound when the first routes register
//!   and closed when the last ones leave. So a binary that runs services
//!   serves their HTTP endpoints without the gateway (where nameko binds
//!   one server per container, and a second service with `@http` in the
//!   same runner fails with "address in use").
//! - **Inside the gateway** the embedded services register with a
//!   [`WebServer::mounted`] server instead, which never listens: the
//!   gateway serves its routes beside its own, behind the same auth,
//!   limits and metrics.
//! - **Clashes stop start-up** with both definitions named: two `#[http]`
//!   routes on one method and path, or an `#[http]` route on a gateway
//!   route or on one of the gateway's own paths ([`table`]).
//! - **Errors** answer as the gateway's do ([`error`]).
//! - **Limits**: the server is [`serve::serve`] with
//!   [`ServeLimits::default`](serve::ServeLimits) (a 10 s deadline for
//!   request headers, at most 10,000 connections); bodies read by axum's
//!   extractors (`Json`, `Bytes`, `String`, `Form`) are capped at 2 MiB by
//!   axum's default body limit.
//!
//! ```
//! use enoki::web::{WebRoute, WebServer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
//! let server = WebServer::new("127.0.0.1:0");
//! let route = WebRoute::new(axum::http::Method::GET, "/ping", "example", |_request| async {
//!     axum::response::IntoResponse::into_response("pong")
//! });
//! let registration = server.register(vec![route]).await?;
//! let addr = server.local_addr().expect("listening once routes are registered");
//! # let _ = addr;
//! registration.close().await; // the last routes left: the server closes
//! assert!(server.local_addr().is_none());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::error::{Error, Result};

pub mod error;
pub mod serve;
pub mod table;

pub use self::error::ApiError;

/// An HTTP request, as axum's handlers take it.
pub type Request = axum::extract::Request;
/// An HTTP response.
pub type Response = axum::response::Response;
pub use self::table::Handler;

/// One route to register: a method and a path (axum's syntax,
/// `/users/{id}`), who defines it (named in clash errors) and what answers
/// it.
#[derive(Clone)]
pub struct WebRoute {
    /// The HTTP method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// Who defines it: `users.profile (#[http])`.
    pub owner: String,
    handler: Handler,
}

impl fmt::Debug for WebRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebRoute")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl WebRoute {
    /// A route answered by `handler`.
    pub fn new<F, Fut>(method: Method, path: &str, owner: &str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        WebRoute {
            method,
            path: path.to_owned(),
            owner: owner.to_owned(),
            handler: Arc::new(move |request| Box::pin(handler(request))),
        }
    }

    /// What answers it.
    pub fn handler(&self) -> &Handler {
        &self.handler
    }

    /// The route as an axum method router (for mounting it by hand).
    pub fn method_router<S: Clone + Send + Sync + 'static>(&self) -> MethodRouter<S> {
        let filter = MethodFilter::try_from(self.method.clone()).unwrap_or(MethodFilter::GET);
        let handler = self.handler.clone();
        axum::routing::on(filter, move |request: Request| handler(request))
    }
}

/// The HTTP server of a process's `#[http]` entrypoints; see the [module
/// docs](self). Cheap to clone.
#[derive(Clone)]
pub struct WebServer {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where it listens; `None` for a mounted server.
    address: Option<String>,
    table: Mutex<table::Table>,
    /// The router of the registered routes, rebuilt when they change.
    router: RwLock<Router>,
    listening: tokio::sync::Mutex<Option<Listening>>,
    local_addr: Mutex<Option<SocketAddr>>,
}

struct Listening {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl fmt::Debug for WebServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebServer")
            .field("address", &self.inner.address)
            .field("local_addr", &self.local_addr())
            .field("routes", &self.inner.table.lock().entries.len())
            .finish()
    }
}

/// The process's servers, by address.
fn servers() -> &'static Mutex<HashMap<String, Weak<Inner>>> {
    static SERVERS: OnceLock<Mutex<HashMap<String, Weak<Inner>>>> = OnceLock::new();
    SERVERS.get_or_init(Default::default)
}

impl WebServer {
    /// The process's server at `address` (`host:port`): every caller with
    /// the same address gets the same server, as long as one holds it.
    pub fn shared(address: &str) -> WebServer {
        let mut servers = servers().lock();
        if let Some(inner) = servers.get(address).and_then(Weak::upgrade) {
            return WebServer { inner };
        }
        servers.retain(|_, server| server.strong_count() > 0);
        let server = WebServer::with_address(Some(address.to_owned()));
        servers.insert(address.to_owned(), Arc::downgrade(&server.inner));
        server
    }

    /// A server of its own at `address`, shared with nobody (tests listen
    /// on `127.0.0.1:0`).
    pub fn new(address: &str) -> WebServer {
        WebServer::with_address(Some(address.to_owned()))
    }

    /// A server that never listens: its routes are mounted by someone else
    /// (the gateway, with [`routes`](Self::routes)).
    pub fn mounted() -> WebServer {
        WebServer::with_address(None)
    }

    fn with_address(address: Option<String>) -> WebServer {
        WebServer {
            inner: Arc::new(Inner {
                address,
                table: Mutex::new(table::Table::default()),
                router: RwLock::new(Router::new()),
                listening: tokio::sync::Mutex::new(None),
                local_addr: Mutex::new(None),
            }),
        }
    }

    /// Where it listens (as configured); `None` for a mounted server.
    pub fn address(&self) -> Option<&str> {
        self.inner.address.as_deref()
    }

    /// The bound address while it listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.inner.local_addr.lock()
    }

    /// Takes `path` (for `method`, or every method when `None`) for
    /// `owner`, served elsewhere: later routes that clash with it are
    /// refused, naming `owner`. The gateway reserves its own paths and
    /// routes this way.
    pub fn reserve(&self, method: Option<Method>, path: &str, owner: &str) -> Result<()> {
        let mut table = self.inner.table.lock();
        let entry = table::Entry {
            method,
            path: path.to_owned(),
            owner: owner.to_owned(),
            id: 0,
            handler: None,
        };
        table.check(std::slice::from_ref(&entry))?;
        table.entries.push(entry);
        Ok(())
    }

    /// Registers `routes`, all or none: a clash (with each other, with a
    /// registered route or with a reserved one) is an error naming both.
    /// A listening server binds on its first routes; a bind failure is an
    /// error naming the address. The routes stay until the
    /// [`Registration`] is closed or dropped.
    pub async fn register(&self, routes: Vec<WebRoute>) -> Result<Registration> {
        let mut listening = self.inner.listening.lock().await;
        let id = {
            let mut table = self.inner.table.lock();
            let id = table.next_id();
            let entries: Vec<table::Entry> = routes
                .into_iter()
                .map(|route| table::Entry {
                    method: Some(route.method),
                    path: route.path,
                    owner: route.owner,
                    id,
                    handler: Some(route.handler),
                })
                .collect();
            table.check(&entries)?;
            table.entries.extend(entries);
            id
        };
        self.rebuild();
        let registration = Registration {
            server: self.clone(),
            id,
            closed: false,
        };
        if let (Some(address), None) = (&self.inner.address, &*listening) {
            match self.listen(address).await {
                Ok(started) => *listening = Some(started),
                Err(err) => {
                    drop(listening);
                    registration.close().await;
                    return Err(err);
                }
            }
        }
        Ok(registration)
    }

    /// The registered routes (not the reserved ones), in order.
    pub fn routes(&self) -> Vec<WebRoute> {
        self.inner
            .table
            .lock()
            .entries
            .iter()
            .filter_map(|entry| {
                Some(WebRoute {
                    method: entry.method.clone()?,
                    path: entry.path.clone(),
                    owner: entry.owner.clone(),
                    handler: entry.handler.clone()?,
                })
            })
            .collect()
    }

    /// The registered routes as one axum router, grouped by path.
    pub fn router(&self) -> Router {
        let mut by_path: Vec<(String, MethodRouter)> = Vec::new();
        for route in self.routes() {
            match by_path.iter_mut().find(|(path, _)| *path == route.path) {
                Some((_, methods)) => {
                    *methods = std::mem::take(methods).merge(route.method_router());
                }
                None => by_path.push((route.path.clone(), route.method_router())),
            }
        }
        by_path
            .into_iter()
            .fold(Router::new(), |router, (path, methods)| {
                router.route(&path, methods)
            })
            .fallback(not_found)
    }

    fn rebuild(&self) {
        let router = self.router();
        *self.inner.router.write() = router;
    }

    async fn listen(&self, address: &str) -> Result<Listening> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|err| {
                Error::Config(format!(
                    "the web server cannot listen on {address} (WEB_SERVER_ADDRESS): {err}"
                ))
            })?;
        let local = listener.local_addr()?;
        *self.inner.local_addr.lock() = Some(local);
        tracing::info!(address = %local, "web server listening on http://{local}/");
        // Each request goes to the router of the moment: containers come
        // and go while the server runs.
        let weak = Arc::downgrade(&self.inner);
        let app = Router::new().fallback(move |request: Request| {
            let router = weak.upgrade().map(|inner| inner.router.read().clone());
            async move {
                match router {
                    Some(router) => match router.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    None => not_found(request.uri().clone()).await,
                }
            }
        });
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let limits = serve::ServeLimits::default();
            let shutdown = stopped.cancelled_owned();
            if let Err(err) = serve::serve(listener, app, limits, || {}, shutdown).await {
                tracing::error!(error = %err, "web server failed");
            }
        });
        Ok(Listening { stop, task })
    }

    /// Removes the routes of registration `id`; closes the server once it
    /// has none. Returns the listening task to wait for, if it closed.
    fn unregister(&self, id: u64) -> Option<Listening> {
        let empty = {
            let mut table = self.inner.table.lock();
            table.entries.retain(|entry| entry.id != id || id == 0);
            !table.entries.iter().any(|entry| entry.handler.is_some())
        };
        self.rebuild();
        if !empty || self.inner.address.is_none() {
            return None;
        }
        let listening = self.inner.listening.try_lock().ok()?.take()?;
        *self.inner.local_addr.lock() = None;
        listening.stop.cancel();
        tracing::info!("web server closed: no routes left");
        Some(listening)
    }
}

/// 404 `NotFound`, as JSON (as the gateway answers it).
async fn not_found(uri: axum::http::Uri) -> Response {
    use axum::response::IntoResponse;
    let message = format!("no route for {}", uri.path());
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "NotFound", message).into_response()
}

/// Routes registered with a [`WebServer`]; they leave when this is closed
/// (or dropped).
#[must_use = "the routes leave when the registration is dropped"]
pub struct Registration {
    server: WebServer,
    id: u64,
    closed: bool,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Removes the routes; when they were the server's last, waits for it
    /// to close (requests in flight finish).
    pub async fn close(mut self) {
        self.closed = true;
        if let Some(listening) = self.server.unregister(self.id) {
            let _ = listening.task.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.closed {
            // The server closes in the background.
            let _ = self.server.unregister(self.id);
        }
    }
}
