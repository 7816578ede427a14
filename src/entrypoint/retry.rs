//! Retries with backoff, then a dead-letter queue: what happens to the
//! event of a `requeue_on_error` handler that fails.
//!
//! nameko requeues such an event at once, so an event that always fails
//! loops through its handler as fast as the broker can deliver it. enoki
//! does what the nameko-amqp-retry plugin does instead: the failed event
//! is published to a delay queue `<queue>.retry.<ms>`, which holds it for
//! `<ms>` milliseconds (`x-message-ttl`) and then dead-letters it back to
//! `<queue>` (`x-dead-letter-exchange` `""`, routing key `<queue>`), and
//! the original is acked once the broker has confirmed the copy. After
//! [`RETRY_LIMIT`](crate::config::Settings::retry_limit) retries the event
//! goes to `<queue>.dlq` instead, where `enoki dlq list|replay` finds it.
//!
//! The delays are [`RETRY_DELAYS`](crate::config::Settings::retry_delays)
//! (1 s, 5 s, 30 s by default; past the list the last one repeats). The
//! retries so far are counted from the message itself, so they survive a
//! restart of the service or of the broker: the broker's `x-death`
//! entries for the delay queues (one per queue, with a count), or, on a
//! broker that does not keep `x-death` on a republished message, the
//! `x-enoki-retries` header enoki sets on each copy. Each failure is also
//! recorded in `x-death` as a rejection from `<queue>`, with the exchange
//! and routing key the event was first published with, so a dead letter
//! shows where it came from.
//!
//! Only durable work queues (neither exclusive nor auto-delete) retry this
//! way; the event of a handler whose queue dies with its consumer is
//! requeued at once, as nameko does. `RETRY_DELAYS: []` turns backoff off
//! everywhere.

use std::time::Duration;

use serde_json::Value;

use super::settle;
use crate::config::{QueueType, Settings};
use crate::container_ctx::ContainerCtx;
use crate::error::Result;
use crate::names;
use crate::service_metrics::QueueMetrics;
use crate::transport::{Delivery, PublishOptions, QueueSpec, Transport, death};

/// The header that counts retries on brokers that drop `x-death` from a
/// republished message.
pub const RETRIES_HEADER: &str = "x-enoki-retries";

/// The retry policy of one work queue.
#[derive(Debug, Clone)]
pub struct Backoff {
    queue: String,
    delays: Vec<Duration>,
    limit: u32,
    quorum: bool,
    metrics: Option<QueueMetrics>,
}

/// What [`Backoff::fail`] did with a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Sent to a delay queue: retry number `retry` (from 1) after `delay`.
    Retried {
        /// Which retry this is, from 1.
        retry: u64,
        /// How long it waits first.
        delay: Duration,
    },
    /// Past the retry limit: sent to `<queue>.dlq`.
    DeadLettered,
    /// Could not be sent on (the broker refused the copy): requeued.
    Requeued,
}

impl Backoff {
    /// The policy `settings` give the work queue `queue`, or `None` when
    /// failed events are requeued at once: `RETRY_DELAYS` is empty, or the
    /// queue is exclusive, auto-delete or not durable.
    ///
    /// ```
    /// use std::time::Duration;
    /// use enoki::config::Settings;
    /// use enoki::entrypoint::retry::Backoff;
    /// use enoki::transport::QueueSpec;
    ///
    /// let backoff = Backoff::new(&Settings::new(), &QueueSpec::durable("q")).unwrap();
    /// assert_eq!(backoff.delay(0), Duration::from_secs(1));
    /// assert_eq!(backoff.delay(7), Duration::from_secs(30));
    /// assert_eq!(backoff.delay_queues(), ["q.retry.1000", "q.retry.5000", "q.retry.30000"]);
    /// ```
    pub fn new(settings: &Settings, queue: &QueueSpec) -> Option<Backoff> {
        let delays = settings.retry_delays();
        if delays.is_empty() || !queue.durable || queue.exclusive || queue.auto_delete {
            return None;
        }
        Some(Backoff {
            queue: queue.name.clone(),
            delays,
            limit: settings.retry_limit(),
            quorum: settings.queue_type() == QueueType::Quorum,
            metrics: None,
        })
    }

    /// Counts retries and dead letters in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<QueueMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The wait before retry `retries + 1`.
    pub fn delay(&self, retries: u64) -> Duration {
        let last = self.delays.len().saturating_sub(1);
        let index = usize::try_from(retries).map_or(last, |n| n.min(last));
        self.delays.get(index).copied().unwrap_or_default()
    }

    /// The delay queues the limit can reach, in order, without repeats.
    pub fn delay_queues(&self) -> Vec<String> {
        self.distinct_delays()
            .into_iter()
            .map(|delay| names::retry_queue(&self.queue, delay))
            .collect()
    }

    fn distinct_delays(&self) -> Vec<Duration> {
        let mut out: Vec<Duration> = Vec::new();
        for retry in 0..u64::from(self.limit).min(self.delays.len() as u64) {
            let delay = self.delay(retry);
            if !out.contains(&delay) {
                out.push(delay);
            }
        }
        out
    }

    /// Declares the delay queues and the dead-letter queue.
    pub async fn declare(&self, ctx: &ContainerCtx) -> Result<()> {
        let transport = ctx.transport();
        for delay in self.distinct_delays() {
            let mut spec = QueueSpec::durable(names::retry_queue(&self.queue, delay));
            let ttl = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            let arguments = &mut spec.arguments;
            arguments.insert("x-message-ttl".into(), ttl.into());
            arguments.insert("x-dead-letter-exchange".into(), "".into());
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                self.queue.clone().into(),
            );
            if self.quorum {
                // Replicated, and dead-lettered back without a loss window.
                arguments.insert("x-queue-type".into(), "quorum".into());
                arguments.insert("x-dead-letter-strategy".into(), "at-least-once".into());
                arguments.insert("x-overflow".into(), "reject-publish".into());
            }
            transport.declare_queue(&spec).await?;
        }
        super::declare_dead_letter_queue(ctx, &self.queue).await?;
        Ok(())
    }

    /// The retries a message has had, from its headers.
    pub fn retries(&self, headers: &crate::transport::Headers) -> u64 {
        let prefix = names::retry_queue_prefix(&self.queue);
        let from_broker = death::count(headers, |queue, reason| {
            reason == "expired" && queue.starts_with(&prefix)
        });
        let ours = headers
            .get(RETRIES_HEADER)
            .and_then(Value::as_u64)
            .unwrap_or(0);
        from_broker.max(ours)
    }

    /// Sends a failed delivery on: to its next delay queue, or past the
    /// limit to the dead-letter queue. The delivery is acked once the
    /// broker confirms the copy, and requeued if it refuses it, so the
    /// event is never lost.
    pub async fn fail(&self, transport: &dyn Transport, delivery: Delivery) -> Failed {
        let retries = self.retries(&delivery.message.properties.headers);
        let mut message = (*delivery.message).clone();
        let headers = &mut message.properties.headers;
        death::record(
            headers,
            &self.queue,
            "rejected",
            &delivery.exchange,
            &delivery.routing_key,
        );
        headers.remove("x-delivery-count");
        let (target, failed) = if retries < u64::from(self.limit) {
            let delay = self.delay(retries);
            headers.insert(RETRIES_HEADER.into(), (retries + 1).into());
            let failed = Failed::Retried {
                retry: retries + 1,
                delay,
            };
            (names::retry_queue(&self.queue, delay), failed)
        } else {
            (names::dead_letter_queue(&self.queue), Failed::DeadLettered)
        };
        let sent = transport
            .publish("", &target, message, PublishOptions { mandatory: true })
            .await;
        match sent {
            Ok(()) => {
                settle(delivery.ack().await);
                if let Some(metrics) = &self.metrics {
                    match failed {
                        Failed::Retried { .. } => metrics.retried(),
                        _ => metrics.dead_lettered(),
                    }
                }
                match failed {
                    Failed::Retried { retry, delay } => tracing::warn!(
                        queue = %self.queue,
                        retry,
                        delay_ms = delay.as_millis() as u64,
                        "handler failed; the event is retried later"
                    ),
                    _ => tracing::error!(
                        queue = %self.queue,
                        retries,
                        "handler failed after every retry; the event is dead-lettered to {target}"
                    ),
                }
                failed
            }
            Err(error) => {
                tracing::warn!(queue = %self.queue, %error, "could not send a failed event to {target}; requeued");
                settle(delivery.reject(true).await);
                Failed::Requeued
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backoff(settings: Settings) -> Backoff {
        Backoff::new(&settings, &QueueSpec::durable("q")).unwrap()
    }

    #[test]
    fn the_last_delay_repeats_and_the_limit_bounds_the_queues() {
        let settings = Settings::new()
            .with("RETRY_DELAYS", json!([0.25, 2]))
            .with("RETRY_LIMIT", json!(5));
        let backoff = backoff(settings);
        assert_eq!(backoff.delay(0), Duration::from_millis(250));
        assert_eq!(backoff.delay(1), Duration::from_secs(2));
        assert_eq!(backoff.delay(4), Duration::from_secs(2));
        assert_eq!(backoff.delay(u64::MAX), Duration::from_secs(2));
        assert_eq!(backoff.delay_queues(), ["q.retry.250", "q.retry.2000"]);
        let one = self::backoff(Settings::new().with("RETRY_LIMIT", json!(1)));
        assert_eq!(one.delay_queues(), ["q.retry.1000"]);
        let none = self::backoff(Settings::new().with("RETRY_LIMIT", json!(0)));
        assert!(none.delay_queues().is_empty());
    }

    #[test]
    fn only_durable_work_queues_back_off() {
        let settings = Settings::new();
        let mut spec = QueueSpec::durable("q");
        spec.auto_delete = true;
        assert!(Backoff::new(&settings, &spec).is_none());
        let off = Settings::new().with("RETRY_DELAYS", json!([]));
        assert!(Backoff::new(&off, &QueueSpec::durable("q")).is_none());
    }

    #[test]
    fn retries_count_from_x_death_or_our_header() {
        let backoff = backoff(Settings::new());
        let mut headers = crate::transport::Headers::new();
        assert_eq!(backoff.retries(&headers), 0);
        death::record(&mut headers, "q.retry.1000", "expired", "", "q.retry.1000");
        death::record(&mut headers, "q.retry.5000", "expired", "", "q.retry.5000");
        death::record(&mut headers, "q", "rejected", "src.events", "ping");
        death::record(&mut headers, "other.retry.1000", "expired", "", "x");
        assert_eq!(backoff.retries(&headers), 2);
        headers.insert(RETRIES_HEADER.into(), json!(3));
        assert_eq!(backoff.retries(&headers), 3);
    }
}
