//! The one table of the config keys enoki reads: name, type, default and
//! meaning. Validation ([`Settings::validate`](super::Settings::validate)),
//! the typed getters of [`Settings`](super::Settings), the check for
//! unknown keys and `enoki show-config --all` all read it.

use serde_json::Value;

use crate::context::DEFAULT_PARENT_CALLS_TRACKED;
use crate::error::{Error, Result};
use crate::names::DEFAULT_RPC_EXCHANGE;

/// One config key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfigKey {
    /// The key, as written in the file (`max_workers`, `AMQP_URI`).
    pub name: &'static str,
    /// What its value must be.
    pub kind: KeyKind,
    /// Its value when absent (or null).
    pub default: DefaultValue,
    /// What it means.
    pub doc: &'static str,
}

/// What a config value must be.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum KeyKind {
    /// A string; `non_empty` refuses `""`.
    Text {
        /// Whether the empty string is refused.
        non_empty: bool,
    },
    /// An integer from 0 to `max`.
    Integer {
        /// The largest value.
        max: u64,
    },
    /// A number of seconds, at most `max`; 0 only if `zero_ok`.
    Seconds {
        /// The largest value.
        max: f64,
        /// Whether 0 is allowed (and what it means is in the key's doc).
        zero_ok: bool,
    },
    /// A list of at most `max_len` numbers of seconds, each from 0.001 (a
    /// millisecond) to `max` (`RETRY_DELAYS`).
    SecondsList {
        /// The most entries.
        max_len: usize,
        /// The largest entry.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
    /// A serializer name: only `json`.
    Serializer,
    /// A list of serializer names that includes `json`.
    Accept,
    /// One of a fixed set of words (`RPC_REPLY_QUEUE`).
    Choice {
        /// The words allowed, the default first.
        values: &'static [&'static str],
    },
    /// A mapping, checked by the part that reads it (`GATEWAY`).
    Mapping,
    /// Anything: read by nobody (nameko's `LOGGING`).
    Ignored,
}

/// The value of a key that is absent.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum DefaultValue {
    /// No value: the feature is off (`AMQP_URI`, `RPC_TIMEOUT`).
    None,
    /// A string.
    Str(&'static str),
    /// An integer.
    Int(u64),
    /// Seconds.
    Seconds(f64),
    /// A list of seconds.
    SecondsList(&'static [f64]),
    /// A boolean.
    Bool(bool),
    /// Described, because it comes from another key (`PREFETCH_COUNT`
    /// defaults to `max_workers`).
    Described(&'static str),
}

impl DefaultValue {
    /// As a JSON value, for `show-config --all` (`None` for [`DefaultValue::None`]
    /// and [`DefaultValue::Described`]).
    pub fn to_value(self) -> Option<Value> {
        match self {
            DefaultValue::None | DefaultValue::Described(_) => None,
            DefaultValue::Str(s) => Some(Value::from(s)),
            DefaultValue::Int(n) => Some(Value::from(n)),
            DefaultValue::Seconds(s) => Some(Value::from(s)),
            DefaultValue::SecondsList(list) => Some(Value::from(list.to_vec())),
            DefaultValue::Bool(b) => Some(Value::from(b)),
        }
    }
}

/// `AMQP_URI`.
pub const AMQP_URI: ConfigKey = ConfigKey {
    name: "AMQP_URI",
    kind: KeyKind::Text { non_empty: false },
    default: DefaultValue::None,
    doc: "broker URI; without it everything runs on the embedded transport",
};
/// `rpc_exchange`.
pub const RPC_EXCHANGE: ConfigKey = ConfigKey {
    name: "rpc_exchange",
    kind: KeyKind::Text { non_empty: true },
    default: DefaultValue::Str(DEFAULT_RPC_EXCHANGE),
    doc: "RPC exchange name (default nameko-rpc)",
};
/// `max_workers`.
pub const MAX_WORKERS: ConfigKey = ConfigKey {
    name: "max_workers",
    kind: KeyKind::Integer {
        max: u32::MAX as u64,
    },
    default: DefaultValue::Int(10),
    doc: "concurrent workers per container (default 10; 0 means the default)",
};
/// `parent_calls_tracked`.
pub const PARENT_CALLS_TRACKED: ConfigKey = ConfigKey {
    name: "parent_calls_tracked",
    kind: KeyKind::Integer {
        max: u32::MAX as u64,
    },
    default: DefaultValue::Int(DEFAULT_PARENT_CALLS_TRACKED as u64),
    doc: "call-id stack depth (default 10)",
};
/// `serializer`.
pub const SERIALIZER: ConfigKey = ConfigKey {
    name: "serializer",
    kind: KeyKind::Serializer,
    default: DefaultValue::Str("json"),
    doc: "message serializer; only json is supported",
};
/// `ACCEPT`.
pub const ACCEPT: ConfigKey = ConfigKey {
    name: "ACCEPT",
    kind: KeyKind::Accept,
    default: DefaultValue::Described("[json]"),
    doc: "accepted serializers; only json is supported",
};
/// `HEARTBEAT`.
pub const HEARTBEAT: ConfigKey = ConfigKey {
    name: "HEARTBEAT",
    kind: KeyKind::Integer {
        max: u16::MAX as u64,
    },
    default: DefaultValue::Int(60),
    doc: "AMQP heartbeat in seconds (default 60; 0 turns heartbeats off)",
};
/// `PREFETCH_COUNT`.
pub const PREFETCH_COUNT: ConfigKey = ConfigKey {
    name: "PREFETCH_COUNT",
    kind: KeyKind::Integer {
        max: u16::MAX as u64,
    },
    default: DefaultValue::Described("max_workers"),
    doc: "unsettled deliveries per consumer (default max_workers; 0 means max_workers too)",
};
/// `AUTO_DELETE_EVENT_EXCHANGES`.
pub const AUTO_DELETE_EVENT_EXCHANGES: ConfigKey = ConfigKey {
    name: "AUTO_DELETE_EVENT_EXCHANGES",
    kind: KeyKind::Bool,
    default: DefaultValue::Bool(false),
    doc: "declare event exchanges auto-delete (default false)",
};
/// `AMQP_IO_THREAD`.
pub const AMQP_IO_THREAD: ConfigKey = ConfigKey {
    name: "AMQP_IO_THREAD",
    kind: KeyKind::Bool,
    default: DefaultValue::Bool(true),
    doc: "run AMQP io and heartbeats on a thread of their own, so CPU-bound handlers cannot starve heartbeats (default true; false: about a quarter more calls/s when handlers always await soon)",
};
/// `DECLARE_EVENT_EXCHANGES`.
pub const DECLARE_EVENT_EXCHANGES: ConfigKey = ConfigKey {
    name: "DECLARE_EVENT_EXCHANGES",
    kind: KeyKind::Bool,
    default: DefaultValue::Bool(true),
    doc: "declare event exchanges at all (default true)",
};
/// `LOGGING`.
pub const LOGGING: ConfigKey = ConfigKey {
    name: "LOGGING",
    kind: KeyKind::Ignored,
    default: DefaultValue::None,
    doc: "nameko's logging dictionary (ignored; use RUST_LOG)",
};
/// `RPC_REPLY_QUEUE`.
pub const RPC_REPLY_QUEUE: ConfigKey = ConfigKey {
    name: "RPC_REPLY_QUEUE",
    kind: KeyKind::Choice {
        values: &["transient", "durable"],
    },
    default: DefaultValue::Str("transient"),
    doc: "the form of a client's reply queue: transient (default: not durable, kept 5 min after its connection goes, replies skip the broker's disk) or durable (nameko's own form, which also survives a broker restart)",
};
/// `QUEUE_TYPE`.
pub const QUEUE_TYPE: ConfigKey = ConfigKey {
    name: "QUEUE_TYPE",
    kind: KeyKind::Choice {
        values: &["classic", "quorum"],
    },
    default: DefaultValue::Str("classic"),
    doc: "the type of the durable work queues (rpc-<service>, service-pool and singleton event queues): classic (default, as nameko declares them) or quorum (replicated across a RabbitMQ cluster, with a delivery limit and a dead-letter queue; Python nameko cannot declare the same queues)",
};
/// `QUEUE_DELIVERY_LIMIT`.
pub const QUEUE_DELIVERY_LIMIT: ConfigKey = ConfigKey {
    name: "QUEUE_DELIVERY_LIMIT",
    kind: KeyKind::Integer { max: 1_000_000 },
    default: DefaultValue::Int(5),
    doc: "how often one message of a work queue may come back unsettled (its worker died, or it was requeued) before it goes to <queue>.dlq: counted by the broker on quorum queues (x-delivery-count), by enoki on classic ones (x-enoki-redeliveries) (default 5; 0 means no limit, as nameko)",
};
/// The default of `RETRY_DELAYS`, in seconds.
pub const DEFAULT_RETRY_DELAYS: &[f64] = &[1.0, 5.0, 30.0];

/// `RETRY_DELAYS`.
pub const RETRY_DELAYS: ConfigKey = ConfigKey {
    name: "RETRY_DELAYS",
    kind: KeyKind::SecondsList {
        max_len: 32,
        max: super::seconds::MAX_CONFIG_SECONDS,
    },
    default: DefaultValue::SecondsList(DEFAULT_RETRY_DELAYS),
    doc: "seconds a failing requeue_on_error event waits before each retry, in a delay queue <queue>.retry.<ms> (default [1, 5, 30]; past the list the last delay repeats; [] requeues at once and without limit, as nameko does)",
};
/// `RETRY_LIMIT`.
pub const RETRY_LIMIT: ConfigKey = ConfigKey {
    name: "RETRY_LIMIT",
    kind: KeyKind::Integer { max: 1_000 },
    default: DefaultValue::Int(3),
    doc: "retries of a failing requeue_on_error event before it goes to <queue>.dlq (default 3; 0 dead-letters it at its first failure); counted from its x-death header",
};
/// nameko's default `WEB_SERVER_ADDRESS`.
pub const DEFAULT_WEB_SERVER_ADDRESS: &str = "0.0.0.0:8000";

/// `WEB_SERVER_ADDRESS`.
pub const WEB_SERVER_ADDRESS: ConfigKey = ConfigKey {
    name: "WEB_SERVER_ADDRESS",
    kind: KeyKind::Text { non_empty: true },
    default: DefaultValue::Str(DEFAULT_WEB_SERVER_ADDRESS),
    doc: "host:port of the HTTP server of the #[http] entrypoints, one per process (the gateway mounts them on its own instead)",
};
/// `DB_URIS`.
pub const DB_URIS: ConfigKey = ConfigKey {
    name: "DB_URIS",
    kind: KeyKind::Mapping,
    default: DefaultValue::None,
    doc: "database URIs by service (or service:name), nameko-sqlalchemy's key; default sqlite://<service>.db",
};
/// `GATEWAY`.
pub const GATEWAY: ConfigKey = ConfigKey {
    name: "GATEWAY",
    kind: KeyKind::Mapping,
    default: DefaultValue::None,
    doc: "gateway settings",
};
/// `GRACE_PERIOD`.
pub const GRACE_PERIOD: ConfigKey = ConfigKey {
    name: "GRACE_PERIOD",
    kind: KeyKind::Seconds {
        max: super::seconds::MAX_CONFIG_SECONDS,
        zero_ok: true,
    },
    default: DefaultValue::Seconds(30.0),
    doc: "seconds to wait for in-flight workers on stop (default 30; 0 kills them at once)",
};
/// `RPC_TIMEOUT`.
pub const RPC_TIMEOUT: ConfigKey = ConfigKey {
    name: "RPC_TIMEOUT",
    kind: KeyKind::Seconds {
        max: super::seconds::MAX_CONFIG_SECONDS,
        zero_ok: false,
    },
    default: DefaultValue::None,
    doc: "default timeout of standalone RPC calls in seconds (default: none; `enoki call` waits 30)",
};

/// Every key enoki reads.
pub const KEYS: &[ConfigKey] = &[
    AMQP_URI,
    RPC_EXCHANGE,
    MAX_WORKERS,
    PARENT_CALLS_TRACKED,
    SERIALIZER,
    ACCEPT,
    HEARTBEAT,
    AMQP_IO_THREAD,
    PREFETCH_COUNT,
    AUTO_DELETE_EVENT_EXCHANGES,
    DECLARE_EVENT_EXCHANGES,
    LOGGING,
    RPC_REPLY_QUEUE,
    QUEUE_TYPE,
    QUEUE_DELIVERY_LIMIT,
    RETRY_DELAYS,
    RETRY_LIMIT,
    WEB_SERVER_ADDRESS,
    GATEWAY,
    DB_URIS,
    GRACE_PERIOD,
    RPC_TIMEOUT,
];

/// The key named `name`, if enoki reads it.
pub fn key(name: &str) -> Option<&'static ConfigKey> {
    KEYS.iter().find(|key| key.name == name)
}

impl ConfigKey {
    /// Checks a present, non-null value; the error names the key.
    pub fn check(&self, value: &Value) -> Result<()> {
        let key = self.name;
        let fail = |message: String| Err(Error::Config(message));
        match self.kind {
            KeyKind::Text { non_empty } => match value.as_str() {
                None => fail(format!("`{key}` must be a string, got {value}")),
                Some("") if non_empty => fail(format!("`{key}` must not be empty")),
                Some(_) => Ok(()),
            },
            KeyKind::Integer { max } => match value.as_u64() {
                Some(n) if n <= max => Ok(()),
                _ => fail(format!(
                    "`{key}` must be an integer from 0 to {max}, got {value}"
                )),
            },
            KeyKind::Seconds { max, zero_ok } => match value.as_f64() {
                Some(n) if n == 0.0 && zero_ok => Ok(()),
                Some(n) if zero_ok && n.is_finite() && n > 0.0 && n <= max => Ok(()),
                Some(n) if !zero_ok => super::seconds::positive_seconds(key, n, max)
                    .map(|_| ())
                    .map_err(|err| Error::Config(err.to_string())),
                _ if zero_ok => fail(format!(
                    "`{key}` must be a non-negative number of seconds, at most {max}, got {value}"
                )),
                _ => fail(format!(
                    "`{key}` must be a number of seconds above 0 and at most {max}, got {value}"
                )),
            },
            KeyKind::SecondsList { max_len, max } => {
                let Some(items) = value.as_array() else {
                    return fail(format!(
                        "`{key}` must be a list of seconds, e.g. [1, 5, 30], got {value}"
                    ));
                };
                if items.len() > max_len {
                    return fail(format!(
                        "`{key}` holds at most {max_len} delays, got {}",
                        items.len()
                    ));
                }
                for item in items {
                    // Milliseconds are what the broker's TTLs count in.
                    match item.as_f64() {
                        Some(secs) if (0.001..=max).contains(&secs) => {}
                        _ => {
                            return fail(format!(
                                "`{key}` entries must be numbers of seconds from 0.001 to {max}, got {item}"
                            ));
                        }
                    }
                }
                Ok(())
            }
            KeyKind::Bool => match value {
                Value::Bool(_) => Ok(()),
                _ => fail(format!("`{key}` must be true or false, got {value}")),
            },
            KeyKind::Serializer => match value.as_str() {
                Some("json") => Ok(()),
                _ => fail(format!(
                    "`{key}` must be json (the only serializer enoki speaks), got {value}"
                )),
            },
            KeyKind::Accept => {
                let names: Option<Vec<&str>> = match value {
                    Value::String(name) => Some(vec![name.as_str()]),
                    Value::Array(items) => items.iter().map(Value::as_str).collect(),
                    _ => None,
                };
                match names {
                    Some(names)
                        if names
                            .iter()
                            .any(|name| *name == "json" || *name == "application/json") =>
                    {
                        Ok(())
                    }
                    _ => fail(format!(
                        "`{key}` must be a list of serializer names including json, got {value}"
                    )),
                }
            }
            KeyKind::Choice { values } => match value.as_str() {
                Some(word) if values.contains(&word) => Ok(()),
                _ => fail(format!(
                    "`{key}` must be one of {}, got {value}",
                    values.join(", ")
                )),
            },
            KeyKind::Mapping => match value {
                Value::Object(_) => Ok(()),
                _ => fail(format!("`{key}` must be a mapping, got {value}")),
            },
            KeyKind::Ignored => Ok(()),
        }
    }

    /// What the value must be, in words (for `show-config --all`).
    pub fn describe(&self) -> String {
        match self.kind {
            KeyKind::Text { .. } => "a string".into(),
            KeyKind::Integer { max } => format!("an integer from 0 to {max}"),
            KeyKind::Seconds { max, zero_ok: true } => format!("seconds, from 0 to {max}"),
            KeyKind::Seconds { max, .. } => format!("seconds, above 0 and at most {max}"),
            KeyKind::SecondsList { max_len, max } => {
                format!("a list of at most {max_len} seconds, each from 0.001 to {max}")
            }
            KeyKind::Bool => "true or false".into(),
            KeyKind::Serializer => "json".into(),
            KeyKind::Accept => "a list of serializer names including json".into(),
            KeyKind::Choice { values } => format!("one of {}", values.join(", ")),
            KeyKind::Mapping => "a mapping".into(),
            KeyKind::Ignored => "anything (ignored)".into(),
        }
    }
}

const COUNT: usize = KEYS.len();

const fn pairs() -> [(&'static str, &'static str); COUNT] {
    let mut out = [("", ""); COUNT];
    let mut i = 0;
    while i < COUNT {
        out[i] = (KEYS[i].name, KEYS[i].doc);
        i += 1;
    }
    out
}

/// The keys and their meaning, as pairs: [`KEYS`] in the old shape.
pub(super) const KEY_PAIRS: &[(&str, &str)] = &pairs();

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_key_accepts_its_default() {
        for key in KEYS {
            if let Some(value) = key.default.to_value() {
                key.check(&value)
                    .unwrap_or_else(|err| panic!("{}: {err}", key.name));
            }
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (MAX_WORKERS, json!("many")),
            (HEARTBEAT, json!(70000)),
            (GRACE_PERIOD, json!(-1)),
            (GRACE_PERIOD, json!(1e20)),
            (RPC_TIMEOUT, json!(0)),
            (RPC_TIMEOUT, json!(1e20)),
            (DECLARE_EVENT_EXCHANGES, json!("maybe")),
            (RETRY_DELAYS, json!(5)),
            (RETRY_DELAYS, json!([1, 0])),
            (RETRY_DELAYS, json!([1e-300])),
            (RETRY_DELAYS, json!([1, "5"])),
            (RETRY_DELAYS, json!(vec![1; 33])),
            (RETRY_LIMIT, json!(1001)),
            (AMQP_URI, json!(5)),
            (RPC_EXCHANGE, json!("")),
            (SERIALIZER, json!("pickle")),
            (ACCEPT, json!(["pickle"])),
            (GATEWAY, json!([1])),
        ];
        for (key, value) in cases {
            let err = key.check(&value).unwrap_err().to_string();
            assert!(err.contains(&format!("`{}`", key.name)), "{err}");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
        assert_eq!(KEY_PAIRS.len(), KEYS.len());
        assert_eq!(key("HEARTBEAT"), Some(&HEARTBEAT));
    }
}
