//! [`ServiceContainer`]: hosts one service, runs its workers, and drives
//! its lifecycle in nameko's order.
//!
//! - **Start**: provider `setup`, entrypoint setup (declare queues and
//!   bindings), provider `start`, then entrypoints start consuming and
//!   ticking.
//! - **Workers**: each delivery, tick or hook call becomes a worker: a
//!   fresh service instance ([`Dependencies::inject`](crate::Dependencies::inject)), `worker_setup`, the
//!   method, the entrypoint's result handling (reply, ack), `worker_result`,
//!   `worker_teardown`. At most `max_workers` run at once, across all
//!   entrypoints (a semaphore, as mini-redis bounds its connections). A
//!   worker that fails or panics never takes the container down.
//! - **Graceful stop**: entrypoints stop consuming; in-flight workers are
//!   drained, up to `GRACE_PERIOD`, then killed; providers `stop`; the
//!   container's RPC client closes. Workers run on a tokio-util
//!   `TaskTracker`; stopping and killing use `CancellationToken`s
//!   (mini-redis's broadcast and mpsc shutdown tricks, packaged).
//! - **Kill**: workers are cancelled where they wait (their deliveries go
//!   back to the broker unsettled), providers are killed.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::context::{ContainerCtx, ContextData, WorkerCtx};
use crate::dependency::{DependencyProvider, ProviderSet};
use crate::entrypoint;
use crate::error::{Error, RemoteError, Result};
use crate::service::{EntrypointKind, EntrypointSpec, Outcome, Service};
use crate::transport::Transport;

type InvokeFn = fn(&ProviderSet, WorkerCtx, &'static str, Bytes) -> BoxFuture<'static, Outcome>;

/// A service, type-erased, ready to be hosted: its name, entrypoints and
/// dependency providers. `enoki::service::<Greeter>()` makes one.
pub struct ServiceDef {
    name: &'static str,
    entrypoints: Vec<EntrypointSpec>,
    providers: ProviderSet,
    invoke: InvokeFn,
}

impl fmt::Debug for ServiceDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceDef")
            .field("name", &self.name)
            .field("entrypoints", &self.entrypoints)
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
            providers: S::providers(),
            invoke: invoke::<S>,
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
}

fn invoke<S: Service>(
    providers: &ProviderSet,
    worker: WorkerCtx,
    method: &'static str,
    payload: Bytes,
) -> BoxFuture<'static, Outcome> {
    // Dependencies are injected now, before `worker_setup` (nameko's order).
    let service = S::inject(providers, &worker);
    Box::pin(async move { service.dispatch(method, &payload, &worker).await })
}

/// A finished worker, as seen by [`ServiceContainer::subscribe`].
#[derive(Debug, Clone)]
pub struct WorkerRecord {
    /// The entrypoint method that ran.
    pub entrypoint: &'static str,
    /// The worker's context.
    pub worker: WorkerCtx,
    /// What it returned.
    pub outcome: Arc<Outcome>,
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
    shared: Option<Arc<Shared>>,
    ctx: ContainerCtx,
    stop: CancellationToken,
    entrypoints: Mutex<Vec<JoinHandle<()>>>,
    state: Mutex<State>,
    records: broadcast::Sender<WorkerRecord>,
}

impl fmt::Debug for ServiceContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceContainer")
            .field("service", &self.ctx.service_name())
            .field("state", &*self.state.lock())
            .finish_non_exhaustive()
    }
}

/// What entrypoints and workers share.
pub(crate) struct Shared {
    pub(crate) name: &'static str,
    pub(crate) ctx: ContainerCtx,
    pub(crate) entrypoints: Vec<EntrypointSpec>,
    providers: Arc<ProviderSet>,
    invoke: InvokeFn,
    permits: Arc<Semaphore>,
    workers: TaskTracker,
    kill: CancellationToken,
    parent_calls_tracked: usize,
    records: broadcast::Sender<WorkerRecord>,
}

impl ServiceContainer {
    /// A container for `def` on `transport`.
    pub fn new(def: ServiceDef, transport: Arc<dyn Transport>, settings: Settings) -> Self {
        let ctx = ContainerCtx::new(def.name, settings, transport);
        let (records, _) = broadcast::channel(256);
        ServiceContainer {
            def: Some(def),
            shared: None,
            ctx,
            stop: CancellationToken::new(),
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

    /// The service definition, before start (to replace dependencies or
    /// restrict entrypoints).
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
        self.shared
            .as_ref()
            .map_or(0, |shared| shared.workers.len())
    }

    /// A stream of finished workers (for `entrypoint_waiter`).
    pub fn subscribe(&self) -> broadcast::Receiver<WorkerRecord> {
        self.records.subscribe()
    }

    /// Sets up providers and entrypoints, then starts them. Returns once
    /// every entrypoint is consuming.
    pub async fn start(&mut self) -> Result<()> {
        let mut def = self
            .def
            .take()
            .ok_or_else(|| Error::Lifecycle("the container has already started".into()))?;
        let name = def.name;
        def.providers.setup(&self.ctx).await?;
        let settings = self.ctx.settings();
        let shared = Arc::new(Shared {
            name,
            ctx: self.ctx.clone(),
            entrypoints: def.entrypoints,
            providers: Arc::new(def.providers),
            invoke: def.invoke,
            permits: Arc::new(Semaphore::new(settings.max_workers())),
            workers: TaskTracker::new(),
            kill: self.ctx.kill_token().clone(),
            parent_calls_tracked: settings.parent_calls_tracked(),
            records: self.records.clone(),
        });
        self.shared = Some(shared.clone());
        let prepared = entrypoint::setup_all(&shared).await?;
        shared.providers.start().await?;
        *self.entrypoints.lock() = entrypoint::start_all(&shared, prepared, &self.stop).await?;
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
        payload: Bytes,
        context: ContextData,
    ) -> Result<Outcome> {
        let shared = self
            .shared
            .as_ref()
            .ok_or_else(|| Error::Lifecycle("the container is not running".into()))?;
        let method = shared.entrypoint(method).ok_or_else(|| {
            Error::Lifecycle(format!(
                "service `{}` has no entrypoint `{method}`",
                shared.name
            ))
        })?;
        let permit = shared.permit().await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        shared.spawn_worker(
            permit,
            method,
            payload,
            context,
            move |outcome: Outcome| async move {
                let copy = clone_outcome(&outcome);
                let _ = tx.send(copy);
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
            if *state != State::Running {
                *state = State::Stopped;
                return;
            }
            *state = State::Stopped;
        }
        let name = self.ctx.service_name().to_owned();
        tracing::info!(service = %name, "stopping service");
        self.stop.cancel();
        let tasks: Vec<_> = self.entrypoints.lock().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        if let Some(shared) = &self.shared {
            shared.workers.close();
            let grace = self.ctx.settings().grace_period();
            if tokio::time::timeout(grace, shared.workers.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    service = %name,
                    workers = shared.workers.len(),
                    "workers still running after the grace period; killing them"
                );
                shared.kill.cancel();
                shared.workers.wait().await;
            }
            shared.providers.stop().await;
        }
        self.ctx.close_rpc().await;
        tracing::info!(service = %name, "service stopped");
    }

    /// Stops at once: entrypoints and workers are cancelled (their
    /// deliveries go back to the broker), providers are killed.
    pub async fn kill(&self) {
        *self.state.lock() = State::Stopped;
        self.stop.cancel();
        self.ctx.kill_token().cancel();
        let tasks: Vec<_> = self.entrypoints.lock().drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        if let Some(shared) = &self.shared {
            shared.workers.close();
            shared.workers.wait().await;
            shared.providers.kill();
        }
        self.ctx.close_rpc().await;
    }
}

impl Shared {
    /// The `&'static` name of an entrypoint method.
    pub(crate) fn entrypoint(&self, method: &str) -> Option<&'static str> {
        self.entrypoints
            .iter()
            .find(|e| e.method == method)
            .map(|e| e.method)
    }

    /// The RPC methods.
    pub(crate) fn rpc_method(&self, method: &str) -> Option<&'static str> {
        self.entrypoints
            .iter()
            .find(|e| e.method == method && e.kind == EntrypointKind::Rpc)
            .map(|e| e.method)
    }

    /// Waits for a free worker slot.
    pub(crate) async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Lifecycle("the container is stopping".into()))
    }

    /// Runs one worker: inject, `worker_setup`, the method, then
    /// `handle_result` (the entrypoint's reply and ack), `worker_result`,
    /// `worker_teardown`.
    pub(crate) fn spawn_worker<F, Fut>(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        method: &'static str,
        payload: Bytes,
        incoming: ContextData,
        handle_result: F,
    ) where
        F: FnOnce(Outcome) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Outcome> + Send,
    {
        let shared = self.clone();
        let kill = self.kill.clone();
        self.workers.spawn(async move {
            let _permit = permit;
            let worker = WorkerCtx::with_cancel(
                std::borrow::Cow::Borrowed(shared.name),
                std::borrow::Cow::Borrowed(method),
                incoming,
                shared.parent_calls_tracked,
                kill.clone(),
            );
            // Boxed: the task itself stays small (tokio allocates task cells
            // cache-aligned, and moves the future in).
            let body = Box::pin(async {
                let call = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    (shared.invoke)(&shared.providers, worker.clone(), method, payload)
                }));
                shared.providers.worker_setup(&worker).await;
                let call = async move {
                    match call {
                        Ok(call) => call.await,
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                };
                let outcome = match AssertUnwindSafe(call).catch_unwind().await {
                    Ok(outcome) => outcome,
                    Err(panic) => {
                        let message = panic_message(&*panic);
                        tracing::error!(
                            service = shared.name, method, call_id = worker.call_id(), %message,
                            "worker panicked"
                        );
                        Err(RemoteError::panic(message))
                    }
                };
                if let Err(error) = &outcome {
                    if error.is_bad_request() {
                        tracing::warn!(service = shared.name, method, %error, "bad request");
                    } else {
                        tracing::error!(
                            service = shared.name, method, call_id = worker.call_id(), %error,
                            "worker failed"
                        );
                    }
                }
                let outcome = handle_result(outcome).await;
                shared.providers.worker_result(&worker, &outcome).await;
                shared.providers.worker_teardown(&worker).await;
                outcome
            });
            tokio::select! {
                biased;
                outcome = AssertUnwindSafe(body).catch_unwind() => match outcome {
                    Ok(outcome) => {
                        if shared.records.receiver_count() > 0 {
                            let _ = shared.records.send(WorkerRecord {
                                entrypoint: method,
                                worker,
                                outcome: Arc::new(outcome),
                            });
                        }
                    }
                    Err(panic) => tracing::error!(
                        service = shared.name, method, message = %panic_message(&*panic),
                        "worker lifecycle panicked"
                    ),
                },
                () = kill.cancelled() => {
                    tracing::warn!(service = shared.name, method, "worker killed");
                }
            }
        });
    }
}

/// Copies an outcome (results are small JSON values).
pub(crate) fn clone_outcome(outcome: &Outcome) -> Outcome {
    match outcome {
        Ok(raw) => Ok(raw.clone()),
        Err(err) => Err(err.clone()),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "worker panicked".to_owned()
    }
}
