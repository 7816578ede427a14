//! The RabbitMQ transport: [`AmqpTransport`], a [`Transport`] over lapin 4.
//!
//! One AMQP connection per transport, used the way nameko's kombu consumers
//! and publishers use theirs:
//!
//! - **Declarations** (`declare_*`, `bind`, `unbind`, `delete_queue`) run one
//!   at a time on a control channel. A channel-level error (404, 405, 406)
//!   closes that channel on the broker; the next call opens a fresh one.
//! - **Publishing** uses a small pool of channels in confirm mode
//!   ([`AmqpOptions::publish_channels`]). Many publishes are in flight at once
//!   on each channel; each [`Transport::publish`] call waits for its own
//!   confirm. A `mandatory` message the broker returns (basic.return before
//!   the ack) fails with [`Error::Unroutable`]; a missing exchange (404, which
//!   closes the channel) with [`Error::ExchangeNotFound`], and the channel is
//!   replaced for later calls. Other publishes that were in flight on a channel
//!   that someone else's 404 closed are retried once on a fresh channel.
//! - **Consuming**: one channel per consumer, with `basic.qos(prefetch,
//!   global=false)` (no qos for prefetch 0) and manual acks. Dropping the
//!   [`Consumer`] sends `basic.cancel`, and requeues what lapin had buffered;
//!   the channel stays open until the consumer and every outstanding delivery
//!   are gone (lapin closes a channel when its last handle drops), so
//!   deliveries already handed out can still be acked. A delivery dropped
//!   unsettled is rejected with `requeue=true` in the background.
//!
//! # Connection loss
//!
//! The transport supervises its connection itself, kombu-style, instead of
//! using lapin's built-in recovery (which, in lapin 4.12, sometimes stops
//! reconnecting after a drop under load). A supervisor task owns the current
//! plain lapin connection and notices its loss (lapin's error events, a status
//! check every 250 ms, and any call that sees the connection fail). With
//! [`AmqpOptions::auto_recover`] (the default) it then reconnects with
//! exponential backoff (100 ms doubling to 5 s, forever, until
//! [`Transport::close`]), logging a warning once per outage and an info line
//! on recovery. With several broker addresses (kombu's failover syntax,
//! `amqp://h1:5672//;amqp://h2:5673//`, see [`AmqpTransport::connect`])
//! each attempt goes to the next address, starting after the one just lost,
//! and the backoff grows once per round of all of them: a RabbitMQ cluster
//! whose node died is rejoined through another node at the first attempt.
//! On each new connection, before anyone may use it, it replays
//! the exchanges, queues and bindings this transport declared and has not
//! deleted or unbound since (a redeclaration the broker refuses is logged and
//! skipped). Control and publishing channels are reopened on the new
//! connection at their next use.
//!
//! What callers see:
//! - consumer streams keep going: each one waits for the new connection and
//!   consumes again on a fresh channel (same queue, same prefetch); it never
//!   ends because of a connection loss (without `auto_recover` it ends);
//! - declarations and [`Transport::consume`] attempted while the connection is
//!   down fail at once with [`Error::ConnectionLost`] ("connection to the
//!   broker is down; reconnecting");
//! - [`Transport::publish`] while the connection is down waits up to 1 s for
//!   the reconnection, then fails with [`Error::ConnectionLost`] likewise; a
//!   publish whose confirm was pending when the connection dropped fails with
//!   [`Error::ConnectionLost`] (the broker may or may not have the message);
//!   publishes are never retried on the new connection;
//! - deliveries handed out before the loss cannot be settled any more (the
//!   broker has already requeued them): settling fails with
//!   [`Error::ConnectionLost`] and the message comes again, `redelivered`
//!   (at-least-once);
//! - [`Transport::close`] stops the supervisor (also mid-backoff), closes the
//!   connection and waits briefly for lapin's io thread to end. Dropping the
//!   last handle (transport, consumer or unsettled delivery) without `close`
//!   does the same in the background.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeleteOptions,
};
use lapin::protocol::AMQPErrorKind;
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, ErrorKind};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::{
    ConsumeOptions, Consumer, ExchangeSpec, PublishOptions, QueueSpec, Transport, TransportFuture,
};
use crate::error::{Error, Result};
use crate::message::Message;

pub(crate) mod codec;
mod consumer;
mod endpoints;
mod failure;
mod link;
mod options;
mod topology;

pub use endpoints::{MAX_ENDPOINTS, redact_uri};
pub use options::AmqpOptions;

use codec::short;
use consumer::ConsumerState;
use endpoints::Endpoints;
use failure::{connect_reason, is_soft_error};
use link::{Link, Live, Owner, Shared, guarded};
use topology::{declare_exchange_on, declare_queue_on};

/// A channel and the connection generation it was opened on.
type Slot = tokio::sync::Mutex<Option<(u64, Channel)>>;

/// A [`Transport`] on RabbitMQ (AMQP 0-9-1) via lapin. See the
/// [module docs](self).
pub struct AmqpTransport {
    shared: Arc<Shared>,
    owner: Arc<Owner>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    control: Slot,
    publishers: Vec<Slot>,
    next_publisher: AtomicUsize,
}

impl fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpTransport")
            .field("uri", &self.shared.endpoints.current().shown)
            .field("connected", &self.is_connected())
            .field("closed", &self.shared.is_closed())
            .finish_non_exhaustive()
    }
}

/// What an operation was about, to name it in a 404.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Exchange(&'a str),
    Queue(&'a str),
}

/// The name between the first pair of single quotes of a broker message.
fn quoted(message: &str) -> Option<&str> {
    let start = message.find('\'')? + 1;
    let len = message[start..].find('\'')?;
    Some(&message[start..start + len])
}

impl AmqpTransport {
    /// Connects to RabbitMQ. `uri` is one AMQP URI or several separated by
    /// `;` (kombu's failover syntax, `amqp://h1:5672//;amqp://h2:5673//`, at
    /// most [`MAX_ENDPOINTS`]): the first broker that accepts the
    /// connection is used, and after a connection loss the transport tries
    /// the next ones in turn (see the [module docs](self)).
    ///
    /// A malformed URI (in a list: the entry, named by position), no
    /// reachable broker or refused credentials each give a one-line
    /// [`Error::Transport`] that names the URI without its password; the
    /// first connection is never retried beyond one try of each address (a
    /// try with no answer in 5 s is made once more, then reported as timed
    /// out).
    pub async fn connect(uri: &str, options: AmqpOptions) -> Result<Arc<AmqpTransport>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Transport("AmqpTransport::connect must run inside a tokio runtime".into())
        })?;
        let endpoints = Endpoints::parse(uri, &options)?;
        let mut failures = Vec::new();
        let mut opened = None;
        for index in 0..endpoints.len() {
            let endpoint = endpoints.get(index);
            match link::open_first(&endpoint.uri, &options).await {
                Ok(connection) => {
                    endpoints.set_current(index);
                    opened = Some(connection);
                    break;
                }
                Err(err) => failures.push(format!("{}: {}", endpoint.shown, connect_reason(&err))),
            }
        }
        let Some((conn, events)) = opened else {
            return Err(Error::Transport(if endpoints.len() == 1 {
                format!("cannot connect to {}", failures.join(""))
            } else {
                format!(
                    "cannot connect to any of {} brokers: {}",
                    endpoints.len(),
                    failures.join("; ")
                )
            }));
        };
        let live = Arc::new(Live {
            conn,
            generation: 1,
        });
        let publishers = (0..options.publish_channels.max(1))
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        let shared = Arc::new(Shared::new(
            endpoints,
            options,
            runtime.clone(),
            live.clone(),
        ));
        let supervisor = runtime.spawn(link::supervise(shared.clone(), live, events));
        Ok(Arc::new(AmqpTransport {
            owner: Arc::new(Owner {
                shared: shared.clone(),
            }),
            shared,
            supervisor: Mutex::new(Some(supervisor)),
            control: tokio::sync::Mutex::new(None),
            publishers,
            next_publisher: AtomicUsize::new(0),
        }))
    }

    /// Whether the AMQP connection is up right now (false while the
    /// transport is reconnecting, and after [`Transport::close`]).
    pub fn is_connected(&self) -> bool {
        !self.shared.is_closed()
            && matches!(&*self.shared.link.borrow(), Link::Up(live) if live.connected())
    }

    fn check_open(&self) -> Result<()> {
        if self.shared.is_closed() {
            Err(Error::TransportClosed)
        } else {
            Ok(())
        }
    }

    fn map_err(&self, err: &lapin::Error, subject: Subject<'_>, live: &Live) -> Error {
        map_error(&self.shared, err, subject, live)
    }

    /// Runs one operation on the control channel, opening a fresh one if
    /// the last one was closed by an error or belongs to an older
    /// connection.
    async fn control<T, F, Fut>(&self, subject: Subject<'_>, op: F) -> Result<T>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = lapin::Result<T>>,
    {
        self.check_open()?;
        let live = self.shared.live()?;
        let mut slot = self.control.lock().await;
        let channel = match slot.as_ref() {
            Some((generation, channel))
                if *generation == live.generation && channel.status().connected() =>
            {
                channel.clone()
            }
            _ => {
                let channel = guarded(live.conn.status(), live.conn.create_channel())
                    .await
                    .map_err(|e| self.map_err(&e, subject, &live))?;
                *slot = Some((live.generation, channel.clone()));
                channel
            }
        };
        let result = guarded(live.conn.status(), op(channel)).await;
        result.map_err(|err| {
            if is_soft_error(&err) {
                *slot = None;
            }
            self.map_err(&err, subject, &live)
        })
    }

    /// A publishing channel (in confirm mode) from the pool, and its
    /// connection. Waits briefly for a reconnection in progress.
    async fn publisher(&self) -> Result<(Arc<Live>, Channel)> {
        let live = self.shared.live_within(link::PUBLISH_WAIT).await?;
        let index = self.next_publisher.fetch_add(1, Ordering::Relaxed) % self.publishers.len();
        let mut slot = self.publishers[index].lock().await;
        if let Some((generation, channel)) = slot.as_ref()
            && *generation == live.generation
            && channel.status().connected()
        {
            return Ok((live, channel.clone()));
        }
        let subject = Subject::Exchange("");
        let status = live.conn.status();
        let channel = guarded(status, live.conn.create_channel())
            .await
            .map_err(|e| self.map_err(&e, subject, &live))?;
        guarded(
            status,
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .map_err(|e| self.map_err(&e, subject, &live))?;
        *slot = Some((live.generation, channel.clone()));
        Ok((live, channel))
    }
}

/// A lapin error as enoki's, for an operation about `subject` on `live`.
fn map_error(shared: &Shared, err: &lapin::Error, subject: Subject<'_>, live: &Live) -> Error {
    if shared.is_closed() {
        return Error::TransportClosed;
    }
    if let ErrorKind::ProtocolError(amqp) = err.kind() {
        let message = amqp.get_message().as_str().to_owned();
        match amqp.get_id() {
            404 => {
                let name = quoted(&message).map(str::to_owned);
                return if message.contains("no exchange") {
                    Error::ExchangeNotFound(name.unwrap_or_default())
                } else if message.contains("no queue") {
                    Error::QueueNotFound(name.unwrap_or_default())
                } else {
                    match subject {
                        Subject::Exchange(n) => Error::ExchangeNotFound(n.into()),
                        Subject::Queue(n) => Error::QueueNotFound(n.into()),
                    }
                };
            }
            405 => return Error::ResourceLocked(message),
            406 => return Error::PreconditionFailed(message),
            _ if matches!(amqp.kind(), AMQPErrorKind::Hard(_)) => {
                shared.suspect();
                return Error::ConnectionLost(message);
            }
            _ => return Error::Transport(message),
        }
    }
    if !live.connected() {
        shared.suspect();
        let then = if shared.options.auto_recover {
            "reconnecting"
        } else {
            "auto_recover is off"
        };
        return Error::ConnectionLost(format!(
            "connection to the broker lost during the call; {then} ({err})"
        ));
    }
    Error::Broker(Box::new(err.clone()))
}

// ===== the Transport impl =====

impl AmqpTransport {
    /// Publishes, then waits for the broker's confirm; a publish whose
    /// shared channel another publish's error closed is tried once more.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
        options: PublishOptions,
    ) -> Result<()> {
        self.check_open()?;
        let properties = codec::to_basic_properties(&message.properties)?;
        let exchange_name = short("exchange name", exchange)?;
        let key = short("routing key", routing_key)?;
        let publish_options = BasicPublishOptions {
            mandatory: options.mandatory,
            immediate: false,
        };
        let mut retried = false;
        loop {
            let (live, channel) = self.publisher().await?;
            let confirm = guarded(live.conn.status(), async {
                channel
                    .basic_publish(
                        exchange_name.clone(),
                        key.clone(),
                        publish_options,
                        &message.body,
                        properties.clone(),
                    )
                    .await?
                    .await
            })
            .await;
            let err = match confirm {
                Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
                    return Err(Error::Unroutable {
                        exchange: exchange.to_owned(),
                        routing_key: routing_key.to_owned(),
                    });
                }
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Nack(None)) => {
                    return Err(Error::Transport(format!(
                        "the broker refused (nacked) the message to exchange `{exchange}`"
                    )));
                }
                Err(err) => err,
            };
            let mapped = self.map_err(&err, Subject::Exchange(exchange), &live);
            match &mapped {
                Error::ExchangeNotFound(name) if name == exchange => return Err(mapped),
                // Another publish's error closed the shared channel under us.
                Error::ExchangeNotFound(_) | Error::Transport(_) | Error::Broker(_)
                    if !retried && live.connected() =>
                {
                    retried = true;
                }
                _ => return Err(mapped),
            }
        }
    }
}

#[async_trait]
impl Transport for AmqpTransport {
    async fn declare_exchange(&self, spec: &ExchangeSpec) -> Result<()> {
        short("exchange name", &spec.name)?;
        self.control(Subject::Exchange(&spec.name), |ch| async move {
            declare_exchange_on(&ch, spec).await
        })
        .await?;
        self.shared
            .topology
            .lock()
            .exchanges
            .insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    async fn exchange_exists(&self, name: &str) -> Result<bool> {
        short("exchange name", name)?;
        let found = self
            .control(Subject::Exchange(name), |ch| async move {
                topology::exchange_exists_on(&ch, name).await
            })
            .await;
        match found {
            Ok(()) => Ok(true),
            // The broker closed the control channel; the next call opens another.
            Err(Error::ExchangeNotFound(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }

    async fn queue_depth(&self, name: &str) -> Result<Option<u64>> {
        short("queue name", name)?;
        let found = self
            .control(Subject::Queue(name), |ch| async move {
                topology::queue_depth_on(&ch, name).await
            })
            .await;
        match found {
            Ok(depth) => Ok(Some(depth)),
            // The broker closed the control channel; the next call opens another.
            Err(Error::QueueNotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn declare_queue(&self, spec: &QueueSpec) -> Result<()> {
        short("queue name", &spec.name)?;
        codec::to_table(&spec.arguments)?;
        self.control(Subject::Queue(&spec.name), |ch| async move {
            declare_queue_on(&ch, spec).await
        })
        .await?;
        self.shared
            .topology
            .lock()
            .queues
            .insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    async fn delete_queue(&self, name: &str) -> Result<()> {
        let queue = short("queue name", name)?;
        let result = self
            .control(Subject::Queue(name), |ch| async move {
                ch.queue_delete(queue, QueueDeleteOptions::default())
                    .await
                    .map(|_| ())
            })
            .await;
        {
            let mut topology = self.shared.topology.lock();
            topology.queues.remove(name);
            topology.bindings.retain(|(q, _, _)| q != name);
        }
        match result {
            Err(Error::QueueNotFound(_)) => Ok(()),
            other => other,
        }
    }

    async fn bind(&self, queue: &str, exchange: &str, pattern: &str) -> Result<()> {
        let (q, e, p) = (
            short("queue name", queue)?,
            short("exchange name", exchange)?,
            short("pattern", pattern)?,
        );
        self.control(Subject::Queue(queue), |ch| async move {
            ch.queue_bind(q, e, p, QueueBindOptions::default(), FieldTable::default())
                .await
        })
        .await?;
        let binding = (queue.to_owned(), exchange.to_owned(), pattern.to_owned());
        let mut topology = self.shared.topology.lock();
        if !topology.bindings.contains(&binding) {
            topology.bindings.push(binding);
        }
        Ok(())
    }

    async fn unbind(&self, queue: &str, exchange: &str, pattern: &str) -> Result<()> {
        let (q, e, p) = (
            short("queue name", queue)?,
            short("exchange name", exchange)?,
            short("pattern", pattern)?,
        );
        let result = self
            .control(Subject::Queue(queue), |ch| async move {
                ch.queue_unbind(q, e, p, FieldTable::default()).await
            })
            .await;
        self.shared
            .topology
            .lock()
            .bindings
            .retain(|(q, e, p)| !(q == queue && e == exchange && p == pattern));
        match result {
            Err(Error::QueueNotFound(_) | Error::ExchangeNotFound(_)) => Ok(()),
            other => other,
        }
    }

    fn publish<'a>(
        &'a self,
        exchange: &'a str,
        routing_key: &'a str,
        message: Message,
        options: PublishOptions,
    ) -> TransportFuture<'a, Result<()>> {
        TransportFuture::boxed(self.publish_confirmed(exchange, routing_key, message, options))
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Consumer> {
        self.check_open()?;
        let queue_name = short("queue name", queue)?;
        let state = ConsumerState::start(
            self.shared.clone(),
            self.owner.clone(),
            queue_name,
            options,
            |err, live| self.map_err(err, Subject::Queue(queue), live),
        )
        .await?;
        Ok(Consumer::new(futures::stream::unfold(
            state,
            consumer::next_delivery,
        )))
    }

    async fn close(&self) {
        if !self.shared.begin_close() {
            return;
        }
        // The transport's own channels are closed first, on the open
        // connection: a channel let go as the connection closes is, to
        // lapin, a connection error (it drops the socket, and the broker
        // requeues deliveries whose acks it had not read yet).
        let mut channels: Vec<Channel> = Vec::new();
        channels.extend(self.control.lock().await.take().map(|(_, c)| c));
        for slot in &self.publishers {
            channels.extend(slot.lock().await.take().map(|(_, c)| c));
        }
        for channel in channels {
            if channel.status().connected() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), channel.close(200, "OK".into()))
                        .await;
            }
        }
        self.shared.shut();
        let supervisor = self.supervisor.lock().take();
        if let Some(supervisor) = supervisor {
            // It closes the connection and waits for lapin's io thread.
            let _ = tokio::time::timeout(Duration::from_secs(10), supervisor).await;
        }
    }

    fn is_connected(&self) -> bool {
        AmqpTransport::is_connected(self)
    }

    fn kind(&self) -> &'static str {
        "amqp"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_messages_name_the_entity() {
        assert_eq!(
            quoted("NOT_FOUND - no exchange 'x.events' in vhost '/'"),
            Some("x.events")
        );
        assert_eq!(quoted("nothing"), None);
    }
}
