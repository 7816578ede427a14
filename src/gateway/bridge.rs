//! The event bridge: broker events → WebSocket and SSE clients.
//!
//! The gateway consumes events through a queue of its own,
//! `enoki-gateway-events-<uuid>` (exclusive, auto-delete: broadcast
//! semantics, so every gateway instance sees every event its clients want).
//! The queue is bound to `<service>.events` (a topic exchange, declared
//! first) with the event-type pattern of each subscription, when the first
//! client subscribes to it, and unbound when the last one leaves
//! (reference-counted). This goes through the [`Transport`] trait only, so
//! it behaves the same on RabbitMQ (events from Python nameko services
//! included) and on the embedded broker.
//!
//! Each client has a bounded [`ClientQueue`]. The consumer task only ever
//! pushes into those queues, never waits on a client: when a queue is full
//! the client loses its oldest event (and is told how many it missed) or is
//! disconnected ([`SlowClient`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::SlowClient;
use super::metrics::GatewayMetrics;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::names;
use crate::transport::{ConsumeOptions, MAX_NAME_LEN, QueueSpec, Transport, check_name, topic};

/// A subscription: a source service and an event-type pattern (`*` is one
/// word, `#` any number), written `service.event_type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventPattern {
    /// The source service (no wildcards: events come from its exchange).
    pub service: String,
    /// The event-type pattern.
    pub event_type: String,
}

impl EventPattern {
    /// Parses `service.event_type` (e.g. `clock.tick`, `greeter.*`).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.len() > MAX_NAME_LEN {
            return Err(Error::Invalid(format!(
                "the pattern is longer than {MAX_NAME_LEN} bytes ({} bytes)",
                text.len()
            )));
        }
        let Some((service, event_type)) = text.split_once('.') else {
            return Err(Error::Invalid(format!(
                "`{text}` is not SERVICE.EVENT_TYPE (e.g. clock.tick or clock.*)"
            )));
        };
        let ok_service = !service.is_empty()
            && service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok_service {
            return Err(Error::Invalid(format!(
                "`{text}`: the service must be a name (wildcards are allowed in the event type only)"
            )));
        }
        check_name(
            "the service's event exchange",
            &names::event_exchange(service),
        )?;
        let ok_type = !event_type.is_empty()
            && event_type.split('.').all(|w| {
                w == "*"
                    || w == "#"
                    || (!w.is_empty()
                        && !w.contains(['*', '#'])
                        && !w.contains(char::is_whitespace))
            });
        if !ok_type {
            return Err(Error::Invalid(format!(
                "`{text}`: bad event-type pattern (words separated by `.`, `*` for one word, `#` for any)"
            )));
        }
        Ok(EventPattern {
            service: service.to_owned(),
            event_type: event_type.to_owned(),
        })
    }
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.service, self.event_type)
    }
}

// ===== per-client queues =====

/// Whether a client may see an event of `service` with `event_type`:
/// authorization decided on each event's own name, not on the text of the
/// pattern that matched it.
pub type EventFilter = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Events the bridge's consumer takes from the broker before acking them
/// (each is acked once fanned out): a bound on what the broker client
/// buffers.
pub const BRIDGE_PREFETCH: u16 = 1024;

/// One client's bounded queue of outgoing frames (JSON text): events,
/// which may be dropped, and control frames (replies, errors), which are not.
pub struct ClientQueue {
    id: u64,
    allowed: Option<EventFilter>,
    capacity: usize,
    policy: SlowClient,
    inner: Mutex<Queue>,
    notify: Notify,
    last_seq: AtomicU64,
    subscriptions: Mutex<Vec<EventPattern>>,
}

#[derive(Default)]
struct Queue {
    control: VecDeque<Utf8Bytes>,
    events: VecDeque<Utf8Bytes>,
    dropped: u64,
    closed: bool,
}

impl fmt::Debug for ClientQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientQueue")
            .field("id", &self.id)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

enum Pushed {
    Queued,
    Duplicate,
    DroppedOldest,
    Disconnected,
    Closed,
}

impl ClientQueue {
    fn push_event(&self, frame: &Utf8Bytes, seq: u64) -> Pushed {
        if self.last_seq.swap(seq, Ordering::Relaxed) == seq {
            return Pushed::Duplicate;
        }
        let mut q = self.inner.lock();
        if q.closed {
            return Pushed::Closed;
        }
        let mut outcome = Pushed::Queued;
        if q.events.len() >= self.capacity {
            match self.policy {
                SlowClient::DropOldest => {
                    q.events.pop_front();
                    q.dropped += 1;
                    outcome = Pushed::DroppedOldest;
                }
                SlowClient::Disconnect => {
                    q.closed = true;
                    drop(q);
                    self.notify.notify_one();
                    return Pushed::Disconnected;
                }
            }
        }
        q.events.push_back(frame.clone());
        drop(q);
        self.notify.notify_one();
        outcome
    }

    /// Queues a control frame (never dropped).
    pub fn push_control(&self, frame: Utf8Bytes) {
        self.inner.lock().control.push_back(frame);
        self.notify.notify_one();
    }

    /// Waits for frames and moves them all into `out` (control frames
    /// first, then a `dropped` notice if events were lost, then events).
    /// Returns `false` once the client has been disconnected for being slow.
    pub async fn next_batch(&self, out: &mut Vec<Utf8Bytes>) -> bool {
        loop {
            {
                let mut q = self.inner.lock();
                if q.closed {
                    return false;
                }
                if !q.control.is_empty() || !q.events.is_empty() || q.dropped > 0 {
                    out.extend(q.control.drain(..));
                    if q.dropped > 0 {
                        out.push(Utf8Bytes::from(format!(
                            r#"{{"type":"dropped","count":{}}}"#,
                            q.dropped
                        )));
                        q.dropped = 0;
                    }
                    out.extend(q.events.drain(..));
                    return true;
                }
            }
            self.notify.notified().await;
        }
    }

    /// The client's subscriptions.
    pub fn subscriptions(&self) -> Vec<EventPattern> {
        self.subscriptions.lock().clone()
    }
}

// ===== the bridge =====

/// The clients of one source service: (event-type pattern, client).
type Subscribers = Vec<(String, Arc<ClientQueue>)>;

/// Consumes events from the broker and fans them out to client queues.
/// Cheap to clone.
#[derive(Clone)]
pub struct EventBridge(Arc<Inner>);

struct Inner {
    transport: Arc<dyn Transport>,
    settings: Settings,
    queue: String,
    capacity: usize,
    policy: SlowClient,
    metrics: GatewayMetrics,
    bindings: tokio::sync::Mutex<HashMap<EventPattern, usize>>,
    table: RwLock<HashMap<String, Subscribers>>,
    seq: AtomicU64,
    next_client: AtomicU64,
    consuming: AtomicBool,
    shutdown: CancellationToken,
}

impl fmt::Debug for EventBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBridge")
            .field("queue", &self.0.queue)
            .field("consuming", &self.is_consuming())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    service: &'a str,
    event_type: &'a str,
    payload: &'a RawValue,
}

/// The JSON frame of one event.
fn event_frame(service: &str, event_type: &str, body: &[u8]) -> Utf8Bytes {
    let owned;
    let payload: &RawValue = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(_) => {
            owned = serde_json::value::to_raw_value(&String::from_utf8_lossy(body))
                .unwrap_or_else(|_| RawValue::NULL.to_owned());
            &owned
        }
    };
    let frame = EventFrame {
        kind: "event",
        service,
        event_type,
        payload,
    };
    Utf8Bytes::from(serde_json::to_string(&frame).unwrap_or_default())
}

impl EventBridge {
    /// Declares the bridge's queue and starts consuming from it.
    pub async fn start(
        transport: Arc<dyn Transport>,
        settings: &Settings,
        capacity: usize,
        policy: SlowClient,
        metrics: GatewayMetrics,
        shutdown: CancellationToken,
    ) -> Result<EventBridge> {
        let queue = format!("enoki-gateway-events-{}", uuid::Uuid::new_v4().simple());
        let bridge = EventBridge(Arc::new(Inner {
            transport,
            settings: settings.clone(),
            queue,
            capacity,
            policy,
            metrics,
            bindings: tokio::sync::Mutex::default(),
            table: RwLock::default(),
            seq: AtomicU64::new(0),
            next_client: AtomicU64::new(1),
            consuming: AtomicBool::new(false),
            shutdown,
        }));
        let consumer = bridge.declare_and_consume().await?;
        tokio::spawn(bridge.clone().run(consumer));
        Ok(bridge)
    }

    async fn declare_and_consume(&self) -> Result<crate::transport::Consumer> {
        let inner = &self.0;
        let spec = QueueSpec {
            name: inner.queue.clone(),
            durable: false,
            exclusive: true,
            auto_delete: true,
            arguments: Default::default(),
        };
        inner.transport.declare_queue(&spec).await?;
        let consumer = inner
            .transport
            .consume(
                &inner.queue,
                ConsumeOptions {
                    prefetch: BRIDGE_PREFETCH,
                    // Each event is acked, in order, once fanned out.
                    coalesce_acks: true,
                },
            )
            .await?;
        inner.consuming.store(true, Ordering::Release);
        Ok(consumer)
    }

    async fn run(self, mut consumer: crate::transport::Consumer) {
        let inner = &self.0;
        loop {
            loop {
                let delivery = tokio::select! {
                    () = inner.shutdown.cancelled() => return,
                    d = consumer.next() => d,
                };
                let Some(delivery) = delivery else { break };
                let service = delivery
                    .exchange
                    .strip_suffix(".events")
                    .unwrap_or(&delivery.exchange)
                    .to_owned();
                let event_type = delivery.routing_key.clone();
                let body = delivery.message.body.clone();
                if let Err(err) = delivery.ack().await {
                    tracing::debug!(error = %err, "could not ack an event");
                }
                self.fan_out(&service, &event_type, &body);
            }
            inner.consuming.store(false, Ordering::Release);
            if inner.shutdown.is_cancelled() {
                return;
            }
            tracing::warn!(queue = %inner.queue, "event consumer stopped; reconnecting");
            consumer = loop {
                tokio::select! {
                    () = inner.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {},
                }
                match self.restore().await {
                    Ok(consumer) => break consumer,
                    Err(err) => tracing::warn!(error = %err, "event consumer: still down"),
                }
            };
            tracing::info!(queue = %inner.queue, "event consumer restored");
        }
    }

    /// Redeclares the queue and its bindings after a connection loss.
    async fn restore(&self) -> Result<crate::transport::Consumer> {
        let bindings = self.0.bindings.lock().await;
        let spec = QueueSpec {
            name: self.0.queue.clone(),
            durable: false,
            exclusive: true,
            auto_delete: true,
            arguments: Default::default(),
        };
        self.0.transport.declare_queue(&spec).await?;
        for pattern in bindings.keys() {
            self.bind(pattern).await?;
        }
        drop(bindings);
        let consumer = self
            .0
            .transport
            .consume(
                &self.0.queue,
                ConsumeOptions {
                    prefetch: BRIDGE_PREFETCH,
                    // Each event is acked, in order, once fanned out.
                    coalesce_acks: true,
                },
            )
            .await?;
        self.0.consuming.store(true, Ordering::Release);
        Ok(consumer)
    }

    /// Queues one event to every client subscribed to it. Returns the
    /// number of deliveries queued.
    pub fn fan_out(&self, service: &str, event_type: &str, body: &[u8]) -> u64 {
        let inner = &self.0;
        inner.metrics.event_received();
        let seq = inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let table = inner.table.read();
        let Some(subscribers) = table.get(service) else {
            return 0;
        };
        let frame = event_frame(service, event_type, body);
        let (mut queued, mut dropped) = (0, 0);
        for (pattern, client) in subscribers {
            if !topic::matches(pattern, event_type) {
                continue;
            }
            if let Some(allowed) = &client.allowed
                && !allowed(service, event_type)
            {
                continue;
            }
            match client.push_event(&frame, seq) {
                Pushed::Queued => queued += 1,
                Pushed::DroppedOldest => {
                    queued += 1;
                    dropped += 1;
                }
                Pushed::Disconnected => {
                    dropped += 1;
                    inner.metrics.slow_disconnect();
                }
                Pushed::Duplicate | Pushed::Closed => {}
            }
        }
        drop(table);
        inner.metrics.events_forwarded(queued);
        if dropped > 0 {
            inner.metrics.events_dropped(dropped);
        }
        queued
    }

    /// Whether the bridge is consuming from the broker.
    pub fn is_consuming(&self) -> bool {
        self.0.consuming.load(Ordering::Acquire)
    }

    /// The bridge's queue name.
    pub fn queue(&self) -> &str {
        &self.0.queue
    }

    /// A new client queue.
    pub fn client(&self) -> Arc<ClientQueue> {
        self.client_with(None)
    }

    /// A new client queue that only receives the events `allowed` lets
    /// through.
    pub fn client_with(&self, allowed: Option<EventFilter>) -> Arc<ClientQueue> {
        Arc::new(ClientQueue {
            id: self.0.next_client.fetch_add(1, Ordering::Relaxed),
            allowed,
            capacity: self.0.capacity,
            policy: self.0.policy,
            inner: Mutex::default(),
            notify: Notify::new(),
            last_seq: AtomicU64::new(0),
            subscriptions: Mutex::default(),
        })
    }

    /// Binds the bridge's queue to the pattern's exchange, declaring the
    /// exchange only if it does not exist yet (the gateway checked that
    /// the service is one it knows; an existing exchange keeps the flags
    /// its service gave it).
    async fn bind(&self, pattern: &EventPattern) -> Result<()> {
        let exchange = names::event_exchange(&pattern.service);
        if !self.0.transport.exchange_exists(&exchange).await? {
            crate::client::declare_event_exchange(&self.0.transport, &self.0.settings, &exchange)
                .await?;
        }
        self.0
            .transport
            .bind(&self.0.queue, &exchange, &pattern.event_type)
            .await
    }

    /// Subscribes `client` to `pattern`; `Ok(false)` if it already was.
    pub async fn subscribe(
        &self,
        client: &Arc<ClientQueue>,
        pattern: &EventPattern,
    ) -> Result<bool> {
        {
            let mut subs = client.subscriptions.lock();
            if subs.contains(pattern) {
                return Ok(false);
            }
            subs.push(pattern.clone());
        }
        let mut bindings = self.0.bindings.lock().await;
        let count = bindings.entry(pattern.clone()).or_insert(0);
        if *count == 0
            && let Err(err) = self.bind(pattern).await
        {
            bindings.remove(pattern);
            client.subscriptions.lock().retain(|p| p != pattern);
            return Err(err);
        }
        *count += 1;
        self.0
            .table
            .write()
            .entry(pattern.service.clone())
            .or_default()
            .push((pattern.event_type.clone(), client.clone()));
        Ok(true)
    }

    /// Unsubscribes `client` from `pattern`; `Ok(false)` if it was not.
    pub async fn unsubscribe(
        &self,
        client: &Arc<ClientQueue>,
        pattern: &EventPattern,
    ) -> Result<bool> {
        {
            let mut subs = client.subscriptions.lock();
            let before = subs.len();
            subs.retain(|p| p != pattern);
            if subs.len() == before {
                return Ok(false);
            }
        }
        {
            let mut table = self.0.table.write();
            if let Some(list) = table.get_mut(&pattern.service) {
                list.retain(|(p, c)| !(c.id == client.id && *p == pattern.event_type));
                if list.is_empty() {
                    table.remove(&pattern.service);
                }
            }
        }
        let mut bindings = self.0.bindings.lock().await;
        if let Some(count) = bindings.get_mut(pattern) {
            *count -= 1;
            if *count == 0 {
                bindings.remove(pattern);
                let exchange = names::event_exchange(&pattern.service);
                match self
                    .0
                    .transport
                    .unbind(&self.0.queue, &exchange, &pattern.event_type)
                    .await
                {
                    Ok(()) | Err(Error::TransportClosed) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(true)
    }

    /// Unsubscribes `client` from everything (when it goes away).
    pub async fn remove(&self, client: &Arc<ClientQueue>) {
        for pattern in client.subscriptions() {
            if let Err(err) = self.unsubscribe(client, &pattern).await {
                tracing::debug!(error = %err, %pattern, "unsubscribe on disconnect failed");
            }
        }
    }

    /// The bound patterns and how many subscriptions share each.
    pub async fn bindings(&self) -> Vec<(EventPattern, usize)> {
        let mut list: Vec<_> = self
            .0
            .bindings
            .lock()
            .await
            .iter()
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        list.sort_by_key(|(p, _)| p.to_string());
        list
    }
}
