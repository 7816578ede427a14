//! Consumer streams that outlive connections, and their ackers.
//!
//! A [`Consumer`](crate::transport::Consumer) from the AMQP transport is a
//! loop over lapin consumers: one per connection generation. When the
//! connection goes, the stream waits (without ending) for the supervisor to
//! publish the next connection, then opens a fresh channel, sets the same
//! `basic.qos` and issues `basic.consume` on the same queue again.
//!
//! Letting go is settling work the transport's close waits for: a dropped
//! consumer cancels and returns what it had buffered; its channel is
//! closed explicitly once the consumer and every delivery of it are gone
//! ([`ConsumerChannel`]); a delivery dropped unsettled is rejected. None of
//! it may meet the connection closing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, ConnectionStatus};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::link::{Link, Live, Owner, Shared, guarded};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::transport::{Acker, ConsumeOptions, Delivery, QueueSpec, Settle, TransportFuture};

/// Pause before reopening a consumer whose channel alone failed.
const CHANNEL_RETRY: Duration = Duration::from_millis(100);

/// A consumer's channel, shared by the consumer and the deliveries it
/// handed out. When the last of them lets go, the channel is closed
/// explicitly, as a settling task that a close of the transport waits for:
/// left to lapin's close-on-drop, the close could reach lapin after the
/// connection began closing, which lapin takes for a connection error (it
/// drops the socket, and the broker requeues deliveries whose acks it had
/// not read yet).
pub(super) struct ConsumerChannel {
    channel: Channel,
    connection: ConnectionStatus,
    shared: Arc<Shared>,
    /// The queue is a quorum queue (or one this transport did not declare):
    /// wait [`QUORUM_SETTLE_LINGER`] before closing.
    quorum: bool,
}

/// How long a consumer channel of a quorum queue stays open after its last
/// delivery was settled. RabbitMQ can drop acks that a quorum queue had
/// not applied yet when their channel closes (rabbitmq-server#10327): the
/// messages come back, and a graceful stop would run requests twice.
/// Measured here: acks lost in about two shutdowns in five without it, in
/// none of 160 with it.
const QUORUM_SETTLE_LINGER: Duration = Duration::from_millis(100);

impl Drop for ConsumerChannel {
    fn drop(&mut self) {
        if !(self.channel.status().connected() && self.connection.connected()) {
            return;
        }
        let channel = self.channel.clone();
        let connection = self.connection.clone();
        let linger = self.quorum.then_some(QUORUM_SETTLE_LINGER);
        self.shared.spawn_settling(async move {
            if let Some(linger) = linger {
                tokio::time::sleep(linger).await;
            }
            let close = channel.close(200, "OK".into());
            let _ = tokio::time::timeout(Duration::from_secs(5), guarded(&connection, close)).await;
        });
    }
}

/// One lapin consumer, on one channel of one connection.
struct Active {
    consumer: lapin::Consumer,
    channel: Arc<ConsumerChannel>,
    connection: ConnectionStatus,
    generation: u64,
    /// The channel's settled, unsent acks, for a consumer that coalesces
    /// them ([`ConsumeOptions::coalesce_acks`]).
    batch: Option<Arc<AckBatch>>,
}

/// The acks of one channel's deliveries that were settled but not sent
/// yet, for a consumer that coalesces them: they go as one `basic.ack`
/// with `multiple`, which covers every delivery up to its tag.
struct AckBatch {
    run: Mutex<SettledRun>,
    /// The consumer's channel: acks go on it directly, in order (a
    /// delivery's `lapin::Acker` hands its ack to a task of its own, and
    /// two such acks can overtake each other).
    channel: Channel,
}

impl AckBatch {
    fn new(channel: Channel, prefetch: u16) -> Self {
        AckBatch {
            channel,
            run: Mutex::new(SettledRun::new(if prefetch == 0 {
                256
            } else {
                (u64::from(prefetch) / 2).max(1)
            })),
        }
    }

    /// Delivery `tag` is settled: acked, or rejected (the reject sent).
    /// True when the batch is to be sent now.
    fn settled(&self, tag: u64, acked: bool) -> bool {
        self.run.lock().settled(tag, acked)
    }

    /// Sends the acks settled so far (a lost connection loses them: the
    /// broker delivers those messages again).
    async fn flush(&self, connection: &ConnectionStatus) {
        let sending = {
            let mut run = self.run.lock();
            let Some(tag) = run.take() else {
                return;
            };
            // Queued on the channel (by the first poll) before the lock is
            // released, so acks go out in tag order whoever flushes: an
            // ack with `multiple` for a tag that an earlier one already
            // covered would be an unknown tag to the broker, which closes
            // the channel.
            let channel = self.channel.clone();
            let mut ack = Box::pin(async move {
                channel
                    .basic_ack(tag, BasicAckOptions { multiple: true })
                    .await
            });
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match ack.as_mut().poll(&mut cx) {
                Poll::Ready(sent) => Err(sent),
                Poll::Pending => Ok(ack),
            }
        };
        let sent = match sending {
            Ok(ack) => guarded(connection, ack).await,
            Err(sent) => sent,
        };
        if let Err(err) = sent {
            tracing::debug!(error = %err, "could not send coalesced acks; the broker redelivers");
        }
    }
}

/// The bookkeeping of coalesced acks on one channel, whose delivery tags
/// start at 1: the run of settled deliveries from the first tag on, and
/// its last acked tag while some of the run is unsent. A delivery settled
/// while an earlier one is held waits for it: an ack with `multiple`
/// covers only settled deliveries.
#[derive(Debug)]
struct SettledRun {
    /// The lowest tag not known to be settled.
    next: u64,
    /// Settled while an earlier tag was held: tag → acked (false: it was
    /// rejected, the reject sent). At most the prefetch many.
    early: BTreeMap<u64, bool>,
    /// The run's last acked tag, while acks are unsent.
    last: Option<u64>,
    /// How many acks an ack up to `last` would send.
    unsent: u64,
    /// Sent once this many acks wait, even while deliveries keep coming (a
    /// consumer at its prefetch would get nothing more).
    limit: u64,
    /// The consumer waits for a delivery (nothing will send the run when
    /// it next looks), or has let go: a settlement is sent at once.
    idle: bool,
}

impl SettledRun {
    fn new(limit: u64) -> Self {
        SettledRun {
            next: 1,
            early: BTreeMap::new(),
            last: None,
            unsent: 0,
            limit,
            idle: false,
        }
    }

    /// Records `tag` as settled; true when the unsent acks are to be sent
    /// now.
    fn settled(&mut self, tag: u64, acked: bool) -> bool {
        if tag != self.next {
            if tag > self.next {
                self.early.insert(tag, acked);
            }
            return false;
        }
        let mut acked = acked;
        loop {
            if acked {
                self.last = Some(self.next);
                self.unsent += 1;
            }
            self.next += 1;
            match self.early.remove(&self.next) {
                Some(early) => acked = early,
                None => break,
            }
        }
        self.last.is_some() && (self.idle || self.unsent >= self.limit)
    }

    /// The tag an ack (with `multiple`) of the run so far goes to, if any
    /// of it is unsent.
    fn take(&mut self) -> Option<u64> {
        self.unsent = 0;
        self.last.take()
    }

    /// The consumer is about to wait: false (and still busy) if acks are
    /// unsent, which it sends first.
    fn start_waiting(&mut self) -> bool {
        self.idle = self.last.is_none();
        self.idle
    }
}

pub(super) struct ConsumerState {
    shared: Arc<Shared>,
    owner: Arc<Owner>,
    queue: ShortString,
    options: ConsumeOptions,
    tag: ShortString,
    /// `None` between connections (or channels).
    active: Option<Active>,
    link: watch::Receiver<Link>,
    /// The oldest connection generation the next lapin consumer may use.
    min_generation: u64,
    ended: bool,
}

/// Opens a channel with the consumer's qos on `live` and starts consuming.
async fn open_on(
    shared: &Arc<Shared>,
    live: &Live,
    queue: &ShortString,
    tag: &ShortString,
    options: ConsumeOptions,
) -> lapin::Result<Active> {
    let status = live.conn.status();
    let channel = guarded(status, live.conn.create_channel()).await?;
    if options.prefetch > 0 {
        let qos = channel.basic_qos(options.prefetch, BasicQosOptions { global: false });
        guarded(status, qos).await?;
    }
    let consume = channel.basic_consume(
        queue.clone(),
        tag.clone(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    );
    let consumer = guarded(status, consume).await?;
    let batch = options
        .coalesce_acks
        .then(|| Arc::new(AckBatch::new(channel.clone(), options.prefetch)));
    Ok(Active {
        consumer,
        batch,
        channel: Arc::new(ConsumerChannel {
            channel,
            connection: status.clone(),
            shared: shared.clone(),
            // A queue this transport did not declare may be one too.
            quorum: shared
                .topology
                .lock()
                .queues
                .get(queue.as_str())
                .is_none_or(QueueSpec::is_quorum),
        }),
        connection: live.conn.status().clone(),
        generation: live.generation,
    })
}

impl ConsumerState {
    /// Starts consuming on the current connection (failing fast if it is
    /// down).
    pub(super) async fn start(
        shared: Arc<Shared>,
        owner: Arc<Owner>,
        queue: ShortString,
        options: ConsumeOptions,
        map_err: impl Fn(&lapin::Error, &Live) -> Error,
    ) -> Result<ConsumerState> {
        let live = shared.live()?;
        let tag: ShortString = format!("enoki-{}", uuid::Uuid::new_v4().simple()).into();
        let active = open_on(&shared, &live, &queue, &tag, options)
            .await
            .map_err(|err| map_err(&err, &live))?;
        Ok(ConsumerState {
            link: shared.link.subscribe(),
            shared,
            owner,
            queue,
            options,
            tag,
            min_generation: live.generation,
            active: Some(active),
            ended: false,
        })
    }

    fn end(&mut self) -> Option<(Delivery, ConsumerState)> {
        self.ended = true;
        self.active = None;
        None
    }

    /// Waits for a connection of generation `min_generation` or newer and
    /// consumes on it. False if the consumer must end instead.
    async fn resume(&mut self) -> bool {
        let mut rx = self.shared.link.subscribe();
        loop {
            let min = self.min_generation;
            let auto_recover = self.shared.options.auto_recover;
            let link = rx
                .wait_for(|link| match link {
                    Link::Up(live) => live.generation >= min,
                    Link::Down => !auto_recover,
                    Link::Closed => true,
                })
                .await
                .map(|link| link.clone());
            let live = match link {
                Ok(Link::Up(live)) => live,
                Ok(Link::Down) => {
                    tracing::warn!(
                        queue = %self.queue,
                        "AMQP consumer ends: its connection was lost and auto_recover is off"
                    );
                    return false;
                }
                Ok(Link::Closed) | Err(_) => return false,
            };
            match open_on(&self.shared, &live, &self.queue, &self.tag, self.options).await {
                Ok(active) => {
                    tracing::debug!(
                        queue = %self.queue,
                        generation = live.generation,
                        "AMQP consumer resumed"
                    );
                    self.active = Some(active);
                    return true;
                }
                Err(_) if self.shared.is_closed() => return false,
                Err(err) if !live.connected() => {
                    tracing::debug!(
                        queue = %self.queue,
                        error = %err,
                        "AMQP consumer could not resume yet; waiting for the next connection"
                    );
                    self.shared.suspect();
                    self.min_generation = live.generation + 1;
                }
                Err(err) => {
                    tracing::error!(
                        queue = %self.queue,
                        error = %err,
                        "AMQP consumer cannot resume; it ends"
                    );
                    return false;
                }
            }
        }
    }

    /// The lapin consumer ended or failed: decides whether to resume (on
    /// this connection or the next one) or to end.
    async fn interrupted(&mut self, error: Option<lapin::Error>) -> bool {
        let Some(active) = self.active.take() else {
            return true;
        };
        if self.shared.is_closed() {
            return false;
        }
        if !active.connection.connected() {
            // The connection went: wait for the supervisor's next one.
            self.shared.suspect();
            self.min_generation = active.generation + 1;
            return true;
        }
        match error {
            // Cancelled by the broker (queue deleted) on a healthy channel.
            None if active.channel.channel.status().connected() => {
                tracing::warn!(queue = %self.queue, "AMQP consumer cancelled by the broker");
                false
            }
            error => {
                // The channel alone failed: consume again on a fresh one.
                tracing::warn!(
                    queue = %self.queue,
                    error = ?error.map(|e| e.to_string()),
                    "AMQP consumer channel closed; consuming again on a new channel"
                );
                self.min_generation = active.generation;
                tokio::time::sleep(CHANNEL_RETRY).await;
                true
            }
        }
    }

    fn convert(
        &self,
        channel: &Arc<ConsumerChannel>,
        connection: &ConnectionStatus,
        batch: Option<&Arc<AckBatch>>,
        delivery: lapin::message::Delivery,
    ) -> Delivery {
        let message = Message {
            properties: super::codec::from_basic_properties(&delivery.properties),
            body: Bytes::from(delivery.data),
        };
        Delivery {
            exchange: Arc::from(delivery.exchange.as_str()),
            routing_key: Arc::from(delivery.routing_key.as_str()),
            redelivered: delivery.redelivered,
            message: Arc::new(message),
            acker: Acker::new(AmqpAck {
                acker: delivery.acker,
                batch: batch.map(|batch| (batch.clone(), delivery.delivery_tag)),
                channel: Some(channel.clone()),
                connection: connection.clone(),
                shared: self.shared.clone(),
                _owner: self.owner.clone(),
                settled: false,
            }),
        }
    }
}

/// The `unfold` step of a consumer stream.
pub(super) async fn next_delivery(mut state: ConsumerState) -> Option<(Delivery, ConsumerState)> {
    loop {
        if state.ended || state.shared.is_closed() {
            return state.end();
        }
        let Some(active) = state.active.as_mut() else {
            if !state.resume().await {
                return state.end();
            }
            continue;
        };
        let generation = active.generation;
        // Coalesced acks go out when no delivery is waiting; while the
        // consumer waits, each settlement is sent as it comes.
        let mut ready = None;
        if let Some(batch) = &active.batch {
            while !batch.run.lock().start_waiting() {
                match futures::poll!(active.consumer.next()) {
                    Poll::Ready(next) => {
                        ready = Some(next);
                        break;
                    }
                    Poll::Pending => batch.flush(&active.connection).await,
                }
            }
        }
        let next = match ready {
            Some(next) => next,
            // The supervisor moving on from this connection also interrupts
            // the wait, should lapin not end the consumer itself.
            None => tokio::select! {
                biased;
                next = active.consumer.next() => next,
                _ = state.link.wait_for(
                    |link| !matches!(link, Link::Up(live) if live.generation == generation),
                ) => Some(Err(lapin::Error::from(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the connection was replaced",
                )))),
            },
        };
        if let Some(batch) = &active.batch {
            batch.run.lock().idle = false;
        }
        match next {
            Some(Ok(delivery)) => {
                if state.shared.is_closed() {
                    return state.end();
                }
                if !delivery.acker.usable() {
                    // Buffered before its channel closed: the broker has
                    // requeued it already, handing it out would process it
                    // twice.
                    continue;
                }
                let (channel, connection) = (active.channel.clone(), active.connection.clone());
                let batch = active.batch.clone();
                let delivery = state.convert(&channel, &connection, batch.as_ref(), delivery);
                return Some((delivery, state));
            }
            Some(Err(err)) => {
                if !state.interrupted(Some(err)).await {
                    return state.end();
                }
            }
            None => {
                if !state.interrupted(None).await {
                    return state.end();
                }
            }
        }
    }
}

impl Drop for ConsumerState {
    fn drop(&mut self) {
        let Some(Active {
            mut consumer,
            channel,
            connection,
            batch,
            ..
        }) = self.active.take()
        else {
            return;
        };
        let tag = self.tag.clone();
        self.shared.spawn_settling(async move {
            if !channel.channel.status().connected() {
                return;
            }
            if let Some(batch) = batch {
                // From now on each settlement is sent as it comes.
                batch.run.lock().idle = true;
                batch.flush(&connection).await;
            }
            let cancel = channel
                .channel
                .basic_cancel(tag, BasicCancelOptions::default());
            if guarded(&connection, cancel).await.is_err() {
                return;
            }
            // What lapin had buffered for us goes back to the queue; the
            // stream ends at cancel-ok.
            let drain = async {
                while let Some(Ok(delivery)) = consumer.next().await {
                    let reject = delivery.acker.reject(BasicRejectOptions { requeue: true });
                    let _ = guarded(&connection, reject).await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
            // `channel` drops here: the channel closes once no delivery of it
            // is outstanding.
        });
    }
}

struct AmqpAck {
    acker: lapin::Acker,
    /// The channel's batch and this delivery's tag, when acks are
    /// coalesced.
    batch: Option<(Arc<AckBatch>, u64)>,
    /// Keeps the channel open until this delivery is settled.
    channel: Option<Arc<ConsumerChannel>>,
    connection: ConnectionStatus,
    shared: Arc<Shared>,
    /// Keeps the connection up until this delivery is settled.
    _owner: Arc<Owner>,
    settled: bool,
}

impl AmqpAck {
    async fn settle(&mut self, requeue: Option<bool>) -> Result<()> {
        self.settled = true;
        let result = match requeue {
            None => guarded(&self.connection, self.acker.ack(BasicAckOptions::default())).await,
            Some(requeue) => {
                let reject = self.acker.reject(BasicRejectOptions { requeue });
                guarded(&self.connection, reject).await
            }
        };
        if let (Ok(true), Some((batch, tag))) = (&result, &self.batch)
            && batch.settled(*tag, false)
        {
            batch.flush(&self.connection).await;
        }
        match result {
            Ok(true) => Ok(()),
            _ if self.shared.is_closed() => Err(Error::TransportClosed),
            Ok(false) => Err(Error::ConnectionLost(
                "the delivery's channel closed before it was settled; the broker requeues it"
                    .into(),
            )),
            Err(err) => Err(Error::ConnectionLost(format!(
                "the delivery's connection was lost before it was settled; the broker requeues \
                 it ({err})"
            ))),
        }
    }
}

impl Settle for AmqpAck {
    fn ack(mut self: Box<Self>) -> TransportFuture<'static, Result<()>> {
        if let Some((batch, tag)) = &self.batch
            && self.acker.usable()
        {
            // Recorded, sent with the batch (or now, if the batch is full).
            self.settled = true;
            if !batch.settled(*tag, true) {
                return TransportFuture::ready(Ok(()));
            }
            return TransportFuture::boxed(async move {
                if let Some((batch, _)) = &self.batch {
                    batch.flush(&self.connection).await;
                }
                Ok(())
            });
        }
        TransportFuture::boxed(async move { self.settle(None).await })
    }

    fn reject(mut self: Box<Self>, requeue: bool) -> TransportFuture<'static, Result<()>> {
        TransportFuture::boxed(async move { self.settle(Some(requeue)).await })
    }

    fn is_held(&self) -> bool {
        !self.settled
            && self.acker.usable()
            && self.connection.connected()
            && self
                .channel
                .as_ref()
                .is_some_and(|channel| channel.channel.status().connected())
    }
}

impl Drop for AmqpAck {
    fn drop(&mut self) {
        if self.settled || !self.acker.usable() {
            return;
        }
        let acker = self.acker.clone();
        let channel = self.channel.take();
        let connection = self.connection.clone();
        let batch = self.batch.take();
        self.shared.spawn_settling(async move {
            let reject = acker.reject(BasicRejectOptions { requeue: true });
            let rejected = guarded(&connection, reject).await;
            if let (Ok(true), Some((batch, tag))) = (rejected, batch)
                && batch.settled(tag, false)
            {
                batch.flush(&connection).await;
            }
            drop(channel);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::SettledRun;

    #[test]
    fn in_order_acks_wait_for_the_limit_then_go_as_one() {
        let mut run = SettledRun::new(3);
        assert!(!run.settled(1, true));
        assert!(!run.settled(2, true));
        assert!(run.settled(3, true), "the limit sends the batch");
        assert_eq!(run.take(), Some(3), "one ack, with multiple, up to 3");
        assert_eq!(run.take(), None, "nothing left to send");
        assert!(!run.settled(4, true));
        assert_eq!(run.take(), Some(4));
    }

    #[test]
    fn an_ack_never_covers_a_delivery_still_held() {
        let mut run = SettledRun::new(100);
        // 1 is held; 2 and 3 are settled: nothing may be sent for them.
        assert!(!run.settled(2, true));
        assert!(!run.settled(3, true));
        assert_eq!(run.take(), None);
        // 1 settles: the run reaches 3.
        run.settled(1, true);
        assert_eq!(run.take(), Some(3));
        assert!(run.early.is_empty());
    }

    #[test]
    fn a_rejected_delivery_continues_the_run_without_an_ack_of_its_own() {
        let mut run = SettledRun::new(100);
        run.settled(1, true);
        run.settled(2, false);
        assert_eq!(run.take(), Some(1), "the reject is sent already");
        run.settled(3, false);
        assert_eq!(run.take(), None, "nothing acked since");
        run.settled(4, true);
        assert_eq!(run.take(), Some(4));
        assert_eq!(run.next, 5);
    }

    #[test]
    fn while_the_consumer_waits_a_settlement_is_sent_at_once() {
        let mut run = SettledRun::new(100);
        run.settled(1, true);
        assert!(!run.start_waiting(), "unsent acks go before waiting");
        assert_eq!(run.take(), Some(1));
        assert!(run.start_waiting());
        assert!(run.settled(2, true), "settled while waiting: sent now");
        assert!(!run.settled(4, true), "3 is held: nothing to send");
        assert!(run.settled(3, true));
        assert_eq!(run.take(), Some(4));
    }
}
