//! Helpers for `tests/interop.rs`: the nameko venv, a per-test vhost and
//! transport, nameko service processes (killed on drop), Python client
//! scripts, and polling. Shared with `tests/tracing_nameko.rs`, which
//! uses part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use enoki::error::Error;
use enoki::prelude::*;
use enoki::transport::{AmqpOptions, AmqpTransport, Transport};
use serde_json::{Map, Value, json};

use crate::common::amqp::TestVhost;

/// How long anything may take to become true (a nameko process starting,
/// events arriving) before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(45);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Prints why the test is skipped, or panics under `CI=true`.
fn skip(why: &str) {
    if in_ci() {
        panic!("{why} (CI=true: the interop tests must run)");
    }
    println!("skipped: {why}");
    eprintln!("skipped: {why}");
}

/// The directory of the Python services and scripts.
pub(crate) fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The venv python with nameko 2.14.1: `ENOKI_PYTHON`, else what
/// `scripts/venv` prints (it creates the venv once). Looked up once per
/// test binary.
fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        if let Some(path) = std::env::var_os("ENOKI_PYTHON").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return if path.exists() {
                Ok(path)
            } else {
                Err(format!("ENOKI_PYTHON={} does not exist", path.display()))
            };
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/venv");
        let output = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|err| format!("cannot run {}: {err}", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} failed ({}): no nameko venv",
                script.display(),
                output.status
            ));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if path.exists() {
            Ok(path)
        } else {
            Err(format!(
                "scripts/venv printed {}, which does not exist",
                path.display()
            ))
        }
    });
    match found {
        Ok(path) => Some(path.clone()),
        Err(why) => {
            skip(&format!("nameko venv unavailable: {why}"));
            None
        }
    }
}

/// One interop test's world: a fresh vhost, the venv python, an enoki
/// transport on the vhost, and a scratch directory.
pub(crate) struct Interop {
    pub(crate) vhost: TestVhost,
    pub(crate) python: PathBuf,
    pub(crate) transport: Arc<AmqpTransport>,
    more_transports: parking_lot::Mutex<Vec<Arc<AmqpTransport>>>,
    scratch: PathBuf,
}

impl Interop {
    /// Everything a test needs, or `None` (after saying why) when RabbitMQ
    /// or the venv is unavailable and `CI` is not `true`.
    pub(crate) async fn setup() -> Option<Interop> {
        let python = python()?;
        let vhost = TestVhost::create()?;
        let transport = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
            .await
            .expect("connect to the test vhost");
        let scratch = std::env::temp_dir().join(format!("{}-files", vhost.name));
        std::fs::create_dir_all(&scratch).expect("create the scratch directory");
        Some(Interop {
            vhost,
            python,
            transport,
            more_transports: Default::default(),
            scratch,
        })
    }

    /// A second, independent connection to the vhost (a second "instance").
    pub(crate) async fn connect_again(&self) -> Arc<AmqpTransport> {
        let transport = AmqpTransport::connect(&self.vhost.uri, AmqpOptions::default())
            .await
            .expect("connect to the test vhost");
        self.more_transports.lock().push(transport.clone());
        transport
    }

    /// Closes the enoki connections (before the test's runtime goes).
    pub(crate) async fn finish(self) {
        let more = std::mem::take(&mut *self.more_transports.lock());
        for transport in more.iter().chain([&self.transport]) {
            transport.close().await;
        }
    }

    /// A file in this test's scratch directory.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.scratch.join(name)
    }

    /// Starts `python -m nameko run services:<class>... --broker <vhost uri>`
    /// as instance `instance`; its event handlers write to
    /// `<scratch>/<instance>.jsonl` ([`NamekoProcess::events`]).
    pub(crate) fn nameko(&self, instance: &str, classes: &[&str]) -> NamekoProcess {
        let log = self.file(&format!("{instance}.log"));
        let out = self.file(&format!("{instance}.jsonl"));
        let log_file = File::create(&log).expect("create the nameko log");
        let mut command = Command::new(&self.python);
        command
            .args(["-m", "nameko", "run"])
            .args(classes.iter().map(|class| format!("services:{class}")))
            .args(["--broker", &self.vhost.uri])
            .current_dir(py_dir())
            .env("INTEROP_INSTANCE", instance)
            .env("INTEROP_OUT", &out)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start nameko run {classes:?}: {err}"));
        NamekoProcess {
            child,
            instance: instance.to_owned(),
            log,
            out,
        }
    }

    /// Runs `client.py <uri> <scenario> <args as JSON>...` and returns the
    /// JSON it prints. Panics (with its stderr) if it fails.
    pub(crate) async fn client(&self, scenario: &str, args: &[Value]) -> Value {
        let mut command = tokio::process::Command::new(&self.python);
        command
            .arg("client.py")
            .arg(&self.vhost.uri)
            .arg(scenario)
            .args(args.iter().map(Value::to_string))
            .current_dir(py_dir())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(90), command.output())
            .await
            .unwrap_or_else(|_| panic!("client.py {scenario} did not finish"))
            .unwrap_or_else(|err| panic!("cannot run client.py {scenario}: {err}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "client.py {scenario} failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|err| panic!("client.py {scenario} printed {stdout:?}: {err}"))
    }

    /// A standalone enoki client with `user_id`/`language` context data.
    pub(crate) async fn rpc(&self, timeout: Duration) -> ClusterRpc {
        self.rpc_with(timeout, &Settings::new()).await
    }

    /// The same, with these settings (`RPC_REPLY_QUEUE`, ...).
    pub(crate) async fn rpc_with(&self, timeout: Duration, settings: &Settings) -> ClusterRpc {
        ClusterRpc::builder(self.transport.clone())
            .settings(settings)
            .context_data(context_data())
            .timeout(timeout)
            .connect()
            .await
            .expect("enoki ClusterRpc connects")
    }

    /// Starts a runner with these services on `transport`.
    pub(crate) async fn runner(
        &self,
        transport: Arc<AmqpTransport>,
        services: impl IntoIterator<Item = enoki::ServiceDef>,
    ) -> ServiceRunner {
        self.runner_with(transport, Settings::new(), services).await
    }

    /// The same, with these settings.
    pub(crate) async fn runner_with(
        &self,
        transport: Arc<AmqpTransport>,
        settings: Settings,
        services: impl IntoIterator<Item = enoki::ServiceDef>,
    ) -> ServiceRunner {
        let mut runner = ServiceRunner::new(transport, settings);
        for def in services {
            runner.add(def);
        }
        runner.start().await.expect("enoki services start");
        runner
    }
}

impl Drop for Interop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// The context data both sides' clients send (the same as
/// `CONTEXT` in `client.py`); non-ASCII on purpose.
pub(crate) fn context_data() -> Map<String, Value> {
    json!({ "user_id": 42, "language": "en-gb", "user_agent": "t\u{e9}st/1.0 \u{1f980}" })
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// A `nameko run` process; killed (SIGKILL) when dropped.
pub(crate) struct NamekoProcess {
    child: Child,
    instance: String,
    log: PathBuf,
    out: PathBuf,
}

impl NamekoProcess {
    /// The instance name (what its `ping` answers).
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// What the process printed so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub(crate) fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "nameko instance {} exited ({status}):\n{}",
                self.instance,
                self.log()
            );
        }
    }

    /// The events its handlers recorded, one JSON object each.
    pub(crate) fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("an event line is JSON"))
            .collect()
    }
}

impl Drop for NamekoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `<service>.ping()` until every one of `processes` has answered
/// (instances of one service compete for its queue, so this also proves
/// they all consume). Panics, with the logs, at the deadline or when a
/// process dies.
pub(crate) async fn wait_ready(
    rpc: &ClusterRpc,
    service: &str,
    processes: &mut [&mut NamekoProcess],
) {
    let rpc = rpc.with_timeout(Duration::from_secs(2));
    let want: BTreeSet<String> = processes.iter().map(|p| p.instance().to_owned()).collect();
    let mut seen = BTreeSet::new();
    let start = Instant::now();
    while !want.is_subset(&seen) {
        for process in processes.iter_mut() {
            process.assert_alive();
        }
        if start.elapsed() > DEADLINE {
            let logs: Vec<String> = processes.iter().map(|p| p.log()).collect();
            panic!(
                "{service}: only {seen:?} of {want:?} answered ping within {DEADLINE:?}\n{}",
                logs.join("\n----\n")
            );
        }
        match rpc.call(service, "ping", json!([]), Map::new()).await {
            Ok(Value::String(who)) => {
                seen.insert(who);
            }
            Ok(other) => panic!("{service}.ping answered {other}"),
            Err(Error::UnknownService(_) | Error::RpcTimeout { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{service}.ping failed: {err:?}"),
        }
    }
}

/// Polls `check` every 100 ms until it returns true; panics with
/// `what()` at the deadline.
pub(crate) async fn eventually(mut check: impl FnMut() -> bool, what: impl Fn() -> String) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < DEADLINE,
            "not within {DEADLINE:?}: {}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `stack` is exactly the call ids `prefixes` (each `<prefix><uuid4>`).
pub(crate) fn assert_stack(stack: &Value, prefixes: &[&str]) {
    let entries: Vec<&str> = stack
        .as_array()
        .unwrap_or_else(|| panic!("call_id_stack is not an array: {stack}"))
        .iter()
        .map(|entry| entry.as_str().expect("call ids are strings"))
        .collect();
    assert_eq!(
        entries.len(),
        prefixes.len(),
        "call_id_stack {entries:?} should be {prefixes:?}<uuid>"
    );
    for (entry, prefix) in entries.iter().zip(prefixes) {
        let uuid = entry
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("call_id_stack {entries:?}: {entry} should start {prefix}"));
        assert!(
            uuid::Uuid::parse_str(uuid).is_ok(),
            "call_id_stack {entries:?}: {entry} should end with a uuid"
        );
    }
}
