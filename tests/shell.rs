//! `enoki shell`: the evaluator in-process (calls, keyword arguments,
//! Python literals, `dispatch`, `context`, `timeout`, completion, hostile
//! lines), the binary from a pipe (one JSON result a line, exit 1 at the
//! first error), on a terminal (a pty: tab completion, history file), and
//! on RabbitMQ.
//!
//! Run: `cargo test --test shell`.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use enoki::describe::{DESCRIBE_METHOD, ServiceDescription};
use enoki::prelude::*;
use enoki::shell::{Reply, Shell};
use enoki::transport::MemoryTransport;
use serde_json::{Value, json};

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/clock.rs"]
mod clock;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/greeter.rs"]
mod greeter;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/listener.rs"]
mod listener;

const ENOKI: &str = env!("CARGO_BIN_EXE_enoki");

/// A service with a method of its own named `__describe__`.
#[derive(Dependencies)]
struct Shadow;

#[service(name = "shadow")]
impl Shadow {
    #[rpc]
    async fn __describe__(&self) -> Result<String, RemoteError> {
        Ok("mine".into())
    }

    #[rpc]
    async fn whoami(&self, ctx: &WorkerCtx) -> Result<Value, RemoteError> {
        Ok(Value::Object(ctx.context_data().clone()))
    }

    #[rpc]
    async fn slow(&self, secs: f64) -> Result<(), RemoteError> {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        Ok(())
    }
}

async fn start() -> (ServiceRunner, Shell) {
    let transport = MemoryTransport::new();
    let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
    runner.add(enoki::service::<greeter::Greeter>());
    runner.add(enoki::service::<listener::Listener>());
    runner.add(enoki::service::<clock::Clock>());
    runner.add(enoki::service::<Shadow>());
    runner.start().await.unwrap();
    let mut shell = Shell::connect(transport, &Settings::new()).await.unwrap();
    shell.know(runner.service_names());
    (runner, shell)
}

async fn value(shell: &mut Shell, line: &str) -> Value {
    match shell.eval(line).await {
        Ok(Reply::Value(value)) => value,
        other => panic!("{line}: {other:?}"),
    }
}

#[tokio::test]
async fn calls_take_json_and_python_literals_and_keyword_arguments() {
    let (runner, mut shell) = start().await;
    assert_eq!(
        value(&mut shell, r#"rpc.greeter.hello("Ann")"#).await,
        "Hello, Ann!"
    );
    assert_eq!(
        value(&mut shell, "rpc.greeter.hello(name='Bo')").await,
        "Hello, Bo!"
    );
    // Python's literals are JSON's.
    let err = shell.eval("rpc.greeter.hello(True)").await.unwrap_err();
    assert_eq!(err.exc_type, "IncorrectSignature", "{err}");
    assert_eq!(shell.eval("").await.unwrap(), Reply::Nothing);
    assert_eq!(shell.eval("# comment").await.unwrap(), Reply::Nothing);
    assert!(matches!(shell.eval("help").await.unwrap(), Reply::Text(t) if t.contains("dispatch(")));
    assert_eq!(shell.eval("exit").await.unwrap(), Reply::Exit);
    runner.stop().await;
}

#[tokio::test]
async fn context_and_timeout_apply_to_the_calls_that_follow() {
    let (runner, mut shell) = start().await;
    assert_eq!(value(&mut shell, "rpc.shadow.whoami()").await, json!({}));
    assert_eq!(
        value(&mut shell, "context(user_id=7, language='fr')").await,
        json!({"user_id": 7, "language": "fr"})
    );
    assert_eq!(
        value(&mut shell, "rpc.shadow.whoami()").await,
        json!({"user_id": 7, "language": "fr"})
    );
    assert_eq!(
        value(&mut shell, "context()").await,
        json!({"user_id": 7, "language": "fr"})
    );
    assert_eq!(value(&mut shell, "context(None)").await, json!({}));
    assert_eq!(value(&mut shell, "rpc.shadow.whoami()").await, json!({}));

    assert_eq!(value(&mut shell, "timeout(0.2)").await, json!(0.2));
    let err = shell.eval("rpc.shadow.slow(1)").await.unwrap_err();
    assert_eq!(err.exc_type, "RpcTimeout", "{err}");
    assert!(err.value.contains("shadow.slow"), "{err}");
    for bad in ["timeout(0)", "timeout(-1)", "timeout(1e20)"] {
        let err = shell.eval(bad).await.unwrap_err();
        assert_eq!(err.exc_type, "ValueError", "{bad}: {err}");
    }
    assert_eq!(value(&mut shell, "timeout()").await, json!(0.2));
    runner.stop().await;
}

#[tokio::test]
async fn dispatch_reaches_the_handlers() {
    let (runner, mut shell) = start().await;
    assert_eq!(
        shell
            .eval(r#"dispatch("greeter", "greeted", {"name": "Cy"})"#)
            .await
            .unwrap(),
        Reply::Nothing
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let received = value(&mut shell, "rpc.listener.received()").await;
        let names: Vec<&Value> = received
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["payload"]["name"])
            .collect();
        // One per handler type.
        if names.len() == 3 {
            assert!(names.iter().all(|n| *n == "Cy"), "{received}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "handlers never saw the event: {received}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for bad in [
        "dispatch(\"greeter\")",
        "dispatch(1, 2, 3)",
        "dispatch(\"a\", \"b\", {}, 4)",
    ] {
        let err = shell.eval(bad).await.unwrap_err();
        assert_eq!(err.exc_type, "TypeError", "{bad}: {err}");
    }
    let long = format!("dispatch(\"greeter\", \"{}\", {{}})", "x".repeat(300));
    assert_eq!(shell.eval(&long).await.unwrap_err().exc_type, "ValueError");
    runner.stop().await;
}

#[tokio::test]
async fn services_describe_themselves_and_complete() {
    let (runner, mut shell) = start().await;
    assert_eq!(
        value(&mut shell, "rpc").await,
        json!(["clock", "greeter", "listener", "shadow"])
    );
    let clock: ServiceDescription =
        serde_json::from_value(value(&mut shell, "rpc.clock").await).unwrap();
    assert_eq!(clock.service, "clock");
    assert!(clock.framework.starts_with("enoki "), "{clock:?}");
    assert_eq!(clock.rpc, ["ticks"]);
    assert_eq!(clock.timers.len(), 1);
    assert_eq!(clock.timers[0].method, "tick");
    // A method of the service's own with the reserved name wins.
    assert_eq!(
        value(&mut shell, &format!("rpc.shadow.{DESCRIBE_METHOD}()")).await,
        "mine"
    );
    let shadow = value(&mut shell, "rpc.shadow").await;
    assert_eq!(shadow["rpc"], Value::Null, "{shadow}");

    let complete = |line: &'static str| {
        let shell = &shell;
        async move { shell.complete(line, line.len()).await }
    };
    assert_eq!(
        complete("rpc.gr").await,
        (0, vec!["rpc.greeter.".to_owned()])
    );
    assert_eq!(
        complete("rpc.greeter.h").await,
        (0, vec!["rpc.greeter.hello(".to_owned()])
    );
    assert_eq!(
        complete("x = rpc.clock.").await.1,
        vec!["rpc.clock.ticks(".to_owned()]
    );
    assert_eq!(complete("con").await, (0, vec!["context(".to_owned()]));
    assert_eq!(complete("rpc.nosuch.").await.1, Vec::<String>::new());
    assert_eq!(complete("rpc.").await.1.len(), 4);
    // A cursor inside a multi-byte character is not a panic.
    assert_eq!(shell.complete("rpc.é", 5).await.0, 0);
    runner.stop().await;
}

/// Nothing typed panics the shell: every hostile line is a one-line error,
/// and the shell answers the next call.
#[tokio::test]
async fn hostile_lines_are_one_line_errors() {
    let (runner, mut shell) = start().await;
    let huge = format!("rpc.greeter.hello(\"{}\")", "x".repeat(1_000_000));
    let deep = format!("rpc.greeter.hello({})", "[".repeat(200_000));
    let cases: Vec<(&str, &str)> = vec![
        ("rpc.greeter.hello(", "SyntaxError"),
        ("rpc.greeter.hello(\"Ann\"))", "SyntaxError"),
        ("rpc.greeter.hello({\"a\": })", "SyntaxError"),
        ("rpc.greeter.hello({'a' 1})", "SyntaxError"),
        ("rpc.greeter.hello(Ann)", "SyntaxError"),
        ("rpc.greeter.hello(1e999)", "SyntaxError"),
        ("rpc.greeter.hello(\"\\ud800\")", "SyntaxError"),
        ("\"just a string\"", "SyntaxError"),
        ("rpc.greeter.hello(\"a\nb\")", "SyntaxError"),
        ("foo", "NameError"),
        ("foo.bar(1)", "NameError"),
        ("rpc.a.b.c()", "NameError"),
        ("rpc.greeter.hello", "TypeError"),
        ("dispatch", "TypeError"),
        ("rpc.greeter.nope()", "MethodNotFound"),
        ("rpc.nosvc.x()", "UnknownService"),
        ("rpc.greeter.hello(1, 2, 3)", "IncorrectSignature"),
        (&huge, "SyntaxError"),
        (&deep, "SyntaxError"),
    ];
    for (line, exc_type) in cases {
        let shown: String = line.chars().take(60).collect();
        let err = shell
            .eval(line)
            .await
            .expect_err(&format!("{shown}: not an error"));
        assert_eq!(err.exc_type, exc_type, "{shown}: {err}");
        let text = err.to_string();
        assert!(!text.contains('\n'), "{shown}: {text:?}");
        assert!(text.len() < 400, "{shown}: {} bytes of error", text.len());
    }
    assert_eq!(
        value(&mut shell, r#"rpc.greeter.hello("still here")"#).await,
        "Hello, still here!"
    );
    runner.stop().await;
}

// ===== the binary =====

fn shell_command(args: &[&str]) -> Command {
    let mut command = Command::new(ENOKI);
    command
        .arg("shell")
        .args(args)
        .env_remove("AMQP_URI")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn pipe(args: &[&str], input: &str) -> Output {
    let mut child = shell_command(args).spawn().expect("spawn enoki shell");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    // Written from a thread: a big input must not dead-lock on a full pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn piped_shell_prints_one_json_result_a_line() {
    let out = pipe(&[], "rpc.greeter.hello(\"Ann\")\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "\"Hello, Ann!\"\n");
    assert_eq!(text(&out.stderr), "");

    let script = "\
rpc.greeter.hello(name=\"Ann\")
# a comment, then a blank line

rpc.manual_service.add(a=2, b=3)
context(user_id=7)
rpc.manual_service.whoami()
rpc.manual_service.add(2, 3) # trailing comment
";
    let out = pipe(&[], script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], "Hello, Ann!");
    assert_eq!(lines[1], 5);
    assert_eq!(lines[2], json!({"user_id": 7}));
    assert_eq!(lines[3]["context_data"], json!({"user_id": 7}));
    assert_eq!(lines[4], 5);
}

#[test]
fn piped_shell_exits_1_at_the_first_error() {
    let out = pipe(
        &[],
        "rpc.greeter.hello(\"A\")\nrpc.greeter.hello(\nrpc.greeter.hello(\"never\")\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "\"Hello, A!\"\n");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("SyntaxError: unclosed `(`"), "{err}");

    for (line, prefix) in [
        ("rpc.nosvc.x()", "UnknownService: nosvc"),
        ("rpc.greeter.nope()", "MethodNotFound: "),
        ("nothing", "NameError: "),
        ("rpc.greeter.hello([[[[", "SyntaxError: "),
    ] {
        let out = pipe(&[], &format!("{line}\n"));
        assert_eq!(out.status.code(), Some(1), "{line}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with(prefix) && err.lines().count() == 1,
            "{line}: {err}"
        );
        assert!(!err.contains("panicked"), "{line}: {err}");
    }

    // A line of a megabyte is one line of error, not a crash or a hang.
    let out = pipe(
        &[],
        &format!("rpc.greeter.hello(\"{}\")\n", "x".repeat(1 << 20)),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("SyntaxError: line too long"), "{err}");
    // Not UTF-8: replaced, then a syntax error.
    let out = pipe(&[], "rpc.greeter.hello(\"\u{fffd}\n");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn embed_alone_runs_every_service_on_the_embedded_broker() {
    // Even with a (here unreachable) broker configured.
    let out = {
        let mut command = shell_command(&["--embed"]);
        command.env("AMQP_URI", "amqp://guest:guest@127.0.0.1:1/");
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"rpc\nrpc.clock.ticks()\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        json!(["clock", "greeter", "listener", "manual_service", "users"])
    );
    let out = pipe(&["--embed", "nosuch"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown service `nosuch`"));
}

/// Drives a program on a pseudo-terminal (Python's `pty` module, which
/// makes it the session's controlling terminal): each step either sends
/// bytes or waits (up to 20 s) until the terminal shows a text.
const PTY_DRIVER: &str = r#"
import json, os, pty, select, sys, time
program, steps = sys.argv[1], json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execv(program, [program, "shell"])
seen = b""
for kind, text in steps:
    data = text.encode()
    if kind == "send":
        os.write(fd, data)
        continue
    deadline = time.time() + 20
    while data not in seen:
        if time.time() > deadline:
            print("never saw %r on the terminal; it shows %r" % (text, seen))
            sys.exit(2)
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    seen = seen[seen.index(data) + len(data):] if data in seen else seen
_, status = os.waitpid(pid, 0)
sys.exit(os.WEXITSTATUS(status))
"#;

/// On a terminal (a pty): the prompt, tab completion of the service and
/// the method, the result, an error that does not end the shell, the
/// history file.
#[test]
fn terminal_shell_completes_and_keeps_history() {
    let python = std::env::var("ENOKI_PYTHON").unwrap_or_else(|_| "python3".into());
    if Command::new(&python).arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 is needed for the terminal test (its pty module) under CI=true"
        );
        println!("skipped: no python3 to drive a pty");
        return;
    }
    let dir = std::env::temp_dir().join(format!("enoki-shell-pty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let history = dir.join("history");
    let steps = json!([
        ["expect", ">>> "],
        ["send", "rpc.gre\t"],
        ["expect", "rpc.greeter."],
        ["send", "hel\t"],
        ["expect", "rpc.greeter.hello("],
        ["send", "\"Ann\")\r"],
        ["expect", "\"Hello, Ann!\""],
        ["expect", ">>> "],
        ["send", "rpc.greeter.hello(\r"],
        ["expect", "SyntaxError: unclosed `(`"],
        ["expect", ">>> "],
        ["send", "exit\r"],
    ]);
    let out = Command::new(&python)
        .args(["-c", PTY_DRIVER, ENOKI, &steps.to_string()])
        .env_remove("AMQP_URI")
        .env_remove("RUST_LOG")
        .env("ENOKI_SHELL_HISTORY", &history)
        .env("TERM", "xterm")
        .output()
        .expect("run the pty driver");
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("rpc.greeter.hello(\"Ann\")"), "{saved}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On RabbitMQ (a fresh vhost): `--embed greeter` serves greeter from the
/// shell's own process on the broker, and the shell calls it there.
#[test]
fn shell_on_rabbitmq() {
    let Some(vhost) = common::amqp::TestVhost::create() else {
        return;
    };
    let out = pipe(
        &["--broker", &vhost.uri, "--embed", "greeter"],
        "rpc.greeter.hello(\"Ann\")\nrpc.greeter\nrpc.nosvc.x()\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "\"Hello, Ann!\"");
    let description: ServiceDescription = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(description.rpc, ["hello"]);
    assert_eq!(text(&out.stderr), "UnknownService: nosvc\n");
}
