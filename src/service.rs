//! The [`Service`] trait: the only trait `#[service]` implements, and the
//! container's only call into user code.
//!
//! A service is plain data (its name and a table of [`EntrypointSpec`]s)
//! plus one `dispatch` function: decode the arguments, call the method,
//! encode the result. Spawning, acking, timers and concurrency live in the
//! container. `examples/manual_service.rs` implements it by hand.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::context::WorkerCtx;
use crate::dependency::Dependencies;
use crate::error::RemoteError;

/// What an entrypoint returns: the JSON-encoded result, or the error that
/// crosses the wire.
pub type Outcome = Result<Box<RawValue>, RemoteError>;

/// A service: a name, its entrypoints, and a dispatcher.
///
/// One instance is built per worker from the service's dependency providers
/// ([`Dependencies::inject`]), as nameko builds one instance per worker.
pub trait Service: Dependencies {
    /// The service name (`rpc-<name>` queue, `<name>.events` exchange).
    const NAME: &'static str;

    /// The entrypoints: which methods run on RPC calls, events and timers.
    fn entrypoints() -> Vec<EntrypointSpec>;

    /// Runs one entrypoint method.
    ///
    /// `payload` is the raw message body: for RPC methods the
    /// `{"args": [...], "kwargs": {...}}` request, for event handlers the
    /// event payload, for timers empty. Unknown methods answer
    /// [`RemoteError::method_not_found`]; arguments that don't fit the
    /// signature answer [`RemoteError::incorrect_signature`].
    fn dispatch<'a>(
        &'a self,
        method: &'a str,
        payload: &'a [u8],
        ctx: &'a WorkerCtx,
    ) -> BoxFuture<'a, Outcome>;
}

/// One entrypoint of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct EntrypointSpec {
    /// The method name.
    pub method: &'static str,
    /// What triggers it.
    pub kind: EntrypointKind,
}

impl EntrypointSpec {
    /// An RPC entrypoint.
    pub fn rpc(method: &'static str) -> Self {
        EntrypointSpec {
            method,
            kind: EntrypointKind::Rpc,
        }
    }

    /// An event handler entrypoint.
    pub fn event(method: &'static str, spec: EventHandlerSpec) -> Self {
        EntrypointSpec {
            method,
            kind: EntrypointKind::Event(spec),
        }
    }

    /// A timer entrypoint.
    pub fn timer(method: &'static str, spec: TimerSpec) -> Self {
        EntrypointSpec {
            method,
            kind: EntrypointKind::Timer(spec),
        }
    }
}

/// What triggers an entrypoint.
#[derive(Debug, Clone, PartialEq)]
pub enum EntrypointKind {
    /// `#[rpc]`: a request on `rpc-<service>` with routing key
    /// `<service>.<method>`.
    Rpc,
    /// `#[event_handler]`: an event from another service.
    Event(EventHandlerSpec),
    /// `#[timer]`: a periodic tick.
    Timer(TimerSpec),
}

/// How events reach a handler (nameko's `handler_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HandlerType {
    /// One copy per (service, method); instances of the service compete.
    #[default]
    ServicePool,
    /// One copy in total, shared by every singleton handler of the event.
    Singleton,
    /// One copy per service instance.
    Broadcast,
}

impl HandlerType {
    /// nameko's name: `service_pool`, `singleton` or `broadcast`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerType::ServicePool => "service_pool",
            HandlerType::Singleton => "singleton",
            HandlerType::Broadcast => "broadcast",
        }
    }
}

impl fmt::Display for HandlerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for HandlerType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "service_pool" => Ok(HandlerType::ServicePool),
            "singleton" => Ok(HandlerType::Singleton),
            "broadcast" => Ok(HandlerType::Broadcast),
            other => Err(format!(
                "unknown handler_type `{other}`: expected service_pool, singleton or broadcast"
            )),
        }
    }
}

/// The configuration of an `#[event_handler]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventHandlerSpec {
    /// The service that dispatches the event.
    pub source_service: &'static str,
    /// The event type (routing key; `*` and `#` act as wildcards).
    pub event_type: &'static str,
    /// How events reach this handler.
    pub handler_type: HandlerType,
    /// Keep the queue (and its events) while no instance runs. When false
    /// the queue is auto-delete (and exclusive for broadcast handlers).
    pub reliable_delivery: bool,
    /// Requeue the event when the handler fails (instead of dropping it).
    pub requeue_on_error: bool,
    /// A stable identifier for the broadcast queue of this instance; `None`
    /// draws a fresh uuid per container (and requires
    /// `reliable_delivery = false`, as in nameko).
    pub broadcast_identifier: Option<&'static str>,
}

impl EventHandlerSpec {
    /// A service-pool handler with reliable delivery, as nameko's defaults.
    pub fn new(source_service: &'static str, event_type: &'static str) -> Self {
        EventHandlerSpec {
            source_service,
            event_type,
            handler_type: HandlerType::ServicePool,
            reliable_delivery: true,
            requeue_on_error: false,
            broadcast_identifier: None,
        }
    }

    /// Sets the handler type. A broadcast handler without an identifier
    /// defaults to `reliable_delivery = false`.
    #[must_use]
    pub fn handler_type(mut self, handler_type: HandlerType) -> Self {
        self.handler_type = handler_type;
        if handler_type == HandlerType::Broadcast && self.broadcast_identifier.is_none() {
            self.reliable_delivery = false;
        }
        self
    }

    /// Sets `reliable_delivery`.
    #[must_use]
    pub fn reliable_delivery(mut self, reliable: bool) -> Self {
        self.reliable_delivery = reliable;
        self
    }

    /// Sets `requeue_on_error`.
    #[must_use]
    pub fn requeue_on_error(mut self, requeue: bool) -> Self {
        self.requeue_on_error = requeue;
        self
    }
}

/// The configuration of a `#[timer]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimerSpec {
    /// Time between runs.
    pub interval: Duration,
    /// Fire once at start instead of after the first interval.
    pub eager: bool,
}

impl TimerSpec {
    /// A timer firing every `interval` seconds (fractions allowed).
    pub fn every_secs(interval: f64) -> Self {
        TimerSpec {
            interval: Duration::from_secs_f64(interval),
            eager: false,
        }
    }
}

// ===== argument decoding, used by generated code =====

/// One parameter of an RPC method, for argument decoding.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// The parameter name (its keyword).
    pub name: &'static str,
    /// Whether it must be given (`Option` parameters may be left out).
    pub required: bool,
}

/// The decoded arguments of one RPC call, matched against a signature the
/// way Python's `inspect.getcallargs` does, with Python's messages.
#[derive(Debug)]
pub struct Args<'a> {
    method: &'static str,
    slots: Vec<Option<&'a RawValue>>,
    params: &'static [Param],
}

impl<'a> Args<'a> {
    /// Binds a request body to a signature. Errors are `MalformedRequest`
    /// (bad body) or `IncorrectSignature` (arguments that don't fit).
    pub fn bind(
        method: &'static str,
        body: &'a [u8],
        params: &'static [Param],
    ) -> Result<Self, RemoteError> {
        let request = crate::message::RequestBody::parse(body)?;
        let mut slots: Vec<Option<&'a RawValue>> = vec![None; params.len()];
        if request.args.len() > params.len() {
            return Err(RemoteError::incorrect_signature(too_many(
                method,
                params,
                request.args.len(),
            )));
        }
        for (slot, value) in slots.iter_mut().zip(&request.args) {
            *slot = Some(value);
        }
        for (key, value) in &request.kwargs {
            let Some(index) = params.iter().position(|p| p.name == key) else {
                return Err(RemoteError::incorrect_signature(format!(
                    "{method}() got an unexpected keyword argument '{key}'"
                )));
            };
            if slots[index].is_some() {
                return Err(RemoteError::incorrect_signature(format!(
                    "{method}() got multiple values for argument '{key}'"
                )));
            }
            slots[index] = Some(value);
        }
        let missing: Vec<&str> = params
            .iter()
            .zip(&slots)
            .filter(|(param, slot)| param.required && slot.is_none())
            .map(|(param, _)| param.name)
            .collect();
        if !missing.is_empty() {
            return Err(RemoteError::incorrect_signature(format!(
                "{method}() missing {} required positional argument{}: {}",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                python_list(&missing)
            )));
        }
        Ok(Args {
            method,
            slots,
            params,
        })
    }

    /// Decodes parameter `index`. A left-out optional parameter decodes from
    /// `null`. A value of the wrong type is `IncorrectSignature`.
    pub fn get<T: serde::de::DeserializeOwned>(&self, index: usize) -> Result<T, RemoteError> {
        let raw = self.slots[index].map_or("null", RawValue::get);
        serde_json::from_str(raw).map_err(|err| {
            RemoteError::incorrect_signature(format!(
                "{}() argument '{}': {err}",
                self.method, self.params[index].name
            ))
        })
    }
}

/// Python's message for too many positional arguments (counting `self`,
/// as `getcallargs(fn, None, ...)` does).
fn too_many(method: &str, params: &[Param], given: usize) -> String {
    let required = params.iter().filter(|p| p.required).count() + 1;
    let total = params.len() + 1;
    let takes = if required == total {
        format!(
            "{total} positional argument{}",
            if total == 1 { "" } else { "s" }
        )
    } else {
        format!("from {required} to {total} positional arguments")
    };
    format!("{method}() takes {takes} but {} were given", given + 1)
}

/// `'a'`, `'a' and 'b'`, `'a', 'b', and 'c'`, as Python lists names.
fn python_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        2 => format!("{} and {}", quoted[0], quoted[1]),
        n => format!("{}, and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// Decodes an event payload for a handler.
pub fn event_payload<T: serde::de::DeserializeOwned>(
    method: &str,
    body: &[u8],
) -> Result<T, RemoteError> {
    serde_json::from_slice(body).map_err(|err| {
        RemoteError::incorrect_signature(format!("{method}() payload does not fit: {err}"))
    })
}

/// Turns what an entrypoint method returned into an [`Outcome`]: the result
/// encoded as JSON, or the error as a [`RemoteError`].
#[diagnostic::on_unimplemented(
    message = "entrypoint methods must return `Result<T, E>` with `T: Serialize` and `E: Into<RemoteError>`",
    label = "this return type"
)]
pub trait IntoOutcome {
    /// Converts.
    fn into_outcome(self) -> Outcome;
}

impl<T, E> IntoOutcome for Result<T, E>
where
    T: serde::Serialize,
    E: Into<RemoteError>,
{
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(value) => {
                serde_json::value::to_raw_value(&value).map_err(RemoteError::unserializable)
            }
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &[Param] = &[
        Param {
            name: "name",
            required: true,
        },
        Param {
            name: "greeting",
            required: false,
        },
    ];

    fn bind(body: &str) -> Result<Args<'_>, RemoteError> {
        Args::bind("hello", body.as_bytes(), HELLO)
    }

    #[test]
    fn positional_keyword_and_both() {
        let args = bind(r#"{"args": ["Ann"], "kwargs": {}}"#).unwrap();
        assert_eq!(args.get::<String>(0).unwrap(), "Ann");
        assert_eq!(args.get::<Option<String>>(1).unwrap(), None);

        let args = bind(r#"{"args": [], "kwargs": {"greeting": "Hi", "name": "Bob"}}"#).unwrap();
        assert_eq!(args.get::<String>(0).unwrap(), "Bob");
        assert_eq!(
            args.get::<Option<String>>(1).unwrap().as_deref(),
            Some("Hi")
        );

        let args = bind(r#"{"args": ["Cy"], "kwargs": {"greeting": "Yo"}}"#).unwrap();
        assert_eq!(args.get::<String>(0).unwrap(), "Cy");
    }

    #[test]
    fn python_messages_for_bad_signatures() {
        let msg = |body| bind(body).unwrap_err().value;
        assert_eq!(
            msg(r#"{"args": [], "kwargs": {}}"#),
            "hello() missing 1 required positional argument: 'name'"
        );
        assert_eq!(
            msg(r#"{"args": [1, 2, 3], "kwargs": {}}"#),
            "hello() takes from 2 to 3 positional arguments but 4 were given"
        );
        assert_eq!(
            msg(r#"{"args": [], "kwargs": {"nope": 1}}"#),
            "hello() got an unexpected keyword argument 'nope'"
        );
        assert_eq!(
            msg(r#"{"args": ["a"], "kwargs": {"name": "b"}}"#),
            "hello() got multiple values for argument 'name'"
        );
        let err = bind(r#"{"args": [5], "kwargs": {}}"#)
            .unwrap()
            .get::<String>(0)
            .unwrap_err();
        assert_eq!(err.exc_type, "IncorrectSignature");
        assert!(
            err.value
                .starts_with("hello() argument 'name': invalid type"),
            "{}",
            err.value
        );
    }

    #[test]
    fn python_lists_names() {
        assert_eq!(python_list(&["a"]), "'a'");
        assert_eq!(python_list(&["a", "b"]), "'a' and 'b'");
        assert_eq!(python_list(&["a", "b", "c"]), "'a', 'b', and 'c'");
        const TWO: &[Param] = &[Param {
            name: "a",
            required: true,
        }];
        assert_eq!(
            too_many("f", TWO, 2),
            "f() takes 2 positional arguments but 3 were given"
        );
    }
}
