//! The `enoki` binary, run as a subprocess: bad input gives one line on
//! stderr and a non-zero exit (never a panic), `show-config` resolves
//! `${VAR:default}`, `--define`, `AMQP_URI` and `--broker` in the
//! documented order, and `run` / `call` / `dispatch` work on the embedded
//! transport and on RabbitMQ (a fresh vhost per test; skipped, with a
//! `skipped:` line, when RabbitMQ is not reachable, unless `CI=true`).
//!
//! Run: `cargo test --test cli`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::amqp::TestVhost;
use serde_json::{Value, json};

const ENOKI: &str = env!("CARGO_BIN_EXE_enoki");

/// `enoki ARGS...` with a clean environment for what it reads (no
/// `AMQP_URI`, no `RUST_LOG` inherited from the test runner) plus `env`.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(ENOKI);
    command
        .args(args)
        .env_remove("AMQP_URI")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

fn enoki_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {ENOKI}: {err}"))
}

fn enoki(args: &[&str]) -> Output {
    enoki_env(args, &[])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit status != 0, stderr exactly one line that contains every one of
/// `needles`, and no sign of a panic.
#[track_caller]
fn assert_one_line_error(output: &Output, needles: &[&str]) -> String {
    let err = stderr(output);
    let what = format!(
        "exit {:?}, stdout {:?}, stderr {err:?}",
        output.status.code(),
        stdout(output)
    );
    assert!(!output.status.success(), "expected a failure: {what}");
    assert_eq!(output.status.code(), Some(1), "exit code: {what}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr must be one line: {what}");
    let lower = err.to_lowercase();
    assert!(
        !lower.contains("panicked") && !lower.contains("backtrace"),
        "panic: {what}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "stderr should name {needle:?}: {what}"
        );
    }
    err
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("enoki-cli-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// `show-config`'s YAML, parsed.
#[track_caller]
fn show_config(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["show-config"];
    all.extend_from_slice(args);
    let output = enoki_env(&all, env);
    assert!(
        output.status.success(),
        "show-config {args:?} failed: {}",
        stderr(&output)
    );
    serde_yaml_ng::from_str(&stdout(&output)).expect("show-config prints YAML")
}

// ===== bad input =====

#[test]
fn malformed_broker_uri() {
    let out = enoki(&["call", "greeter.hello", "--broker", "nonsense"]);
    assert_one_line_error(&out, &["invalid AMQP URI", "nonsense"]);
    let out = enoki(&["call", "greeter.hello", "--broker", "http://h/"]);
    assert_one_line_error(&out, &["invalid AMQP URI"]);
    let out = enoki(&["run", "--broker", "amqp://u:hunter2@127.0.0.1:notaport/"]);
    let err = assert_one_line_error(&out, &["invalid AMQP URI", "port"]);
    assert!(!err.contains("hunter2"), "password shown: {err}");
    // A failover list names its bad entry, by position and without its
    // password, before connecting to any broker.
    let list = "amqp://u:hunter1@127.0.0.1:1//;http://u:hunter2@h2//";
    let out = enoki(&["run", "--broker", list]);
    let err = assert_one_line_error(
        &out,
        &["invalid AMQP URI", "http://u:***@h2//", "entry 2 of 2"],
    );
    assert!(!err.contains("hunter"), "password shown: {err}");
    let out = enoki_env(&["call", "greeter.hello"], &[("AMQP_URI", list)]);
    assert_one_line_error(&out, &["entry 2 of 2"]);
}

#[test]
fn a_bad_rate_limit_stops_start_up_naming_file_key_and_problem() {
    let dir = std::env::temp_dir().join(format!("enoki-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.yaml");
    std::fs::write(
        &file,
        "GATEWAY:\n  rpc:\n    rate_limit: {requests: 10, per: 0}\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let out = enoki(&["--config", &path]);
    assert_one_line_error(
        &out,
        &[
            &path,
            "GATEWAY.rpc.rate_limit",
            "`per` must be a number of seconds",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreachable_broker() {
    // Nothing listens on port 1.
    let uri = "amqp://guest:hunter2@127.0.0.1:1/";
    for args in [
        &["call", "greeter.hello", "[\"Ann\"]", "--broker", uri][..],
        &["dispatch", "greeter", "greeted", "{}", "--broker", uri],
        &["run", "--broker", uri],
    ] {
        let out = enoki(args);
        let err = assert_one_line_error(&out, &["connection refused", "127.0.0.1:1"]);
        assert!(!err.contains("hunter2"), "password shown: {err}");
    }
    // The environment variable selects the broker as well.
    let out = enoki_env(&["call", "greeter.hello"], &[("AMQP_URI", uri)]);
    assert_one_line_error(&out, &["connection refused"]);
    // A failover list tries every entry, and says why each failed.
    let list = "amqp://guest:hunter2@127.0.0.1:1/;amqp://guest:hunter3@127.0.0.1:2/";
    let out = enoki(&["run", "--broker", list]);
    let err = assert_one_line_error(
        &out,
        &[
            "any of 2 brokers",
            "127.0.0.1:1/",
            "127.0.0.1:2/",
            "connection refused",
        ],
    );
    assert!(!err.contains("hunter"), "password shown: {err}");
}

#[test]
fn refused_credentials() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let uri = format!(
        "amqp://guest:wrong-hunter2@{}/{}",
        common::amqp::broker_addr(),
        vhost.name
    );
    let out = enoki(&["call", "greeter.hello", "--broker", &uri]);
    let err = assert_one_line_error(&out, &["access refused"]);
    assert!(!err.contains("hunter2"), "password shown: {err}");
    let uri = format!(
        "amqp://guest:guest@{}/no-such-vhost",
        common::amqp::broker_addr()
    );
    let out = enoki(&["run", "--broker", &uri]);
    assert_one_line_error(&out, &["no-such-vhost"]);
}

#[test]
fn bad_config_files() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.yaml");
    let out = enoki(&["show-config", "--config", path(&missing)]);
    assert_one_line_error(&out, &["cannot read config file", "missing.yaml"]);

    let not_yaml = dir.file("not-yaml.yaml", "max_workers: [1, 2\nrpc_exchange: x\n");
    let out = enoki(&["show-config", "--config", path(&not_yaml)]);
    assert_one_line_error(&out, &["not-yaml.yaml", "not valid YAML"]);

    let not_mapping = dir.file("list.yaml", "- AMQP_URI\n- max_workers\n");
    let out = enoki(&["call", "greeter.hello", "--config", path(&not_mapping)]);
    assert_one_line_error(&out, &["list.yaml", "must be a mapping"]);

    let unknown = dir.file("typo.yaml", "AMQP_URL: amqp://localhost/\n");
    let out = enoki(&["run", "--config", path(&unknown)]);
    assert_one_line_error(&out, &["typo.yaml", "unknown key `AMQP_URL`", "AMQP_URI"]);

    let bad_value = dir.file("bad-value.yaml", "max_workers: many\n");
    let out = enoki(&["show-config", "--config", path(&bad_value)]);
    assert_one_line_error(&out, &["max_workers", "many"]);

    let out = enoki(&["show-config", "--define", "max_workrs=3"]);
    assert_one_line_error(&out, &["unknown key `max_workrs`", "max_workers"]);
}

#[test]
fn arguments_that_are_not_json() {
    let out = enoki(&["call", "greeter.hello", "[Ann]"]);
    assert_one_line_error(&out, &["ARGS_JSON is not JSON"]);
    let out = enoki(&["call", "greeter.hello", "--kwargs", "{name: Ann}"]);
    assert_one_line_error(&out, &["--kwargs is not JSON"]);
    let out = enoki(&["call", "greeter.hello", "--kwargs", "[1]"]);
    assert_one_line_error(&out, &["--kwargs must be a JSON object"]);
    let out = enoki(&["call", "greeter.hello", "--context", "user=7"]);
    assert_one_line_error(&out, &["--context is not JSON"]);
    let out = enoki(&["dispatch", "greeter", "greeted", "{name"]);
    assert_one_line_error(&out, &["PAYLOAD_JSON is not JSON"]);
    let out = enoki(&["call", "greeter.hello", "--timeout", "-1"]);
    assert_one_line_error(&out, &["--timeout"]);
}

#[test]
fn target_without_a_dot() {
    let out = enoki(&["call", "greeter"]);
    assert_one_line_error(&out, &["`greeter` is not SERVICE.METHOD"]);
    let out = enoki(&["call", "greeter."]);
    assert_one_line_error(&out, &["SERVICE.METHOD"]);
}

#[test]
fn run_unknown_service() {
    let out = enoki(&["run", "greeter", "nosvc"]);
    assert_one_line_error(&out, &["unknown service `nosvc`", "greeter"]);
}

// ===== configuration =====

#[test]
fn show_config_substitutes_and_defines() {
    let dir = TempDir::new();
    let config = dir.file(
        "config.yaml",
        "AMQP_URI: amqp://${ENOKI_CLI_USER:guest}:${ENOKI_CLI_PASS:guest}@${ENOKI_CLI_HOST:localhost}/\n\
         max_workers: ${ENOKI_CLI_WORKERS:7}\n\
         rpc_exchange: nameko-rpc\n\
         PREFETCH_COUNT: ${ENOKI_CLI_PREFETCH}\n\
         GATEWAY:\n  routes: ${ENOKI_CLI_ROUTES:[a, b]}\n",
    );
    let value = show_config(
        &[
            "--config",
            path(&config),
            "--define",
            "rpc_exchange=other-rpc",
            "-d",
            "HEARTBEAT=5",
            "--define",
            "DECLARE_EVENT_EXCHANGES",
        ],
        &[("ENOKI_CLI_USER", "ann"), ("ENOKI_CLI_HOST", "rabbit")],
    );
    assert_eq!(value["AMQP_URI"], json!("amqp://ann:guest@rabbit/"));
    assert_eq!(value["max_workers"], json!(7));
    assert_eq!(value["rpc_exchange"], json!("other-rpc"));
    assert_eq!(value["HEARTBEAT"], json!(5));
    assert_eq!(value["DECLARE_EVENT_EXCHANGES"], json!(true));
    assert_eq!(value["PREFETCH_COUNT"], Value::Null);
    assert_eq!(value["GATEWAY"], json!({"routes": ["a", "b"]}));

    let value = show_config(&["--config", path(&config)], &[("ENOKI_CLI_WORKERS", "64")]);
    assert_eq!(value["max_workers"], json!(64));
}

#[test]
fn amqp_uri_precedence() {
    // file < AMQP_URI env < --broker < --define AMQP_URI=...
    let dir = TempDir::new();
    let config = dir.file("config.yaml", "AMQP_URI: amqp://file/\n");
    let config = path(&config);
    let uri = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        show_config(&all, env)["AMQP_URI"].clone()
    };
    let env = [("AMQP_URI", "amqp://env/")];
    assert_eq!(uri(&[], &[]), json!("amqp://file/"));
    assert_eq!(uri(&[], &env), json!("amqp://env/"));
    assert_eq!(uri(&[], &[("AMQP_URI", "")]), json!("amqp://file/"));
    assert_eq!(
        uri(&["--broker", "amqp://flag/"], &env),
        json!("amqp://flag/")
    );
    assert_eq!(
        uri(
            &[
                "--broker",
                "amqp://flag/",
                "--define",
                "AMQP_URI=amqp://define/"
            ],
            &env
        ),
        json!("amqp://define/")
    );
    // Without a file, the environment variable alone.
    assert_eq!(show_config(&[], &env)["AMQP_URI"], json!("amqp://env/"));
    // The precedence is documented in --help.
    let help = stdout(&enoki(&["--help"]));
    assert!(
        help.contains("AMQP_URI environment variable") && help.contains("--define KEY=VALUE"),
        "{help}"
    );
}

#[test]
fn show_config_all_lists_every_key_from_the_table() {
    let out = enoki(&[
        "show-config",
        "--all",
        "--define",
        "max_workers=32",
        "--define",
        "STRIPE_KEY=x",
    ]);
    // STRIPE_KEY is not a key of this binary: refused, naming it.
    assert_one_line_error(&out, &["unknown key `STRIPE_KEY`"]);

    let out = enoki(&["show-config", "--all", "--define", "max_workers=32"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Every key, with its meaning as a comment, and its value or default.
    for key in enoki::config::KEYS {
        assert!(
            text.contains(&format!("\n{}:", key.name))
                || text.starts_with(&format!("# {}", key.doc)),
            "{} missing from:\n{text}",
            key.name
        );
        assert!(
            text.contains(key.doc),
            "{} has no comment in:\n{text}",
            key.name
        );
    }
    let yaml: Value = serde_yaml_ng::from_str(&text).expect("show-config --all prints YAML");
    assert_eq!(yaml["max_workers"], json!(32));
    assert_eq!(yaml["rpc_exchange"], json!("nameko-rpc"));
    assert_eq!(yaml["HEARTBEAT"], json!(60));
    assert_eq!(yaml["AMQP_URI"], Value::Null);
    assert_eq!(yaml["RPC_REPLY_QUEUE"], json!("transient"));
    // Without --all, only what was set.
    let plain = show_config(&["--define", "max_workers=32"], &[]);
    assert_eq!(plain, json!({ "max_workers": 32 }));
}

#[test]
fn a_value_of_the_wrong_type_names_the_key() {
    for (define, key) in [
        ("max_workers=lots", "max_workers"),
        ("HEARTBEAT=[1]", "HEARTBEAT"),
        ("GRACE_PERIOD=soon", "GRACE_PERIOD"),
        ("DECLARE_EVENT_EXCHANGES=maybe", "DECLARE_EVENT_EXCHANGES"),
        ("GATEWAY=[1, 2]", "GATEWAY"),
        ("RPC_REPLY_QUEUE=exclusive", "RPC_REPLY_QUEUE"),
    ] {
        let out = enoki(&["show-config", "--define", define]);
        assert_one_line_error(&out, &[&format!("`{key}`")]);
    }
}

// ===== the embedded transport =====

#[test]
fn call_on_the_embedded_transport() {
    let out = enoki(&["call", "greeter.hello", "[\"Ann\"]"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "\"Hello, Ann!\"");

    let out = enoki(&["call", "greeter.hello", "--kwargs", "{\"name\": \"Bo\"}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "\"Hello, Bo!\"");

    let out = enoki(&["call", "greeter.nosuch"]);
    assert_one_line_error(&out, &["MethodNotFound: nosuch"]);
    let out = enoki(&["call", "nosvc.x"]);
    assert_one_line_error(&out, &["UnknownService: nosvc"]);

    let out = enoki(&["dispatch", "greeter", "greeted", "{\"name\": \"Zed\"}"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

// ===== RabbitMQ =====

/// A child process killed (if still running) on drop, so a failing test
/// leaves nothing behind.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `enoki ARGS...` until it succeeds, returning its output.
#[track_caller]
fn poll_until_ok(args: &[&str], deadline: Duration, run: &Running) -> Output {
    let start = Instant::now();
    loop {
        let out = enoki(args);
        if out.status.success() {
            return out;
        }
        assert!(
            start.elapsed() < deadline,
            "`enoki {args:?}` kept failing for {deadline:?}; last stderr {:?}; run log:\n{}",
            stderr(&out),
            run.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn run_call_dispatch_on_rabbitmq() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let uri = vhost.uri.as_str();
    let dir = TempDir::new();
    let log = dir.0.join("run.log");
    // The `#[http]` routes of `users` on a port of the test's own.
    let web = ["--define", "WEB_SERVER_ADDRESS=127.0.0.1:0"];
    let child = command(&["run", "--broker", uri, web[0], web[1]], &[])
        .stdout(std::fs::File::create(dir.0.join("run.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn enoki run");
    let mut run = Running { child, log };

    // The services are up once greeter answers.
    let out = poll_until_ok(
        &[
            "call",
            "greeter.hello",
            "[\"Ann\"]",
            "--broker",
            uri,
            "--timeout",
            "5",
        ],
        Duration::from_secs(30),
        &run,
    );
    assert_eq!(stdout(&out).trim(), "\"Hello, Ann!\"");

    // A remote error, and a service nobody runs.
    let out = enoki(&["call", "greeter.nosuch", "--broker", uri]);
    assert_one_line_error(&out, &["MethodNotFound: nosuch"]);
    assert!(stdout(&out).is_empty());
    let out = enoki(&["call", "nosvc.x", "--broker", uri]);
    assert_one_line_error(&out, &["UnknownService: nosvc"]);

    // An event reaches the listener's three handler types.
    let out = enoki(&[
        "dispatch",
        "greeter",
        "greeted",
        "{\"name\":\"Zed\"}",
        "--broker",
        uri,
    ]);
    assert!(out.status.success(), "dispatch: {}", stderr(&out));
    let start = Instant::now();
    loop {
        let out = enoki(&["call", "listener.received", "--broker", uri]);
        assert!(out.status.success(), "listener.received: {}", stderr(&out));
        let received: Value = serde_json::from_str(&stdout(&out)).expect("JSON result");
        let mut types: Vec<String> = received
            .as_array()
            .expect("a list")
            .iter()
            .filter(|event| event["payload"] == json!({"name": "Zed"}))
            .map(|event| {
                event["handler_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        types.sort();
        if types == ["broadcast", "service_pool", "singleton"] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the Zed event reached {types:?}; received {received}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM: a graceful stop, exit 0.
    let pid = run.child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "enoki run did not exit within 10 s of SIGTERM; log:\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "enoki run exited with {status}; log:\n{}",
        run.log()
    );
    let log = run.log();
    assert!(!log.to_lowercase().contains("panicked"), "{log}");

    // greeter's durable request queue outlives it: a call is routed, but
    // nobody answers.
    let out = enoki(&[
        "call",
        "greeter.hello",
        "[\"Ann\"]",
        "--broker",
        uri,
        "--timeout",
        "0.5",
    ]);
    assert_one_line_error(&out, &["RpcTimeout: ", "greeter.hello"]);
}

// ===== the gateway, the default command =====

/// Plain `enoki --listen ADDR`, started in `cwd` with its stderr in `log`.
fn start_gateway(cwd: &Path, log: &Path, extra: &[&str]) -> (Child, String) {
    common::binary::start_gateway(cwd, std::fs::File::create(log).unwrap().into(), extra)
}

/// One bodiless HTTP/1.1 request, the whole response as text.
fn http(listen: &str, method: &str, path: &str) -> String {
    common::binary::http(listen, method, path, "")
}

/// SIGTERM, then the exit status (within 10 s).
fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "gateway did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Plain `enoki --listen ADDR` runs the gateway with the example services
/// embedded, prints the URL to open, serves `GET /hello/{name}` from the
/// checkout's `routes/` (and says so), and stops gracefully (exit 0) on
/// SIGTERM.
#[test]
fn plain_enoki_runs_the_gateway_embedded() {
    let log = std::env::temp_dir().join(format!("enoki-cli-gw-{}.log", std::process::id()));
    let (child, listen) = start_gateway(Path::new(env!("CARGO_MANIFEST_DIR")), &log, &[]);
    let response = http(&listen, "GET", "/hello/Ann");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("\"Hello, Ann!\""), "{response}");
    let status = terminate(child);
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let loaded = text
        .lines()
        .find(|line| line.contains("loaded route files"))
        .unwrap_or_else(|| panic!("no route log line in:\n{text}"));
    assert!(loaded.contains("routes/examples.yaml"), "{loaded}");
    let _ = std::fs::remove_file(&log);
}

/// Started outside the checkout (no `./routes`), `enoki` serves the
/// example routes built into the binary and logs that it does; a
/// `--routes DIR` that does not exist stops start-up with one line.
#[test]
fn enoki_serves_the_built_in_routes_from_anywhere() {
    let dir = std::env::temp_dir().join(format!("enoki-cli-anywhere-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("stderr.log");
    let (child, listen) = start_gateway(&dir, &log, &[]);
    let hello = http(&listen, "GET", "/hello/Ann");
    assert!(hello.starts_with("HTTP/1.1 200"), "{hello}");
    assert!(hello.ends_with("\"Hello, Ann!\""), "{hello}");
    let add = http(&listen, "GET", "/add/2/3");
    assert!(add.starts_with("HTTP/1.1 200"), "{add}");
    assert!(add.ends_with("5"), "{add}");
    // The built-in page is served too.
    let page = http(&listen, "GET", "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let status = terminate(child);
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|line| line.contains("serving the built-in routes"))
        .unwrap_or_else(|| panic!("no built-in routes log line in:\n{text}"));
    assert!(line.contains("built-in routes/examples.yaml"), "{line}");

    let missing = dir.join("no-such-routes");
    let out = command(
        &["--routes", path(&missing), "--listen", "127.0.0.1:0"],
        &[],
    )
    .current_dir(&dir)
    .output()
    .unwrap();
    assert_one_line_error(&out, &["--routes", "no such directory"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ===== dead-letter queues =====

#[test]
fn dlq_needs_a_broker_and_a_bounded_batch() {
    let out = enoki(&["dlq", "list", "rpc-greeter"]);
    assert_one_line_error(&out, &["works on a broker"]);
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let out = enoki(&["dlq", "list", "rpc-nobody", "--broker", &vhost.uri]);
    assert_one_line_error(&out, &["rpc-nobody.dlq"]);
    let out = enoki(&[
        "dlq",
        "replay",
        "rpc-nobody",
        "--limit",
        "0",
        "--broker",
        &vhost.uri,
    ]);
    assert_one_line_error(&out, &["1 to 10000"]);
}

/// `enoki dlq list` prints a dead letter as JSON and leaves it; `enoki dlq
/// replay` sends it back to its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_lists_and_replays_dead_letters() {
    use enoki::transport::{AmqpOptions, AmqpTransport, PublishOptions, QueueSpec, Transport};
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let transport = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
        .await
        .unwrap();
    for queue in ["work", "work.dlq"] {
        transport
            .declare_queue(&QueueSpec::durable(queue))
            .await
            .unwrap();
    }
    let mut headers = serde_json::Map::new();
    headers.insert(
        "x-death".into(),
        json!([{"count": 3, "reason": "delivery_limit", "queue": "work", "exchange": "jobs.events", "routing-keys": ["job"]}]),
    );
    let letter = enoki::message::Message::json(&br#"{"job": 1}"#[..]).with_headers(headers);
    transport
        .publish("", "work.dlq", letter, PublishOptions { mandatory: true })
        .await
        .unwrap();
    let uri = vhost.uri.clone();
    let run = move |args: &'static [&'static str]| {
        let uri = uri.clone();
        tokio::task::spawn_blocking(move || {
            let mut all = args.to_vec();
            all.extend(["--broker", &uri]);
            enoki(&all)
        })
    };
    for _ in 0..2 {
        let out = run(&["dlq", "list", "work"]).await.unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let lines: Vec<Value> = stdout(&out)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        assert_eq!(
            lines,
            [json!({
                "queue": "work",
                "reason": "delivery_limit",
                "count": 3,
                "exchange": "jobs.events",
                "routing_key": "job",
                "body": "{\"job\": 1}",
            })]
        );
    }
    let out = run(&["dlq", "replay", "work.dlq"]).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("replayed 1 dead letter(s)"),
        "{}",
        stdout(&out)
    );
    let counts = vhost.list_queues(&["name", "messages"]);
    let count = |name: &str| {
        counts
            .lines()
            .find_map(|line| {
                let (n, c) = line.split_once('\t')?;
                (n == name).then(|| c.trim().to_owned())
            })
            .unwrap_or_default()
    };
    assert_eq!(
        (count("work"), count("work.dlq")),
        ("1".into(), "0".into()),
        "{counts}"
    );
    transport.close().await;
}

/// `enoki run --metrics ADDR` prints where its metrics are and serves
/// them: every service's `max_workers` and entrypoints, and the clock's
/// ticks counted as they happen.
#[test]
fn run_serves_service_metrics() {
    let listen = common::binary::free_addr();
    let mut child = Command::new(common::binary::ENOKI)
        .args(["run", "--metrics", &listen])
        .env_remove("AMQP_URI")
        .env_remove("RUST_LOG")
        .env_remove("DB_URIS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let printed: Vec<String> = (0..2).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(
        printed.contains(&format!("enoki: metrics at http://{listen}/metrics")),
        "{printed:?}"
    );
    let start = Instant::now();
    let text = loop {
        let response = http(&listen, "GET", "/metrics");
        let ticks = response.lines().find_map(|line| {
            line.strip_prefix(
                r#"enoki_entrypoint_handled_total{service="clock",entrypoint="tick",outcome="ok"} "#,
            )?
            .parse::<f64>()
            .ok()
        });
        if ticks.is_some_and(|n| n >= 1.0) {
            break response;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{response}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for wants in [
        r#"enoki_max_workers{service="greeter"} 10"#,
        r#"enoki_entrypoint_handled_total{service="greeter",entrypoint="hello",outcome="ok"} 0"#,
        r#"enoki_queue_messages{service="greeter",queue="rpc-greeter"} 0"#,
    ] {
        assert!(text.contains(wants), "{wants} not in {text}");
    }
    let status = terminate(child);
    assert!(status.success(), "{status:?}");
}

#[test]
fn asyncapi_prints_the_services_contracts() {
    let out = enoki(&["asyncapi", "greeter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["channels"]["rpc-greeter"]["address"], "rpc-greeter");
    assert_eq!(doc["operations"]["greeter_hello"]["action"], "receive");
    assert!(
        doc["operations"]["listener_on_greeted_pool"].is_null(),
        "only the services asked for"
    );
    // The RPC exchange comes from the settings.
    let out = enoki(&["asyncapi", "--define", "rpc_exchange=other-rpc"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    let description = doc["channels"]["rpc-greeter"]["description"]
        .as_str()
        .unwrap();
    assert!(description.contains("`other-rpc`"), "{description}");
    assert!(doc["operations"]["listener_on_greeted_pool"].is_object());
    // An unknown service is named.
    assert_one_line_error(&enoki(&["asyncapi", "greeterr"]), &["greeterr"]);
}

/// A malformed OTLP endpoint stops start-up naming the variable; with none,
/// nothing is exported and the command runs as always.
#[cfg(feature = "otel")]
#[test]
fn a_bad_otlp_endpoint_stops_start_up_naming_the_variable() {
    for bad in ["localhost:4318", "ftp://collector/", "not a url"] {
        let out = enoki_env(&["show-config"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]);
        assert_one_line_error(&out, &["OTEL_EXPORTER_OTLP_ENDPOINT", "URL"]);
    }
    let out = enoki_env(&["show-config"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]);
    assert!(out.status.success(), "{}", stderr(&out));
}
