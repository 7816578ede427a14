//! The environment a behaviour runs in, and small helpers shared by the
//! behaviours: unique names, bounded waits, and "nothing arrives" checks.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use enoki::Error;
use enoki::message::Message;
use enoki::transport::{
    ConsumeOptions, Consumer, Delivery, ExchangeSpec, PublishOptions, QueueSpec, Transport,
};
use futures::FutureExt;

/// How long any single behaviour may run before it is failed as hung.
pub(crate) const BEHAVIOUR_DEADLINE: Duration = Duration::from_secs(60);

/// How long to wait for a delivery that must arrive. Generous: only a hang
/// (or a lost message) runs into it.
pub(crate) const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to watch a consumer when checking that something does NOT
/// arrive. This is the one place the suite relies on wall-clock time: a
/// message that was wrongly kept or requeued would normally show up within
/// a few milliseconds (the broker pushes it as soon as it is routed), so
/// 200 ms of silence is taken as "not delivered". Too short a value could
/// only make such a check pass wrongly, never fail wrongly.
pub(crate) const SILENCE: Duration = Duration::from_millis(200);

/// How long to poll for a queue to disappear (auto-delete, exclusive queue
/// of a closed connection, `x-expires`): brokers may delete asynchronously.
pub(crate) const VANISH_DEADLINE: Duration = Duration::from_secs(3);

/// Hands out connections to one broker (one vhost on RabbitMQ) for one test.
#[async_trait]
pub(crate) trait TransportEnv: Send + Sync {
    /// A NEW connection to the same broker/vhost on every call, so that
    /// exclusive queues and connection close can be observed from another
    /// connection.
    async fn connect(&self) -> Arc<dyn Transport>;

    /// The number of consumers the broker counts on `queue`, if the
    /// environment can ask it (a cancelled consumer may still count for a
    /// moment: cancelling is asynchronous on RabbitMQ).
    async fn consumer_count(&self, _queue: &str) -> Option<usize> {
        None
    }

    /// Called once after the behaviour, whether it passed or panicked (e.g.
    /// to delete a per-test RabbitMQ vhost).
    async fn teardown(&self) {}
}

/// Waits until the broker counts no consumer on `queue` (at once when the
/// environment cannot tell).
pub(crate) async fn await_no_consumers(env: &dyn TransportEnv, queue: &str) {
    let deadline = tokio::time::Instant::now() + ARRIVAL_TIMEOUT;
    while env.consumer_count(queue).await.is_some_and(|n| n > 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumers of {queue} are still there after {ARRIVAL_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs one behaviour against `env`: fails it if it hangs, always tears the
/// environment down, then re-raises the behaviour's panic, if any.
pub(crate) async fn run(env: &dyn TransportEnv, behaviour: impl Future<Output = ()>) {
    let outcome = AssertUnwindSafe(tokio::time::timeout(BEHAVIOUR_DEADLINE, behaviour))
        .catch_unwind()
        .await;
    env.teardown().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("behaviour did not finish within {BEHAVIOUR_DEADLINE:?}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `<prefix>-<uuid>`: names that cannot collide across tests or runs on a
/// shared broker.
pub(crate) fn unique(prefix: &str) -> String {
    format!("enoki-suite-{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A JSON message with nameko's standard properties and `body`.
pub(crate) fn msg(body: &str) -> Message {
    Message::json(body.to_owned())
}

/// A delivery's body as text.
pub(crate) fn body(delivery: &Delivery) -> String {
    String::from_utf8(delivery.message.body.to_vec()).expect("utf-8 body")
}

/// Publishing options.
pub(crate) const MANDATORY: PublishOptions = PublishOptions { mandatory: true };
/// Publishing options.
pub(crate) const NOT_MANDATORY: PublishOptions = PublishOptions { mandatory: false };

/// Consuming options with a prefetch window (0 is unlimited).
pub(crate) fn prefetch(n: u16) -> ConsumeOptions {
    ConsumeOptions {
        prefetch: n,
        ..Default::default()
    }
}

/// A durable topic exchange, declared.
pub(crate) async fn exchange(conn: &Arc<dyn Transport>, prefix: &str) -> String {
    let name = unique(prefix);
    conn.declare_exchange(&ExchangeSpec::topic(&name))
        .await
        .expect("declare exchange");
    name
}

/// A durable queue, declared.
pub(crate) async fn queue(conn: &Arc<dyn Transport>, prefix: &str) -> String {
    let name = unique(prefix);
    conn.declare_queue(&QueueSpec::durable(&name))
        .await
        .expect("declare queue");
    name
}

/// A durable queue, declared and bound to `exchange` with each pattern.
pub(crate) async fn bound_queue(
    conn: &Arc<dyn Transport>,
    prefix: &str,
    exchange: &str,
    patterns: &[&str],
) -> String {
    let name = queue(conn, prefix).await;
    for pattern in patterns {
        conn.bind(&name, exchange, pattern).await.expect("bind");
    }
    name
}

/// Publishes a message that must be taken by the broker.
pub(crate) async fn publish(conn: &Arc<dyn Transport>, exchange: &str, key: &str, body: &str) {
    conn.publish(exchange, key, msg(body), NOT_MANDATORY)
        .await
        .unwrap_or_else(|err| panic!("publish {body:?} to {exchange:?}/{key:?}: {err}"));
}

/// The next delivery, which must arrive within [`ARRIVAL_TIMEOUT`].
pub(crate) async fn recv(consumer: &mut Consumer) -> Delivery {
    match tokio::time::timeout(ARRIVAL_TIMEOUT, consumer.next()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("consumer ended while a delivery was expected"),
        Err(_) => panic!("no delivery within {ARRIVAL_TIMEOUT:?}"),
    }
}

/// Receives `n` deliveries, acks each, and returns their bodies in arrival
/// order.
pub(crate) async fn recv_acked(consumer: &mut Consumer, n: usize) -> Vec<String> {
    let mut bodies = Vec::with_capacity(n);
    for _ in 0..n {
        let delivery = recv(consumer).await;
        bodies.push(body(&delivery));
        delivery.ack().await.expect("ack");
    }
    bodies
}

/// Asserts that nothing arrives on `consumer` for [`SILENCE`] (and that it
/// does not end either). See [`SILENCE`] for why a timeout is right here.
pub(crate) async fn assert_silent(consumer: &mut Consumer, what: &str) {
    match tokio::time::timeout(SILENCE, consumer.next()).await {
        Err(_) => {}
        Ok(Some(delivery)) => panic!(
            "{what}: unexpected delivery {:?} (routing key {:?}, redelivered {})",
            body(&delivery),
            delivery.routing_key,
            delivery.redelivered
        ),
        Ok(None) => panic!("{what}: consumer ended unexpectedly"),
    }
}

/// Asserts that the consumer's stream ends (yields `None`) without
/// yielding any further delivery.
pub(crate) async fn assert_ended(consumer: &mut Consumer, what: &str) {
    match tokio::time::timeout(ARRIVAL_TIMEOUT, consumer.next()).await {
        Ok(None) => {}
        Ok(Some(delivery)) => panic!(
            "{what}: consumer should have ended, got delivery {:?} (redelivered {})",
            body(&delivery),
            delivery.redelivered
        ),
        Err(_) => panic!("{what}: consumer did not end within {ARRIVAL_TIMEOUT:?}"),
    }
}

/// Whether a queue named `queue` currently exists, probed with a mandatory
/// publish to the default exchange (which only routes to existing queues).
/// The probe message is left in the queue if it exists.
pub(crate) async fn queue_exists(conn: &Arc<dyn Transport>, queue: &str) -> bool {
    match conn.publish("", queue, msg("probe"), MANDATORY).await {
        Ok(()) => true,
        Err(Error::Unroutable { .. }) => false,
        Err(err) => panic!("probing queue {queue:?}: unexpected error {err}"),
    }
}

/// Polls (every 20 ms, up to [`VANISH_DEADLINE`]) until `queue` no longer
/// exists; panics if it is still there at the deadline.
pub(crate) async fn assert_vanishes(conn: &Arc<dyn Transport>, queue: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + VANISH_DEADLINE;
    while queue_exists(conn, queue).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: queue {queue:?} still exists after {VANISH_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that a result is the expected error variant.
macro_rules! assert_err {
    ($result:expr, $pattern:pat, $what:expr) => {
        match $result {
            Err($pattern) => {}
            Err(other) => panic!(
                "{}: expected {}, got error {other:?}",
                $what,
                stringify!($pattern)
            ),
            Ok(_) => panic!("{}: expected {}, got Ok", $what, stringify!($pattern)),
        }
    };
}
