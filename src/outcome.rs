//! What a worker returns: an [`Outcome`], the JSON-encoded result or the
//! [`RemoteError`] that crosses the wire, and [`IntoOutcome`], which turns
//! an entrypoint method's `Result<T, E>` into one.

use serde_json::value::RawValue;

use crate::error::RemoteError;

/// What an entrypoint returns: the JSON-encoded result, or the error that
/// crosses the wire.
pub type Outcome = Result<Box<RawValue>, RemoteError>;

/// Turns what an entrypoint method returned into an [`Outcome`]: the result
/// encoded as JSON, or the error as a [`RemoteError`].
///
/// ```
/// use enoki::RemoteError;
/// use enoki::outcome::IntoOutcome;
///
/// let ok: Result<u32, RemoteError> = Ok(7);
/// assert_eq!(ok.into_outcome().unwrap().get(), "7");
/// let err: Result<u32, std::num::ParseIntError> = "x".parse::<u32>();
/// assert_eq!(err.into_outcome().unwrap_err().exc_type, "ParseIntError");
/// ```
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

/// `null`: the result of methods that return `()`.
pub fn unit() -> Outcome {
    Ok(RawValue::NULL.to_owned())
}
