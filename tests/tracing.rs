//! Distributed tracing (`enoki::telemetry`, feature `otel`): `GET
//! /hello/Ann` through the gateway to `greeter.hello`, whose `greeted`
//! event reaches `listener`, exported over OTLP to a receiver in the test:
//! every span shares one trace id, parent to child; an incoming
//! `traceparent` is continued, a malformed one starts a new trace and fails
//! nothing.

#[path = "tracing/receiver.rs"]
mod receiver;
#[path = "gateway/support.rs"]
mod support;

use std::time::Duration;

use enoki::gateway::GatewayArgs;
use enoki::prelude::*;
use receiver::{Span, by_id, find, receiver};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Dependencies)]
struct Relay {
    #[dependency(EventDispatcher)]
    dispatch: Dispatcher,
}

#[service(name = "relay")]
impl Relay {
    /// Waits once (so its worker gets a task of its own), then sends an
    /// event.
    #[rpc]
    async fn relay(&self) -> Result<(), RemoteError> {
        tokio::task::yield_now().await;
        self.dispatch.emit("relayed", serde_json::json!({})).await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_gateway_through_greeter_to_listener() {
    let (endpoint, spans) = receiver().await;
    let (layer, telemetry) = enoki::telemetry::otlp_layer("enoki-test", Some(&endpoint))
        .expect("a good endpoint")
        .expect("an exporter");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("the test's subscriber");
    assert!(enoki::telemetry::active());

    let args = GatewayArgs {
        listen: "127.0.0.1:0".into(),
        routes: Some(support::routes_dir()),
        static_dir: "no-such-dir".into(),
        ..Default::default()
    };
    let gateway = support::Served::start(args, Settings::new()).await;
    let base = format!("http://{}", gateway.addr);
    let http = reqwest::Client::new();
    let get = |traceparent: Option<&'static str>| {
        let mut request = http.get(format!("{base}/hello/Ann"));
        if let Some(value) = traceparent {
            request = request.header("traceparent", value);
        }
        request.send()
    };
    // A fresh trace, a continued one, a malformed one (ignored), and one
    // its caller did not sample (followed, as the default parent-based
    // sampler does: nothing of it is exported, and it still answers).
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let unsampled_trace = "5cf92f3577b34da6a3ce929d0e0e4737";
    for traceparent in [
        None,
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some("00-not-a-trace-01"),
        Some("00-5cf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-00"),
    ] {
        let response = get(traceparent).await.unwrap();
        assert_eq!(response.status(), 200, "{traceparent:?}");
        assert_eq!(response.text().await.unwrap(), r#""Hello, Ann!""#);
    }
    // A call that fails (the service's OverflowError answers 500).
    let overflow = "/add/9223372036854775807/1";
    let response = http.get(format!("{base}{overflow}")).send().await.unwrap();
    assert_eq!(response.status(), 500);

    // Three requests, each with its greeted event handled by the listener's
    // three handlers: wait until they are all exported.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let flushed = telemetry_flush(&telemetry).await;
        let spans = spans.lock().unwrap().clone();
        let listener_workers = spans
            .iter()
            .filter(|s| s.name.starts_with("process listener.on_greeted"))
            .count();
        if flushed && listener_workers >= 9 {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{listener_workers} listener spans of 9: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    println!("{} spans exported", spans.len());
    assert!(
        spans.iter().all(|s| s.trace != unsampled_trace),
        "an unsampled trace exports nothing: {spans:#?}"
    );
    let https: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "GET /hello/Ann")
        .collect();
    assert_eq!(https.len(), 3, "{spans:#?}");
    let failed: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == format!("GET {overflow}"))
        .collect();
    assert_eq!(failed.len(), 1, "{spans:#?}");
    assert_eq!(failed[0].status, 2, "an error: {:?}", failed[0]);
    assert!(
        failed[0].attributes["http.response.status_code"].contains("500"),
        "{:?}",
        failed[0]
    );
    assert!(
        https.iter().all(|s| s.status != 2),
        "a 200 is no error: {https:?}"
    );
    // What the unsampled request's workers sent stayed in its (unsampled)
    // trace: no span of a trace that no HTTP request started.
    assert!(
        spans.iter().all(|s| https
            .iter()
            .chain(&failed)
            .any(|http| http.trace == s.trace)),
        "every span belongs to a sampled request's trace: {spans:#?}"
    );
    let continued: Vec<&&Span> = https.iter().filter(|s| s.trace == caller_trace).collect();
    assert_eq!(continued.len(), 1, "the caller's trace is continued");
    assert_eq!(
        continued[0].parent, caller_span,
        "the caller's span is the parent"
    );
    let fresh: Vec<&&Span> = https.iter().filter(|s| s.trace != caller_trace).collect();
    assert_eq!(fresh.len(), 2);
    assert_ne!(fresh[0].trace, fresh[1].trace, "each a trace of its own");
    for http_span in &https {
        let trace = &http_span.trace;
        if http_span.trace != caller_trace {
            assert!(http_span.parent.is_empty(), "a root: {http_span:?}");
        }
        assert_eq!(http_span.kind, 2, "a server span: {http_span:?}");
        assert_eq!(http_span.attributes["http.request.method"], "GET");
        assert_eq!(http_span.attributes["url.path"], "/hello/Ann");
        assert!(
            http_span.attributes["http.response.status_code"].contains("200"),
            "{http_span:?}"
        );
        assert!(
            !http_span.attributes["http.request.header.x-request-id"].is_empty(),
            "{http_span:?}"
        );
        // http -> publish (the request) -> process greeter.hello -> worker
        let publish = find(&spans, trace, "publish nameko-rpc");
        assert_eq!(publish.len(), 1, "{trace}: {spans:#?}");
        assert_eq!(publish[0].parent, http_span.id);
        assert_eq!(publish[0].attributes["messaging.system"], "rabbitmq");
        assert_eq!(
            publish[0].attributes["messaging.rabbitmq.destination.routing_key"],
            "greeter.hello"
        );
        assert_eq!(
            publish[0].attributes["messaging.destination.name"],
            "nameko-rpc"
        );
        let process = find(&spans, trace, "process greeter.hello");
        assert_eq!(process.len(), 1);
        assert_eq!(process[0].parent, publish[0].id);
        assert_eq!(process[0].attributes["messaging.operation.type"], "process");
        assert_eq!(process[0].attributes["enoki.service"], "greeter");
        let worker = spans
            .iter()
            .find(|s| s.name == "worker" && s.parent == process[0].id)
            .expect("greeter's worker span");
        assert_eq!(worker.trace, *trace);
        // worker -> publish (the event) -> process listener.* -> worker
        let event = find(&spans, trace, "publish greeter.events");
        assert_eq!(event.len(), 1, "{trace}");
        assert_eq!(event[0].parent, worker.id);
        assert_eq!(
            event[0].attributes["messaging.rabbitmq.destination.routing_key"],
            "greeted"
        );
        let handled: Vec<&Span> = spans
            .iter()
            .filter(|s| s.trace == *trace && s.name.starts_with("process listener.on_greeted"))
            .collect();
        assert_eq!(handled.len(), 3, "three handler types: {handled:#?}");
        for process in handled {
            assert_eq!(process.parent, event[0].id);
            assert!(
                spans
                    .iter()
                    .any(|s| s.name == "worker" && s.parent == process.id),
                "the listener's worker under {process:?}"
            );
        }
        let _ = by_id(&spans, &http_span.id);
    }
    gateway.stop().await.unwrap();

    // On the wire: the event a worker sends carries its publish span's
    // context as nameko context data and as the bare W3C header.
    use enoki::transport::{ConsumeOptions, QueueSpec, Transport};
    let transport = enoki::transport::MemoryTransport::new();
    let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
    runner.add(enoki::service::<support::greeter::Greeter>());
    runner.start().await.unwrap();
    transport
        .declare_queue(&QueueSpec::durable("tap"))
        .await
        .unwrap();
    transport
        .bind("tap", "greeter.events", "greeted")
        .await
        .unwrap();
    let mut tap = transport
        .consume("tap", ConsumeOptions::default())
        .await
        .unwrap();
    let rpc = ClusterRpc::connect(transport.clone(), &Settings::new())
        .await
        .unwrap();
    let caller = tracing::info_span!("caller");
    rpc.service("greeter")
        .call("hello", serde_json::json!(["Wire"]))
        .instrument(caller)
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), tap.next())
        .await
        .unwrap()
        .unwrap();
    // In process the trace context is a field of the message (on the wire
    // it goes both as `nameko.traceparent` and as `traceparent`: see the
    // AMQP codec's tests and tests/tracing_nameko.rs).
    let trace = delivery
        .message
        .properties
        .trace
        .as_ref()
        .expect("the event's trace context");
    let traceparent = trace.traceparent();
    assert_eq!(traceparent.len(), 55, "{traceparent}");
    assert!(
        traceparent.starts_with("00-") && traceparent.ends_with("-01"),
        "{traceparent}"
    );
    rpc.close().await;
    runner.stop().await;

    // A worker of an unsampled trace has no span the exporter sees; what it
    // sends after waiting (from a task of its own) stays in its trace, not
    // sampled, rather than starting a new one.
    let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
    runner.add(enoki::service::<Relay>());
    runner.start().await.unwrap();
    transport
        .declare_queue(&QueueSpec::durable("relayed"))
        .await
        .unwrap();
    transport
        .bind("relayed", "relay.events", "relayed")
        .await
        .unwrap();
    let mut relayed = transport
        .consume("relayed", ConsumeOptions::default())
        .await
        .unwrap();
    let replies = "rpc.reply-tracing-test";
    transport
        .declare_queue(&QueueSpec::durable(replies))
        .await
        .unwrap();
    for flags in ["00", "01"] {
        let trace = "6df92f3577b34da6a3ce929d0e0e4738";
        let traceparent = format!("00-{trace}-00f067aa0ba902b9-{flags}");
        let request = enoki::message::Message::json(br#"{"args":[],"kwargs":{}}"#.to_vec())
            .with_trace(
                enoki::trace_context::TraceContext::parse(&traceparent, None).map(Into::into),
            )
            .with_reply_to(replies)
            .with_correlation_id(flags);
        transport
            .publish(
                "nameko-rpc",
                "relay.relay",
                request,
                enoki::transport::PublishOptions::default(),
            )
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), relayed.next())
            .await
            .unwrap()
            .unwrap();
        let sent = event
            .message
            .properties
            .trace
            .as_ref()
            .expect("the event's trace context")
            .traceparent();
        assert!(
            sent.starts_with(&format!("00-{trace}-")) && sent.ends_with(&format!("-{flags}")),
            "{traceparent} -> {sent}"
        );
        if flags == "01" {
            assert_ne!(sent, traceparent, "the event's own publish span");
        }
        // In a trace that is not sampled no span is exported, and the
        // worker passes on the context it was called in (its trace, its
        // flag) without copying its headers to write new ids.
        event.ack().await.unwrap();
    }
    runner.stop().await;

    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap();
    assert!(!enoki::telemetry::active(), "off once shut down");
}

/// Flushes the exporter, off the async workers (its client blocks).
async fn telemetry_flush(telemetry: &enoki::telemetry::Telemetry) -> bool {
    tokio::task::block_in_place(|| telemetry.flush());
    true
}

#[test]
fn a_malformed_endpoint_is_a_clear_error() {
    let err =
        enoki::telemetry::otlp_layer::<tracing_subscriber::Registry>("x", Some("localhost:4318"))
            .err()
            .expect("rejected");
    assert!(
        err.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{err}"
    );
}
