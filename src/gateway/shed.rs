//! Load shedding: at most `concurrency_limit` requests in flight across
//! the gateway; one more is answered at once with 503, `Retry-After` and
//! the JSON error body, and counted in `enoki_gateway_requests_shed_total`.
//!
//! One layer does what tower's `GlobalConcurrencyLimit`, `LoadShed` and
//! axum's `HandleError` do together, without boxing a future or cloning
//! the inner service per request: a request takes a permit from a shared
//! semaphore without waiting, and holds it until its response is ready.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use super::error::ApiError;
use super::metrics::GatewayMetrics;

/// Sheds the requests past a global concurrency limit (see the
/// [module docs](self)).
#[derive(Clone)]
pub(crate) struct ShedLayer {
    permits: Arc<Semaphore>,
    metrics: GatewayMetrics,
    retry_after: u64,
}

impl ShedLayer {
    /// At most `limit` requests in flight (at least one); the 503s say
    /// `Retry-After: retry_after` (seconds).
    pub(crate) fn new(limit: usize, retry_after: u64, metrics: GatewayMetrics) -> Self {
        ShedLayer {
            permits: Arc::new(Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS))),
            metrics,
            retry_after,
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ShedLayer`] makes.
#[derive(Clone)]
pub(crate) struct Shed<S> {
    inner: S,
    layer: ShedLayer,
}

impl<S> Service<Request> for Shed<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.layer.permits.clone().try_acquire_owned() {
            Ok(permit) => ShedFuture::Admitted {
                inner: self.inner.call(request),
                permit: Some(permit),
            },
            Err(_) => {
                self.layer.metrics.request_shed();
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Overloaded",
                    "too many requests in flight; retry later",
                );
                error.retry_after = Some(self.layer.retry_after);
                ShedFuture::Shed {
                    response: Some(error.into_response()),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`Shed`]: the inner one, with the permit held until
    /// it is ready, or the 503.
    #[project = ShedProj]
    pub(crate) enum ShedFuture<F> {
        /// Admitted: the inner service's future.
        Admitted {
            #[pin]
            inner: F,
            permit: Option<OwnedSemaphorePermit>,
        },
        /// Shed: the 503, ready.
        Shed { response: Option<Response> },
    }
}

impl<F, E> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ShedProj::Admitted { inner, permit } => {
                let output = std::task::ready!(inner.poll(cx));
                permit.take();
                Poll::Ready(output)
            }
            ShedProj::Shed { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| StatusCode::SERVICE_UNAVAILABLE.into_response()))),
        }
    }
}
