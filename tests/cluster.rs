//! Beyond one broker, on RabbitMQ (each test in its own throwaway vhost):
//!
//! - `QUEUE_TYPE: quorum`: `rpc-<service>` and the durable event queues are
//!   quorum queues with a delivery limit and a `<queue>.dlq`; reply,
//!   broadcast and auto-delete queues stay classic; an event handler with
//!   `requeue_on_error` that keeps failing stops after the delivery limit,
//!   its event parked in the dead-letter queue instead of looping forever;
//! - retries with backoff (`RETRY_DELAYS`, `RETRY_LIMIT`) on classic and
//!   on quorum queues: a failing event waits in `<queue>.retry.<ms>`
//!   between runs, and ends in `<queue>.dlq`;
//! - a CPU-bound handler that holds its thread for longer than three
//!   heartbeat intervals costs neither its connection nor a redelivery of
//!   its request (nameko issue #477);
//! - faults on the 3-node cluster of `scripts/cluster` (quorum queues,
//!   failover URIs, 64 calls in flight, each call retried with the same id
//!   until answered), one at a time, each printing a row of its figures
//!   (calls sent, answered right, attempts failed with a clear error, lost,
//!   duplicate executions, longest time without an answer): kill -9 of the
//!   service's broker node, kill -9 and SIGTERM of one of two service
//!   instances (child processes: this binary's `fault_instance`), a network
//!   partition between the service and its node, and 10,000 service-pool
//!   events while one of two listeners is killed. Nothing may be lost; a
//!   graceful stop may fail nothing.
//!
//! Skipped (with a message) when RabbitMQ, or the cluster, is not
//! reachable, unless `CI=true`.
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
    // Backoff off, as nameko requeues: the broker's delivery limit alone
    // ends the loop.
    let settings = Settings::new()
        .with("QUEUE_TYPE", json!("quorum"))
        .with("QUEUE_DELIVERY_LIMIT", json!(LIMIT))
        .with("RETRY_DELAYS", json!([]));
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

    // A person looks at it: listing leaves it where it is.
    for _ in 0..2 {
        let letters = enoki::dlq::list(&*transport, poison, 10).await.unwrap();
        assert_eq!(letters.len(), 1, "{letters:?}");
        let letter = &letters[0];
        assert_eq!(letter.queue, poison);
        assert_eq!(letter.reason, "delivery_limit");
        assert_eq!(letter.exchange, "source.events");
        assert_eq!(letter.routing_key, "poison");
        assert_eq!(letter.body, r#"{"n":1}"#);
    }
    // Replayed while the handler still fails: it is handled again up to
    // the delivery limit, then parked again; the replay took it once.
    let replayed = enoki::dlq::replay(&*transport, &dlq, 10).await.unwrap();
    assert_eq!(
        replayed,
        enoki::dlq::Replayed {
            replayed: 1,
            failed: 0
        }
    );
    eventually(
        || {
            POISON_CALLS.load(Ordering::SeqCst) == 2 * (LIMIT + 1)
                && queue(&queues(&vhost), &dlq).is_some_and(|(_, _, n)| *n == 1)
        },
        "the replayed event fails again and goes back to the dead-letter queue",
    )
    .await;
    assert_eq!(queue(&queues(&vhost), poison).map(|q| q.2), Some(0));

    // An RPC request is replayed through the RPC exchange with its
    // method's routing key, and answered.
    replay_an_rpc_request(&transport).await;
    rpc.close().await;
    runner.stop().await;
    transport.close().await;
}

// ===== retries with backoff =====

/// When `backing_off.on_doomed` ran, per test (keyed by queue type).
static DOOMED_RUNS: parking_lot::Mutex<Vec<(&'static str, Instant)>> =
    parking_lot::Mutex::new(Vec::new());

/// Which queue type the running `backing_off` instance was given.
#[derive(Dependencies)]
struct BackingOff {
    #[dependency(Config)]
    config: Settings,
}

#[service(name = "backing_off")]
impl BackingOff {
    /// Always fails, and asks for its event back each time.
    #[event_handler("source", "doomed", requeue_on_error = true)]
    async fn on_doomed(&self, _payload: Value) -> Result<(), RemoteError> {
        let kind = match self.config.get("QUEUE_TYPE").and_then(Value::as_str) {
            Some("quorum") => "quorum",
            _ => "classic",
        };
        DOOMED_RUNS.lock().push((kind, Instant::now()));
        Err(RemoteError::new("Doomed", "this event always fails"))
    }
}

/// `RETRY_DELAYS` [0.2, 0.6] and `RETRY_LIMIT` 2 on RabbitMQ: the event
/// runs three times, at least 0.2 s and 0.6 s apart, waiting in delay
/// queues of the queue type asked for, then sits in `<queue>.dlq` with
/// where it came from; a replay runs it three times more and parks it
/// again, once.
async fn retries_back_off_then_dead_letter(queue_type: &'static str) {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let settings = Settings::new()
        .with("QUEUE_TYPE", json!(queue_type))
        .with("RETRY_DELAYS", json!([0.2, 0.6]))
        .with("RETRY_LIMIT", json!(2));
    let transport = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
        .await
        .expect("connects");
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    runner.add(enoki::service::<BackingOff>());
    runner.start().await.expect("starts");
    let doomed = "evt-source-doomed--backing_off.on_doomed";
    let dlq = format!("{doomed}.dlq");
    let all = queues(&vhost);
    for name in [
        doomed.to_owned(),
        format!("{doomed}.retry.200"),
        format!("{doomed}.retry.600"),
        dlq.clone(),
    ] {
        let kind = queue(&all, &name).map(|(_, kind, _)| kind.as_str());
        assert_eq!(kind, Some(queue_type), "{name}: {all:?}");
    }
    let runs = || -> Vec<Instant> {
        DOOMED_RUNS
            .lock()
            .iter()
            .filter(|(kind, _)| *kind == queue_type)
            .map(|(_, at)| *at)
            .collect()
    };
    let parked = || queue(&queues(&vhost), &dlq).is_some_and(|(_, _, n)| *n == 1);

    let publisher = EventPublisher::new(transport.clone(), &settings);
    publisher
        .dispatch("source", "doomed", &json!({"n": 1}))
        .await
        .expect("dispatch");
    eventually(parked, "the event reaches the dead-letter queue").await;
    let first = runs();
    assert_eq!(first.len(), 3, "one run and two retries");
    for (gap, delay) in first.windows(2).map(|w| w[1] - w[0]).zip([200, 600]) {
        assert!(gap >= Duration::from_millis(delay), "{gap:?} < {delay} ms");
    }
    let letters = enoki::dlq::list(&*transport, doomed, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].queue, doomed);
    assert_eq!(letters[0].reason, "rejected");
    assert_eq!(letters[0].count, 3);
    assert_eq!(letters[0].exchange, "source.events");
    assert_eq!(letters[0].routing_key, "doomed");

    let replayed = enoki::dlq::replay(&*transport, doomed, 10).await.unwrap();
    assert_eq!(replayed.replayed, 1);
    eventually(
        || runs().len() == 6 && parked(),
        "the replayed event runs three times more and is parked again",
    )
    .await;
    for name in [
        format!("{doomed}.retry.200"),
        format!("{doomed}.retry.600"),
        doomed.to_owned(),
    ] {
        assert_eq!(
            queue(&queues(&vhost), &name).map(|q| q.2),
            Some(0),
            "{name}"
        );
    }
    runner.stop().await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_on_classic_queues() {
    retries_back_off_then_dead_letter("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_on_quorum_queues() {
    retries_back_off_then_dead_letter("quorum").await;
}

/// Puts a dead RPC request (as RabbitMQ dead-letters one: `x-death` names
/// its queue, exchange and routing key) in `rpc-replicated.dlq`, replays it
/// and reads the service's reply.
async fn replay_an_rpc_request(transport: &std::sync::Arc<AmqpTransport>) {
    use enoki::transport::{PublishOptions, QueueSpec};
    let replies = "replay-replies";
    transport
        .declare_queue(&QueueSpec::durable(replies))
        .await
        .unwrap();
    transport
        .bind(replies, "nameko-rpc", replies)
        .await
        .unwrap();
    let mut consumer = transport
        .consume(
            replies,
            enoki::transport::ConsumeOptions {
                prefetch: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let death = json!([{
        "count": 5,
        "reason": "delivery_limit",
        "queue": "rpc-replicated",
        "exchange": "nameko-rpc",
        "routing-keys": ["replicated.echo"],
    }]);
    let mut headers = serde_json::Map::new();
    headers.insert("x-death".into(), death);
    let request = enoki::message::Message::json(&br#"{"args": [5], "kwargs": {}}"#[..])
        .with_headers(headers)
        .with_correlation_id("replayed-1")
        .with_reply_to(replies);
    transport
        .publish(
            "",
            "rpc-replicated.dlq",
            request,
            PublishOptions { mandatory: true },
        )
        .await
        .unwrap();
    let letters = enoki::dlq::list(&**transport, "rpc-replicated", 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].routing_key, "replicated.echo");
    let replayed = enoki::dlq::replay(&**transport, "rpc-replicated", 10)
        .await
        .unwrap();
    assert_eq!(replayed.replayed, 1);
    let reply = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a reply")
        .expect("the consumer runs");
    assert_eq!(
        reply.message.properties.correlation_id.as_deref(),
        Some("replayed-1")
    );
    let body: Value = serde_json::from_slice(&reply.message.body).unwrap();
    assert_eq!(body, json!({"result": 5, "error": null}));
    reply.ack().await.unwrap();
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

// ===== faults on the 3-node cluster, under steady load =====

/// The fault tests run one at a time: each breaks a part the others use.
static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Calls in flight during a fault.
const IN_FLIGHT: usize = 64;
/// A caller's timeout; a call that times out is retried with the same id.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers needed before the fault, and after it, to call the run done.
const BEFORE: usize = 300;
const AFTER: usize = 1_000;

/// Where the running instance appends `<id>#<attempt>` per execution (one
/// `write` each, so a kill -9 loses nothing already written).
static EXECUTIONS: parking_lot::Mutex<Option<std::fs::File>> = parking_lot::Mutex::new(None);

#[derive(Dependencies)]
struct Steady;

#[service(name = "steady")]
impl Steady {
    #[rpc]
    async fn work(&self, id: String, attempt: u32) -> Result<String, RemoteError> {
        if let Some(file) = EXECUTIONS.lock().as_mut() {
            use std::io::Write;
            file.write_all(format!("{id}#{attempt}\n").as_bytes())
                .expect("record the execution");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(id)
    }

    /// A service-pool handler: each event is handled by one instance.
    #[event_handler("faults", "tick")]
    async fn on_tick(&self, n: u64) -> Result<(), RemoteError> {
        if let Some(file) = EXECUTIONS.lock().as_mut() {
            use std::io::Write;
            file.write_all(format!("tick-{n}\n").as_bytes())
                .expect("record the event");
        }
        Ok(())
    }
}

fn steady_settings() -> Settings {
    Settings::new()
        .with("QUEUE_TYPE", json!("quorum"))
        .with("max_workers", json!(32))
}

fn record_to(path: &std::path::Path) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the executions file");
    EXECUTIONS.lock().replace(file);
}

/// What a run under load saw.
#[derive(Debug, Default)]
struct Report {
    /// Distinct calls (ids) made.
    sent: usize,
    /// Answered with their own id.
    right: usize,
    /// Answered with something else (must be 0).
    wrong: usize,
    /// Attempts that failed with a clear error (then retried).
    failed: usize,
    /// Calls never answered (must be 0).
    lost: usize,
    /// Executions of one attempt beyond the first (at-least-once).
    duplicates: usize,
    /// The longest time without an answer, from the fault on.
    recovery: Duration,
    /// A few of the errors seen.
    errors: std::collections::BTreeSet<String>,
}

impl Report {
    fn row(&self, scenario: &str) -> String {
        format!(
            "| {scenario} | {} | {} | {} | {} | {} | {:.2} s |",
            self.sent,
            self.right,
            self.failed,
            self.lost,
            self.duplicates,
            self.recovery.as_secs_f64()
        )
    }
}

/// Keeps [`IN_FLIGHT`] calls going; after [`BEFORE`] answers runs `fault`,
/// then stops once [`AFTER`] more have come. Every call is retried (same
/// id, next attempt) until answered or 60 s have passed since the fault.
async fn under_load(rpc: &ClusterRpc, fault: impl std::future::Future<Output = ()>) -> Report {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let rpc = rpc.with_timeout(CALL_TIMEOUT);
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let answers: Arc<parking_lot::Mutex<Vec<Instant>>> = Arc::default();
    let report: Arc<parking_lot::Mutex<Report>> = Arc::default();
    let give_up: Arc<parking_lot::Mutex<Option<Instant>>> = Arc::default();
    let callers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (rpc, stop, next, answers, report, give_up) = (
                rpc.clone(),
                stop.clone(),
                next.clone(),
                answers.clone(),
                report.clone(),
                give_up.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("call-{}", next.fetch_add(1, Ordering::SeqCst));
                    report.lock().sent += 1;
                    let mut attempt = 0u32;
                    loop {
                        let steady = rpc.service("steady");
                        match steady.call("work", json!([id, attempt])).await {
                            Ok(answer) => {
                                let mut report = report.lock();
                                if answer == json!(id) {
                                    report.right += 1;
                                } else {
                                    report.wrong += 1;
                                }
                                answers.lock().push(Instant::now());
                                break;
                            }
                            Err(err) => {
                                {
                                    let mut report = report.lock();
                                    report.failed += 1;
                                    if report.errors.len() < 5 {
                                        report.errors.insert(err.to_string());
                                    }
                                }
                                if give_up.lock().is_some_and(|at| Instant::now() > at) {
                                    report.lock().lost += 1;
                                    break;
                                }
                                attempt += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let count = || answers.lock().len();
    eventually(|| count() >= BEFORE, "answers before the fault").await;
    fault.await;
    let fault_at = Instant::now();
    give_up.lock().replace(fault_at + Duration::from_secs(60));
    let target = count() + AFTER;
    let start = Instant::now();
    while count() < target {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no recovery within 60 s: {:?}",
            report.lock()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.expect("a caller panicked");
    }
    let mut report = std::mem::take(&mut *report.lock());
    let times = answers.lock();
    let mut last = fault_at;
    for at in times.iter().filter(|at| **at >= fault_at) {
        report.recovery = report.recovery.max(at.duration_since(last));
        last = *at;
    }
    report
}

/// Executions per attempt beyond the first, over the instances' files.
fn duplicates(files: &[&std::path::Path]) -> usize {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for file in files {
        for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
            *seen.entry(line.to_owned()).or_default() += 1;
        }
    }
    seen.values().map(|n| n - 1).sum()
}

fn assert_nothing_lost(report: &Report, scenario: &str) {
    println!("{}", report.row(scenario));
    println!("errors seen: {:?}", report.errors);
    assert_eq!(report.lost, 0, "{scenario}: calls lost: {report:?}");
    assert_eq!(report.wrong, 0, "{scenario}: wrong answers: {report:?}");
    assert_eq!(report.right, report.sent, "{scenario}: {report:?}");
}

async fn client(
    vhost: &common::cluster::ClusterVhost,
    first: usize,
) -> (std::sync::Arc<AmqpTransport>, ClusterRpc) {
    let transport = AmqpTransport::connect(&vhost.uris(first), AmqpOptions::default())
        .await
        .expect("the client connects");
    let rpc = ClusterRpc::connect(transport.clone(), &steady_settings())
        .await
        .expect("client");
    (transport, rpc)
}

fn temp_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "enoki-fault-{}-{name}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// kill -9 of the broker node the service is connected to: the service
/// moves to the next node of its failover list, the quorum queue elects a
/// leader on the two nodes left, and every call is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_kill_the_services_broker_node() {
    let _serial = FAULTS.lock().await;
    let Some(vhost) = common::cluster::ClusterVhost::create() else {
        return;
    };
    let executions = temp_file("node");
    record_to(&executions);
    let service = AmqpTransport::connect(&vhost.uris(1), AmqpOptions::default())
        .await
        .expect("the service connects to node 1");
    let mut runner = ServiceRunner::new(service.clone(), steady_settings());
    runner.add(enoki::service::<Steady>());
    runner.start().await.expect("starts");
    let (transport, rpc) = client(&vhost, 2).await;
    let mut report = under_load(&rpc, async { common::cluster::kill(1) }).await;
    report.duplicates = duplicates(&[&executions]);
    EXECUTIONS.lock().take();
    rpc.close().await;
    runner.stop().await;
    service.close().await;
    transport.close().await;
    common::cluster::revive(1);
    let _ = std::fs::remove_file(&executions);
    assert_nothing_lost(&report, "kill -9 of the service's broker node");
}

/// One instance of the service, as its own process (this test binary, run
/// as `fault_instance`).
struct Instance {
    child: std::process::Child,
    executions: std::path::PathBuf,
}

impl Instance {
    fn start(uris: &str) -> Instance {
        use std::io::BufRead;
        let executions = temp_file("instance");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "fault_instance",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "ENOKI_FAULT_INSTANCE",
                format!("{uris}|{}", executions.display()),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start an instance");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.ends_with("fault instance ready") => break,
                Some(Ok(_)) => {}
                other => panic!("the instance did not start: {other:?}"),
            }
        }
        // Keep reading, so that the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Instance { child, executions }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.executions);
    }
}

/// Not a test: the service instance the fault tests start as a child
/// process (`ENOKI_FAULT_INSTANCE=<uris>|<executions file>`). It serves
/// until SIGTERM, then stops gracefully.
#[test]
#[ignore = "a child process of the fault tests"]
fn fault_instance() {
    let spec = std::env::var("ENOKI_FAULT_INSTANCE").expect("ENOKI_FAULT_INSTANCE");
    let (uris, executions) = spec.split_once('|').expect("<uris>|<file>");
    record_to(std::path::Path::new(executions));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let signal = enoki::shutdown::shutdown_signal();
        let transport = AmqpTransport::connect(uris, AmqpOptions::default())
            .await
            .expect("the instance connects");
        let mut runner = ServiceRunner::new(transport.clone(), steady_settings());
        runner.add(enoki::service::<Steady>());
        runner.start().await.expect("starts");
        println!("fault instance ready");
        signal.await;
        runner.stop().await;
        transport.close().await;
    });
}

/// Two instances (own processes, on nodes 1 and 2), a client on node 3;
/// the fault is `signal` sent to the first instance.
async fn two_instances(signal: &'static str) -> Option<(Report, std::process::ExitStatus)> {
    let _serial = FAULTS.lock().await;
    let vhost = common::cluster::ClusterVhost::create()?;
    let mut first = Instance::start(&vhost.uris(1));
    let second = Instance::start(&vhost.uris(2));
    let (transport, rpc) = client(&vhost, 3).await;
    let mut report = under_load(&rpc, async { first.signal(signal) }).await;
    let status = first.wait();
    report.duplicates = duplicates(&[&first.executions, &second.executions]);
    rpc.close().await;
    transport.close().await;
    drop(second);
    Some((report, status))
}

/// kill -9 of one of two service instances: the broker requeues what the
/// dead one held, the other serves it; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_kill_one_of_two_instances() {
    let Some((report, _)) = two_instances("-KILL").await else {
        return;
    };
    assert_nothing_lost(&report, "kill -9 of one of two instances");
}

/// SIGTERM of one of two instances: a graceful stop (it stops consuming,
/// finishes and acks what it holds, gives back what it had not started):
/// nothing fails, and nothing runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sigterm_one_of_two_instances() {
    let Some((report, status)) = two_instances("-TERM").await else {
        return;
    };
    assert_nothing_lost(&report, "SIGTERM of one of two instances");
    assert!(status.success(), "the instance exits cleanly: {status}");
    assert_eq!(
        report.failed, 0,
        "a graceful stop fails no call: {report:?}"
    );
    // Once, in about one run in ten: the close of the connection met a
    // consumer channel closing, lapin dropped the socket, and the broker
    // requeued requests whose acks it had not read yet.
    assert_eq!(
        report.duplicates, 0,
        "a graceful stop runs nothing twice: {report:?}"
    );
}

/// A network partition between the service and its broker node (a TCP
/// proxy that silently drops everything both ways): the service notices by
/// its heartbeats (2 s here), moves to the next node, and the broker, by
/// its own heartbeat timeout, requeues what the cut-off connection held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_partition_the_services_broker_node() {
    let _serial = FAULTS.lock().await;
    let Some(vhost) = common::cluster::ClusterVhost::create() else {
        return;
    };
    let proxy =
        common::proxy::TcpProxy::start(&format!("127.0.0.1:{}", common::cluster::port(1))).await;
    let uris = format!(
        "amqp://guest:guest@{}/{};{};{}",
        proxy.addr(),
        vhost.name,
        vhost.uri(2),
        vhost.uri(3)
    );
    let executions = temp_file("partition");
    record_to(&executions);
    let options = AmqpOptions {
        heartbeat: 2,
        ..AmqpOptions::default()
    };
    let service = AmqpTransport::connect(&uris, options)
        .await
        .expect("the service connects through the proxy");
    let mut runner = ServiceRunner::new(service.clone(), steady_settings());
    runner.add(enoki::service::<Steady>());
    runner.start().await.expect("starts");
    let (transport, rpc) = client(&vhost, 2).await;
    let mut report = under_load(&rpc, async {
        proxy.set_blocked(true);
        proxy.set_frozen(true);
    })
    .await;
    report.duplicates = duplicates(&[&executions]);
    EXECUTIONS.lock().take();
    rpc.close().await;
    runner.stop().await;
    service.close().await;
    transport.close().await;
    let _ = std::fs::remove_file(&executions);
    assert_nothing_lost(&report, "partition of the service from its node");
    assert!(
        report.recovery < Duration::from_secs(20),
        "recovered within 20 s: {report:?}"
    );
}

/// 10,000 service-pool events dispatched while one of two listening
/// instances is killed (kill -9) after the first 3,000: every event is
/// handled at least once (what the dead instance held unacked comes again,
/// to the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_kill_a_listener_while_events_flow() {
    const EVENTS: u64 = 10_000;
    const KILL_AFTER: u64 = 3_000;
    let _serial = FAULTS.lock().await;
    let Some(vhost) = common::cluster::ClusterVhost::create() else {
        return;
    };
    let mut first = Instance::start(&vhost.uris(1));
    let second = Instance::start(&vhost.uris(2));
    let transport = AmqpTransport::connect(&vhost.uris(3), AmqpOptions::default())
        .await
        .expect("the publisher connects");
    let publisher = EventPublisher::new(transport.clone(), &steady_settings());
    let start = Instant::now();
    let confirmed = std::sync::Arc::new(AtomicUsize::new(0));
    let dispatching = tokio::spawn({
        let confirmed = confirmed.clone();
        async move {
            use futures::StreamExt;
            futures::stream::iter(0..EVENTS)
                .map(|n| {
                    let (publisher, confirmed) = (&publisher, &confirmed);
                    async move {
                        publisher
                            .dispatch("faults", "tick", &json!(n))
                            .await
                            .expect("the broker confirms the event");
                        confirmed.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<()>>()
                .await;
        }
    });
    eventually(
        || confirmed.load(Ordering::SeqCst) as u64 >= KILL_AFTER,
        "the first events are dispatched",
    )
    .await;
    first.signal("-KILL");
    let killed_at = Instant::now();
    dispatching.await.expect("dispatching");
    let dispatched = start.elapsed();
    let handled = || {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for file in [&first.executions, &second.executions] {
            for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
                if line.starts_with("tick-") {
                    *seen.entry(line.to_owned()).or_default() += 1;
                }
            }
        }
        seen
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (handled().len() as u64) < EVENTS {
        assert!(
            Instant::now() < deadline,
            "only {} of {EVENTS} events handled",
            handled().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = killed_at.elapsed();
    let seen = handled();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "| events: kill -9 of one of two listeners | {EVENTS} | {} | 0 | {} | {duplicates} | dispatched in {:.2} s, all handled {:.2} s after the kill |",
        seen.len(),
        EVENTS as usize - seen.len(),
        dispatched.as_secs_f64(),
        done.as_secs_f64()
    );
    assert_eq!(seen.len() as u64, EVENTS);
    first.wait();
    transport.close().await;
}

// ===== cluster_once timers on RabbitMQ =====

/// Which instance fired the `cluster_once` timer, and when.
static LEASE_RUNS: parking_lot::Mutex<Vec<(String, Instant)>> = parking_lot::Mutex::new(Vec::new());

#[derive(Dependencies)]
struct Leader {
    #[dependency(Config)]
    config: Settings,
}

#[service(name = "leader")]
impl Leader {
    #[timer(interval = 0.2, cluster_once)]
    async fn once(&self) -> Result<(), RemoteError> {
        let instance = self
            .config
            .get("INSTANCE")
            .and_then(Value::as_str)
            .unwrap_or("?");
        LEASE_RUNS
            .lock()
            .push((instance.to_owned(), Instant::now()));
        Ok(())
    }
}

/// Two instances on RabbitMQ, the first behind a TCP proxy: only the first
/// fires the `cluster_once` timer; when its connection dies (the proxy cuts
/// it and refuses it back) the broker hands the lease to the second, which
/// fires from its next tick on, and the first, without its lease, fires no
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_once_timer_moves_when_its_instance_dies() {
    const INTERVAL: Duration = Duration::from_millis(200);
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let proxy = common::proxy::TcpProxy::start(&common::amqp::broker_addr()).await;
    let start = |uri: String, name: &'static str| async move {
        let transport = AmqpTransport::connect(&uri, AmqpOptions::default())
            .await
            .expect("connects");
        let mut runner = ServiceRunner::new(
            transport.clone(),
            Settings::new().with("INSTANCE", name.into()),
        );
        runner.add(enoki::service::<Leader>());
        runner.start().await.expect("starts");
        (runner, transport)
    };
    let (a, a_transport) = start(proxy.uri(&vhost), "a").await;
    let (b, b_transport) = start(vhost.uri.clone(), "b").await;
    let fired = |who: &str, after: Instant| {
        LEASE_RUNS
            .lock()
            .iter()
            .filter(|(i, at)| i == who && *at >= after)
            .count()
    };
    let origin = Instant::now();
    eventually(|| fired("a", origin) >= 5, "the first instance fires").await;
    assert_eq!(fired("b", origin), 0, "only the lease holder fires");

    proxy.set_blocked(true);
    let cut = Instant::now();
    assert_eq!(proxy.cut(), 1);
    eventually(|| fired("b", cut) >= 5, "the second instance takes over").await;
    let first_b = LEASE_RUNS
        .lock()
        .iter()
        .find(|(i, at)| i == "b" && *at >= cut)
        .map(|(_, at)| at.duration_since(cut))
        .expect("b fired");
    // The broker notices the closed socket at once; b fires at its next
    // tick (allow a second one for a slow broker).
    assert!(first_b <= INTERVAL * 3, "b took over after {first_b:?}");
    // a may have fired once more before it saw its connection go.
    assert!(fired("a", cut + INTERVAL) == 0, "a fires without the lease");
    a.kill().await;
    b.stop().await;
    for transport in [a_transport, b_transport] {
        transport.close().await;
    }
}
