//! RPC over RabbitMQ: enoki against a raw lapin echo (no framework) and
//! against Python nameko 2.14.1, in one run, on the local broker
//! (127.0.0.1:5672, guest/guest, `ENOKI_RABBITMQ_ADDR` to change), in a
//! fresh vhost created (and deleted) with `rabbitmqctl`.
//!
//! With `./scripts/bench-amqp --cluster` (`ENOKI_BENCH_CLUSTER=1`) it runs
//! on the 3-node test cluster with quorum queues instead; see
//! [`on_cluster`].
//!
//! Run with: `./scripts/bench-amqp` (makes sure the nameko venv exists), or
//! `cargo bench --bench rpc_amqp` (uses `ENOKI_PYTHON`, else `scripts/venv`).
//!
//! Three interleaved rounds (each subject in turn, three times: A B C A B
//! C A B C); in each round, for each subject:
//! - **sequential**: p50 and p99 latency of one call at a time, over
//!   `SEQ_CALLS` calls after `SEQ_WARMUP`;
//! - **throughput**: calls/s with `IN_FLIGHT` calls outstanding, counted over
//!   `MEASURE` after `WARMUP`, and the broker's CPU time per call in that
//!   window (user + system of the local node's `beam.smp`, from
//!   `/proc/<pid>/stat`; the pid from `rabbitmqctl eval 'os:getpid().'`),
//!   and this process's (the Rust subjects' client and service) the same
//!   way.
//!
//! The subjects:
//! - **enoki**: `ClusterRpc` (its own `AmqpTransport` connection) calling
//!   `enoki_echo.echo("x")`, a trivial service hosted by a `ServiceRunner` on
//!   another connection, `max_workers` = `PREFETCH_COUNT` = `IN_FLIGHT`.
//!   Everything nameko does: persistent messages, publisher confirms on
//!   requests and replies, `mandatory` requests, headers with the call-id
//!   stack, JSON, manual acks of requests (after the reply is confirmed) and
//!   replies. Its reply queue is the default `RPC_REPLY_QUEUE: transient`
//!   (not durable, `x-expires`).
//! - **raw lapin**: no framework, the practical limit of the broker here. A
//!   server task consumes `raw-echo` (qos `IN_FLIGHT`, manual ack) and, for
//!   each request, publishes the body back to the default exchange with the
//!   request's `reply_to` as routing key and its `correlation_id`, **waits for
//!   the publisher confirm** (as the framework does), then acks. The client
//!   publishes persistent, `mandatory` requests with `reply_to` (its own
//!   reply queue) and `correlation_id`, waits for each confirm, and matches
//!   replies (manually acked) by correlation id. The reply queue is
//!   nameko's (durable, `x-expires`, not exclusive): this is "the
//!   nameko-shaped raw lapin echo", the baseline of the ratios.
//! - **enoki (`RPC_REPLY_QUEUE: durable`)** and **raw lapin (exclusive reply
//!   queue)**, for information: the same with nameko's reply queue, and the
//!   raw echo with a server-named exclusive, auto-delete one.
//! - **nameko**: `benches/nameko/client.py` (a standalone `ClusterRpcProxy`)
//!   calling `benches/nameko/echo_service.py` under `nameko run`
//!   (`max_workers` = `IN_FLIGHT`). Sequential: plain calls. Throughput:
//!   `NAMEKO_CLIENTS` client processes at once (default 1, as enoki's one
//!   `ClusterRpc`), each keeping `IN_FLIGHT / NAMEKO_CLIENTS` calls
//!   outstanding with `call_async`; their calls/s are added up
//!   (`NAMEKO_CLIENTS=2` gives nameko a second process and about 25% more).
//!   Skipped (with a message) without the venv. Its broker CPU is not
//!   measured (the client's window is its own).
//!
//! After the rounds: each subject's throughput over raw lapin's in the same
//! round (best, median, worst), the median broker CPU per call, then
//! `rpc_amqp: enoki throughput N calls/s, raw lapin M calls/s, nameko K calls/s, enoki/nameko X, enoki/lapin Y`
//! (medians) and `rpc_amqp: sequential p50 enoki A ms, lapin B ms (ratio C), nameko D ms`.

#[allow(unreachable_pub, missing_docs)]
#[path = "../tests/common/amqp.rs"]
mod amqp;
#[allow(unreachable_pub, missing_docs)]
#[path = "../tests/common/cluster.rs"]
mod cluster;

/// `ENOKI_BENCH_CLUSTER=1` (`./scripts/bench-amqp --cluster`): on the
/// 3-node test cluster of `scripts/cluster` with quorum queues (enoki's
/// `QUEUE_TYPE: quorum`, the raw echo's `raw-echo` declared quorum), the
/// services on node 1 and the clients on node 2, so every request and reply
/// crosses the cluster and is replicated. nameko is left out (it cannot
/// declare quorum queues) and the broker's CPU is not measured.
fn on_cluster() -> bool {
    std::env::var("ENOKI_BENCH_CLUSTER").is_ok_and(|v| v == "1")
}

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
use lapin::types::{AMQPValue, FieldTable};
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

/// One round of one subject.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    calls_per_s: f64,
    /// The broker's CPU time (user + system, from `/proc`) per call during
    /// the throughput window, in microseconds; `None` when it cannot be
    /// read (a remote broker, or nameko's client, whose window is its own).
    broker_us_per_call: Option<f64>,
    /// This process's CPU time per call in the same window (the client and
    /// the service, which run here for the Rust subjects).
    process_us_per_call: Option<f64>,
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// One call, as every Rust subject makes it.
type Call = Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

fn call_of<F, Fut>(call: F) -> Call
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(call()))
}

/// p50 and p99 in ms of `SEQ_CALLS` sequential calls after `SEQ_WARMUP`.
async fn sequential(call: &Call) -> (f64, f64) {
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

/// The local broker's CPU time so far, from `/proc/<pid>/stat`.
#[derive(Debug, Clone)]
struct BrokerCpu {
    stat: PathBuf,
    tick: Duration,
}

impl BrokerCpu {
    /// The node on 127.0.0.1 that `rabbitmqctl` talks to, when it runs here.
    fn find() -> Option<BrokerCpu> {
        if !amqp::broker_addr().starts_with("127.0.0.1") {
            return None;
        }
        let pid = amqp::rabbitmqctl(&["eval", "os:getpid()."]);
        let pid: u32 = pid.trim().trim_matches('"').parse().ok()?;
        let tick = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .filter(|hz| *hz > 0)?;
        let cpu = BrokerCpu {
            stat: PathBuf::from(format!("/proc/{pid}/stat")),
            tick: Duration::from_secs(1) / tick as u32,
        };
        cpu.now().map(|_| cpu)
    }

    /// This process (the same clock ticks as `broker`'s).
    fn this_process(broker: &BrokerCpu) -> BrokerCpu {
        BrokerCpu {
            stat: PathBuf::from("/proc/self/stat"),
            tick: broker.tick,
        }
    }

    fn now(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(&self.stat).ok()?;
        // Fields after the command's closing parenthesis: state is the 3rd
        // field of the line, utime and stime the 14th and 15th.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u32 = fields.get(11)?.parse().ok()?;
        let stime: u32 = fields.get(12)?.parse().ok()?;
        Some(self.tick * (utime + stime))
    }
}

/// Runs `call` from `IN_FLIGHT` tasks for `WARMUP + MEASURE`; returns the
/// calls per second during `MEASURE`, and the broker's CPU per call then.
async fn throughput(call: &Call, broker: Option<&BrokerCpu>) -> (f64, Option<f64>, Option<f64>) {
    let process = broker.map(BrokerCpu::this_process);
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
    let cpu_start = broker.and_then(BrokerCpu::now);
    let own_start = process.as_ref().and_then(BrokerCpu::now);
    tokio::time::sleep(MEASURE).await;
    let calls = count.load(Ordering::Relaxed) - start_count;
    let cpu_end = broker.and_then(BrokerCpu::now);
    let own_end = process.as_ref().and_then(BrokerCpu::now);
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("bench task");
    }
    let per_call = |start: Option<Duration>, end: Option<Duration>| match (start, end) {
        (Some(a), Some(b)) if calls > 0 => {
            Some((b.saturating_sub(a)).as_secs_f64() * 1e6 / calls as f64)
        }
        _ => None,
    };
    (
        calls as f64 / elapsed.as_secs_f64(),
        per_call(cpu_start, cpu_end),
        per_call(own_start, own_end),
    )
}

/// One round of a Rust subject: sequential latency, then throughput.
async fn round(call: &Call, broker: Option<&BrokerCpu>) -> Figures {
    let (p50_ms, p99_ms) = sequential(call).await;
    let (calls_per_s, broker_us_per_call, process_us_per_call) = throughput(call, broker).await;
    Figures {
        p50_ms,
        p99_ms,
        calls_per_s,
        broker_us_per_call,
        process_us_per_call,
    }
}

fn report(name: &str, round: usize, figures: &Figures) {
    let mut cpu = figures
        .broker_us_per_call
        .map(|us| format!(", broker CPU {us:.0} us/call"))
        .unwrap_or_default();
    if let Some(us) = figures.process_us_per_call {
        cpu.push_str(&format!(", client+service CPU {us:.0} us/call"));
    }
    println!(
        "rpc_amqp: round {round}: {name}: sequential p50 {:.3} ms, p99 {:.3} ms ({SEQ_CALLS} calls); throughput {:.0} calls/s ({IN_FLIGHT} in flight){cpu}",
        figures.p50_ms, figures.p99_ms, figures.calls_per_s
    );
}

/// Best, median and worst of some figures (best = highest).
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| b.total_cmp(a));
    (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    )
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    spread(values.into_iter().collect()).1
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

/// The enoki service, hosted on its own connection.
async fn enoki_service(uri: &str) -> (ServiceRunner, Arc<AmqpTransport>) {
    let mut settings = Settings::new().with("max_workers", (IN_FLIGHT as u64).into());
    if on_cluster() {
        settings = settings.with("QUEUE_TYPE", "quorum".into());
    }
    let transport = connect(uri, "bench-enoki-service").await;
    let mut runner = ServiceRunner::new(transport.clone(), settings);
    runner.add(enoki::service::<echo::EnokiEcho>());
    runner.start().await.expect("start enoki_echo");
    (runner, transport)
}

/// An enoki client on its own connection, with this `RPC_REPLY_QUEUE`.
async fn enoki_client(uri: &str, reply_queue: &str) -> (Call, ClusterRpc, Arc<AmqpTransport>) {
    let settings = Settings::new().with("RPC_REPLY_QUEUE", reply_queue.into());
    let transport = connect(uri, &format!("bench-enoki-client-{reply_queue}")).await;
    let rpc = ClusterRpc::connect(transport.clone(), &settings)
        .await
        .expect("client");
    let client = echo::EnokiEchoClient::new(&rpc);
    let call = call_of(move || {
        let client = client.clone();
        async move {
            let reply = client.echo("x".to_owned()).await.expect("echo");
            assert_eq!(reply, "x");
        }
    });
    (call, rpc, transport)
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
            if on_cluster() {
                let mut quorum = FieldTable::default();
                quorum.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("quorum".into()),
                );
                quorum
            } else {
                FieldTable::default()
            },
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

/// The raw echo's client on its own connection (the server runs once).
async fn raw_client(uri: &str, durable_reply_queue: bool) -> (Call, Connection) {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("raw client connection");
    let client = RawClient::connect(&conn, durable_reply_queue).await;
    let body: &'static [u8] = br#"{"args": ["x"], "kwargs": {}}"#;
    let call = call_of(move || {
        let client = client.clone();
        async move {
            assert_eq!(client.call(body).await, body);
        }
    });
    (call, conn)
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

/// The nameko echo service under `nameko run`, answering.
struct Nameko {
    python: PathBuf,
    uri: String,
    clients: usize,
    service: tokio::process::Child,
    files: [PathBuf; 2],
}

impl Nameko {
    async fn start(uri: &str, vhost: &amqp::TestVhost) -> Result<Nameko, String> {
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
        Ok(Nameko {
            python,
            uri: uri.to_owned(),
            clients,
            service,
            files: [config, log],
        })
    }

    /// One round: `client.py sequential`, then `NAMEKO_CLIENTS` processes of
    /// `client.py throughput` at once, their calls/s added up.
    async fn round(&self) -> Figures {
        let seq = run_client(
            &self.python,
            &self.uri,
            &[
                "sequential".into(),
                SEQ_CALLS.to_string(),
                SEQ_WARMUP.to_string(),
            ],
        )
        .await;
        let per_client = (IN_FLIGHT / self.clients).max(1);
        let throughput_args = [
            "throughput".into(),
            per_client.to_string(),
            WARMUP.as_secs_f64().to_string(),
            MEASURE.as_secs_f64().to_string(),
        ];
        let runs = (0..self.clients).map(|_| run_client(&self.python, &self.uri, &throughput_args));
        let calls_per_s: f64 = futures::future::join_all(runs)
            .await
            .iter()
            .map(|run| run["calls_per_s"].as_f64().expect("calls_per_s"))
            .sum();
        Figures {
            p50_ms: seq["p50_ms"].as_f64().expect("p50_ms"),
            p99_ms: seq["p99_ms"].as_f64().expect("p99_ms"),
            calls_per_s,
            broker_us_per_call: None,
            process_us_per_call: None,
        }
    }

    async fn stop(mut self) {
        let _ = self.service.kill().await;
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// What one run measures: the subjects in the order of each round.
const ENOKI: usize = 0;
const LAPIN: usize = 1;
const ENOKI_DURABLE: usize = 2;
const LAPIN_EXCLUSIVE: usize = 3;
const NAMEKO: usize = 4;
const NAMES: [&str; 5] = [
    "enoki",
    "raw lapin",
    "enoki (RPC_REPLY_QUEUE: durable)",
    "raw lapin (exclusive reply queue)",
    "nameko",
];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (local, on_nodes) = if on_cluster() {
        let Some(vhost) = cluster::ClusterVhost::create() else {
            return;
        };
        (None, Some(vhost))
    } else {
        let Some(vhost) = amqp::TestVhost::create() else {
            return;
        };
        (Some(vhost), None)
    };
    let (uri, client_uri) = match (&local, &on_nodes) {
        (Some(vhost), _) => {
            println!(
                "rpc_amqp: RabbitMQ at {}, vhost {}",
                amqp::broker_addr(),
                vhost.name
            );
            (vhost.uri.clone(), vhost.uri.clone())
        }
        (None, Some(vhost)) => {
            println!(
                "rpc_amqp: the 3-node test cluster, quorum queues, services on node 1, clients on node 2, vhost {}",
                vhost.name
            );
            (vhost.uri(1), vhost.uri(2))
        }
        (None, None) => unreachable!(),
    };
    let broker = if local.is_some() {
        BrokerCpu::find()
    } else {
        None
    };
    if broker.is_none() {
        println!("rpc_amqp: the broker's CPU is not measured (not one local RabbitMQ node)");
    }
    let rounds: Vec<[Option<Figures>; 5]> = runtime.block_on(async {
        let (runner, service_transport) = enoki_service(&uri).await;
        let (enoki, rpc, enoki_transport) = enoki_client(&client_uri, "transient").await;
        let (enoki_durable, rpc_durable, durable_transport) =
            enoki_client(&client_uri, "durable").await;
        let (ready, is_ready) = oneshot::channel();
        let server = raw_server(uri.clone(), ready).await;
        is_ready.await.expect("raw server ready");
        let (lapin, lapin_conn) = raw_client(&client_uri, true).await;
        let (exclusive, exclusive_conn) = raw_client(&client_uri, false).await;
        let nameko = match &local {
            Some(vhost) => Nameko::start(&uri, vhost).await,
            None => Err("nameko cannot declare quorum queues".to_owned()),
        };
        if let Err(why) = &nameko {
            println!("rpc_amqp: nameko skipped: {why}");
        }
        let calls = [&enoki, &lapin, &enoki_durable, &exclusive];
        let mut rounds = Vec::new();
        for n in 1..=3 {
            let mut figures = [None; 5];
            for (subject, call) in calls.iter().enumerate() {
                let got = round(call, broker.as_ref()).await;
                report(NAMES[subject], n, &got);
                figures[subject] = Some(got);
            }
            if let Ok(nameko) = &nameko {
                let got = nameko.round().await;
                report(NAMES[NAMEKO], n, &got);
                figures[NAMEKO] = Some(got);
            }
            rounds.push(figures);
        }
        if let Ok(nameko) = nameko {
            nameko.stop().await;
        }
        rpc.close().await;
        rpc_durable.close().await;
        runner.stop().await;
        for transport in [enoki_transport, durable_transport, service_transport] {
            transport.close().await;
        }
        for conn in [lapin_conn, exclusive_conn, server] {
            let _ = conn.close(200, "OK".into()).await;
        }
        rounds
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop((local, on_nodes));

    let of = |subject: usize| -> Vec<Figures> {
        rounds.iter().filter_map(|round| round[subject]).collect()
    };
    let throughput = |subject: usize| median(of(subject).iter().map(|f| f.calls_per_s));
    let ratios = |a: usize, b: usize| -> Vec<f64> {
        rounds
            .iter()
            .filter_map(|round| Some(round[a]?.calls_per_s / round[b]?.calls_per_s))
            .collect()
    };
    for subject in [ENOKI, ENOKI_DURABLE, LAPIN_EXCLUSIVE, NAMEKO] {
        let per_round = ratios(subject, LAPIN);
        if per_round.is_empty() {
            continue;
        }
        let (best, median, worst) = spread(per_round);
        println!(
            "rpc_amqp: {} / raw lapin, per round: best {best:.2}, median {median:.2}, worst {worst:.2}",
            NAMES[subject]
        );
    }
    // The median CPU per call of each Rust subject, as one line.
    let cpu_line = |what: &str, pick: fn(&Figures) -> Option<f64>| {
        let cpu: Vec<String> = [ENOKI, LAPIN, ENOKI_DURABLE, LAPIN_EXCLUSIVE]
            .into_iter()
            .filter_map(|subject| {
                let per_call: Vec<f64> = of(subject).iter().filter_map(pick).collect();
                (!per_call.is_empty())
                    .then(|| format!("{} {:.0} us", NAMES[subject], median(per_call)))
            })
            .collect();
        if !cpu.is_empty() {
            println!("rpc_amqp: {what} CPU per call (median): {}", cpu.join(", "));
        }
    };
    cpu_line("broker", |f| f.broker_us_per_call);
    cpu_line("client+service", |f| f.process_us_per_call);

    let nameko = of(NAMEKO);
    let (nameko_rps, nameko_p50) = if nameko.is_empty() {
        ("skipped".into(), "skipped".into())
    } else {
        (
            format!("{:.0} calls/s", throughput(NAMEKO)),
            format!("{:.3} ms", median(nameko.iter().map(|f| f.p50_ms))),
        )
    };
    let enoki_over_nameko = if nameko.is_empty() {
        "n/a".to_owned()
    } else {
        format!("{:.1}", median(ratios(ENOKI, NAMEKO)))
    };
    println!(
        "rpc_amqp: enoki throughput {:.0} calls/s, raw lapin {:.0} calls/s, nameko {nameko_rps}, enoki/nameko {enoki_over_nameko}, enoki/lapin {:.2}",
        throughput(ENOKI),
        throughput(LAPIN),
        median(ratios(ENOKI, LAPIN))
    );
    let p50 = |subject: usize| median(of(subject).iter().map(|f| f.p50_ms));
    println!(
        "rpc_amqp: sequential p50 enoki {:.3} ms, lapin {:.3} ms (ratio {:.2}), nameko {nameko_p50}",
        p50(ENOKI),
        p50(LAPIN),
        p50(ENOKI) / p50(LAPIN)
    );
}
