//! Resilience on RabbitMQ (127.0.0.1:5672, guest/guest), each test in its
//! own throwaway vhost:
//!
//! - the service's broker connection cut (twice) under load, through a TCP
//!   proxy (`tests/common/proxy.rs`), while a directly connected client keeps
//!   64 calls in flight and retries on timeout with the same request id: the
//!   service resumes, every request is answered, no request the handler
//!   finished goes unanswered (acks come after replies), and requests that
//!   were unacked at the cut are redelivered and run again (at-least-once);
//! - the client's broker connection cut while calls are pending: the calls
//!   end (a reply, `ConnectionLost` or `RpcTimeout`) instead of hanging, and
//!   the client serves later calls on the same (`x-expires`, transient or durable) reply
//!   queue; a call made while the broker is unreachable fails promptly;
//! - the transport's own recovery: while the broker is unreachable calls fail
//!   fast with `ConnectionLost`, and once it is back the transport replays
//!   its topology and the same consumer stream goes on;
//! - poison requests published raw to `nameko-rpc`: answered with nameko's
//!   errors when they have a `reply_to`, logged and acked otherwise; the
//!   queue ends empty and the service keeps serving;
//! - clear one-line errors at start: broker unreachable, wrong password,
//!   unknown vhost; a `ServiceRunner` whose broker is gone fails to start,
//!   and `close` stops the reconnection loop at once.
//!
//! Skipped (with a message) when RabbitMQ is not reachable, unless `CI=true`.
#![cfg(feature = "amqp")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use common::amqp::{TestVhost, broker_addr};
use common::proxy::TcpProxy;
use enoki::error::Error;
use enoki::message::Message;
use enoki::prelude::*;
use enoki::transport::{
    AmqpOptions, AmqpTransport, ConsumeOptions, ExchangeSpec, PublishOptions, QueueSpec, Transport,
};
use parking_lot::Mutex;
use serde_json::{Value, json};

// ===== the service =====

/// Handler executions per request attempt (`<id>#<attempt>`): how many
/// times it started and how many times it finished. Shared by every test
/// of this binary; ids are unique per test.
#[derive(Debug, Default)]
struct Executions {
    started: HashMap<String, u32>,
    finished: HashMap<String, u32>,
}

static EXECUTIONS: LazyLock<Mutex<Executions>> = LazyLock::new(Mutex::default);

fn key(id: &str, attempt: u32) -> String {
    format!("{id}#{attempt}")
}

/// Records its calls, so a test can compare them with the replies.
#[derive(Debug, Dependencies)]
struct Resil;

#[service(name = "resil")]
impl Resil {
    /// Sleeps `sleep_ms`, records the execution of `id`'s `attempt`, and
    /// returns `id`.
    #[rpc]
    async fn work(&self, id: String, attempt: u32, sleep_ms: u64) -> Result<String, RemoteError> {
        *EXECUTIONS
            .lock()
            .started
            .entry(key(&id, attempt))
            .or_default() += 1;
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        *EXECUTIONS
            .lock()
            .finished
            .entry(key(&id, attempt))
            .or_default() += 1;
        Ok(id)
    }

    #[rpc]
    async fn ping(&self) -> Result<String, RemoteError> {
        Ok("pong".into())
    }
}

// ===== helpers =====

const SERVICE: &str = "resil";

fn settings() -> Settings {
    Settings::new().with("max_workers", 32.into())
}

async fn connect(uri: &str) -> Arc<AmqpTransport> {
    AmqpTransport::connect(uri, AmqpOptions::default())
        .await
        .unwrap_or_else(|err| panic!("connect to {uri}: {err}"))
}

async fn start_service(transport: Arc<AmqpTransport>) -> ServiceRunner {
    let mut runner = ServiceRunner::new(transport, settings());
    runner.add(enoki::service::<Resil>());
    runner.start().await.expect("start the resil service");
    runner
}

async fn work(rpc: &ClusterRpc, id: &str, attempt: u32, sleep_ms: u64) -> enoki::Result<Value> {
    rpc.call(
        SERVICE,
        "work",
        json!([id, attempt, sleep_ms]),
        Default::default(),
    )
    .await
}

/// Calls `ping` until it succeeds; panics after `within`.
async fn until_serving(rpc: &ClusterRpc, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match rpc.service(SERVICE).call("ping", json!([])).await {
            Ok(reply) => {
                assert_eq!(reply, json!("pong"));
                return start.elapsed();
            }
            Err(err) => {
                assert!(
                    start.elapsed() < within,
                    "still not serving after {within:?}: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `rabbitmqctl list_queues` rows as name → the other columns.
fn queues(vhost: &TestVhost, columns: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut all = vec!["name"];
    all.extend_from_slice(columns);
    vhost
        .list_queues(&all)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::to_owned);
            Some((fields.next()?, fields.collect()))
        })
        .collect()
}

// ===== the service's connection cut under load =====

/// What the client saw for one request attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Reply,
    Timeout,
    ConnectionLost,
}

/// Regression test for lapin 4.12.3's own recovery, which sometimes never
/// reconnected after a cut under load (about one run in two): the transport
/// now supervises its connection itself (see `enoki::transport::amqp`).
/// `RESILIENCE_LOG=enoki=debug,lapin=debug` shows both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_connection_cut_under_load_loses_no_acked_request() {
    const REQUESTS: usize = 800;
    const IN_FLIGHT: usize = 64;
    const SLEEP_MS: u64 = 10;
    if let Ok(filter) = std::env::var("RESILIENCE_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let proxy = TcpProxy::start(&broker_addr()).await;
    let service_transport = connect(&proxy.uri(&vhost)).await;
    let runner = start_service(service_transport.clone()).await;
    let client_transport = connect(&vhost.uri).await;
    let rpc = ClusterRpc::builder(client_transport.clone())
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("client");

    let run = uuid::Uuid::new_v4().simple().to_string();
    let replies = Arc::new(AtomicUsize::new(0));
    let attempts: Arc<Mutex<Vec<(String, u32, Seen)>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (rpc, run, replies, attempts, next) = (
                rpc.clone(),
                run.clone(),
                replies.clone(),
                attempts.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= REQUESTS {
                        return;
                    }
                    let id = format!("{run}-{n}");
                    for attempt in 0.. {
                        assert!(attempt < 10, "request {id}: too many attempts");
                        let seen = match work(&rpc, &id, attempt, SLEEP_MS).await {
                            Ok(reply) => {
                                assert_eq!(reply, json!(id));
                                Seen::Reply
                            }
                            Err(Error::RpcTimeout { .. }) => Seen::Timeout,
                            Err(Error::ConnectionLost(_)) => Seen::ConnectionLost,
                            Err(err) => panic!("request {id}: unexpected error {err}"),
                        };
                        attempts.lock().push((id.clone(), attempt, seen));
                        if seen == Seen::Reply {
                            replies.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            })
        })
        .collect();

    // Cut when a quarter is answered, and again once the service has
    // answered 100 more after coming back.
    let wait_for = |count: usize| {
        let replies = replies.clone();
        let (vhost, proxy, service_transport) = (&vhost, &proxy, &service_transport);
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while replies.load(Ordering::Relaxed) < count {
                assert!(
                    Instant::now() < deadline,
                    "stuck at {} replies, waiting for {count}; service connected: {}, \
                     proxied connections: {}; queues: {:?}; connections: {}",
                    replies.load(Ordering::Relaxed),
                    service_transport.is_connected(),
                    proxy.accepted(),
                    queues(
                        vhost,
                        &["messages_ready", "messages_unacknowledged", "consumers"]
                    ),
                    common::amqp::rabbitmqctl(&[
                        "list_channels",
                        "-q",
                        "--no-table-headers",
                        "connection",
                        "number",
                        "consumer_count",
                        "messages_unacknowledged",
                        "prefetch_count"
                    ])
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let mut cuts = Vec::new();
    wait_for(REQUESTS / 4).await;
    for round in 0..2 {
        let at = replies.load(Ordering::Relaxed);
        let started = EXECUTIONS.lock().started.len();
        let cut = proxy.cut();
        let cut_at = Instant::now();
        assert!(cut >= 1, "nothing to cut: is the service on the proxy?");
        wait_for(at + 100).await;
        cuts.push((round, at, started, cut, cut_at.elapsed()));
        if at + 200 >= REQUESTS {
            break;
        }
    }
    for caller in callers {
        tokio::time::timeout(Duration::from_secs(120), caller)
            .await
            .expect("the callers finish")
            .expect("a caller panicked");
    }
    for (round, at, _, cut, back) in &cuts {
        println!(
            "cut {round}: after {at} replies, {cut} connection(s); 100 more replies {back:?} later"
        );
    }

    // The service serves new calls at once.
    for n in 0..20 {
        let id = format!("{run}-after-{n}");
        let reply = tokio::time::timeout(Duration::from_secs(10), work(&rpc, &id, 0, 0))
            .await
            .expect("a call after the cuts answers within 10 s")
            .expect("a call after the cuts succeeds");
        assert_eq!(reply, json!(id));
    }

    // Every request got its reply; none the handler finished was lost.
    let attempts = attempts.lock().clone();
    let mine = |map: &HashMap<String, u32>| -> BTreeMap<String, u32> {
        map.iter()
            .filter(|(k, _)| k.starts_with(&run))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let (started, finished) = {
        let executions = EXECUTIONS.lock();
        (mine(&executions.started), mine(&executions.finished))
    };
    let answered: BTreeMap<&str, u32> = attempts
        .iter()
        .filter(|(_, _, seen)| *seen == Seen::Reply)
        .map(|(id, attempt, _)| (id.as_str(), *attempt))
        .collect();
    assert_eq!(answered.len(), REQUESTS, "every request was answered");
    for (id, attempt) in &answered {
        assert!(
            finished.contains_key(&key(id, *attempt)),
            "{id} attempt {attempt} answered without the handler finishing it"
        );
    }
    let timeouts: Vec<_> = attempts
        .iter()
        .filter(|(_, _, seen)| *seen == Seen::Timeout)
        .collect();
    let lost: Vec<_> = timeouts
        .iter()
        .filter(|(id, attempt, _)| finished.contains_key(&key(id, *attempt)))
        .collect();
    let connection_lost = attempts
        .iter()
        .filter(|(_, _, seen)| *seen == Seen::ConnectionLost)
        .count();
    let twice: Vec<_> = started.iter().filter(|(_, n)| **n > 1).collect();
    let finished_twice = finished.values().filter(|n| **n > 1).count();
    println!(
        "{REQUESTS} requests, {} attempts: {} timed out, {connection_lost} connection lost; \
         {} attempts started, {} started more than once (redelivered), {finished_twice} finished \
         more than once",
        attempts.len(),
        timeouts.len(),
        started.len(),
        twice.len()
    );
    assert!(
        lost.is_empty(),
        "requests the handler finished (so acked after their reply) but never answered: {lost:?}"
    );
    assert!(
        !twice.is_empty(),
        "no request was redelivered after the cuts: the unacked in-flight work must run again"
    );

    rpc.close().await;
    runner.stop().await;
    service_transport.close().await;
    client_transport.close().await;
}

// ===== the transport's own recovery =====

/// Waits for `transport.is_connected()` to become `up`; panics after
/// `within`.
async fn until_connected(transport: &AmqpTransport, up: bool, within: Duration) -> Duration {
    let start = Instant::now();
    while transport.is_connected() != up {
        assert!(
            start.elapsed() < within,
            "is_connected() still {} after {within:?}",
            !up
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// A cut while the broker stays unreachable for a while (several failed
/// reconnection attempts): calls fail fast with a plain `ConnectionLost`,
/// settling a delivery of the old connection fails, and once the broker is
/// back the transport redeclares what it declared (an exclusive queue the
/// broker deleted with the connection, its binding, but not a binding it
/// removed) and the same consumer stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_transport_replays_its_topology_and_resumes_its_consumers() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let proxy = TcpProxy::start(&broker_addr()).await;
    let t = connect(&proxy.uri(&vhost)).await;
    let other = connect(&vhost.uri).await;
    let send = |key: &'static str, body: &'static [u8], mandatory: bool| {
        let other = other.clone();
        async move {
            other
                .publish("ex", key, Message::json(body), PublishOptions { mandatory })
                .await
        }
    };
    let wait = Duration::from_secs(10);

    t.declare_exchange(&ExchangeSpec::topic("ex"))
        .await
        .unwrap();
    let exclusive = QueueSpec {
        durable: false,
        exclusive: true,
        auto_delete: true,
        ..QueueSpec::durable("mine")
    };
    t.declare_queue(&exclusive).await.unwrap();
    t.bind("mine", "ex", "a.*").await.unwrap();
    t.bind("mine", "ex", "gone.*").await.unwrap();
    t.unbind("mine", "ex", "gone.*").await.unwrap();
    let mut consumer = t
        .consume(
            "mine",
            ConsumeOptions {
                prefetch: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    send("a.1", b"1", true).await.unwrap();
    let first = tokio::time::timeout(wait, consumer.next())
        .await
        .expect("a delivery")
        .expect("the consumer runs");
    assert_eq!(&first.message.body[..], b"1");
    first.ack().await.unwrap();
    send("a.2", b"2", true).await.unwrap();
    let held = tokio::time::timeout(wait, consumer.next())
        .await
        .expect("a delivery")
        .expect("the consumer runs");

    proxy.set_blocked(true);
    assert_eq!(proxy.cut(), 1);
    until_connected(&t, false, Duration::from_secs(5)).await;

    let start = Instant::now();
    let err = t
        .declare_queue(&QueueSpec::durable("later"))
        .await
        .expect_err("a declaration while down");
    assert!(
        matches!(&err, Error::ConnectionLost(m) if m == "connection to the broker is down; reconnecting"),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(200), "fails fast");
    let err = t.consume("mine", ConsumeOptions::default()).await;
    assert!(matches!(err, Err(Error::ConnectionLost(_))), "{err:?}");
    let start = Instant::now();
    let err = t
        .publish(
            "ex",
            "a.x",
            Message::json(&b"x"[..]),
            PublishOptions::default(),
        )
        .await;
    assert!(matches!(err, Err(Error::ConnectionLost(_))), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "a publish waits at most about 1 s: {:?}",
        start.elapsed()
    );
    let settled = held.ack().await;
    assert!(
        matches!(settled, Err(Error::ConnectionLost(_))),
        "{settled:?}"
    );

    // Several reconnection attempts fail, then the broker is back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set_blocked(false);
    let back = until_connected(&t, true, Duration::from_secs(10)).await;
    println!("reconnected {back:?} after unblocking");

    // The queue is back (it went with the old connection, and "a.2" with it),
    // bound with `a.*` but not `gone.*`.
    send("a.3", b"3", true).await.expect("a.* is bound again");
    let err = send("gone.1", b"g", true).await;
    assert!(matches!(err, Err(Error::Unroutable { .. })), "{err:?}");
    let third = tokio::time::timeout(wait, consumer.next())
        .await
        .expect("the consumer resumes")
        .expect("the consumer did not end");
    assert_eq!(&third.message.body[..], b"3");
    third.ack().await.unwrap();
    t.publish(
        "ex",
        "a.4",
        Message::json(&b"4"[..]),
        PublishOptions::default(),
    )
    .await
    .unwrap();
    let fourth = tokio::time::timeout(wait, consumer.next())
        .await
        .expect("a delivery")
        .expect("the consumer runs");
    assert_eq!(&fourth.message.body[..], b"4");
    fourth.ack().await.unwrap();
    let listed = queues(&vhost, &["consumers"]);
    assert_eq!(
        listed.get("mine"),
        Some(&vec!["1".to_owned()]),
        "{listed:?}"
    );

    t.close().await;
    let ended = tokio::time::timeout(wait, consumer.next()).await;
    assert!(matches!(ended, Ok(None)), "the consumer ends at close");
    other.close().await;
}

// ===== the client's connection cut =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connection_cut_fails_or_finishes_pending_calls_and_recovers() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let service_transport = connect(&vhost.uri).await;
    let runner = start_service(service_transport.clone()).await;
    let proxy = TcpProxy::start(&broker_addr()).await;
    let client_transport = connect(&proxy.uri(&vhost)).await;
    let timeout = Duration::from_secs(20);
    let rpc = ClusterRpc::builder(client_transport.clone())
        .timeout(timeout)
        .connect()
        .await
        .expect("client through the proxy");
    until_serving(&rpc, Duration::from_secs(10)).await;

    // 16 calls pending (the handler takes 1.5 s) when the connection drops.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let pending: Vec<_> = (0..16)
        .map(|n| {
            let rpc = rpc.clone();
            let id = format!("{run}-{n}");
            tokio::spawn(async move {
                let start = Instant::now();
                (work(&rpc, &id, 0, 1500).await, id, start.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(proxy.cut() >= 1, "the client is on the proxy");
    let cut_at = Instant::now();
    let mut outcomes = BTreeMap::new();
    for call in pending {
        let (result, id, took) = tokio::time::timeout(timeout + Duration::from_secs(5), call)
            .await
            .expect("a pending call hangs past its timeout")
            .expect("call task");
        let outcome = match result {
            Ok(reply) => {
                assert_eq!(reply, json!(id));
                "reply"
            }
            Err(Error::ConnectionLost(message)) => {
                assert!(!message.is_empty());
                "ConnectionLost"
            }
            Err(Error::RpcTimeout { .. }) => "RpcTimeout",
            Err(err) => panic!("pending call {id}: unclear error {err:?}"),
        };
        println!("pending call {id}: {outcome} after {took:?}");
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    println!(
        "pending calls at the cut: {outcomes:?}, all ended {:?} after the cut",
        cut_at.elapsed()
    );

    // Later calls succeed, on the same reply queue.
    let back = until_serving(&rpc, Duration::from_secs(20)).await;
    println!("the client served again {back:?} after the pending calls ended");
    for n in 0..10 {
        let id = format!("{run}-later-{n}");
        let reply = tokio::time::timeout(Duration::from_secs(10), work(&rpc, &id, 0, 0))
            .await
            .expect("a later call answers within 10 s")
            .expect("a later call succeeds");
        assert_eq!(reply, json!(id));
    }
    let listed = queues(&vhost, &["consumers", "arguments"]);
    let reply_queue = listed
        .get(rpc.reply_queue())
        .unwrap_or_else(|| panic!("reply queue {} is gone: {listed:?}", rpc.reply_queue()));
    assert_eq!(reply_queue[0], "1", "one consumer on the reply queue");

    // While the broker is unreachable, a call fails promptly instead of
    // hanging, and the client comes back once it is reachable.
    proxy.set_blocked(true);
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let during = tokio::time::timeout(timeout + Duration::from_secs(5), work(&rpc, "down", 0, 0))
        .await
        .expect("a call while the broker is unreachable hangs past its timeout");
    println!(
        "a call while unreachable: {during:?} after {:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            during,
            Err(Error::ConnectionLost(_) | Error::RpcTimeout { .. })
        ),
        "a call while the broker is unreachable: {during:?}"
    );
    proxy.set_blocked(false);
    until_serving(&rpc, Duration::from_secs(20)).await;

    rpc.close().await;
    runner.stop().await;
    service_transport.close().await;
    client_transport.close().await;
}

// ===== poison messages =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_requests_are_answered_or_dropped_and_the_service_keeps_serving() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let transport = connect(&vhost.uri).await;
    let runner = start_service(transport.clone()).await;

    // A reply queue of our own, bound like nameko's.
    let replies_key = "poison-replies-key";
    transport
        .declare_exchange(&ExchangeSpec::topic("nameko-rpc"))
        .await
        .unwrap();
    transport
        .declare_queue(&QueueSpec::durable("poison-replies"))
        .await
        .unwrap();
    transport
        .bind("poison-replies", "nameko-rpc", replies_key)
        .await
        .unwrap();
    let mut replies = transport
        .consume(
            "poison-replies",
            ConsumeOptions {
                prefetch: 0,
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let good = br#"{"args": [], "kwargs": {}}"#;
    let json = |body: &'static [u8], correlation_id: &str, reply: bool| {
        let message = Message::json(body).with_correlation_id(correlation_id);
        if reply {
            message.with_reply_to(replies_key)
        } else {
            message
        }
    };
    let mut no_content_type = json(good, "no-content-type", true);
    no_content_type.properties.content_type = None;
    no_content_type.properties.content_encoding = None;
    let mut pickle = json(b"\x80\x04\x95\x05\x00\x00\x00.", "pickle", true);
    pickle.properties.content_type = Some("application/x-python-serialize".into());
    pickle.properties.content_encoding = Some("binary".into());
    let mut stack = json(good, "stack-string", true);
    stack
        .properties
        .headers
        .insert("nameko.call_id_stack".into(), json!("not-a-list"));
    let mut no_reply_pickle = pickle.clone();
    no_reply_pickle.properties.reply_to = None;
    no_reply_pickle.properties.correlation_id = Some("no-reply-pickle".into());
    // (routing key, message, expected reply: None = no reply)
    let cases: Vec<(&str, Message, Option<&str>)> = vec![
        ("resil.ping", json(good, "no-reply-to", false), None),
        (
            "resil.ping",
            json(b"{\"args\": [", "bad-json-no-reply", false),
            None,
        ),
        ("resil.ping", no_reply_pickle, None),
        ("resil.ping", no_content_type, Some("result")),
        (
            "resil.ping",
            json(b"{\"args\": [", "bad-json", true),
            Some("MalformedRequest"),
        ),
        (
            "resil.ping",
            json(b"[1, 2]", "not-an-object", true),
            Some("MalformedRequest"),
        ),
        (
            "resil.ping",
            json(b"{\"args\": []}", "no-kwargs", true),
            Some("MalformedRequest"),
        ),
        ("resil.ping", pickle, Some("MalformedRequest")),
        ("resil.ping", stack, Some("MalformedRequest")),
        (
            "resil.nosuch",
            json(good, "unknown-method", true),
            Some("MethodNotFound"),
        ),
        (
            "resil.work",
            json(
                br#"{"args": [1, 2, 3, 4, 5], "kwargs": {}}"#,
                "bad-args",
                true,
            ),
            Some("IncorrectSignature"),
        ),
    ];
    let mut expected = BTreeMap::new();
    for (routing_key, message, reply) in cases {
        let id = message.properties.correlation_id.clone().unwrap();
        if let Some(reply) = reply {
            expected.insert(id, reply);
        }
        transport
            .publish(
                "nameko-rpc",
                routing_key,
                message,
                PublishOptions::default(),
            )
            .await
            .unwrap_or_else(|err| panic!("publish poison: {err}"));
    }

    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(delivery)) = tokio::time::timeout(left, replies.next()).await else {
            panic!("missing replies: got {got:?}, expected {expected:?}");
        };
        let id = delivery
            .message
            .properties
            .correlation_id
            .clone()
            .expect("replies carry the correlation id");
        let body: Value = serde_json::from_slice(&delivery.message.body).expect("JSON reply");
        println!("reply to {id}: {body}");
        delivery.ack().await.unwrap();
        assert!(got.insert(id, body).is_none(), "one reply per request");
    }
    // Nothing for the requests without reply_to.
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), replies.next()).await
    {
        panic!("unexpected reply {extra:?}");
    }
    for (id, what) in &expected {
        let body = &got[id];
        if *what == "result" {
            assert_eq!(body["result"], json!("pong"), "{id}: {body}");
            assert_eq!(body["error"], Value::Null, "{id}: {body}");
        } else {
            assert_eq!(body["result"], Value::Null, "{id}: {body}");
            assert_eq!(body["error"]["exc_type"], json!(what), "{id}: {body}");
            assert_eq!(
                body["error"]["exc_path"],
                json!(format!("nameko.exceptions.{what}")),
                "{id}: {body}"
            );
        }
    }

    // The request queue is empty: every poison message was acked.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = queues(&vhost, &["messages_ready", "messages_unacknowledged"]);
        let row = listed.get("rpc-resil").expect("rpc-resil exists");
        if row == &["0", "0"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rpc-resil still holds messages: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // And the service still serves.
    let rpc = ClusterRpc::builder(transport.clone())
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    for _ in 0..5 {
        until_serving(&rpc, Duration::from_secs(1)).await;
    }
    rpc.close().await;
    runner.stop().await;
    transport.close().await;
}

// ===== errors at start =====

fn assert_one_line(err: &Error, wants: &str) {
    let message = err.to_string();
    println!("{message}");
    assert!(!message.contains('\n'), "one line: {message:?}");
    assert!(
        message.contains(wants),
        "{message:?} should mention {wants:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_fails_clearly() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let within = Duration::from_secs(30);
    let attempts = [
        (
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            "connection refused",
        ),
        (
            format!("amqp://guest:Wr0ngSecret@{}/{}", broker_addr(), vhost.name),
            "access refused",
        ),
        (
            format!("amqp://guest:guest@{}/enoki-no-such-vhost", broker_addr()),
            "not allowed",
        ),
    ];
    for (uri, wants) in attempts {
        let start = Instant::now();
        let result =
            tokio::time::timeout(within, AmqpTransport::connect(&uri, AmqpOptions::default()))
                .await
                .unwrap_or_else(|_| panic!("connect({uri}) hangs"));
        let err = result.expect_err("the connection must fail");
        assert_one_line(&err, wants);
        assert!(matches!(err, Error::Transport(_)), "{err:?}");
        assert!(!err.to_string().contains("Wr0ngSecret"), "password shown");
        println!("  ({:?})", start.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_answers_fails_the_first_connection_in_time() {
    // It accepts TCP connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let uri = format!("amqp://guest:Wr0ngSecret@127.0.0.1:{port}/%2f");
    let start = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        AmqpTransport::connect(&uri, AmqpOptions::default()),
    )
    .await
    .expect("connect() must give up on a silent broker");
    let took = start.elapsed();
    let err = result.expect_err("the connection must fail");
    assert_one_line(&err, "connection timed out");
    assert!(!err.to_string().contains("Wr0ngSecret"), "password shown");
    // Two tries of 5 s each.
    assert!(took >= Duration::from_secs(9), "gave up after {took:?}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_broker_is_gone_fails_to_start() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    for auto_recover in [false, true] {
        let proxy = TcpProxy::start(&broker_addr()).await;
        let options = AmqpOptions {
            auto_recover,
            ..AmqpOptions::default()
        };
        let transport = AmqpTransport::connect(&proxy.uri(&vhost), options)
            .await
            .expect("connect through the proxy");
        proxy.set_blocked(true);
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut runner = ServiceRunner::new(transport.clone(), settings());
        runner.add(enoki::service::<Resil>());
        let start = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(30), runner.start())
            .await
            .unwrap_or_else(|_| {
                panic!("start hangs while the broker is gone (auto_recover {auto_recover})")
            });
        let err = result.expect_err("start must fail while the broker is gone");
        println!(
            "auto_recover {auto_recover}: start failed after {:?}",
            start.elapsed()
        );
        assert_one_line(&err, "connection");
        runner.stop().await;
        // `close` stops the reconnection loop even while the broker is
        // still unreachable.
        let start = Instant::now();
        transport.close().await;
        assert!(!transport.is_connected());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "close while reconnecting took {:?}",
            start.elapsed()
        );
    }
}

/// On a silent network (the proxy passes no bytes) the publish confirm
/// never comes: the call's one deadline covers the publish as well as the
/// wait for the reply, so it ends with `RpcTimeout` on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_a_silent_network_ends_with_its_timeout() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let service_transport = connect(&vhost.uri).await;
    let runner = start_service(service_transport.clone()).await;
    let proxy = TcpProxy::start(&broker_addr()).await;
    let client_transport = connect(&proxy.uri(&vhost)).await;
    let timeout = Duration::from_secs(2);
    let rpc = ClusterRpc::builder(client_transport.clone())
        .timeout(timeout)
        .connect()
        .await
        .expect("client through the proxy");
    until_serving(&rpc, Duration::from_secs(10)).await;

    // The network goes silent (no RST, no FIN): the request's publisher
    // confirm never comes, and neither does a reply.
    proxy.set_frozen(true);
    let start = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), work(&rpc, "silent", 0, 0)).await;
    let took = start.elapsed();
    proxy.set_frozen(false);
    println!("a call on a silent network: {result:?} after {took:?}");
    let result = result.expect("a call with a 2 s timeout hangs on a silent network");
    assert!(
        matches!(
            result,
            Err(Error::RpcTimeout { .. } | Error::ConnectionLost(_))
        ),
        "{result:?}"
    );
    assert!(took < timeout + Duration::from_secs(2), "took {took:?}");

    // Once the network is back, calls succeed.
    until_serving(&rpc, Duration::from_secs(20)).await;
    rpc.close().await;
    runner.stop().await;
    service_transport.close().await;
    client_transport.close().await;
}
