//! The broker seam: [`Transport`], in AMQP 0-9-1's own terms.
//!
//! A transport knows topic exchanges, named queues (durable, exclusive,
//! auto-delete, arguments such as `x-expires`), bindings with `*` and `#`
//! patterns, publishing with properties, headers and publisher confirms,
//! and consuming with a prefetch window, acks, rejects and a redelivered
//! flag. It knows nothing of RPC or events: those are built on top, with
//! nameko's names, in [`crate::entrypoint`](mod@crate::entrypoint) and [`crate::client`].
//!
//! Implementations:
//! - [`memory::MemoryTransport`]: the embedded in-process broker, with
//!   RabbitMQ's semantics for everything enoki uses;
//! - `amqp` (RabbitMQ via lapin), behind the `amqp` feature.
//!
//! `tests/transport_suite.rs` holds the behaviour both must show.
//!
//! # Contract
//! - [`Transport::publish`] returns once the broker has taken the message
//!   (after the publisher confirm on AMQP). A `mandatory` message that no
//!   queue is bound for fails with [`Error::Unroutable`]; a message to an
//!   exchange that does not exist fails with [`Error::ExchangeNotFound`].
//! - A [`Consumer`] receives at most `prefetch` unsettled deliveries at a
//!   time (0 means unlimited). Several consumers on one queue compete:
//!   each message goes to one of them.
//! - Every [`Delivery`] must be settled with [`Delivery::ack`] or
//!   [`Delivery::reject`]. A delivery (or its [`Acker`]) dropped unsettled
//!   is requeued and delivered again with `redelivered` set, as when an AMQP
//!   consumer goes away.
//! - Redeclaring an exchange or queue with the same flags is a no-op;
//!   with different flags it is [`Error::PreconditionFailed`].
//! - Names, routing keys and patterns longer than [`MAX_NAME_LEN`] are
//!   refused with [`Error::Invalid`].

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use futures::stream::StreamExt;

use crate::error::{Error, Result};
pub use crate::message::Headers;
use crate::message::Message;

#[cfg(feature = "amqp")]
pub mod amqp;
mod connect;
pub mod death;
pub mod memory;
pub mod topic;

#[cfg(feature = "amqp")]
pub use amqp::{AmqpOptions, AmqpTransport};
pub use connect::connect;
pub use memory::MemoryTransport;

/// The longest exchange name, queue name, routing key or binding pattern
/// AMQP allows (a short string): 255 bytes. Every transport refuses longer
/// ones with [`Error::Invalid`], as RabbitMQ does.
pub const MAX_NAME_LEN: usize = 255;

/// Checks that `value` fits an AMQP short string; the error names `what`.
///
/// ```
/// use enoki::transport::check_name;
///
/// assert!(check_name("routing key", "greeter.hello").is_ok());
/// let err = check_name("routing key", &"a".repeat(256)).unwrap_err();
/// assert_eq!(err.to_string(), "routing key is longer than 255 bytes (256 bytes)");
/// ```
pub fn check_name(what: &str, value: &str) -> Result<()> {
    if value.len() > MAX_NAME_LEN {
        return Err(Error::Invalid(format!(
            "{what} is longer than {MAX_NAME_LEN} bytes ({} bytes)",
            value.len()
        )));
    }
    Ok(())
}

/// A topic exchange to declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// Exchange name.
    pub name: String,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
}

impl ExchangeSpec {
    /// A durable, non-auto-delete topic exchange, as nameko declares them.
    pub fn topic(name: impl Into<String>) -> Self {
        ExchangeSpec {
            name: name.into(),
            durable: true,
            auto_delete: false,
        }
    }
}

/// A queue to declare.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Queue name.
    pub name: String,
    /// Survives a broker restart.
    pub durable: bool,
    /// Used by one connection only, and deleted when it closes.
    pub exclusive: bool,
    /// Deleted when its last consumer goes (after it had one).
    pub auto_delete: bool,
    /// Queue arguments, e.g. `x-expires` (milliseconds, as an integer).
    pub arguments: Headers,
}

impl QueueSpec {
    /// A durable, shared, non-auto-delete queue with no arguments.
    pub fn durable(name: impl Into<String>) -> Self {
        QueueSpec {
            name: name.into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: Headers::new(),
        }
    }

    /// Sets `x-expires`: the queue is deleted after being unused this long.
    #[must_use]
    pub fn expires_after_ms(mut self, ms: i64) -> Self {
        self.arguments.insert("x-expires".into(), ms.into());
        self
    }

    /// Makes this a quorum queue (`x-queue-type: quorum`; it must be
    /// durable, neither exclusive nor auto-delete) whose messages are
    /// dead-lettered, through the default exchange, to `dead_letter_queue`
    /// once delivered `delivery_limit` times (`x-delivery-limit`; `None`:
    /// no limit) or rejected without requeue.
    ///
    /// ```
    /// use enoki::transport::QueueSpec;
    ///
    /// let spec = QueueSpec::durable("rpc-greeter").quorum(Some(5), "rpc-greeter.dlq");
    /// assert_eq!(spec.arguments["x-queue-type"], "quorum");
    /// assert_eq!(spec.arguments["x-delivery-limit"], 5);
    /// assert_eq!(spec.arguments["x-dead-letter-routing-key"], "rpc-greeter.dlq");
    /// ```
    #[must_use]
    pub fn quorum(mut self, delivery_limit: Option<u32>, dead_letter_queue: &str) -> Self {
        self.arguments
            .insert("x-queue-type".into(), "quorum".into());
        if let Some(limit) = delivery_limit {
            self.arguments
                .insert("x-delivery-limit".into(), limit.into());
        }
        self.arguments
            .insert("x-dead-letter-exchange".into(), "".into());
        self.arguments
            .insert("x-dead-letter-routing-key".into(), dead_letter_queue.into());
        self
    }

    /// Whether this is a quorum queue (`x-queue-type: quorum`).
    pub fn is_quorum(&self) -> bool {
        self.arguments
            .get("x-queue-type")
            .is_some_and(|t| t == "quorum")
    }

    /// The `x-expires` argument, if set.
    pub fn expires_ms(&self) -> Option<u64> {
        self.arguments
            .get("x-expires")
            .and_then(serde_json::Value::as_u64)
    }
}

/// Options of [`Transport::publish`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// Fail with [`Error::Unroutable`] if no queue is bound for the message.
    pub mandatory: bool,
}

/// Options of [`Transport::consume`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumeOptions {
    /// Maximum unsettled deliveries for this consumer; 0 is unlimited.
    pub prefetch: u16,
    /// The consumer settles each delivery promptly and in the order it got
    /// them (an RPC client's replies, the gateway's events), so the
    /// transport may confirm several acks at once. On AMQP the acks settled
    /// so far go as one `basic.ack` with `multiple` when the consumer asks
    /// for its next delivery and none is waiting (or once half its prefetch
    /// is settled, or when it lets go), which saves the broker and the
    /// client a frame and a round of bookkeeping per message; rejects go at
    /// once. Should the connection be lost first, the broker delivers those
    /// messages again, as any unacked delivery. An ack never covers a
    /// delivery still held, so settling out of order loses nothing, but a
    /// held delivery holds back the acks of every later one (and, at the
    /// prefetch, further deliveries): not for workers that may run long.
    /// The embedded broker has nothing to save and ignores it.
    pub coalesce_acks: bool,
}

/// The broker, in AMQP's terms. See the [module docs](self) for the
/// contract every implementation keeps.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Declares a topic exchange.
    async fn declare_exchange(&self, exchange: &ExchangeSpec) -> Result<()>;

    /// Whether an exchange exists, without creating it (AMQP's passive
    /// declare). The default answers `false`: a transport that cannot tell
    /// knows of no exchange it did not declare.
    async fn exchange_exists(&self, _name: &str) -> Result<bool> {
        Ok(false)
    }

    /// The messages ready in a queue, without creating it (AMQP's passive
    /// declare): `None` when it does not exist. The default answers
    /// `None`: a transport that cannot tell.
    async fn queue_depth(&self, _name: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Declares a queue.
    async fn declare_queue(&self, queue: &QueueSpec) -> Result<()>;

    /// Deletes a queue and its bindings; unknown queues are ignored.
    async fn delete_queue(&self, name: &str) -> Result<()>;

    /// Binds a queue to an exchange with a routing-key pattern (`*` is one
    /// word, `#` zero or more).
    async fn bind(&self, queue: &str, exchange: &str, pattern: &str) -> Result<()>;

    /// Removes a binding; unknown bindings are ignored.
    async fn unbind(&self, queue: &str, exchange: &str, pattern: &str) -> Result<()>;

    /// Publishes a message and waits for the broker to take it. A broker
    /// that takes it at once (the embedded one) answers with a
    /// [`TransportFuture::ready`], which costs no allocation.
    fn publish<'a>(
        &'a self,
        exchange: &'a str,
        routing_key: &'a str,
        message: Message,
        options: PublishOptions,
    ) -> TransportFuture<'a, Result<()>>;

    /// Starts consuming from a queue.
    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Consumer>;

    /// Starts consuming from a queue, handing each delivery to `deliver`
    /// as soon as the broker has it. The embedded broker calls `deliver`
    /// on the task that published the message, so a delivery costs no task
    /// switch; the default (and the AMQP transport) calls it from the
    /// returned [`DirectConsumer`], which must be polled.
    ///
    /// `deliver` must be quick and must not block: it settles the delivery,
    /// or returns what will as a future. That future runs alongside later
    /// deliveries (prefetch bounds how many): the embedded broker polls it
    /// once on the publisher's task and spawns it only if it waits, so a
    /// handler that never waits costs no task; the default spawns it. A
    /// delivery it drops
    /// is requeued, and the embedded broker may hand it straight back: hold
    /// it instead until the consumer is gone. The [`DirectConsumer`]
    /// completes when consuming ends (the connection closed, the queue was
    /// deleted); dropping it cancels the consumer.
    async fn consume_with(
        &self,
        queue: &str,
        options: ConsumeOptions,
        deliver: DeliverFn,
    ) -> Result<DirectConsumer> {
        let mut consumer = self.consume(queue, options).await?;
        Ok(DirectConsumer::new(async move {
            while let Some(delivery) = consumer.next().await {
                if let Err(rest) = deliver(delivery).into_ready() {
                    tokio::spawn(rest);
                }
            }
        }))
    }

    /// Closes the transport: consumers end, unsettled deliveries go back to
    /// their queues, later calls fail with [`Error::TransportClosed`].
    async fn close(&self);

    /// A short name for logs: `memory` or `amqp`.
    fn kind(&self) -> &'static str;

    /// Whether the broker connection is up right now (false while a
    /// transport reconnects, and after [`Transport::close`]).
    fn is_connected(&self) -> bool {
        true
    }
}

/// A message handed to a consumer, to be acked or rejected.
pub struct Delivery {
    /// The exchange it was published to (shared: a broker hands the same
    /// name to every delivery without copying it).
    pub exchange: Arc<str>,
    /// Its routing key (shared by the deliveries of one message).
    pub routing_key: Arc<str>,
    /// Set when this message was delivered before and not acked.
    pub redelivered: bool,
    /// The message (shared, so a broker can keep it for redelivery without
    /// copying it).
    pub message: Arc<Message>,
    /// Settles the delivery.
    pub acker: Acker,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("redelivered", &self.redelivered)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Acknowledges the message: the broker forgets it.
    pub fn ack(self) -> TransportFuture<'static, Result<()>> {
        self.acker.ack()
    }

    /// Rejects the message: requeued (and redelivered) if `requeue`,
    /// otherwise dropped.
    pub fn reject(self, requeue: bool) -> TransportFuture<'static, Result<()>> {
        self.acker.reject(requeue)
    }
}

/// The future of a transport operation that often completes at once: a
/// value already there ([`ready`](Self::ready), no allocation), or a boxed
/// future ([`boxed`](Self::boxed)).
///
/// ```
/// use enoki::transport::TransportFuture;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(TransportFuture::ready(1).await, 1);
/// assert_eq!(TransportFuture::boxed(async { 2 }).await, 2);
/// # }
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct TransportFuture<'a, T>(Inner<'a, T>);

enum Inner<'a, T> {
    Ready(Option<T>),
    Boxed(futures::future::BoxFuture<'a, T>),
}

impl<'a, T> TransportFuture<'a, T> {
    /// A future that resolves to `value` when first polled.
    pub fn ready(value: T) -> Self {
        TransportFuture(Inner::Ready(Some(value)))
    }

    /// The value, if this future is one already there; itself otherwise.
    ///
    /// ```
    /// use enoki::transport::TransportFuture;
    ///
    /// assert_eq!(TransportFuture::ready(1).into_ready().ok(), Some(1));
    /// assert!(TransportFuture::boxed(async { 2 }).into_ready().is_err());
    /// ```
    pub fn into_ready(self) -> std::result::Result<T, Self> {
        match self.0 {
            Inner::Ready(Some(value)) => Ok(value),
            other => Err(TransportFuture(other)),
        }
    }

    /// A future that runs `future`.
    pub fn boxed(future: impl std::future::Future<Output = T> + Send + 'a) -> Self {
        TransportFuture(Inner::Boxed(Box::pin(future)))
    }
}

// The value is never pinned (it is moved out when ready), and the boxed
// future is pinned by its box.
impl<T> Unpin for TransportFuture<'_, T> {}

impl<T> std::future::Future for TransportFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        match &mut self.get_mut().0 {
            Inner::Ready(value) => std::task::Poll::Ready(
                value
                    .take()
                    .expect("a TransportFuture polled after it completed"),
            ),
            Inner::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for TransportFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Inner::Ready(_) => "TransportFuture::Ready",
            Inner::Boxed(_) => "TransportFuture::Boxed",
        })
    }
}

/// How a transport settles one delivery. Implemented by transports; users
/// hold an [`Acker`].
pub trait Settle: Send + Sync + 'static {
    /// Acknowledges the delivery.
    fn ack(self: Box<Self>) -> TransportFuture<'static, Result<()>>;
    /// Rejects the delivery, requeueing it if `requeue`.
    fn reject(self: Box<Self>, requeue: bool) -> TransportFuture<'static, Result<()>>;
    /// Whether the broker still holds this delivery for its consumer: false
    /// once the channel or connection it came on is gone (the broker has
    /// requeued it, and may deliver it to someone else). The default
    /// answers true.
    fn is_held(&self) -> bool {
        true
    }
}

/// Settles one delivery. Dropped unsettled, the message is requeued.
pub struct Acker(Settler);

/// An [`Acker`]'s handle: any transport's, boxed, or a tag on a broker that
/// settles by tag (the embedded one), held inline: a delivery then costs no
/// allocation for it.
enum Settler {
    Boxed(Box<dyn Settle>),
    ByTag(TagAck),
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settlement {
    Ack,
    Requeue,
    Reject,
}

/// A broker that settles its deliveries by tag (the embedded one's
/// queues).
trait SettleByTag: Send + Sync {
    /// Settles delivery `tag`.
    fn settle_tag(self: Arc<Self>, tag: u64, how: Settlement) -> Result<()>;
    /// Whether delivery `tag` is still unsettled there.
    fn holds_tag(&self, tag: u64) -> bool;
}

/// A delivery's tag on a broker that settles by tag; requeued when dropped
/// unsettled.
struct TagAck {
    broker: std::sync::Weak<dyn SettleByTag>,
    tag: u64,
    settled: bool,
}

impl TagAck {
    fn settle(&mut self, how: Settlement) -> Result<()> {
        self.settled = true;
        match self.broker.upgrade() {
            Some(broker) => broker.settle_tag(self.tag, how),
            None => Ok(()),
        }
    }
}

impl Drop for TagAck {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.settle(Settlement::Requeue);
        }
    }
}

impl Acker {
    /// Wraps a transport's settle handle.
    pub fn new(settle: impl Settle) -> Self {
        Acker(Settler::Boxed(Box::new(settle)))
    }

    /// Delivery `tag` of a broker that settles by tag, held inline.
    fn by_tag(broker: std::sync::Weak<dyn SettleByTag>, tag: u64) -> Self {
        Acker(Settler::ByTag(TagAck {
            broker,
            tag,
            settled: false,
        }))
    }

    /// Acknowledges the delivery.
    pub fn ack(self) -> TransportFuture<'static, Result<()>> {
        match self.0 {
            Settler::Boxed(settle) => settle.ack(),
            Settler::ByTag(mut ack) => TransportFuture::ready(ack.settle(Settlement::Ack)),
        }
    }

    /// Rejects the delivery, requeueing it if `requeue`.
    pub fn reject(self, requeue: bool) -> TransportFuture<'static, Result<()>> {
        match self.0 {
            Settler::Boxed(settle) => settle.reject(requeue),
            Settler::ByTag(mut ack) => TransportFuture::ready(ack.settle(if requeue {
                Settlement::Requeue
            } else {
                Settlement::Reject
            })),
        }
    }

    /// Whether the broker still holds the delivery for its consumer (see
    /// [`Settle::is_held`]).
    pub fn is_held(&self) -> bool {
        match &self.0 {
            Settler::Boxed(settle) => settle.is_held(),
            Settler::ByTag(ack) => {
                !ack.settled
                    && ack
                        .broker
                        .upgrade()
                        .is_some_and(|broker| broker.holds_tag(ack.tag))
            }
        }
    }
}

impl fmt::Debug for Acker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acker")
    }
}

/// A stream of deliveries from one queue. Dropping it cancels the
/// consumer; deliveries already handed out can still be settled.
pub struct Consumer {
    stream: Pin<Box<dyn Stream<Item = Delivery> + Send>>,
}

impl Consumer {
    /// Wraps a transport's delivery stream. The stream ends when the
    /// consumer is cancelled or the transport closes.
    pub fn new(stream: impl Stream<Item = Delivery> + Send + 'static) -> Self {
        Consumer {
            stream: Box::pin(stream),
        }
    }

    /// The next delivery, or `None` once the consumer has ended.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.stream.next().await
    }
}

impl Stream for Consumer {
    type Item = Delivery;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Delivery>> {
        self.stream.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Consumer")
    }
}

/// What [`Transport::consume_with`] hands each delivery to: it settles
/// the delivery, and returns what is left to wait for (often
/// [`TransportFuture::ready`]).
pub type DeliverFn = Arc<dyn Fn(Delivery) -> TransportFuture<'static, ()> + Send + Sync>;

/// A consumer started with [`Transport::consume_with`]: a future that
/// completes when consuming ends. Dropping it cancels the consumer.
#[must_use = "dropping a DirectConsumer cancels it"]
pub struct DirectConsumer(Pin<Box<dyn std::future::Future<Output = ()> + Send>>);

impl DirectConsumer {
    /// Wraps what a transport runs (or waits on) while consuming.
    pub fn new(consuming: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        DirectConsumer(Box::pin(consuming))
    }
}

impl std::future::Future for DirectConsumer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for DirectConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirectConsumer")
    }
}

/// Whether an error means the broker connection is gone (as opposed to a
/// problem with one request).
pub fn is_connection_error(err: &Error) -> bool {
    matches!(err, Error::TransportClosed | Error::ConnectionLost(_))
}
