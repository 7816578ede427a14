//! RPC over RabbitMQ: enoki against a raw lapin echo (no framework) and
//! against Python nameko 2.14.1, in one run, on the local broker
//! (127.0.0.1:5672, guest/guest, `ENOKI_RABBITMQ_ADDR` to change), in a
//! fresh vhost created (and deleted) with `rabbitmqctl`.
//!
//! Run with: `./scripts/bench-amqp` (makes sure the nameko venv exists), or
//! `cargo bench --bench rpc_amqp` (uses `ENOKI_PYTHON`, else `scripts/venv`).
//!
//! For each of the three, one figure per line:
//! - **sequential**: p50 and p99 latency of one call at a time, over
//!   `SEQ_CALLS` calls after `SEQ_WARMUP`;
//! - **throughput**: calls/s with `IN_FLIGHT` calls outstanding, counted over
//!   `MEASURE` after `WARMUP`.
//!
//! The three:
//! - **enoki**: `ClusterRpc` (its own `AmqpTransport` connection) calling
//!   `enoki_echo.echo("x")`, a trivial service hosted by a `ServiceRunner` on
//!   another connection, `max_workers` = `PREFETCH_COUNT` = `IN_FLIGHT`.
//!   Everything nameko does: persistent messages, publisher confirms on
//!   requests and replies, `mandatory` requests, headers with the call-id
//!   stack, JSON, manual acks of requests (after the reply is confirmed) and
//!   replies.
//! - **raw lapin**: no framework, the practical limit of the broker here. A
//!   server task consumes `raw-echo` (qos `IN_FLIGHT`, manual ack) and, for
//!   each request, publishes the body back to the default exchange with the
//!   request's `reply_to` as routing key and its `correlation_id`, **waits for
//!   the publisher confirm** (as the framework does), then acks. The client
//!   publishes persistent, `mandatory` requests with `reply_to` (its own
//!   reply queue) and `correlation_id`, waits for each confirm, and matches
//!   replies (manually acked) by correlation id. The reply queue is
//!   nameko's (durable, `x-expires`, not exclusive), so the broker does the
//!   same work as for enoki: this is the baseline of the ratios. A second
//!   run with a server-named exclusive, auto-delete reply queue (persistent
//!   replies to a non-durable queue skip the message store, ~0.2 ms less per
//!   call here) is printed for information.
//! - **nameko**: `benches/nameko/client.py` (a standalone `ClusterRpcProxy`)
//!   calling `benches/nameko/echo_service.py` under `nameko run`
//!   (`max_workers` = `IN_FLIGHT`). Sequential: plain calls. Throughput:
//!   `NAMEKO_CLIENTS` client processes at once (default 1, as enoki's one
//!   `ClusterRpc`), each keeping `IN_FLIGHT / NAMEKO_CLIENTS` calls
//!   outstanding with `call_async`; their calls/s are added up
//!   (`NAMEKO_CLIENTS=2` gives nameko a second process and about 25% more).
//!   Skipped (with a message) without the venv.
//!
//! The last lines are
//! `rpc_amqp: enoki throughput N calls/s, raw lapin M calls/s, nameko K calls/s, enoki/nameko X, enoki/lapin Y`
//! and `rpc_amqp: sequential p50 enoki A ms, lapin B ms (ratio C), nameko D ms`.

#[allow(unreachable_pub, missing_docs)]
#[path = "../tests/common/amqp.rs"]
mod amqp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use enoki::prelude::*;
use enoki::transport::{AmqpOptions, AmqpTransport, Transport};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::oneshot;

const SEQ_WARMUP: usize = 200;
const SEQ_CALLS: usize = 2000;
const IN_FLIGHT: usize = 128;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(4);

#[allow(dead_code, unreachable_pub, missing_docs)]
mod echo {
    use enoki::prelude::*;

    /// Echoes its argument.
    #[derive(Debug, Dependencies)]
    pub struct EnokiEcho;

    #[service(name = "enoki_echo")]
    impl EnokiEcho {
        #[rpc]
        pub async fn echo(&self, value: String) -> Result<String, RemoteError> {
            Ok(value)
        }
    }
}

// ===== measuring =====

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    calls_per_s: f64,
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// p50 and p99 in ms of `SEQ_CALLS` sequential calls after `SEQ_WARMUP`.
async fn sequential<F, Fut>(call: F) -> (f64, f64)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..SEQ_WARMUP {
        call().await;
    }
    let mut latencies = Vec::with_capacity(SEQ_CALLS);
    for _ in 0..SEQ_CALLS {
        let start = Instant::now();
        call().await;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    (percentile(&latencies, 0.50), percentile(&latencies, 0.99))
}

/// Runs `call` from `IN_FLIGHT` tasks for `WARMUP + MEASURE`; returns the
/// calls per second during `MEASURE`.
async fn throughput<F, Fut>(call: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (call, count, done) = (call.clone(), count.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    call().await;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(WARMUP).await;
    let start_count = count.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(MEASURE).await;
    let calls = count.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("bench task");
    }
    calls as f64 / elapsed.as_secs_f64()
}

fn report(name: &str, figures: &Figures) {
    println!(
        "rpc_amqp: {name} sequential p50 {:.3} ms, p99 {:.3} ms ({SEQ_CALLS} calls)",
        figures.p50_ms, figures.p99_ms
    );
    println!(
        "rpc_amqp: {name} throughput {:.0} calls/s ({IN_FLIGHT} in flight)",
        figures.calls_per_s
    );
}

// ===== enoki =====

async fn connect(uri: &str, name: &str) -> Arc<AmqpTransport> {
    let options = AmqpOptions {
        connection_name: Some(name.into()),
        ..AmqpOptions::default()
    };
    AmqpTransport::connect(uri, options)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

async fn enoki(uri: &str) -> Figures {
    let settings = Settings::new().with("max_workers", (IN_FLIGHT as u64).into());
    let service_transport = connect(uri, "bench-enoki-service").await;
    let mut runner = ServiceRunner::new(service_transport.clone(), settings.clone());
    runner.add(enoki::service::<echo::EnokiEcho>());
    runner.start().await.expect("start enoki_echo");
    let client_transport = connect(uri, "bench-enoki-client").await;
    let rpc = ClusterRpc::connect(client_transport.clone(), &settings)
        .await
        .expect("client");
    let client = echo::EnokiEchoClient::new(&rpc);

    let (p50_ms, p99_ms) = sequential(|| async {
        let reply = client.echo("x".to_owned()).await.expect("echo");
        assert_eq!(reply, "x");
    })
    .await;
    let calls_per_s = throughput(move || {
        let client = client.clone();
        async move {
            let reply = client.echo("x".to_owned()).await.expect("echo");
            assert_eq!(reply, "x");
        }
    })
    .await;
    rpc.close().await;
    runner.stop().await;
    client_transport.close().await;
    service_transport.close().await;
    Figures {
        p50_ms,
        p99_ms,
        calls_per_s,
    }
}

// ===== raw lapin =====

const RAW_QUEUE: &str = "raw-echo";

async fn confirm_channel(conn: &Connection) -> Channel {
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    channel
}

/// Consumes `raw-echo`; answers every request with its own body.
async fn raw_server(uri: String, ready: oneshot::Sender<()>) -> Connection {
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("raw server connection");
    let consume = conn.create_channel().await.expect("channel");
    consume
        .queue_declare(
            RAW_QUEUE.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare raw-echo");
    consume
        .basic_qos(IN_FLIGHT as u16, BasicQosOptions::default())
        .await
        .expect("qos");
    let publish = confirm_channel(&conn).await;
    let mut consumer = consume
        .basic_consume(
            RAW_QUEUE.into(),
            "raw-server".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume raw-echo");
    let _ = ready.send(());
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let publish = publish.clone();
            tokio::spawn(async move {
                let reply_to = delivery.properties.reply_to().clone().expect("reply_to");
                let mut properties = BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2);
                if let Some(id) = delivery.properties.correlation_id() {
                    properties = properties.with_correlation_id(id.clone());
                }
                let confirm = publish
                    .basic_publish(
                        "".into(),
                        reply_to,
                        BasicPublishOptions::default(),
                        &delivery.data,
                        properties,
                    )
                    .await
                    .expect("publish reply");
                confirm.await.expect("reply confirm");
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack request");
            });
        }
    });
    conn
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

#[derive(Clone)]
struct RawClient {
    publish: Channel,
    reply_queue: lapin::types::ShortString,
    pending: Pending,
}

impl RawClient {
    /// With `durable`, the reply queue is nameko's (durable, `x-expires`);
    /// otherwise a server-named exclusive, auto-delete queue.
    async fn connect(conn: &Connection, durable: bool) -> RawClient {
        let consume = conn.create_channel().await.expect("channel");
        let mut arguments = FieldTable::default();
        if durable {
            arguments.insert(
                "x-expires".into(),
                lapin::types::AMQPValue::LongInt(300_000),
            );
        }
        let name = if durable {
            format!("raw-reply-{}", uuid::Uuid::new_v4())
        } else {
            String::new()
        };
        let queue = consume
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable,
                    exclusive: !durable,
                    auto_delete: !durable,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .expect("declare the reply queue");
        let reply_queue = queue.name().clone();
        let mut consumer = consume
            .basic_consume(
                reply_queue.clone(),
                "raw-client".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume replies");
        let pending: Pending = Arc::default();
        tokio::spawn({
            let pending = pending.clone();
            async move {
                while let Some(Ok(delivery)) = consumer.next().await {
                    let waiter = delivery
                        .properties
                        .correlation_id()
                        .as_ref()
                        .and_then(|id| pending.lock().remove(id.as_str()));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(delivery.data);
                    }
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                }
            }
        });
        RawClient {
            publish: confirm_channel(conn).await,
            reply_queue,
            pending,
        }
    }

    async fn call(&self, body: &[u8]) -> Vec<u8> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id.clone(), tx);
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_correlation_id(id.into())
            .with_reply_to(self.reply_queue.clone());
        let confirm = self
            .publish
            .basic_publish(
                "".into(),
                RAW_QUEUE.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                properties,
            )
            .await
            .expect("publish request");
        assert!(confirm.await.expect("request confirm").is_ack());
        rx.await.expect("reply")
    }
}

async fn raw_lapin(uri: &str, durable_reply_queue: bool) -> Figures {
    let (ready, is_ready) = oneshot::channel();
    let server = raw_server(uri.to_owned(), ready).await;
    is_ready.await.expect("raw server ready");
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("raw client connection");
    let client = RawClient::connect(&conn, durable_reply_queue).await;
    let body: &'static [u8] = br#"{"args": ["x"], "kwargs": {}}"#;
    let (p50_ms, p99_ms) = sequential(|| async {
        assert_eq!(client.call(body).await, body);
    })
    .await;
    let calls_per_s = throughput(move || {
        let client = client.clone();
        async move {
            assert_eq!(client.call(body).await, body);
        }
    })
    .await;
    let _ = conn.close(200, "OK".into()).await;
    let _ = server.close(200, "OK".into()).await;
    Figures {
        p50_ms,
        p99_ms,
        calls_per_s,
    }
}

// ===== nameko =====

fn nameko_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/nameko")
}

/// The venv python: `ENOKI_PYTHON`, else what `scripts/venv` prints.
fn python() -> Result<PathBuf, String> {
    if let Ok(python) = std::env::var("ENOKI_PYTHON") {
        return Ok(python.into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/venv");
    let output = std::process::Command::new(&script)
        .output()
        .map_err(|err| format!("cannot run {}: {err}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().into())
}

async fn run_client(python: &Path, uri: &str, args: &[String]) -> Value {
    let output = tokio::process::Command::new(python)
        .arg("client.py")
        .arg(uri)
        .args(args)
        .current_dir(nameko_dir())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run benches/nameko/client.py");
    assert!(
        output.status.success(),
        "client.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|err| panic!("client.py printed {stdout:?}: {err}"))
}

async fn nameko(uri: &str, vhost: &amqp::TestVhost) -> Result<Figures, String> {
    let python = python()?;
    let clients: usize = std::env::var("NAMEKO_CLIENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1);
    let config = std::env::temp_dir().join(format!("enoki-bench-{}.yaml", vhost.name));
    std::fs::write(
        &config,
        format!("AMQP_URI: '{uri}'\nmax_workers: {IN_FLIGHT}\n"),
    )
    .map_err(|err| format!("write {}: {err}", config.display()))?;
    let log = std::env::temp_dir().join(format!("enoki-bench-{}.log", vhost.name));
    let log_file = std::fs::File::create(&log).map_err(|err| err.to_string())?;
    let mut service = tokio::process::Command::new(&python)
        .args(["-m", "nameko", "run", "--config"])
        .arg(&config)
        .arg("echo_service")
        .current_dir(nameko_dir())
        .stdout(log_file.try_clone().map_err(|err| err.to_string())?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot start nameko run: {err}"))?;

    // Ready once an enoki client gets an answer from it.
    let transport = connect(uri, "bench-nameko-probe").await;
    let probe = ClusterRpc::builder(transport.clone() as Arc<dyn Transport>)
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("probe client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match probe.service("nameko_echo").call("echo", "x".into()).await {
            Ok(reply) if reply == "x" => break,
            other => {
                if Instant::now() > deadline {
                    let _ = service.kill().await;
                    return Err(format!(
                        "the nameko service did not answer within 60 s ({other:?}); see {}",
                        log.display()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    probe.close().await;
    transport.close().await;

    let seq = run_client(
        &python,
        uri,
        &[
            "sequential".into(),
            SEQ_CALLS.to_string(),
            SEQ_WARMUP.to_string(),
        ],
    )
    .await;
    let per_client = (IN_FLIGHT / clients).max(1);
    let throughput_args = [
        "throughput".into(),
        per_client.to_string(),
        WARMUP.as_secs_f64().to_string(),
        MEASURE.as_secs_f64().to_string(),
    ];
    let runs = (0..clients).map(|_| run_client(&python, uri, &throughput_args));
    let calls_per_s: f64 = futures::future::join_all(runs)
        .await
        .iter()
        .map(|run| run["calls_per_s"].as_f64().expect("calls_per_s"))
        .sum();
    let _ = service.kill().await;
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&log);
    Ok(Figures {
        p50_ms: seq["p50_ms"].as_f64().expect("p50_ms"),
        p99_ms: seq["p99_ms"].as_f64().expect("p99_ms"),
        calls_per_s,
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(vhost) = amqp::TestVhost::create() else {
        return;
    };
    let uri = vhost.uri.clone();
    println!(
        "rpc_amqp: RabbitMQ at {}, vhost {}",
        amqp::broker_addr(),
        vhost.name
    );
    let (enoki, lapin, nameko) = runtime.block_on(async {
        let enoki = enoki(&uri).await;
        report("enoki", &enoki);
        let lapin = raw_lapin(&uri, true).await;
        report("raw lapin", &lapin);
        let exclusive = raw_lapin(&uri, false).await;
        report("raw lapin (exclusive reply queue)", &exclusive);
        let nameko = nameko(&uri, &vhost).await;
        match &nameko {
            Ok(figures) => report("nameko", figures),
            Err(why) => println!("rpc_amqp: nameko skipped: {why}"),
        }
        (enoki, lapin, nameko.ok())
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(vhost);

    let (nameko_rps, nameko_p50) = match &nameko {
        Some(n) => (
            format!("{:.0} calls/s", n.calls_per_s),
            format!("{:.3} ms", n.p50_ms),
        ),
        None => ("skipped".into(), "skipped".into()),
    };
    let enoki_over_nameko = nameko
        .map(|n| format!("{:.1}", enoki.calls_per_s / n.calls_per_s))
        .unwrap_or_else(|| "n/a".into());
    println!(
        "rpc_amqp: enoki throughput {:.0} calls/s, raw lapin {:.0} calls/s, nameko {nameko_rps}, enoki/nameko {enoki_over_nameko}, enoki/lapin {:.2}",
        enoki.calls_per_s,
        lapin.calls_per_s,
        enoki.calls_per_s / lapin.calls_per_s
    );
    println!(
        "rpc_amqp: sequential p50 enoki {:.3} ms, lapin {:.3} ms (ratio {:.2}), nameko {nameko_p50}",
        enoki.p50_ms,
        lapin.p50_ms,
        enoki.p50_ms / lapin.p50_ms
    );
}
