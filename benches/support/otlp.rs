//! Spans exported over OTLP while a bench runs (tracing on), to a sink in
//! the bench process that answers every export and keeps nothing.

/// Installs an OTLP layer exporting as `service` to a local sink; the
/// returned handle flushes and stops the exporter.
#[cfg(feature = "otel")]
pub(crate) async fn export_spans(service: &str) -> enoki::telemetry::Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    let sink = axum::Router::new().route("/v1/traces", axum::routing::post(|| async { "{}" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("sink");
    let endpoint = format!("http://{}", listener.local_addr().expect("sink address"));
    tokio::spawn(async move { axum::serve(listener, sink).await });
    let (layer, telemetry) = enoki::telemetry::otlp_layer(service, Some(&endpoint))
        .expect("endpoint")
        .expect("exporter");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("the bench's subscriber");
    telemetry
}

/// Whether `ENOKI_BENCH_TRACING=otlp` asks for spans (it needs the `otel`
/// feature).
pub(crate) fn tracing_on() -> bool {
    let on = std::env::var("ENOKI_BENCH_TRACING").is_ok_and(|t| t == "otlp");
    assert!(
        !on || cfg!(feature = "otel"),
        "ENOKI_BENCH_TRACING=otlp needs --features otel"
    );
    on
}
