//! Testing support: `nameko.testing` for Rust.
//!
//! | nameko | enoki |
//! |---|---|
//! | `worker_factory(Service, **deps)` | [`worker_factory`] |
//! | `entrypoint_hook(container, "m", context_data=...)` | [`entrypoint_hook`] |
//! | `entrypoint_waiter(container, "m")` | [`entrypoint_waiter`] |
//! | `replace_dependencies(container, "dep")` | [`replace_dependencies`] + [`MockProvider`] |
//! | `restrict_entrypoints(container, "m")` | [`restrict_entrypoints`] |
//! | `runner_factory(config, *services)` | [`Cluster`] |
//!
//! Everything runs on the embedded [`MemoryTransport`], so tests need no
//! broker.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::client::ClusterRpc;
use crate::config::Settings;
use crate::container::{ServiceContainer, ServiceDef};
use crate::container_ctx::ContainerCtx;
use crate::context::{ContextData, WorkerCtx};
use crate::dependency::{DependencyProvider, ProviderSet};
use crate::error::{Error, RemoteError, Result};
use crate::runner::ServiceRunner;
use crate::service::Service;
use crate::transport::{MemoryTransport, Transport};
use crate::worker::WorkerRecord;

// ===== worker_factory =====

/// Builds a bare service instance, with its real providers set up on a
/// private embedded broker, or with the providers you choose (nameko's
/// `worker_factory`). Call its methods directly.
///
/// ```
/// use enoki::prelude::*;
/// use enoki::testing::{MockProvider, worker_factory};
///
/// #[derive(Dependencies)]
/// struct Pricer {
///     #[dependency(Config)]
///     config: Settings,
/// }
///
/// #[service(name = "pricer")]
/// impl Pricer {
///     #[rpc]
///     async fn vat(&self, net: f64) -> Result<f64, RemoteError> {
///         let rate = self.config.get_as::<f64>("VAT_RATE")?.unwrap_or(0.2);
///         Ok(net * rate)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
/// let settings = Settings::new().with("VAT_RATE", 0.25.into());
/// let pricer = worker_factory::<Pricer>()
///     .replace("config", MockProvider::new(settings))
///     .build()
///     .await?;
/// assert_eq!(pricer.vat(100.0).await.unwrap(), 25.0);
/// # Ok(()) }
/// ```
pub fn worker_factory<S: Service>() -> WorkerFactory<S> {
    WorkerFactory {
        providers: S::providers(),
        settings: Settings::new(),
        transport: MemoryTransport::new(),
        replace_error: None,
        _service: PhantomData,
    }
}

/// The builder returned by [`worker_factory`].
pub struct WorkerFactory<S> {
    providers: ProviderSet,
    settings: Settings,
    transport: Arc<MemoryTransport>,
    replace_error: Option<Error>,
    _service: PhantomData<fn() -> S>,
}

impl<S> fmt::Debug for WorkerFactory<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerFactory")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl<S: Service> WorkerFactory<S> {
    /// Uses `provider` for dependency `name`.
    #[must_use]
    pub fn replace<P: DependencyProvider>(mut self, name: &str, provider: P) -> Self {
        if let Err(err) = self.providers.replace(name, provider) {
            self.replace_error.get_or_insert(err);
        }
        self
    }

    /// Settings the providers see at setup.
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The private embedded broker, e.g. to watch the events the service
    /// dispatches.
    pub fn transport(&self) -> Arc<MemoryTransport> {
        self.transport.clone()
    }

    /// Sets up the providers and injects one instance.
    pub async fn build(mut self) -> Result<Worker<S>> {
        if let Some(err) = self.replace_error {
            return Err(err);
        }
        let ctx = ContainerCtx::new(S::NAME, self.settings, self.transport);
        self.providers.setup(&ctx).await?;
        let worker = WorkerCtx::new(S::NAME, "worker_factory", ContextData::default(), 10);
        let service = S::inject(&self.providers, &worker);
        Ok(Worker {
            service,
            worker,
            _providers: self.providers,
            _ctx: ctx,
        })
    }
}

/// A service instance built by [`worker_factory`]; derefs to the service.
pub struct Worker<S> {
    service: S,
    worker: WorkerCtx,
    _providers: ProviderSet,
    _ctx: ContainerCtx,
}

impl<S> Worker<S> {
    /// The worker context the dependencies were bound to.
    pub fn ctx(&self) -> &WorkerCtx {
        &self.worker
    }
}

impl<S> Deref for Worker<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.service
    }
}

impl<S> fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// A provider that hands every worker a clone of one value: the stand-in
/// for nameko's `MagicMock` dependencies.
#[derive(Debug, Clone)]
pub struct MockProvider<D> {
    value: D,
}

impl<D: Clone + Send + Sync + 'static> MockProvider<D> {
    /// Provides clones of `value`.
    pub fn new(value: D) -> Self {
        MockProvider { value }
    }
}

impl<D: Clone + Send + Sync + 'static> DependencyProvider for MockProvider<D> {
    type Dependency = D;

    fn get_dependency(&self, _worker: &WorkerCtx) -> D {
        self.value.clone()
    }
}

// ===== container surgery =====

/// Replaces the provider of dependency `name` before the container starts
/// (nameko's `replace_dependencies`). The replacement must provide the
/// same dependency type; [`MockProvider`] hands out a value of your choice.
///
/// ```
/// use enoki::prelude::*;
/// use enoki::testing::{Cluster, MockProvider, replace_dependencies};
///
/// #[derive(Dependencies)]
/// struct Greeter {
///     #[dependency(Config)]
///     config: Settings,
/// }
///
/// #[service(name = "greeter")]
/// impl Greeter {
///     #[rpc]
///     async fn greeting(&self) -> Result<String, RemoteError> {
///         Ok(self.config.get_as::<String>("GREETING")?.unwrap_or_else(|| "Hello".into()))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
/// let mut cluster = Cluster::builder([enoki::service::<Greeter>()], Settings::new());
/// let container = cluster.container_mut("greeter").unwrap();
/// let settings = Settings::new().with("GREETING", "Ahoy".into());
/// replace_dependencies(container, "config", MockProvider::new(settings))?;
/// let cluster = cluster.start().await?;
/// assert_eq!(GreeterClient::new(cluster.rpc()).greeting().await?, "Ahoy");
/// cluster.stop().await;
/// # Ok(()) }
/// ```
pub fn replace_dependencies<P: DependencyProvider>(
    container: &mut ServiceContainer,
    name: &str,
    provider: P,
) -> Result<()> {
    container.def_mut()?.replace_dependency(name, provider)
}

/// Keeps only the named entrypoints before the container starts (nameko's
/// `restrict_entrypoints`), e.g. to keep timers quiet.
///
/// ```
/// use enoki::prelude::*;
/// use enoki::testing::{Cluster, restrict_entrypoints};
///
/// #[derive(Dependencies)]
/// struct Janitor;
///
/// #[service(name = "janitor")]
/// impl Janitor {
///     #[timer(interval = 1, eager = true)]
///     async fn sweep(&self) -> Result<(), RemoteError> {
///         panic!("restricted away: never runs")
///     }
///
///     #[rpc]
///     async fn status(&self) -> Result<String, RemoteError> {
///         Ok("clean".into())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
/// let mut cluster = Cluster::builder([enoki::service::<Janitor>()], Settings::new());
/// restrict_entrypoints(cluster.container_mut("janitor").unwrap(), &["status"])?;
/// let cluster = cluster.start().await?;
/// assert_eq!(JanitorClient::new(cluster.rpc()).status().await?, "clean");
/// cluster.stop().await;
/// # Ok(()) }
/// ```
pub fn restrict_entrypoints(container: &mut ServiceContainer, methods: &[&str]) -> Result<()> {
    container.def_mut()?.restrict_entrypoints(methods)
}

// ===== entrypoint_hook =====

/// Calls an entrypoint of a running container, through a real worker
/// (nameko's `entrypoint_hook`).
///
/// ```
/// use enoki::prelude::*;
/// use enoki::testing::{Cluster, entrypoint_hook};
/// use serde_json::json;
///
/// #[derive(Dependencies)]
/// struct Greeter;
///
/// #[service(name = "greeter")]
/// impl Greeter {
///     #[rpc]
///     async fn hello(&self, name: String, ctx: &WorkerCtx) -> Result<String, RemoteError> {
///         Ok(format!("Hello, {name} ({})!", ctx.language().unwrap_or("?")))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
/// let cluster = Cluster::start([enoki::service::<Greeter>()]).await?;
/// let container = cluster.container("greeter").unwrap();
/// let reply = entrypoint_hook(container, "hello")
///     .context_data("language", json!("en"))
///     .call(json!(["Ann"]))
///     .await;
/// assert_eq!(reply.unwrap(), json!("Hello, Ann (en)!"));
/// cluster.stop().await;
/// # Ok(()) }
/// ```
pub fn entrypoint_hook<'a>(container: &'a ServiceContainer, method: &str) -> EntrypointHook<'a> {
    EntrypointHook {
        container,
        method: method.to_owned(),
        context: ContextData::default(),
    }
}

/// The hook returned by [`entrypoint_hook`].
#[derive(Debug)]
pub struct EntrypointHook<'a> {
    container: &'a ServiceContainer,
    method: String,
    context: ContextData,
}

impl EntrypointHook<'_> {
    /// Adds one context-data item.
    #[must_use]
    pub fn context_data(mut self, key: &str, value: Value) -> Self {
        self.context.data.insert(key.to_owned(), value);
        self
    }

    /// Calls an RPC entrypoint with positional arguments.
    pub async fn call(&self, args: Value) -> std::result::Result<Value, RemoteError> {
        self.call_with(args, Map::new()).await
    }

    /// Calls an RPC entrypoint with positional and keyword arguments.
    pub async fn call_with(
        &self,
        args: Value,
        kwargs: Map<String, Value>,
    ) -> std::result::Result<Value, RemoteError> {
        let body = crate::message::encode_request(&args, &kwargs);
        self.call_raw(Bytes::from(body)).await
    }

    /// Calls an event handler with an event payload.
    pub async fn handle_event(&self, payload: &Value) -> std::result::Result<Value, RemoteError> {
        let body = serde_json::to_vec(payload).map_err(RemoteError::from)?;
        self.call_raw(Bytes::from(body)).await
    }

    /// Runs a timer entrypoint once.
    pub async fn tick(&self) -> std::result::Result<Value, RemoteError> {
        self.call_raw(Bytes::new()).await
    }

    async fn call_raw(&self, payload: Bytes) -> std::result::Result<Value, RemoteError> {
        let outcome = self
            .container
            .call_entrypoint(&self.method, payload, self.context.clone())
            .await
            .map_err(RemoteError::from)?;
        let raw = outcome?;
        serde_json::from_str(raw.get()).map_err(RemoteError::from)
    }
}

// ===== entrypoint_waiter =====

/// Waits until a worker for `method` has finished and been torn down
/// (nameko's `entrypoint_waiter`). Create it *before* triggering the
/// entrypoint, then `wait`.
///
/// ```
/// use enoki::prelude::*;
/// use enoki::testing::{Cluster, entrypoint_waiter};
/// use serde_json::json;
///
/// #[derive(Dependencies)]
/// struct Audit;
///
/// #[service(name = "audit")]
/// impl Audit {
///     #[event_handler("shop", "sold")]
///     async fn on_sold(&self, item: String) -> Result<String, RemoteError> {
///         Ok(format!("logged {item}"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
/// let cluster = Cluster::start([enoki::service::<Audit>()]).await?;
/// let waiter = entrypoint_waiter(cluster.container("audit").unwrap(), "on_sold");
/// cluster.dispatch("shop", "sold", &json!("hat")).await?;
/// let record = waiter.wait().await?;
/// assert_eq!(record.result().unwrap(), json!("logged hat"));
/// cluster.stop().await;
/// # Ok(()) }
/// ```
pub fn entrypoint_waiter(container: &ServiceContainer, method: &str) -> EntrypointWaiter {
    EntrypointWaiter {
        records: container.subscribe(),
        method: method.to_owned(),
        timeout: Duration::from_secs(30),
        filter: None,
    }
}

type Filter = Box<dyn Fn(&WorkerRecord) -> bool + Send>;

/// The waiter returned by [`entrypoint_waiter`].
pub struct EntrypointWaiter {
    records: tokio::sync::broadcast::Receiver<WorkerRecord>,
    method: String,
    timeout: Duration,
    filter: Option<Filter>,
}

impl fmt::Debug for EntrypointWaiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntrypointWaiter")
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EntrypointWaiter {
    /// How long to wait (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Only finish for a worker this returns true for (nameko's
    /// `callback`).
    #[must_use]
    pub fn filter(mut self, filter: impl Fn(&WorkerRecord) -> bool + Send + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// Waits for the worker.
    pub async fn wait(mut self) -> Result<WorkerRecord> {
        let method = self.method.clone();
        let timeout = self.timeout;
        let wait = async {
            loop {
                match self.records.recv().await {
                    Ok(record) => {
                        if record.entrypoint == self.method
                            && self.filter.as_ref().is_none_or(|f| f(&record))
                        {
                            return Ok(record);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return Err(Error::Lifecycle("the container is gone".into()));
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            Error::Lifecycle(format!(
                "entrypoint_waiter: `{method}` did not run within {timeout:?}"
            ))
        })?
    }
}

impl WorkerRecord {
    /// The worker's result as JSON, or its error.
    pub fn result(&self) -> std::result::Result<Value, RemoteError> {
        match &*self.outcome {
            Ok(raw) => serde_json::from_str(raw.get()).map_err(RemoteError::from),
            Err(err) => Err(err.clone()),
        }
    }
}

// ===== Cluster =====

/// Services running together on a private embedded broker, with a client
/// (nameko's `runner_factory` + `ClusterRpcProxy`).
#[derive(Debug)]
pub struct Cluster {
    transport: Arc<MemoryTransport>,
    runner: ServiceRunner,
    rpc: ClusterRpc,
    settings: Settings,
}

impl Cluster {
    /// Starts `services` with default settings.
    pub async fn start(services: impl IntoIterator<Item = ServiceDef>) -> Result<Cluster> {
        Cluster::start_with(services, Settings::new()).await
    }

    /// Starts `services` with `settings`.
    pub async fn start_with(
        services: impl IntoIterator<Item = ServiceDef>,
        settings: Settings,
    ) -> Result<Cluster> {
        Cluster::builder(services, settings).start().await
    }

    /// A cluster not yet started, for container surgery first.
    pub fn builder(
        services: impl IntoIterator<Item = ServiceDef>,
        settings: Settings,
    ) -> ClusterBuilder {
        let transport = MemoryTransport::new();
        let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
        for service in services {
            runner.add(service);
        }
        ClusterBuilder {
            transport,
            runner,
            settings,
        }
    }

    /// The embedded broker.
    pub fn transport(&self) -> Arc<MemoryTransport> {
        self.transport.clone()
    }

    /// A standalone client.
    pub fn rpc(&self) -> &ClusterRpc {
        &self.rpc
    }

    /// The runner.
    pub fn runner(&self) -> &ServiceRunner {
        &self.runner
    }

    /// The container of one service.
    pub fn container(&self, service: &str) -> Option<&ServiceContainer> {
        self.runner.container(service)
    }

    /// Dispatches an event as `source` (no context headers).
    pub async fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: &impl serde::Serialize,
    ) -> Result<()> {
        let transport: Arc<dyn Transport> = self.transport.clone();
        crate::client::EventPublisher::new(transport, &self.settings)
            .dispatch(source, event_type, payload)
            .await
    }

    /// Stops every service gracefully.
    pub async fn stop(&self) {
        self.runner.stop().await;
        self.rpc.close().await;
    }
}

/// A [`Cluster`] before start.
#[derive(Debug)]
pub struct ClusterBuilder {
    transport: Arc<MemoryTransport>,
    runner: ServiceRunner,
    settings: Settings,
}

impl ClusterBuilder {
    /// The container of one service, for [`replace_dependencies`] and
    /// [`restrict_entrypoints`].
    pub fn container_mut(&mut self, service: &str) -> Option<&mut ServiceContainer> {
        self.runner.container_mut(service)
    }

    /// Starts the services and connects a client.
    pub async fn start(mut self) -> Result<Cluster> {
        self.runner.start().await?;
        let rpc = ClusterRpc::connect(self.transport.clone(), &self.settings).await?;
        Ok(Cluster {
            transport: self.transport,
            runner: self.runner,
            rpc,
            settings: self.settings,
        })
    }
}
