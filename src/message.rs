//! The wire envelope: [`Message`] and its [`Properties`], and the JSON
//! bodies of requests and replies (`nameko-wire.md` §0, §2).
//!
//! This module is the "frame" of enoki (mini-redis's `frame.rs` role): every
//! byte a transport carries is built or read here. The names of exchanges,
//! queues and headers are nameko's rules, in [`crate::names`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::error::RemoteError;
use crate::outcome::Outcome;
use crate::trace_context::TraceContext;

/// The AMQP headers table of a message (and a queue's arguments). Values
/// are JSON values; a transport maps them onto AMQP field types (strings →
/// `S`, integers → `I`/`L`, arrays → `A`, objects → `F`, ...).
///
/// A `Headers` dereferences to a [`Map`]. It is shared, not copied, when
/// cloned (copied on the first change of a shared table), so a worker's
/// context headers can go out with every call it makes, and a received
/// message's headers stay with its worker, without a copy. An empty table
/// allocates nothing.
///
/// ```
/// use enoki::message::Headers;
/// use serde_json::json;
///
/// let mut headers = Headers::new();
/// headers.insert("nameko.language".into(), json!("en"));
/// let sent = headers.clone(); // shared
/// headers.insert("nameko.user_id".into(), json!(7)); // copied first
/// assert_eq!(sent.len(), 1);
/// assert_eq!(headers.len(), 2);
/// assert_eq!(headers["nameko.language"], "en");
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Headers(Option<Arc<Map<String, Value>>>);

impl Headers {
    /// An empty table (no allocation).
    pub const fn new() -> Self {
        Headers(None)
    }

    /// The table, to keep or change as a map of its own.
    pub fn into_map(self) -> Map<String, Value> {
        self.0.map(Arc::unwrap_or_clone).unwrap_or_default()
    }
}

/// The empty map every empty [`Headers`] reads as.
fn empty_map() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

impl std::ops::Deref for Headers {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        self.0.as_deref().unwrap_or_else(|| empty_map())
    }
}

impl std::ops::DerefMut for Headers {
    /// The table, copied first if it is shared.
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }
}

impl From<Map<String, Value>> for Headers {
    fn from(map: Map<String, Value>) -> Self {
        if map.is_empty() {
            Headers::new()
        } else {
            Headers(Some(Arc::new(map)))
        }
    }
}

impl FromIterator<(String, Value)> for Headers {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Headers::from(Map::from_iter(iter))
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a String, &'a Value);
    type IntoIter = serde_json::map::Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        (**self).iter()
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for Headers {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Headers::from)
    }
}

/// The content type of every message enoki publishes.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// The content encoding of every message enoki publishes.
pub const CONTENT_ENCODING_UTF8: &str = "utf-8";
/// Moved to [`crate::names::HEADER_PREFIX`].
#[deprecated(since = "0.1.0", note = "use `enoki::names::HEADER_PREFIX`")]
pub const HEADER_PREFIX: &str = crate::names::HEADER_PREFIX;
/// Moved to [`crate::names::DEFAULT_RPC_EXCHANGE`].
#[deprecated(since = "0.1.0", note = "use `enoki::names::DEFAULT_RPC_EXCHANGE`")]
pub const DEFAULT_RPC_EXCHANGE: &str = crate::names::DEFAULT_RPC_EXCHANGE;
/// Moved to [`crate::names::STANDALONE_OWNER`].
#[deprecated(since = "0.1.0", note = "use `enoki::names::STANDALONE_OWNER`")]
pub const STANDALONE_OWNER: &str = crate::names::STANDALONE_OWNER;
/// Moved to [`crate::names::REPLY_QUEUE_TTL_MS`].
#[deprecated(since = "0.1.0", note = "use `enoki::names::REPLY_QUEUE_TTL_MS`")]
pub const REPLY_QUEUE_TTL_MS: i64 = crate::names::REPLY_QUEUE_TTL_MS;

/// AMQP basic properties that nameko uses.
///
/// The strings that every message carries the same are shared rather than
/// copied: `content_type` and `content_encoding` are usually the static
/// [`CONTENT_TYPE_JSON`] and [`CONTENT_ENCODING_UTF8`], and a reply takes
/// its request's `correlation_id` (an [`Arc<str>`]) without a copy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    /// `content_type`; nameko always sends `application/json`.
    pub content_type: Option<Cow<'static, str>>,
    /// `content_encoding`; nameko always sends `utf-8`.
    pub content_encoding: Option<Cow<'static, str>>,
    /// `delivery_mode`: 2 is persistent.
    pub delivery_mode: Option<u8>,
    /// `priority`; nameko always sends 0.
    pub priority: Option<u8>,
    /// `correlation_id` of an RPC request and its reply.
    pub correlation_id: Option<Arc<str>>,
    /// `reply_to` of an RPC request: the routing key of the caller's reply
    /// queue binding (a bare uuid), not a queue name.
    pub reply_to: Option<Arc<str>>,
    /// The headers table (context data as `nameko.*`).
    pub headers: Headers,
    /// `expiration`: the broker drops the message if it is still queued
    /// this long after it was published. enoki sets it on an RPC request
    /// to its caller's timeout, so a request nobody waits for any more is
    /// never executed (nameko's `delivery_timeout`); nameko sends none.
    /// On the wire a string of milliseconds.
    pub expiration: Option<Duration>,
    /// The W3C trace context the message carries (see
    /// [`trace_context`](crate::trace_context)). On the wire it is the
    /// `traceparent` and `tracestate` headers, bare and as `nameko.`
    /// context data: the AMQP transport writes them from this field and
    /// takes them out of the headers into it. In process this field is
    /// all there is: trace headers of a message made by hand are not read
    /// there, so set this instead.
    pub trace: Option<Arc<TraceContext>>,
}

/// A `content_type` or `content_encoding` read off the wire: nameko's
/// usual values are shared, others copied.
pub fn shared_property(value: &str) -> Cow<'static, str> {
    match value {
        CONTENT_TYPE_JSON => Cow::Borrowed(CONTENT_TYPE_JSON),
        CONTENT_ENCODING_UTF8 => Cow::Borrowed(CONTENT_ENCODING_UTF8),
        other => Cow::Owned(other.to_owned()),
    }
}

/// A message as published to or delivered from a broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Basic properties and headers.
    pub properties: Properties,
    /// The raw body.
    pub body: Bytes,
}

impl Message {
    /// A JSON message with nameko's standard properties
    /// (`application/json`, `utf-8`, persistent, priority 0).
    pub fn json(body: impl Into<Bytes>) -> Self {
        Message {
            properties: Properties {
                content_type: Some(Cow::Borrowed(CONTENT_TYPE_JSON)),
                content_encoding: Some(Cow::Borrowed(CONTENT_ENCODING_UTF8)),
                delivery_mode: Some(2),
                priority: Some(0),
                ..Properties::default()
            },
            body: body.into(),
        }
    }

    /// Sets the headers.
    #[must_use]
    pub fn with_headers(mut self, headers: impl Into<Headers>) -> Self {
        self.properties.headers = headers.into();
        self
    }

    /// Sets the trace context.
    #[must_use]
    pub fn with_trace(mut self, trace: Option<Arc<TraceContext>>) -> Self {
        self.properties.trace = trace;
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.properties.correlation_id = Some(id.into());
        self
    }

    /// Sets `reply_to`.
    #[must_use]
    pub fn with_reply_to(mut self, reply_to: impl Into<Arc<str>>) -> Self {
        self.properties.reply_to = Some(reply_to.into());
        self
    }

    /// Sets `expiration`: how long the message may wait in a queue.
    #[must_use]
    pub fn with_expiration(mut self, expiration: Option<Duration>) -> Self {
        self.properties.expiration = expiration;
        self
    }
}

/// What a worker decodes its arguments from: the body of the message it
/// handles (shared with the delivery, not copied), or bytes of its own.
///
/// ```
/// use enoki::message::{Message, Payload};
/// use std::sync::Arc;
///
/// let message = Arc::new(Message::json(&b"[1, 2]"[..]));
/// assert_eq!(Payload::from(message).as_bytes(), b"[1, 2]");
/// assert_eq!(Payload::from("{}").as_bytes(), b"{}");
/// assert!(Payload::default().as_bytes().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Payload(PayloadSource);

#[derive(Debug, Clone, Default)]
enum PayloadSource {
    #[default]
    Empty,
    Bytes(Bytes),
    Message(Arc<Message>),
}

impl Payload {
    /// The bytes to decode.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            PayloadSource::Empty => &[],
            PayloadSource::Bytes(bytes) => bytes,
            PayloadSource::Message(message) => &message.body,
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Payload(PayloadSource::Bytes(bytes))
    }
}

impl From<Arc<Message>> for Payload {
    /// The message's body, without a copy.
    fn from(message: Arc<Message>) -> Self {
        Payload(PayloadSource::Message(message))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::from(Bytes::from(bytes))
    }
}

impl From<&'static [u8]> for Payload {
    fn from(bytes: &'static [u8]) -> Self {
        Payload::from(Bytes::from_static(bytes))
    }
}

impl From<&'static str> for Payload {
    fn from(text: &'static str) -> Self {
        Payload::from(Bytes::from_static(text.as_bytes()))
    }
}

/// Moved to [`crate::names`].
#[deprecated(since = "0.1.0", note = "use `enoki::names`")]
pub mod names {
    pub use crate::names::{event_exchange, reply_queue, rpc_binding, rpc_queue, rpc_routing_key};

    /// The queue of an event handler, by handler type; see
    /// [`EventHandlerSpec::queue_name`](crate::service::EventHandlerSpec::queue_name).
    pub fn event_queue(
        source: &str,
        event_type: &str,
        handler_type: crate::service::HandlerType,
        service: &str,
        method: &str,
        broadcast_identifier: &str,
    ) -> String {
        match handler_type {
            crate::service::HandlerType::ServicePool => {
                crate::names::service_pool_queue(source, event_type, service, method)
            }
            crate::service::HandlerType::Singleton => {
                crate::names::singleton_queue(source, event_type)
            }
            crate::service::HandlerType::Broadcast => crate::names::broadcast_queue(
                source,
                event_type,
                service,
                method,
                broadcast_identifier,
            ),
        }
    }
}

// ===== bodies =====

/// Positional arguments, borrowed: most calls have a few, kept inline.
pub type ArgList<'a> = SmallVec<[&'a RawValue; 4]>;
/// Keyword arguments, borrowed (a key with escapes is unescaped into its
/// own string), in the order they came.
pub type KwargList<'a> = SmallVec<[(Cow<'a, str>, &'a RawValue); 4]>;

/// The body of an RPC request, borrowed from the raw bytes:
/// `{"args": [...], "kwargs": {...}}`. Both keys are required, as in nameko.
/// Parsing a request of a few arguments allocates nothing.
#[derive(Debug)]
pub struct RequestBody<'a> {
    /// Positional arguments.
    pub args: ArgList<'a>,
    /// Keyword arguments.
    pub kwargs: KwargList<'a>,
}

impl<'a> RequestBody<'a> {
    /// Parses a request body; a body that is not a JSON object with `args`
    /// (an array) and `kwargs` (an object) is nameko's `MalformedRequest`.
    /// One pass over the body.
    pub fn parse(body: &'a [u8]) -> Result<Self, RemoteError> {
        let not_an_object = |err: &dyn std::fmt::Display| {
            RemoteError::malformed_request(format!("Request body is not a JSON object: {err}"))
        };
        // UTF-8 checked once for the whole body, not again for each raw
        // value borrowed from it.
        let text = std::str::from_utf8(body).map_err(|err| not_an_object(&err))?;
        if let Some(args) = Self::positional(text) {
            return Ok(RequestBody {
                args,
                kwargs: KwargList::new(),
            });
        }
        let top: TopLevel<'a> = serde_json::from_str(text).map_err(|err| not_an_object(&err))?;
        let (Some(args), Some(kwargs)) = (top.args, top.kwargs) else {
            return Err(RemoteError::malformed_request(
                "Message missing `args` or `kwargs`",
            ));
        };
        let Shaped::Right(args) = args else {
            return Err(RemoteError::malformed_request(
                "`args` must be a JSON array",
            ));
        };
        let Shaped::Right(kwargs) = kwargs else {
            return Err(RemoteError::malformed_request(
                "`kwargs` must be a JSON object",
            ));
        };
        Ok(RequestBody { args, kwargs })
    }
}

impl<'a> RequestBody<'a> {
    /// The arguments of a request with no keyword arguments written as
    /// enoki writes it (`{"args":[...],"kwargs":{}}`) or as nameko does
    /// (`{"args": [...], "kwargs": {}}`), read without parsing the object
    /// around them; `None` for any other body (the caller parses it in
    /// full). A body this answers for is exactly that object, so the two
    /// readings agree.
    fn positional(text: &'a str) -> Option<ArgList<'a>> {
        let args = [
            (r#"{"args":"#, r#","kwargs":{}}"#),
            (r#"{"args": "#, r#", "kwargs": {}}"#),
        ]
        .into_iter()
        .find_map(|(head, tail)| text.strip_prefix(head)?.strip_suffix(tail))?;
        match serde_json::from_str::<ArgSeq<'a>>(args) {
            Ok(ArgSeq(Shaped::Right(args))) => Some(args),
            _ => None,
        }
    }
}

/// A value of the JSON type a field must have, or a note that it was
/// another (any valid JSON): the error is the caller's to word.
enum Shaped<T> {
    Right(T),
    Wrong,
}

/// The top level of a request: `args` and `kwargs` (the first of each, if
/// a key is repeated); other keys are skipped.
struct TopLevel<'a> {
    args: Option<Shaped<ArgList<'a>>>,
    kwargs: Option<Shaped<KwargList<'a>>>,
}

/// A key of the top level, without copying it.
enum TopKey {
    Args,
    Kwargs,
    Other,
}

impl<'de> Deserialize<'de> for TopKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TopKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<TopKey, E> {
                Ok(match key {
                    "args" => TopKey::Args,
                    "kwargs" => TopKey::Kwargs,
                    _ => TopKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(Visitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for TopLevel<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = TopLevel<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut top = TopLevel {
                    args: None,
                    kwargs: None,
                };
                while let Some(key) = map.next_key::<TopKey>()? {
                    match key {
                        TopKey::Args if top.args.is_none() => {
                            top.args = Some(map.next_value::<ArgSeq<'a>>()?.0);
                        }
                        TopKey::Kwargs if top.kwargs.is_none() => {
                            top.kwargs = Some(map.next_value::<KwargMap<'a>>()?.0);
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(top)
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// The visits of every JSON type but the one a visitor wants: each is read
/// (nested values skipped) and noted as [`Shaped::Wrong`].
macro_rules! wrong_shapes {
    () => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Self::Value::WRONG)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Self::Value::WRONG)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Self::Value::WRONG)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Self::Value::WRONG)
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Self::Value::WRONG)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Self::Value::WRONG)
        }
    };
}

/// `args`: a JSON array read as borrowed raw values, or another type.
struct ArgSeq<'a>(Shaped<ArgList<'a>>);

impl ArgSeq<'_> {
    const WRONG: Self = ArgSeq(Shaped::Wrong);
}

impl<'de: 'a, 'a> Deserialize<'de> for ArgSeq<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = ArgSeq<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = ArgList::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(ArgSeq(Shaped::Right(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(ArgSeq::WRONG)
            }
            wrong_shapes!();
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// `kwargs`: a JSON object read as an ordered list of borrowed entries, or
/// another type.
struct KwargMap<'a>(Shaped<KwargList<'a>>);

impl KwargMap<'_> {
    const WRONG: Self = KwargMap(Shaped::Wrong);
}

/// A key, borrowed from the body unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for KwargMap<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = KwargMap<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = KwargList::new();
                while let Some((Key(key), value)) = map.next_entry()? {
                    entries.push((key, value));
                }
                Ok(KwargMap(Shaped::Right(entries)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(KwargMap::WRONG)
            }
            wrong_shapes!();
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// Encodes an RPC request body from already-encoded positional arguments and
/// keyword arguments.
pub fn encode_request(args: &Value, kwargs: &Map<String, Value>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        args: &'a Value,
        kwargs: &'a Map<String, Value>,
    }
    json_body(&Body { args, kwargs }).expect("JSON values always serialise")
}

/// The most a thread's scratch buffer for encoding bodies keeps between
/// messages; a larger one is let go after use.
const SCRATCH_KEPT: usize = 64 * 1024;

thread_local! {
    /// Where bodies are encoded before they are copied out at their exact
    /// size: one allocation per body, and a `Bytes` made from it needs no
    /// other.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `serde_json::to_vec`, into a buffer of exactly the body's size (encoded
/// in a per-thread scratch buffer first).
pub(crate) fn json_body<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    framed_body(b"", value, b"")
}

/// Encodes a request body with positional arguments only:
/// `{"args":[...],"kwargs":{}}`, `args` serialised from a tuple or array.
pub(crate) fn positional_request<A: Serialize + ?Sized>(args: &A) -> serde_json::Result<Vec<u8>> {
    framed_body(br#"{"args":"#, args, br#","kwargs":{}}"#)
}

/// `value` encoded between `head` and `tail`, into a buffer of exactly
/// that size (the value encoded in the per-thread scratch buffer first).
fn framed_body<T: Serialize + ?Sized>(
    head: &[u8],
    value: &T,
    tail: &[u8],
) -> serde_json::Result<Vec<u8>> {
    SCRATCH.with(|scratch| {
        // A `Serialize` impl that encodes a body of its own while being
        // encoded finds the buffer taken, and gets a fresh one.
        let Ok(mut buffer) = scratch.try_borrow_mut() else {
            let mut body = head.to_vec();
            serde_json::to_writer(&mut body, value)?;
            body.extend_from_slice(tail);
            return Ok(body);
        };
        buffer.clear();
        let encoded = serde_json::to_writer(&mut *buffer, value).map(|()| {
            let mut body = Vec::with_capacity(head.len() + buffer.len() + tail.len());
            body.extend_from_slice(head);
            body.extend_from_slice(&buffer);
            body.extend_from_slice(tail);
            body
        });
        if buffer.capacity() > SCRATCH_KEPT {
            *buffer = Vec::new();
        }
        encoded
    })
}

/// Encodes an RPC reply body: `{"result": ..., "error": ...}`.
pub fn encode_reply(outcome: &Outcome) -> Vec<u8> {
    // A result is JSON already: a success is written around it.
    if let Ok(result) = outcome {
        const HEAD: &[u8] = br#"{"result":"#;
        const TAIL: &[u8] = br#","error":null}"#;
        let result = result.get().as_bytes();
        let mut body = Vec::with_capacity(HEAD.len() + result.len() + TAIL.len());
        body.extend_from_slice(HEAD);
        body.extend_from_slice(result);
        body.extend_from_slice(TAIL);
        return body;
    }
    #[derive(Serialize)]
    struct Reply<'a> {
        result: &'a RawValue,
        error: Option<&'a RemoteError>,
    }
    let null = RawValue::NULL;
    let reply = match outcome {
        Ok(result) => Reply {
            result,
            error: None,
        },
        Err(error) => Reply {
            result: null,
            error: Some(error),
        },
    };
    json_body(&reply).expect("reply bodies always serialise")
}

/// The body of an RPC reply, borrowed from the raw bytes.
#[derive(Debug, Deserialize)]
pub struct ReplyBody<'a> {
    /// The result; `None` (or `null`) on error.
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    /// The error, if the call failed. Any non-null error means failure.
    #[serde(default)]
    pub error: Option<Value>,
}

impl<'a> ReplyBody<'a> {
    /// Decodes a reply body into the call's outcome (the result borrowed
    /// from `body`; a missing one is `null`). An `error` that is not
    /// nameko's error dictionary still fails the call, as in nameko.
    pub fn decode(body: &'a [u8]) -> Result<Result<&'a RawValue, RemoteError>, serde_json::Error> {
        // UTF-8 checked once, not again for the raw result.
        let reply: ReplyBody<'a> = match std::str::from_utf8(body) {
            Ok(text) => match Self::success(text) {
                Some(result) => return Ok(Ok(result)),
                None => serde_json::from_str(text)?,
            },
            Err(_) => serde_json::from_slice(body)?,
        };
        Ok(match reply.error {
            None | Some(Value::Null) => Ok(reply.result.unwrap_or(RawValue::NULL)),
            Some(error) => Err(serde_json::from_value::<RemoteError>(error.clone())
                .unwrap_or_else(|_| RemoteError::new("RemoteError", error.to_string()))),
        })
    }

    /// The result of a success written as enoki writes it
    /// (`{"result":...,"error":null}`) or as nameko does (`{"result": ...,
    /// "error": null}`), read without parsing the object around it; `None`
    /// for any other body (the caller parses it in full). A body this
    /// answers for is exactly that object with a valid result, so the two
    /// readings agree.
    fn success(text: &'a str) -> Option<&'a RawValue> {
        let value = [
            (r#"{"result":"#, r#","error":null}"#),
            (r#"{"result": "#, r#", "error": null}"#),
        ]
        .into_iter()
        .find_map(|(head, tail)| text.strip_prefix(head)?.strip_suffix(tail))?;
        serde_json::from_str(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positional_and_keyword_arguments() {
        let body = br#"{"args": ["Ann", 2], "kwargs": {"greeting": "Hi"}}"#;
        let request = RequestBody::parse(body).unwrap();
        assert_eq!(request.args.len(), 2);
        assert_eq!(request.args[0].get(), r#""Ann""#);
        assert_eq!(request.kwargs[0].0, "greeting");
        assert_eq!(request.kwargs[0].1.get(), r#""Hi""#);
    }

    #[test]
    fn the_positional_shortcut_reads_what_the_full_parse_reads() {
        let bodies = [
            r#"{"args":["Ann",2],"kwargs":{}}"#,
            r#"{"args": ["Ann", {"kwargs": {}}], "kwargs": {}}"#,
            r#"{"args":[],"kwargs":{}}"#,
            r#"{"args":[1],"kwargs":{},"kwargs":{}}"#,
            r#"{"args":[1],"args":[2],"kwargs":{}}"#,
            r#"{"args":{},"kwargs":{}}"#,
            r#"{"args":[1] [2],"kwargs":{}}"#,
            r#"{"args": [1 , 2] , "kwargs": {}}"#,
            r#"{"args":[1,],"kwargs":{}}"#,
        ];
        fn read<'a>(request: RequestBody<'a>) -> (Vec<&'a str>, usize) {
            let args = request.args.iter().map(|arg| arg.get()).collect();
            (args, request.kwargs.len())
        }
        for body in bodies {
            let fast = RequestBody::positional(body).map(|args| {
                let args: Vec<_> = args.iter().map(|arg| arg.get()).collect();
                (args, 0)
            });
            let full = serde_json::from_str::<TopLevel<'_>>(body)
                .ok()
                .and_then(|top| match (top.args?, top.kwargs?) {
                    (Shaped::Right(args), Shaped::Right(kwargs)) => {
                        Some(read(RequestBody { args, kwargs }))
                    }
                    _ => None,
                });
            if let Some(fast) = &fast {
                assert_eq!(Some(fast), full.as_ref(), "{body}");
            }
            let parsed = RequestBody::parse(body.as_bytes()).ok().map(read);
            assert_eq!(parsed, full, "{body}");
        }
        assert!(RequestBody::positional(bodies[0]).is_some());
        assert!(RequestBody::positional(bodies[1]).is_some());
        assert!(RequestBody::positional(bodies[2]).is_some());
    }

    #[test]
    fn rejects_malformed_requests_as_nameko_does() {
        for body in [
            &b"not json"[..],
            b"[1, 2]",
            b"{\"args\": []}",
            b"{\"kwargs\": {}}",
        ] {
            let err = RequestBody::parse(body).unwrap_err();
            assert_eq!(
                err.exc_type,
                "MalformedRequest",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let err = RequestBody::parse(br#"{"args": [], "kwargs": {}}"#.as_slice());
        assert!(err.is_ok());
        let err = RequestBody::parse(br#"{"args": {}, "kwargs": {}}"#).unwrap_err();
        assert!(err.value.contains("args"));
    }

    #[test]
    fn the_success_shortcut_reads_what_the_full_parse_reads() {
        let bodies = [
            r#"{"result":"Hello, Ann!","error":null}"#,
            r#"{"result": {"a": [1, 2]}, "error": null}"#,
            r#"{"result":{"x":1,"error":null},"error":null}"#,
            r#"{"result":1,"error":null,"error":null}"#,
            r#"{"result":1,"error":null}  "#,
            r#"{"result": 1 , "error": null}"#,
            r#"{"result":,"error":null}"#,
            r#"{"result":1 2,"error":null}"#,
            r#"{"result":null,"error":{"exc_type":"X","value":"v"}}"#,
            r#"{"result":"a","error":null"#,
        ];
        for body in bodies {
            let fast = ReplyBody::success(body).map(RawValue::get);
            let full = serde_json::from_str::<ReplyBody<'_>>(body)
                .ok()
                .filter(|reply| matches!(reply.error, None | Some(Value::Null)))
                .map(|reply| reply.result.unwrap_or(RawValue::NULL).get());
            if let Some(fast) = fast {
                assert_eq!(Some(fast), full, "{body}");
            }
            let decoded = ReplyBody::decode(body.as_bytes())
                .ok()
                .and_then(Result::ok)
                .map(RawValue::get);
            assert_eq!(decoded, full, "{body}");
        }
        assert!(ReplyBody::success(bodies[0]).is_some());
        assert!(ReplyBody::success(bodies[1]).is_some());
        assert!(ReplyBody::success(bodies[2]).is_some());
    }

    #[test]
    fn positional_requests_are_what_nameko_reads() {
        let body = positional_request(&("Ann", 2)).unwrap();
        assert_eq!(body, br#"{"args":["Ann",2],"kwargs":{}}"#);
        let request = RequestBody::parse(&body).unwrap();
        assert_eq!(request.args.len(), 2);
        assert!(request.kwargs.is_empty());
        // Encoded while the scratch buffer is taken: the same body.
        SCRATCH.with(|scratch| {
            let _taken = scratch.borrow_mut();
            assert_eq!(positional_request(&("Ann", 2)).unwrap(), body);
        });
    }

    #[test]
    fn reply_round_trip() {
        let ok = encode_reply(&Ok(serde_json::value::to_raw_value("Hello, Ann!")
            .unwrap()
            .into()));
        assert_eq!(ok, br#"{"result":"Hello, Ann!","error":null}"#);
        let decoded = ReplyBody::decode(&ok).unwrap().unwrap();
        assert_eq!(decoded.get(), r#""Hello, Ann!""#);

        let err = encode_reply(&Err(RemoteError::method_not_found("nosuch")));
        let decoded = ReplyBody::decode(&err).unwrap().unwrap_err();
        assert_eq!(decoded.exc_type, "MethodNotFound");
    }

    #[test]
    fn decodes_a_captured_nameko_reply() {
        let body = br#"{"result": null, "error": {"exc_type": "GreeterError", "exc_path": "services.GreeterError", "exc_args": ["this call always fails"], "value": "this call always fails"}}"#;
        let err = ReplyBody::decode(body).unwrap().unwrap_err();
        assert_eq!(err.exc_path, "services.GreeterError");
        assert_eq!(err.value, "this call always fails");
    }
}
