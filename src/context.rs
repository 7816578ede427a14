//! Worker context: the call-id stack and the context data that travel with
//! every RPC call and event (`nameko-wire.md` §2).
//!
//! Every worker gets a [`WorkerCtx`]. Its call id is
//! `<service>.<method>.<uuid4>`, pushed onto the stack it received (keeping
//! at most `parent_calls_tracked + 1` entries). Context data (`user_id`,
//! `language`, `auth_token`, any other key) arrives as `nameko.<key>`
//! headers and is passed on, unchanged, to the calls and events the worker
//! makes. The W3C trace context is read as context data too (`traceparent`,
//! `tracestate`), but messages carry it apart, as a typed field
//! ([`WorkerCtx::trace`], [`crate::trace_context`]).
//!
//! A worker reads what it received only when it needs it: its call id, its
//! stack, its context data and the headers of the calls it makes are made
//! the first time they are asked for (a worker that makes no call and logs
//! nothing pays for none of them), from the message's [`Headers`], which it
//! shares rather than copies ([`Incoming`]).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::error::RemoteError;
use crate::message::{Headers, Properties};
use crate::names::{HEADER_PREFIX, TRACEPARENT, TRACESTATE};
use crate::trace_context::{TraceContext, is_trace_key};

/// The context-data key of the call-id stack.
pub const CALL_ID_STACK: &str = "call_id_stack";
/// The default `parent_calls_tracked`.
pub const DEFAULT_PARENT_CALLS_TRACKED: usize = 10;

/// Moved to [`crate::container_ctx::ContainerCtx`].
#[deprecated(since = "0.1.0", note = "use `enoki::ContainerCtx`")]
pub type ContainerCtx = crate::container_ctx::ContainerCtx;

/// Context data: every key except the call-id stack, plus the stack itself.
///
/// Decoded from headers the way nameko does: **every** header is taken, a
/// leading `nameko.` is stripped, other headers are kept as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextData {
    /// Context keys and values, without `call_id_stack`.
    pub data: Map<String, Value>,
    /// The call-id stack received (the parent calls).
    pub call_id_stack: Vec<String>,
}

impl ContextData {
    /// Context data with the given keys and an empty stack.
    pub fn new(data: Map<String, Value>) -> Self {
        ContextData {
            data,
            call_id_stack: Vec::new(),
        }
    }

    /// Decodes context data from message headers. A `nameko.call_id_stack`
    /// that is not an array of strings is a `MalformedRequest` (nameko would
    /// split a string into characters).
    pub fn from_headers(headers: &Headers) -> Result<Self, RemoteError> {
        let mut context = ContextData::default();
        for (key, value) in headers {
            let key = key.strip_prefix(HEADER_PREFIX).unwrap_or(key);
            if key == CALL_ID_STACK {
                context.call_id_stack = parse_stack(value)?;
            } else if !value.is_null() {
                context.data.insert(key.to_owned(), value.clone());
            }
        }
        Ok(context)
    }
}

/// Checks, without copying anything, that headers would decode as context
/// data ([`ContextData::from_headers`] would succeed): a request whose
/// `nameko.call_id_stack` is malformed is refused before any worker runs.
pub fn check_headers(headers: &Headers) -> Result<(), RemoteError> {
    // As `from_headers`, the last of `call_id_stack` and
    // `nameko.call_id_stack` (in the table's order) is the one that counts.
    let stack = headers
        .iter()
        .rev()
        .find(|(key, _)| key.strip_prefix(HEADER_PREFIX).unwrap_or(key) == CALL_ID_STACK)
        .map(|(_, value)| value);
    match stack {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(value) => Err(malformed_stack(value)),
    }
}

fn malformed_stack(value: &Value) -> RemoteError {
    RemoteError::malformed_request(format!(
        "`{HEADER_PREFIX}{CALL_ID_STACK}` header must be an array of strings, got {value}"
    ))
}

fn parse_stack(value: &Value) -> Result<Vec<String>, RemoteError> {
    let malformed = || malformed_stack(value);
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(malformed))
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(malformed()),
    }
}

/// `nameko.<key>`.
fn prefixed(key: &str) -> String {
    let mut name = String::with_capacity(HEADER_PREFIX.len() + key.len());
    name.push_str(HEADER_PREFIX);
    name.push_str(key);
    name
}

/// Adds context data `key` to `headers` as `nameko.<key>`; the W3C trace
/// context also as its bare header, as each call carries it.
fn insert_data(headers: &mut Map<String, Value>, key: &str, value: Value) {
    if key == TRACEPARENT || key == TRACESTATE {
        headers.insert(key.to_owned(), value.clone());
    }
    headers.insert(prefixed(key), value);
}

/// Encodes context data and a one-call call-id stack as `nameko.*`
/// headers, moving what it is given (a standalone client's context); the
/// trace context in it (`traceparent`, `tracestate`) is returned apart, as
/// messages carry it.
pub(crate) fn encode_own_headers(
    data: Map<String, Value>,
    call_id: String,
) -> (Headers, Option<Arc<TraceContext>>) {
    let trace = TraceContext::from_headers(&data).map(Arc::new);
    let data = data.into_iter().filter(|(key, _)| !is_trace_key(key));
    (own_headers(data, call_id), trace)
}

/// Encodes context data (without a trace context: that goes in the
/// message's own field) and a one-call call-id stack as `nameko.*`
/// headers, with no map of the data built first.
pub(crate) fn own_headers<K: AsRef<str>>(
    data: impl IntoIterator<Item = (K, Value)>,
    call_id: String,
) -> Headers {
    let mut headers = Headers::new();
    for (key, value) in data {
        if !value.is_null() {
            headers.insert(prefixed(key.as_ref()), value);
        }
    }
    headers.insert(
        prefixed(CALL_ID_STACK),
        Value::Array(vec![Value::String(call_id)]),
    );
    headers
}

/// Encodes context data and a call-id stack as `nameko.*` headers; the
/// trace context in it (`traceparent`, `tracestate`) both as context data
/// and as the bare headers, as it goes on the wire.
pub fn encode_headers(data: &Map<String, Value>, call_id_stack: &[String]) -> Headers {
    let mut headers = Headers::new();
    for (key, value) in data {
        if !value.is_null() {
            insert_data(&mut headers, key, value.clone());
        }
    }
    headers.insert(
        prefixed(CALL_ID_STACK),
        Value::Array(call_id_stack.iter().cloned().map(Value::String).collect()),
    );
    headers
}

/// A fresh uuid4, as nameko's `new_call_id()`.
pub(crate) fn new_uuid() -> String {
    let mut id = String::with_capacity(36);
    push_uuid(&mut id);
    id
}

/// A fresh uuid4 in a shared string (one allocation: a correlation id the
/// pending-call table and the message share).
pub(crate) fn new_shared_uuid() -> Arc<str> {
    let mut buf = uuid::Uuid::encode_buffer();
    Arc::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
}

/// Appends a fresh hyphenated uuid4, without an intermediate allocation.
pub(crate) fn push_uuid(out: &mut String) {
    let mut buf = uuid::Uuid::encode_buffer();
    out.push_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf));
}

/// The context a worker continues: the headers of the message that
/// caused it (read when first needed), or context data given as such; and
/// the message's trace context.
///
/// ```
/// use enoki::context::{ContextData, Incoming};
/// use enoki::message::Headers;
/// use serde_json::json;
///
/// let mut headers = Headers::new();
/// headers.insert("nameko.language".into(), json!("en"));
/// headers.insert(
///     "nameko.traceparent".into(),
///     json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
/// );
/// let incoming = Incoming::from(headers);
/// assert_eq!(incoming.get("language"), Some(&json!("en")));
/// assert!(incoming.trace().is_some_and(|trace| trace.sampled));
/// assert_eq!(Incoming::from(ContextData::default()).get("language"), None);
/// ```
#[derive(Debug, Clone)]
pub struct Incoming {
    source: IncomingSource,
    trace: Option<Arc<TraceContext>>,
}

#[derive(Debug, Clone)]
enum IncomingSource {
    Headers(Headers),
    Data(ContextData),
}

impl Default for Incoming {
    fn default() -> Self {
        Incoming {
            source: IncomingSource::Data(ContextData::default()),
            trace: None,
        }
    }
}

impl From<Headers> for Incoming {
    /// A message's headers, as received: they should have passed
    /// [`check_headers`] (a malformed call-id stack reads as none). The
    /// trace context is read from them.
    fn from(headers: Headers) -> Self {
        Incoming {
            trace: TraceContext::from_headers(&headers).map(Arc::new),
            source: IncomingSource::Headers(headers),
        }
    }
}

impl From<ContextData> for Incoming {
    /// Context data; its `traceparent` and `tracestate` are the trace
    /// context.
    fn from(data: ContextData) -> Self {
        Incoming {
            trace: TraceContext::from_headers(&data.data).map(Arc::new),
            source: IncomingSource::Data(data),
        }
    }
}

impl Incoming {
    /// The context of a message with these properties: its headers
    /// (shared, not copied) and its trace context
    /// ([`Properties::trace`]: a transport that reads messages off a wire
    /// has taken it out of their headers).
    pub fn from_properties(properties: &Properties) -> Self {
        Incoming {
            trace: properties.trace.clone(),
            source: IncomingSource::Headers(properties.headers.clone()),
        }
    }

    /// The trace context it continues, if any.
    pub fn trace(&self) -> Option<&Arc<TraceContext>> {
        self.trace.as_ref()
    }

    /// One context-data value (`user_id`, `language`, ...), without
    /// decoding the rest: from headers, `nameko.<key>` (or a bare `<key>`,
    /// as nameko reads every header). Not the trace context: see
    /// [`trace`](Self::trace).
    pub fn get(&self, key: &str) -> Option<&Value> {
        if key == CALL_ID_STACK || is_trace_key(key) {
            // Not context data of its own: the stack, the trace.
            return None;
        }
        match &self.source {
            IncomingSource::Data(data) => data.data.get(key),
            IncomingSource::Headers(headers) => headers
                .iter()
                .rev()
                .find(|(name, value)| {
                    name.strip_prefix(HEADER_PREFIX).unwrap_or(name) == key && !value.is_null()
                })
                .map(|(_, value)| value),
        }
    }

    /// The call-id stack it carries (none if it is malformed).
    fn stack(&self) -> Vec<String> {
        match &self.source {
            IncomingSource::Data(data) => data.call_id_stack.clone(),
            IncomingSource::Headers(headers) => headers
                .iter()
                .rev()
                .find(|(key, _)| key.strip_prefix(HEADER_PREFIX).unwrap_or(key) == CALL_ID_STACK)
                .and_then(|(_, value)| parse_stack(value).ok())
                .unwrap_or_default(),
        }
    }

    /// The context data it carries, decoded from headers, with the trace
    /// context as `traceparent` and `tracestate`.
    fn decode_data(headers: &Headers, trace: Option<&Arc<TraceContext>>) -> Map<String, Value> {
        let mut data = Map::new();
        for (key, value) in headers {
            let key = key.strip_prefix(HEADER_PREFIX).unwrap_or(key);
            if key != CALL_ID_STACK && !value.is_null() && !is_trace_key(key) {
                data.insert(key.to_owned(), value.clone());
            }
        }
        if let Some(trace) = trace {
            trace.add_to_data(&mut data);
        }
        data
    }

    /// The headers of the calls and events made in this context: its
    /// context data (without the trace context, which messages carry
    /// apart) and `call_id_stack`.
    fn encode_outgoing(&self, call_id_stack: &[String]) -> Headers {
        let mut out = Headers::new();
        let mut add = |key: &str, value: &Value| {
            if key != CALL_ID_STACK && !value.is_null() && !is_trace_key(key) {
                out.insert(prefixed(key), value.clone());
            }
        };
        match &self.source {
            IncomingSource::Data(data) => {
                data.data.iter().for_each(|(key, value)| add(key, value));
            }
            IncomingSource::Headers(headers) => {
                for (key, value) in headers.iter() {
                    add(key.strip_prefix(HEADER_PREFIX).unwrap_or(key), value);
                }
            }
        }
        out.insert(
            prefixed(CALL_ID_STACK),
            Value::Array(call_id_stack.iter().cloned().map(Value::String).collect()),
        );
        out
    }
}

/// The context of one worker: who is running, on whose behalf, with what
/// context data. Cheap to clone.
///
/// ```
/// use enoki::context::{ContextData, WorkerCtx};
/// use serde_json::json;
///
/// let mut incoming = ContextData::default();
/// incoming.data.insert("user_id".into(), json!(42));
/// incoming.call_id_stack.push("standalone_rpc_proxy.call.1".into());
///
/// let ctx = WorkerCtx::new("greeter", "hello", incoming, 10);
/// assert!(ctx.call_id().starts_with("greeter.hello."));
/// assert_eq!(ctx.call_id_stack().len(), 2);
/// assert_eq!(ctx.user_id(), Some(&json!(42)));
/// assert_eq!(ctx.origin_call_id(), Some("standalone_rpc_proxy.call.1"));
/// ```
#[derive(Clone, Debug)]
pub struct WorkerCtx {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service_name: Cow<'static, str>,
    entrypoint: Cow<'static, str>,
    incoming: Incoming,
    parent_calls_tracked: usize,
    /// The parents kept, then this worker's call id: made when first asked
    /// for.
    call_id_stack: OnceLock<Vec<String>>,
    /// Context data read from headers, when first asked for.
    data: OnceLock<Map<String, Value>>,
    /// The headers of the calls and events this worker makes, built once.
    outgoing: OnceLock<Headers>,
    cancel: Arc<CancellationToken>,
}

impl WorkerCtx {
    /// A worker context for `service.entrypoint`, continuing the incoming
    /// context.
    pub fn new(
        service_name: &str,
        entrypoint: &str,
        incoming: impl Into<Incoming>,
        parent_calls_tracked: usize,
    ) -> Self {
        WorkerCtx::with_cancel(
            Cow::Owned(service_name.to_owned()),
            Cow::Owned(entrypoint.to_owned()),
            incoming.into(),
            parent_calls_tracked,
            Arc::default(),
        )
    }

    pub(crate) fn with_cancel(
        service_name: Cow<'static, str>,
        entrypoint: Cow<'static, str>,
        incoming: Incoming,
        parent_calls_tracked: usize,
        cancel: Arc<CancellationToken>,
    ) -> Self {
        WorkerCtx {
            inner: Arc::new(Inner {
                service_name,
                entrypoint,
                incoming,
                parent_calls_tracked,
                call_id_stack: OnceLock::new(),
                data: OnceLock::new(),
                outgoing: OnceLock::new(),
                cancel,
            }),
        }
    }

    /// The service this worker belongs to.
    pub fn service_name(&self) -> &str {
        &self.inner.service_name
    }

    /// The entrypoint method this worker runs.
    pub fn entrypoint(&self) -> &str {
        &self.inner.entrypoint
    }

    /// This worker's call id: `<service>.<method>.<uuid4>`.
    pub fn call_id(&self) -> &str {
        self.call_id_stack()
            .last()
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The call-id stack: the parent calls, then this worker's call id.
    pub fn call_id_stack(&self) -> &[String] {
        self.inner.call_id_stack.get_or_init(|| {
            let inner = &self.inner;
            let mut stack = inner.incoming.stack();
            let keep = inner.parent_calls_tracked;
            if stack.len() > keep {
                stack.drain(..stack.len() - keep);
            }
            let (service, entrypoint) = (&inner.service_name, &inner.entrypoint);
            let mut call_id = String::with_capacity(service.len() + entrypoint.len() + 38);
            call_id.push_str(service);
            call_id.push('.');
            call_id.push_str(entrypoint);
            call_id.push('.');
            push_uuid(&mut call_id);
            stack.push(call_id);
            stack
        })
    }

    /// The first call of the chain, if this worker has a parent.
    pub fn origin_call_id(&self) -> Option<&str> {
        let stack = self.call_id_stack();
        (stack.len() > 1).then(|| stack[0].as_str())
    }

    /// The call that caused this worker, if any.
    pub fn immediate_parent_call_id(&self) -> Option<&str> {
        let stack = self.call_id_stack();
        (stack.len() > 1).then(|| stack[stack.len() - 2].as_str())
    }

    /// All context data (without the call-id stack), with the trace
    /// context as `traceparent` and `tracestate` (as a Python nameko
    /// worker sees it).
    pub fn context_data(&self) -> &Map<String, Value> {
        let incoming = &self.inner.incoming;
        match &incoming.source {
            IncomingSource::Data(data) => &data.data,
            IncomingSource::Headers(headers) => self
                .inner
                .data
                .get_or_init(|| Incoming::decode_data(headers, incoming.trace())),
        }
    }

    /// One context-data value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        if is_trace_key(key) {
            return self.context_data().get(key);
        }
        self.inner.incoming.get(key)
    }

    /// The W3C trace context of the message this worker handles, if it
    /// carried a valid one: what the calls and events it makes carry on
    /// (see [`trace_context`](crate::trace_context)).
    pub fn trace(&self) -> Option<&Arc<TraceContext>> {
        self.inner.incoming.trace()
    }

    /// `user_id` context data (nameko's `UserId`).
    pub fn user_id(&self) -> Option<&Value> {
        self.get("user_id")
    }

    /// `language` context data (nameko's `Language`), if it is a string.
    pub fn language(&self) -> Option<&str> {
        self.get("language").and_then(Value::as_str)
    }

    /// `auth_token` context data (nameko's `AuthToken`), if it is a string.
    pub fn auth_token(&self) -> Option<&str> {
        self.get("auth_token").and_then(Value::as_str)
    }

    /// `user_agent` context data (nameko's `UserAgent`), if it is a string.
    pub fn user_agent(&self) -> Option<&str> {
        self.get("user_agent").and_then(Value::as_str)
    }

    /// The headers that calls and events made by this worker carry (built
    /// once, then shared by every call it makes): its context data and its
    /// call-id stack. The trace context is not among them: messages carry
    /// it apart ([`trace`](Self::trace)).
    pub fn headers(&self) -> Headers {
        self.inner
            .outgoing
            .get_or_init(|| self.inner.incoming.encode_outgoing(self.call_id_stack()))
            .clone()
    }

    /// Context data to continue from in a call made by this worker.
    pub fn outgoing(&self) -> ContextData {
        ContextData {
            data: self.context_data().clone(),
            call_id_stack: self.call_id_stack().to_vec(),
        }
    }

    /// The context this worker continues, as it received it.
    pub fn incoming(&self) -> &Incoming {
        &self.inner.incoming
    }

    /// Whether the container is being killed; long-running workers should
    /// check this and return early.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Resolves when the container is being killed.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_headers_like_nameko() {
        let headers: Headers = serde_json::from_value(json!({
            "nameko.language": "en-gb",
            "nameko.user_id": 42,
            "nameko.call_id_stack": ["standalone_rpc_proxy.call.1", "greeter.emit.2"],
            "x-foo": "bar"
        }))
        .unwrap();
        let ctx = ContextData::from_headers(&headers).unwrap();
        assert_eq!(
            ctx.call_id_stack,
            vec!["standalone_rpc_proxy.call.1", "greeter.emit.2"]
        );
        assert_eq!(ctx.data["language"], "en-gb");
        assert_eq!(ctx.data["user_id"], 42);
        // Unprefixed headers are kept verbatim and re-prefixed downstream.
        assert_eq!(ctx.data["x-foo"], "bar");
        let out = encode_headers(&ctx.data, &ctx.call_id_stack);
        assert_eq!(out["nameko.x-foo"], "bar");
    }

    #[test]
    fn a_worker_reads_from_headers_what_from_headers_decodes() {
        let headers: Headers = serde_json::from_value(json!({
            "nameko.user_id": 1,
            "user_id": null,
            "language": "en",
            "nameko.language": "fr",
            "call_id_stack": ["a"],
            "nameko.call_id_stack": ["b", "c"],
            "x-gone": null,
            "x-kept": true,
        }))
        .unwrap();
        check_headers(&headers).unwrap();
        let decoded = ContextData::from_headers(&headers).unwrap();
        let lazy = WorkerCtx::new("svc", "m", headers.clone(), 10);
        let eager = WorkerCtx::new("svc", "m", decoded, 10);
        assert_eq!(lazy.context_data(), eager.context_data());
        for key in ["user_id", "language", "x-gone", "x-kept", "call_id_stack"] {
            assert_eq!(lazy.get(key), eager.get(key), "{key}");
        }
        assert_eq!(lazy.user_id(), Some(&json!(1)));
        assert_eq!(lazy.language(), Some("fr"));
        assert_eq!(lazy.call_id_stack()[..2], ["b", "c"]);
        assert_eq!(lazy.call_id_stack()[..2], eager.call_id_stack()[..2]);
        assert!(lazy.call_id().starts_with("svc.m."));
        // The call id is made once.
        assert_eq!(lazy.call_id(), lazy.call_id_stack()[2]);
        let out = lazy.headers();
        assert_eq!(out["nameko.call_id_stack"][2], lazy.call_id());
        assert_eq!(out["nameko.x-kept"], true);
    }

    const TRACEPARENT_01: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn encoded_headers_carry_the_trace_context_as_context_data_and_as_bare_headers() {
        let mut data = Map::new();
        data.insert("traceparent".into(), json!(TRACEPARENT_01));
        data.insert("tracestate".into(), json!("a=b"));
        data.insert("language".into(), json!("en"));
        let headers = encode_headers(&data, &["a.b.c".to_owned()]);
        assert_eq!(headers["nameko.traceparent"], TRACEPARENT_01);
        assert_eq!(headers["traceparent"], TRACEPARENT_01);
        assert_eq!(headers["nameko.tracestate"], "a=b");
        assert_eq!(headers["tracestate"], "a=b");
        assert_eq!(headers["nameko.language"], "en");
        assert!(!headers.contains_key("language"));
        assert_eq!(headers.len(), 6, "{headers:?}");
        // A client's own headers leave it to the message's trace field.
        let (own, trace) = encode_own_headers(data, "a.b.c".to_owned());
        assert_eq!(own.len(), 2, "{own:?}");
        assert_eq!(own["nameko.language"], "en");
        let trace = trace.expect("the trace context");
        assert_eq!(trace.traceparent(), TRACEPARENT_01);
        assert_eq!(trace.tracestate(), Some("a=b"));
    }

    #[test]
    fn a_worker_sees_its_trace_context_as_context_data_and_passes_it_on_apart() {
        let trace = TraceContext::parse(TRACEPARENT_01, Some("a=b")).map(Arc::new);
        let mut message = crate::message::Message::json("{}").with_trace(trace);
        message
            .properties
            .headers
            .insert("nameko.language".into(), json!("en"));
        let worker = WorkerCtx::new(
            "svc",
            "m",
            Incoming::from_properties(&message.properties),
            10,
        );
        assert_eq!(worker.trace(), message.properties.trace.as_ref());
        assert_eq!(worker.get("traceparent"), Some(&json!(TRACEPARENT_01)));
        assert_eq!(worker.get("tracestate"), Some(&json!("a=b")));
        assert_eq!(worker.incoming().get("traceparent"), None);
        assert_eq!(
            Value::Object(worker.context_data().clone()),
            json!({ "language": "en", "traceparent": TRACEPARENT_01, "tracestate": "a=b" })
        );
        let out = worker.headers();
        assert_eq!(out.len(), 2, "context data and the stack only: {out:?}");
        assert_eq!(out["nameko.language"], "en");
        // Context data handed on (to a client of its own) keeps it.
        let outgoing = Incoming::from(worker.outgoing());
        assert_eq!(outgoing.trace(), worker.trace());

        // Headers given as such (a custom entrypoint's) are read.
        let mut headers = Headers::new();
        headers.insert("traceparent".into(), json!(TRACEPARENT_01));
        headers.insert("nameko.x".into(), json!(1));
        let worker = WorkerCtx::new("svc", "m", headers, 10);
        assert!(worker.trace().is_some_and(|trace| trace.sampled));
        assert_eq!(worker.headers().len(), 2);
        assert_eq!(worker.context_data().len(), 2);
    }

    #[test]
    fn rejects_a_stack_that_is_not_an_array_of_strings() {
        for bad in [json!("abc"), json!([1, 2]), json!({"a": 1})] {
            let mut headers = Headers::new();
            headers.insert("nameko.call_id_stack".into(), bad);
            let err = ContextData::from_headers(&headers).unwrap_err();
            assert_eq!(err.exc_type, "MalformedRequest");
            let err = check_headers(&headers).unwrap_err();
            assert_eq!(err.exc_type, "MalformedRequest");
        }
    }

    #[test]
    fn stack_is_bounded_by_parent_calls_tracked() {
        let incoming = ContextData {
            data: Map::new(),
            call_id_stack: (0..15).map(|i| format!("svc.m.{i}")).collect(),
        };
        let ctx = WorkerCtx::new("greeter", "hello", incoming, 10);
        assert_eq!(ctx.call_id_stack().len(), 11);
        assert_eq!(ctx.call_id_stack()[0], "svc.m.5");
        assert_eq!(ctx.immediate_parent_call_id(), Some("svc.m.14"));
        assert!(ctx.call_id().starts_with("greeter.hello."));
    }
}
