//! Configuration: nameko's config dictionary, read from a nameko-style YAML
//! file with `${VAR}` / `${VAR:default}` substitution.
//!
//! Values substituted from the environment are parsed again as YAML, as
//! nameko does, so `${PORT:8000}` is the integer 8000 and `${HOSTS:[a, b]}`
//! a list, and `${UNSET}` alone is null. `!env_var` forces substitution
//! and `!raw_env_var` keeps the substituted value a string.
//!
//! Differences from nameko's loader: quoted scalars (`'${X}'`) are
//! substituted too (the YAML parser does not say which scalars were
//! quoted); a default may itself hold `${...}` (nameko needs the `regex`
//! module for that); and a substituted value that is not valid YAML stays
//! a string instead of failing the load.
//!
//! [`Settings::check_keys`] rejects keys nobody reads (with a did-you-mean)
//! and [`Settings::validate`] checks the values of [`KNOWN_KEYS`].
//!
//! (The `subst` crate also expands bare `$NAME` and backslash escapes,
//! which nameko leaves alone, so a password like `pa$$word` would change
//! meaning; the `${...}` grammar here is nameko's, and short.)
//!
//! ```
//! use enoki::config::Settings;
//!
//! let settings = Settings::from_yaml_str(
//!     "max_workers: ${ENOKI_DOC_WORKERS:32}\nAMQP_URI: amqp://guest:guest@localhost\n",
//!     "config.yaml",
//! )
//! .unwrap();
//! assert_eq!(settings.max_workers(), 32);
//! assert_eq!(settings.amqp_uri(), Some("amqp://guest:guest@localhost"));
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub mod keys;
mod seconds;
mod yaml;

pub use keys::{ConfigKey, KEYS};
pub use seconds::{MAX_CLIENT_SECONDS, MAX_CONFIG_SECONDS, positive_seconds};
pub use yaml::substitute;

/// The keys enoki itself reads, with what they mean: [`KEYS`] as pairs.
#[deprecated(since = "0.1.0", note = "use `enoki::config::KEYS`")]
pub const KNOWN_KEYS: &[(&str, &str)] = keys::KEY_PAIRS;

/// The form of an RPC client's reply queue (`RPC_REPLY_QUEUE`).
///
/// Either form is named and bound as nameko's (`rpc.reply-<owner>-<uuid>`,
/// bound to the RPC exchange by its uuid), has `x-expires` of
/// [`REPLY_QUEUE_TTL_MS`](crate::names::REPLY_QUEUE_TTL_MS), and outlives
/// a cut connection, so replies to calls in flight wait for the client to
/// reconnect. Python nameko services answer both the same way.
///
/// ```
/// use enoki::config::{ReplyQueue, Settings};
/// use serde_json::json;
///
/// assert_eq!(Settings::new().reply_queue(), ReplyQueue::Transient);
/// let nameko = Settings::new().with("RPC_REPLY_QUEUE", json!("durable"));
/// assert_eq!(nameko.reply_queue(), ReplyQueue::Durable);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyQueue {
    /// Not durable (the default): the broker keeps it and its replies in
    /// memory, so a persistent reply skips the message store (about 15% of
    /// the broker's work per call on RabbitMQ). A broker restart loses it
    /// with the replies in it; the client declares it again on reconnecting.
    #[default]
    Transient,
    /// nameko's own form: durable, so it and its persistent replies also
    /// survive a broker restart.
    Durable,
}

/// The type of the durable work queues (`QUEUE_TYPE`): `rpc-<service>` and
/// the service-pool and singleton event queues that are not auto-delete.
/// Reply queues, broadcast queues and auto-delete event queues stay
/// classic, as nameko declares them.
///
/// ```
/// use enoki::config::{QueueType, Settings};
/// use serde_json::json;
///
/// assert_eq!(Settings::new().queue_type(), QueueType::Classic);
/// let replicated = Settings::new().with("QUEUE_TYPE", json!("quorum"));
/// assert_eq!(replicated.queue_type(), QueueType::Quorum);
/// assert_eq!(replicated.queue_delivery_limit(), Some(5));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueType {
    /// RabbitMQ's classic queues (the default): what Python nameko
    /// declares, so both can share the queues.
    #[default]
    Classic,
    /// Quorum queues: replicated (Raft) across a RabbitMQ cluster, so they
    /// survive the loss of a minority of nodes. Each has a delivery limit
    /// ([`Settings::queue_delivery_limit`]) after which the broker
    /// dead-letters a message to `<queue>.dlq` instead of redelivering it
    /// again. A Python nameko service cannot declare the same queue (its
    /// classic declaration fails with 406 PRECONDITION_FAILED).
    Quorum,
}

/// The resolved configuration: nameko's config dictionary. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    values: Arc<Map<String, Value>>,
}

impl Settings {
    /// Empty settings: every key at its default.
    pub fn new() -> Self {
        Settings::default()
    }

    /// Settings from a JSON object.
    pub fn from_map(values: Map<String, Value>) -> Self {
        Settings {
            values: Arc::new(values),
        }
    }

    /// Reads a nameko-style YAML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|err| {
            Error::Config(format!("cannot read config file {}: {err}", path.display()))
        })?;
        Settings::from_yaml_str(&text, &path.display().to_string())
    }

    /// Parses nameko-style YAML; `source` names it in errors.
    pub fn from_yaml_str(text: &str, source: &str) -> Result<Self> {
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
            .map_err(|err| Error::Config(format!("{source}: not valid YAML: {err}")))?;
        let value = yaml::resolve(yaml).map_err(|err| match err {
            Error::Config(message) => Error::Config(format!("{source}: {message}")),
            other => Error::Config(format!("{source}: {other}")),
        })?;
        match value {
            Value::Object(map) => Ok(Settings::from_map(map)),
            Value::Null => Ok(Settings::new()),
            other => Err(Error::Config(format!(
                "{source}: the config must be a mapping of keys to values, not {}",
                kind_of(&other)
            ))),
        }
    }

    /// Rejects top-level keys that neither enoki nor the hosted services
    /// read, naming the closest known key.
    pub fn check_keys(&self, extra_keys: &[&str], source: &str) -> Result<()> {
        for key in self.values.keys() {
            let known = keys::key(key).is_some() || extra_keys.contains(&key.as_str());
            if !known {
                let candidates = KEYS
                    .iter()
                    .map(|k| k.name)
                    .chain(extra_keys.iter().copied());
                let hint = closest(key, candidates)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                return Err(Error::Config(format!(
                    "{source}: unknown key `{key}`{hint}"
                )));
            }
        }
        Ok(())
    }

    /// A copy with `key` set (as `--define KEY=VALUE` does).
    #[must_use]
    pub fn with(&self, key: impl Into<String>, value: Value) -> Self {
        let mut values = (*self.values).clone();
        values.insert(key.into(), value);
        Settings::from_map(values)
    }

    /// A copy with every key of `other` set.
    #[must_use]
    pub fn merged(&self, other: &Settings) -> Self {
        let mut values = (*self.values).clone();
        values.extend(other.values.iter().map(|(k, v)| (k.clone(), v.clone())));
        Settings::from_map(values)
    }

    /// One raw value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// One value, decoded; `Ok(None)` when absent.
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|err| Error::Config(format!("config key `{key}`: {err}"))),
        }
    }

    /// All values.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.values
    }

    /// The value of `key`, unless absent or null.
    fn present(&self, key: &ConfigKey) -> Option<&Value> {
        self.get(key.name).filter(|value| !value.is_null())
    }

    fn str_or<'a>(&'a self, key: &ConfigKey, default: &'a str) -> &'a str {
        self.present(key).and_then(Value::as_str).unwrap_or(default)
    }

    fn int_or(&self, key: &ConfigKey, default: u64) -> u64 {
        self.present(key).and_then(Value::as_u64).unwrap_or(default)
    }

    fn bool_or(&self, key: &ConfigKey, default: bool) -> bool {
        self.present(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    fn seconds(&self, key: &ConfigKey) -> Option<Duration> {
        self.present(key)
            .and_then(Value::as_f64)
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
    }

    // The getters read the values [`validate`](Self::validate) checked
    // (every container, runner, gateway and command validates its
    // settings first), with each key's default from [`keys`].

    /// `AMQP_URI`, if set and not empty.
    pub fn amqp_uri(&self) -> Option<&str> {
        self.present(&keys::AMQP_URI)
            .and_then(Value::as_str)
            .filter(|uri| !uri.is_empty())
    }

    /// `rpc_exchange` (default `nameko-rpc`).
    pub fn rpc_exchange(&self) -> &str {
        self.str_or(&keys::RPC_EXCHANGE, crate::names::DEFAULT_RPC_EXCHANGE)
    }

    /// `max_workers` (default 10; 0 means the default, as in nameko).
    pub fn max_workers(&self) -> usize {
        match self.int_or(&keys::MAX_WORKERS, 0) {
            0 => 10,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    /// `WEB_SERVER_ADDRESS`: where the process's HTTP server for `#[http]`
    /// entrypoints listens (default `0.0.0.0:8000`, as nameko's).
    pub fn web_server_address(&self) -> &str {
        self.str_or(&keys::WEB_SERVER_ADDRESS, keys::DEFAULT_WEB_SERVER_ADDRESS)
    }

    /// `parent_calls_tracked` (default 10).
    pub fn parent_calls_tracked(&self) -> usize {
        let default = crate::context::DEFAULT_PARENT_CALLS_TRACKED as u64;
        usize::try_from(self.int_or(&keys::PARENT_CALLS_TRACKED, default)).unwrap_or(usize::MAX)
    }

    /// `PREFETCH_COUNT` (default `max_workers`, at most 65535; 0 also means
    /// `max_workers`: a consumer's prefetch is always bounded).
    pub fn prefetch_count(&self) -> u16 {
        let n = match self.int_or(&keys::PREFETCH_COUNT, 0) {
            0 => self.max_workers() as u64,
            n => n,
        };
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    /// `AMQP_IO_THREAD` (default true): see
    /// [`AmqpOptions::io_thread`](crate::transport::AmqpOptions::io_thread).
    pub fn amqp_io_thread(&self) -> bool {
        self.bool_or(&keys::AMQP_IO_THREAD, true)
    }

    /// `HEARTBEAT` in seconds (default 60).
    pub fn heartbeat(&self) -> u16 {
        u16::try_from(self.int_or(&keys::HEARTBEAT, 60)).unwrap_or(u16::MAX)
    }

    /// `AUTO_DELETE_EVENT_EXCHANGES` (default false).
    pub fn auto_delete_event_exchanges(&self) -> bool {
        self.bool_or(&keys::AUTO_DELETE_EVENT_EXCHANGES, false)
    }

    /// `DECLARE_EVENT_EXCHANGES` (default true).
    pub fn declare_event_exchanges(&self) -> bool {
        self.bool_or(&keys::DECLARE_EVENT_EXCHANGES, true)
    }

    /// `RPC_REPLY_QUEUE`: the form of an RPC client's reply queue (default
    /// [`ReplyQueue::Transient`]).
    pub fn reply_queue(&self) -> ReplyQueue {
        match self.present(&keys::RPC_REPLY_QUEUE).and_then(Value::as_str) {
            Some("durable") => ReplyQueue::Durable,
            _ => ReplyQueue::Transient,
        }
    }

    /// `QUEUE_TYPE`: the type of the durable work queues (default
    /// [`QueueType::Classic`]).
    pub fn queue_type(&self) -> QueueType {
        match self.present(&keys::QUEUE_TYPE).and_then(Value::as_str) {
            Some("quorum") => QueueType::Quorum,
            _ => QueueType::Classic,
        }
    }

    /// `QUEUE_DELIVERY_LIMIT` (default 5; `None` when set to 0): how often
    /// one message of a work queue may come back unsettled before it is
    /// dead-lettered to `<queue>.dlq`. The broker counts on quorum queues;
    /// enoki counts on classic ones
    /// ([`poison`](crate::entrypoint::poison)).
    pub fn queue_delivery_limit(&self) -> Option<u32> {
        match self.int_or(&keys::QUEUE_DELIVERY_LIMIT, 5) {
            0 => None,
            n => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }

    /// `RETRY_DELAYS`: how long a failing `requeue_on_error` event waits
    /// before each retry (default 1 s, 5 s, 30 s; empty: requeued at once,
    /// as nameko does).
    ///
    /// ```
    /// use std::time::Duration;
    /// use enoki::config::Settings;
    /// use serde_json::json;
    ///
    /// assert_eq!(Settings::new().retry_delays()[2], Duration::from_secs(30));
    /// let quick = Settings::new().with("RETRY_DELAYS", json!([0.5]));
    /// assert_eq!(quick.retry_delays(), [Duration::from_millis(500)]);
    /// ```
    pub fn retry_delays(&self) -> Vec<Duration> {
        let to_duration = |secs: f64| Duration::try_from_secs_f64(secs).ok();
        match self.present(&keys::RETRY_DELAYS).and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(Value::as_f64)
                .filter_map(to_duration)
                .collect(),
            None => keys::DEFAULT_RETRY_DELAYS
                .iter()
                .copied()
                .filter_map(to_duration)
                .collect(),
        }
    }

    /// `RETRY_LIMIT`: retries of a failing `requeue_on_error` event before
    /// it is dead-lettered (default 3).
    pub fn retry_limit(&self) -> u32 {
        u32::try_from(self.int_or(&keys::RETRY_LIMIT, 3)).unwrap_or(u32::MAX)
    }

    /// `GRACE_PERIOD`: how long a graceful stop waits for workers
    /// (default 30 s).
    pub fn grace_period(&self) -> Duration {
        self.seconds(&keys::GRACE_PERIOD)
            .unwrap_or(Duration::from_secs(30))
    }

    /// `RPC_TIMEOUT`: default timeout of standalone RPC calls, if set.
    pub fn rpc_timeout(&self) -> Option<Duration> {
        self.seconds(&keys::RPC_TIMEOUT).filter(|t| !t.is_zero())
    }

    /// Checks the values of the keys enoki reads ([`KEYS`]); the error names
    /// the key and what it must be. A key set to null (e.g. `--define
    /// AMQP_URI=`, or `${UNSET}`) counts as absent: its default applies.
    pub fn validate(&self) -> Result<()> {
        for key in KEYS {
            if let Some(value) = self.present(key) {
                key.check(value)?;
            }
        }
        Ok(())
    }

    /// Every known key with its value here, or its default (`None` when it
    /// has none), and the key itself: what `show-config --all` prints.
    pub fn effective(&self) -> Vec<(&'static ConfigKey, Option<Value>)> {
        KEYS.iter()
            .map(|key| {
                let value = self
                    .present(key)
                    .cloned()
                    .or_else(|| key.default.to_value());
                (key, value)
            })
            .collect()
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The known key closest to `key` (case-insensitive, within 3 edits).
fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let key = key.to_lowercase();
    candidates
        .map(|c| (edit_distance(&key, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substituted_values_are_parsed_again() {
        // SAFETY-free: only reads variables that are unset in tests.
        let settings = Settings::from_yaml_str(
            "max_workers: ${ENOKI_TEST_UNSET_1:64}\nlist: ${ENOKI_TEST_UNSET_2:[1, 2]}\nraw: !raw_env_var ${ENOKI_TEST_UNSET_3:8000}\n",
            "test.yaml",
        )
        .unwrap();
        assert_eq!(settings.max_workers(), 64);
        assert_eq!(settings.get("list"), Some(&serde_json::json!([1, 2])));
        assert_eq!(settings.get("raw"), Some(&serde_json::json!("8000")));
    }

    #[test]
    fn unset_variables_are_null_and_unchanged_text_is_kept() {
        let settings = Settings::from_yaml_str(
            "a: ${ENOKI_TEST_UNSET_4}\nb: x${ENOKI_TEST_UNSET_5}\nc: ${ }\nd: ${ENOKI_TEST_UNSET_6:'007'}\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(settings.get("a"), Some(&Value::Null));
        assert_eq!(settings.get("b"), Some(&serde_json::json!("x")));
        assert_eq!(settings.get("c"), Some(&serde_json::json!("${ }")));
        assert_eq!(settings.get("d"), Some(&serde_json::json!("007")));
        settings.validate().unwrap();
    }

    #[test]
    fn values_are_validated() {
        let bad = |yaml: &str| {
            Settings::from_yaml_str(yaml, "t.yaml")
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        assert!(bad("HEARTBEAT: 70000\n").contains("HEARTBEAT"));
        assert!(bad("PREFETCH_COUNT: -1\n").contains("PREFETCH_COUNT"));
        assert!(bad("serializer: pickle\n").contains("serializer"));
        assert!(bad("ACCEPT: [pickle]\n").contains("ACCEPT"));
        assert!(bad("rpc_exchange: ''\n").contains("rpc_exchange"));
        assert!(bad("AMQP_URI: 5\n").contains("AMQP_URI"));
        assert!(bad("DECLARE_EVENT_EXCHANGES: maybe\n").contains("DECLARE_EVENT_EXCHANGES"));
        assert!(bad("GRACE_PERIOD: soon\n").contains("GRACE_PERIOD"));
        assert_eq!(
            bad("RPC_REPLY_QUEUE: exclusive\n"),
            "configuration error: `RPC_REPLY_QUEUE` must be one of transient, durable, got \"exclusive\""
        );
        assert!(bad("RPC_REPLY_QUEUE: true\n").contains("RPC_REPLY_QUEUE"));
        let ok = Settings::from_yaml_str(
            "AMQP_URI: null\nACCEPT: [json]\nserializer: json\nHEARTBEAT: 0\nmax_workers: 0\n",
            "t.yaml",
        )
        .unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.amqp_uri(), None);
        assert_eq!(ok.max_workers(), 10);
    }

    #[test]
    fn bad_files_name_the_problem() {
        let err = Settings::from_yaml_str("a: [1, 2", "bad.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.yaml") && err.contains("not valid YAML"),
            "{err}"
        );
        let err = Settings::from_yaml_str("- 1\n- 2\n", "list.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a mapping"), "{err}");
        let settings = Settings::from_yaml_str("AMQP_URL: x\n", "typo.yaml").unwrap();
        let err = settings
            .check_keys(&[], "typo.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key `AMQP_URL`") && err.contains("AMQP_URI"),
            "{err}"
        );
        let settings = Settings::from_yaml_str("max_workers: many\n", "t.yaml").unwrap();
        assert!(settings.validate().is_err());
    }

    #[test]
    fn defaults() {
        let settings = Settings::new();
        assert_eq!(settings.max_workers(), 10);
        assert_eq!(settings.prefetch_count(), 10);
        assert_eq!(settings.parent_calls_tracked(), 10);
        assert_eq!(settings.rpc_exchange(), "nameko-rpc");
        assert_eq!(settings.heartbeat(), 60);
        assert!(settings.declare_event_exchanges());
        assert!(!settings.auto_delete_event_exchanges());
        assert_eq!(settings.amqp_uri(), None);
        assert_eq!(settings.reply_queue(), ReplyQueue::Transient);
        let durable = Settings::from_yaml_str("RPC_REPLY_QUEUE: durable\n", "t.yaml").unwrap();
        durable.validate().unwrap();
        assert_eq!(durable.reply_queue(), ReplyQueue::Durable);
        assert!(settings.amqp_io_thread());
        assert_eq!(settings.queue_type(), QueueType::Classic);
        assert_eq!(settings.queue_delivery_limit(), Some(5));
        let fleet = Settings::from_yaml_str(
            "QUEUE_TYPE: quorum\nQUEUE_DELIVERY_LIMIT: 0\nAMQP_IO_THREAD: false\n",
            "t.yaml",
        )
        .unwrap();
        fleet.validate().unwrap();
        assert_eq!(fleet.queue_type(), QueueType::Quorum);
        assert_eq!(fleet.queue_delivery_limit(), None);
        assert!(!fleet.amqp_io_thread());
        let bad = Settings::from_yaml_str("QUEUE_TYPE: raft\n", "t.yaml").unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("QUEUE_TYPE") && err.contains("quorum"),
            "{err}"
        );
    }
}
