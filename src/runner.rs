//! [`ServiceRunner`]: several service containers in one process, on one
//! transport (nameko's `ServiceRunner`).
//!
//! ```
//! # use enoki::prelude::*;
//! # #[derive(Dependencies)] struct Clock;
//! # #[service(name = "clock")] impl Clock {
//! #     #[rpc] async fn now(&self) -> Result<u64, RemoteError> { Ok(0) }
//! # }
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
//! let transport = enoki::transport::MemoryTransport::new();
//! let mut runner = ServiceRunner::new(transport, Settings::new());
//! runner.add(enoki::service::<Clock>());
//! runner.start().await?;
//! assert_eq!(runner.service_names(), vec!["clock"]);
//! runner.stop().await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use crate::config::Settings;
use crate::container::{ServiceContainer, ServiceDef};
use crate::error::{Error, Result};
use crate::service_metrics::ServiceMetrics;
use crate::transport::Transport;

/// Hosts several services; starts, stops and kills them together.
#[derive(Debug)]
pub struct ServiceRunner {
    transport: Arc<dyn Transport>,
    settings: Settings,
    containers: Vec<ServiceContainer>,
    metrics: Option<ServiceMetrics>,
    #[cfg(feature = "http")]
    web: Option<crate::web::WebServer>,
}

impl ServiceRunner {
    /// A runner on `transport` with `settings` for every container.
    pub fn new(transport: Arc<dyn Transport>, settings: Settings) -> Self {
        ServiceRunner {
            transport,
            settings,
            containers: Vec::new(),
            metrics: None,
            #[cfg(feature = "http")]
            web: None,
        }
    }

    /// Adds a service (before `start`).
    pub fn add(&mut self, def: ServiceDef) -> &mut Self {
        let container = ServiceContainer::new(def, self.transport.clone(), self.settings.clone());
        if let Some(metrics) = &self.metrics {
            container.ctx().set_metrics(metrics.clone());
        }
        #[cfg(feature = "http")]
        if let Some(web) = &self.web {
            container.ctx().set_web_server(web.clone());
        }
        self.containers.push(container);
        self
    }

    /// Records the metrics of every service of the runner in `metrics`
    /// (see [`service_metrics`](crate::service_metrics)); call it before
    /// starting. Without it nothing is recorded.
    pub fn metrics(&mut self, metrics: ServiceMetrics) -> &mut Self {
        for container in &self.containers {
            container.ctx().set_metrics(metrics.clone());
        }
        self.metrics = Some(metrics);
        self
    }

    /// Serves the `#[http]` entrypoints of every service of the runner on
    /// `server` instead of the process's server at `WEB_SERVER_ADDRESS`
    /// (the gateway passes a [`WebServer::mounted`] one). Call it before
    /// adding services.
    ///
    /// [`WebServer::mounted`]: crate::web::WebServer::mounted
    #[cfg(feature = "http")]
    pub fn web_server(&mut self, server: crate::web::WebServer) -> &mut Self {
        for container in &self.containers {
            container.ctx().set_web_server(server.clone());
        }
        self.web = Some(server);
        self
    }

    /// The hosted service names.
    pub fn service_names(&self) -> Vec<&str> {
        self.containers
            .iter()
            .map(ServiceContainer::service_name)
            .collect()
    }

    /// The container of one service (nameko's `get_container`).
    pub fn container(&self, service: &str) -> Option<&ServiceContainer> {
        self.containers.iter().find(|c| c.service_name() == service)
    }

    /// The container of one service, mutably (before start).
    pub fn container_mut(&mut self, service: &str) -> Option<&mut ServiceContainer> {
        self.containers
            .iter_mut()
            .find(|c| c.service_name() == service)
    }

    /// All containers.
    pub fn containers(&self) -> &[ServiceContainer] {
        &self.containers
    }

    /// The transport the services run on.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Starts every container. If one fails, the ones already started are
    /// stopped and the error is returned.
    pub async fn start(&mut self) -> Result<()> {
        let mut names: Vec<&str> = self.service_names();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::Lifecycle(format!(
                "service `{}` added twice",
                pair[0]
            )));
        }
        for index in 0..self.containers.len() {
            if let Err(err) = self.containers[index].start().await {
                let name = self.containers[index].service_name().to_owned();
                for started in &self.containers[..index] {
                    started.stop().await;
                }
                return Err(Error::ServiceStart {
                    service: name,
                    source: Box::new(err),
                });
            }
        }
        Ok(())
    }

    /// Stops every container gracefully, concurrently.
    pub async fn stop(&self) {
        futures::future::join_all(self.containers.iter().map(ServiceContainer::stop)).await;
    }

    /// Kills every container.
    pub async fn kill(&self) {
        futures::future::join_all(self.containers.iter().map(ServiceContainer::kill)).await;
    }

    /// Starts, runs until `signal` resolves, then stops gracefully.
    pub async fn run_until(&mut self, signal: impl Future<Output = ()>) -> Result<()> {
        self.start().await?;
        signal.await;
        self.stop().await;
        Ok(())
    }
}
