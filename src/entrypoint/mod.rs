//! Entrypoints: what turns deliveries and ticks into workers.
//!
//! - [`rpc`]: one consumer on `rpc-<service>` for all `#[rpc]` methods;
//!   replies are published before the request is acked.
//! - [`event`]: one queue and consumer per `#[event_handler]`; the event
//!   is acked after the handler returns (or requeued, per
//!   `requeue_on_error`).
//! - [`timer`]: a drift-free schedule per `#[timer]`, never overlapping.
//!
//! Each has a setup step (declare exchanges, queues and bindings) and a
//! start step (consume or tick) that runs until the container's stop token
//! is cancelled.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::container::Shared;
use crate::error::Result;
use crate::service::EntrypointKind;
use crate::transport::{ConsumeOptions, Consumer, Delivery};

pub mod event;
pub mod rpc;
pub mod timer;

/// An entrypoint after setup, ready to start.
pub(crate) enum Prepared {
    Rpc(rpc::RpcEntrypoint),
    Event(event::EventEntrypoint),
    Timer(timer::TimerEntrypoint),
}

/// Declares what every entrypoint of the container needs on the broker.
pub(crate) async fn setup_all(shared: &Arc<Shared>) -> Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    if shared
        .entrypoints
        .iter()
        .any(|e| e.kind == EntrypointKind::Rpc)
    {
        prepared.push(Prepared::Rpc(rpc::RpcEntrypoint::setup(shared).await?));
    }
    for spec in &shared.entrypoints {
        match &spec.kind {
            EntrypointKind::Rpc => {}
            EntrypointKind::Event(event) => prepared.push(Prepared::Event(
                event::EventEntrypoint::setup(shared, spec.method, event).await?,
            )),
            EntrypointKind::Timer(timer) => prepared.push(Prepared::Timer(
                timer::TimerEntrypoint::new(spec.method, *timer),
            )),
        }
    }
    Ok(prepared)
}

/// Starts every entrypoint; returns once all consumers are consuming.
pub(crate) async fn start_all(
    shared: &Arc<Shared>,
    prepared: Vec<Prepared>,
    stop: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::with_capacity(prepared.len());
    for entrypoint in prepared {
        let task = match entrypoint {
            Prepared::Rpc(rpc) => rpc.start(shared.clone(), stop.clone()).await?,
            Prepared::Event(event) => event.start(shared.clone(), stop.clone()).await?,
            Prepared::Timer(timer) => timer.start(shared.clone(), stop.clone()),
        };
        tasks.push(task);
    }
    Ok(tasks)
}

/// Consumer options from the container settings: prefetch is
/// `PREFETCH_COUNT`, by default `max_workers`.
pub(crate) fn consume_options(shared: &Shared) -> ConsumeOptions {
    ConsumeOptions {
        prefetch: shared.ctx.settings().prefetch_count(),
    }
}

/// The next delivery, or `None` once the container stops or the consumer
/// ends (logged).
pub(crate) async fn next_delivery(
    consumer: &mut Consumer,
    stop: &CancellationToken,
    queue: &str,
) -> Option<Delivery> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        delivery = consumer.next() => {
            if delivery.is_none() {
                tracing::warn!(queue, "consumer ended");
            }
            delivery
        }
    }
}

/// A worker slot (`max_workers`), or `None` once the container stops.
/// A delivery dropped meanwhile goes back to its queue.
pub(crate) async fn worker_slot(
    shared: &Shared,
    stop: &CancellationToken,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        permit = shared.permit() => permit.ok(),
    }
}

/// Logs a failed ack or reject (the broker redelivers the message).
pub(crate) fn settle(result: Result<()>) {
    match result {
        Ok(()) => {}
        // The broker requeues it; the transport already logged the outage.
        Err(error @ crate::error::Error::ConnectionLost(_)) => {
            tracing::debug!(%error, "could not settle a delivery");
        }
        Err(error) => tracing::warn!(%error, "could not settle a delivery"),
    }
}
