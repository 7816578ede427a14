//! The per-operation budget: instructions and allocations per operation,
//! counted, so the figures are the same on any machine.
//!
//! Run with: `./scripts/budget` (prints the figures and checks them against
//! `benches/budget.txt`), `./scripts/budget --update` (rewrites the file
//! when a change is meant to cost more, or to lock in a saving).
//!
//! Each scenario runs in a child process (`budget --child SCENARIO N`, a
//! single-threaded runtime whose clock is paused, so timers are the same in
//! every run) that sets up, warms up, runs N operations and then N more;
//! only the second N are counted, so per operation is `(I(2N) - I(N)) / N`
//! within one process, without start-up, warm-up or exit:
//! - **instructions**: the child runs under `valgrind --tool=callgrind
//!   --toggle-collect` of the function that runs the second N (the median
//!   of three rounds; the rounds differ by a few tenths of a per cent, from
//!   random hash seeds and ids);
//! - **allocations**: a counting global allocator (stats_alloc) counts the
//!   allocations (`alloc`, `alloc_zeroed`, `realloc`) of the second N.
//!
//! Scenarios:
//! - `rpc_echo`: an in-process RPC round trip (memory transport) to a plain
//!   echo method, through the generated client;
//! - `rpc_hello`: the same to `greeter.hello`, which dispatches `greeted`;
//! - `event`: one event (a typed payload, made once) dispatched and handled
//!   by one handler that takes it typed;
//! - `amqp_headers`: nameko's headers of a request encoded to an AMQP table
//!   and decoded back (no socket);
//! - `gateway_route`: `GET /hello/Ann` through the gateway's router
//!   (`tower::ServiceExt::oneshot`, no socket) to the embedded greeter.
//!
//! One line each: `budget: SCENARIO I instructions, A allocations per op`.
//! With `--check`, a scenario whose instructions grow more than 2%, or its
//! allocations by one or more, against the file fails the run; so does one
//! over its target ([`TARGETS`]: the echo round trip at most 15,000
//! instructions and 15 allocations, one event at most 5,000 and 5), which
//! `--update` cannot move. Without valgrind, instructions are skipped (and
//! `--check` fails under `CI=true`).

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/greeter.rs"]
mod greeter;

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use enoki::prelude::*;
use enoki::transport::{MemoryTransport, Transport};
use serde_json::json;

// ===== counting allocations =====

/// The system allocator, counted (stats_alloc: no `unsafe` here).
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Allocations so far: `alloc`, `alloc_zeroed` and `realloc` calls.
fn allocations() -> u64 {
    let stats = GLOBAL.stats();
    (stats.allocations + stats.reallocations) as u64
}

// ===== the scenarios =====

const SCENARIOS: [&str; 5] = [
    "rpc_echo",
    "rpc_hello",
    "event",
    "amqp_headers",
    "gateway_route",
];
const N: u64 = 2_000;
const WARMUP: u64 = 200;

#[derive(Dependencies)]
struct Echo;

#[service(name = "echo")]
impl Echo {
    #[rpc]
    async fn echo(&self, value: String) -> Result<String, RemoteError> {
        Ok(value)
    }
}

static HANDLED: AtomicU64 = AtomicU64::new(0);
static HANDLED_NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[derive(Dependencies)]
struct Sink;

#[service(name = "sink")]
impl Sink {
    #[event_handler("source", "ping")]
    async fn on_ping(&self, ping: Ping) -> Result<(), RemoteError> {
        assert_eq!(ping.n, 1);
        HANDLED.fetch_add(1, Ordering::Relaxed);
        HANDLED_NOTIFY.notify_one();
        Ok(())
    }
}

/// The `ping` event's payload, typed (as a Rust handler takes it).
#[derive(serde::Serialize, serde::Deserialize)]
struct Ping {
    n: u64,
}

/// One operation of a scenario, set up. Run without boxing (no
/// allocation of the harness's own is counted).
enum Op {
    Echo(EchoClient),
    Hello(greeter::GreeterClient),
    /// The publisher and the payload it sends (made once: building it is
    /// the harness's work, not the event's).
    Event(EventPublisher, Ping),
    Headers(enoki::message::Headers),
    Gateway(axum::Router),
}

impl Op {
    async fn run(&self) {
        match self {
            Op::Echo(echo) => {
                let reply = echo.echo("Ann".into()).await.unwrap();
                assert_eq!(reply, "Ann");
            }
            Op::Hello(greeter) => {
                let reply = greeter.hello("Ann".into()).await.unwrap();
                assert_eq!(reply, "Hello, Ann!");
            }
            Op::Event(publisher, ping) => {
                let before = HANDLED.load(Ordering::Relaxed);
                publisher.dispatch("source", "ping", ping).await.unwrap();
                while HANDLED.load(Ordering::Relaxed) == before {
                    HANDLED_NOTIFY.notified().await;
                }
            }
            Op::Headers(headers) => {
                let table = enoki::__fuzz::table_from_headers(headers).unwrap();
                let back = enoki::__fuzz::headers_from_table(&table);
                assert_eq!(back.len(), headers.len());
            }
            Op::Gateway(app) => {
                use tower::ServiceExt;
                let request = axum::http::Request::get("/hello/Ann")
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), 200);
                let body = axum::body::to_bytes(response.into_body(), 1024)
                    .await
                    .unwrap();
                assert_eq!(&body[..], b"\"Hello, Ann!\"");
            }
        }
    }
}

/// Sets up `scenario` and returns one operation of it.
async fn scenario(name: &str) -> Op {
    let transport: Arc<dyn Transport> = MemoryTransport::new();
    let settings = Settings::new();
    match name {
        "rpc_echo" | "rpc_hello" => {
            let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
            runner.add(enoki::service::<Echo>());
            runner.add(enoki::service::<greeter::Greeter>());
            runner.start().await.expect("services start");
            std::mem::forget(runner);
            let rpc = ClusterRpc::connect(transport, &settings).await.unwrap();
            if name == "rpc_echo" {
                Op::Echo(EchoClient::new(&rpc))
            } else {
                Op::Hello(greeter::GreeterClient::new(&rpc))
            }
        }
        "event" => {
            let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
            runner.add(enoki::service::<Sink>());
            runner.start().await.expect("services start");
            std::mem::forget(runner);
            Op::Event(EventPublisher::new(transport, &settings), Ping { n: 1 })
        }
        "amqp_headers" => {
            let headers: enoki::message::Headers = serde_json::from_value(json!({
                "nameko.call_id_stack": ["gateway.route.0a1b2c3d", "greeter.hello.4e5f6a7b"],
                "nameko.language": "en",
                "nameko.user_id": 7,
                "nameko.auth_token": "t0k3n",
                "nameko.user_agent": "enoki-budget",
            }))
            .unwrap();
            Op::Headers(headers)
        }
        "gateway_route" => {
            let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
            runner.add(enoki::service::<greeter::Greeter>());
            runner.start().await.expect("services start");
            std::mem::forget(runner);
            let routes = enoki::gateway::RouteTable::load_dir(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("routes"),
            )
            .expect("routes load");
            let state = enoki::gateway::GatewayState::builder(transport)
                .routes(routes)
                .build()
                .await
                .unwrap();
            Op::Gateway(enoki::gateway::router(state))
        }
        other => panic!(
            "unknown scenario `{other}`; known: {}",
            SCENARIOS.join(", ")
        ),
    }
}

/// The child: sets up, warms up, runs `n` operations and then `n` more;
/// prints the allocations of the second `n`.
///
/// The runtime's clock is paused (tokio's test clock: time moves only when
/// every task waits for a timer), so timers (call timeouts, the gateway's
/// deadlines) land in the same wheel slots in every run, however slowly
/// valgrind runs the process.
fn child(name: &str, n: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let op = runtime.block_on(async {
        let op = scenario(name).await;
        for _ in 0..WARMUP {
            op.run().await;
        }
        op
    });
    first_half(&runtime, &op, n);
    let before = allocations();
    second_half(&runtime, &op, n);
    let allocations = allocations() - before;
    println!("allocations {allocations}");
    // The services are left running: the process ends here.
    std::process::exit(0);
}

/// Operations 1 to N.
#[inline(never)]
fn first_half(runtime: &tokio::runtime::Runtime, op: &Op, n: u64) {
    run_ops(runtime, op, n);
}

/// Operations N + 1 to 2N: callgrind counts only what runs inside this
/// function (`--toggle-collect`), so its count is I(2N) - I(N) of one
/// process, with set-up, warm-up, the first N and exit left out.
#[inline(never)]
fn second_half(runtime: &tokio::runtime::Runtime, op: &Op, n: u64) {
    // Not the same code as `first_half`, which the linker would fold into
    // this one (one symbol for both).
    std::hint::black_box("the counted half");
    run_ops(runtime, op, n);
}

fn run_ops(runtime: &tokio::runtime::Runtime, op: &Op, n: u64) {
    runtime.block_on(async {
        for _ in 0..n {
            op.run().await;
        }
    });
}

// ===== the parent =====

struct Run {
    instructions: Option<u64>,
    allocations: u64,
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_child(name: &str, n: u64, valgrind: bool) -> Run {
    let exe = std::env::current_exe().unwrap();
    let out_file = std::env::temp_dir().join(format!(
        "enoki-budget-{}-{name}-{n}.callgrind",
        std::process::id()
    ));
    let output = if valgrind {
        Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg("--toggle-collect=*budget::second_half*")
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(&exe)
            .args(["--child", name, &n.to_string()])
            .output()
    } else {
        Command::new(&exe)
            .args(["--child", name, &n.to_string()])
            .output()
    }
    .expect("the budget child runs");
    let _ = std::fs::remove_file(&out_file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "budget child {name} {n} failed: {stdout}\n{stderr}"
    );
    let allocations = stdout
        .lines()
        .find_map(|l| l.strip_prefix("allocations "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no allocation count from the child: {stdout}"));
    // callgrind: "==123== Collected : 456789"
    let instructions = valgrind.then(|| {
        stderr
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no instruction count from callgrind: {stderr}"))
    });
    Run {
        instructions,
        allocations,
    }
}

/// A scenario's figures per operation.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    instructions: Option<f64>,
    allocations: f64,
}

/// Rounds (child processes) per scenario: the figure is their median.
const ROUNDS: usize = 3;

fn measure(name: &str, valgrind: bool) -> Figures {
    let per = |count: u64| count as f64 / N as f64;
    let mut instructions = Vec::new();
    let mut allocations = Vec::new();
    for _ in 0..ROUNDS {
        let run = run_child(name, N, valgrind);
        if let Some(count) = run.instructions {
            instructions.push(per(count));
        }
        allocations.push(per(run.allocations));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    Figures {
        instructions: median(instructions),
        allocations: median(allocations).unwrap_or_default(),
    }
}

const BUDGET_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/budget.txt");

/// `scenario instructions allocations` lines.
fn read_budget() -> Vec<(String, f64, f64)> {
    let text = std::fs::read_to_string(BUDGET_FILE).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((
                parts.next()?.to_owned(),
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
            ))
        })
        .collect()
}

fn write_budget(figures: &[(&str, Figures)]) {
    let mut text = String::from(
        "# The per-operation budget (benches/budget.rs): scenario, instructions, allocations.\n\
         # `./scripts/budget --check` fails when instructions grow more than 2% or\n\
         # allocations by one or more; `./scripts/budget --update` rewrites this file.\n",
    );
    for (name, f) in figures {
        let instructions = f.instructions.expect("--update needs valgrind");
        text.push_str(&format!("{name} {instructions:.0} {:.2}\n", f.allocations));
    }
    std::fs::write(BUDGET_FILE, text).expect("write benches/budget.txt");
    println!("budget: wrote {BUDGET_FILE}");
}

/// The most a scenario may cost per op, whatever `benches/budget.txt`
/// says: scenario, instructions, allocations.
const TARGETS: &[(&str, f64, f64)] = &[("rpc_echo", 15_000.0, 15.0), ("event", 5_000.0, 5.0)];

/// Whether `name` is over its target (printed, if so).
fn over_target(name: &str, f: &Figures) -> bool {
    let Some(&(_, max_i, max_a)) = TARGETS.iter().find(|(n, _, _)| *n == name) else {
        return false;
    };
    let mut over = false;
    if let Some(i) = f.instructions
        && i > max_i
    {
        println!("budget: {name}: {i:.0} instructions per op, over its target of {max_i:.0}");
        over = true;
    }
    if f.allocations > max_a + 0.5 {
        println!(
            "budget: {name}: {:.2} allocations per op, over its target of {max_a:.0}",
            f.allocations
        );
        over = true;
    }
    over
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--child") {
        let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(N);
        child(&args[1], n);
        return ExitCode::SUCCESS;
    }
    let check = args.iter().any(|a| a == "--check");
    let update = args.iter().any(|a| a == "--update");
    let only: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let valgrind = valgrind_available();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !valgrind {
        println!("budget: valgrind not found: instructions skipped (allocations only)");
        if check && ci {
            eprintln!("budget: CI=true and no valgrind: the budget cannot be checked");
            return ExitCode::FAILURE;
        }
    }
    let mut figures = Vec::new();
    for name in SCENARIOS
        .iter()
        .filter(|s| only.is_empty() || only.contains(s))
    {
        let f = measure(name, valgrind);
        match f.instructions {
            Some(i) => println!(
                "budget: {name} {i:.0} instructions, {:.2} allocations per op",
                f.allocations
            ),
            None => println!(
                "budget: {name} (instructions skipped), {:.2} allocations per op",
                f.allocations
            ),
        }
        figures.push((*name, f));
    }
    if update {
        for (name, f) in &figures {
            over_target(name, f);
        }
        write_budget(&figures);
        return ExitCode::SUCCESS;
    }
    if !check {
        return ExitCode::SUCCESS;
    }
    let budget = read_budget();
    let (mut failed, mut over) = (false, false);
    for (name, f) in &figures {
        let Some((_, base_i, base_a)) = budget.iter().find(|(n, _, _)| n == name) else {
            println!("budget: {name}: not in benches/budget.txt (./scripts/budget --update)");
            failed = true;
            continue;
        };
        if let Some(i) = f.instructions {
            let growth = i / base_i - 1.0;
            if growth > 0.02 {
                println!(
                    "budget: {name}: {i:.0} instructions per op, {:+.1}% over the budget's {base_i:.0} (at most +2%)",
                    growth * 100.0
                );
                failed = true;
            } else if growth < -0.02 {
                println!(
                    "budget: {name}: {:.1}% under the budget: ./scripts/budget --update locks it in",
                    -growth * 100.0
                );
            }
        }
        if f.allocations >= base_a + 0.5 {
            println!(
                "budget: {name}: {:.2} allocations per op, the budget has {base_a:.2}",
                f.allocations
            );
            failed = true;
        }
        over |= over_target(name, f);
    }
    if over {
        println!(
            "budget: over a target (TARGETS in benches/budget.rs): --update does not move those"
        );
        return ExitCode::FAILURE;
    }
    if failed {
        println!(
            "budget: over budget; if the change is meant to cost more, run ./scripts/budget --update and commit benches/budget.txt"
        );
        ExitCode::FAILURE
    } else {
        println!("budget: within benches/budget.txt");
        ExitCode::SUCCESS
    }
}
