//! Gateway benchmarks, one run (`./scripts/bench-gateway`, or
//! `cargo bench --bench gateway`):
//!
//! 1. HTTP, with `wrk` (same tool, same load for each), every comparison
//!    in three interleaved rounds (A B A B A B) with the best, median and
//!    worst ratio: `GET /hello/{name}` routed to `greeter.hello` on the
//!    embedded transport against a bare axum hello-world route (the
//!    limit); the same route through RabbitMQ (when reachable; a throwaway
//!    vhost) against the incumbent, a Python nameko 2.14.1 `@http`
//!    entrypoint making the same RPC call
//!    (`benches/nameko/http_gateway.py`, `ENOKI_PYTHON` or `scripts/venv`);
//!    `GET /users/{id}` (the `users` example on SQLite, embedded) against a
//!    bare axum + sqlx handler doing the same query on the same database;
//!    an `#[http]` entrypoint against the bare axum route.
//! 2. WebSocket fan-out, against a bare axum WebSocket server doing the
//!    same fan-out (a `tokio::sync::broadcast`), interleaved round by
//!    round, each server in a fresh child process with fresh clients: N
//!    clients (`ENOKI_BENCH_WS_CLIENTS`, default 10000) subscribed to one
//!    event; events published on the gateway's embedded broker, first at
//!    a fixed rate (`ENOKI_BENCH_EVENTS_PER_SEC`,
//!    default 20: with 10,000 clients, 200,000 deliveries/s) for
//!    `ENOKI_BENCH_EVENT_SECS` (default 5), then `ENOKI_BENCH_FLOOD_EVENTS`
//!    (default 100) as fast as the publisher can (the gateway's capacity),
//!    three rounds of each, interleaved, with the best, median and worst:
//!    deliveries per second, p50 and p99 delivery latency, events dropped,
//!    and the gateway process's memory per connection (the gateway runs in
//!    a child process, so the clients' memory is not counted).
//!
//! The gateway runs on its own server ([`enoki::gateway::serve::serve`]:
//! header deadline, connection limit, `TCP_NODELAY`), as `enoki gateway`
//! runs it; the bare axum baselines on `axum::serve`, as axum's docs
//! have it.
//!
//! Everything listens on 127.0.0.1 only. Environment: `ENOKI_BENCH_SECS`
//! (wrk duration, default 5), `ENOKI_BENCH_CONNS` (wrk connections, 64),
//! `ENOKI_BENCH_ONLY` (`http` or `ws`: one half), and the WebSocket ones
//! above.
#![allow(missing_docs, unreachable_pub)]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/greeter.rs"]
mod greeter;
#[path = "support/otlp.rs"]
mod otlp;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/users.rs"]
mod users;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use enoki::gateway::{GatewayConfig, GatewayState, RouteTable, router};
use enoki::prelude::*;
use enoki::transport::{MemoryTransport, Transport};
use futures::{SinkExt, StreamExt};
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::var("ENOKI_BENCH_ROLE").as_deref() {
        Ok("ws-server") => return runtime.block_on(ws_server()),
        Ok("ws-bare") => return runtime.block_on(ws_bare_server()),
        _ => {}
    }
    // ENOKI_BENCH_ONLY=http or ws runs one half; hello, only the embedded
    // /hello comparison (what ./scripts/bench-tracing runs, tracing off and
    // on).
    let only = std::env::var("ENOKI_BENCH_ONLY").unwrap_or_default();
    let tracing_on = otlp::tracing_on();
    runtime.block_on(async {
        #[cfg(feature = "otel")]
        let telemetry = if tracing_on {
            Some(otlp::export_spans("gateway").await)
        } else {
            None
        };
        println!(
            "gateway: tracing {}",
            if tracing_on { "on (OTLP)" } else { "off" }
        );
        if only == "hello" {
            hello_embedded().await;
        } else if only != "ws" {
            http_benches().await;
        }
        if only.is_empty() || only == "ws" {
            ws_fanout().await;
        }
        #[cfg(feature = "otel")]
        if let Some(telemetry) = telemetry {
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        }
    });
}

// ===== HTTP =====

fn routes() -> RouteTable {
    RouteTable::load_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("routes"))
        .expect("routes load")
}

/// A bare axum server, as axum's docs have it (`axum::serve`): the
/// baselines. (With `TCP_NODELAY` on, the bare WebSocket server, which
/// writes each frame on its own, does worse: about half the capacity and
/// 1.6-1.8 times the p99 in one run, as Nagle's algorithm no longer merges
/// its frames.)
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The gateway's router on the gateway's own server, as `enoki gateway`
/// runs it: [`enoki::gateway::serve::serve`], with the header deadline and
/// the connection limit of `state`'s config.
async fn serve_gateway(state: &GatewayState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state.clone());
    let limits = enoki::gateway::serve::ServeLimits::from_config(state.config());
    let metrics = Some(state.metrics().clone());
    tokio::spawn(enoki::gateway::serve::serve(
        listener,
        app,
        limits,
        metrics,
        std::future::pending(),
    ));
    addr
}

struct WrkResult {
    rps: f64,
    p99: String,
}

async fn wrk(url: &str) -> Option<WrkResult> {
    let secs = env_or("ENOKI_BENCH_SECS", 5);
    let conns = env_or("ENOKI_BENCH_CONNS", 64);
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    // A benchmark of errors measures nothing: non-2xx answers and socket
    // errors fail the run.
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if let Some(errors) = errors {
        panic!(
            "wrk {url}: {}; the figures would not be of successful requests",
            errors.trim()
        );
    }
    Some(WrkResult { rps, p99 })
}

/// The gateway on `transport`, and the greeter on `services` (its own
/// connection on RabbitMQ, as a separate service process would have),
/// with `max_workers` = `PREFETCH_COUNT` = 64, the load's concurrency.
async fn gateway_on(
    transport: Arc<dyn Transport>,
    services: Arc<dyn Transport>,
) -> (GatewayState, ServiceRunner) {
    let settings = Settings::new().with("max_workers", 64.into());
    let mut runner = ServiceRunner::new(services, settings);
    runner.add(enoki::service::<greeter::Greeter>());
    runner.start().await.unwrap();
    let config = GatewayConfig {
        concurrency_limit: 4096,
        ..GatewayConfig::default()
    };
    let state = GatewayState::builder(transport)
        .config(config)
        .routes(routes())
        .build()
        .await
        .unwrap();
    (state, runner)
}

async fn http_benches() {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!(
            "gateway http: skipped (wrk is not installed; ./scripts/bench-gateway installs it)"
        );
        return;
    }
    hello_embedded().await;
    users_bench().await;
    http_entrypoint_bench().await;

    match amqp_vhost() {
        None => {
            println!("gateway http: /hello/{{name}} RabbitMQ    skipped (RabbitMQ not reachable)")
        }
        Some(vhost) => {
            let uri = format!("amqp://guest:guest@127.0.0.1:5672/{vhost}");
            let transport: Arc<dyn Transport> =
                enoki::transport::AmqpTransport::connect(&uri, Default::default())
                    .await
                    .expect("connect to RabbitMQ");
            let services: Arc<dyn Transport> =
                enoki::transport::AmqpTransport::connect(&uri, Default::default())
                    .await
                    .expect("connect to RabbitMQ");
            let (state, runner) = gateway_on(transport.clone(), services.clone()).await;
            let addr = serve_gateway(&state).await;
            let enoki_url = format!("http://{addr}/hello/Ann");
            // The incumbent: a nameko @http entrypoint making the same call
            // (to the same enoki greeter), interleaved with enoki's route.
            match nameko_http(&vhost).await {
                Ok((child, url)) => {
                    interleaved(
                        &url,
                        "nameko @http RabbitMQ",
                        &enoki_url,
                        "/hello/{name} RabbitMQ",
                        "enoki RabbitMQ route / nameko @http",
                    )
                    .await;
                    drop(child);
                }
                Err(why) => {
                    let amqp = wrk(&enoki_url).await.expect("wrk runs");
                    println!(
                        "gateway http: /hello/{{name}} RabbitMQ    {:>9.0} req/s  p99 {}",
                        amqp.rps, amqp.p99
                    );
                    println!("gateway http: nameko @http RabbitMQ      skipped ({why})");
                }
            }
            state.close().await;
            runner.stop().await;
            transport.close().await;
            services.close().await;
            let _ = Command::new("rabbitmqctl")
                .args(["delete_vhost", &vhost])
                .output();
        }
    }
}

/// `GET /hello/{name}` on the embedded transport against a bare axum
/// route, interleaved.
async fn hello_embedded() {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("gateway http: skipped (wrk is not installed)");
        return;
    }
    let bare = Router::new().route(
        "/hello/{name}",
        get(|Path(name): Path<String>| async move { axum::Json(format!("Hello, {name}!")) }),
    );
    let bare = serve(bare).await;

    let transport: Arc<dyn Transport> = MemoryTransport::new();
    let (state, runner) = gateway_on(transport.clone(), transport.clone()).await;
    let addr = serve_gateway(&state).await;
    interleaved(
        &format!("http://{bare}/hello/Ann"),
        "bare axum route",
        &format!("http://{addr}/hello/Ann"),
        "/hello/{name} embedded",
        "/hello/{name} embedded / bare axum",
    )
    .await;
    state.close().await;
    runner.stop().await;
    transport.close().await;
}

/// `GET /users/{id}`: the `users` service behind the embedded gateway
/// against a bare axum + sqlx handler running the same query on the same
/// SQLite file, interleaved.
async fn users_bench() {
    use sqlx::Row;

    let file = std::env::temp_dir().join(format!("enoki-bench-users-{}.db", std::process::id()));
    let uri = format!("sqlite://{}?mode=rwc", file.display());
    let settings = Settings::new()
        .with("max_workers", 64.into())
        .with("DB_URIS", json!({ "users": uri }));
    let transport: Arc<dyn Transport> = MemoryTransport::new();
    let web = enoki::web::WebServer::mounted();
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    runner.web_server(web.clone());
    runner.add(enoki::service::<users::Users>());
    runner.start().await.unwrap();
    let state = GatewayState::builder(transport.clone())
        .web_server(web)
        .config(GatewayConfig {
            concurrency_limit: 4096,
            ..GatewayConfig::default()
        })
        .routes(routes())
        .build()
        .await
        .unwrap();
    let rpc = ClusterRpc::connect(transport.clone(), &settings)
        .await
        .unwrap();
    let ann = users::UsersClient::new(&rpc)
        .create("ann".into(), Some("Ann".into()))
        .await
        .unwrap();
    let gateway = serve_gateway(&state).await;

    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(64)
        .connect(&uri)
        .await
        .unwrap();
    let bare = Router::new().route(
        "/users/{id}",
        get(move |Path(id): Path<i64>| {
            let pool = pool.clone();
            async move {
                let row = sqlx::query("SELECT id, username, name FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                axum::Json(json!({
                    "id": row.get::<i64, _>("id"),
                    "username": row.get::<String, _>("username"),
                    "name": row.get::<String, _>("name"),
                }))
            }
        }),
    );
    let bare = serve(bare).await;
    let path = format!("/users/{}", ann.id);
    interleaved(
        &format!("http://{bare}{path}"),
        "bare axum+sqlx /users/{id}",
        &format!("http://{gateway}{path}"),
        "gateway (SQLite, embedded)",
        "/users/{id} gateway / bare axum+sqlx",
    )
    .await;
    state.close().await;
    runner.stop().await;
    transport.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

/// Three interleaved wrk rounds of `base` (A) and `subject` (B), A B A B
/// A B; prints each round, then the best, median and worst B/A ratio.
async fn interleaved(base: &str, base_name: &str, subject: &str, subject_name: &str, what: &str) {
    let mut ratios = Vec::new();
    for round in 1..=3 {
        let a = wrk(base).await.expect("wrk runs");
        let b = wrk(subject).await.expect("wrk runs");
        println!(
            "gateway http: round {round}: {base_name} {:>9.0} req/s  p99 {}; {subject_name} {:>9.0} req/s  p99 {}  ({:.2}x)",
            a.rps,
            a.p99,
            b.rps,
            b.p99,
            b.rps / a.rps
        );
        ratios.push(b.rps / a.rps);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "gateway http: {what}: best {:.2}x, median {:.2}x, worst {:.2}x",
        ratios[2], ratios[1], ratios[0]
    );
}

/// A service with one `#[http]` method, for [`http_entrypoint_bench`].
#[derive(Dependencies)]
struct HttpHello;

#[service(name = "http_hello")]
impl HttpHello {
    #[http(GET, "/hello/{name}")]
    async fn hello(&self, Path(name): Path<String>) -> String {
        format!("Hello, {name}!")
    }
}

/// `GET /hello/{name}` as an `#[http]` entrypoint (a worker per request,
/// on the process's web server) against the bare axum route, interleaved.
async fn http_entrypoint_bench() {
    let bare = serve(Router::new().route(
        "/hello/{name}",
        get(|Path(name): Path<String>| async move { format!("Hello, {name}!") }),
    ))
    .await;
    let settings = Settings::new().with("max_workers", 64.into());
    let web = enoki::web::WebServer::new("127.0.0.1:0");
    let mut runner = ServiceRunner::new(MemoryTransport::new(), settings);
    runner.web_server(web.clone());
    runner.add(enoki::service::<HttpHello>());
    runner.start().await.unwrap();
    let entrypoint = web.local_addr().expect("the web server listens");
    interleaved(
        &format!("http://{bare}/hello/Ann"),
        "bare axum /hello/{name}",
        &format!("http://{entrypoint}/hello/Ann"),
        "#[http] entrypoint",
        "#[http] entrypoint / bare axum",
    )
    .await;
    runner.stop().await;
}

/// A `nameko run` child process, killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `benches/nameko/http_gateway.py` under `nameko run` on `vhost`
/// and waits until its `GET /hello/Ann` answers; returns the URL to load.
async fn nameko_http(vhost: &str) -> Result<(Child, String), String> {
    let python = match std::env::var("ENOKI_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => {
            let out = Command::new("./scripts/venv")
                .output()
                .map_err(|err| format!("scripts/venv: {err}"))?;
            if !out.status.success() {
                return Err("scripts/venv failed".into());
            }
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|err| err.to_string())?
        .port();
    let config = std::env::temp_dir().join(format!("enoki-bench-http-{vhost}.yaml"));
    std::fs::write(
        &config,
        format!(
            "AMQP_URI: amqp://guest:guest@127.0.0.1:5672/{vhost}\n\
             WEB_SERVER_ADDRESS: 127.0.0.1:{port}\nmax_workers: 64\n"
        ),
    )
    .map_err(|err| err.to_string())?;
    let child = Command::new(python)
        .args([
            "-m",
            "nameko",
            "run",
            "http_gateway:HttpGateway",
            "--config",
        ])
        .arg(&config)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/nameko"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start nameko: {err}"))?;
    let child = Child(child);
    let url = format!("http://127.0.0.1:{port}/hello/Ann");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(&url).await
            && response.status().is_success()
        {
            return Ok((child, url));
        }
        if Instant::now() > deadline {
            return Err("nameko's @http did not answer within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn amqp_vhost() -> Option<String> {
    std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_secs(1),
    )
    .ok()?;
    let vhost = format!("enoki-bench-{}", uuid::Uuid::new_v4().simple());
    let ok = Command::new("rabbitmqctl")
        .args(["add_vhost", &vhost])
        .output()
        .ok()?
        .status
        .success()
        && Command::new("rabbitmqctl")
            .args(["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"])
            .output()
            .ok()?
            .status
            .success();
    ok.then_some(vhost)
}

// ===== WebSocket fan-out =====

/// Latency histogram: 50 µs buckets up to 10 s.
const BUCKET_MICROS: u64 = 50;
const BUCKETS: usize = 200_000;

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The child: a gateway on the embedded broker; commands on stdin.
async fn ws_server() {
    let transport: Arc<dyn Transport> = MemoryTransport::new();
    let config = GatewayConfig {
        concurrency_limit: 100_000,
        max_connections: 100_000,
        // The bench publishes as `bench`, which no embedded service is.
        event_sources: vec!["bench".into()],
        ..GatewayConfig::default()
    };
    let state = GatewayState::builder(transport.clone())
        .config(config)
        .build()
        .await
        .unwrap();
    let addr = serve_gateway(&state).await;
    println!("ADDR {addr}");
    let publisher = EventPublisher::new(transport.clone(), &Settings::new());
    commands(
        async |n| {
            publisher
                .dispatch("bench", "tick", &json!({ "n": n, "t": now_micros() }))
                .await
                .unwrap();
        },
        || {
            let text = state.metrics().render();
            for line in text
                .lines()
                .filter(|l| l.starts_with("enoki_gateway_events"))
            {
                println!("M {line}");
            }
        },
    )
    .await;
}

/// The baseline's child: a bare axum WebSocket server doing the same
/// fan-out as plainly as axum's docs suggest (each event encoded once, a
/// `tokio::sync::broadcast` to every connection, which sends each frame
/// as it comes), without the framework: what the same machine, clients
/// included, gives a plain server.
async fn ws_bare_server() {
    use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
    let (events, _) = tokio::sync::broadcast::channel::<Utf8Bytes>(1024);
    let upgrade = {
        let events = events.clone();
        move |ws: WebSocketUpgrade| {
            let mut rx = events.subscribe();
            async move {
                // The gateway's buffer sizes.
                ws.read_buffer_size(2048)
                    .write_buffer_size(8 * 1024)
                    .on_upgrade(async move |mut socket: WebSocket| {
                        // The client's subscribe frame, answered.
                        if !matches!(socket.recv().await, Some(Ok(Message::Text(_)))) {
                            return;
                        }
                        let ok = Message::text(r#"{"type":"subscribed","events":["bench.tick"]}"#);
                        if socket.send(ok).await.is_err() {
                            return;
                        }
                        loop {
                            tokio::select! {
                                event = rx.recv() => match event {
                                    Ok(frame) => {
                                        if socket.send(Message::Text(frame)).await.is_err() {
                                            return;
                                        }
                                    }
                                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                    Err(_) => return,
                                },
                                message = socket.recv() => if !matches!(message, Some(Ok(_))) {
                                    return;
                                },
                            }
                        }
                    })
            }
        }
    };
    let addr = serve(Router::new().route("/ws", get(upgrade))).await;
    println!("ADDR {addr}");
    commands(
        async |n| {
            let frame = json!({
                "type": "event",
                "service": "bench",
                "event_type": "tick",
                "payload": { "n": n, "t": now_micros() },
            })
            .to_string();
            let _ = events.send(Utf8Bytes::from(frame));
        },
        || {},
    )
    .await;
}

/// A child's command loop: `rss` (its memory), `burst COUNT RATE` (events
/// published with `publish`, then `SENT COUNT`), `metrics` (lines from
/// `metrics`, then `END`); anything else ends it.
async fn commands(mut publish: impl AsyncFnMut(u64), metrics: impl Fn()) {
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["rss"] => println!("RSS {}", rss_kib()),
            ["burst", count, rate] => burst(count, rate, &mut publish).await,
            ["metrics"] => {
                metrics();
                println!("END");
            }
            _ => break,
        }
        let _ = std::io::stdout().flush();
    }
}

/// The parent's commands, line by line, read on a thread of their own.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `burst COUNT RATE`: publishes COUNT events, RATE a second (0: as fast
/// as the publisher can, the capacity run); then says `SENT COUNT`.
async fn burst(count: &str, rate: &str, publish: &mut impl AsyncFnMut(u64)) {
    let (count, rate): (u64, u64) = (count.parse().unwrap(), rate.parse().unwrap());
    let mut tick =
        (rate > 0).then(|| tokio::time::interval(Duration::from_micros(1_000_000 / rate)));
    for n in 0..count {
        match &mut tick {
            Some(tick) => {
                tick.tick().await;
            }
            None => tokio::task::yield_now().await,
        }
        publish(n).await;
    }
    println!("SENT {count}");
}

/// One WebSocket fan-out run's figures.
struct WsRound {
    /// Deliveries per second.
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A WebSocket server in a child process (so its memory is its own), with
/// its clients in this one.
struct WsTarget {
    name: &'static str,
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    received: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    latencies: Arc<Vec<AtomicU64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WsTarget {
    /// Starts the child in `role` and connects `clients` subscribed clients.
    async fn start(name: &'static str, role: &str, clients: usize) -> WsTarget {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("ENOKI_BENCH_ROLE", role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut target = WsTarget {
            name,
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            received: Arc::new(AtomicU64::new(0)),
            last: Arc::new(AtomicU64::new(0)),
            latencies: Arc::new((0..BUCKETS).map(|_| AtomicU64::new(0)).collect()),
            tasks: Vec::with_capacity(clients),
        };
        let addr: SocketAddr = target.read("ADDR ").parse().unwrap();
        let rss_before: u64 = target.ask("rss", "RSS ").parse().unwrap();
        let started = Instant::now();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients.max(1));
        let gate = Arc::new(tokio::sync::Semaphore::new(256));
        for _ in 0..clients {
            let (received, last, latencies, ready_tx, gate) = (
                target.received.clone(),
                target.last.clone(),
                target.latencies.clone(),
                ready_tx.clone(),
                gate.clone(),
            );
            target.tasks.push(tokio::spawn(async move {
                let mut permit = Some(gate.acquire_owned().await.unwrap());
                let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0);
                let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
                    format!("ws://{addr}/ws"),
                    Some(config),
                    true,
                )
                .await
                .expect("ws connects");
                ws.send(tokio_tungstenite::tungstenite::Message::text(
                    r#"{"type":"subscribe","events":["bench.tick"]}"#,
                ))
                .await
                .unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    let tokio_tungstenite::tungstenite::Message::Text(text) = msg else {
                        continue;
                    };
                    let text = text.as_str();
                    if text.contains(r#""type":"subscribed""#) {
                        permit.take();
                        let _ = ready_tx.send(()).await;
                        continue;
                    }
                    assert!(
                        !text.contains(r#""type":"error""#),
                        "the gateway refused the subscription: {text}"
                    );
                    if let Some(at) = text.find(r#""t":"#) {
                        let digits: String = text[at + 4..]
                            .chars()
                            .take_while(char::is_ascii_digit)
                            .collect();
                        if let Ok(t) = digits.parse::<u64>() {
                            let now = now_micros();
                            let bucket = (now.saturating_sub(t) / BUCKET_MICROS) as usize;
                            latencies[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
                            received.fetch_add(1, Ordering::Relaxed);
                            last.fetch_max(now, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        drop(ready_tx);
        for _ in 0..clients {
            ready_rx.recv().await.expect("every client subscribes");
        }
        let connect_secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_after: u64 = target.ask("rss", "RSS ").parse().unwrap();
        let per_conn = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / clients as f64;
        println!(
            "gateway ws: {name}: {clients} clients connected and subscribed in {connect_secs:.1} s; server RSS {} MiB -> {} MiB: {:.1} KiB per connection",
            rss_before / 1024,
            rss_after / 1024,
            per_conn / 1024.0
        );
        target
    }

    /// The child's next line that starts with `prefix`, without it.
    fn read(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            self.stdout.read_line(&mut line).unwrap();
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    fn ask(&mut self, command: &str, prefix: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.read(prefix)
    }

    /// Publishes `count` events at `rate` a second (0: unthrottled) and
    /// measures their delivery to every client.
    async fn run(&mut self, clients: usize, count: u64, rate: u64, label: &str) -> WsRound {
        for counter in self.latencies.iter() {
            counter.store(0, Ordering::Relaxed);
        }
        self.received.store(0, Ordering::Relaxed);
        self.last.store(0, Ordering::Relaxed);
        let sent_at = now_micros();
        let _ = self.ask(&format!("burst {count} {rate}"), "SENT ");
        let expected = count * clients as u64;
        // Done when every delivery is in, or nothing more came for a second
        // (what a capacity run dropped never comes).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = (0, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let got = self.received.load(Ordering::Relaxed);
            if got >= expected || Instant::now() > deadline {
                break;
            }
            if got != seen.0 {
                seen = (got, Instant::now());
            } else if seen.1.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        let got = self.received.load(Ordering::Relaxed);
        let span = (self.last.load(Ordering::Relaxed).saturating_sub(sent_at)) as f64 / 1e6;
        writeln!(self.stdin, "metrics").unwrap();
        let mut dropped = String::from("0");
        loop {
            let line = self.read("");
            if line == "END" {
                break;
            }
            if line.contains("dropped") {
                dropped = line.rsplit(' ').next().unwrap_or("0").to_owned();
            }
        }
        let counts: Vec<u64> = self
            .latencies
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let pct = |p: f64| -> f64 {
            let want = (total as f64 * p).ceil() as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= want {
                    return ((i as u64 + 1) * BUCKET_MICROS) as f64;
                }
            }
            0.0
        };
        let figures = WsRound {
            rate: got as f64 / span.max(1e-9),
            p50_ms: pct(0.50) / 1000.0,
            p99_ms: pct(0.99) / 1000.0,
        };
        println!(
            "gateway ws: {}: {label}: {count} events x {clients} clients: {got}/{expected} delivered in {span:.2} s = {:.0} deliveries/s; latency p50 {:.1} ms, p99 {:.1} ms; dropped (all runs) {dropped}",
            self.name, figures.rate, figures.p50_ms, figures.p99_ms,
        );
        figures
    }

    async fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Best, median and worst of `rounds`' `figure`.
fn summary(rounds: &[f64], lower_is_better: bool) -> (f64, f64, f64) {
    let mut values = rounds.to_vec();
    values.sort_by(f64::total_cmp);
    let (low, median, high) = (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    );
    if lower_is_better {
        (low, median, high)
    } else {
        (high, median, low)
    }
}

async fn ws_fanout() {
    let clients = env_or("ENOKI_BENCH_WS_CLIENTS", 10_000) as usize;
    let rate = env_or("ENOKI_BENCH_EVENTS_PER_SEC", 20);
    let secs = env_or("ENOKI_BENCH_EVENT_SECS", 5);
    let flood = env_or("ENOKI_BENCH_FLOOD_EVENTS", 100);
    // What is offered (the target: 200,000 deliveries/s to 10,000 clients
    // is 20 events/s), then what each can deliver: events published as
    // fast as the publisher can, deliveries counted as they arrive. Three
    // rounds, interleaved: the bare server, then enoki, each started afresh
    // with its clients (two sets of 10,000 clients at once would pass the
    // open-file limit here).
    let offered_label = format!(
        "offered {rate} events/s ({} deliveries/s)",
        rate * clients as u64
    );
    let (mut offered, mut capacity) = (Vec::new(), Vec::new());
    let (mut bare_offered, mut bare_capacity) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        for (name, role) in [("bare axum", "ws-bare"), ("enoki", "ws-server")] {
            let (offered, capacity) = if role == "ws-bare" {
                (&mut bare_offered, &mut bare_capacity)
            } else {
                (&mut offered, &mut capacity)
            };
            let mut target = WsTarget::start(name, role, clients).await;
            let label = format!("round {round}: {offered_label}");
            offered.push(target.run(clients, rate * secs, rate, &label).await);
            let label = format!("round {round}: capacity (unthrottled publisher)");
            capacity.push(target.run(clients, flood, 0, &label).await);
            target.stop().await;
        }
    }
    let figures = |rounds: &[WsRound], figure: fn(&WsRound) -> f64| -> Vec<f64> {
        rounds.iter().map(figure).collect()
    };
    for (name, offered, capacity) in [
        ("enoki", &offered, &capacity),
        ("bare axum", &bare_offered, &bare_capacity),
    ] {
        let (best, median, worst) = summary(&figures(offered, |r| r.p99_ms), true);
        println!(
            "gateway ws: {name}: {offered_label}: p99 latency best {best:.1} ms, median {median:.1} ms, worst {worst:.1} ms"
        );
        let (best, median, worst) = summary(&figures(offered, |r| r.p50_ms), true);
        println!(
            "gateway ws: {name}: {offered_label}: p50 latency best {best:.1} ms, median {median:.1} ms, worst {worst:.1} ms"
        );
        let (best, median, worst) = summary(&figures(capacity, |r| r.rate), false);
        println!(
            "gateway ws: {name}: capacity: best {best:.0}, median {median:.0}, worst {worst:.0} deliveries/s"
        );
    }
    // Per round, enoki's p99 over the bare server's (below 1: enoki's
    // deliveries arrive sooner).
    let ratios: Vec<f64> = offered
        .iter()
        .zip(&bare_offered)
        .map(|(e, b)| e.p99_ms / b.p99_ms.max(1e-9))
        .collect();
    let (best, median, worst) = summary(&ratios, true);
    println!(
        "gateway ws: {offered_label}: p99 enoki / bare axum, per round: best {best:.2}, median {median:.2}, worst {worst:.2}"
    );
}
