//! Poison messages on classic queues: a message that keeps coming back
//! unsettled (its worker's process dies each time, or it is requeued over
//! and over) is parked in `<queue>.dlq` after `QUEUE_DELIVERY_LIMIT`
//! returns, as a quorum queue does on its own.
//!
//! A classic queue only says *whether* a message was delivered before (the
//! `redelivered` flag), not how often, and the flag does not survive a
//! republish. So when a work queue hands out a redelivered message,
//! [`RedeliveryLimit::admit`] counts the return in the message itself: it
//! publishes a copy with `x-enoki-redeliveries` raised by one (back to the
//! queue, or past the limit to `<queue>.dlq`, with an `x-death` entry of
//! reason `delivery_limit`) and acks the original once the broker has
//! confirmed the copy. The count lives in the message, so it survives
//! restarts of every process; the copy joins the back of the queue.
//!
//! An RPC request's copy goes back through the exchange and routing key it
//! came by (the routing key names its method); an event's copy goes to its
//! handler's queue only, through the default exchange. Quorum queues are
//! left to the broker (`x-delivery-limit`), and `QUEUE_DELIVERY_LIMIT: 0`
//! turns the count off.

use serde_json::Value;

use super::declare_dead_letter_queue;
use super::settle;
use crate::config::Settings;
use crate::container_ctx::ContainerCtx;
use crate::names;
use crate::service_metrics::QueueMetrics;
use crate::transport::{Delivery, PublishOptions, QueueSpec, TransportFuture, death};

/// The first step of a direct consumer's intake: a redelivery is counted
/// in `metrics`; `delivery` goes on at once (`Ok`) unless `limit` must
/// count its return first, which is async: then the returned future does,
/// and runs `then` on what it admits.
pub(crate) fn admit_soon<Fut>(
    limit: Option<&RedeliveryLimit>,
    metrics: Option<&QueueMetrics>,
    ctx: &ContainerCtx,
    delivery: Delivery,
    then: impl FnOnce(Delivery) -> Fut + Send + 'static,
) -> Result<Delivery, TransportFuture<'static, ()>>
where
    Fut: std::future::Future<Output = ()> + Send,
{
    if !delivery.redelivered {
        return Ok(delivery);
    }
    if let Some(metrics) = metrics {
        metrics.redelivered();
    }
    let Some(limit) = limit else {
        return Ok(delivery);
    };
    let (limit, ctx) = (limit.clone(), ctx.clone());
    Err(TransportFuture::boxed(async move {
        if let Some(delivery) = admit(Some(&limit), &ctx, delivery).await {
            then(delivery).await;
        }
    }))
}

/// The delivery to run: `delivery` itself, unless `limit` is set and it
/// is a redelivery (see [`RedeliveryLimit::admit`]).
pub async fn admit(
    limit: Option<&RedeliveryLimit>,
    ctx: &ContainerCtx,
    delivery: Delivery,
) -> Option<Delivery> {
    match limit {
        // A container being killed gives its deliveries back uncounted.
        Some(limit) if delivery.redelivered && !ctx.kill_token().is_cancelled() => {
            limit.admit(ctx, delivery).await
        }
        _ => Some(delivery),
    }
}

/// The header that counts the returns of a message of a classic queue.
pub const REDELIVERIES_HEADER: &str = "x-enoki-redeliveries";

/// How a copy goes back to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// Through the exchange and routing key it came by (RPC requests).
    AsRouted,
    /// Straight to the queue, through the default exchange (events).
    ToQueue,
}

/// The redelivery count of one classic work queue.
#[derive(Debug, Clone)]
pub struct RedeliveryLimit {
    queue: String,
    limit: u64,
    route: Return,
    metrics: Option<QueueMetrics>,
}

impl RedeliveryLimit {
    /// The limit `settings` give the queue declared as `queue`: `None` for
    /// a quorum queue (the broker counts), a queue that dies with its
    /// consumer, or `QUEUE_DELIVERY_LIMIT: 0`.
    ///
    /// ```
    /// use enoki::config::Settings;
    /// use enoki::entrypoint::poison::{RedeliveryLimit, Return};
    /// use enoki::transport::QueueSpec;
    ///
    /// let classic = QueueSpec::durable("rpc-greeter");
    /// assert!(RedeliveryLimit::new(&Settings::new(), &classic, Return::AsRouted).is_some());
    /// let quorum = classic.clone().quorum(Some(5), "rpc-greeter.dlq");
    /// assert!(RedeliveryLimit::new(&Settings::new(), &quorum, Return::AsRouted).is_none());
    /// ```
    pub fn new(settings: &Settings, queue: &QueueSpec, route: Return) -> Option<Self> {
        let limit = settings.queue_delivery_limit()?;
        if queue.is_quorum() || !queue.durable || queue.exclusive || queue.auto_delete {
            return None;
        }
        Some(RedeliveryLimit {
            queue: queue.name.clone(),
            limit: u64::from(limit),
            route,
            metrics: None,
        })
    }

    /// Counts dead letters in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<QueueMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The returns a message has had, from its headers.
    pub fn returns(headers: &crate::transport::Headers) -> u64 {
        headers
            .get(REDELIVERIES_HEADER)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// The delivery, to run, or `None` when it was a redelivery and a copy
    /// has taken its place (back in the queue, or in `<queue>.dlq` past
    /// the limit). If the copy cannot be published the delivery is run
    /// all the same: nothing is lost.
    pub async fn admit(&self, ctx: &ContainerCtx, delivery: Delivery) -> Option<Delivery> {
        if !delivery.redelivered {
            return Some(delivery);
        }
        let returns = Self::returns(&delivery.message.properties.headers) + 1;
        let mut message = (*delivery.message).clone();
        let headers = &mut message.properties.headers;
        headers.insert(REDELIVERIES_HEADER.into(), returns.into());
        let parked = returns > self.limit;
        let (exchange, routing_key) = if parked {
            death::record(
                headers,
                &self.queue,
                "delivery_limit",
                &delivery.exchange,
                &delivery.routing_key,
            );
            message.properties.expiration = None;
            match declare_dead_letter_queue(ctx, &self.queue).await {
                Ok(dlq) => (String::new(), dlq),
                Err(error) => {
                    tracing::warn!(queue = %self.queue, %error, "cannot declare the dead-letter queue");
                    return Some(delivery);
                }
            }
        } else if self.route == Return::AsRouted {
            (
                delivery.exchange.to_string(),
                delivery.routing_key.to_string(),
            )
        } else {
            (String::new(), self.queue.clone())
        };
        let sent = ctx
            .transport()
            .publish(
                &exchange,
                &routing_key,
                message,
                PublishOptions { mandatory: true },
            )
            .await;
        match sent {
            Ok(()) => {
                settle(delivery.ack().await);
                if parked && let Some(metrics) = &self.metrics {
                    metrics.dead_lettered();
                }
                if parked {
                    tracing::error!(
                        queue = %self.queue,
                        returns,
                        "a message came back unsettled past the delivery limit; parked in {}",
                        names::dead_letter_queue(&self.queue)
                    );
                } else {
                    tracing::warn!(queue = %self.queue, returns, "a redelivered message, counted");
                }
                None
            }
            Err(error) => {
                tracing::warn!(queue = %self.queue, %error, "cannot count a redelivery; running it as is");
                Some(delivery)
            }
        }
    }
}
