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

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::context::DEFAULT_PARENT_CALLS_TRACKED;
use crate::error::{Error, Result};
use crate::message::DEFAULT_RPC_EXCHANGE;

/// The keys enoki itself reads, with what they mean.
pub const KNOWN_KEYS: &[(&str, &str)] = &[
    (
        "AMQP_URI",
        "broker URI; without it everything runs on the embedded transport",
    ),
    ("rpc_exchange", "RPC exchange name (default nameko-rpc)"),
    (
        "max_workers",
        "concurrent workers per container (default 10)",
    ),
    ("parent_calls_tracked", "call-id stack depth (default 10)"),
    ("serializer", "message serializer; only json is supported"),
    ("ACCEPT", "accepted serializers; only json is supported"),
    ("HEARTBEAT", "AMQP heartbeat in seconds (default 60)"),
    (
        "PREFETCH_COUNT",
        "unsettled deliveries per consumer (default max_workers)",
    ),
    (
        "AUTO_DELETE_EVENT_EXCHANGES",
        "declare event exchanges auto-delete (default false)",
    ),
    (
        "DECLARE_EVENT_EXCHANGES",
        "declare event exchanges at all (default true)",
    ),
    (
        "LOGGING",
        "nameko's logging dictionary (ignored; use RUST_LOG)",
    ),
    ("WEB_SERVER_ADDRESS", "gateway listen address"),
    ("GATEWAY", "gateway settings"),
    (
        "GRACE_PERIOD",
        "seconds to wait for in-flight workers on stop (default 30)",
    ),
    (
        "RPC_TIMEOUT",
        "default timeout of standalone RPC calls in seconds",
    ),
];

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
        let value = resolve(yaml).map_err(|err| Error::Config(format!("{source}: {err}")))?;
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
            let known =
                KNOWN_KEYS.iter().any(|(k, _)| k == key) || extra_keys.contains(&key.as_str());
            if !known {
                let candidates = KNOWN_KEYS
                    .iter()
                    .map(|(k, _)| *k)
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

    /// `AMQP_URI`, if set and not empty.
    pub fn amqp_uri(&self) -> Option<&str> {
        self.get("AMQP_URI")
            .and_then(Value::as_str)
            .filter(|uri| !uri.is_empty())
    }

    /// `rpc_exchange` (default `nameko-rpc`).
    pub fn rpc_exchange(&self) -> &str {
        self.get("rpc_exchange")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_RPC_EXCHANGE)
    }

    /// `max_workers` (default 10; 0 means the default, as in nameko).
    pub fn max_workers(&self) -> usize {
        match self.get("max_workers").and_then(Value::as_u64) {
            Some(0) | None => 10,
            Some(n) => n as usize,
        }
    }

    /// `parent_calls_tracked` (default 10).
    pub fn parent_calls_tracked(&self) -> usize {
        self.get("parent_calls_tracked")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_PARENT_CALLS_TRACKED, |n| n as usize)
    }

    /// `PREFETCH_COUNT` (default `max_workers`).
    pub fn prefetch_count(&self) -> u16 {
        self.get("PREFETCH_COUNT")
            .and_then(Value::as_u64)
            .map_or(self.max_workers(), |n| n as usize)
            .min(u16::MAX as usize) as u16
    }

    /// `HEARTBEAT` in seconds (default 60).
    pub fn heartbeat(&self) -> u16 {
        self.get("HEARTBEAT")
            .and_then(Value::as_u64)
            .map_or(60, |n| n.min(u16::MAX as u64) as u16)
    }

    /// `AUTO_DELETE_EVENT_EXCHANGES` (default false).
    pub fn auto_delete_event_exchanges(&self) -> bool {
        self.get("AUTO_DELETE_EVENT_EXCHANGES")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `DECLARE_EVENT_EXCHANGES` (default true).
    pub fn declare_event_exchanges(&self) -> bool {
        self.get("DECLARE_EVENT_EXCHANGES")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// `GRACE_PERIOD`: how long a graceful stop waits for workers.
    pub fn grace_period(&self) -> std::time::Duration {
        let secs = self
            .get("GRACE_PERIOD")
            .and_then(Value::as_f64)
            .unwrap_or(30.0);
        std::time::Duration::from_secs_f64(secs.max(0.0))
    }

    /// `RPC_TIMEOUT`: default timeout of standalone RPC calls, if set.
    pub fn rpc_timeout(&self) -> Option<std::time::Duration> {
        self.get("RPC_TIMEOUT")
            .and_then(Value::as_f64)
            .filter(|secs| *secs > 0.0)
            .map(std::time::Duration::from_secs_f64)
    }

    /// Checks the values of the keys enoki reads. A key set to null (e.g.
    /// `--define AMQP_URI=`, or `${UNSET}`) counts as absent: its default
    /// applies.
    pub fn validate(&self) -> Result<()> {
        let present = |key: &str| self.get(key).filter(|value| !value.is_null());
        for (key, max) in [
            ("max_workers", u64::from(u32::MAX)),
            ("parent_calls_tracked", u64::from(u32::MAX)),
            ("HEARTBEAT", u64::from(u16::MAX)),
            ("PREFETCH_COUNT", u64::from(u16::MAX)),
        ] {
            if let Some(value) = present(key)
                && value.as_u64().is_none_or(|n| n > max)
            {
                return Err(Error::Config(format!(
                    "`{key}` must be an integer from 0 to {max}, got {value}"
                )));
            }
        }
        for key in ["GRACE_PERIOD", "RPC_TIMEOUT"] {
            if let Some(value) = present(key)
                && !value
                    .as_f64()
                    .is_some_and(|n| n.is_finite() && (0.0..1e9).contains(&n))
            {
                return Err(Error::Config(format!(
                    "`{key}` must be a non-negative number of seconds, got {value}"
                )));
            }
        }
        for key in ["AUTO_DELETE_EVENT_EXCHANGES", "DECLARE_EVENT_EXCHANGES"] {
            if let Some(value) = present(key)
                && !value.is_boolean()
            {
                return Err(Error::Config(format!(
                    "`{key}` must be true or false, got {value}"
                )));
            }
        }
        for key in ["AMQP_URI", "rpc_exchange"] {
            if let Some(value) = present(key)
                && !value.is_string()
            {
                return Err(Error::Config(format!(
                    "`{key}` must be a string, got {value}"
                )));
            }
        }
        if present("rpc_exchange").and_then(Value::as_str) == Some("") {
            return Err(Error::Config("`rpc_exchange` must not be empty".into()));
        }
        if let Some(serializer) = present("serializer")
            && serializer.as_str() != Some("json")
        {
            return Err(Error::Config(format!(
                "`serializer` must be json (the only serializer enoki speaks), got {serializer}"
            )));
        }
        if let Some(accept) = present("ACCEPT") {
            let names: Option<Vec<&str>> = match accept {
                Value::String(name) => Some(vec![name.as_str()]),
                Value::Array(items) => items.iter().map(Value::as_str).collect(),
                _ => None,
            };
            match names {
                Some(names)
                    if names
                        .iter()
                        .any(|name| *name == "json" || *name == "application/json") => {}
                _ => {
                    return Err(Error::Config(format!(
                        "`ACCEPT` must be a list of serializer names including json, got {accept}"
                    )));
                }
            }
        }
        Ok(())
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

// ===== YAML with ${VAR} substitution =====

fn resolve(yaml: serde_yaml_ng::Value) -> std::result::Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).map_err(|e| e.to_string())?,
        Y::String(s) if s.contains("${") => substituted(s, false)?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(resolve).collect::<Result<_, _>>()?)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let key = match key {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("mapping keys must be scalars, got {other:?}")),
                };
                out.insert(key, resolve(value)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            match (tag.trim_start_matches('!'), tagged.value) {
                ("env_var", Y::String(s)) => substituted(s, false)?,
                ("raw_env_var", Y::String(s)) => substituted(s, true)?,
                (_, other) => return Err(format!("unsupported tag {tag} on {other:?}")),
            }
        }
    })
}

/// nameko's `env_var_constructor`: a scalar with nothing substituted stays
/// the string it was; otherwise the result is reparsed, unless `raw`.
fn substituted(text: String, raw: bool) -> std::result::Result<Value, String> {
    let value = substitute(&text)?;
    if value == text || raw {
        Ok(Value::String(value))
    } else {
        reparse(&value)
    }
}

/// A substituted value is parsed again as YAML (nameko's behaviour: an
/// empty result is null). Text that is not valid YAML after substitution
/// stays a string (nameko would fail to load the file).
fn reparse(text: &str) -> std::result::Result<Value, String> {
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(yaml) => resolve_plain(yaml),
        Err(_) => Ok(Value::String(text.to_owned())),
    }
}

fn resolve_plain(yaml: serde_yaml_ng::Value) -> std::result::Result<Value, String> {
    serde_json::to_value(yaml).map_err(|err| err.to_string())
}

/// Replaces `${VAR}` and `${VAR:default}` (defaults may nest); a missing
/// variable with no default becomes the empty string, as in nameko. As with
/// nameko's pattern, a variable name is any run of characters other than
/// `}`, `:` and whitespace; text that does not match (`${}`, `${ X }`, an
/// unclosed `${`) is left as it is.
pub fn substitute(text: &str) -> std::result::Result<String, String> {
    substitute_with(text, &|name| std::env::var(name).ok())
}

fn substitute_with(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let body_start = start + 2;
        // Find the matching `}`, allowing nested `${...}` in the default.
        let mut depth = 1;
        let mut end = None;
        let bytes = rest.as_bytes();
        let mut i = body_start;
        while i < bytes.len() {
            if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
                depth += 1;
                i += 2;
                continue;
            }
            if bytes[i] == b'}' {
                depth -= 1;
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            }
            i += 1;
        }
        let Some(end) = end else {
            // Unclosed: nothing more to substitute.
            break;
        };
        let body = &rest[body_start..end];
        let (name, default) = match body.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '}') {
            // Not a variable reference: keep `${` and go on after it.
            out.push_str("${");
            rest = &rest[body_start..];
            continue;
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(&substitute_with(default, lookup)?),
            (None, None) => {}
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("rabbit".into()),
            "PORT" => Some("5673".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_like_nameko() {
        let s = |t| substitute_with(t, &env).unwrap();
        assert_eq!(s("amqp://${HOST}:${PORT}"), "amqp://rabbit:5673");
        assert_eq!(s("${MISSING:guest}"), "guest");
        assert_eq!(s("${MISSING}"), "");
        assert_eq!(s("${MISSING:${HOST:x}}"), "rabbit");
        assert_eq!(s("pa$$word"), "pa$$word");
        assert_eq!(s("${HOST"), "${HOST");
        assert_eq!(s("a ${} b ${ HOST } ${HOST}"), "a ${} b ${ HOST } rabbit");
        assert_eq!(s("${my.var-1:d}"), "d");
    }

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
    }
}
