//! What a worker returns: an [`Outcome`], the JSON-encoded result
//! ([`Encoded`]) or the [`RemoteError`] that crosses the wire, and
//! [`IntoOutcome`], which turns an entrypoint method's `Result<T, E>` into
//! one.

use serde_json::value::RawValue;

use crate::error::RemoteError;

/// What an entrypoint returns: the JSON-encoded result, or the error that
/// crosses the wire.
pub type Outcome = Result<Encoded, RemoteError>;

/// A result encoded as JSON; reads as a [`RawValue`] (`.get()` is its
/// text). `null`, what methods that return `()` give, takes no
/// allocation.
///
/// ```
/// use enoki::outcome::Encoded;
///
/// let null = Encoded::null();
/// assert_eq!(null.get(), "null");
/// let raw = serde_json::value::to_raw_value(&[1, 2]).unwrap();
/// assert_eq!(Encoded::from(raw).get(), "[1,2]");
/// ```
#[derive(Clone)]
pub struct Encoded(Repr);

#[derive(Clone)]
enum Repr {
    Null,
    Raw(Box<RawValue>),
}

impl Encoded {
    /// `null`.
    pub const fn null() -> Self {
        Encoded(Repr::Null)
    }

    /// The JSON as a boxed [`RawValue`] of its own.
    pub fn into_raw(self) -> Box<RawValue> {
        match self.0 {
            Repr::Null => RawValue::NULL.to_owned(),
            Repr::Raw(raw) => raw,
        }
    }
}

impl std::ops::Deref for Encoded {
    type Target = RawValue;

    fn deref(&self) -> &RawValue {
        match &self.0 {
            Repr::Null => RawValue::NULL,
            Repr::Raw(raw) => raw,
        }
    }
}

impl AsRef<RawValue> for Encoded {
    fn as_ref(&self) -> &RawValue {
        self
    }
}

impl From<Box<RawValue>> for Encoded {
    fn from(raw: Box<RawValue>) -> Self {
        Encoded(Repr::Raw(raw))
    }
}

impl From<Encoded> for Box<RawValue> {
    fn from(encoded: Encoded) -> Self {
        encoded.into_raw()
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl std::fmt::Display for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

impl PartialEq for Encoded {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Encoded {}

impl serde::Serialize for Encoded {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

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
            Ok(value) => match small(&value) {
                Some(raw) => Ok(raw),
                None => serde_json::value::to_raw_value(&value)
                    .map(Encoded::from)
                    .map_err(RemoteError::unserializable),
            },
            Err(err) => Err(err.into()),
        }
    }
}

/// The longest result [`small`] encodes on the stack.
const SMALL: usize = 64;

/// `value` encoded in one allocation of its exact size (none for `null`),
/// when its JSON fits in [`SMALL`] bytes (most results: a name, a number,
/// `null`); `serde_json::value::to_raw_value` takes two (its 128-byte
/// buffer, then the shrink to size). `None` when it is longer, or does not
/// encode (the caller's full encoding then says why).
fn small<T: serde::Serialize + ?Sized>(value: &T) -> Option<Encoded> {
    let mut buf = [0u8; SMALL];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // A full buffer is an error (`WriteZero`), which stops the encoder.
    serde_json::to_writer(&mut cursor, value).ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    let bytes = buf.get(..len)?;
    if bytes == b"null" {
        return Some(Encoded::null());
    }
    let text = std::str::from_utf8(bytes).ok()?;
    RawValue::from_string(text.to_owned())
        .ok()
        .map(Encoded::from)
}

/// `null`: the result of methods that return `()`.
pub fn unit() -> Outcome {
    Ok(Encoded::null())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded<T: serde::Serialize>(value: T) -> String {
        Ok::<T, RemoteError>(value)
            .into_outcome()
            .unwrap()
            .get()
            .to_owned()
    }

    #[test]
    fn results_of_any_length_encode_as_serde_json_does() {
        let long = "x".repeat(SMALL * 2);
        assert_eq!(encoded(()), "null");
        assert_eq!(encoded(None::<u8>), "null");
        assert_eq!(encoded("Hello, Ann!"), r#""Hello, Ann!""#);
        assert_eq!(encoded(7u64), "7");
        for len in [SMALL - 3, SMALL - 2, SMALL - 1, SMALL, SMALL + 1] {
            let text = "é".repeat(len / 2) + &"y".repeat(len % 2);
            assert_eq!(encoded(&text), serde_json::to_string(&text).unwrap());
        }
        assert_eq!(encoded(&long), serde_json::to_string(&long).unwrap());
        let map = serde_json::json!({"a": [1, 2, {"b": null}], "c": "d"});
        assert_eq!(encoded(&map), map.to_string());
    }

    #[test]
    fn null_results_take_no_allocation_and_read_as_null() {
        for outcome in [
            Ok::<(), RemoteError>(()).into_outcome(),
            Ok::<Option<u8>, RemoteError>(None).into_outcome(),
            unit(),
        ] {
            let encoded = outcome.unwrap();
            assert!(matches!(encoded.0, Repr::Null));
            assert_eq!(encoded.get(), "null");
            assert_eq!(encoded.clone().into_raw().get(), "null");
            assert_eq!(serde_json::to_string(&encoded).unwrap(), "null");
        }
        let seven = Ok::<u8, RemoteError>(7).into_outcome().unwrap();
        assert!(matches!(seven.0, Repr::Raw(_)));
        assert_eq!(seven.to_string(), "7");
        assert_ne!(seven, Encoded::null());
    }

    #[test]
    fn a_result_that_does_not_encode_is_an_error_at_any_length() {
        use std::collections::BTreeMap;
        // JSON object keys must be strings.
        let short: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let long: BTreeMap<(u8, u8), String> = [((1, 2), "z".repeat(SMALL * 2))].into();
        for err in [
            Ok::<_, RemoteError>(short).into_outcome().unwrap_err(),
            Ok::<_, RemoteError>(long).into_outcome().unwrap_err(),
        ] {
            assert!(!err.exc_type.is_empty(), "{err:?}");
        }
    }
}
