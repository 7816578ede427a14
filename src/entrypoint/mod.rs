//! Entrypoints: what turns deliveries, ticks or requests into workers.
//!
//! [`Entrypoint`] is nameko's entrypoint lifecycle in Rust: `setup`
//! (declare what it needs), `start` (begin turning input into workers
//! through the container's [`WorkerPool`]), `stop` and `kill`. The
//! container drives every entrypoint of a service through it and knows
//! nothing about AMQP. Built in:
//!
//! - [`rpc::RpcEntrypoint`]: one consumer on `rpc-<service>` for all
//!   `#[rpc]` methods; replies are published before the request is acked.
//! - [`event::EventEntrypoint`]: one queue and consumer per
//!   `#[event_handler]`; the event is acked after the handler returns (or
//!   requeued, per `requeue_on_error`).
//! - [`timer::TimerEntrypoint`]: a drift-free schedule per `#[timer]`,
//!   never overlapping.
//! - `http::HttpEntrypoint` (feature `http`): the `#[http]` methods' routes
//!   on the process's web server; the answer is sent before the worker's
//!   teardown.
//!
//! Your own entrypoints implement the same trait and are added to a
//! service with
//! [`ServiceDef::with_entrypoint`](crate::container::ServiceDef::with_entrypoint);
//! the methods they run are marked `#[entrypoint]` in the service (or are
//! any of its other entrypoint methods).
//!
//! # A user-written entrypoint
//!
//! One that consumes a plain queue and hands each message to a method:
//!
//! ```
//! use enoki::prelude::*;
//! use enoki::context::Incoming;
//! use enoki::entrypoint::{Entrypoint, settle};
//! use enoki::transport::{ConsumeOptions, QueueSpec};
//! use enoki::worker::WorkerPool;
//!
//! /// Runs `method` for every message on `queue`; acks when it succeeds,
//! /// drops the message (logged) when it fails.
//! struct QueueConsumer {
//!     queue: &'static str,
//!     method: &'static str,
//! }
//!
//! impl Entrypoint for QueueConsumer {
//!     async fn setup(&mut self, ctx: &ContainerCtx) -> enoki::Result<()> {
//!         ctx.transport().declare_queue(&QueueSpec::durable(self.queue)).await
//!     }
//!
//!     async fn start(&mut self, workers: WorkerPool) -> enoki::Result<()> {
//!         let method = workers.method(self.method).ok_or_else(|| {
//!             enoki::Error::Lifecycle(format!("no entrypoint method `{}`", self.method))
//!         })?;
//!         let options = ConsumeOptions {
//!             prefetch: workers.max_workers() as u16,
//!             ..ConsumeOptions::default()
//!         };
//!         let mut consumer = workers.ctx().transport().consume(self.queue, options).await?;
//!         let pool = workers.clone();
//!         workers.spawn_managed(async move {
//!             loop {
//!                 let delivery = tokio::select! {
//!                     () = pool.stopped() => break,
//!                     delivery = consumer.next() => match delivery {
//!                         Some(delivery) => delivery,
//!                         None => break,
//!                     },
//!                 };
//!                 let Some(slot) = pool.slot().await else { break };
//!                 let payload = delivery.message.clone();
//!                 pool.spawn(slot, method, payload, Incoming::default(), move |outcome| async move {
//!                     // Success or not, the message was handled once.
//!                     settle(delivery.ack().await);
//!                     outcome
//!                 });
//!             }
//!         });
//!         Ok(())
//!     }
//! }
//!
//! #[derive(Dependencies)]
//! struct Jobs;
//!
//! #[service(name = "jobs")]
//! impl Jobs {
//!     #[entrypoint]
//!     async fn process(&self, job: serde_json::Value) -> Result<(), RemoteError> {
//!         tracing::info!(%job, "processing");
//!         Ok(())
//!     }
//!
//!     #[rpc]
//!     async fn ping(&self) -> Result<String, RemoteError> {
//!         Ok("pong".into())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
//! let transport = enoki::transport::MemoryTransport::new();
//! let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
//! runner.add(enoki::service::<Jobs>().with_entrypoint(QueueConsumer { queue: "jobs", method: "process" }));
//! runner.start().await?;
//! # runner.stop().await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::QueueType;
use crate::container_ctx::ContainerCtx;
use crate::error::{Error, Result};
use crate::transport::{ConsumeOptions, Consumer, DeliverFn, Delivery, QueueSpec, TransportFuture};
use crate::worker::WorkerPool;

pub mod cron;
pub mod event;
#[cfg(feature = "http")]
pub mod http;
pub mod poison;
pub mod retry;
pub mod rpc;
pub mod timer;

/// An entrypoint: nameko's `Entrypoint` lifecycle.
///
/// The container calls, in order:
/// 1. [`setup`](Self::setup) after its providers' `setup`: declare what the
///    entrypoint needs (exchanges, queues, bindings). An error stops the
///    container from starting.
/// 2. [`start`](Self::start) after its providers' `start`: begin turning
///    input into workers through the [`WorkerPool`], and return once input
///    is flowing (for a consumer: once it consumes). Long-running loops go
///    in [`WorkerPool::spawn_managed`] tasks, which end when
///    [`WorkerPool::stopped`] resolves.
/// 3. On a graceful stop, [`stop`](Self::stop), after `stopped` resolved:
///    return once no new worker will be spawned. The container then waits
///    for the managed tasks, then drains the workers in flight.
/// 4. On a kill, [`kill`](Self::kill): stop at once; the container aborts
///    the managed tasks and cancels the workers.
///
/// Every hook but `start` has a default that does nothing.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an entrypoint",
    note = "implement `enoki::entrypoint::Entrypoint` for it (`start` at least)"
)]
pub trait Entrypoint: Send + Sync + 'static {
    /// Declares what the entrypoint needs.
    fn setup(&mut self, _ctx: &ContainerCtx) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Starts turning input into workers.
    fn start(&mut self, workers: WorkerPool) -> impl Future<Output = Result<()>> + Send;

    /// Stops taking input (graceful).
    fn stop(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Stops at once.
    fn kill(&mut self) {}
}

/// The object-safe face of an [`Entrypoint`], for the container.
pub(crate) trait ErasedEntrypoint: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn setup<'a>(&'a mut self, ctx: &'a ContainerCtx) -> BoxFuture<'a, Result<()>>;
    fn start(&mut self, workers: WorkerPool) -> BoxFuture<'_, Result<()>>;
    fn stop(&mut self) -> BoxFuture<'_, ()>;
    fn kill(&mut self);
}

impl<E: Entrypoint> ErasedEntrypoint for E {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<E>()
    }
    fn setup<'a>(&'a mut self, ctx: &'a ContainerCtx) -> BoxFuture<'a, Result<()>> {
        Box::pin(Entrypoint::setup(self, ctx))
    }
    fn start(&mut self, workers: WorkerPool) -> BoxFuture<'_, Result<()>> {
        Box::pin(Entrypoint::start(self, workers))
    }
    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(Entrypoint::stop(self))
    }
    fn kill(&mut self) {
        Entrypoint::kill(self);
    }
}

/// Declares a work queue of an entrypoint as `QUEUE_TYPE` asks. A
/// durable, shared, non-auto-delete queue becomes a quorum queue under
/// [`QueueType::Quorum`], after its dead-letter queue `<queue>.dlq` (a
/// quorum queue too) is declared; any other queue, and every queue under
/// [`QueueType::Classic`], is declared as given. Returns what was declared.
pub async fn declare_work_queue(ctx: &ContainerCtx, queue: QueueSpec) -> Result<QueueSpec> {
    let settings = ctx.settings();
    let queue = match settings.queue_type() {
        QueueType::Quorum if queue.durable && !queue.exclusive && !queue.auto_delete => {
            let dead_letters = declare_dead_letter_queue(ctx, &queue.name).await?;
            queue.quorum(settings.queue_delivery_limit(), &dead_letters)
        }
        _ => queue,
    };
    ctx.transport().declare_queue(&queue).await?;
    Ok(queue)
}

/// Declares `<queue>.dlq`, durable, of the type `QUEUE_TYPE` names; returns
/// its name.
pub async fn declare_dead_letter_queue(ctx: &ContainerCtx, queue: &str) -> Result<String> {
    let name = crate::names::dead_letter_queue(queue);
    let mut dlq = QueueSpec::durable(&name);
    if ctx.settings().queue_type() == QueueType::Quorum {
        dlq.arguments.insert("x-queue-type".into(), "quorum".into());
    }
    ctx.transport().declare_queue(&dlq).await?;
    Ok(name)
}

/// Consumer options from the container settings: prefetch is
/// `PREFETCH_COUNT`, by default `max_workers`.
pub fn consume_options(ctx: &ContainerCtx) -> ConsumeOptions {
    ConsumeOptions {
        prefetch: ctx.settings().prefetch_count(),
        // Workers finish in any order, and may take long.
        coalesce_acks: false,
    }
}

/// Consumes `queue` for an entrypoint with a direct consumer
/// ([`Transport::consume_with`](crate::transport::Transport::consume_with)):
/// `take` gets each delivery while the container runs (on the embedded
/// broker, on the task that published it, so it must not block: it spawns
/// the worker, or returns what is left to wait for). A managed task
/// cancels the consumer when the container stops; what it is handed in
/// between is held, then given back to the queue once the consumer is gone
/// (given back at once, the embedded broker would hand it straight back).
///
/// ```
/// use enoki::context::Incoming;
/// use enoki::entrypoint::{consume_direct, settle};
/// use enoki::transport::TransportFuture;
/// use enoki::worker::WorkerPool;
///
/// /// Runs `method` for each message on `jobs`, then acks it.
/// async fn start(workers: WorkerPool, method: &'static str) -> enoki::Result<()> {
///     let pool = workers.clone();
///     consume_direct(&workers, "jobs", move |delivery| {
///         let pool = pool.clone();
///         // Waiting for a worker slot is left to the returned future.
///         TransportFuture::boxed(async move {
///             if let Some(slot) = pool.slot().await {
///                 let payload = delivery.message.clone();
///                 pool.spawn(slot, method, payload, Incoming::default(), |outcome| async move {
///                     settle(delivery.ack().await);
///                     outcome
///                 });
///             }
///         })
///     })
///     .await
/// }
/// ```
pub async fn consume_direct<F>(workers: &WorkerPool, queue: &str, take: F) -> Result<()>
where
    F: Fn(Delivery) -> TransportFuture<'static, ()> + Send + Sync + 'static,
{
    let parked: Arc<parking_lot::Mutex<Vec<Delivery>>> = Arc::default();
    let deliver: DeliverFn = Arc::new({
        let parked = parked.clone();
        let pool = workers.clone();
        move |delivery| {
            if pool.is_stopping() {
                parked.lock().push(delivery);
                return TransportFuture::ready(());
            }
            take(delivery)
        }
    });
    let consuming = workers
        .ctx()
        .transport()
        .consume_with(queue, consume_options(workers.ctx()), deliver)
        .await?;
    let queue = queue.to_owned();
    let pool = workers.clone();
    workers.spawn_managed(async move {
        tokio::select! {
            biased;
            // Dropping the consumer cancels it.
            () = pool.stopped() => {}
            () = consuming => tracing::warn!(queue, "consumer ended"),
        }
        drop(std::mem::take(&mut *parked.lock()));
    });
    Ok(())
}

/// The next delivery, or `None` once the container stops or the consumer
/// ends (logged).
pub async fn next_delivery(
    consumer: &mut Consumer,
    workers: &WorkerPool,
    queue: &str,
) -> Option<Delivery> {
    tokio::select! {
        biased;
        () = workers.stopped() => None,
        delivery = consumer.next() => {
            if delivery.is_none() {
                tracing::warn!(queue, "consumer ended");
            }
            delivery
        }
    }
}

/// Settles as [`settle`] does, at once if the transport already has (the
/// embedded broker always has); otherwise the rest is the returned future.
pub fn settle_soon(settling: TransportFuture<'static, Result<()>>) -> TransportFuture<'static, ()> {
    match settling.into_ready() {
        Ok(result) => {
            settle(result);
            TransportFuture::ready(())
        }
        Err(settling) => TransportFuture::boxed(async move { settle(settling.await) }),
    }
}

/// Logs a failed ack or reject (the broker redelivers the message).
pub fn settle(result: Result<()>) {
    match result {
        Ok(()) => {}
        // The broker requeues it; the transport already logged the outage.
        Err(error @ Error::ConnectionLost(_)) => {
            tracing::debug!(%error, "could not settle a delivery");
        }
        Err(error) => tracing::warn!(%error, "could not settle a delivery"),
    }
}
