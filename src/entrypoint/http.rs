//! The HTTP entrypoint: nameko's `@http`, one per container for all its
//! `#[http]` methods.
//!
//! At `setup` it checks every method and path; at `start` it registers the
//! routes with the container's [`WebServer`] (the
//! process's server at `WEB_SERVER_ADDRESS`, or the gateway's), where a
//! clash stops the container naming both routes. Each request waits for a
//! worker slot (so HTTP counts against `max_workers` like every other
//! worker), runs the method with its extractors, and is answered with
//! what the method returned; the providers' `worker_result` and
//! `worker_teardown` follow the answer. Once the container stops, its
//! routes leave the server and requests still waiting for a slot are
//! answered 503.
//!
//! ```
//! use axum::extract::Path;
//! use enoki::prelude::*;
//!
//! #[derive(Dependencies)]
//! struct Shop;
//!
//! #[service(name = "shop")]
//! impl Shop {
//!     #[http(GET, "/items/{id}")]
//!     async fn item(&self, Path(id): Path<u32>) -> Result<String, RemoteError> {
//!         match id {
//!             7 => Ok("a hat".into()),
//!             _ => Err(RemoteError::new("NotFound", format!("no item {id}"))),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
//! let transport = enoki::transport::MemoryTransport::new();
//! let mut runner = ServiceRunner::new(transport, Settings::new());
//! let server = enoki::web::WebServer::new("127.0.0.1:0");
//! runner.web_server(server.clone());
//! runner.add(enoki::service::<Shop>());
//! runner.start().await?;
//! let addr = server.local_addr().expect("listening");
//! # let _ = addr; // GET http://{addr}/items/7 answers "a hat"; /items/8 404
//! runner.stop().await;
//! # Ok(()) }
//! ```

use axum::http::Method;

use super::Entrypoint;
use crate::container_ctx::ContainerCtx;
use crate::error::{Error, Result};
use crate::service::HttpSpec;
use crate::web::{Registration, WebRoute, WebServer};
use crate::worker::WorkerPool;

/// The `#[http]` methods of one container.
#[derive(Debug)]
pub struct HttpEntrypoint {
    routes: Vec<(&'static str, HttpSpec)>,
    server: Option<WebServer>,
    registration: Option<Registration>,
}

impl HttpEntrypoint {
    /// The entrypoint of these `(method, spec)` pairs.
    pub fn new(routes: Vec<(&'static str, HttpSpec)>) -> Self {
        HttpEntrypoint {
            routes,
            server: None,
            registration: None,
        }
    }
}

/// The HTTP method of a spec, checked.
fn http_method(service: &str, method: &str, spec: &HttpSpec) -> Result<Method> {
    match spec.method {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
            Method::from_bytes(spec.method.as_bytes()).map_err(|err| {
                Error::Config(format!("{service}.{method}: `{}`: {err}", spec.method))
            })
        }
        other => Err(Error::Config(format!(
            "{service}.{method}: unsupported HTTP method `{other}` \
             (use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS)"
        ))),
    }
}

impl Entrypoint for HttpEntrypoint {
    /// Checks the methods and paths; picks the container's web server.
    async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        let service = ctx.service_name();
        for (method, spec) in &self.routes {
            http_method(service, method, spec)?;
            crate::web::table::parse_path(spec.path)
                .map_err(|err| Error::Config(format!("{service}.{method}: {err}")))?;
        }
        self.server = Some(ctx.web_server().clone());
        Ok(())
    }

    /// Registers the routes (binding the server if they are its first).
    async fn start(&mut self, workers: WorkerPool) -> Result<()> {
        let service = workers.service_name();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (name, spec) in &self.routes {
            let method = workers.method(name).ok_or_else(|| {
                Error::Lifecycle(format!("service `{service}` has no method `{name}`"))
            })?;
            let pool = workers.clone();
            let owner = format!("{service}.{name} (#[http])");
            let http = http_method(service, name, spec)?;
            routes.push(WebRoute::new(http, spec.path, &owner, move |request| {
                let pool = pool.clone();
                async move {
                    match pool.slot().await {
                        Some(slot) => pool.serve_http(slot, method, request).await,
                        None => stopped(pool.service_name()),
                    }
                }
            }));
        }
        let server = self
            .server
            .clone()
            .ok_or_else(|| Error::Lifecycle("the HTTP entrypoint was not set up".into()))?;
        self.registration = Some(server.register(routes).await?);
        Ok(())
    }

    /// Takes the routes off the server (requests in flight finish).
    async fn stop(&mut self) {
        if let Some(registration) = self.registration.take() {
            registration.close().await;
        }
    }

    fn kill(&mut self) {
        self.registration = None;
    }
}

/// 503: the service is stopping.
fn stopped(service: &str) -> crate::web::Response {
    use axum::response::IntoResponse;
    crate::web::ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        format!("the `{service}` service is stopping"),
    )
    .into_response()
}
