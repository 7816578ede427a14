//! Service metrics (`enoki::service_metrics`), on the embedded broker and
//! on RabbitMQ: workers running and `max_workers`, outcomes and latencies
//! per entrypoint, retries, dead letters and queue depths, redeliveries.

mod common;

use std::sync::Arc;
use std::time::Duration;

use enoki::prelude::*;
use enoki::service_metrics::ServiceMetrics;
use enoki::transport::Transport;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Opened by the test to let `measured.hold` return.
static GATE: Semaphore = Semaphore::const_new(0);

/// One test at a time: they share `GATE`.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Dependencies)]
struct Measured;

#[service(name = "measured")]
impl Measured {
    #[rpc]
    async fn ok(&self) -> Result<u32, RemoteError> {
        Ok(1)
    }

    #[rpc]
    async fn fails(&self) -> Result<u32, RemoteError> {
        Err(RemoteError::new("Nope", "always"))
    }

    #[rpc]
    async fn hold(&self) -> Result<(), RemoteError> {
        GATE.acquire().await.expect("open").forget();
        Ok(())
    }

    #[event_handler("src", "bad", requeue_on_error = true)]
    async fn on_bad(&self, _payload: Value) -> Result<(), RemoteError> {
        Err(RemoteError::new("Bad", "always"))
    }
}

/// How many times `flaky.on_flaky` failed so far.
static FLAKY_FAILURES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[derive(Dependencies)]
struct Flaky;

#[service(name = "flaky")]
impl Flaky {
    /// Fails twice, then handles the event.
    #[event_handler("src", "flaky", requeue_on_error = true)]
    async fn on_flaky(&self, _payload: Value) -> Result<(), RemoteError> {
        use std::sync::atomic::Ordering;
        if FLAKY_FAILURES.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(RemoteError::new("Flaky", "not yet"))
        } else {
            Ok(())
        }
    }
}

fn handled_now(text: &str, entrypoint: &str) -> Option<f64> {
    value(
        text,
        &format!(
            r#"enoki_entrypoint_handled_total{{service="measured",entrypoint="{entrypoint}",outcome="ok"}} "#
        ),
    )
}

/// The value of the series `name{labels}` in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

async fn metrics_count_what_the_services_did(transport: Arc<dyn Transport>) {
    let _serial = SERIAL.lock().await;
    let settings = Settings::new()
        .with("RETRY_DELAYS", json!([0.05]))
        .with("RETRY_LIMIT", json!(1));
    let metrics = ServiceMetrics::new();
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    runner
        .metrics(metrics.clone())
        .add(enoki::service::<Measured>());
    runner.start().await.expect("starts");
    let rpc = ClusterRpc::connect(transport.clone(), &settings)
        .await
        .expect("client");
    let measured = rpc.service("measured");
    measured.call("ok", json!([])).await.unwrap();
    measured.call("ok", json!([])).await.unwrap();
    assert!(measured.call("fails", json!([])).await.is_err());
    let holding = tokio::spawn({
        let rpc = rpc.clone();
        async move { rpc.service("measured").call("hold", json!([])).await }
    });
    EventPublisher::new(transport.clone(), &settings)
        .dispatch("src", "bad", &json!({}))
        .await
        .unwrap();

    let queue = "evt-src-bad--measured.on_bad";
    let series = |name: &str, labels: &str| format!("{name}{{{labels}}} ");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = metrics.render_with_queues().await;
        let parked = value(
            &text,
            &series(
                "enoki_queue_messages",
                &format!(r#"service="measured",queue="{queue}.dlq""#),
            ),
        );
        let running = value(
            &text,
            &series("enoki_workers_running", r#"service="measured""#),
        );
        if parked == Some(1.0) && running == Some(1.0) {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let handled = |entrypoint: &str, outcome: &str| {
        value(
            &text,
            &series(
                "enoki_entrypoint_handled_total",
                &format!(r#"service="measured",entrypoint="{entrypoint}",outcome="{outcome}""#),
            ),
        )
    };
    assert_eq!(handled("ok", "ok"), Some(2.0), "{text}");
    assert_eq!(handled("ok", "error"), Some(0.0), "{text}");
    assert_eq!(handled("fails", "error"), Some(1.0), "{text}");
    assert_eq!(
        handled("on_bad", "error"),
        Some(2.0),
        "run, then one retry: {text}"
    );
    assert_eq!(handled("hold", "ok"), Some(0.0), "still running: {text}");
    assert_eq!(
        value(
            &text,
            &series(
                "enoki_entrypoint_duration_seconds_count",
                r#"service="measured",entrypoint="ok",outcome="ok""#
            )
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &series("enoki_max_workers", r#"service="measured""#)),
        Some(10.0)
    );
    let of_queue = |name: &str| {
        value(
            &text,
            &series(name, &format!(r#"service="measured",queue="{queue}""#)),
        )
    };
    assert_eq!(of_queue("enoki_queue_retries_total"), Some(1.0), "{text}");
    assert_eq!(
        of_queue("enoki_queue_dead_letters_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(of_queue("enoki_queue_messages"), Some(0.0), "{text}");
    assert_eq!(
        value(
            &text,
            &series(
                "enoki_queue_messages",
                r#"service="measured",queue="rpc-measured""#
            )
        ),
        Some(0.0),
        "{text}"
    );

    GATE.add_permits(1);
    holding.await.unwrap().unwrap();
    // The reply goes out before the worker's teardown: the gauge drops
    // once the worker is done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics.render();
        let running = value(
            &text,
            &series("enoki_workers_running", r#"service="measured""#),
        );
        if running == Some(0.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        handled_now(&metrics.render(), "hold"),
        Some(1.0),
        "the held worker is counted once done"
    );
    rpc.close().await;
    runner.stop().await;
}

/// nameko's immediate requeue (`RETRY_DELAYS: []`): each failure comes
/// back flagged redelivered.
async fn redeliveries_are_counted(transport: Arc<dyn Transport>) {
    let _serial = SERIAL.lock().await;
    FLAKY_FAILURES.store(0, std::sync::atomic::Ordering::SeqCst);
    let settings = Settings::new().with("RETRY_DELAYS", json!([]));
    let metrics = ServiceMetrics::new();
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    runner
        .metrics(metrics.clone())
        .add(enoki::service::<Flaky>());
    runner.start().await.expect("starts");
    EventPublisher::new(transport.clone(), &settings)
        .dispatch("src", "flaky", &json!({}))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = metrics.render();
        if value(
            &text,
            r#"enoki_entrypoint_handled_total{service="flaky",entrypoint="on_flaky",outcome="ok"} "#,
        ) == Some(1.0)
        {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let queue = "evt-src-flaky--flaky.on_flaky";
    let of_queue = |name: &str| {
        value(
            &text,
            &format!(r#"{name}{{service="flaky",queue="{queue}"}} "#),
        )
    };
    assert_eq!(
        of_queue("enoki_queue_redeliveries_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(of_queue("enoki_queue_retries_total"), Some(0.0), "{text}");
    assert_eq!(
        of_queue("enoki_queue_dead_letters_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"enoki_entrypoint_handled_total{service="flaky",entrypoint="on_flaky",outcome="error"} "#
        ),
        Some(2.0),
        "{text}"
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_metrics_on_the_embedded_broker() {
    metrics_count_what_the_services_did(enoki::transport::MemoryTransport::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_on_the_embedded_broker() {
    redeliveries_are_counted(enoki::transport::MemoryTransport::new()).await;
}

#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_on_rabbitmq() {
    let Some(vhost) = common::amqp::TestVhost::create() else {
        return;
    };
    let transport = enoki::transport::AmqpTransport::connect(&vhost.uri, Default::default())
        .await
        .expect("connects");
    redeliveries_are_counted(transport.clone()).await;
    transport.close().await;
}

#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_metrics_on_rabbitmq() {
    let Some(vhost) = common::amqp::TestVhost::create() else {
        return;
    };
    let transport = enoki::transport::AmqpTransport::connect(&vhost.uri, Default::default())
        .await
        .expect("connects");
    metrics_count_what_the_services_did(transport.clone()).await;
    transport.close().await;
}
