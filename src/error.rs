//! Errors: [`Error`], the crate's one error enum, and [`RemoteError`], the
//! only error that crosses the wire.
//!
//! A [`RemoteError`] is nameko's serialised exception
//! (`{"exc_type", "exc_path", "exc_args", "value"}`, `nameko/exceptions.py`),
//! so Python and Rust services understand each other's failures. Every
//! `std::error::Error` converts into one, named after its type, so `?` works in
//! entrypoints: a `GreeterError` from module `greeter` arrives in Python as
//! `RemoteError("GreeterError", ...)`.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `Result` with enoki's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Joins the lines of a message, so an error prints as one line (the CLI
/// and the shell print every error so).
#[cfg(feature = "cli")]
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A boxed error of another library, kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in enoki outside user code.
///
/// RPC calls fail with [`Error::Remote`] when the service answered with an
/// error, and with the other variants when no answer came. Errors that wrap
/// another keep it as their [`source`](std::error::Error::source) and
/// repeat its message in their own, so one line tells the whole story.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The called service replied with an error.
    #[error("{0}")]
    Remote(RemoteError),
    /// Nothing is bound to receive requests for this service.
    #[error("Unknown service `{0}`")]
    UnknownService(String),
    /// No reply arrived within the call's timeout.
    #[error("RPC call to {service}.{method} timed out after {timeout:?}")]
    RpcTimeout {
        /// The called service.
        service: String,
        /// The called method.
        method: String,
        /// The timeout that elapsed.
        timeout: std::time::Duration,
    },
    /// The connection to the broker was lost while a call was waiting for its
    /// reply; the call may or may not have run.
    #[error("{0}")]
    ConnectionLost(String),
    /// A message was published with `mandatory` and no queue was bound for it.
    #[error("message to exchange `{exchange}` with routing key `{routing_key}` is unroutable")]
    Unroutable {
        /// Exchange the message was published to.
        exchange: String,
        /// Its routing key.
        routing_key: String,
    },
    /// The named exchange does not exist (AMQP 404).
    #[error("no exchange `{0}`")]
    ExchangeNotFound(String),
    /// The named queue does not exist (AMQP 404).
    #[error("no queue `{0}`")]
    QueueNotFound(String),
    /// An entity was redeclared with different flags (AMQP 406).
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// An exclusive queue is used by another connection (AMQP 405).
    #[error("resource locked: {0}")]
    ResourceLocked(String),
    /// A queue at its `x-max-length` with `x-overflow: reject-publish`
    /// refused the message.
    #[error("queue `{0}` is full (x-max-length reached, x-overflow reject-publish)")]
    QueueFull(String),
    /// The transport has been closed.
    #[error("transport is closed")]
    TransportClosed,
    /// Any other broker or transport failure.
    #[error("transport error: {0}")]
    Transport(String),
    /// A failure of the broker client library (lapin), kept as the source.
    #[error("transport error: {0}")]
    Broker(#[source] BoxError),
    /// Invalid configuration.
    #[error("configuration error: {0}")]
    Config(String),
    /// A database could not be opened or migrated (the `db` feature);
    /// `context` names the service and the URI, its password hidden.
    #[error("{context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// The database library's error.
        #[source]
        source: BoxError,
    },
    /// A value that is not valid where it was given (an event pattern, a
    /// route path, an argument source); the message says why.
    #[error("{0}")]
    Invalid(String),
    /// A message or value could not be encoded or decoded.
    #[error("encoding error: {0}")]
    Encoding(#[from] serde_json::Error),
    /// A container or runner was used in the wrong state (e.g. started twice).
    #[error("{0}")]
    Lifecycle(String),
    /// A dependency provider failed in one of its container hooks.
    #[error("dependency `{name}` failed: {source}")]
    Dependency {
        /// The field name of the dependency.
        name: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A service of a runner failed to start (the others were stopped).
    #[error("service `{service}` failed to start: {source}")]
    ServiceStart {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The wire form of this error, as a nameko caller would see it.
    pub fn to_remote(&self) -> RemoteError {
        match self {
            Error::Remote(remote) => remote.clone(),
            Error::UnknownService(service) => RemoteError::nameko("UnknownService", service),
            Error::RpcTimeout { timeout, .. } => {
                RemoteError::nameko("RpcTimeout", timeout.as_secs_f64().to_string())
            }
            other => RemoteError::new("EnokiError", other.to_string())
                .with_path("enoki.exceptions.EnokiError"),
        }
    }

    /// The remote error, when the service answered with one.
    pub fn as_remote(&self) -> Option<&RemoteError> {
        match self {
            Error::Remote(remote) => Some(remote),
            _ => None,
        }
    }
}

impl From<RemoteError> for Error {
    fn from(remote: RemoteError) -> Self {
        Error::Remote(remote)
    }
}

/// A serialised exception: the error half of an RPC reply.
///
/// Field for field the dictionary nameko's `serialize(exc)` builds. The
/// `exc_path` is a Python-style dotted path; nameko clients use it to
/// rebuild known exception types (`nameko.exceptions.MethodNotFound`, ...).
///
/// ```
/// use enoki::RemoteError;
///
/// let err = RemoteError::new("ValueError", "bad input");
/// assert_eq!(err.exc_type, "ValueError");
/// assert_eq!(err.to_string(), "ValueError bad input");
///
/// // Any std error converts, named after its type.
/// let parse: RemoteError = "x".parse::<i32>().unwrap_err().into();
/// assert_eq!(parse.exc_type, "ParseIntError");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    /// The exception's class name, e.g. `MethodNotFound`.
    pub exc_type: String,
    /// The exception's dotted path, e.g. `nameko.exceptions.MethodNotFound`.
    pub exc_path: String,
    /// The exception's arguments, stringified as nameko does.
    #[serde(default)]
    pub exc_args: Vec<Value>,
    /// `str(exc)`: the message.
    #[serde(default)]
    pub value: String,
}

impl RemoteError {
    /// An error with the given type and message; `exc_path` is the type
    /// itself and `exc_args` is `[message]`.
    pub fn new(exc_type: impl Into<String>, value: impl Into<String>) -> Self {
        let exc_type = exc_type.into();
        let value = value.into();
        RemoteError {
            exc_path: exc_type.clone(),
            exc_args: vec![Value::String(value.clone())],
            exc_type,
            value,
        }
    }

    /// A nameko built-in exception (`nameko.exceptions.<exc_type>`).
    pub fn nameko(exc_type: &str, value: impl Into<String>) -> Self {
        RemoteError::new(exc_type, value).with_path(format!("nameko.exceptions.{exc_type}"))
    }

    /// Sets `exc_path`.
    #[must_use]
    pub fn with_path(mut self, exc_path: impl Into<String>) -> Self {
        self.exc_path = exc_path.into();
        self
    }

    /// Sets `exc_args`.
    #[must_use]
    pub fn with_args(mut self, exc_args: Vec<Value>) -> Self {
        self.exc_args = exc_args;
        self
    }

    /// nameko's `MethodNotFound(method)`.
    pub fn method_not_found(method: &str) -> Self {
        RemoteError::nameko("MethodNotFound", method)
    }

    /// nameko's `IncorrectSignature(message)`.
    pub fn incorrect_signature(message: impl Into<String>) -> Self {
        RemoteError::nameko("IncorrectSignature", message)
    }

    /// nameko's `MalformedRequest(message)`.
    pub fn malformed_request(message: impl Into<String>) -> Self {
        RemoteError::nameko("MalformedRequest", message)
    }

    /// nameko's `UnserializableValueError` for a result that could not be
    /// encoded.
    pub fn unserializable(detail: impl fmt::Display) -> Self {
        RemoteError {
            exc_type: "UnserializableValueError".into(),
            exc_path: "nameko.exceptions.UnserializableValueError".into(),
            exc_args: vec![],
            value: format!("Unserializable value: `{detail}`"),
        }
    }

    /// A worker that panicked.
    pub fn panic(message: impl Into<String>) -> Self {
        RemoteError::new("WorkerPanic", message).with_path("enoki.exceptions.WorkerPanic")
    }

    /// Whether this is one of nameko's `BadRequest` family
    /// (`MalformedRequest`, `MethodNotFound`, `IncorrectSignature`): the
    /// request itself was wrong, so retrying it cannot help.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self.exc_path.as_str(),
            "nameko.exceptions.MalformedRequest"
                | "nameko.exceptions.MethodNotFound"
                | "nameko.exceptions.IncorrectSignature"
                | "nameko.exceptions.BadRequest"
        )
    }
}

impl fmt::Display for RemoteError {
    /// nameko's `RemoteError` message: `"{exc_type} {value}"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.exc_type, self.value)
    }
}

/// Any error converts into a [`RemoteError`] named after its Rust type:
/// `exc_type` is the type's name and `exc_path` its path with `::` turned
/// into `.`, as a Python class would be named. enoki's own [`Error`] keeps its
/// wire meaning (an `UnknownService` stays `UnknownService`).
impl<E> From<E> for RemoteError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        let any: &dyn std::any::Any = &err;
        if let Some(error) = any.downcast_ref::<Error>() {
            return error.to_remote();
        }
        let path = python_path(std::any::type_name::<E>());
        let exc_type = path.rsplit('.').next().unwrap_or(&path).to_owned();
        RemoteError::new(exc_type, err.to_string()).with_path(path.into_owned())
    }
}

/// `alloc::string::String` → `alloc.string.String`; generic arguments are
/// dropped (`Foo<Bar>` → `Foo`).
fn python_path(type_name: &str) -> Cow<'_, str> {
    let base = type_name.split('<').next().unwrap_or(type_name);
    if base.contains("::") {
        Cow::Owned(base.replace("::", "."))
    } else {
        Cow::Borrowed(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("this call always fails")]
    struct GreeterError;

    #[test]
    fn std_errors_are_named_after_their_type() {
        let err: RemoteError = GreeterError.into();
        assert_eq!(err.exc_type, "GreeterError");
        assert_eq!(err.exc_path, "enoki.error.tests.GreeterError");
        assert_eq!(err.value, "this call always fails");
        assert_eq!(err.exc_args, vec![Value::from("this call always fails")]);
    }

    #[test]
    fn enoki_errors_keep_their_wire_meaning() {
        let err: RemoteError = Error::UnknownService("nosvc".into()).into();
        assert_eq!(err.exc_type, "UnknownService");
        assert_eq!(err.exc_path, "nameko.exceptions.UnknownService");
        assert_eq!(err.value, "nosvc");
    }

    #[test]
    fn serialises_like_nameko() {
        let err = RemoteError::method_not_found("nosuch");
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "exc_type": "MethodNotFound",
                "exc_path": "nameko.exceptions.MethodNotFound",
                "exc_args": ["nosuch"],
                "value": "nosuch"
            })
        );
        assert!(err.is_bad_request());
    }
}
