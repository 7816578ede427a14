//! [`ApiError`]: every error the gateway answers, as JSON with a status:
//! `{"error": {"type", "message", "status", ...}}`.
//!
//! | cause | status | `type` |
//! |---|---|---|
//! | unknown service | 404 | `UnknownService` |
//! | unknown method | 404 | `MethodNotFound` |
//! | wrong arguments | 400 | `IncorrectSignature` |
//! | malformed body or parameter | 400 | `MalformedRequest` / `BadRequest` |
//! | body is not JSON | 415 | `UnsupportedMediaType` |
//! | body too large | 413 | `PayloadTooLarge` |
//! | no or bad credentials | 401 | `Unauthorized` |
//! | not allowed | 403 | `Forbidden` |
//! | RPC timeout | 504 | `RpcTimeout` |
//! | broker down | 503 | `ServiceUnavailable` (with `Retry-After`) |
//! | remote `NotFound` / `Conflict` / `BadRequest` | 404 / 409 / 400 (unless `GATEWAY.error_status` says otherwise) | the `exc_type` |
//! | remote error | 500, or `GATEWAY.error_status[exc_type]` | the `exc_type` |

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::auth::Denied;
use crate::error::Error;

/// An error answered as JSON.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error type (`exc_type` for remote errors).
    pub kind: String,
    /// A human-readable message.
    pub message: String,
    /// More fields of the `error` object (`service`, `method`, ...).
    pub extra: Map<String, Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, type and message.
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.to_owned(),
            message: message.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// Adds a field to the `error` object.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Names the called service and method.
    #[must_use]
    pub fn target(self, service: &str, method: &str) -> Self {
        self.with("service", service).with("method", method)
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// The `error` object.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("type".into(), Value::String(self.kind.clone()));
        error.insert("message".into(), Value::String(self.message.clone()));
        error.insert("status".into(), Value::from(self.status.as_u16()));
        error.extend(self.extra.clone());
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl ApiError {
    /// Maps an RPC failure to an HTTP error (the table in the [module
    /// docs](self)); `status_by_type` is `GATEWAY.error_status`.
    pub fn from_rpc(
        err: &Error,
        service: &str,
        method: &str,
        status_by_type: &HashMap<String, u16>,
        retry_after: u64,
    ) -> ApiError {
        let error = match err {
            Error::UnknownService(name) => ApiError::new(
                StatusCode::NOT_FOUND,
                "UnknownService",
                format!("unknown service `{name}`"),
            ),
            Error::RpcTimeout { timeout, .. } => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "RpcTimeout",
                format!("{service}.{method} did not answer within {timeout:?}"),
            ),
            Error::ConnectionLost(_)
            | Error::TransportClosed
            | Error::Transport(_)
            | Error::Broker(_) => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    format!("the broker is unavailable: {err}"),
                );
                e.retry_after = Some(retry_after);
                e
            }
            Error::Remote(remote) => {
                let status = status_by_type
                    .get(&remote.exc_type)
                    .and_then(|s| StatusCode::from_u16(*s).ok())
                    .unwrap_or(match remote.exc_type.as_str() {
                        "MethodNotFound" => StatusCode::NOT_FOUND,
                        "IncorrectSignature" | "MalformedRequest" | "BadRequest" => {
                            StatusCode::BAD_REQUEST
                        }
                        "UnknownService" | "NotFound" => StatusCode::NOT_FOUND,
                        "Conflict" => StatusCode::CONFLICT,
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    });
                ApiError::new(status, &remote.exc_type, remote.value.clone())
                    .with("exc_path", remote.exc_path.clone())
                    .with("exc_args", remote.exc_args.clone())
            }
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "GatewayError",
                other.to_string(),
            ),
        };
        error.target(service, method)
    }
}

impl ApiError {
    /// A subscription to events of a service nobody knows: 404
    /// `UnknownService`.
    pub fn unknown_event_source(service: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownService",
            format!(
                "no events of `{service}`: it is not a service this gateway knows, and \
                 `{service}.events` does not exist on the broker"
            ),
        )
    }

    /// More subscriptions than one client may hold: 429
    /// `TooManySubscriptions`.
    pub fn too_many_subscriptions(max: usize) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManySubscriptions",
            format!("at most {max} subscriptions per client (GATEWAY.max_subscriptions)"),
        )
    }

    /// A subscription the broker could not take: 503 `SubscribeFailed`, or
    /// 400 when the pattern itself is invalid.
    pub fn subscribe_failed(pattern: &dyn std::fmt::Display, err: &Error) -> Self {
        match err {
            Error::Invalid(message) => ApiError::bad_request(message.clone()),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SubscribeFailed",
                format!("cannot subscribe to {pattern}: {err}"),
            ),
        }
    }
}

/// A refused request: 401 or 403, with the rule's message.
impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        ApiError::new(denied.status, denied.kind(), denied.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_keep_their_status_and_kind() {
        let denied = Denied {
            status: StatusCode::FORBIDDEN,
            message: "user `bob` may not access POST /x".into(),
        };
        let err = ApiError::from(denied);
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert_eq!(err.kind, "Forbidden");
        assert_eq!(
            err.body()["error"]["message"],
            "user `bob` may not access POST /x"
        );
    }

    #[test]
    fn rpc_failures_map_to_statuses() {
        let none = HashMap::new();
        let status = |err: Error| ApiError::from_rpc(&err, "s", "m", &none, 1).status;
        assert_eq!(
            status(Error::UnknownService("s".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(Error::TransportClosed),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let remote = crate::RemoteError::incorrect_signature("x");
        assert_eq!(status(Error::Remote(remote)), StatusCode::BAD_REQUEST);
        let mut custom = HashMap::new();
        custom.insert("NotFound".to_owned(), 404);
        let err = Error::Remote(crate::RemoteError::new("NotFound", "no such user"));
        let mapped = ApiError::from_rpc(&err, "users", "get", &custom, 1);
        assert_eq!(mapped.status, StatusCode::NOT_FOUND);
        assert_eq!(mapped.body()["error"]["service"], "users");
    }
}
