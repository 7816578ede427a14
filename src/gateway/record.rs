//! What every response goes through on its way out: it is counted by
//! route, method and status (`enoki_gateway_http_requests_total`), and an
//! error response that is not JSON yet (a 404 from the router, a 413 from
//! the body limit, a 504 from the timeout) gets the gateway's JSON error
//! body, whichever layer produced it.
//!
//! A hand-written layer rather than two axum middlewares: those clone the
//! whole inner stack and box a future per request; this one does neither,
//! and boxes only the rare rewrite of an error body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::error::ApiError;
use super::metrics::GatewayMetrics;

/// Counts responses and gives error responses a JSON body (see the
/// [module docs](self)).
#[derive(Clone)]
pub(crate) struct RecordLayer {
    metrics: GatewayMetrics,
}

impl RecordLayer {
    pub(crate) fn new(metrics: GatewayMetrics) -> Self {
        RecordLayer { metrics }
    }
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`RecordLayer`] makes.
#[derive(Clone)]
pub(crate) struct Record<S> {
    inner: S,
    metrics: GatewayMetrics,
}

impl<S> Service<Request> for Record<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RecordFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        RecordFuture::Inner {
            inner: self.inner.call(request),
            seen: Some(Seen {
                route,
                method,
                metrics: self.metrics.clone(),
            }),
        }
    }
}

/// What the request said that the count of its response needs.
pub(crate) struct Seen {
    route: Option<MatchedPath>,
    method: axum::http::Method,
    metrics: GatewayMetrics,
}

pin_project_lite::pin_project! {
    /// The response of [`Record`].
    #[project = RecordProj]
    pub(crate) enum RecordFuture<F> {
        /// Waiting for the inner service.
        Inner {
            #[pin]
            inner: F,
            seen: Option<Seen>,
        },
        /// Rewriting an error response's body (reading it is async).
        Rewrite {
            rewrite: Pin<Box<dyn Future<Output = Response> + Send>>,
        },
    }
}

impl<F, E> Future for RecordFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.as_mut().project() {
            RecordProj::Inner { inner, seen } => {
                let response = match std::task::ready!(inner.poll(cx)) {
                    Ok(response) => response,
                    Err(err) => return Poll::Ready(Err(err)),
                };
                if let Some(seen) = seen.take() {
                    let route = seen.route.as_ref().map_or("(static)", MatchedPath::as_str);
                    seen.metrics.http_request(
                        route,
                        seen.method.as_str(),
                        response.status().as_u16(),
                    );
                }
                if !needs_json_body(&response) {
                    return Poll::Ready(Ok(response));
                }
                self.set(RecordFuture::Rewrite {
                    rewrite: Box::pin(json_error(response)),
                });
                self.poll(cx)
            }
            RecordProj::Rewrite { rewrite } => rewrite.as_mut().poll(cx).map(Ok),
        }
    }
}

/// An error status without a JSON body.
fn needs_json_body(response: &Response) -> bool {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    !is_json
}

/// `response` with the JSON error body: its own text (at most 4 KiB of
/// it) as the message, its headers kept.
async fn json_error(response: Response) -> Response {
    let status = response.status();
    let kind = match status {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => "RequestTimeout",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        StatusCode::BAD_REQUEST => "BadRequest",
        _ => "HttpError",
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.trim().to_owned()
    };
    let mut fresh = ApiError::new(status, kind, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name, value.clone());
        }
    }
    fresh
}
