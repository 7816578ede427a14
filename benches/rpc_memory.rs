//! In-process RPC through the embedded transport, against a bare tokio
//! channel request/reply doing the same JSON work.
//!
//! Run with: `cargo bench --bench rpc_memory`
//!
//! Both sides keep 64 calls in flight from one client for the same time on
//! a 2-thread runtime:
//! - **enoki**: `GreeterClient::hello("Ann")` → `greeter.hello` (the example
//!   service, `max_workers = 64`) on the memory transport: request and reply
//!   encoded and decoded as JSON, headers, call ids, routing, workers, acks.
//! - **baseline**: the client encodes the same request body, sends it with a
//!   oneshot over an mpsc channel; one server task decodes it, formats the
//!   greeting and encodes the same reply body; the client decodes it.
//!
//! Three interleaved rounds (baseline, enoki, baseline, enoki, ...), each
//! printed; then the best, median and worst of the rounds' ratios, and last
//! `rpc_memory: N calls/s, baseline M calls/s, ratio R` (medians).
//!
//! With `ENOKI_BENCH_TRACING=otlp` (and `--features otel`) spans are
//! exported over OTLP to a sink in the bench while it runs: tracing on.
//! `./scripts/bench-tracing` runs it off and on, interleaved, and reports
//! the cost.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/greeter.rs"]
mod greeter;
#[path = "support/otlp.rs"]
mod otlp;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use enoki::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

const IN_FLIGHT: usize = 64;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

/// Runs `call` from `IN_FLIGHT` tasks for `WARMUP + MEASURE`; returns the
/// calls per second during `MEASURE`.
async fn drive<F, Fut>(call: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
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

/// The greeter on the memory transport and a client of it.
async fn enoki_setup() -> (ServiceRunner, greeter::GreeterClient) {
    let transport = enoki::transport::MemoryTransport::new();
    let settings = Settings::new().with("max_workers", 64.into());
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    runner.add(enoki::service::<greeter::Greeter>());
    runner.start().await.expect("start greeter");
    let rpc = ClusterRpc::connect(transport, &settings)
        .await
        .expect("client");
    (runner, greeter::GreeterClient::new(&rpc))
}

async fn enoki_rps(client: &greeter::GreeterClient) -> f64 {
    let client = client.clone();
    drive(move || {
        let client = client.clone();
        async move {
            let reply = client.hello("Ann".to_owned()).await.expect("hello");
            assert_eq!(reply.len(), 11);
        }
    })
    .await
}

#[derive(Serialize)]
struct RequestOut<'a> {
    args: (&'a str,),
    kwargs: Empty,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Deserialize)]
struct RequestIn {
    args: (String,),
    #[allow(dead_code)]
    kwargs: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct ReplyOut {
    result: String,
    error: Option<()>,
}

#[derive(Deserialize)]
struct ReplyIn {
    result: String,
    #[allow(dead_code)]
    error: Option<serde_json::Value>,
}

type Call = (Vec<u8>, oneshot::Sender<Vec<u8>>);

/// The baseline's server task, and the channel to it.
fn baseline_setup() -> (mpsc::Sender<Call>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Call>(1024);
    let server = tokio::spawn(async move {
        while let Some((body, reply)) = rx.recv().await {
            let request: RequestIn = serde_json::from_slice(&body).expect("request");
            let result = format!("Hello, {}!", request.args.0);
            let body = serde_json::to_vec(&ReplyOut {
                result,
                error: None,
            })
            .expect("reply");
            let _ = reply.send(body);
        }
    });
    (tx, server)
}

async fn baseline_rps(tx: &mpsc::Sender<Call>) -> f64 {
    let tx = tx.clone();
    drive(move || {
        let tx = tx.clone();
        async move {
            let body = serde_json::to_vec(&RequestOut {
                args: ("Ann",),
                kwargs: Empty {},
            })
            .expect("request");
            let (reply_tx, reply_rx) = oneshot::channel();
            tx.send((body, reply_tx)).await.expect("send");
            let reply: ReplyIn =
                serde_json::from_slice(&reply_rx.await.expect("reply")).expect("decode");
            assert_eq!(reply.result.len(), 11);
        }
    })
    .await
}

/// Best, median and worst (best = highest).
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| b.total_cmp(a));
    (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    )
}

fn main() {
    let threads = std::env::var("ENOKI_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    // ENOKI_BENCH_ONLY=enoki skips the baseline (for profiling).
    let only_enoki = std::env::var("ENOKI_BENCH_ONLY").is_ok_and(|only| only == "enoki");
    let tracing_on = otlp::tracing_on();
    let rounds: Vec<(f64, f64)> = runtime.block_on(async {
        #[cfg(feature = "otel")]
        let telemetry = if tracing_on {
            Some(otlp::export_spans("rpc_memory").await)
        } else {
            None
        };
        println!("rpc_memory: tracing {}", if tracing_on { "on (OTLP)" } else { "off" });
        let (runner, client) = enoki_setup().await;
        let (tx, server) = baseline_setup();
        let mut rounds = Vec::new();
        for round in 1..=3 {
            let baseline = if only_enoki {
                f64::NAN
            } else {
                baseline_rps(&tx).await
            };
            let enoki = enoki_rps(&client).await;
            println!(
                "rpc_memory: round {round}: enoki {enoki:.0} calls/s, baseline {baseline:.0} calls/s, ratio {:.2}",
                enoki / baseline
            );
            rounds.push((enoki, baseline));
        }
        server.abort();
        runner.stop().await;
        #[cfg(feature = "otel")]
        if let Some(telemetry) = telemetry {
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        }
        rounds
    });
    let (best, median, worst) = spread(rounds.iter().map(|(e, b)| e / b).collect());
    println!("rpc_memory: ratio per round: best {best:.2}, median {median:.2}, worst {worst:.2}");
    let enoki = spread(rounds.iter().map(|(e, _)| *e).collect()).1;
    let baseline = spread(rounds.iter().map(|(_, b)| *b).collect()).1;
    println!("rpc_memory: {enoki:.0} calls/s, baseline {baseline:.0} calls/s, ratio {median:.2}");
}
