//! Beyond one broker, on RabbitMQ (each test in its own throwaway vhost):
//!
//! - `QUEUE_TYPE: quorum`: `rpc-<service>` and the durable event queues are
//!   quorum queues with a delivery limit and a `<queue>.dlq`; reply,
//!   broadcast and auto-delete queues stay classic; an event handler with
//!   `requeue_on_error` that keeps failing stops after the delivery limit,
//!   its event parked in the dead-letter queue instead of looping forever;
//! - a CPU-bound handler that holds its thread for longer than three
//!   heartbeat intervals costs neither its connection nor a redelivery of
//!   its request (nameko issue #477).
//!
//! Skipped (with a message) when RabbitMQ is not reachable, unless `CI=true`.
#![cfg(feature = "amqp")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::amqp::TestVhost;
use enoki::prelude::*;
use enoki::transport::{AmqpOptions, AmqpTransport, Transport};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

async fn eventually(mut check: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < DEADLINE,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `name -> (type, messages)` of the vhost's queues.
fn queues(vhost: &TestVhost) -> Vec<(String, String, u64)> {
    vhost
        .list_queues(&["name", "type", "messages"])
        .lines()
        .filter_map(|line| {
            let mut cols = line.split('\t');
            Some((
                cols.next()?.to_owned(),
                cols.next()?.trim().to_owned(),
                cols.next()?.trim().parse().ok()?,
            ))
        })
        .collect()
}

fn queue<'a>(all: &'a [(String, String, u64)], name: &str) -> Option<&'a (String, String, u64)> {
    all.iter().find(|(n, _, _)| n == name)
}

// ===== quorum queues =====

static POISON_CALLS: AtomicUsize = AtomicUsize::new(0);

#[derive(Dependencies)]
struct Replicated;

#[service(name = "replicated")]
impl Replicated {
    #[rpc]
    async fn echo(&self, value: Value) -> Result<Value, RemoteError> {
        Ok(value)
    }

    /// Always fails, and asks for its event back each time.
    #[event_handler("source", "poison", requeue_on_error = true)]
    async fn on_poison(&self, _payload: Value) -> Result<(), RemoteError> {
        POISON_CALLS.fetch_add(1, Ordering::SeqCst);
        Err(RemoteError::new("Poisoned", "this event always fails"))
    }

    #[event_handler("source", "fleeting", reliable_delivery = false)]
    async fn on_fleeting(&self, _payload: Value) -> Result<(), RemoteError> {
        Ok(())
    }

    #[event_handler("source", "everyone", handler_type = broadcast)]
    async fn on_everyone(&self, _payload: Value) -> Result<(), RemoteError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_park_poison_events_after_the_delivery_limit() {
    const LIMIT: usize = 2;
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let settings = Settings::new()
        .with("QUEUE_TYPE", json!("quorum"))
        .with("QUEUE_DELIVERY_LIMIT", json!(LIMIT));
    let transport = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
        .await
        .expect("connects");
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    runner.add(enoki::service::<Replicated>());
    runner.start().await.expect("starts");
    let rpc = ClusterRpc::connect(transport.clone(), &settings)
        .await
        .expect("client");
    assert_eq!(
        rpc.service("replicated")
            .call("echo", json!([7]))
            .await
            .unwrap(),
        json!(7)
    );

    let all = queues(&vhost);
    let kind = |name: &str| {
        queue(&all, name)
            .map(|(_, kind, _)| kind.as_str())
            .unwrap_or_else(|| panic!("no queue {name}: {all:?}"))
    };
    let poison = "evt-source-poison--replicated.on_poison";
    for name in [
        "rpc-replicated",
        "rpc-replicated.dlq",
        poison,
        &format!("{poison}.dlq"),
    ] {
        assert_eq!(kind(name), "quorum", "{name}");
    }
    assert_eq!(
        kind("evt-source-fleeting--replicated.on_fleeting"),
        "classic",
        "auto-delete stays classic"
    );
    for (name, kind, _) in &all {
        if name.starts_with("rpc.reply-") || name.contains("on_everyone") {
            assert_eq!(kind, "classic", "{name} stays as nameko makes it");
        }
    }

    EventPublisher::new(transport.clone(), &settings)
        .dispatch("source", "poison", &json!({"n": 1}))
        .await
        .expect("dispatch");
    let dlq = format!("{poison}.dlq");
    eventually(
        || queue(&queues(&vhost), &dlq).is_some_and(|(_, _, n)| *n == 1),
        "the poison event reaches the dead-letter queue",
    )
    .await;
    // Delivered once, then redelivered LIMIT times; then parked. The work
    // queue is empty, so nothing can call the handler again.
    assert_eq!(POISON_CALLS.load(Ordering::SeqCst), LIMIT + 1);
    assert_eq!(queue(&queues(&vhost), poison).map(|q| q.2), Some(0));
    rpc.close().await;
    runner.stop().await;
    transport.close().await;
}

// ===== a CPU-bound handler =====

#[derive(Dependencies)]
struct Cruncher;

static CRUNCHES: AtomicUsize = AtomicUsize::new(0);

#[service(name = "cruncher")]
impl Cruncher {
    /// Holds its thread (no `.await`) for `millis`.
    #[rpc]
    async fn crunch(&self, millis: u64) -> Result<u64, RemoteError> {
        CRUNCHES.fetch_add(1, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_millis(millis);
        let mut spins = 0u64;
        while Instant::now() < until {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
        Ok(millis)
    }
}

/// nameko issue #477: a handler that burns the CPU past the heartbeat
/// timeout loses nameko its connection (eventlet cannot send heartbeats),
/// and the request is redelivered and run again. lapin sends heartbeats
/// from its own thread, so neither happens here: with a 1 s heartbeat the
/// handler holds a runtime thread for 4 s, and the request runs once, the
/// connection stays up, and the caller gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_bound_handler_keeps_its_connection_and_its_delivery() {
    const HOLD_MS: u64 = 4_000;
    if let Ok(filter) = std::env::var("CLUSTER_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let options = AmqpOptions {
        heartbeat: 1,
        ..AmqpOptions::default()
    };
    // The service's runtime has one thread, so the handler holds all of it.
    let service = {
        let uri = vhost.uri.clone();
        let options = options.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let transport = AmqpTransport::connect(&uri, options).await.unwrap();
                let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
                runner.add(enoki::service::<Cruncher>());
                runner.start().await.expect("starts");
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                STOP.lock().replace(tx);
                let _ = rx.await;
                let connected = transport.is_connected();
                runner.stop().await;
                transport.close().await;
                connected
            })
        })
    };
    let client = AmqpTransport::connect(&vhost.uri, options).await.unwrap();
    let rpc = ClusterRpc::builder(client.clone())
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    eventually(|| STOP.lock().is_some(), "the service starts").await;
    let before = peer_ports(&vhost);
    assert_eq!(
        before.len(),
        2,
        "the service's and the client's: {before:?}"
    );
    let answer = rpc
        .service("cruncher")
        .call("crunch", json!([HOLD_MS]))
        .await;
    assert_eq!(answer.expect("answered"), json!(HOLD_MS));
    // A second call is served by the same connection, and the first was
    // not redelivered behind it.
    assert_eq!(
        rpc.service("cruncher")
            .call("crunch", json!([1]))
            .await
            .unwrap(),
        json!(1)
    );
    assert_eq!(CRUNCHES.load(Ordering::SeqCst), 2, "a request ran twice");
    assert_eq!(peer_ports(&vhost), before, "a connection was replaced");
    STOP.lock()
        .take()
        .expect("service running")
        .send(())
        .unwrap();
    assert!(service.join().unwrap(), "the service's connection dropped");
    rpc.close().await;
    client.close().await;
}

/// The client ports of the vhost's connections: a connection that dropped
/// and came back has another.
fn peer_ports(vhost: &TestVhost) -> std::collections::BTreeSet<String> {
    common::amqp::rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "vhost",
        "peer_port",
    ])
    .lines()
    .filter_map(|line| {
        let (host, port) = line.split_once('\t')?;
        (host == vhost.name).then(|| port.trim().to_owned())
    })
    .collect()
}

static STOP: parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<()>>> =
    parking_lot::Mutex::new(None);
