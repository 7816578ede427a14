//! [`ServiceContainer`]: hosts one service and drives its lifecycle in
//! nameko's order; [`ServiceDef`]: a service ready to be hosted.
//!
//! - **Start**: provider `setup`, entrypoint `setup` (declare queues and
//!   bindings), provider `start`, then entrypoint `start` (consume, tick).
//!   The entrypoints are the service's own (one [`RpcEntrypoint`] for all
//!   `#[rpc]` methods, one [`EventEntrypoint`] per `#[event_handler]`, one
//!   [`TimerEntrypoint`] per `#[timer]`) and any added with
//!   [`ServiceDef::with_entrypoint`].
//! - **Workers** run in the container's [`WorkerPool`], at most
//!   `max_workers` at once; a worker that fails or panics never takes the
//!   container down.
//! - **Graceful stop**: entrypoints stop taking input and their tasks end;
//!   in-flight workers are drained, up to `GRACE_PERIOD`, then killed;
//!   providers `stop`; the container's RPC client closes (mini-redis's
//!   shutdown, packaged as tokio-util's `CancellationToken` and
//!   `TaskTracker`).
//! - **Kill**: entrypoints and workers are cancelled where they wait (their
//!   deliveries go back to the broker unsettled), providers are killed.

use std::fmt;

use crate::message::Payload;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::config::Settings;
use crate::container_ctx::ContainerCtx;
use crate::context::{Incoming, WorkerCtx};
use crate::dependency::{DependencyProvider, ProviderSet};
use crate::describe::ServiceDescription;
use crate::entrypoint::event::EventEntrypoint;
#[cfg(feature = "http")]
use crate::entrypoint::http::HttpEntrypoint;
use crate::entrypoint::rpc::RpcEntrypoint;
use crate::entrypoint::timer::TimerEntrypoint;
use crate::entrypoint::{Entrypoint, ErasedEntrypoint};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::service::{EntrypointKind, EntrypointSpec, Service};
use crate::transport::Transport;
use crate::worker::{Invoke, WorkerPool};

/// Moved to [`crate::worker::WorkerRecord`].
#[deprecated(since = "0.1.0", note = "use `enoki::worker::WorkerRecord`")]
pub type WorkerRecord = crate::worker::WorkerRecord;

/// A service, type-erased, ready to be hosted: its name, entrypoints and
/// dependency providers. `enoki::service::<Greeter>()` makes one.
pub struct ServiceDef {
    name: &'static str,
    entrypoints: Vec<EntrypointSpec>,
    schemas: Vec<crate::schema::MethodSchema>,
    providers: ProviderSet,
    invoke: Invoke,
    extra: Vec<Box<dyn ErasedEntrypoint>>,
}

impl fmt::Debug for ServiceDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: Vec<&str> = self.extra.iter().map(|e| e.type_name()).collect();
        f.debug_struct("ServiceDef")
            .field("name", &self.name)
            .field("entrypoints", &self.entrypoints)
            .field("extra_entrypoints", &extra)
            .field("providers", &self.providers)
            .finish()
    }
}

impl ServiceDef {
    /// The definition of service `S`.
    pub fn new<S: Service>() -> Self {
        ServiceDef {
            name: S::NAME,
            entrypoints: S::entrypoints(),
            schemas: S::schemas(),
            providers: S::providers(),
            invoke: Invoke {
                payload: invoke::<S>,
                #[cfg(feature = "http")]
                http: invoke_http::<S>,
            },
            extra: Vec::new(),
        }
    }

    /// The service name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The entrypoints.
    pub fn entrypoints(&self) -> &[EntrypointSpec] {
        &self.entrypoints
    }

    /// The schemas of the RPC methods and event handlers.
    pub fn schemas(&self) -> &[crate::schema::MethodSchema] {
        &self.schemas
    }

    /// Adds an entrypoint of your own (see [`Entrypoint`]); it runs the
    /// service's methods through the container's worker pool.
    #[must_use]
    pub fn with_entrypoint(mut self, entrypoint: impl Entrypoint) -> Self {
        self.add_entrypoint(entrypoint);
        self
    }

    /// Adds an entrypoint of your own, in place.
    pub fn add_entrypoint(&mut self, entrypoint: impl Entrypoint) -> &mut Self {
        self.extra.push(Box::new(entrypoint));
        self
    }

    /// Replaces the provider of dependency `name` (nameko's
    /// `replace_dependencies`).
    pub fn replace_dependency<P: DependencyProvider>(
        &mut self,
        name: &str,
        provider: P,
    ) -> Result<()> {
        self.providers.replace(name, provider)
    }

    /// Keeps only the named entrypoints (nameko's `restrict_entrypoints`).
    pub fn restrict_entrypoints(&mut self, methods: &[&str]) -> Result<()> {
        for method in methods {
            if !self.entrypoints.iter().any(|e| e.method == *method) {
                return Err(Error::Lifecycle(format!(
                    "service `{}` has no entrypoint `{method}`",
                    self.name
                )));
            }
        }
        self.entrypoints.retain(|e| methods.contains(&e.method));
        Ok(())
    }

    /// The built-in entrypoints of the spec table, then the extra ones.
    fn take_entrypoints(&mut self) -> Result<Vec<Box<dyn ErasedEntrypoint>>> {
        let mut out: Vec<Box<dyn ErasedEntrypoint>> = Vec::new();
        let rpc: Vec<&'static str> = self
            .entrypoints
            .iter()
            .filter(|e| e.kind == EntrypointKind::Rpc)
            .map(|e| e.method)
            .collect();
        if !rpc.is_empty() {
            let description = ServiceDescription::of(self.name, &self.entrypoints);
            out.push(Box::new(RpcEntrypoint::new(rpc).describing(description)));
        }
        let http: Vec<_> = self
            .entrypoints
            .iter()
            .filter_map(|e| match e.kind {
                EntrypointKind::Http(spec) => Some((e.method, spec)),
                _ => None,
            })
            .collect();
        if !http.is_empty() {
            #[cfg(feature = "http")]
            out.push(Box::new(HttpEntrypoint::new(http)));
            #[cfg(not(feature = "http"))]
            return Err(Error::Lifecycle(format!(
                "service `{}` has #[http] entrypoints, but enoki was built without its `http` feature",
                self.name
            )));
        }
        for spec in &self.entrypoints {
            match &spec.kind {
                EntrypointKind::Rpc | EntrypointKind::Custom | EntrypointKind::Http(_) => {}
                EntrypointKind::Event(event) => {
                    out.push(Box::new(EventEntrypoint::new(spec.method, event.clone())));
                }
                EntrypointKind::Timer(timer) => {
                    out.push(Box::new(TimerEntrypoint::new(spec.method, *timer)));
                }
            }
        }
        out.append(&mut self.extra);
        Ok(out)
    }
}

fn invoke<S: Service>(
    providers: &ProviderSet,
    worker: WorkerCtx,
    method: &'static str,
    payload: Payload,
) -> BoxFuture<'static, Outcome> {
    // Dependencies are injected now, before `worker_setup` (nameko's order).
    let service = S::inject(providers, &worker);
    Box::pin(async move { service.dispatch(method, payload.as_bytes(), &worker).await })
}

#[cfg(feature = "http")]
fn invoke_http<S: Service>(
    providers: &ProviderSet,
    worker: WorkerCtx,
    method: &'static str,
    request: crate::web::Request,
) -> BoxFuture<'static, crate::web::Response> {
    let service = S::inject(providers, &worker);
    Box::pin(async move { service.dispatch_http(method, request, &worker).await })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Stopped,
}

/// Hosts one service.
pub struct ServiceContainer {
    def: Option<ServiceDef>,
    pool: Option<WorkerPool>,
    ctx: ContainerCtx,
    entrypoints: Mutex<Vec<Box<dyn ErasedEntrypoint>>>,
    state: Mutex<State>,
    records: crate::worker::Records,
}

impl fmt::Debug for ServiceContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceContainer")
            .field("service", &self.ctx.service_name())
            .field("state", &*self.state.lock())
            .finish_non_exhaustive()
    }
}

impl ServiceContainer {
    /// A container for `def` on `transport`.
    pub fn new(
        def: ServiceDef,
        transport: std::sync::Arc<dyn Transport>,
        settings: Settings,
    ) -> Self {
        let ctx = ContainerCtx::new(def.name, settings, transport);
        let records = crate::worker::Records::new(256);
        ServiceContainer {
            def: Some(def),
            pool: None,
            ctx,
            entrypoints: Mutex::new(Vec::new()),
            state: Mutex::new(State::Created),
            records,
        }
    }

    /// The service name.
    pub fn service_name(&self) -> &str {
        self.ctx.service_name()
    }

    /// The container context (settings, transport).
    pub fn ctx(&self) -> &ContainerCtx {
        &self.ctx
    }

    /// The service definition, before start (to replace dependencies,
    /// restrict entrypoints or add entrypoints).
    pub fn def_mut(&mut self) -> Result<&mut ServiceDef> {
        self.def
            .as_mut()
            .ok_or_else(|| Error::Lifecycle("the container has already started".into()))
    }

    /// `max_workers` of this container.
    pub fn max_workers(&self) -> usize {
        self.ctx.settings().max_workers()
    }

    /// Workers running now.
    pub fn running_workers(&self) -> usize {
        self.pool.as_ref().map_or(0, WorkerPool::running)
    }

    /// The worker pool, once started.
    pub fn workers(&self) -> Option<&WorkerPool> {
        self.pool.as_ref()
    }

    /// A stream of finished workers (for `entrypoint_waiter`).
    pub fn subscribe(&self) -> broadcast::Receiver<crate::worker::WorkerRecord> {
        self.records.subscribe()
    }

    /// Sets up providers and entrypoints, then starts them. Returns once
    /// every entrypoint is taking input. Settings of the wrong type are an
    /// error naming the key.
    pub async fn start(&mut self) -> Result<()> {
        let mut def = self
            .def
            .take()
            .ok_or_else(|| Error::Lifecycle("the container has already started".into()))?;
        self.ctx.settings().validate()?;
        let name = def.name;
        let mut entrypoints = def.take_entrypoints()?;
        def.providers.setup(&self.ctx).await?;
        for entrypoint in &mut entrypoints {
            entrypoint.setup(&self.ctx).await?;
        }
        let methods = def.entrypoints.iter().map(|e| e.method).collect();
        let pool = WorkerPool::new(
            name,
            self.ctx.clone(),
            methods,
            def.providers,
            def.invoke,
            self.records.clone(),
        );
        self.pool = Some(pool.clone());
        let started = async {
            pool.providers().start().await?;
            for entrypoint in &mut entrypoints {
                entrypoint.start(pool.clone()).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        *self.entrypoints.lock() = entrypoints;
        if let Err(err) = started {
            self.kill().await;
            return Err(err);
        }
        *self.state.lock() = State::Running;
        tracing::info!(service = name, "service started");
        Ok(())
    }

    /// Calls an entrypoint through the container, as if it had been
    /// triggered, and returns its outcome (nameko's `entrypoint_hook`).
    /// `payload` is what the entrypoint would receive: an RPC request body
    /// (`{"args": [...], "kwargs": {...}}`), an event payload, or nothing.
    pub async fn call_entrypoint(
        &self,
        method: &str,
        payload: impl Into<Payload>,
        context: impl Into<Incoming>,
    ) -> Result<Outcome> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| Error::Lifecycle("the container is not running".into()))?;
        let method = pool.method(method).ok_or_else(|| {
            Error::Lifecycle(format!(
                "service `{}` has no entrypoint `{method}`",
                pool.service_name()
            ))
        })?;
        let slot = pool.acquire().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        pool.spawn(
            slot,
            method,
            payload,
            context,
            move |outcome: Outcome| async move {
                let _ = tx.send(outcome.clone());
                outcome
            },
        );
        rx.await
            .map_err(|_| Error::Lifecycle("the worker was killed".into()))
    }

    /// Stops gracefully: stop entrypoints, drain workers (up to
    /// `GRACE_PERIOD`, then kill them), stop providers, close the RPC
    /// client.
    pub async fn stop(&self) {
        {
            let mut state = self.state.lock();
            let running = *state == State::Running;
            *state = State::Stopped;
            if !running {
                return;
            }
        }
        let name = self.ctx.service_name().to_owned();
        tracing::info!(service = %name, "stopping service");
        if let Some(pool) = &self.pool {
            pool.begin_stop();
            let mut entrypoints: Vec<_> = self.entrypoints.lock().drain(..).collect();
            for entrypoint in &mut entrypoints {
                entrypoint.stop().await;
            }
            pool.join_managed().await;
            let left = pool.drain(self.ctx.settings().grace_period()).await;
            if left > 0 {
                tracing::warn!(
                    service = %name,
                    workers = left,
                    "workers still running after the grace period were killed"
                );
            }
            pool.providers().stop().await;
        }
        self.ctx.close_rpc().await;
        tracing::info!(service = %name, "service stopped");
    }

    /// Stops at once: entrypoints and workers are cancelled (their
    /// deliveries go back to the broker), providers are killed.
    pub async fn kill(&self) {
        *self.state.lock() = State::Stopped;
        // Consuming stops first: the deliveries the killed workers give
        // back must stay on the queue, not come round to this container
        // again (where each would count as a crash of its own).
        if let Some(pool) = &self.pool {
            pool.begin_stop();
        }
        self.ctx.kill_token().cancel();
        let mut entrypoints: Vec<_> = self.entrypoints.lock().drain(..).collect();
        for entrypoint in &mut entrypoints {
            entrypoint.kill();
        }
        if let Some(pool) = &self.pool {
            pool.kill().await;
            pool.providers().kill();
        }
        self.ctx.close_rpc().await;
    }
}
