//! The event entrypoint: one queue per `#[event_handler]`, bound to
//! `<source>.events` with the event type, named and flagged as nameko does
//! (`nameko-wire.md` §3.3):
//!
//! | handler type | queue | flags |
//! |---|---|---|
//! | service pool | `evt-<source>-<event>--<service>.<method>` | durable; auto-delete unless reliable |
//! | singleton | `evt-<source>-<event>` | as service pool |
//! | broadcast | `evt-<source>-<event>--<service>.<method>-<id>` | exclusive and auto-delete unless reliable |
//!
//! An event is acked after its handler returns. A failing handler's event
//! is retried later if `requeue_on_error` (through a delay queue, and in
//! the end to `<queue>.dlq`: see [`retry`](super::retry)), otherwise
//! acked (dropped) and logged. An event that cannot be decoded (bad JSON, a payload that does
//! not fit the handler, a bad context header) is never requeued: it could
//! only fail again.

use super::poison::{RedeliveryLimit, Return, admit_soon};
use super::retry::Backoff;
use super::{Entrypoint, consume_direct, declare_work_queue, settle, settle_soon};
use crate::client::declare_event_exchange;
use crate::container_ctx::ContainerCtx;
use crate::context::{Incoming, check_headers, new_uuid};
use crate::error::Result;
use crate::message::CONTENT_TYPE_JSON;
use crate::names;
use crate::service::{EventHandlerSpec, HandlerType};
use crate::service_metrics::QueueMetrics;
use crate::transport::{Delivery, QueueSpec, TransportFuture};
use crate::worker::{WorkerPool, WorkerSlot};
use std::future::Future;
use std::sync::Arc;

/// One `#[event_handler]`.
#[derive(Debug)]
pub struct EventEntrypoint {
    method: &'static str,
    spec: EventHandlerSpec,
    queue: String,
    /// How a failed `requeue_on_error` event is retried (`None`: requeued
    /// at once).
    backoff: Option<Arc<Backoff>>,
    /// Counts the returns of events on a classic queue.
    redelivery: Option<RedeliveryLimit>,
    /// The queue's counters, when the container records metrics.
    metrics: Option<QueueMetrics>,
}

/// The queue an event handler consumes from, with nameko's flags.
pub fn queue_spec(service: &str, method: &str, spec: &EventHandlerSpec) -> QueueSpec {
    let identifier = match spec.broadcast_identifier {
        Some(id) => id.to_owned(),
        None => new_uuid().replace('-', ""),
    };
    let name = spec.queue_name(service, method, &identifier);
    let exclusive = spec.handler_type == HandlerType::Broadcast && !spec.reliable_delivery;
    QueueSpec {
        name,
        durable: true,
        // kombu turns `exclusive` into `auto_delete` too.
        auto_delete: !spec.reliable_delivery || exclusive,
        exclusive,
        arguments: Default::default(),
    }
}

impl EventEntrypoint {
    /// The entrypoint of handler `method`.
    pub fn new(method: &'static str, spec: EventHandlerSpec) -> Self {
        EventEntrypoint {
            method,
            spec,
            queue: String::new(),
            backoff: None,
            redelivery: None,
            metrics: None,
        }
    }
}

impl Entrypoint for EventEntrypoint {
    /// Declares the source's event exchange, the handler's queue and its
    /// binding.
    async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        let transport = ctx.transport();
        let exchange = names::event_exchange(self.spec.source_service);
        declare_event_exchange(transport, ctx.settings(), &exchange).await?;
        let queue = queue_spec(ctx.service_name(), self.method, &self.spec);
        let queue = declare_work_queue(ctx, queue).await?;
        self.metrics = ctx.queue_metrics(&queue.name);
        self.redelivery = RedeliveryLimit::new(ctx.settings(), &queue, Return::ToQueue)
            .map(|limit| limit.with_metrics(self.metrics.clone()));
        if self.spec.requeue_on_error
            && let Some(backoff) = Backoff::new(ctx.settings(), &queue)
        {
            backoff.declare(ctx).await?;
            let backoff = backoff.with_metrics(self.metrics.clone());
            self.backoff = Some(std::sync::Arc::new(backoff));
        }
        transport
            .bind(&queue.name, &exchange, self.spec.event_type)
            .await?;
        self.queue = queue.name;
        Ok(())
    }

    /// Starts consuming: each event's worker is started as soon as the
    /// broker hands it over (on the embedded broker, on the task that
    /// published it, until the worker first waits).
    async fn start(&mut self, workers: WorkerPool) -> Result<()> {
        let intake = Arc::new(Intake {
            pool: workers.clone(),
            method: self.method,
            requeue_on_error: self.spec.requeue_on_error,
            backoff: self.backoff.clone(),
            redelivery: self.redelivery.clone(),
            metrics: self.metrics.clone(),
        });
        consume_direct(&workers, &self.queue, move |delivery| intake.take(delivery)).await
    }
}

/// What the consumer of an event handler's queue needs to take an event.
struct Intake {
    pool: WorkerPool,
    method: &'static str,
    requeue_on_error: bool,
    backoff: Option<Arc<Backoff>>,
    redelivery: Option<RedeliveryLimit>,
    metrics: Option<QueueMetrics>,
}

impl Intake {
    /// Takes one event: the returned future is its worker (with a free
    /// slot), or what comes first (a redelivery to count, a wait for a
    /// slot).
    fn take(self: &Arc<Self>, delivery: Delivery) -> TransportFuture<'static, ()> {
        let intake = self.clone();
        let admitted = admit_soon(
            self.redelivery.as_ref(),
            self.metrics.as_ref(),
            self.pool.ctx(),
            delivery,
            move |delivery| async move { intake.run_when_free(delivery).await },
        );
        let delivery = match admitted {
            Ok(delivery) => delivery,
            Err(later) => return later,
        };
        if !check(&self.pool, self.method, &delivery) {
            return settle_soon(delivery.ack());
        }
        match self.pool.try_slot() {
            Some(slot) => TransportFuture::boxed(self.worker(slot, delivery)),
            None => {
                let intake = self.clone();
                TransportFuture::boxed(async move { intake.run_when_free(delivery).await })
            }
        }
    }

    /// Checks an event, then runs its worker once a slot is free (dropped,
    /// back to the queue, if the container stops first).
    async fn run_when_free(&self, delivery: Delivery) {
        if !check(&self.pool, self.method, &delivery) {
            settle(delivery.ack().await);
            return;
        }
        if let Some(slot) = self.pool.slot().await {
            self.worker(slot, delivery).await;
        }
    }

    /// The event's worker, which settles it.
    fn worker(&self, slot: WorkerSlot, delivery: Delivery) -> impl Future<Output = ()> + use<> {
        // The headers were checked: the worker reads its context from them.
        let context = Incoming::from_properties(&delivery.message.properties);
        let payload = delivery.message.clone();
        let requeue_on_error = self.requeue_on_error;
        let retry = self
            .backoff
            .as_ref()
            .map(|backoff| (backoff.clone(), self.pool.ctx().transport().clone()));
        self.pool.worker(
            slot,
            self.method,
            payload,
            context,
            move |outcome| async move {
                match &outcome {
                    Ok(_) => settle(delivery.ack().await),
                    Err(error) if error.is_bad_request() => {
                        tracing::error!(%error, "event does not fit its handler; dropped");
                        settle(delivery.ack().await);
                    }
                    Err(_) if requeue_on_error => match &retry {
                        // Boxed: a retry's future is large, and rare; kept
                        // out of every worker's future, it is not copied
                        // along with each of them.
                        Some((backoff, transport)) => {
                            Box::pin(backoff.fail(transport.as_ref(), delivery)).await;
                        }
                        None => settle(delivery.reject(true).await),
                    },
                    Err(_) => settle(delivery.ack().await),
                }
                outcome
            },
        )
    }
}

/// Whether an event can be handled: `false` (logged) for one that never
/// can (an unsupported content type, a bad context header).
fn check(pool: &WorkerPool, method: &str, delivery: &Delivery) -> bool {
    let service = pool.service_name();
    let properties = &delivery.message.properties;
    if let Some(content_type) = properties.content_type.as_deref()
        && content_type != CONTENT_TYPE_JSON
    {
        tracing::error!(
            service,
            method,
            content_type,
            "event with an unsupported content type; dropped"
        );
        return false;
    }
    match check_headers(&properties.headers) {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(
                service, method, %error,
                "event with a bad context header; dropped"
            );
            false
        }
    }
}
