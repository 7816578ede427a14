//! [`ApiError`]: an error answered as JSON with a status,
//! `{"error": {"type", "message", "status", ...}}`, the same for the
//! gateway's routes and for `#[http]` entrypoints; and how a
//! [`RemoteError`] becomes one ([`remote_status`]).
//!
//! | `exc_type` | status |
//! |---|---|
//! | `MethodNotFound`, `UnknownService`, `NotFound` | 404 |
//! | `IncorrectSignature`, `MalformedRequest`, `BadRequest` | 400 |
//! | `Conflict` | 409 |
//! | anything else | 500 |
//!
//! A handler of an `#[http]` entrypoint that returns `Err(RemoteError)` is
//! answered this way, and its worker counts as failed (a database session
//! rolls back), as an RPC worker's would.

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::{Error, RemoteError};
use crate::outcome::Outcome;

/// The status of a remote error of type `exc_type` (the table in the
/// [module docs](self)).
///
/// ```
/// use axum::http::StatusCode;
/// use enoki::web::error::remote_status;
///
/// assert_eq!(remote_status("NotFound"), StatusCode::NOT_FOUND);
/// assert_eq!(remote_status("ValueError"), StatusCode::INTERNAL_SERVER_ERROR);
/// ```
pub fn remote_status(exc_type: &str) -> StatusCode {
    match exc_type {
        "MethodNotFound" | "UnknownService" | "NotFound" => StatusCode::NOT_FOUND,
        "IncorrectSignature" | "MalformedRequest" | "BadRequest" => StatusCode::BAD_REQUEST,
        "Conflict" => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

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
    /// Maps an RPC failure to an HTTP error (the table in the docs of
    /// `gateway::error`); `status_by_type` is `GATEWAY.error_status`.
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
                let mut error = ApiError::from_remote(remote);
                if let Some(status) = status_by_type
                    .get(&remote.exc_type)
                    .and_then(|s| StatusCode::from_u16(*s).ok())
                {
                    error.status = status;
                }
                error
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
    /// A remote error with its default status ([`remote_status`]), keeping
    /// `exc_path` and `exc_args`.
    pub fn from_remote(remote: &RemoteError) -> ApiError {
        ApiError::new(
            remote_status(&remote.exc_type),
            &remote.exc_type,
            remote.value.clone(),
        )
        .with("exc_path", remote.exc_path.clone())
        .with("exc_args", remote.exc_args.clone())
    }
}

/// A remote error as an HTTP answer: what an `#[http]` method returning
/// `Result<T, RemoteError>` answers on `Err`. The error rides along in the
/// response's extensions, so the worker's outcome is that error
/// ([`outcome_of`]).
///
/// ```
/// use axum::response::IntoResponse;
/// use enoki::RemoteError;
///
/// let response = RemoteError::new("NotFound", "no user 7").into_response();
/// assert_eq!(response.status(), 404);
/// ```
impl IntoResponse for RemoteError {
    fn into_response(self) -> Response {
        let mut response = ApiError::from_remote(&self).into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The worker outcome of an HTTP answer, for the providers'
/// `worker_result`: the [`RemoteError`] it was made from, or a
/// `HttpError` for any other 5xx answer, else success (`null`).
pub fn outcome_of(response: &Response) -> Outcome {
    if let Some(error) = response.extensions().get::<RemoteError>() {
        return Err(error.clone());
    }
    if response.status().is_server_error() {
        return Err(RemoteError::new(
            "HttpError",
            format!("answered {}", response.status()),
        ));
    }
    crate::outcome::unit()
}

/// The most of a rejection's text kept in its JSON answer.
const MAX_REJECTION_TEXT: usize = 1024;

/// An extractor's rejection (axum answers them as plain text) as the
/// gateway answers bad input: JSON, with `BadRequest` (400) for anything
/// wrong with the request but its size (413 `PayloadTooLarge`) or media
/// type (415 `UnsupportedMediaType`), and 500 for the server's own
/// failures. The worker's outcome is that error.
pub async fn rejection(response: Response) -> Response {
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), MAX_REJECTION_TEXT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned()
    } else {
        text
    };
    let (status, kind) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (status, "PayloadTooLarge"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (status, "UnsupportedMediaType"),
        s if s.is_server_error() => (s, "InternalError"),
        _ => (StatusCode::BAD_REQUEST, "BadRequest"),
    };
    let mut response = ApiError::new(status, kind, message.clone()).into_response();
    response
        .extensions_mut()
        .insert(RemoteError::new(kind, message));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_error_answers_its_status_and_is_the_outcome() {
        let response = RemoteError::new("Conflict", "username taken").into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(outcome_of(&response).unwrap_err().exc_type, "Conflict");
        let plain = (StatusCode::BAD_GATEWAY, "upstream").into_response();
        assert_eq!(outcome_of(&plain).unwrap_err().exc_type, "HttpError");
        let fine = (StatusCode::NOT_FOUND, "none").into_response();
        assert_eq!(outcome_of(&fine).unwrap().get(), "null");
    }

    #[tokio::test]
    async fn rejections_answer_json_as_the_gateway_does() {
        let axum_says = (StatusCode::UNPROCESSABLE_ENTITY, "missing field `name`").into_response();
        let response = rejection(axum_says).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(outcome_of(&response).unwrap_err().exc_type, "BadRequest");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["message"], "missing field `name`");
        let huge = (StatusCode::PAYLOAD_TOO_LARGE, "x".repeat(10_000)).into_response();
        let response = rejection(huge).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
