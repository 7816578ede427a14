//! The OpenTelemetry span of each HTTP request
//! ([`HttpSpan`](crate::telemetry::HttpSpan)): started when the request
//! comes in, current while its handler runs (so the calls it makes are its
//! children), ended with the response's status. Nothing but a check of one
//! flag when spans are not exported.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tower::{Layer, Service};

use super::rpc::REQUEST_ID_HEADER;
use crate::telemetry::HttpSpan;

/// Gives each request its [`HttpSpan`] (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HttpSpanLayer;

impl<S> Layer<S> for HttpSpanLayer {
    type Service = HttpSpanService<S>;

    fn layer(&self, inner: S) -> HttpSpanService<S> {
        HttpSpanService { inner }
    }
}

/// The service [`HttpSpanLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct HttpSpanService<S> {
    inner: S,
}

impl<S> Service<Request> for HttpSpanService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = HttpSpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let request_id = request
            .headers()
            .get(&REQUEST_ID_HEADER)
            .and_then(|id| id.to_str().ok())
            .unwrap_or("");
        let span = HttpSpan::start(&request, request_id);
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        HttpSpanFuture {
            inner,
            span: Some(span),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`HttpSpanService`].
    pub(crate) struct HttpSpanFuture<F> {
        #[pin]
        inner: F,
        span: Option<HttpSpan>,
    }
}

impl<F, E> Future for HttpSpanFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let poll = match this.span {
            Some(span) => {
                let _entered = span.enter();
                this.inner.poll(cx)
            }
            None => this.inner.poll(cx),
        };
        if let Poll::Ready(Ok(response)) = &poll
            && let Some(span) = this.span.take()
        {
            span.finish(response.status());
        }
        poll
    }
}
