//! The embedded broker: topic exchanges and queues in process memory, with
//! RabbitMQ's semantics for everything enoki uses.
//!
//! - Topic routing with `*` and `#`; the default exchange `""` routes to
//!   the queue named by the routing key.
//! - Competing consumers on one queue, served round-robin within each
//!   consumer's prefetch window.
//! - Unsettled deliveries go back to their original place in their queue
//!   (publication order), flagged `redelivered`, when they are rejected
//!   with requeue, dropped, or their connection closes.
//! - Queues are bounded: `x-max-length` (at most [`DEFAULT_MAX_LENGTH`]
//!   ready messages when a queue sets none, or what
//!   [`MemoryTransport::with_max_length`] sets) with RabbitMQ's overflow
//!   behaviours, `x-overflow: drop-head` (the default: the oldest ready
//!   message is dropped) or `reject-publish` (the publish fails with
//!   [`Error::QueueFull`]), so the embedded broker cannot eat the
//!   machine's memory.
//! - A message with an `expiration` that is still ready when it expires is
//!   dropped, never delivered (RabbitMQ's per-message TTL, checked when it
//!   would be handed out).
//! - Queues with `x-message-ttl` expire their messages that long after
//!   they were queued.
//! - Dead-lettering, as RabbitMQ does it: a queue with
//!   `x-dead-letter-exchange` (and optionally `x-dead-letter-routing-key`)
//!   republishes a message that expires, is rejected without requeue, is
//!   dropped by `x-max-length` or, with `x-delivery-limit`, is returned
//!   more often than the limit; the message gets an `x-death` entry
//!   ([`death`](super::death)) and loses its `expiration`. A quorum queue
//!   (`x-queue-type: quorum`) counts returns in `x-delivery-count`.
//! - `x-single-active-consumer` queues hand every message to the earliest
//!   of their consumers still there; when it goes, the next one takes over
//!   (with what the first held unsettled, requeued).
//! - Exclusive queues belong to one connection and die with it;
//!   auto-delete queues die with their last consumer; `x-expires` queues die
//!   after being unused that long; redeclaring with other flags is a
//!   precondition failure.
//!
//! A [`MemoryTransport`] is one *connection*; [`MemoryTransport::connect`]
//! opens another to the same broker (the way separate processes would hold
//! separate AMQP connections).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;
use tokio::sync::mpsc;

use super::topic;
use super::{
    Acker, ConsumeOptions, Consumer, DeliverFn, Delivery, DirectConsumer, ExchangeSpec,
    PublishOptions, QueueSpec, SettleByTag, Settlement, Transport, TransportFuture, check_name,
};
use crate::error::{Error, Result};
use crate::message::Message;

/// One connection to an embedded, in-process broker.
#[derive(Debug)]
pub struct MemoryTransport {
    broker: Arc<Broker>,
    connection: u64,
    closed: AtomicBool,
}

/// The most ready messages a queue of the embedded broker holds when it
/// sets no `x-max-length` of its own.
pub const DEFAULT_MAX_LENGTH: usize = 100_000;

impl MemoryTransport {
    /// A new, empty broker and a first connection to it.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Arc<MemoryTransport> {
        MemoryTransport::with_max_length(DEFAULT_MAX_LENGTH)
    }

    /// A new broker whose queues hold at most `max_length` ready messages
    /// unless they set a smaller `x-max-length`.
    pub fn with_max_length(max_length: usize) -> Arc<MemoryTransport> {
        let broker = Arc::new(Broker {
            max_length: max_length.max(1),
            ..Broker::default()
        });
        broker.connect()
    }

    /// Another connection to the same broker.
    pub fn connect(&self) -> Arc<MemoryTransport> {
        self.broker.connect()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::TransportClosed)
        } else {
            Ok(())
        }
    }

    /// Names of the queues that exist, sorted (for tests and diagnostics).
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.broker.state.read().queues.keys().cloned().collect();
        names.sort();
        names
    }

    /// The number of ready (not yet delivered) messages in a queue.
    pub fn ready_count(&self, queue: &str) -> Option<usize> {
        let queue = self.broker.state.read().queues.get(queue).cloned()?;
        Some(queue.inner.lock().ready.len())
    }

    /// The number of consumers of a queue.
    pub fn consumer_count(&self, queue: &str) -> Option<usize> {
        let queue = self.broker.state.read().queues.get(queue).cloned()?;
        Some(queue.inner.lock().consumers.len())
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.broker.close_connection(self.connection);
        }
    }
}

#[derive(Debug, Default)]
struct Broker {
    state: RwLock<State>,
    /// The default exchange's name (`""`), shared by its deliveries.
    default_exchange: Arc<str>,
    next_connection: AtomicU64,
    /// The bound of queues that set none.
    max_length: usize,
}

#[derive(Debug, Default)]
struct State {
    exchanges: FastMap<String, Exchange>,
    queues: FastMap<String, Arc<Queue>>,
}

#[derive(Debug)]
struct Exchange {
    spec: ExchangeSpec,
    /// The name, shared by every delivery routed through it.
    name: Arc<str>,
    bindings: Bindings,
}

/// A hash map with a fast, randomly seeded hasher (foldhash): the broker's
/// tables are looked up on every publish and settle.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// An exchange's bindings, indexed so that a publish looks only at those
/// that can match its routing key.
#[derive(Debug, Default)]
struct Bindings {
    /// Bindings without wildcards, by routing key (shared with the
    /// deliveries routed by it, so a reply costs no copy of its key).
    exact: FastMap<Arc<str>, Vec<Arc<Queue>>>,
    /// Patterns whose first word is a literal (`greeter.*`), by that word.
    by_first_word: FastMap<Box<str>, Vec<PatternBinding>>,
    /// Patterns that start with `*` or `#`.
    wild_first: Vec<PatternBinding>,
}

/// A binding with wildcards: its pattern and its queue.
type PatternBinding = (Box<str>, Arc<Queue>);

impl Bindings {
    /// Adds a binding (a no-op if it exists).
    fn add(&mut self, pattern: &str, queue: Arc<Queue>) {
        if !topic::has_wildcards(pattern) {
            let queues = self.exact.entry(Arc::from(pattern)).or_default();
            if !queues.iter().any(|q| Arc::ptr_eq(q, &queue)) {
                queues.push(queue);
            }
            return;
        }
        let list = match topic::first_word(pattern) {
            "*" | "#" => &mut self.wild_first,
            word => self.by_first_word.entry(Box::from(word)).or_default(),
        };
        if !list
            .iter()
            .any(|(p, q)| &**p == pattern && Arc::ptr_eq(q, &queue))
        {
            list.push((Box::from(pattern), queue));
        }
    }

    /// Removes the binding of `queue` with `pattern`, if any.
    fn remove(&mut self, pattern: &str, queue: &str) {
        if let Some(queues) = self.exact.get_mut(pattern) {
            queues.retain(|q| *q.name != *queue);
            if queues.is_empty() {
                self.exact.remove(pattern);
            }
        }
        let unbound = |(p, q): &PatternBinding| !(&**p == pattern && *q.name == *queue);
        self.wild_first.retain(unbound);
        let word = topic::first_word(pattern);
        if let Some(list) = self.by_first_word.get_mut(word) {
            list.retain(unbound);
            if list.is_empty() {
                self.by_first_word.remove(word);
            }
        }
    }

    /// Removes every binding of the queue `name`.
    fn remove_queue(&mut self, name: &str) {
        self.exact.retain(|_, queues| {
            queues.retain(|q| *q.name != *name);
            !queues.is_empty()
        });
        self.by_first_word.retain(|_, list| {
            list.retain(|(_, q)| *q.name != *name);
            !list.is_empty()
        });
        self.wild_first.retain(|(_, q)| *q.name != *name);
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.by_first_word.is_empty() && self.wild_first.is_empty()
    }

    /// Adds the queues bound for `routing_key` to `out`; returns the
    /// binding's shared copy of the key when an exact binding matched.
    fn route(&self, routing_key: &str, out: &mut Targets) -> Option<Arc<str>> {
        let exact = self.exact.get_key_value(routing_key).map(|(key, queues)| {
            for queue in queues {
                push_unique(out, queue);
            }
            key.clone()
        });
        let candidates = self
            .by_first_word
            .get(topic::first_word(routing_key))
            .into_iter()
            .flatten()
            .chain(&self.wild_first);
        for (pattern, queue) in candidates {
            if topic::matches_pattern(pattern, routing_key) {
                push_unique(out, queue);
            }
        }
        exact
    }
}

/// The queues a message is routed to: almost always one or two, kept
/// inline (a publish allocates no list).
type Targets = smallvec::SmallVec<[Arc<Queue>; 2]>;

fn push_unique(out: &mut Targets, queue: &Arc<Queue>) {
    if !out.iter().any(|q| Arc::ptr_eq(q, queue)) {
        out.push(queue.clone());
    }
}

impl Broker {
    fn connect(self: &Arc<Self>) -> Arc<MemoryTransport> {
        Arc::new(MemoryTransport {
            broker: self.clone(),
            connection: self.next_connection.fetch_add(1, Ordering::Relaxed),
            closed: AtomicBool::new(false),
        })
    }

    fn queue(&self, name: &str) -> Result<Arc<Queue>> {
        self.state
            .read()
            .queues
            .get(name)
            .cloned()
            .ok_or_else(|| Error::QueueNotFound(name.into()))
    }

    fn delete_queue(self: &Arc<Self>, name: &str) {
        let removed = {
            let mut state = self.state.write();
            let removed = state.queues.remove(name);
            if removed.is_some() {
                for exchange in state.exchanges.values_mut() {
                    exchange.bindings.remove_queue(name);
                }
                state
                    .exchanges
                    .retain(|_, e| !(e.spec.auto_delete && e.bindings.is_empty()));
            }
            removed
        };
        if let Some(queue) = removed {
            queue.delete();
        }
    }

    /// A connection closed: its consumers end, its unsettled deliveries go
    /// back to their queues, its exclusive queues are deleted.
    fn close_connection(self: &Arc<Self>, connection: u64) {
        let queues: Vec<Arc<Queue>> = self.state.read().queues.values().cloned().collect();
        for queue in queues {
            if queue.owner == Some(connection) {
                self.delete_queue(&queue.name);
            } else {
                queue.close_connection(connection, self);
            }
        }
    }

    /// Routes a message to the queues its exchange and routing key name.
    /// (Inlined into its two callers: the message is not copied into a
    /// call.)
    #[inline]
    fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
        mandatory: bool,
    ) -> Result<()> {
        let mut targets = Targets::new();
        let (exchange_name, shared_key) = {
            let state = self.state.read();
            if exchange.is_empty() {
                match state.queues.get(routing_key) {
                    Some(queue) => {
                        targets.push(queue.clone());
                        (None, Some(queue.name.clone()))
                    }
                    None => (None, None),
                }
            } else {
                let found = state
                    .exchanges
                    .get(exchange)
                    .ok_or_else(|| Error::ExchangeNotFound(exchange.into()))?;
                let key = found.bindings.route(routing_key, &mut targets);
                (Some(found.name.clone()), key)
            }
        };
        if targets.is_empty() {
            if mandatory {
                return Err(Error::Unroutable {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                });
            }
            return Ok(());
        }
        let exchange: Arc<str> = exchange_name.unwrap_or_else(|| self.default_exchange.clone());
        let routing_key: Arc<str> = shared_key.unwrap_or_else(|| Arc::from(routing_key));
        // Every queue shares the one (immutable) message.
        let expires_at = message
            .properties
            .expiration
            .map(|ttl| tokio::time::Instant::now() + ttl);
        let message = Arc::new(message);
        let mut full = None;
        for queue in &targets {
            let taken = queue.push(Entry {
                seq: 0,
                exchange: exchange.clone(),
                routing_key: routing_key.clone(),
                message: message.clone(),
                redelivered: false,
                expires_at,
                returns: 0,
            });
            if taken == Taken::Rejected {
                full = Some(queue.name.clone());
            }
        }
        // As RabbitMQ nacks a publish that a reject-publish queue refused.
        match full {
            Some(queue) => Err(Error::QueueFull(queue.to_string())),
            None => Ok(()),
        }
    }

    /// Deletes a queue with `x-expires` after it has been unused that long.
    fn schedule_expiry(self: &Arc<Self>, queue: &Arc<Queue>) {
        let Some(ms) = queue.spec.expires_ms() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let generation = queue.inner.lock().generation;
        let broker = Arc::downgrade(self);
        let queue = Arc::downgrade(queue);
        runtime.spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let (Some(broker), Some(queue)) = (broker.upgrade(), queue.upgrade()) else {
                return;
            };
            let unused = {
                let inner = queue.inner.lock();
                inner.generation == generation && inner.consumers.is_empty()
            };
            if unused {
                broker.delete_queue(&queue.name);
            }
        });
    }
}

// ===== queues =====

#[derive(Debug)]
struct Queue {
    /// Its name, shared by the deliveries routed to it by name.
    name: Arc<str>,
    spec: QueueSpec,
    owner: Option<u64>,
    broker: Weak<Broker>,
    inner: Mutex<QueueInner>,
    /// Ready messages held at most (`x-max-length`).
    max_length: usize,
    /// `x-overflow: reject-publish` (else drop-head).
    reject_publish: bool,
    /// `x-single-active-consumer`: only the earliest consumer still there
    /// gets messages; the next one takes over when it goes.
    single_active: bool,
    /// `x-message-ttl`.
    message_ttl: Option<Duration>,
    /// `x-dead-letter-exchange` and `x-dead-letter-routing-key`.
    dead_letter: Option<DeadLetterTo>,
    /// `x-delivery-limit`: returns allowed before a message is dead-lettered.
    delivery_limit: Option<u64>,
    /// `x-queue-type: quorum`: returns are counted in `x-delivery-count`.
    quorum: bool,
}

/// Where a queue dead-letters to.
#[derive(Debug)]
struct DeadLetterTo {
    exchange: String,
    /// `None`: the message's own routing key.
    routing_key: Option<String>,
}

/// What a queue did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    Queued,
    Rejected,
}

#[derive(Debug, Default)]
struct QueueInner {
    ready: VecDeque<Entry>,
    /// Delivered, not yet settled: by the slot in the tag's low half
    /// ([`delivery_tag`]).
    unacked: slab::Slab<Unacked>,
    consumers: Vec<ConsumerSlot>,
    next_consumer: usize,
    next_tag: u64,
    /// Publication order: requeued messages go back to their place.
    next_seq: u64,
    next_consumer_id: u64,
    had_consumer: bool,
    deleted: bool,
    /// Bumped on every use, so a pending expiry can tell it is stale.
    generation: u64,
}

#[derive(Debug)]
struct Entry {
    /// Position in publication order, set when the queue takes it.
    seq: u64,
    exchange: Arc<str>,
    routing_key: Arc<str>,
    message: Arc<Message>,
    redelivered: bool,
    /// From the message's `expiration`: a message still ready then is
    /// dropped instead of delivered (RabbitMQ's per-message TTL; a
    /// requeued message keeps its original deadline).
    expires_at: Option<tokio::time::Instant>,
    /// How often it was delivered and came back unsettled.
    returns: u64,
}

impl Entry {
    fn expired(&self) -> bool {
        self.expires_at
            .is_some_and(|at| at <= tokio::time::Instant::now())
    }
}

#[derive(Debug)]
struct Unacked {
    /// The delivery's tag: its slot and a stamp, so the tag of a delivery
    /// already settled (or requeued) never settles the slot's next one.
    tag: u64,
    entry: Entry,
    consumer: u64,
    connection: u64,
}

struct ConsumerSlot {
    id: u64,
    connection: u64,
    prefetch: u16,
    in_flight: usize,
    tx: mpsc::UnboundedSender<Delivery>,
    /// A direct consumer's function ([`Transport::consume_with`]): it
    /// takes the deliveries, called once the queue lock is released; `tx`
    /// then only tells whether the consumer is still there.
    deliver: Option<Direct>,
    /// Set when the consumer's connection closes: its stream ends at once,
    /// without handing out buffered deliveries (they have been requeued).
    ended: Arc<AtomicBool>,
}

impl QueueInner {
    /// Puts a message back in its original place (RabbitMQ keeps a queue
    /// in publication order "even in the presence of requeueing or channel
    /// closure"). `ready` is always sorted by `seq`.
    fn requeue(&mut self, entry: Entry) {
        let at = self.ready.partition_point(|e| e.seq < entry.seq);
        self.ready.insert(at, entry);
    }
}

impl std::fmt::Debug for ConsumerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSlot")
            .field("id", &self.id)
            .field("connection", &self.connection)
            .field("prefetch", &self.prefetch)
            .field("in_flight", &self.in_flight)
            .field("direct", &self.deliver.is_some())
            .finish_non_exhaustive()
    }
}

impl ConsumerSlot {
    fn has_room(&self) -> bool {
        self.prefetch == 0 || self.in_flight < usize::from(self.prefetch)
    }
}

/// A delivery's tag: the slot it has among the queue's unacked deliveries
/// in the low 32 bits, and the low 32 bits of the queue's delivery count
/// in the high ones. A slot is reused once its delivery is settled, so a
/// stale tag (of a delivery requeued when its connection closed) matches
/// the slot's next delivery only if 2^32 deliveries passed in between.
fn delivery_tag(key: usize, count: u64) -> u64 {
    let key = u32::try_from(key).expect("fewer than 2^32 unacked deliveries on one queue");
    (count << 32) | u64::from(key)
}

/// The unacked slot a [`delivery_tag`] names.
fn unacked_key(tag: u64) -> usize {
    (tag & u64::from(u32::MAX)) as usize
}

/// A direct consumer's function, and the runtime that runs what it leaves
/// to wait for (the publisher calling it may be on no runtime at all).
#[derive(Clone)]
struct Direct {
    deliver: DeliverFn,
    runtime: tokio::runtime::Handle,
}

/// What this thread is doing with direct deliveries ([`deliver_direct`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handing {
    /// Nothing: the next call hands out its deliveries itself.
    Idle,
    /// A call up the stack is handing deliveries out.
    Busy,
    /// And more wait in [`WAITING`] for it.
    Waiting,
    /// Nothing, but a consumer panicked with deliveries still waiting: the
    /// next call hands them out too.
    Left,
}

thread_local! {
    /// Whether a call up the stack hands out direct deliveries already (a
    /// plain cell: looking costs no more than a load).
    static HANDING: std::cell::Cell<Handing> = const { std::cell::Cell::new(Handing::Idle) };
    /// Direct deliveries waiting for that call, in order.
    static WAITING: std::cell::RefCell<VecDeque<(Direct, Delivery)>> =
        const { std::cell::RefCell::new(VecDeque::new()) };
}

/// Hands direct deliveries to their consumers, one after the other. A
/// consumer that settles inline can make the queue hand out the next
/// message at once; those wait in a per-thread queue for this loop rather
/// than nest a call per message (the stack stays flat whatever the
/// backlog).
fn deliver_direct(mut deliveries: SmallVec<[(Direct, Delivery); 1]>) {
    let state = HANDING.get();
    if matches!(state, Handing::Busy | Handing::Waiting) {
        WAITING.with_borrow_mut(|waiting| waiting.extend(deliveries));
        HANDING.set(Handing::Waiting);
        return;
    }
    HANDING.set(if state == Handing::Left {
        Handing::Waiting
    } else {
        Handing::Busy
    });
    /// Lets the next call hand out deliveries, even if a consumer panics.
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            HANDING.set(if HANDING.get() == Handing::Waiting {
                Handing::Left
            } else {
                Handing::Idle
            });
        }
    }
    let _done = Done;
    // What `deliver` leaves is polled once here, on the publisher's task
    // (in the consumer's runtime): a worker that does not wait ends here.
    // What waits gets a task, whose first poll takes over the wakeup.
    let deliver = |(direct, delivery): (Direct, Delivery)| {
        if let Err(mut rest) = (direct.deliver)(delivery).into_ready() {
            // In the consumer's runtime (the publisher's thread may be in
            // none, or in another).
            let _runtime = tokio::runtime::Handle::try_current()
                .map_or(true, |current| current.id() != direct.runtime.id())
                .then(|| direct.runtime.enter());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if std::pin::Pin::new(&mut rest).poll(&mut cx).is_pending() {
                direct.runtime.spawn(rest);
            }
        }
    };
    // Almost always one: taken out as it is, with no iterator around it.
    if deliveries.len() == 1 {
        deliver(deliveries.pop().expect("one delivery"));
    } else {
        deliveries.drain(..).for_each(deliver);
    }
    while HANDING.get() == Handing::Waiting {
        let next = WAITING.with_borrow_mut(|waiting| {
            let next = waiting.pop_front();
            if waiting.is_empty() {
                HANDING.set(Handing::Busy);
            }
            next
        });
        if let Some(next) = next {
            deliver(next);
        }
    }
}

/// What to do once the queue lock is released: hand out direct
/// deliveries, and (rarely) drop what could requeue or dead-letter, which
/// takes the lock again.
#[derive(Default)]
struct Deferred {
    /// Deliveries for direct consumers, in dispatch order.
    direct: SmallVec<[(Direct, Delivery); 1]>,
    /// The rest, in one list: most operations leave nothing here.
    rest: Vec<Later>,
}

/// What a queue leaves for after its lock, besides direct deliveries.
enum Later {
    /// A delivery its consumer never got: dropped.
    Returned(Delivery),
    /// A consumer's sender: dropped.
    Sender(mpsc::UnboundedSender<Delivery>),
    /// A message to dead-letter, with the reason.
    Dead(Entry, &'static str),
}

/// Drops the deliveries and senders a queue left (which can requeue),
/// and returns the messages to dead-letter.
#[cold]
fn drop_returned(rest: Vec<Later>) -> Vec<(Entry, &'static str)> {
    let mut dead = Vec::new();
    for later in rest {
        match later {
            Later::Dead(entry, reason) => dead.push((entry, reason)),
            Later::Returned(delivery) => drop(delivery),
            Later::Sender(sender) => drop(sender),
        }
    }
    dead
}

impl Deferred {
    fn dead(&mut self, entry: Entry, reason: &'static str) {
        self.rest.push(Later::Dead(entry, reason));
    }
}

impl Queue {
    fn push(self: &Arc<Self>, entry: Entry) -> Taken {
        let mut deferred = Deferred::default();
        let mut entry = entry;
        if let Some(ttl) = self.message_ttl {
            let by_queue = tokio::time::Instant::now() + ttl;
            entry.expires_at = Some(entry.expires_at.map_or(by_queue, |at| at.min(by_queue)));
        }
        let expires_at = entry.expires_at;
        {
            let mut inner = self.inner.lock();
            if inner.deleted {
                return Taken::Queued;
            }
            if inner.ready.len() >= self.max_length {
                if self.reject_publish {
                    return Taken::Rejected;
                }
                // drop-head: the oldest ready message makes room.
                if let Some(oldest) = inner.ready.pop_front() {
                    deferred.dead(oldest, "maxlen");
                }
            }
            entry.seq = inner.next_seq;
            inner.next_seq += 1;
            // Nothing waits ahead of it: straight to a consumer with room.
            if inner.ready.is_empty()
                && !entry.expired()
                && let Some(index) = self.next_with_room(&mut inner)
            {
                self.hand_out(&mut inner, index, entry, &mut deferred);
            } else {
                inner.ready.push_back(entry);
            }
            self.dispatch(&mut inner, &mut deferred);
        }
        self.finish(deferred);
        if let Some(at) = expires_at
            && self.dead_letter.is_some()
        {
            self.expire_at(at);
        }
        Taken::Queued
    }

    /// Hands out the direct deliveries, drops what could requeue, then
    /// dead-letters, with no lock held. (Inlined: `deferred` is not copied
    /// into a call.)
    #[inline(always)]
    fn finish(&self, deferred: Deferred) {
        let Deferred { direct, rest } = deferred;
        let dead = if rest.is_empty() {
            Vec::new()
        } else {
            drop_returned(rest)
        };
        if !direct.is_empty() {
            deliver_direct(direct);
        }
        if !dead.is_empty() {
            self.dead_letter(dead);
        }
    }

    /// Republishes messages to the queue's dead-letter exchange, if it has
    /// one (they are dropped otherwise).
    #[cold]
    fn dead_letter(&self, dead: Vec<(Entry, &'static str)>) {
        let (Some(to), Some(broker)) = (&self.dead_letter, self.broker.upgrade()) else {
            return;
        };
        for (entry, reason) in dead {
            let mut message = Arc::unwrap_or_clone(entry.message);
            super::death::record(
                &mut message.properties.headers,
                &self.name,
                reason,
                &entry.exchange,
                &entry.routing_key,
            );
            message.properties.expiration = None;
            let routing_key = to.routing_key.as_deref().unwrap_or(&entry.routing_key);
            if let Err(error) = broker.route(&to.exchange, routing_key, message, false) {
                tracing::debug!(queue = %self.name, %error, "dead letter dropped");
            }
        }
    }

    /// Dead-letters the messages that have expired by `at`, then.
    fn expire_at(self: &Arc<Self>, at: tokio::time::Instant) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let queue = Arc::downgrade(self);
        runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            let Some(queue) = queue.upgrade() else {
                return;
            };
            let mut deferred = Deferred::default();
            {
                let mut inner = queue.inner.lock();
                let mut kept = VecDeque::with_capacity(inner.ready.len());
                for entry in inner.ready.drain(..) {
                    if entry.expired() {
                        deferred.dead(entry, "expired");
                    } else {
                        kept.push_back(entry);
                    }
                }
                inner.ready = kept;
            }
            queue.finish(deferred);
        });
    }

    /// Hands ready messages to consumers with room, round-robin. (Most
    /// calls find none ready: that look is inlined.)
    #[inline(always)]
    fn dispatch(self: &Arc<Self>, inner: &mut QueueInner, deferred: &mut Deferred) {
        if !inner.ready.is_empty() {
            self.dispatch_ready(inner, deferred);
        }
    }

    fn dispatch_ready(self: &Arc<Self>, inner: &mut QueueInner, deferred: &mut Deferred) {
        while !inner.ready.is_empty() {
            let Some(index) = self.next_with_room(inner) else {
                return;
            };
            let entry = inner.ready.pop_front().expect("checked non-empty");
            if entry.expired() {
                deferred.dead(entry, "expired");
                continue;
            }
            self.hand_out(inner, index, entry, deferred);
        }
    }

    /// The consumer that gets the next message, round-robin among those
    /// with room in their prefetch window (a single active consumer is the
    /// earliest one still there); it becomes the last one served.
    fn next_with_room(&self, inner: &mut QueueInner) -> Option<usize> {
        let count = if self.single_active {
            inner.next_consumer = 0;
            inner.consumers.len().min(1)
        } else {
            inner.consumers.len()
        };
        let offset =
            (0..count).find(|i| inner.consumers[(inner.next_consumer + i) % count].has_room())?;
        let index = (inner.next_consumer + offset) % count;
        inner.next_consumer = (index + 1) % count;
        Some(index)
    }

    /// Delivers `entry` to the consumer at `index` and records it as
    /// unacked; if that consumer has gone, the entry goes back to the
    /// head of the queue and the consumer is dropped.
    fn hand_out(
        self: &Arc<Self>,
        inner: &mut QueueInner,
        index: usize,
        entry: Entry,
        deferred: &mut Deferred,
    ) {
        let vacant = inner.unacked.vacant_entry();
        // Counted whether or not the consumer takes it: the slot of a
        // delivery returned below is the next one's, and its tag must not be.
        let tag = delivery_tag(vacant.key(), inner.next_tag);
        inner.next_tag += 1;
        let slot = &mut inner.consumers[index];
        let delivery = Delivery {
            exchange: entry.exchange.clone(),
            routing_key: entry.routing_key.clone(),
            redelivered: entry.redelivered,
            message: entry.message.clone(),
            acker: Acker::by_tag(Arc::downgrade(self) as Weak<dyn SettleByTag>, tag),
        };
        let (consumer, connection) = (slot.id, slot.connection);
        let sent = match &slot.deliver {
            Some(deliver) if !slot.tx.is_closed() => {
                deferred.direct.push((deliver.clone(), delivery));
                Ok(())
            }
            Some(_) => Err(mpsc::error::SendError(delivery)),
            None => slot.tx.send(delivery),
        };
        match sent {
            Ok(()) => {
                slot.in_flight += 1;
                vacant.insert(Unacked {
                    tag,
                    entry,
                    consumer,
                    connection,
                });
            }
            Err(returned) => {
                // The consumer went away: keep the message, drop the
                // consumer. The returned delivery's tag was never
                // recorded, so dropping it (later, unlocked) is a no-op.
                deferred.rest.push(Later::Returned(returned.0));
                inner.ready.push_front(entry);
                let slot = inner.consumers.remove(index);
                deferred.rest.push(Later::Sender(slot.tx));
                inner.next_consumer = 0;
            }
        }
    }

    /// Takes the unacked delivery with `tag` out, if it is still unacked.
    fn take_unacked(inner: &mut QueueInner, tag: u64) -> Option<Unacked> {
        let key = unacked_key(tag);
        match inner.unacked.get(key) {
            Some(unacked) if unacked.tag == tag => Some(inner.unacked.remove(key)),
            _ => None,
        }
    }

    fn settle(self: &Arc<Self>, tag: u64, how: Settlement) -> Result<()> {
        let mut deferred = Deferred::default();
        let result = {
            let mut inner = self.inner.lock();
            match Self::take_unacked(&mut inner, tag) {
                None if inner.deleted => Ok(()),
                None => Err(Error::TransportClosed),
                Some(Unacked {
                    entry, consumer, ..
                }) => {
                    if let Some(slot) = inner.consumers.iter_mut().find(|c| c.id == consumer) {
                        slot.in_flight = slot.in_flight.saturating_sub(1);
                    }
                    match how {
                        Settlement::Ack => {}
                        Settlement::Requeue => self.put_back(&mut inner, entry, &mut deferred),
                        Settlement::Reject => deferred.dead(entry, "rejected"),
                    }
                    self.dispatch(&mut inner, &mut deferred);
                    Ok(())
                }
            }
        };
        self.finish(deferred);
        result
    }

    /// A delivered message came back unsettled: requeued in its place, or
    /// dead-lettered past the delivery limit.
    fn put_back(&self, inner: &mut QueueInner, mut entry: Entry, deferred: &mut Deferred) {
        entry.returns += 1;
        if self
            .delivery_limit
            .is_some_and(|limit| entry.returns > limit)
        {
            deferred.dead(entry, "delivery_limit");
            return;
        }
        if self.quorum {
            Arc::make_mut(&mut entry.message)
                .properties
                .headers
                .insert("x-delivery-count".into(), entry.returns.into());
        }
        entry.redelivered = true;
        inner.requeue(entry);
    }

    fn add_consumer(
        self: &Arc<Self>,
        connection: u64,
        prefetch: u16,
        deliver: Option<Direct>,
    ) -> Result<(u64, mpsc::UnboundedReceiver<Delivery>, Arc<AtomicBool>)> {
        if let Some(owner) = self.owner
            && owner != connection
        {
            return Err(Error::ResourceLocked(format!(
                "cannot obtain exclusive access to locked queue '{}'",
                self.name
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let ended = Arc::new(AtomicBool::new(false));
        let mut deferred = Deferred::default();
        let id = {
            let mut inner = self.inner.lock();
            if inner.deleted {
                return Err(Error::QueueNotFound(self.name.to_string()));
            }
            let id = inner.next_consumer_id;
            inner.next_consumer_id += 1;
            inner.had_consumer = true;
            inner.generation += 1;
            inner.consumers.push(ConsumerSlot {
                id,
                connection,
                prefetch,
                in_flight: 0,
                tx,
                deliver,
                ended: ended.clone(),
            });
            self.dispatch(&mut inner, &mut deferred);
            id
        };
        self.finish(deferred);
        Ok((id, rx, ended))
    }

    fn cancel_consumer(self: &Arc<Self>, id: u64) {
        let (sender, now_unused) = {
            let mut inner = self.inner.lock();
            let position = inner.consumers.iter().position(|c| c.id == id);
            let sender = position.map(|index| inner.consumers.remove(index).tx);
            inner.next_consumer = 0;
            inner.generation += 1;
            (sender, inner.consumers.is_empty() && !inner.deleted)
        };
        // Deliveries still buffered in the channel are dropped here, and requeue.
        drop(sender);
        if now_unused && let Some(broker) = self.broker.upgrade() {
            if self.spec.auto_delete {
                broker.delete_queue(&self.name);
            } else {
                broker.schedule_expiry(self);
            }
        }
    }

    fn close_connection(self: &Arc<Self>, connection: u64, broker: &Arc<Broker>) {
        let mut deferred = Deferred::default();
        let now_unused = {
            let mut inner = self.inner.lock();
            let had = inner.consumers.len();
            let mut kept = Vec::with_capacity(had);
            for slot in inner.consumers.drain(..) {
                if slot.connection == connection {
                    slot.ended.store(true, Ordering::Release);
                    deferred.rest.push(Later::Sender(slot.tx));
                } else {
                    kept.push(slot);
                }
            }
            inner.consumers = kept;
            inner.next_consumer = 0;
            let keys: Vec<usize> = inner
                .unacked
                .iter()
                .filter(|(_, u)| u.connection == connection)
                .map(|(key, _)| key)
                .collect();
            for key in keys {
                let Unacked { entry, .. } = inner.unacked.remove(key);
                self.put_back(&mut inner, entry, &mut deferred);
            }
            self.dispatch(&mut inner, &mut deferred);
            had > 0 && inner.consumers.is_empty()
        };
        self.finish(deferred);
        if now_unused {
            if self.spec.auto_delete {
                broker.delete_queue(&self.name);
            } else {
                broker.schedule_expiry(self);
            }
        }
    }

    fn delete(&self) {
        let senders: Vec<_> = {
            let mut inner = self.inner.lock();
            inner.deleted = true;
            inner.ready.clear();
            inner.unacked.clear();
            inner.consumers.drain(..).map(|slot| slot.tx).collect()
        };
        drop(senders);
    }
}

// ===== settling =====

/// The embedded broker's deliveries are settled by tag on their queue,
/// from a handle the [`Acker`] holds inline.
impl SettleByTag for Queue {
    fn settle_tag(self: Arc<Self>, tag: u64, how: Settlement) -> Result<()> {
        self.settle(tag, how)
    }

    fn holds_tag(&self, tag: u64) -> bool {
        let inner = self.inner.lock();
        inner
            .unacked
            .get(unacked_key(tag))
            .is_some_and(|unacked| unacked.tag == tag)
    }
}

// ===== consuming =====

struct MemoryConsumer {
    rx: mpsc::UnboundedReceiver<Delivery>,
    queue: Arc<Queue>,
    id: u64,
    ended: Arc<AtomicBool>,
}

impl Stream for MemoryConsumer {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if self.ended.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        self.rx.poll_recv(cx)
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.rx.close();
        self.queue.cancel_consumer(self.id);
        // Deliveries that were buffered for us go back to the queue.
        while let Ok(delivery) = self.rx.try_recv() {
            drop(delivery);
        }
    }
}

// ===== the Transport impl =====

#[async_trait]
impl Transport for MemoryTransport {
    async fn declare_exchange(&self, spec: &ExchangeSpec) -> Result<()> {
        self.check_open()?;
        check_name("exchange name", &spec.name)?;
        let mut state = self.broker.state.write();
        match state.exchanges.get(&spec.name) {
            Some(existing) if existing.spec != *spec => Err(Error::PreconditionFailed(format!(
                "inequivalent arg 'durable' or 'auto_delete' for exchange '{}'",
                spec.name
            ))),
            Some(_) => Ok(()),
            None => {
                state.exchanges.insert(
                    spec.name.clone(),
                    Exchange {
                        spec: spec.clone(),
                        name: Arc::from(spec.name.as_str()),
                        bindings: Bindings::default(),
                    },
                );
                Ok(())
            }
        }
    }

    async fn exchange_exists(&self, name: &str) -> Result<bool> {
        self.check_open()?;
        check_name("exchange name", name)?;
        Ok(self.broker.state.read().exchanges.contains_key(name))
    }

    async fn queue_depth(&self, name: &str) -> Result<Option<u64>> {
        self.check_open()?;
        Ok(self.ready_count(name).map(|n| n as u64))
    }

    async fn declare_queue(&self, spec: &QueueSpec) -> Result<()> {
        self.check_open()?;
        check_name("queue name", &spec.name)?;
        let queue = {
            let mut state = self.broker.state.write();
            if let Some(existing) = state.queues.get(&spec.name) {
                if let Some(owner) = existing.owner
                    && owner != self.connection
                {
                    return Err(Error::ResourceLocked(format!(
                        "cannot obtain exclusive access to locked queue '{}'",
                        spec.name
                    )));
                }
                if existing.spec != *spec {
                    return Err(Error::PreconditionFailed(format!(
                        "inequivalent arg for queue '{}': declared {:?}, exists as {:?}",
                        spec.name, spec, existing.spec
                    )));
                }
                existing.inner.lock().generation += 1;
                existing.clone()
            } else {
                let max_length = spec
                    .arguments
                    .get("x-max-length")
                    .and_then(serde_json::Value::as_u64)
                    .map_or(self.broker.max_length, |n| {
                        usize::try_from(n).unwrap_or(usize::MAX).max(1)
                    });
                let reject_publish = spec
                    .arguments
                    .get("x-overflow")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|o| o.starts_with("reject-publish"));
                let single_active = spec
                    .arguments
                    .get("x-single-active-consumer")
                    .is_some_and(|v| v == &serde_json::Value::Bool(true));
                let ms = |key: &str| spec.arguments.get(key).and_then(serde_json::Value::as_u64);
                let text = |key: &str| spec.arguments.get(key).and_then(serde_json::Value::as_str);
                let dead_letter = text("x-dead-letter-exchange").map(|exchange| DeadLetterTo {
                    exchange: exchange.to_owned(),
                    routing_key: text("x-dead-letter-routing-key").map(str::to_owned),
                });
                let queue = Arc::new(Queue {
                    single_active,
                    message_ttl: ms("x-message-ttl").map(Duration::from_millis),
                    dead_letter,
                    // As RabbitMQ, only quorum queues count deliveries.
                    delivery_limit: ms("x-delivery-limit").filter(|_| spec.is_quorum()),
                    quorum: spec.is_quorum(),
                    name: Arc::from(spec.name.as_str()),
                    spec: spec.clone(),
                    owner: spec.exclusive.then_some(self.connection),
                    broker: Arc::downgrade(&self.broker),
                    inner: Mutex::new(QueueInner::default()),
                    max_length,
                    reject_publish,
                });
                state.queues.insert(spec.name.clone(), queue.clone());
                queue
            }
        };
        let unused = queue.inner.lock().consumers.is_empty();
        if unused {
            self.broker.schedule_expiry(&queue);
        }
        Ok(())
    }

    async fn delete_queue(&self, name: &str) -> Result<()> {
        self.check_open()?;
        self.broker.delete_queue(name);
        Ok(())
    }

    async fn bind(&self, queue: &str, exchange: &str, pattern: &str) -> Result<()> {
        self.check_open()?;
        check_name("queue name", queue)?;
        check_name("exchange name", exchange)?;
        check_name("pattern", pattern)?;
        let mut state = self.broker.state.write();
        let queue = state
            .queues
            .get(queue)
            .cloned()
            .ok_or_else(|| Error::QueueNotFound(queue.into()))?;
        let exchange = state
            .exchanges
            .get_mut(exchange)
            .ok_or_else(|| Error::ExchangeNotFound(exchange.into()))?;
        exchange.bindings.add(pattern, queue);
        Ok(())
    }

    async fn unbind(&self, queue: &str, exchange: &str, pattern: &str) -> Result<()> {
        self.check_open()?;
        let mut state = self.broker.state.write();
        let Some(ex) = state.exchanges.get_mut(exchange) else {
            return Ok(());
        };
        ex.bindings.remove(pattern, queue);
        if ex.spec.auto_delete && ex.bindings.is_empty() {
            state.exchanges.remove(exchange);
        }
        Ok(())
    }

    fn publish<'a>(
        &'a self,
        exchange: &'a str,
        routing_key: &'a str,
        message: Message,
        options: PublishOptions,
    ) -> TransportFuture<'a, Result<()>> {
        // Routed at once: the message is in its queues when this returns.
        let checked = self
            .check_open()
            .and_then(|()| check_name("exchange name", exchange))
            .and_then(|()| check_name("routing key", routing_key));
        TransportFuture::ready(match checked {
            Ok(()) => self
                .broker
                .route(exchange, routing_key, message, options.mandatory),
            Err(error) => Err(error),
        })
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Consumer> {
        self.check_open()?;
        let queue = self.broker.queue(queue)?;
        let (id, rx, ended) = queue.add_consumer(self.connection, options.prefetch, None)?;
        Ok(Consumer::new(MemoryConsumer {
            rx,
            queue,
            id,
            ended,
        }))
    }

    /// Calls `deliver` on the publisher's task, once the queue's lock is
    /// released: no task switch between a publish and its delivery.
    async fn consume_with(
        &self,
        queue: &str,
        options: ConsumeOptions,
        deliver: DeliverFn,
    ) -> Result<DirectConsumer> {
        self.check_open()?;
        let queue = self.broker.queue(queue)?;
        let direct = Direct {
            deliver,
            runtime: tokio::runtime::Handle::try_current().map_err(|_| {
                Error::Invalid("a direct consumer needs a tokio runtime".to_owned())
            })?,
        };
        let (id, rx, ended) =
            queue.add_consumer(self.connection, options.prefetch, Some(direct))?;
        let mut consumer = MemoryConsumer {
            rx,
            queue,
            id,
            ended,
        };
        // Nothing is sent on the channel: it ends when consuming does.
        Ok(DirectConsumer::new(async move {
            while futures::StreamExt::next(&mut consumer).await.is_some() {}
        }))
    }

    async fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.broker.close_connection(self.connection);
        }
    }

    fn is_connected(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::QueueSpec;

    fn text(delivery: &Delivery) -> String {
        String::from_utf8(delivery.message.body.to_vec()).expect("UTF-8")
    }

    /// A delivery a consumer that went away never got is dropped once the
    /// lock is released; its tag settles nothing, though the next
    /// consumer's delivery took its slot.
    #[tokio::test(flavor = "current_thread")]
    async fn a_delivery_no_consumer_got_settles_nothing() {
        let broker = MemoryTransport::new();
        broker
            .declare_queue(&QueueSpec::durable("q"))
            .await
            .expect("declare");
        let queue = broker.broker.queue("q").expect("the queue");
        // The first consumer's receiver is gone, though it is still listed.
        let (_, gone, _) = queue.add_consumer(0, 0, None).expect("consumer");
        drop(gone);
        let (_, mut rx, _) = queue.add_consumer(0, 0, None).expect("consumer");
        broker
            .publish("", "q", Message::json("m"), PublishOptions::default())
            .await
            .expect("publish");
        let delivery = rx.try_recv().expect("the live consumer gets it");
        assert_eq!(text(&delivery), "m");
        assert!(rx.try_recv().is_err(), "and only once");
        assert_eq!(queue.inner.lock().unacked.len(), 1, "still unacked");
        delivery.ack().await.expect("ack");
        assert!(queue.inner.lock().unacked.is_empty());
    }

    /// A direct consumer that panics while a delivery it made possible
    /// waits on this thread: the waiting one goes out with the thread's
    /// next hand-out (to any queue), and is not lost.
    #[tokio::test(flavor = "current_thread")]
    async fn deliveries_a_panicking_consumer_left_go_out_with_the_next_hand_out() {
        let broker = MemoryTransport::new();
        for queue in ["first", "second"] {
            broker
                .declare_queue(&QueueSpec::durable(queue))
                .await
                .expect("declare");
        }
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let held: Arc<Mutex<Option<Delivery>>> = Arc::default();
        // "one" is held; "two" is acked at once (which hands out "three"
        // on this thread, to wait for this call), then the consumer panics.
        let deliver: DeliverFn = Arc::new({
            let (got, held) = (got.clone(), held.clone());
            move |delivery: Delivery| {
                match text(&delivery).as_str() {
                    "one" => *held.lock() = Some(delivery),
                    "two" => {
                        let _ = delivery.ack().into_ready();
                        panic!("the consumer panics");
                    }
                    other => {
                        got.lock().push(other.to_owned());
                        let _ = delivery.ack().into_ready();
                    }
                }
                TransportFuture::ready(())
            }
        });
        let one_at_a_time = ConsumeOptions {
            prefetch: 1,
            ..ConsumeOptions::default()
        };
        let _first = broker
            .consume_with("first", one_at_a_time, deliver.clone())
            .await
            .expect("consume first");
        let _second = broker
            .consume_with("second", ConsumeOptions::default(), deliver)
            .await
            .expect("consume second");
        for body in ["one", "two", "three"] {
            broker
                .publish("", "first", Message::json(body), PublishOptions::default())
                .await
                .expect("publish");
        }
        let one = held.lock().take().expect("one is held");
        let acked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one.ack().into_ready()));
        assert!(acked.is_err(), "the consumer's panic reaches the acker");
        assert!(got.lock().is_empty(), "three waits");

        broker
            .publish(
                "",
                "second",
                Message::json("four"),
                PublishOptions::default(),
            )
            .await
            .expect("publish");
        assert_eq!(*got.lock(), ["four", "three"]);
    }
}
