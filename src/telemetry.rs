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
//!   context of the span that sent it twice: as nameko context data
//!   (`nameko.traceparent`, `nameko.tracestate`, which Python nameko passes
//!   on to the calls it makes, as its OpenTelemetry instrumentation does)
//!   and as bare `traceparent`/`tracestate` headers. Either is read. The
//!   gateway reads the HTTP request's `traceparent`.
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
//!   it sends and the spans it makes stay in that (unsampled) trace.

use crate::context::Incoming;
use crate::message::Headers;

/// The context-data key (and bare header) of the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// The context-data key (and bare header) of the W3C trace state.
pub const TRACESTATE: &str = "tracestate";

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

    /// Runs `work` (the worker of this process span) in the span's trace
    /// context when the span is not sampled: what the worker sends and the
    /// spans it makes are then children of that context, without a
    /// `worker` span that the exporter sees.
    pub(crate) fn within<F: std::future::Future>(
        &self,
        work: F,
    ) -> impl std::future::Future<Output = F::Output> {
        #[cfg(feature = "otel")]
        {
            use futures::future::Either;
            use opentelemetry::context::FutureExt as _;
            match self.inner.as_ref().and_then(otel::Inner::unsampled_context) {
                Some(context) => Either::Left(work.with_context(context)),
                None => Either::Right(work),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            work
        }
    }
}

/// The span of one message sent to `exchange` with `routing_key` (a child
/// of the current span: the worker's, or the gateway's HTTP request's);
/// its trace context goes into `headers`.
pub(crate) fn publish_span(
    exchange: &str,
    routing_key: &str,
    headers: &mut Headers,
) -> MessagingSpan {
    if !active() {
        return MessagingSpan::none();
    }
    #[cfg(feature = "otel")]
    {
        MessagingSpan {
            inner: otel::publish(exchange, routing_key, headers),
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (exchange, routing_key, headers);
        MessagingSpan::none()
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
            inner: otel::process(service, method, |key| {
                incoming.get(key).and_then(serde_json::Value::as_str)
            }),
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (service, method, incoming);
        MessagingSpan::none()
    }
}

/// Makes `span` (the gateway's span of one HTTP request) the child of the
/// request's `traceparent`, when there is a valid one and spans are
/// exported.
#[cfg(feature = "gateway")]
pub(crate) fn continue_http(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !active() {
        return;
    }
    #[cfg(feature = "otel")]
    otel::set_parent_from(span, |key| {
        headers.get(key).and_then(|value| value.to_str().ok())
    });
    #[cfg(not(feature = "otel"))]
    let _ = (span, headers);
}

#[cfg(feature = "otel")]
pub use otel::{Telemetry, otlp_layer};

#[cfg(feature = "otel")]
mod otel {
    use std::sync::atomic::{AtomicBool, Ordering};

    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use serde_json::Value;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{TRACEPARENT, TRACESTATE};
    use crate::error::{Error, Result};
    use crate::message::Headers;

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

    /// A publish span, child of the current `tracing` span; its context
    /// goes into `headers`. Named and attributed only when it is sampled
    /// (an unsampled span costs its context and nothing more).
    pub(super) fn publish(
        exchange: &str,
        routing_key: &str,
        headers: &mut Headers,
    ) -> Option<Inner> {
        use opentelemetry::trace::TraceContextExt;
        use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
        let tracer = TRACER.get()?;
        // The current span's context; under a worker whose span is not
        // exported (its trace is not sampled), the worker's trace context.
        let mut parent = tracing::Span::current().context();
        if !parent.span().span_context().is_valid() {
            parent = opentelemetry::Context::current();
        }
        let builder = tracer.span_builder("publish").with_kind(SpanKind::Producer);
        let mut span = tracer.build_with_context(builder, &parent);
        if span.is_recording() {
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
        }
        inject(span.span_context(), headers);
        Some(Inner::Publish {
            _span: Box::new(span),
        })
    }

    /// A process span, child of the trace context `lookup` finds (or the
    /// root of a new trace); named and attributed only when sampled.
    pub(super) fn process<'a>(
        service: &str,
        method: &str,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<Inner> {
        use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _};
        let tracer = TRACER.get()?;
        let parent = extract(lookup).unwrap_or_default();
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
                meta.target() != super::UNSAMPLED_TARGET
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

    /// Puts a span's W3C trace context into `headers`, over the one the
    /// worker's context data passed on: as nameko context data and as the
    /// bare headers.
    fn inject(context: &opentelemetry::trace::SpanContext, headers: &mut Headers) {
        let traceparent = format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        );
        let tracestate = context.trace_state().header();
        // The bare header and its context-data key (`HEADER_PREFIX` +
        // the bare one; checked in the tests).
        const KEYS: [(&str, &str); 2] = [
            (TRACEPARENT, "nameko.traceparent"),
            (TRACESTATE, "nameko.tracestate"),
        ];
        let headers = &mut **headers;
        for (bare, data) in KEYS {
            headers.remove(data);
            headers.remove(bare);
        }
        let mut set = |(bare, data): (&str, &str), value: String| {
            headers.insert(data.to_owned(), Value::String(value.clone()));
            headers.insert(bare.to_owned(), Value::String(value));
        };
        if context.is_valid() {
            set(KEYS[0], traceparent);
            if !tracestate.is_empty() {
                set(KEYS[1], tracestate);
            }
        }
    }

    /// A W3C trace context read with `lookup` (bounded: a traceparent is
    /// 55 bytes in version 00, a tracestate at most 512).
    struct Found<'a> {
        traceparent: &'a str,
        tracestate: Option<&'a str>,
    }

    impl Extractor for Found<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                TRACEPARENT => Some(self.traceparent),
                TRACESTATE => self.tracestate,
                _ => None,
            }
        }

        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT, TRACESTATE]
        }
    }

    /// The trace context `lookup` finds, if it is a valid one.
    fn extract<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Option<opentelemetry::Context> {
        use opentelemetry::trace::TraceContextExt;
        let traceparent = lookup(TRACEPARENT).filter(|t| t.len() <= 256)?;
        let found = Found {
            traceparent,
            tracestate: lookup(TRACESTATE).filter(|t| t.len() <= 512),
        };
        let context = TraceContextPropagator::new().extract(&found);
        context.span().span_context().is_valid().then_some(context)
    }

    /// Makes `span` the child of the trace context `lookup` finds; a
    /// missing or malformed one leaves `span` the root of a new trace.
    #[cfg(feature = "gateway")]
    pub(super) fn set_parent_from<'a>(
        span: &tracing::Span,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) {
        if let Some(context) = extract(lookup) {
            let _ = span.set_parent(context);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::names::HEADER_PREFIX;

        #[test]
        fn context_data_keys_are_the_prefixed_headers() {
            let mut headers = Headers::new();
            let context = opentelemetry::trace::SpanContext::new(
                opentelemetry::trace::TraceId::from(1),
                opentelemetry::trace::SpanId::from(2),
                opentelemetry::trace::TraceFlags::SAMPLED,
                false,
                opentelemetry::trace::TraceState::default(),
            );
            inject(&context, &mut headers);
            let key = format!("{HEADER_PREFIX}{TRACEPARENT}");
            assert_eq!(headers.get(&key), headers.get(TRACEPARENT));
            assert!(headers.get(&key).is_some());
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
