//! The gateway's settings: the `GATEWAY` mapping of the nameko-style YAML
//! config. Every field is optional; unknown fields are errors.
//!
//! ```yaml
//! GATEWAY:
//!   rpc:                      # the generic POST /rpc/{service}/{method}
//!     enabled: true
//!     services: [greeter]     # omit for every service
//!     rate_limit: { requests: 50, per: 1, burst: 100, by: client }  # none by default
//!   request_timeout: 30       # seconds for a whole HTTP request (504 after)
//!   header_timeout: 10        # seconds a client may take to send its headers
//!   max_connections: 10000    # open connections; more are closed at once
//!   rpc_timeout: 10           # default per-route RPC timeout, seconds
//!   body_limit: 1048576       # bytes (413 above)
//!   concurrency_limit: 1024   # requests in flight (503 + Retry-After above)
//!   retry_after: 1            # seconds, in the Retry-After of a 503
//!   compression: true         # gzip responses when the client accepts it
//!   cors:
//!     allow_origins: ["*"]    # empty (the default): no CORS headers
//!   client_queue: 256         # events buffered per WebSocket/SSE client
//!   slow_client: drop_oldest  # or: disconnect
//!   sse_keepalive: 15         # seconds between SSE keep-alive comments
//!   max_subscriptions: 64     # event patterns per WebSocket/SSE client
//!   event_sources: [payments] # services clients may subscribe to, besides the
//!                             # embedded ones, route targets, and any whose
//!                             # `<service>.events` exchange exists
//!   error_status:             # HTTP status by remote exc_type (default 500)
//!     ValueError: 422
//!   auth: { ... }             # see enoki::gateway::auth
//! ```

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::auth::AuthConfig;
use super::rate_limit::RateLimit;
use crate::config::{MAX_CONFIG_SECONDS, Settings, positive_seconds};
use crate::error::{Error, Result};

/// The config key of the gateway's settings.
pub const CONFIG_KEY: &str = "GATEWAY";

/// The `GATEWAY` mapping. See the [module docs](self) for the YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The generic `POST /rpc/{service}/{method}` endpoint.
    pub rpc: GenericRpc,
    /// Seconds a whole HTTP request may take before a 504.
    pub request_timeout: f64,
    /// Seconds a client may take to send a request's headers (slowloris).
    pub header_timeout: f64,
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Default RPC timeout of routes without their own, in seconds.
    pub rpc_timeout: f64,
    /// Largest request body in bytes; larger ones get 413.
    pub body_limit: usize,
    /// Requests handled at once; more are shed with 503 and `Retry-After`.
    pub concurrency_limit: usize,
    /// The `Retry-After` of a shed request, in seconds.
    pub retry_after: u64,
    /// Gzip responses for clients that accept it.
    pub compression: bool,
    /// Cross-origin resource sharing.
    pub cors: CorsConfig,
    /// Events buffered per WebSocket or SSE client.
    pub client_queue: usize,
    /// What happens when a client's queue is full.
    pub slow_client: SlowClient,
    /// Seconds between SSE keep-alive comments.
    pub sse_keepalive: f64,
    /// Event patterns one WebSocket or SSE client may subscribe to.
    pub max_subscriptions: usize,
    /// Services whose events clients may subscribe to, besides the embedded
    /// services, the targets of routes, and those whose event exchange
    /// exists on the broker. The gateway never creates an exchange for a
    /// name a client made up.
    pub event_sources: Vec<String>,
    /// HTTP status for a remote error, by its `exc_type`.
    pub error_status: HashMap<String, u16>,
    /// Bearer-token authentication (off by default).
    pub auth: AuthConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            rpc: GenericRpc::default(),
            request_timeout: 30.0,
            header_timeout: 10.0,
            max_connections: 10_000,
            rpc_timeout: 10.0,
            body_limit: 1024 * 1024,
            concurrency_limit: 1024,
            retry_after: 1,
            compression: true,
            cors: CorsConfig::default(),
            client_queue: 256,
            slow_client: SlowClient::DropOldest,
            sse_keepalive: 15.0,
            max_subscriptions: 64,
            event_sources: Vec::new(),
            error_status: HashMap::new(),
            auth: AuthConfig::default(),
        }
    }
}

/// The generic RPC endpoint's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenericRpc {
    /// Whether `POST /rpc/{service}/{method}` exists (default true).
    pub enabled: bool,
    /// The services it may call; `None` (the default) is every service.
    pub services: Option<Vec<String>>,
    /// Its rate limit (none by default; see
    /// [`rate_limit`](super::rate_limit)).
    pub rate_limit: Option<RateLimit>,
}

impl Default for GenericRpc {
    fn default() -> Self {
        GenericRpc {
            enabled: true,
            services: None,
            rate_limit: None,
        }
    }
}

impl GenericRpc {
    /// Whether the generic endpoint may call `service`.
    pub fn allows(&self, service: &str) -> bool {
        self.enabled
            && self
                .services
                .as_ref()
                .is_none_or(|list| list.iter().any(|s| s == service))
    }
}

/// CORS settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Allowed origins; `"*"` allows any. Empty: no CORS layer.
    pub allow_origins: Vec<String>,
    /// Seconds browsers may cache a preflight answer.
    pub max_age: Option<u64>,
}

/// What to do with a client whose event queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowClient {
    /// Drop its oldest queued event (it is told how many it missed).
    #[default]
    DropOldest,
    /// Disconnect it.
    Disconnect,
}

impl GatewayConfig {
    /// Reads the `GATEWAY` key of `settings` (defaults when absent).
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let config = match settings.get(CONFIG_KEY) {
            None | Some(serde_json::Value::Null) => GatewayConfig::default(),
            Some(value) => GatewayConfig::deserialize(value)
                .map_err(|err| Error::Config(format!("{CONFIG_KEY}: {err}")))?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, secs: f64| {
            positive_seconds(&format!("{CONFIG_KEY}.{name}"), secs, MAX_CONFIG_SECONDS)
                .map(|_| ())
                .map_err(|err| Error::Config(err.to_string()))
        };
        positive("request_timeout", self.request_timeout)?;
        positive("header_timeout", self.header_timeout)?;
        positive("rpc_timeout", self.rpc_timeout)?;
        positive("sse_keepalive", self.sse_keepalive)?;
        for (name, value) in [
            ("client_queue", self.client_queue),
            ("concurrency_limit", self.concurrency_limit),
            ("body_limit", self.body_limit),
            ("max_subscriptions", self.max_subscriptions),
            ("max_connections", self.max_connections),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{CONFIG_KEY}.{name} must be > 0")));
            }
        }
        for (exc_type, status) in &self.error_status {
            if !(400..=599).contains(status) {
                return Err(Error::Config(format!(
                    "{CONFIG_KEY}.error_status.{exc_type}: {status} is not an error status (400-599)"
                )));
            }
        }
        if let Some(limit) = &self.rpc.rate_limit {
            limit
                .validate()
                .map_err(|err| Error::Config(format!("{CONFIG_KEY}.rpc.rate_limit: {err}")))?;
        }
        self.auth.validate()
    }

    /// [`GatewayConfig::request_timeout`] as a duration (the default, 30 s,
    /// if the value does not pass [`validate`](Self::validate)).
    pub fn request_timeout(&self) -> Duration {
        positive_seconds("request_timeout", self.request_timeout, MAX_CONFIG_SECONDS)
            .unwrap_or(Duration::from_secs(30))
    }

    /// [`GatewayConfig::header_timeout`] as a duration (the default, 10 s,
    /// if the value does not pass [`validate`](Self::validate)).
    pub fn header_timeout(&self) -> Duration {
        positive_seconds("header_timeout", self.header_timeout, MAX_CONFIG_SECONDS)
            .unwrap_or(Duration::from_secs(10))
    }

    /// [`GatewayConfig::rpc_timeout`] as a duration (the default, 10 s, if
    /// the value does not pass [`validate`](Self::validate)).
    pub fn rpc_timeout(&self) -> Duration {
        positive_seconds("rpc_timeout", self.rpc_timeout, MAX_CONFIG_SECONDS)
            .unwrap_or(Duration::from_secs(10))
    }

    /// [`GatewayConfig::sse_keepalive`] as a duration (the default, 15 s, if
    /// the value does not pass [`validate`](Self::validate)).
    pub fn sse_keepalive(&self) -> Duration {
        positive_seconds("sse_keepalive", self.sse_keepalive, MAX_CONFIG_SECONDS)
            .unwrap_or(Duration::from_secs(15))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_be_sane_seconds() {
        for yaml in [
            "request_timeout: 1e20",
            "request_timeout: .nan",
            "header_timeout: -1",
            "rpc_timeout: 0",
            "sse_keepalive: .inf",
            "rpc_timeout: 86401",
        ] {
            let config: GatewayConfig = serde_yaml_ng::from_str(yaml).unwrap();
            let err = config.validate().unwrap_err().to_string();
            let key = yaml.split(':').next().unwrap();
            assert!(
                err.contains(&format!("GATEWAY.{key}")) && err.contains("at most 86400"),
                "{yaml}: {err}"
            );
            // The getters never panic, even on a config that was not checked.
            let _ = (
                config.request_timeout(),
                config.header_timeout(),
                config.rpc_timeout(),
                config.sse_keepalive(),
            );
        }
        let ok: GatewayConfig = serde_yaml_ng::from_str("rpc_timeout: 2.5").unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.rpc_timeout(), Duration::from_millis(2500));
    }
}
