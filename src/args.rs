//! Argument binding: nameko's `{"args": [...], "kwargs": {...}}` matched
//! against a method's signature the way Python's `inspect.getcallargs`
//! does, with Python's messages, and event payloads decoded for handlers.
//! Generated `dispatch` functions call these.

use serde_json::value::RawValue;
use smallvec::{SmallVec, smallvec};

use crate::error::RemoteError;
use crate::message::RequestBody;

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
    slots: SmallVec<[Option<&'a RawValue>; 4]>,
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
        let request = RequestBody::parse(body)?;
        let mut slots: SmallVec<[Option<&'a RawValue>; 4]> = smallvec![None; params.len()];
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
