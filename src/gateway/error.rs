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

use axum::http::StatusCode;

use super::auth::Denied;
use crate::error::Error;
pub use crate::web::error::ApiError;

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
    use std::collections::HashMap;

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
