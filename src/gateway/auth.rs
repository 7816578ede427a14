//! Optional bearer-token authentication: JWTs signed with a shared secret
//! (HS256) or static API keys, with per-route and per-event-pattern rules.
//!
//! ```yaml
//! GATEWAY:
//!   auth:
//!     enabled: true
//!     jwt_secret: ${JWT_SECRET}     # HS256; the user id is the `sub` claim
//!     user_claim: sub
//!     allow_no_exp: false           # tokens must carry `exp` (the default)
//!     leeway: 5                     # seconds of clock skew for exp/nbf
//!     api_keys:                     # token → user id
//!       k-3f9a: alice
//!     default: authenticated        # or: public (the default)
//!     routes:                       # first match wins; `*` is any text
//!       - { path: "/hello/*", allow: public }
//!       - { path: "/rpc/manual_service/*", methods: [POST], users: [alice] }
//!     events:                       # by `service.event_type` pattern
//!       - { pattern: "clock.*", allow: public }
//! ```
//!
//! Tokens come from `Authorization: Bearer <token>`, or from the `token`
//! query parameter (browsers cannot set headers on WebSocket and
//! EventSource requests). A valid token's user id becomes the `user_id`
//! context data the called services see (`ctx.user_id()`). A request that
//! needs a user and has none (or a bad token) gets 401; a user the rule does
//! not list gets 403. Infrastructure paths (`/`, static files, `/healthz`,
//! `/readyz`, `/metrics`, `/openapi.json`, `/asyncapi.json`, `/api/info`) are always public.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The `GATEWAY.auth` mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether tokens are checked at all (default false).
    pub enabled: bool,
    /// The HS256 shared secret of accepted JWTs.
    pub jwt_secret: Option<String>,
    /// The claim holding the user id (default `sub`).
    pub user_claim: Option<String>,
    /// Accept JWTs without an `exp` claim (default false: a token must
    /// expire).
    pub allow_no_exp: bool,
    /// Seconds of clock skew allowed when checking `exp` and `nbf`
    /// (default 5, at most 300).
    pub leeway: u64,
    /// Static API keys: token → user id.
    pub api_keys: HashMap<String, String>,
    /// Access of what no rule matches (default `public`).
    pub default: Access,
    /// Rules for HTTP paths (routes, `/rpc/...`, `/ws`, `/events`).
    pub routes: Vec<RouteRule>,
    /// Rules for event subscriptions.
    pub events: Vec<EventRule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            jwt_secret: None,
            user_claim: None,
            allow_no_exp: false,
            leeway: 5,
            api_keys: HashMap::new(),
            default: Access::default(),
            routes: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// Who may do something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Anyone, with or without a token.
    #[default]
    Public,
    /// Anyone with a valid token.
    Authenticated,
}

/// A rule for HTTP paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// A path pattern; `*` matches any text.
    pub path: String,
    /// The methods it applies to (default all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Who may call (default `authenticated`).
    #[serde(default = "authenticated")]
    pub allow: Access,
    /// If set, only these user ids.
    #[serde(default)]
    pub users: Vec<String>,
}

/// A rule for event subscriptions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRule {
    /// A `service.event_type` pattern; `*` matches any text.
    pub pattern: String,
    /// Who may subscribe (default `authenticated`).
    #[serde(default = "authenticated")]
    pub allow: Access,
    /// If set, only these user ids.
    #[serde(default)]
    pub users: Vec<String>,
}

fn authenticated() -> Access {
    Access::Authenticated
}

/// The most clock skew `GATEWAY.auth.leeway` may allow, in seconds.
pub const MAX_LEEWAY: u64 = 300;

impl AuthConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.leeway > MAX_LEEWAY {
            return Err(Error::Config(format!(
                "GATEWAY.auth.leeway must be at most {MAX_LEEWAY} seconds, got {}",
                self.leeway
            )));
        }
        if self.enabled && self.jwt_secret.is_none() && self.api_keys.is_empty() {
            return Err(Error::Config(
                "GATEWAY.auth is enabled but has neither jwt_secret nor api_keys".into(),
            ));
        }
        Ok(())
    }
}

/// A refused request: 401 or 403, with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// 401 (no or bad credentials) or 403 (not allowed).
    pub status: StatusCode,
    /// Why.
    pub message: String,
}

impl Denied {
    fn unauthorized(message: impl Into<String>) -> Self {
        Denied {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Denied {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// `Unauthorized` or `Forbidden`.
    pub fn kind(&self) -> &'static str {
        if self.status == StatusCode::UNAUTHORIZED {
            "Unauthorized"
        } else {
            "Forbidden"
        }
    }
}

/// The user of a request, as the auth layer identified it: `None` without
/// a token, or with auth off. An axum extractor (it never fails):
///
/// ```
/// use enoki::gateway::auth::Identity;
///
/// async fn handler(identity: Identity) -> String {
///     identity.user().unwrap_or("anonymous").to_owned()
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(handler));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity(Option<String>);

impl Identity {
    /// The identity of `user`.
    pub fn new(user: Option<String>) -> Self {
        Identity(user)
    }

    /// The user id, if the request carried a valid token.
    pub fn user(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<Identity>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The checker built from [`AuthConfig`].
pub struct Auth {
    config: AuthConfig,
    key: Option<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("enabled", &self.config.enabled)
            .field("jwt", &self.key.is_some())
            .field("api_keys", &self.config.api_keys.len())
            .finish()
    }
}

impl Auth {
    /// A checker for `config`.
    pub fn new(config: AuthConfig) -> Self {
        let key = config
            .jwt_secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        if !config.allow_no_exp {
            validation.required_spec_claims.insert("exp".to_owned());
        }
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = config.leeway;
        validation.validate_aud = false;
        Auth {
            config,
            key,
            validation,
        }
    }

    /// Whether auth is on.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The user of a request: `Ok(None)` without a token, 401 for a bad one.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> std::result::Result<Option<String>, Denied> {
        if !self.config.enabled {
            return Ok(None);
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .ok_or_else(|| Denied::unauthorized("Authorization must be `Bearer <token>`"))
            })
            .transpose()?;
        let Some(token) = bearer.or(query_token).map(str::trim) else {
            return Ok(None);
        };
        if let Some(user) = self.config.api_keys.get(token) {
            return Ok(Some(user.clone()));
        }
        let Some(key) = &self.key else {
            return Err(Denied::unauthorized("unknown API key"));
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &self.validation,
        )
        .map_err(|err| Denied::unauthorized(format!("invalid token: {err}")))?;
        let claim = self.config.user_claim.as_deref().unwrap_or("sub");
        match data.claims.get(claim) {
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            _ => Err(Denied::unauthorized(format!(
                "the token has no `{claim}` claim"
            ))),
        }
    }

    /// May `user` call `method path`? `path` is matched as
    /// [`normalize_path`] spells it.
    pub fn check_path(
        &self,
        method: &Method,
        path: &str,
        user: Option<&str>,
    ) -> std::result::Result<(), Denied> {
        if !self.config.enabled {
            return Ok(());
        }
        let path = normalize_path(path);
        let path = path.as_str();
        let rule = self.config.routes.iter().find(|r| {
            glob(&r.path, path)
                && (r.methods.is_empty()
                    || r.methods
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(method.as_str())))
        });
        let (allow, users) = rule.map_or((self.config.default, &[][..]), |r| {
            (r.allow, r.users.as_slice())
        });
        decide(allow, users, user, &format!("{method} {path}"))
    }

    /// May `user` subscribe to `pattern` (`service.event_type`)?
    pub fn check_event(
        &self,
        pattern: &str,
        user: Option<&str>,
    ) -> std::result::Result<(), Denied> {
        if !self.config.enabled {
            return Ok(());
        }
        let rule = self
            .config
            .events
            .iter()
            .find(|r| glob(&r.pattern, pattern));
        let (allow, users) = rule.map_or((self.config.default, &[][..]), |r| {
            (r.allow, r.users.as_slice())
        });
        decide(allow, users, user, &format!("events {pattern}"))
    }
}

fn decide(
    allow: Access,
    users: &[String],
    user: Option<&str>,
    what: &str,
) -> std::result::Result<(), Denied> {
    if allow == Access::Public && users.is_empty() {
        return Ok(());
    }
    let Some(user) = user else {
        return Err(Denied::unauthorized(format!("{what} needs a bearer token")));
    };
    if users.is_empty() || users.iter().any(|u| u == user) {
        Ok(())
    } else {
        Err(Denied::forbidden(format!(
            "user `{user}` may not access {what}"
        )))
    }
}

/// A request path as authorization sees it: the same target however it is
/// spelled. Each segment is percent-decoded (`%5F`, `%5f` and `_` are one
/// character), empty segments are dropped (`//a/` is `/a`), and a `/` that
/// was encoded inside a segment stays `%2F`, so decoding cannot split or
/// join segments.
///
/// ```
/// use enoki::gateway::auth::normalize_path;
///
/// assert_eq!(normalize_path("/rpc/manual%5Fservice/add"), "/rpc/manual_service/add");
/// assert_eq!(normalize_path("//rpc//manual_service/add/"), "/rpc/manual_service/add");
/// assert_eq!(normalize_path("/a%2Fb/c"), "/a%2Fb/c");
/// assert_eq!(normalize_path("/"), "/");
/// ```
pub fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        for c in decoded.chars() {
            match c {
                '/' => out.push_str("%2F"),
                c => out.push(c),
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("/hello/*", "/hello/ann"));
        assert!(glob("*", ""));
        assert!(glob("clock.*", "clock.tick"));
        assert!(!glob("clock.*", "greeter.greeted"));
        assert!(glob("/a/*/c", "/a/b/c"));
        assert!(!glob("/a", "/ab"));
    }
}
