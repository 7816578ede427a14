//! The worker pool of a container: where entrypoints turn what they receive
//! into workers (nameko's `container.spawn_worker`).
//!
//! A [`WorkerPool`] is what an [`Entrypoint`](crate::entrypoint::Entrypoint)
//! gets when it starts. Its contract:
//!
//! - **The `max_workers` bound.** A worker runs only with a [`WorkerSlot`];
//!   there are `max_workers` slots per container, shared by all its
//!   entrypoints (a semaphore, as mini-redis bounds its connections).
//!   [`WorkerPool::slot`] waits for one, so an entrypoint that asks for a
//!   slot before taking the next message applies back-pressure to its
//!   source. It answers `None` once the container stops.
//! - **One worker** ([`WorkerPool::spawn`], or [`WorkerPool::worker`] for
//!   the same worker as a future the entrypoint runs): a fresh service
//!   instance with
//!   its dependencies injected, the providers' `worker_setup`, the method
//!   (a panic becomes a `WorkerPanic` error), then the entrypoint's
//!   `on_result` callback with the outcome, where it replies, acks or
//!   rejects, then `worker_result` and `worker_teardown` with the outcome
//!   `on_result` returned. The slot is released when the worker ends. Each
//!   worker runs in a `tracing` span `worker` with the service, the method
//!   and the call id, so a handler's own `tracing::info!` is attributed.
//! - **Stop.** When the container stops, [`WorkerPool::stopped`] resolves
//!   and `slot` answers `None`: entrypoints stop taking input. The
//!   container then waits for the tasks the entrypoints spawned with
//!   [`WorkerPool::spawn_managed`], then for the workers in flight, up to
//!   `GRACE_PERIOD`.
//! - **Kill.** Managed tasks are aborted and workers are dropped where they
//!   wait: `on_result` does not run, so a delivery a worker held goes back
//!   to its queue unsettled. [`WorkerCtx::cancelled`] resolves inside the
//!   workers first.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::container_ctx::ContainerCtx;
use crate::context::{Incoming, WorkerCtx};
use crate::dependency::ProviderSet;
use crate::error::RemoteError;
use crate::message::Payload;
use crate::outcome::Outcome;
use crate::service_metrics::EntrypointMetrics;

/// Runs one method of a service: injects a fresh instance and dispatches.
pub(crate) type InvokeFn =
    fn(&ProviderSet, WorkerCtx, &'static str, Payload) -> BoxFuture<'static, Outcome>;

/// Runs one `#[http]` method: injects a fresh instance and dispatches the
/// request.
#[cfg(feature = "http")]
pub(crate) type HttpInvokeFn = fn(
    &ProviderSet,
    WorkerCtx,
    &'static str,
    crate::web::Request,
) -> BoxFuture<'static, crate::web::Response>;

/// How a container's workers call into its service.
#[derive(Clone, Copy)]
pub(crate) struct Invoke {
    /// Methods that take a payload (RPC, events, timers, custom).
    pub(crate) payload: InvokeFn,
    /// `#[http]` methods.
    #[cfg(feature = "http")]
    pub(crate) http: HttpInvokeFn,
}

/// What one worker runs: injects its instance and returns the method's
/// future (generic, so that no worker pays a box for it).
trait Call: FnOnce(&ProviderSet, WorkerCtx) -> BoxFuture<'static, Outcome> + Send + 'static {}
impl<C> Call for C where
    C: FnOnce(&ProviderSet, WorkerCtx) -> BoxFuture<'static, Outcome> + Send + 'static
{
}

/// A finished worker, as seen by
/// [`ServiceContainer::subscribe`](crate::ServiceContainer::subscribe).
#[derive(Debug, Clone)]
pub struct WorkerRecord {
    /// The entrypoint method that ran.
    pub entrypoint: &'static str,
    /// The worker's context.
    pub worker: WorkerCtx,
    /// What it returned.
    pub outcome: Arc<Outcome>,
}

/// The right to run one worker: one of the container's `max_workers`.
/// Released when the worker it was given to ends (or when dropped unused).
#[derive(Debug)]
pub struct WorkerSlot {
    _permit: OwnedSemaphorePermit,
}

/// A container's workers: the `max_workers` bound, spawning, stop and kill.
/// Cheap to clone. See the [module docs](self) for the contract.
#[derive(Clone)]
pub struct WorkerPool {
    inner: Arc<Inner>,
}

struct Inner {
    name: &'static str,
    ctx: ContainerCtx,
    methods: Vec<&'static str>,
    providers: ProviderSet,
    invoke: Invoke,
    max_workers: usize,
    permits: Arc<Semaphore>,
    workers: TaskTracker,
    /// The runtime the workers run on, whichever thread spawns them (a
    /// direct consumer spawns from the publisher's).
    runtime: Option<tokio::runtime::Handle>,
    managed: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    parent_calls_tracked: usize,
    records: broadcast::Sender<WorkerRecord>,
    /// Outcomes and latencies, when the container records metrics.
    metrics: Option<EntrypointMetrics>,
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("service", &self.inner.name)
            .field("max_workers", &self.inner.max_workers)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

impl WorkerPool {
    pub(crate) fn new(
        name: &'static str,
        ctx: ContainerCtx,
        methods: Vec<&'static str>,
        providers: ProviderSet,
        invoke: Invoke,
        records: broadcast::Sender<WorkerRecord>,
    ) -> Self {
        let settings = ctx.settings();
        let max_workers = settings.max_workers();
        let parent_calls_tracked = settings.parent_calls_tracked();
        let metrics = ctx
            .metrics()
            .map(|registry| registry.entrypoints(name, &methods));
        let pool = WorkerPool {
            inner: Arc::new(Inner {
                name,
                ctx,
                methods,
                providers,
                invoke,
                max_workers,
                permits: Arc::new(Semaphore::new(max_workers)),
                workers: TaskTracker::new(),
                runtime: tokio::runtime::Handle::try_current().ok(),
                managed: Mutex::new(Vec::new()),
                stop: CancellationToken::new(),
                parent_calls_tracked,
                records,
                metrics,
            }),
        };
        if let Some(registry) = pool.inner.ctx.metrics() {
            let watched = Arc::downgrade(&pool.inner);
            registry.pool(name, max_workers, move || {
                watched.upgrade().map(|inner| inner.workers.len())
            });
        }
        pool
    }

    /// The service name.
    pub fn service_name(&self) -> &'static str {
        self.inner.name
    }

    /// The container's context: settings, transport, RPC client.
    pub fn ctx(&self) -> &ContainerCtx {
        &self.inner.ctx
    }

    /// The bound on workers running at once (`max_workers`).
    pub fn max_workers(&self) -> usize {
        self.inner.max_workers
    }

    /// Workers running now.
    pub fn running(&self) -> usize {
        self.inner.workers.len()
    }

    /// The entrypoint method `name` of the service, as the `'static` name
    /// [`spawn`](Self::spawn) takes; `None` if the service has none.
    pub fn method(&self, name: &str) -> Option<&'static str> {
        self.inner.methods.iter().copied().find(|m| *m == name)
    }

    /// Waits for a free worker slot; `None` once the container stops (then
    /// the entrypoint should take no more input).
    pub async fn slot(&self) -> Option<WorkerSlot> {
        tokio::select! {
            biased;
            () = self.inner.stop.cancelled() => None,
            slot = self.acquire() => Some(slot),
        }
    }

    /// A free worker slot if there is one now.
    pub fn try_slot(&self) -> Option<WorkerSlot> {
        if self.is_stopping() {
            return None;
        }
        self.inner
            .permits
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| WorkerSlot { _permit: permit })
    }

    /// A slot, even while stopping (for calls made through the container
    /// itself, such as `entrypoint_hook`).
    pub(crate) async fn acquire(&self) -> WorkerSlot {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the worker semaphore is never closed");
        WorkerSlot { _permit: permit }
    }

    /// Whether the container is stopping.
    pub fn is_stopping(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// Resolves when the container stops (gracefully or not): entrypoints
    /// select on it to stop taking input.
    pub async fn stopped(&self) {
        self.inner.stop.cancelled().await;
    }

    /// Runs one worker for `method` with `payload` (an RPC request body, an
    /// event payload, or whatever the method decodes: pass the delivery's
    /// `Arc<Message>` to share its body rather than copy it) and the incoming
    /// context data. `on_result` gets the method's outcome and returns the
    /// outcome the providers see; it is where an entrypoint replies and
    /// settles its message. It does not run if the worker is killed.
    ///
    /// ```
    /// # use enoki::context::Incoming;
    /// # use enoki::worker::WorkerPool;
    /// # async fn run(workers: WorkerPool) {
    /// let method = workers.method("process").expect("an #[entrypoint] method");
    /// if let Some(slot) = workers.slot().await {
    ///     workers.spawn(slot, method, "{\"id\": 1}", Incoming::default(), |outcome| async move {
    ///         // reply, ack or reject here
    ///         outcome
    ///     });
    /// }
    /// # }
    /// ```
    pub fn spawn<F, Fut>(
        &self,
        slot: WorkerSlot,
        method: &'static str,
        payload: impl Into<Payload>,
        incoming: impl Into<Incoming>,
        on_result: F,
    ) where
        F: FnOnce(Outcome) -> Fut + Send + 'static,
        Fut: Future<Output = Outcome> + Send,
    {
        self.spawn_task(self.worker(slot, method, payload, incoming, on_result));
    }

    /// Runs one worker for the `#[http]` method `method` and answers with
    /// its response: the method's own, or its error as JSON (a panic is
    /// 500 `WorkerPanic`, like any failed worker). The response is sent
    /// before the providers' `worker_result` and `worker_teardown` (as an
    /// RPC reply is); a worker killed first answers 503.
    #[cfg(feature = "http")]
    pub async fn serve_http(
        &self,
        slot: WorkerSlot,
        method: &'static str,
        request: crate::web::Request,
    ) -> crate::web::Response {
        use axum::response::IntoResponse;
        let invoke = self.inner.invoke.http;
        let answer = Arc::new(Mutex::new(None::<crate::web::Response>));
        let stash = answer.clone();
        let call = move |providers: &ProviderSet, worker| -> BoxFuture<'static, Outcome> {
            let call = invoke(providers, worker, method, request);
            Box::pin(async move {
                let response = call.await;
                let outcome = crate::web::error::outcome_of(&response);
                *stash.lock() = Some(response);
                outcome
            })
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let worker = self.worker_call(slot, method, Incoming::default(), call, move |outcome| {
            let response = answer.lock().take();
            let response = match (response, &outcome) {
                (Some(response), _) => response,
                (None, Err(error)) => error.clone().into_response(),
                (None, Ok(_)) => RemoteError::new("HttpError", "no response").into_response(),
            };
            let _ = tx.send(response);
            async move { outcome }
        });
        self.spawn_task(worker);
        match rx.await {
            Ok(response) => response,
            Err(_) => crate::web::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!(
                    "{}.{method} was stopped before it answered",
                    self.service_name()
                ),
            )
            .into_response(),
        }
    }

    /// The worker [`spawn`](Self::spawn) would run, as a future for the
    /// caller to run: a direct consumer returns it (see
    /// [`consume_direct`](crate::entrypoint::consume_direct)), so that the
    /// embedded broker runs it on the publisher's task, and a worker that
    /// never waits needs no task of its own. It counts as running (and the
    /// container's stop waits for it) from now on; dropped before it ends,
    /// it is a killed worker (`on_result` does not run).
    ///
    /// ```
    /// # use enoki::context::Incoming;
    /// # use enoki::worker::WorkerPool;
    /// # async fn run(workers: WorkerPool) {
    /// let method = workers.method("process").expect("an #[entrypoint] method");
    /// if let Some(slot) = workers.slot().await {
    ///     let worker = workers.worker(slot, method, "{}", Incoming::default(), |outcome| async {
    ///         outcome
    ///     });
    ///     worker.await;
    /// }
    /// # }
    /// ```
    pub fn worker<P, I, F, Fut>(
        &self,
        slot: WorkerSlot,
        method: &'static str,
        payload: P,
        incoming: I,
        on_result: F,
    ) -> impl Future<Output = ()> + Send + 'static + use<P, I, F, Fut>
    where
        P: Into<Payload>,
        I: Into<Incoming>,
        F: FnOnce(Outcome) -> Fut + Send + 'static,
        Fut: Future<Output = Outcome> + Send,
    {
        let invoke = self.inner.invoke.payload;
        let payload = payload.into();
        let call =
            move |providers: &ProviderSet, worker| invoke(providers, worker, method, payload);
        self.worker_call(slot, method, incoming.into(), call, on_result)
    }

    /// Spawns a worker on the container's runtime (whichever thread asks).
    fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        match &self.inner.runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// One worker's whole lifecycle, tracked as running.
    fn worker_call<C, F, Fut>(
        &self,
        slot: WorkerSlot,
        method: &'static str,
        incoming: Incoming,
        call: C,
        on_result: F,
    ) -> impl Future<Output = ()> + Send + 'static + use<C, F, Fut>
    where
        C: Call,
        F: FnOnce(Outcome) -> Fut + Send + 'static,
        Fut: Future<Output = Outcome> + Send,
    {
        let inner = self.inner.clone();
        let task = async move {
            let _slot = slot;
            // The message's process span (none unless spans are exported),
            // child of the trace context it carried; the worker's within.
            let process = crate::telemetry::process_span(inner.name, method, &incoming);
            let worker = WorkerCtx::with_cancel(
                Cow::Borrowed(inner.name),
                Cow::Borrowed(method),
                incoming,
                inner.parent_calls_tracked,
                inner.ctx.kill_token().clone(),
            );
            // The call id is made when first needed: here, only for a span
            // that someone records. A worker of an unsampled trace gets its
            // span on a target the exporter does not see (see `telemetry`).
            let span = if process.unsampled() {
                tracing::info_span!(
                    target: crate::telemetry::UNSAMPLED_TARGET,
                    parent: None,
                    "worker",
                    service = inner.name,
                    method,
                    call_id = worker.call_id()
                )
            } else if tracing::enabled!(tracing::Level::INFO) {
                let span = tracing::info_span!(
                    parent: None,
                    "worker",
                    service = inner.name,
                    method,
                    call_id = worker.call_id()
                );
                process.adopt(&span);
                span
            } else {
                tracing::Span::none()
            };
            let body = std::pin::pin!(
                async {
                    let started = inner.metrics.is_some().then(Instant::now);
                    let outcome = run_method(&inner, &worker, call).await;
                    if let (Some(metrics), Some(started)) = (&inner.metrics, started) {
                        metrics.handled(method, outcome.is_ok(), started.elapsed());
                    }
                    let outcome = on_result(outcome).await;
                    if !inner.providers.is_empty() {
                        inner.providers.worker_result(&worker, &outcome).await;
                        inner.providers.worker_teardown(&worker).await;
                    }
                    outcome
                }
                .instrument(span.clone()),
            );
            let body = process.within(AssertUnwindSafe(body).catch_unwind());
            tokio::select! {
                biased;
                outcome = body => match outcome {
                    Ok(outcome) => {
                        if inner.records.receiver_count() > 0 {
                            let _ = inner.records.send(WorkerRecord {
                                entrypoint: method,
                                worker: worker.clone(),
                                outcome: Arc::new(outcome),
                            });
                        }
                    }
                    Err(panic) => span.in_scope(|| tracing::error!(
                        message = %panic_message(&*panic),
                        "worker lifecycle panicked"
                    )),
                },
                () = inner.ctx.kill_token().cancelled() => {
                    span.in_scope(|| tracing::warn!("worker killed"));
                }
            }
        };
        self.inner.workers.track_future(task)
    }

    /// Spawns a task of an entrypoint (a consumer loop, a timer): the
    /// container waits for it when stopping, after [`stopped`](Self::stopped)
    /// resolved, and aborts it when killed (nameko's
    /// `spawn_managed_thread`).
    pub fn spawn_managed(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut managed = self.inner.managed.lock();
        managed.retain(|task| !task.is_finished());
        managed.push(handle);
    }

    /// Starts stopping: entrypoints see [`stopped`](Self::stopped).
    pub(crate) fn begin_stop(&self) {
        self.inner.stop.cancel();
    }

    /// Waits for the entrypoints' managed tasks to end.
    pub(crate) async fn join_managed(&self) {
        let tasks: Vec<_> = self.inner.managed.lock().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Waits for the workers in flight, up to `grace`, then kills the rest.
    /// Returns how many were still running at the deadline.
    pub(crate) async fn drain(&self, grace: Duration) -> usize {
        self.inner.workers.close();
        if tokio::time::timeout(grace, self.inner.workers.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let left = self.inner.workers.len();
        self.kill().await;
        left
    }

    /// Kills: managed tasks are aborted, workers are cancelled where they
    /// wait. Returns once every worker has ended.
    pub(crate) async fn kill(&self) {
        self.inner.stop.cancel();
        self.inner.ctx.kill_token().cancel();
        let tasks: Vec<_> = self.inner.managed.lock().drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        self.inner.workers.close();
        self.inner.workers.wait().await;
    }

    /// The providers, for the container's lifecycle.
    pub(crate) fn providers(&self) -> &ProviderSet {
        &self.inner.providers
    }
}

/// Injects, runs `worker_setup` and the method; a panic in either becomes
/// a `WorkerPanic` error. Failures are logged (bad requests as warnings).
async fn run_method(inner: &Inner, worker: &WorkerCtx, call: impl Call) -> Outcome {
    // Dependencies are injected first, before `worker_setup` (nameko's order).
    let call =
        std::panic::catch_unwind(AssertUnwindSafe(|| call(&inner.providers, worker.clone())));
    if !inner.providers.is_empty() {
        inner.providers.worker_setup(worker).await;
    }
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
            tracing::error!(%message, "worker panicked");
            Err(RemoteError::panic(message))
        }
    };
    if let Err(error) = &outcome {
        if error.is_bad_request() {
            tracing::warn!(%error, "bad request");
        } else {
            tracing::error!(%error, "worker failed");
        }
    }
    outcome
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
