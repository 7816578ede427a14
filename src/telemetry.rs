//! Distributed tracing: W3C trace context across the gateway, RPC calls and
//! events, exported as OpenTelemetry spans over OTLP (feature `otel`).
//!
//! Off unless asked for, and then free: with no exporter installed the
//! functions here do nothing and make no span. `enoki run` and `enoki
//! gateway` install one when `OTEL_EXPORTER_OTLP_ENDPOINT` (the standard
//! variable; OTLP over HTTP with JSON bodies, `<endpoint>/v1/traces`) is
//! set; a program of its own adds [`otlp_layer`] to its subscriber.
//!
//! - **Propagation.** Every RPC request and event carries the trace
//!   context of the span that sent it, as a [`TraceContext`] in its
//!   properties; on the wire twice: as nameko context data
//!   (`nameko.traceparent`, `nameko.tracestate`, which Python nameko passes
//!   on to the calls it makes, as its OpenTelemetry instrumentation does)
//!   and as bare `traceparent`/`tracestate` headers. Either is read (see
//!   [`trace_context`](crate::trace_context)). The gateway reads the HTTP
//!   request's `traceparent`.
//! - **Spans**, named and attributed by OpenTelemetry's messaging
//!   conventions for RabbitMQ: the gateway's `http` span (server), a
//!   `publish` span (producer) per request and event sent, a `process`
//!   span (consumer) per message a worker handles, its child `worker`
//!   span; `messaging.system` `rabbitmq`, `messaging.operation.type`, and
//!   on publish spans `messaging.destination.name` (the exchange) and
//!   `messaging.rabbitmq.destination.routing_key`.
//! - **Bad input**: a `traceparent` that does not parse is ignored (a new
//!   trace starts); it never fails the call.
//! - **Sampling** (`OTEL_TRACES_SAMPLER`): a worker whose `process` span is
//!   not sampled gets its `worker` span on the target [`UNSAMPLED_TARGET`],
//!   which the exporting layer does not see (so the span costs nothing
//!   there, and nothing at all without another layer such as a log
//!   formatter); the worker runs in its message's trace context, so what
//!   it sends and the spans it makes stay in that (unsampled) trace. A
//!   message sent in a trace that is not sampled carries on the trace
//!   context its sender was given when that is its trace, with its flag
//!   and state (a worker's caller's, the gateway request's): nobody sees
//!   the span ids of such a trace.

use std::sync::Arc;

use crate::context::Incoming;
use crate::trace_context::TraceContext;

pub use crate::names::{TRACEPARENT, TRACESTATE};

/// The `tracing` target of the `worker` span of a message whose trace is
/// not sampled: the exporting layer filters it out.
pub const UNSAMPLED_TARGET: &str = "enoki::unsampled";

/// Whether spans are being exported (an [`otlp_layer`] was made).
pub fn active() -> bool {
    #[cfg(feature = "otel")]
    {
        otel::ACTIVE.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "otel"))]
    {
        false
    }
}

/// What [`MessagingSpan::enter_unsampled`] returns: the entered context, if
/// any, current until dropped.
pub(crate) struct UnsampledGuard {
    #[cfg(feature = "otel")]
    _entered: Option<opentelemetry::ContextGuard>,
}

/// An OpenTelemetry span of enoki's own: a message published, or one being
/// processed. Built with the OpenTelemetry SDK directly (no `tracing` span
/// in between: the cheapest way to the exporter); nothing at all when
/// spans are not exported. It ends when dropped.
#[must_use = "the span ends when dropped"]
pub(crate) struct MessagingSpan {
    #[cfg(feature = "otel")]
    inner: Option<otel::Inner>,
}

impl std::fmt::Debug for MessagingSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessagingSpan")
    }
}

impl MessagingSpan {
    fn none() -> Self {
        MessagingSpan {
            #[cfg(feature = "otel")]
            inner: None,
        }
    }

    /// Makes this span (a process span) the parent of `span`, the
    /// worker's `tracing` span, so that the worker and what it logs and
    /// sends are in the message's trace.
    pub(crate) fn adopt(&self, span: &tracing::Span) {
        #[cfg(feature = "otel")]
        if let Some(inner) = &self.inner {
            inner.adopt(span);
        }
        #[cfg(not(feature = "otel"))]
        let _ = span;
    }

    /// Whether this is a process span that is exported but not sampled:
    /// its worker's span then goes to [`UNSAMPLED_TARGET`].
    pub(crate) fn unsampled(&self) -> bool {
        #[cfg(feature = "otel")]
        {
            self.inner.as_ref().is_some_and(otel::Inner::unsampled)
        }
        #[cfg(not(feature = "otel"))]
        {
            false
        }
    }

    /// Makes the span's trace context current until the guard drops, when
    /// the span is not sampled: what a worker of this process span sends
    /// while polled, and the spans it makes, are then children of that
    /// context, without a `worker` span that the exporter sees.
    pub(crate) fn enter_unsampled(&self) -> UnsampledGuard {
        UnsampledGuard {
            #[cfg(feature = "otel")]
            _entered: self
                .inner
                .as_ref()
                .and_then(otel::Inner::unsampled_context)
                .map(opentelemetry::Context::attach),
        }
    }
}

/// The span of one message sent to `exchange` with `routing_key` (a child
/// of the current span: the worker's, or the gateway's HTTP request's),
/// and the trace context the message carries: the span's, or `carried`
/// (the sender's: a worker's message's, a client's) when spans are not
/// exported, or when the span is not sampled and `carried` is of its
/// trace.
pub(crate) fn publish_span(
    exchange: &str,
    routing_key: &str,
    carried: Option<&Arc<TraceContext>>,
) -> (Option<Arc<TraceContext>>, MessagingSpan) {
    if !active() {
        return (carried.cloned(), MessagingSpan::none());
    }
    #[cfg(feature = "otel")]
    {
        let (trace, inner) = otel::publish(exchange, routing_key, carried);
        (trace, MessagingSpan { inner })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (exchange, routing_key);
        (carried.cloned(), MessagingSpan::none())
    }
}

/// The span of a worker handling `service.method`'s message, child of the
/// trace context the message carried; the worker's own span goes inside
/// it ([`MessagingSpan::adopt`]).
pub(crate) fn process_span(service: &str, method: &str, incoming: &Incoming) -> MessagingSpan {
    if !active() {
        return MessagingSpan::none();
    }
    #[cfg(feature = "otel")]
    {
        MessagingSpan {
            inner: otel::process(service, method, incoming.trace().map(|trace| &**trace)),
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (service, method, incoming);
        MessagingSpan::none()
    }
}

/// The current trace context (the gateway request's span's), for the
/// client made for one request, so its calls carry it from the start: a
/// call in a trace that is not sampled then passes it on as it is.
#[cfg(feature = "gateway")]
pub(crate) fn current_trace() -> Option<Arc<TraceContext>> {
    if !active() {
        return None;
    }
    #[cfg(feature = "otel")]
    {
        otel::current_trace()
    }
    #[cfg(not(feature = "otel"))]
    {
        None
    }
}

/// The `tracing` target of the gateway's `tracing` span of each HTTP
/// request (the one logs see): the exporting layer does not see it, as the
/// request's OpenTelemetry span is made with the SDK directly.
pub const HTTP_TARGET: &str = "enoki::gateway::http";

/// The OpenTelemetry span (server) of one HTTP request to the gateway,
/// named `<method> <path>`: a child of the request's `traceparent` when it
/// has a valid one, else the root of a new trace. Made with the SDK
/// directly, like [`MessagingSpan`]s: when its trace is not sampled it
/// costs its context and nothing more; when spans are not exported it is
/// nothing. The request is handled in its context
/// ([`enter`](Self::enter)), so the calls it makes are its children.
#[cfg(feature = "gateway")]
#[must_use = "the span ends with `finish`, or when dropped"]
pub(crate) struct HttpSpan {
    #[cfg(feature = "otel")]
    context: Option<opentelemetry::Context>,
}

#[cfg(feature = "gateway")]
impl std::fmt::Debug for HttpSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpSpan")
    }
}

#[cfg(feature = "gateway")]
impl HttpSpan {
    /// The span of `request`, with its `X-Request-Id` (`request_id`).
    pub(crate) fn start<B>(request: &axum::http::Request<B>, request_id: &str) -> HttpSpan {
        if !active() {
            return HttpSpan {
                #[cfg(feature = "otel")]
                context: None,
            };
        }
        #[cfg(feature = "otel")]
        {
            HttpSpan {
                context: otel::http(request, request_id),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = (request, request_id);
            HttpSpan {}
        }
    }

    /// Makes the span's context the current one until the guard drops
    /// (held over one poll of the request's future, never across one).
    pub(crate) fn enter(&self) -> Entered {
        Entered {
            #[cfg(feature = "otel")]
            _guard: self
                .context
                .as_ref()
                .map(|context| context.clone().attach()),
        }
    }

    /// Ends the span with the response's status (an error from 500 up, as
    /// OpenTelemetry's HTTP conventions have it for servers).
    pub(crate) fn finish(self, status: axum::http::StatusCode) {
        #[cfg(feature = "otel")]
        if let Some(context) = self.context {
            otel::finish_http(&context, status);
        }
        #[cfg(not(feature = "otel"))]
        let _ = status;
    }
}

/// An [`HttpSpan`] made current ([`HttpSpan::enter`]), until dropped.
#[cfg(feature = "gateway")]
#[must_use = "the span is current only until this is dropped"]
pub(crate) struct Entered {
    #[cfg(feature = "otel")]
    _guard: Option<opentelemetry::ContextGuard>,
}

#[cfg(feature = "otel")]
pub use otel::{Telemetry, otlp_layer};

#[cfg(feature = "otel")]
mod otel {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use crate::error::{Error, Result};
    use crate::trace_context::TraceContext;

    pub(super) static ACTIVE: AtomicBool = AtomicBool::new(false);

    /// The tracer of enoki's own spans: the exporting layer's.
    static TRACER: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracer> =
        std::sync::OnceLock::new();

    /// A [`MessagingSpan`](super::MessagingSpan)'s span: a publish span on
    /// its own, or a process span in the context its worker continues.
    pub(super) enum Inner {
        /// Held for its end, on drop.
        Publish {
            _span: Box<opentelemetry_sdk::trace::Span>,
        },
        Process(opentelemetry::Context),
    }

    impl Inner {
        pub(super) fn adopt(&self, span: &tracing::Span) {
            if let Inner::Process(context) = self {
                let _ = span.set_parent(context.clone());
            }
        }

        pub(super) fn unsampled(&self) -> bool {
            self.unsampled_context().is_some()
        }

        pub(super) fn unsampled_context(&self) -> Option<opentelemetry::Context> {
            use opentelemetry::trace::TraceContextExt;
            match self {
                Inner::Process(context) if !context.span().span_context().is_sampled() => {
                    Some(context.clone())
                }
                _ => None,
            }
        }
    }

    fn kv(key: &'static str, value: impl Into<opentelemetry::Value>) -> opentelemetry::KeyValue {
        opentelemetry::KeyValue::new(key, value)
    }

    /// The current span's context; under a worker whose span is not
    /// exported (its trace is not sampled), the worker's trace context.
    fn current() -> opentelemetry::Context {
        use opentelemetry::trace::TraceContextExt;
        let current = tracing::Span::current().context();
        if current.span().span_context().is_valid() {
            current
        } else {
            opentelemetry::Context::current()
        }
    }

    /// A publish span, child of the current span, and the trace context
    /// its message carries. Named and attributed only when it is sampled;
    /// an unsampled span costs its context and nothing more, and its
    /// message carries `carried` on when that is of its trace (a worker
    /// passing on its caller's, or the gateway's request's): the trace and
    /// its flag are what matter in a trace nobody sees.
    pub(super) fn publish(
        exchange: &str,
        routing_key: &str,
        carried: Option<&Arc<TraceContext>>,
    ) -> (Option<Arc<TraceContext>>, Option<Inner>) {
        use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
        let Some(tracer) = TRACER.get() else {
            return (carried.cloned(), None);
        };
        let builder = tracer.span_builder("publish").with_kind(SpanKind::Producer);
        let mut span = tracer.build_with_context(builder, &current());
        if !span.is_recording() {
            let trace = match carried {
                Some(carried) if carries(carried, span.span_context()) => carried.clone(),
                _ => Arc::new(trace_of(span.span_context())),
            };
            return (Some(trace), None);
        }
        span.update_name(format!("publish {exchange}"));
        span.set_attributes([
            kv("messaging.system", "rabbitmq"),
            kv("messaging.operation.type", "send"),
            kv("messaging.destination.name", exchange.to_owned()),
            kv(
                "messaging.rabbitmq.destination.routing_key",
                routing_key.to_owned(),
            ),
        ]);
        let trace = Arc::new(trace_of(span.span_context()));
        (
            Some(trace),
            Some(Inner::Publish {
                _span: Box::new(span),
            }),
        )
    }

    /// Whether `carried` is of `context`'s trace, with its flag and state.
    fn carries(carried: &TraceContext, context: &opentelemetry::trace::SpanContext) -> bool {
        carried.trace_id == context.trace_id().to_bytes()
            && carried.sampled == context.trace_flags().is_sampled()
            && carried.tracestate().unwrap_or("") == context.trace_state().header()
    }

    /// A span's context as the trace context of the messages it sends.
    fn trace_of(context: &opentelemetry::trace::SpanContext) -> TraceContext {
        let state = context.trace_state().header();
        TraceContext {
            trace_id: context.trace_id().to_bytes(),
            parent_id: context.span_id().to_bytes(),
            sampled: context.trace_flags().is_sampled(),
            state: (!state.is_empty()).then(|| state.into()),
        }
    }

    /// `trace` as the (remote) parent of the spans made in it.
    fn remote(trace: &TraceContext) -> opentelemetry::Context {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};
        let state = trace
            .tracestate()
            .and_then(|state| state.parse().ok())
            .unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(trace.trace_id),
            SpanId::from_bytes(trace.parent_id),
            TraceFlags::new(u8::from(trace.sampled)),
            true,
            state,
        );
        opentelemetry::Context::new().with_remote_span_context(remote)
    }

    /// The current trace context (as a publish span's parent), when there
    /// is a valid one.
    #[cfg(feature = "gateway")]
    pub(super) fn current_trace() -> Option<Arc<TraceContext>> {
        use opentelemetry::trace::TraceContextExt;
        let current = current();
        let span = current.span();
        let context = span.span_context();
        context.is_valid().then(|| Arc::new(trace_of(context)))
    }

    /// A process span, child of the trace context its message carried (or
    /// the root of a new trace); named and attributed only when sampled.
    pub(super) fn process(
        service: &str,
        method: &str,
        trace: Option<&TraceContext>,
    ) -> Option<Inner> {
        use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _};
        let tracer = TRACER.get()?;
        let parent = trace.map(remote).unwrap_or_default();
        let builder = tracer.span_builder("process").with_kind(SpanKind::Consumer);
        let mut span = tracer.build_with_context(builder, &parent);
        if span.is_recording() {
            span.update_name(format!("process {service}.{method}"));
            span.set_attributes([
                kv("messaging.system", "rabbitmq"),
                kv("messaging.operation.type", "process"),
                kv("enoki.service", service.to_owned()),
                kv("enoki.method", method.to_owned()),
            ]);
        }
        Some(Inner::Process(parent.with_span(span)))
    }

    /// The exporter behind an [`otlp_layer`]: [`shutdown`](Self::shutdown)
    /// sends what is left before the process ends.
    #[derive(Debug)]
    pub struct Telemetry {
        provider: SdkTracerProvider,
    }

    impl Telemetry {
        /// Exports the spans still buffered and stops exporting.
        pub fn shutdown(&self) {
            ACTIVE.store(false, Ordering::Relaxed);
            if let Err(error) = self.provider.shutdown() {
                tracing::warn!(%error, "the OpenTelemetry exporter did not shut down cleanly");
            }
        }

        /// Exports the spans buffered so far.
        pub fn flush(&self) {
            if let Err(error) = self.provider.force_flush() {
                tracing::warn!(%error, "the OpenTelemetry exporter could not flush");
            }
        }
    }

    /// A `tracing` layer that exports spans over OTLP (HTTP, JSON) as
    /// `service_name`, to `endpoint` (`<endpoint>/v1/traces`) or, without
    /// one, to `OTEL_EXPORTER_OTLP_ENDPOINT`; `Ok(None)` when neither is
    /// given. A malformed endpoint is an [`Error::Config`].
    ///
    /// ```no_run
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// # fn main() -> enoki::Result<()> {
    /// let registry = tracing_subscriber::registry();
    /// if let Some((layer, telemetry)) = enoki::telemetry::otlp_layer("shop", None)? {
    ///     tracing::subscriber::set_global_default(registry.with(layer)).ok();
    ///     // ... run the services, then:
    ///     telemetry.shutdown();
    /// }
    /// # Ok(()) }
    /// ```
    pub fn otlp_layer<S>(
        service_name: &str,
        endpoint: Option<&str>,
    ) -> Result<Option<(impl tracing_subscriber::Layer<S> + 'static, Telemetry)>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use opentelemetry_otlp::{Protocol, WithExportConfig};
        let endpoint = match endpoint {
            Some(endpoint) => endpoint.to_owned(),
            None => match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Ok(endpoint) if !endpoint.trim().is_empty() => endpoint,
                _ => return Ok(None),
            },
        };
        let url = url_of(&endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(url)
            .build()
            .map_err(|err| Error::Config(format!("OTEL_EXPORTER_OTLP_ENDPOINT: {err}")))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("enoki");
        let _ = TRACER.set(tracer.clone());
        ACTIVE.store(true, Ordering::Relaxed);
        // What a span costs is paid on every call: no busy/idle timing (two
        // clock reads a poll), no source location, thread or target
        // attributes, no OpenTelemetry context activation on each enter
        // (propagation reads the span's own context).
        use tracing_subscriber::Layer as _;
        let layer = tracing_opentelemetry::layer()
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_context_activation(false)
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target() != super::UNSAMPLED_TARGET && meta.target() != super::HTTP_TARGET
            }));
        Ok(Some((layer, Telemetry { provider })))
    }

    /// `<endpoint>/v1/traces`, after checking the endpoint is an http(s)
    /// URL of at most 2,048 bytes.
    fn url_of(endpoint: &str) -> Result<String> {
        let endpoint = endpoint.trim();
        let bad =
            |why: &str| Error::Config(format!("OTEL_EXPORTER_OTLP_ENDPOINT {endpoint:?}: {why}"));
        if endpoint.len() > 2048 {
            return Err(bad("longer than 2048 bytes"));
        }
        let uri: axum::http::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(bad("not an http:// or https:// URL"));
        }
        let base = endpoint.trim_end_matches('/');
        Ok(if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        })
    }

    /// The trace context in an HTTP request's headers, if it is a valid
    /// one (see [`TraceContext::parse`]: bounded).
    #[cfg_attr(not(feature = "gateway"), allow(dead_code))]
    fn extract(headers: &axum::http::HeaderMap) -> Option<opentelemetry::Context> {
        use crate::names::{TRACEPARENT, TRACESTATE};
        let text = |key: &str| headers.get(key).and_then(|value| value.to_str().ok());
        TraceContext::parse(text(TRACEPARENT)?, text(TRACESTATE)).map(|trace| remote(&trace))
    }

    /// The span of one HTTP request (see
    /// [`HttpSpan`](super::HttpSpan)), in its context; named and
    /// attributed only when sampled.
    #[cfg(feature = "gateway")]
    pub(super) fn http<B>(
        request: &axum::http::Request<B>,
        request_id: &str,
    ) -> Option<opentelemetry::Context> {
        use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _};
        let tracer = TRACER.get()?;
        let parent = extract(request.headers()).unwrap_or_default();
        let builder = tracer.span_builder("http").with_kind(SpanKind::Server);
        let mut span = tracer.build_with_context(builder, &parent);
        if span.is_recording() {
            let method = request.method().as_str();
            let path = request.uri().path();
            span.update_name(format!("{method} {path}"));
            span.set_attributes([
                kv("http.request.method", method.to_owned()),
                kv("url.path", path.to_owned()),
                kv("http.request.header.x-request-id", request_id.to_owned()),
            ]);
        }
        Some(parent.with_span(span))
    }

    /// Ends an HTTP request's span with its response's status.
    #[cfg(feature = "gateway")]
    pub(super) fn finish_http(context: &opentelemetry::Context, status: axum::http::StatusCode) {
        use opentelemetry::trace::{Status, TraceContextExt};
        let span = context.span();
        if span.is_recording() {
            span.set_attribute(kv("http.response.status_code", i64::from(status.as_u16())));
            if status.is_server_error() {
                span.set_status(Status::error(status.to_string()));
            }
        }
        span.end();
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::names::{TRACEPARENT, TRACESTATE};

        #[test]
        fn a_context_is_carried_only_with_its_trace_flag_and_state() {
            use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
            let unsampled = |trace: u128, state: TraceState| {
                SpanContext::new(
                    TraceId::from(trace),
                    SpanId::from(9),
                    TraceFlags::NOT_SAMPLED,
                    false,
                    state,
                )
            };
            let state: TraceState = "a=b".parse().unwrap();
            // The caller's context: same trace, another span.
            let carried = trace_of(&SpanContext::new(
                TraceId::from(7),
                SpanId::from(3),
                TraceFlags::NOT_SAMPLED,
                true,
                state.clone(),
            ));
            assert_eq!(carried.tracestate(), Some("a=b"));
            assert!(carries(&carried, &unsampled(7, state.clone())));
            assert!(
                !carries(&carried, &unsampled(8, state.clone())),
                "another trace"
            );
            assert!(
                !carries(&carried, &unsampled(7, TraceState::default())),
                "another state"
            );
            let sampled = SpanContext::new(
                TraceId::from(7),
                SpanId::from(9),
                TraceFlags::SAMPLED,
                false,
                state.clone(),
            );
            assert!(!carries(&carried, &sampled), "another flag");
            // Back and forth through a remote parent, unchanged.
            use opentelemetry::trace::TraceContextExt;
            let back = remote(&carried);
            assert_eq!(trace_of(back.span().span_context()), carried);
        }

        /// What the SDK's own W3C propagator reads from `traceparent`
        /// (and `tracestate`), if anything.
        fn sdk_reads(
            traceparent: &str,
            tracestate: Option<&str>,
        ) -> Option<opentelemetry::trace::SpanContext> {
            use opentelemetry::propagation::TextMapPropagator;
            use opentelemetry::trace::TraceContextExt;
            let mut carrier = std::collections::HashMap::new();
            carrier.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
            if let Some(state) = tracestate {
                carrier.insert(TRACESTATE.to_owned(), state.to_owned());
            }
            let context = opentelemetry_sdk::propagation::TraceContextPropagator::new()
                .extract_with_context(&opentelemetry::Context::new(), &carrier);
            let span = context.span().span_context().clone();
            span.is_valid().then_some(span)
        }

        fn we_read(
            traceparent: &str,
            tracestate: Option<&str>,
        ) -> Option<opentelemetry::trace::SpanContext> {
            use opentelemetry::trace::TraceContextExt;
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(TRACEPARENT, traceparent.parse().ok()?);
            if let Some(state) = tracestate {
                headers.insert(TRACESTATE, state.parse().unwrap());
            }
            extract(&headers).map(|context| context.span().span_context().clone())
        }

        #[test]
        fn traceparents_are_read_as_the_sdk_reads_them() {
            let id = "0af7651916cd43dd8448eb211c80319c";
            let parent = "b7ad6b7169203331";
            let valid = [
                format!("00-{id}-{parent}-01"),
                format!("00-{id}-{parent}-00"),
                // Unknown flags are dropped; the sampled one is kept.
                format!("00-{id}-{parent}-ff"),
                format!("00-{id}-{parent}-02"),
                // Later versions may carry more after a dash.
                format!("01-{id}-{parent}-01"),
                format!("cc-{id}-{parent}-01-what-comes-next"),
                format!("  00-{id}-{parent}-01 "),
            ];
            for text in &valid {
                let ours = we_read(text, None);
                assert!(ours.is_some(), "{text}");
                assert_eq!(ours, sdk_reads(text, None), "{text}");
            }
            let state = "vendor1=opaque1,vendor2=opaque2";
            let with_state = we_read(&valid[0], Some(state)).unwrap();
            assert_eq!(with_state.trace_state().header(), state);
            assert_eq!(Some(with_state), sdk_reads(&valid[0], Some(state)));
            let malformed = [
                String::new(),
                "00".to_owned(),
                format!("ff-{id}-{parent}-01"),
                format!("00-{id}-{parent}-01-more"),
                format!("00-{id}-{parent}-0"),
                format!("00-{id}-{parent}-001"),
                format!("00-{}-{parent}-01", id.to_uppercase()),
                format!("00-{id}-{}-01", parent.to_uppercase()),
                format!("00-{}-{parent}-01", "0".repeat(32)),
                format!("00-{id}-{}-01", "0".repeat(16)),
                format!("00-{}-{parent}-01", &id[1..]),
                format!("00-{id}x-{parent}-01"),
                format!("00_{id}-{parent}-01"),
                format!("00-{id}-{parent}_01"),
                format!("0g-{id}-{parent}-01"),
                format!("00-{}g-{parent}-01", &id[1..]),
                format!("00-+{}-{parent}-01", &id[1..]),
                format!("01-{id}-{parent}-01x"),
                format!("00-{id}-{parent}-é"),
                "x".repeat(300),
            ];
            for text in &malformed {
                assert_eq!(we_read(text, None), None, "{text}");
            }
            // The SDK accepts some of these (short ids, a `+`); none that we
            // accept is one it refuses.
            for text in valid.iter().chain(&malformed) {
                if let Some(ours) = we_read(text, None) {
                    assert_eq!(Some(ours), sdk_reads(text, None), "{text}");
                }
            }
        }

        #[test]
        fn traceparents_are_written_as_the_sdk_writes_them() {
            use opentelemetry::propagation::TextMapPropagator;
            use opentelemetry::trace::TraceContextExt;
            use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
            for (trace, span, flags) in [
                (1u128, 2u64, 1u8),
                (u128::MAX, u64::MAX, 0),
                (0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331, 0xff),
            ] {
                let context = SpanContext::new(
                    TraceId::from(trace),
                    SpanId::from(span),
                    TraceFlags::new(flags),
                    false,
                    TraceState::default(),
                );
                let mut carrier = std::collections::HashMap::new();
                opentelemetry_sdk::propagation::TraceContextPropagator::new().inject_context(
                    &opentelemetry::Context::new().with_remote_span_context(context.clone()),
                    &mut carrier,
                );
                let written = trace_of(&context).traceparent();
                assert_eq!(Some(&written), carrier.get(TRACEPARENT));
                assert_eq!(written.len(), crate::trace_context::TRACEPARENT_LEN);
            }
        }

        #[test]
        fn endpoints_are_checked_and_get_the_traces_path() {
            assert_eq!(
                url_of("http://127.0.0.1:4318").unwrap(),
                "http://127.0.0.1:4318/v1/traces"
            );
            assert_eq!(
                url_of("http://h:4318/v1/traces/").unwrap(),
                "http://h:4318/v1/traces"
            );
            for bad in ["localhost:4318", "ftp://h/", "http://", "not a url"] {
                let err = url_of(bad).unwrap_err().to_string();
                assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{bad}: {err}");
            }
        }
    }
}
