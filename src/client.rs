//! Clients: [`ClusterRpc`] (nameko's `ClusterRpcProxy`, async) and
//! [`EventPublisher`] (nameko's standalone `event_dispatcher`).
//!
//! A `ClusterRpc` owns one reply queue, `rpc.reply-<owner>-<uuid>`
//! (`x-expires` 300000; not durable unless `RPC_REPLY_QUEUE` is `durable`,
//! see [`ReplyQueue`]), bound to the RPC exchange under its own name, which
//! is what requests carry in `reply_to`. A nameko service replies through
//! the RPC exchange with that routing key (nameko's own callers send a bare
//! uuid there; any key does); an enoki service sees that `reply_to` names
//! a queue and replies straight to it through the default exchange, which
//! spares the broker a topic lookup per reply. Many calls are in
//! flight at once over it, matched by correlation id. Requests are
//! published `mandatory`: when no queue is bound for `<service>.*` the call
//! fails at once with [`Error::UnknownService`].
//!
//! A standalone client has one call id, `<owner>.call.<uuid>`, for all its
//! calls, as nameko 2's `ClusterRpcProxy` has (the worker a call reaches
//! adds its own, unique one): its headers are made once and shared by
//! every call. [`ClusterRpc::with_context_data`] makes a client with
//! context data and a call id of its own, say one per HTTP request. A
//! client bound to a worker ([`ClusterRpc::bind`]) sends the worker's
//! context.
//!
//! ```
//! # use enoki::prelude::*;
//! # use enoki::transport::MemoryTransport;
//! # #[tokio::main] async fn main() -> enoki::Result<()> {
//! let transport = MemoryTransport::new();
//! let rpc = ClusterRpc::connect(transport, &Settings::new()).await?;
//! let err = rpc.call("nosuch", "method", serde_json::json!([]), Default::default()).await;
//! assert!(matches!(err, Err(enoki::Error::UnknownService(ref s)) if s == "nosuch"));
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::config::{ReplyQueue, Settings};
use crate::context::{WorkerCtx, encode_own_headers, new_shared_uuid, new_uuid, push_uuid};
use crate::error::{Error, Result};
use crate::message::{Headers, Message, ReplyBody};
use crate::names::{self, REPLY_QUEUE_TTL_MS, STANDALONE_OWNER};
use crate::trace_context::TraceContext;
use crate::transport::{
    ConsumeOptions, DeliverFn, Delivery, ExchangeSpec, PublishOptions, QueueSpec, Transport,
    TransportFuture,
};

/// Calls waiting for their reply, by correlation id (shared with the
/// request's message).
type Pending =
    Mutex<HashMap<Arc<str>, oneshot::Sender<Result<Arc<Message>>>, foldhash::fast::RandomState>>;

/// Replies a client's reply queue hands out before they are acked (each is
/// acked as soon as it is matched to its call): a bound on what the
/// broker client buffers.
pub const REPLY_PREFETCH: u16 = 1024;

/// An RPC client with its own reply queue. Cheap to clone; clones share
/// the reply queue.
///
/// The client inside a worker (from the [`RpcProxy`](crate::RpcProxy)
/// provider) is bound to the worker's context, so calls carry its context
/// data and extend its call-id stack.
#[derive(Clone)]
pub struct ClusterRpc {
    listener: Arc<ReplyListener>,
    context: CallContext,
    timeout: Option<Duration>,
}

#[derive(Clone)]
enum CallContext {
    /// A standalone client: its own context data and call id (one per
    /// client, as nameko 2's `ClusterRpcProxy` has), as the headers every
    /// call carries, and the trace context it calls in (from its context
    /// data's `traceparent`).
    Standalone(Headers, Option<Arc<TraceContext>>),
    /// A client inside a worker.
    Worker(WorkerCtx),
}

struct ReplyListener {
    transport: Arc<dyn Transport>,
    exchange: String,
    owner: String,
    /// The reply queue's binding key, its name: what requests carry as
    /// `reply_to`.
    routing_key: Arc<str>,
    queue: String,
    pending: Arc<Pending>,
    closed: Arc<AtomicBool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A standalone client's call id: `<owner>.call.<uuid>`.
fn standalone_call_id(owner: &str) -> String {
    let mut call_id = String::with_capacity(owner.len() + 42);
    call_id.push_str(owner);
    call_id.push_str(".call.");
    push_uuid(&mut call_id);
    call_id
}

impl CallContext {
    /// The context of a standalone client of `owner`: `data` and a call
    /// id of its own, `<owner>.call.<uuid>`.
    fn standalone(owner: &str, data: Map<String, Value>) -> Self {
        let (headers, trace) = encode_own_headers(data, standalone_call_id(owner));
        CallContext::Standalone(headers, trace)
    }

    /// The same from context data given as pairs, with no trace context.
    #[cfg(feature = "gateway")]
    fn standalone_pairs<K: AsRef<str>>(
        owner: &str,
        data: impl IntoIterator<Item = (K, Value)>,
    ) -> Self {
        let headers = crate::context::own_headers(data, standalone_call_id(owner));
        CallContext::Standalone(headers, None)
    }

    /// The headers and trace context of the calls made in this context.
    fn outgoing(&self) -> (Headers, Option<&Arc<TraceContext>>) {
        match self {
            CallContext::Worker(worker) => (worker.headers(), worker.trace()),
            CallContext::Standalone(headers, trace) => (headers.clone(), trace.as_ref()),
        }
    }
}

impl fmt::Debug for ClusterRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterRpc")
            .field("reply_queue", &self.listener.queue)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ClusterRpc`].
#[derive(Debug)]
pub struct ClusterRpcBuilder {
    transport: Arc<dyn Transport>,
    owner: String,
    exchange: String,
    context_data: Map<String, Value>,
    timeout: Option<Duration>,
    reply_queue: ReplyQueue,
}

impl ClusterRpcBuilder {
    /// The reply-queue owner: the calling service's name
    /// (`standalone_rpc_proxy` by default).
    #[must_use]
    pub fn owner(mut self, owner: &str) -> Self {
        self.owner = owner.to_owned();
        self
    }

    /// The form of the reply queue ([`ReplyQueue::Transient`] by default).
    #[must_use]
    pub fn reply_queue(mut self, form: ReplyQueue) -> Self {
        self.reply_queue = form;
        self
    }

    /// Takes the RPC exchange, the default timeout and the reply queue's
    /// form (`RPC_REPLY_QUEUE`) from settings.
    #[must_use]
    pub fn settings(mut self, settings: &Settings) -> Self {
        self.exchange = settings.rpc_exchange().to_owned();
        self.reply_queue = settings.reply_queue();
        if self.timeout.is_none() {
            self.timeout = settings.rpc_timeout();
        }
        self
    }

    /// Context data sent with every call (`user_id`, `language`, ...).
    #[must_use]
    pub fn context_data(mut self, data: Map<String, Value>) -> Self {
        self.context_data = data;
        self
    }

    /// A timeout for every call.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Declares the reply queue and starts listening.
    pub async fn connect(self) -> Result<ClusterRpc> {
        let transport = self.transport;
        let uuid = new_uuid();
        let queue = names::reply_queue(&self.owner, &uuid);
        transport
            .declare_exchange(&ExchangeSpec::topic(&self.exchange))
            .await?;
        let mut spec = QueueSpec::durable(&queue).expires_after_ms(REPLY_QUEUE_TTL_MS);
        spec.durable = self.reply_queue == ReplyQueue::Durable;
        transport.declare_queue(&spec).await?;
        transport.bind(&queue, &self.exchange, &queue).await?;
        let pending: Arc<Pending> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        // Each reply goes straight to its caller's waiter: on the embedded
        // broker, from the task that published it.
        let deliver: DeliverFn = Arc::new({
            let pending = pending.clone();
            let queue: Arc<str> = Arc::from(queue.as_str());
            move |delivery: Delivery| {
                let message = &delivery.message;
                let waiter = message
                    .properties
                    .correlation_id
                    .as_deref()
                    .and_then(|id| pending.lock().remove(id));
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(Ok(message.clone()));
                    }
                    None => tracing::debug!(
                        queue = %queue,
                        correlation_id = ?message.properties.correlation_id,
                        "reply for an unknown call dropped"
                    ),
                }
                match delivery.ack().into_ready() {
                    Ok(acked) => {
                        if let Err(err) = acked {
                            tracing::warn!(error = %err, "could not ack a reply");
                        }
                        TransportFuture::ready(())
                    }
                    Err(acking) => TransportFuture::boxed(async move {
                        if let Err(err) = acking.await {
                            tracing::warn!(error = %err, "could not ack a reply");
                        }
                    }),
                }
            }
        });
        let consuming = transport
            .consume_with(
                &queue,
                ConsumeOptions {
                    prefetch: REPLY_PREFETCH,
                    // Each reply is acked as soon as its caller has it.
                    coalesce_acks: true,
                },
                deliver,
            )
            .await?;
        let task = tokio::spawn({
            let pending = pending.clone();
            let closed = closed.clone();
            let queue = queue.clone();
            async move {
                consuming.await;
                // The consumer ended: the connection is gone or we closed.
                let lost = !closed.load(Ordering::Acquire);
                for (_, waiter) in pending.lock().drain() {
                    let _ = waiter.send(Err(if lost {
                        Error::ConnectionLost(format!(
                            "connection to the broker was lost: reply queue {queue} stopped consuming"
                        ))
                    } else {
                        Error::TransportClosed
                    }));
                }
            }
        });

        let context = CallContext::standalone(&self.owner, self.context_data);
        Ok(ClusterRpc {
            listener: Arc::new(ReplyListener {
                transport,
                exchange: self.exchange,
                owner: self.owner,
                routing_key: Arc::from(queue.as_str()),
                queue,
                pending,
                closed,
                task: Mutex::new(Some(task)),
            }),
            context,
            timeout: self.timeout,
        })
    }
}

impl ClusterRpc {
    /// A builder for a client on `transport`.
    pub fn builder(transport: Arc<dyn Transport>) -> ClusterRpcBuilder {
        ClusterRpcBuilder {
            transport,
            owner: STANDALONE_OWNER.to_owned(),
            exchange: names::DEFAULT_RPC_EXCHANGE.to_owned(),
            context_data: Map::new(),
            timeout: None,
            reply_queue: ReplyQueue::default(),
        }
    }

    /// A standalone client with the given settings.
    pub async fn connect(transport: Arc<dyn Transport>, settings: &Settings) -> Result<Self> {
        ClusterRpc::builder(transport)
            .settings(settings)
            .connect()
            .await
    }

    /// The same client with a timeout for every call.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        ClusterRpc {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// The same client with other context data (standalone calls).
    #[must_use]
    pub fn with_context_data(&self, data: Map<String, Value>) -> Self {
        ClusterRpc {
            context: CallContext::standalone(&self.listener.owner, data),
            ..self.clone()
        }
    }

    /// The same client with other context data, given as pairs (the
    /// gateway's, of each request: no map is built for it); a trace
    /// context is given apart, with `with_trace`.
    #[cfg(feature = "gateway")]
    pub(crate) fn with_context_pairs<K: AsRef<str>>(
        &self,
        data: impl IntoIterator<Item = (K, Value)>,
    ) -> Self {
        ClusterRpc {
            context: CallContext::standalone_pairs(&self.listener.owner, data),
            ..self.clone()
        }
    }

    /// The same client with its calls in trace `trace` (the gateway's
    /// request's, when there is one), whatever its context data said.
    #[cfg(feature = "gateway")]
    pub(crate) fn with_trace(mut self, trace: Option<Arc<TraceContext>>) -> Self {
        if let (Some(trace), CallContext::Standalone(_, own)) = (trace, &mut self.context) {
            *own = Some(trace);
        }
        self
    }

    /// The same client, calling on behalf of a worker: calls carry the
    /// worker's context data and call-id stack.
    #[must_use]
    pub fn bind(&self, worker: &WorkerCtx) -> Self {
        ClusterRpc {
            context: CallContext::Worker(worker.clone()),
            ..self.clone()
        }
    }

    /// The name of the reply queue.
    pub fn reply_queue(&self) -> &str {
        &self.listener.queue
    }

    /// Calls `service.method` with positional and keyword arguments.
    pub async fn call(
        &self,
        service: &str,
        method: &str,
        args: Value,
        kwargs: Map<String, Value>,
    ) -> Result<Value> {
        let args = match args {
            Value::Null => Value::Array(vec![]),
            array @ Value::Array(_) => array,
            other => Value::Array(vec![other]),
        };
        let body = crate::message::encode_request(&args, &kwargs);
        self.call_decoded(service, method, body, |raw| {
            Ok(serde_json::from_str(raw.get())?)
        })
        .await
    }

    /// Calls `service.method` with positional arguments serialised from
    /// `args` (a tuple or array), decoding the result as `R`.
    pub async fn call_typed<A, R>(&self, service: &str, method: &str, args: &A) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let body = crate::message::positional_request(args)?;
        self.call_decoded(service, method, body, |raw| {
            Ok(serde_json::from_str(raw.get())?)
        })
        .await
    }

    /// A handle for dynamic calls to one service.
    pub fn service(&self, name: &str) -> ServiceProxy {
        ServiceProxy {
            rpc: self.clone(),
            service: name.to_owned(),
        }
    }

    /// Calls `service.method` with an encoded request body
    /// (`{"args": [...], "kwargs": {...}}`), returning the encoded result.
    pub async fn call_raw(
        &self,
        service: &str,
        method: &str,
        body: Vec<u8>,
    ) -> Result<Box<RawValue>> {
        self.call_decoded(service, method, body, |raw| Ok(raw.to_owned()))
            .await
    }

    /// Calls `service.method` with an encoded request body and decodes the
    /// result, borrowed from the reply, with `decode`.
    async fn call_decoded<R>(
        &self,
        service: &str,
        method: &str,
        body: Vec<u8>,
        decode: impl FnOnce(&RawValue) -> Result<R>,
    ) -> Result<R> {
        let reply = self.request(service, method, body).await?;
        let result = ReplyBody::decode(&reply.body)
            .map_err(|err| {
                Error::Transport(format!("malformed reply from {service}.{method}: {err}"))
            })?
            .map_err(Error::Remote)?;
        decode(result)
    }

    /// Publishes a request and waits for the reply.
    async fn request(&self, service: &str, method: &str, body: Vec<u8>) -> Result<Arc<Message>> {
        let listener = &self.listener;
        if listener.closed.load(Ordering::Acquire) {
            return Err(Error::TransportClosed);
        }
        let correlation_id = new_shared_uuid();
        let (tx, rx) = oneshot::channel();
        listener.pending.lock().insert(correlation_id.clone(), tx);
        let _guard = PendingGuard {
            pending: &listener.pending,
            id: &correlation_id,
        };

        let routing_key = names::RoutingKey::rpc(service, method);
        let routing_key = routing_key.as_str();
        let (headers, carried) = self.context.outgoing();
        let (trace, _span) =
            crate::telemetry::publish_span(&listener.exchange, routing_key, carried);
        let message = Message::json(body)
            .with_headers(headers)
            .with_trace(trace)
            .with_correlation_id(correlation_id.clone())
            .with_reply_to(listener.routing_key.clone())
            // Not done if nobody waits for it any more: the broker drops a
            // request still queued when its caller gives up.
            .with_expiration(self.timeout);
        let timed_out = |timeout| Error::RpcTimeout {
            service: service.to_owned(),
            method: method.to_owned(),
            timeout,
        };
        // One deadline for the whole call: publishing (and its confirm) can
        // hang too when the network goes silent.
        let deadline = self
            .timeout
            .map(|timeout| (tokio::time::Instant::now() + timeout, timeout));
        let publish = listener.transport.publish(
            &listener.exchange,
            routing_key,
            message,
            PublishOptions { mandatory: true },
        );
        let published = match deadline {
            Some((at, timeout)) => tokio::time::timeout_at(at, publish)
                .await
                .map_err(|_| timed_out(timeout))?,
            None => publish.await,
        };
        published.map_err(|err| match err {
            Error::Unroutable { .. } => Error::UnknownService(service.to_owned()),
            other => other,
        })?;

        let reply = match deadline {
            Some((at, timeout)) => tokio::time::timeout_at(at, rx)
                .await
                .map_err(|_| timed_out(timeout))?,
            None => rx.await,
        };
        reply.unwrap_or(Err(Error::TransportClosed))
    }

    /// Stops listening for replies; pending calls fail. The reply queue
    /// itself expires on the broker after five minutes, as in nameko.
    pub async fn close(&self) {
        self.listener.closed.store(true, Ordering::Release);
        let task = self.listener.task.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        for (_, waiter) in self.listener.pending.lock().drain() {
            let _ = waiter.send(Err(Error::TransportClosed));
        }
    }
}

impl AsRef<ClusterRpc> for ClusterRpc {
    fn as_ref(&self) -> &ClusterRpc {
        self
    }
}

impl Drop for ReplyListener {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

/// Removes a call from the pending table when the caller stops waiting.
struct PendingGuard<'a> {
    pending: &'a Pending,
    id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(self.id);
    }
}

/// Dynamic calls to one service: `rpc.service("greeter").call("hello", ...)`.
#[derive(Debug, Clone)]
pub struct ServiceProxy {
    rpc: ClusterRpc,
    service: String,
}

impl ServiceProxy {
    /// Calls a method with positional arguments.
    pub async fn call(&self, method: &str, args: Value) -> Result<Value> {
        self.rpc.call(&self.service, method, args, Map::new()).await
    }

    /// Calls a method with keyword arguments.
    pub async fn call_kwargs(&self, method: &str, kwargs: Map<String, Value>) -> Result<Value> {
        self.rpc
            .call(&self.service, method, Value::Array(vec![]), kwargs)
            .await
    }
}

// ===== events =====

/// Publishes events as a given source service (nameko's standalone
/// `event_dispatcher`): `<service>.events` exchange, routing key = event
/// type, body = the payload itself.
///
/// Unlike nameko's standalone dispatcher, it declares the exchange first
/// (unless `DECLARE_EVENT_EXCHANGES` is false), so dispatching from a
/// source that never ran does not fail with a 404.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    transport: Arc<dyn Transport>,
    settings: Settings,
    /// The event exchanges declared so far, by source (a declaration is a
    /// broker round trip; the transport redeclares them after a
    /// reconnection). At most [`DECLARED_SOURCES`] are remembered.
    declared: Arc<Mutex<HashMap<String, Arc<str>, foldhash::fast::RandomState>>>,
}

/// The most sources an [`EventPublisher`] remembers having declared the
/// exchange of; it declares others on every dispatch.
pub const DECLARED_SOURCES: usize = 1024;

impl EventPublisher {
    /// A publisher on `transport`.
    pub fn new(transport: Arc<dyn Transport>, settings: &Settings) -> Self {
        EventPublisher {
            transport,
            settings: settings.clone(),
            declared: Arc::default(),
        }
    }

    /// `<source>.events`, if it was declared already.
    fn declared(&self, source: &str) -> Option<Arc<str>> {
        self.declared.lock().get(source).cloned()
    }

    /// `<source>.events`, declared once (per settings).
    async fn exchange(&self, source: &str) -> Result<Arc<str>> {
        if let Some(exchange) = self.declared(source) {
            return Ok(exchange);
        }
        let exchange: Arc<str> = names::event_exchange(source).into();
        declare_event_exchange(&self.transport, &self.settings, &exchange).await?;
        let mut declared = self.declared.lock();
        if declared.len() < DECLARED_SOURCES {
            declared.insert(source.to_owned(), exchange.clone());
        }
        Ok(exchange)
    }

    /// Dispatches `event_type` from `source` with no context headers.
    pub async fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: &impl Serialize,
    ) -> Result<()> {
        // Looked up without a wait first: declared, it is almost always.
        let exchange = match self.declared(source) {
            Some(exchange) => exchange,
            None => self.exchange(source).await?,
        };
        let published = {
            let (_span, publishing) = self.publish(&exchange, event_type, payload)?;
            publishing.await
        };
        match published {
            // Gone since (an auto-delete exchange loses its last binding):
            // declared again, and published once more.
            Err(Error::ExchangeNotFound(_)) if self.settings.declare_event_exchanges() => {
                self.declared.lock().remove(source);
                let exchange = self.exchange(source).await?;
                let (_span, publishing) = self.publish(&exchange, event_type, payload)?;
                publishing.await
            }
            other => other,
        }
    }

    /// Encodes the event and starts publishing it (no future of its own
    /// around the transport's), in its publish span: kept until published.
    fn publish<'a>(
        &'a self,
        exchange: &'a str,
        event_type: &'a str,
        payload: &impl Serialize,
    ) -> Result<(
        crate::telemetry::MessagingSpan,
        TransportFuture<'a, Result<()>>,
    )> {
        let body = crate::message::json_body(payload)?;
        let (trace, span) = crate::telemetry::publish_span(exchange, event_type, None);
        let mut message = Message::json(body);
        message.properties.trace = trace;
        let publishing =
            self.transport
                .publish(exchange, event_type, message, PublishOptions::default());
        Ok((span, publishing))
    }
}

/// Declares an event exchange with the flags the settings ask for.
pub(crate) async fn declare_event_exchange(
    transport: &Arc<dyn Transport>,
    settings: &Settings,
    exchange: &str,
) -> Result<()> {
    if settings.declare_event_exchanges() {
        let spec = ExchangeSpec {
            name: exchange.to_owned(),
            durable: true,
            auto_delete: settings.auto_delete_event_exchanges(),
        };
        transport.declare_exchange(&spec).await?;
    }
    Ok(())
}
