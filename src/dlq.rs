//! Dead-letter queues: what the broker parked in `<queue>.dlq` (a message
//! of a quorum work queue past its delivery limit, see
//! [`QueueType::Quorum`](crate::config::QueueType::Quorum)), listed for a
//! person to look at ([`list`], `enoki dlq list QUEUE`) and sent back to
//! its queue once the cause is fixed ([`replay`], `enoki dlq replay QUEUE`).
//! enoki itself parks there the event of a `requeue_on_error` handler that
//! failed past its retries ([`retry`](crate::entrypoint::retry)).
//!
//! A replayed message goes back to the queue it died in: an RPC request
//! (from `rpc-<service>`) through the RPC exchange with its original routing
//! key, which names its method; an event straight to its handler's queue,
//! through the default exchange, so that the other handlers of that event
//! do not get it a second time. It is a new message to the broker, with a
//! new delivery count and no retries yet (its `x-death` goes): if it fails
//! again it comes back to the dead-letter queue after the delivery limit
//! or its retries, once. A replay never takes a message
//! twice: each replayed message carries the replay's id
//! (`x-enoki-replay`), and a replay stops when one comes back to it.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::context::new_uuid;
use crate::entrypoint::retry::RETRIES_HEADER;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::names;
use crate::transport::{ConsumeOptions, Delivery, PublishOptions, Transport, death};

/// The most messages one [`list`] or [`replay`] takes.
pub const MAX_BATCH: usize = 10_000;

/// How long a dead-letter queue must stay silent to count as drained (the
/// broker pushes what is ready at once).
const DRAINED_AFTER: Duration = Duration::from_millis(500);

/// The header a replay marks its messages with.
const REPLAY_HEADER: &str = "x-enoki-replay";

/// A message in a dead-letter queue, as [`list`] shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The queue it died in.
    pub queue: String,
    /// Why (`x-death`): `delivery_limit`, `rejected`, `expired`, `maxlen`.
    pub reason: String,
    /// How many times it died there.
    pub count: u64,
    /// The exchange it was first published to.
    pub exchange: String,
    /// Its original routing key (an RPC request's `<service>.<method>`, an
    /// event's type).
    pub routing_key: String,
    /// The body, as text (lossy for bytes that are not UTF-8; at most 4 KiB
    /// of it).
    pub body: String,
}

/// Where a dead letter came from, read from its `x-death` header (the
/// newest entry).
fn death(delivery: &Delivery, fallback_queue: &str) -> DeadLetter {
    let newest = death::newest(&delivery.message.properties.headers).unwrap_or_default();
    let or = |text: String, fallback: &str| {
        if text.is_empty() {
            fallback.to_owned()
        } else {
            text
        }
    };
    let body = &delivery.message.body;
    let shown = &body[..body.len().min(4096)];
    DeadLetter {
        queue: or(newest.queue, fallback_queue),
        reason: or(newest.reason, "unknown"),
        count: newest.count.max(1),
        exchange: newest.exchange,
        routing_key: newest
            .routing_keys
            .into_iter()
            .next()
            .unwrap_or_else(|| delivery.routing_key.to_string()),
        body: String::from_utf8_lossy(shown).into_owned(),
    }
}

/// The work queue and its dead-letter queue, from either name.
fn queues(queue: &str) -> (String, String) {
    match queue.strip_suffix(".dlq") {
        Some(work) => (work.to_owned(), queue.to_owned()),
        None => (queue.to_owned(), names::dead_letter_queue(queue)),
    }
}

fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_BATCH {
        return Err(Error::Invalid(format!(
            "a dead-letter batch is 1 to {MAX_BATCH} messages, not {limit}"
        )));
    }
    Ok(())
}

/// Up to `limit` messages from `dlq`, unsettled (dropping them puts them
/// back, in order), until it has been silent for [`DRAINED_AFTER`].
async fn take(transport: &dyn Transport, dlq: &str, limit: usize) -> Result<Vec<Delivery>> {
    let prefetch = u16::try_from(limit).unwrap_or(u16::MAX);
    let mut consumer = transport
        .consume(
            dlq,
            ConsumeOptions {
                prefetch,
                ..Default::default()
            },
        )
        .await?;
    let mut taken = Vec::new();
    while taken.len() < limit {
        match tokio::time::timeout(DRAINED_AFTER, consumer.next()).await {
            Ok(Some(delivery)) => taken.push(delivery),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(taken)
}

/// The messages in the dead-letter queue of `queue` (`rpc-greeter` or
/// `rpc-greeter.dlq`), oldest first, at most `limit` (1 to
/// [`MAX_BATCH`]). They stay in the queue.
pub async fn list(transport: &dyn Transport, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
    check_limit(limit)?;
    let (work, dlq) = queues(queue);
    let taken = take(transport, &dlq, limit).await?;
    Ok(taken
        .iter()
        .map(|delivery| death(delivery, &work))
        .collect())
}

/// What a [`replay`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Messages sent back to their queue (and removed from the dead-letter
    /// queue).
    pub replayed: usize,
    /// Messages that could not be sent back (left in the dead-letter queue).
    pub failed: usize,
}

/// Sends the messages of the dead-letter queue of `queue` back to the
/// queue they died in (see the [module docs](self)), at most `limit` (1 to
/// [`MAX_BATCH`]). Each is removed from the dead-letter queue only once the
/// broker has confirmed it back in place; one that cannot be sent stays.
pub async fn replay(transport: &dyn Transport, queue: &str, limit: usize) -> Result<Replayed> {
    check_limit(limit)?;
    let (work, dlq) = queues(queue);
    let id = new_uuid();
    let taken = take(transport, &dlq, limit).await?;
    let mut done = Replayed::default();
    for delivery in taken {
        let headers = &delivery.message.properties.headers;
        if headers.get(REPLAY_HEADER).and_then(Value::as_str) == Some(id.as_str()) {
            // Replayed by this very replay, and dead again: leave it.
            break;
        }
        let letter = death(&delivery, &work);
        let (exchange, routing_key) = if work.starts_with("rpc-") && !letter.exchange.is_empty() {
            (letter.exchange.clone(), letter.routing_key.clone())
        } else {
            (String::new(), work.clone())
        };
        let mut message: Message = (*delivery.message).clone();
        let headers = &mut message.properties.headers;
        // A new life: its delivery count and retries start again.
        headers.remove("x-delivery-count");
        headers.remove(death::HEADER);
        headers.remove(RETRIES_HEADER);
        headers.insert(REPLAY_HEADER.into(), id.clone().into());
        let sent = transport
            .publish(
                &exchange,
                &routing_key,
                message,
                PublishOptions { mandatory: true },
            )
            .await;
        match sent {
            Ok(()) => {
                delivery.ack().await?;
                done.replayed += 1;
            }
            Err(err) => {
                tracing::warn!(
                    queue = %work,
                    error = %err,
                    "could not replay a dead letter; it stays in {dlq}"
                );
                done.failed += 1;
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_name_finds_both_queues() {
        assert_eq!(
            queues("rpc-greeter"),
            ("rpc-greeter".to_owned(), "rpc-greeter.dlq".to_owned())
        );
        assert_eq!(
            queues("rpc-greeter.dlq"),
            ("rpc-greeter".to_owned(), "rpc-greeter.dlq".to_owned())
        );
    }

    #[test]
    fn batches_are_bounded() {
        assert!(check_limit(0).is_err());
        assert!(check_limit(MAX_BATCH + 1).is_err());
        assert!(check_limit(MAX_BATCH).is_ok());
    }
}
