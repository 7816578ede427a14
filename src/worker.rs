//! The worker pool of a container: where entrypoints turn what they receive
//! into workers (nameko's `container.spawn_worker`).
//!
//! A [`WorkerPool`] is what an [`Entrypoint`](crate::entrypoint::Entrypoint)
//! gets when it starts. Its contract:
//!
//! - **The `max_workers` bound.** A worker runs only with a [`WorkerSlot`];
//!   there are `max_workers` slots per container, shared by all its
//!   entrypoints (a semaphore in all but name, as mini-redis bounds its
//!   connections: a lock-free count of free slots, and a `Notify` for those
//!   waiting).
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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

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

/// Where finished workers are announced ([`WorkerRecord`]): a broadcast
/// channel, and whether anyone ever subscribed to it (looked at by every
/// worker without the lock that counting its receivers takes).
#[derive(Debug, Clone)]
pub(crate) struct Records {
    sender: broadcast::Sender<WorkerRecord>,
    subscribed: Arc<AtomicBool>,
}

impl Records {
    /// A channel holding up to `capacity` records for a slow subscriber.
    pub(crate) fn new(capacity: usize) -> Self {
        Records {
            sender: broadcast::channel(capacity).0,
            subscribed: Arc::default(),
        }
    }

    /// A stream of the records from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<WorkerRecord> {
        self.subscribed.store(true, Ordering::Release);
        self.sender.subscribe()
    }

    /// Announces a finished worker, if anyone listens; `record` is made
    /// only then.
    fn announce(&self, record: impl FnOnce() -> WorkerRecord) {
        if self.subscribed.load(Ordering::Acquire) && self.sender.receiver_count() > 0 {
            let _ = self.sender.send(record());
        }
    }
}

/// The right to run one worker: one of the container's `max_workers`.
/// Released when the worker it was given to ends (or when dropped unused).
#[derive(Debug)]
pub struct WorkerSlot {
    slots: Arc<Slots>,
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

/// The container's `max_workers` slots: a count taken and given back
/// without a lock (a semaphore takes one to give a permit back), and a
/// [`Notify`] for those waiting for one, told only when someone waits.
#[derive(Debug)]
struct Slots {
    free: AtomicUsize,
    /// How many wait in [`Slots::take`].
    waiting: AtomicUsize,
    freed: Notify,
}

impl Slots {
    fn new(count: usize) -> Arc<Slots> {
        Arc::new(Slots {
            free: AtomicUsize::new(count),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// Takes a slot if one is free.
    fn try_take(self: &Arc<Self>) -> Option<WorkerSlot> {
        self.free
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |free| {
                free.checked_sub(1)
            })
            .ok()
            .map(|_| WorkerSlot {
                slots: self.clone(),
            })
    }

    /// Waits for a free slot.
    async fn take(self: &Arc<Self>) -> WorkerSlot {
        if let Some(slot) = self.try_take() {
            return slot;
        }
        /// Counts this waiter out again, however the wait ends.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // Counted before looking again (all in one order, `SeqCst`): a
        // release either sees this waiter and notifies, or gave its slot
        // back before the look below, which then finds it.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before looking again: a slot given back from now
            // on wakes this waiter (or leaves it a permit), so none is
            // missed between the look and the wait.
            freed.as_mut().enable();
            if let Some(slot) = self.try_take() {
                return slot;
            }
            freed.await;
        }
    }

    fn release(&self) {
        self.free.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_one();
        }
    }
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
    slots: Arc<Slots>,
    workers: TaskTracker,
    /// The runtime the workers run on, whichever thread spawns them (a
    /// direct consumer spawns from the publisher's).
    runtime: Option<tokio::runtime::Handle>,
    managed: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    /// Set with `stop` cancelled.
    stopping: AtomicBool,
    parent_calls_tracked: usize,
    records: Records,
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
        records: Records,
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
                slots: Slots::new(max_workers),
                stopping: AtomicBool::new(false),
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
        self.inner.slots.try_take()
    }

    /// A slot, even while stopping (for calls made through the container
    /// itself, such as `entrypoint_hook`).
    pub(crate) async fn acquire(&self) -> WorkerSlot {
        self.inner.slots.take().await
    }

    /// Whether the container is stopping.
    pub fn is_stopping(&self) -> bool {
        // A flag beside the token: asked of every delivery, and a token's
        // `is_cancelled` takes a lock.
        self.inner.stopping.load(Ordering::Acquire)
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
        Fut: Future<Output = Outcome> + Send + 'static,
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
        Fut: Future<Output = Outcome> + Send + 'static,
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

    /// One worker's whole lifecycle, tracked as running. Its parts are
    /// built here, in one go, so that the future is no larger than what it
    /// holds while it runs (an `async` block keeps what it captured beside
    /// what it moved it into), and fits a small allocation when boxed.
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
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let inner = &self.inner;
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
        let span = worker_span(inner.name, method, &worker, &process);
        Running {
            lifecycle: lifecycle(inner.clone(), worker.clone(), method, call, on_result),
            killed: None,
            span,
            process,
            worker,
            inner: inner.clone(),
            method,
            _tracked: inner.workers.token(),
            _slot: slot,
        }
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
        self.inner.stopping.store(true, Ordering::Release);
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
        self.begin_stop();
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

/// A worker's `tracing` span. The call id is made when first needed: here,
/// only for a span that someone records. A worker of an unsampled trace
/// gets its span on a target the exporter does not see (see `telemetry`).
fn worker_span(
    service: &'static str,
    method: &'static str,
    worker: &WorkerCtx,
    process: &crate::telemetry::MessagingSpan,
) -> tracing::Span {
    if process.unsampled() {
        tracing::info_span!(
            target: crate::telemetry::UNSAMPLED_TARGET,
            parent: None,
            "worker",
            service,
            method,
            call_id = worker.call_id()
        )
    } else if tracing::enabled!(tracing::Level::INFO) {
        let span = tracing::info_span!(
            parent: None,
            "worker",
            service,
            method,
            call_id = worker.call_id()
        );
        process.adopt(&span);
        span
    } else {
        tracing::Span::none()
    }
}

/// A worker's lifecycle: injection, `worker_setup`, the method (a panic
/// in it, or in the injection, becomes a `WorkerPanic` error; failures are
/// logged, bad requests as warnings), `on_result`, then `worker_result`
/// and `worker_teardown`.
#[allow(clippy::manual_async_fn, reason = "an async fn's future is larger")]
fn lifecycle<F, Fut>(
    inner: Arc<Inner>,
    worker: WorkerCtx,
    method: &'static str,
    call: impl Call,
    on_result: F,
) -> impl Future<Output = Outcome>
where
    F: FnOnce(Outcome) -> Fut,
    Fut: Future<Output = Outcome>,
{
    // An `async move` block that uses what it captured where it is (an
    // `async fn` would copy its arguments into the future once more).
    async move {
        let started = inner.metrics.is_some().then(Instant::now);
        // Dependencies are injected first, before `worker_setup` (nameko's
        // order); a panic here fails the worker as the method's would.
        let call =
            std::panic::catch_unwind(AssertUnwindSafe(|| call(&inner.providers, worker.clone())));
        if !inner.providers.is_empty() {
            inner.providers.worker_setup(&worker).await;
        }
        let outcome = match call {
            Ok(call) => AssertUnwindSafe(call).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        let outcome = handled(&inner, method, started, outcome);
        let outcome = on_result(outcome).await;
        if !inner.providers.is_empty() {
            inner.providers.worker_result(&worker, &outcome).await;
            inner.providers.worker_teardown(&worker).await;
        }
        outcome
    }
}

/// What a worker's method ended with: a panic becomes a `WorkerPanic`
/// error; failures are logged (bad requests as warnings) and counted.
/// (Not in the lifecycle's `async` block: the outcome it borrows would be
/// kept there for the rest of the worker.)
#[inline(always)]
fn handled(
    inner: &Inner,
    method: &'static str,
    started: Option<Instant>,
    outcome: std::thread::Result<Outcome>,
) -> Outcome {
    let outcome = outcome.unwrap_or_else(|panic| {
        let message = panic_message(&*panic);
        tracing::error!(%message, "worker panicked");
        Err(RemoteError::panic(message))
    });
    if let Err(error) = &outcome {
        if error.is_bad_request() {
            tracing::warn!(%error, "bad request");
        } else {
            tracing::error!(%error, "worker failed");
        }
    }
    if let (Some(metrics), Some(started)) = (&inner.metrics, started) {
        metrics.handled(method, outcome.is_ok(), started.elapsed());
    }
    outcome
}

pin_project_lite::pin_project! {
    /// A running worker: its lifecycle in its spans (a panic in the
    /// lifecycle itself is logged), unless the container is killed first:
    /// then it ends where it waits, and `on_result` does not run. Written
    /// out rather than built of combinators, each of which would move the
    /// whole future once more.
    struct Running<L> {
        #[pin]
        lifecycle: L,
        // Made when the worker first waits: a worker that never does
        // (most, on the embedded broker) needs none.
        #[pin]
        killed: Option<WaitForCancellationFutureOwned>,
        span: tracing::Span,
        // The message's process span (none unless spans are exported),
        // child of the trace context it carried; ends with the worker.
        process: crate::telemetry::MessagingSpan,
        worker: WorkerCtx,
        inner: Arc<Inner>,
        method: &'static str,
        // Counts the worker as running (the container's stop waits for it).
        _tracked: TaskTrackerToken,
        _slot: WorkerSlot,
    }
}

impl<L> Future for Running<L>
where
    L: Future<Output = Outcome>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let polled = {
            let _context = this.process.enter_unsampled();
            let _span = this.span.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| this.lifecycle.poll(cx)))
        };
        match polled {
            Ok(Poll::Ready(outcome)) => {
                this.inner.records.announce(|| WorkerRecord {
                    entrypoint: this.method,
                    worker: this.worker.clone(),
                    outcome: Arc::new(outcome),
                });
                Poll::Ready(())
            }
            Err(panic) => {
                this.span.in_scope(|| {
                    tracing::error!(
                        message = %panic_message(&*panic),
                        "worker lifecycle panicked"
                    );
                });
                Poll::Ready(())
            }
            Ok(Poll::Pending) => {
                let mut killed = this.killed;
                if killed.is_none() {
                    let token = CancellationToken::clone(this.inner.ctx.kill_token());
                    killed.set(Some(token.cancelled_owned()));
                }
                let killed = killed
                    .as_pin_mut()
                    .is_some_and(|killed| killed.poll(cx).is_ready());
                if killed {
                    this.span.in_scope(|| tracing::warn!("worker killed"));
                    return Poll::Ready(());
                }
                Poll::Pending
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_up_to_the_bound_and_given_back_on_drop() {
        let slots = Slots::new(2);
        let a = slots.try_take().expect("first slot");
        let b = slots.try_take().expect("second slot");
        assert!(slots.try_take().is_none(), "only two slots");
        drop(a);
        let c = slots.try_take().expect("a slot given back is free again");
        assert!(slots.try_take().is_none());
        drop((b, c));
        assert_eq!(slots.free.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_gets_a_slot_as_they_are_given_back() {
        let slots = Slots::new(1);
        let held = slots.try_take().expect("the one slot");
        let in_use = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..64)
            .map(|_| {
                let (slots, in_use) = (slots.clone(), in_use.clone());
                tokio::spawn(async move {
                    let slot = slots.take().await;
                    assert_eq!(in_use.fetch_add(1, Ordering::SeqCst), 0, "one at a time");
                    tokio::task::yield_now().await;
                    in_use.fetch_sub(1, Ordering::SeqCst);
                    drop(slot);
                })
            })
            .collect();
        tokio::task::yield_now().await;
        drop(held);
        let all = futures::future::join_all(waiters);
        let done = tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("no waiter is left waiting for a slot given back");
        assert!(done.into_iter().all(|joined| joined.is_ok()));
        assert_eq!(slots.free.load(Ordering::Relaxed), 1);
    }
}
