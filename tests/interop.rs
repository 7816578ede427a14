//! Wire compatibility with real Python nameko 2.14.1, both directions, on
//! RabbitMQ (one fresh vhost per test).
//!
//! Covered:
//! - RPC, Python `ClusterRpcProxy` → enoki service: positional, keyword and
//!   mixed arguments, defaults, results; a custom error arriving as
//!   `RemoteError` (`exc_type`, `value`); `MethodNotFound` and
//!   `IncorrectSignature` arriving as those nameko classes, with Python's
//!   messages; context data (`user_id`, `language`) and the call-id stack
//!   (`standalone_rpc_proxy.call.<uuid>`, then the enoki worker's id).
//! - RPC, enoki `ClusterRpc` → Python service: results, a user exception
//!   (`exc_type`/`exc_path`/`exc_args`/`value`), `MethodNotFound`,
//!   `IncorrectSignature`, `UnknownService`, `RpcTimeout`, context data.
//! - Nested calls through `RpcProxy` both ways (Python → enoki → Python →
//!   enoki ...), context data and a call-id stack growing through both.
//! - Events both ways for service-pool, singleton and broadcast handlers:
//!   Python standalone dispatcher and `EventDispatcher` → two enoki
//!   instances; enoki `EventPublisher` and `Dispatcher` → two nameko
//!   processes. Broadcast reaches every instance, service pool and singleton
//!   deliver each event once in total, shared by both instances.
//! - One Python and one enoki instance of the same service on one
//!   `rpc-<service>` queue: both serve, every caller gets its own replies.
//! - Exchanges and queues declared by Python and then redeclared by enoki,
//!   and the reverse: no 406 on either side. With `RPC_REPLY_QUEUE:
//!   durable` enoki's reply queues are declared exactly as nameko's; by
//!   default they differ only in not being durable, and Python services
//!   answer both.
//!
//! Run with `cargo test --test interop` (`./scripts/test` runs it too). It
//! needs RabbitMQ on 127.0.0.1:5672 (guest/guest, `rabbitmqctl` on the path)
//! and the nameko venv (`ENOKI_PYTHON`, else `scripts/venv` creates it).
//! Without them each test prints `skipped: ...` and passes, unless
//! `CI=true`, where it fails. The Python side is `tests/interop/services.py`
//! (run with `nameko run`) and `tests/interop/client.py`.
#![cfg(feature = "amqp")]

mod common;
#[path = "interop/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enoki::error::Error;
use enoki::prelude::*;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use support::{Interop, NamekoProcess, assert_stack, eventually, wait_ready};

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

// ===== enoki services =====

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct EnokiFailure(String);

fn describe(ctx: &WorkerCtx) -> Value {
    json!({ "call_id_stack": ctx.call_id_stack(), "data": ctx.context_data() })
}

/// The enoki service Python calls, and that calls Python.
#[derive(Dependencies)]
struct EnokiSvc {
    #[dependency(RpcProxy)]
    rpc: ClusterRpc,
    #[dependency(EventDispatcher)]
    dispatch: Dispatcher,
}

#[service(name = "enokisvc")]
impl EnokiSvc {
    #[rpc]
    async fn ping(&self) -> Result<String, RemoteError> {
        Ok("enoki".into())
    }

    #[rpc]
    async fn add(&self, a: i64, b: Option<i64>) -> Result<i64, RemoteError> {
        Ok(a + b.unwrap_or(0))
    }

    #[rpc]
    async fn greet(&self, name: String, greeting: Option<String>) -> Result<String, RemoteError> {
        Ok(format!(
            "{}, {name}!",
            greeting.unwrap_or_else(|| "Hello".into())
        ))
    }

    #[rpc]
    async fn echo(&self, value: Value) -> Result<Value, RemoteError> {
        Ok(value)
    }

    #[rpc]
    async fn fail(&self, message: String) -> Result<(), EnokiFailure> {
        Err(EnokiFailure(message))
    }

    #[rpc]
    async fn context(&self, ctx: &WorkerCtx) -> Result<Value, RemoteError> {
        Ok(describe(ctx))
    }

    /// Calls `<service>.<method>()` (default `pysvc.context`) through this
    /// worker's `RpcProxy`.
    #[rpc]
    async fn relay(
        &self,
        service: Option<String>,
        method: Option<String>,
        ctx: &WorkerCtx,
    ) -> Result<Value, RemoteError> {
        let service = service.unwrap_or_else(|| "pysvc".into());
        let method = method.unwrap_or_else(|| "context".into());
        let inner = self.rpc.service(&service).call(&method, json!([])).await?;
        Ok(json!({ "here": describe(ctx), "inner": inner }))
    }

    #[rpc]
    async fn emit(&self, event_type: String, payload: Value) -> Result<(), RemoteError> {
        self.dispatch.emit(&event_type, payload).await?;
        Ok(())
    }
}

/// Where an enoki listener instance records the events it handled.
#[derive(Debug, Clone, Default)]
struct Sink(Arc<Mutex<Vec<Value>>>);

impl Sink {
    fn record(&self, handler: HandlerType, payload: Value, ctx: &WorkerCtx) {
        let mut line = describe(ctx);
        line["handler"] = json!(handler.as_str());
        line["payload"] = payload;
        self.0.lock().push(line);
    }

    fn events(&self) -> Vec<Value> {
        self.0.lock().clone()
    }
}

#[derive(Debug, Default)]
struct SinkProvider(Sink);

impl DependencyProvider for SinkProvider {
    type Dependency = Sink;

    fn get_dependency(&self, _worker: &WorkerCtx) -> Sink {
        self.0.clone()
    }
}

/// Handles Python's `pysvc` `evt` events in all three ways.
#[derive(Dependencies)]
struct EnokiListener {
    #[dependency(SinkProvider)]
    sink: Sink,
}

#[service(name = "enokilistener")]
impl EnokiListener {
    #[event_handler("pysvc", "evt")]
    async fn on_pool(&self, payload: Value, ctx: &WorkerCtx) -> Result<(), RemoteError> {
        self.sink.record(HandlerType::ServicePool, payload, ctx);
        Ok(())
    }

    #[event_handler("pysvc", "evt", handler_type = singleton)]
    async fn on_singleton(&self, payload: Value, ctx: &WorkerCtx) -> Result<(), RemoteError> {
        self.sink.record(HandlerType::Singleton, payload, ctx);
        Ok(())
    }

    #[event_handler("pysvc", "evt", handler_type = broadcast)]
    async fn on_broadcast(&self, payload: Value, ctx: &WorkerCtx) -> Result<(), RemoteError> {
        self.sink.record(HandlerType::Broadcast, payload, ctx);
        Ok(())
    }
}

/// A listener instance with its own sink.
fn listener(sink: &Sink) -> enoki::ServiceDef {
    let mut def = enoki::service::<EnokiListener>();
    def.replace_dependency("sink", SinkProvider(sink.clone()))
        .expect("EnokiListener has a `sink` dependency");
    def
}

/// The enoki half of service `shared` (the Python half is `SharedPy`).
#[derive(Dependencies)]
struct EnokiShared;

#[service(name = "shared")]
impl EnokiShared {
    #[rpc]
    async fn ping(&self) -> Result<String, RemoteError> {
        Ok("enoki".into())
    }

    #[rpc]
    async fn who(&self, n: u64) -> Result<Value, RemoteError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(json!({ "n": n, "by": "enoki" }))
    }
}

/// enoki's twin of Python's `pysvc`: same name, same declarations
/// (`rpc-pysvc`, `pysvc.events`, a reply queue).
#[derive(Dependencies)]
struct PysvcTwin {
    #[dependency(RpcProxy)]
    _rpc: ClusterRpc,
    #[dependency(EventDispatcher)]
    _dispatch: Dispatcher,
}

#[service(name = "pysvc")]
impl PysvcTwin {
    #[rpc]
    async fn ping(&self) -> Result<String, RemoteError> {
        Ok("enoki".into())
    }
}

/// enoki's twin of Python's `pylistener`: the same event queues.
#[derive(Dependencies)]
struct PylistenerTwin;

#[service(name = "pylistener")]
impl PylistenerTwin {
    #[rpc]
    async fn ping(&self) -> Result<String, RemoteError> {
        Ok("enoki".into())
    }

    #[event_handler("enokisvc", "evt")]
    async fn on_pool(&self, _payload: Value) -> Result<(), RemoteError> {
        Ok(())
    }

    #[event_handler("enokisvc", "evt", handler_type = singleton)]
    async fn on_singleton(&self, _payload: Value) -> Result<(), RemoteError> {
        Ok(())
    }

    #[event_handler("enokisvc", "evt", handler_type = broadcast)]
    async fn on_broadcast(&self, _payload: Value) -> Result<(), RemoteError> {
        Ok(())
    }
}

// ===== helpers =====

fn kwargs(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("kwargs are an object")
}

fn remote(result: enoki::Result<Value>) -> RemoteError {
    match result {
        Err(Error::Remote(remote)) => remote,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

/// Events of one handler type.
fn of_type<'a>(events: &'a [Value], handler: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["handler"] == handler).collect()
}

/// The `(via, n)` of each event, sorted, to compare delivered sets.
fn keys<'a>(events: impl IntoIterator<Item = &'a Value>) -> Vec<(String, u64)> {
    let mut keys: Vec<(String, u64)> = events
        .into_iter()
        .map(|e| {
            (
                e["payload"]["via"].as_str().unwrap_or_default().to_owned(),
                e["payload"]["n"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// The `(via, n)` keys of `count` events sent each way.
fn expected_keys(vias: [&str; 2], count: u64) -> Vec<(String, u64)> {
    let mut keys: Vec<(String, u64)> = vias
        .iter()
        .flat_map(|via| (0..count).map(move |n| ((*via).to_owned(), n)))
        .collect();
    keys.sort();
    keys
}

/// Checks the events that `count` dispatches each way (`vias`) should have
/// produced at two instances: broadcast at each, service pool and singleton
/// once in total; service pool shared by both.
fn check_two_instances(a: &[Value], b: &[Value], vias: [&str; 2], count: u64) {
    let all = expected_keys(vias, count);
    for (name, events) in [("first", a), ("second", b)] {
        assert_eq!(
            keys(of_type(events, "broadcast")),
            all,
            "broadcast at the {name} instance"
        );
    }
    for handler in ["service_pool", "singleton"] {
        let (at_a, at_b) = (of_type(a, handler), of_type(b, handler));
        assert_eq!(
            keys(at_a.iter().chain(&at_b).copied()),
            all,
            "{handler}: each event handled exactly once in total"
        );
        if handler == "service_pool" {
            assert!(
                !at_a.is_empty() && !at_b.is_empty(),
                "both service_pool instances take part: {} and {}",
                at_a.len(),
                at_b.len()
            );
        }
    }
}

fn total(events: &[Value], handler: &str) -> usize {
    of_type(events, handler).len()
}

// ===== RPC: Python calls enoki =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_calls_enoki_service() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    let runner = env
        .runner(env.transport.clone(), [enoki::service::<EnokiSvc>()])
        .await;

    let seen = env.client("call_enoki", &[]).await;

    assert_eq!(seen["positional"], json!(5));
    assert_eq!(seen["keyword"], json!(7));
    assert_eq!(seen["mixed"], json!(9));
    assert_eq!(seen["default"], json!(4));
    assert_eq!(seen["greet_default"], json!("Hello, Ann!"));
    assert_eq!(seen["greet_keyword"], json!("Hi, Bo!"));
    assert_eq!(
        seen["nested_result"],
        json!({"list": [1, 2.5, null, true], "text": "hé"})
    );

    let custom = &seen["custom_error"];
    assert_eq!(custom["class"], "RemoteError", "{custom}");
    assert_eq!(custom["module"], "nameko.exceptions", "{custom}");
    assert_eq!(custom["exc_type"], "EnokiFailure", "{custom}");
    assert_eq!(custom["value"], "it broke", "{custom}");

    let not_found = &seen["method_not_found"];
    assert_eq!(not_found["class"], "MethodNotFound", "{not_found}");
    assert_eq!(not_found["module"], "nameko.exceptions", "{not_found}");
    assert_eq!(not_found["is_method_not_found"], true, "{not_found}");
    assert_eq!(not_found["args"], json!(["nosuch"]), "{not_found}");

    // The messages Python's getcallargs gives for `def add(self, a, b=0)`.
    for (case, message) in [
        (
            "missing_arg",
            "add() missing 1 required positional argument: 'a'",
        ),
        (
            "too_many",
            "add() takes from 2 to 3 positional arguments but 4 were given",
        ),
        (
            "unexpected_kwarg",
            "add() got an unexpected keyword argument 'c'",
        ),
    ] {
        let error = &seen[case];
        assert_eq!(error["class"], "IncorrectSignature", "{case}: {error}");
        assert_eq!(error["module"], "nameko.exceptions", "{case}: {error}");
        assert_eq!(error["is_incorrect_signature"], true, "{case}: {error}");
        assert_eq!(error["args"], json!([message]), "{case}: {error}");
    }

    for case in ["context", "context_again"] {
        let context = &seen[case];
        assert_eq!(
            context["data"],
            Value::Object(support::context_data()),
            "{case}: {context}"
        );
        assert_stack(
            &context["call_id_stack"],
            &["standalone_rpc_proxy.call.", "enokisvc.context."],
        );
    }
    // nameko 2's standalone proxy keeps one call id per proxy; each enoki
    // worker adds its own.
    assert_eq!(
        seen["context"]["call_id_stack"][0],
        seen["context_again"]["call_id_stack"][0]
    );
    assert_ne!(
        seen["context"]["call_id_stack"][1],
        seen["context_again"]["call_id_stack"][1]
    );
    runner.stop().await;
    env.finish().await;
}

// ===== RPC: enoki calls Python =====

/// `enoki shell` against a Python nameko service: calls and errors work,
/// the service is completed by name once called, and asked what it offers
/// it answers `MethodNotFound` to `__describe__`, so the shell says it
/// cannot list its methods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_calls_python_service_and_completes_it_by_name() {
    use enoki::shell::{Reply, Shell};

    let Some(env) = Interop::setup().await else {
        return;
    };
    let mut py = env.nameko("py", &["PyService"]);
    let rpc = env.rpc(CALL_TIMEOUT).await;
    wait_ready(&rpc, "pysvc", &mut [&mut py]).await;
    let mut shell = Shell::connect(env.transport.clone(), &Settings::new())
        .await
        .unwrap();
    assert_eq!(shell.complete("rpc.py", 6).await.1, Vec::<String>::new());
    assert_eq!(
        shell.eval("rpc.pysvc.add(2, b=3)").await.unwrap(),
        Reply::Value(json!(5))
    );
    let err = shell.eval("rpc.pysvc.fail('it broke')").await.unwrap_err();
    assert_eq!(err.to_string(), "PyError: it broke");
    assert_eq!(shell.complete("rpc.py", 6).await.1, ["rpc.pysvc."]);
    assert_eq!(
        shell.complete("rpc.pysvc.", 10).await.1,
        Vec::<String>::new()
    );
    let Reply::Value(described) = shell.eval("rpc.pysvc").await.unwrap() else {
        panic!("rpc.pysvc is not a value");
    };
    assert_eq!(described["rpc"], Value::Null, "{described}");
    assert_eq!(described["service"], "pysvc");
    py.assert_alive();
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enoki_client_calls_python_service() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    let mut py = env.nameko("py", &["PyService"]);
    let rpc = env.rpc(CALL_TIMEOUT).await;
    wait_ready(&rpc, "pysvc", &mut [&mut py]).await;
    let pysvc = rpc.service("pysvc");

    // Results.
    assert_eq!(pysvc.call("add", json!([2, 3])).await.unwrap(), json!(5));
    assert_eq!(
        pysvc
            .call_kwargs("add", kwargs(json!({"a": 2, "b": 5})))
            .await
            .unwrap(),
        json!(7)
    );
    assert_eq!(
        rpc.call("pysvc", "add", json!([2]), kwargs(json!({"b": 7})))
            .await
            .unwrap(),
        json!(9)
    );
    assert_eq!(pysvc.call("add", json!([4])).await.unwrap(), json!(4));
    assert_eq!(
        rpc.call_typed::<_, i64>("pysvc", "add", &(20, 22))
            .await
            .unwrap(),
        42
    );

    // A user exception.
    let error = remote(pysvc.call("fail", json!(["it broke"])).await);
    assert_eq!(error.exc_type, "PyError");
    assert_eq!(error.exc_path, "services.PyError");
    assert_eq!(error.exc_args, vec![json!("it broke")]);
    assert_eq!(error.value, "it broke");

    // nameko's own errors.
    let error = remote(pysvc.call("nosuch", json!([])).await);
    assert_eq!(error, RemoteError::method_not_found("nosuch"));
    let error = remote(pysvc.call("add", json!([])).await);
    assert_eq!(
        error,
        RemoteError::incorrect_signature("add() missing 1 required positional argument: 'a'")
    );

    // Client-side errors.
    let err = rpc
        .service("nosuchsvc")
        .call("anything", json!([]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownService(name) if name == "nosuchsvc"),
        "{err:?}"
    );
    let started = Instant::now();
    let err = rpc
        .with_timeout(Duration::from_millis(500))
        .service("pysvc")
        .call("sleep", json!([3]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RpcTimeout { service, method, .. } if service == "pysvc" && method == "sleep"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Context data reaches the Python worker; the late reply of the timed
    // out call does not confuse later calls.
    let context = pysvc.call("context", json!([])).await.unwrap();
    assert_eq!(context["data"], Value::Object(support::context_data()));
    assert_stack(
        &context["call_id_stack"],
        &["standalone_rpc_proxy.call.", "pysvc.context."],
    );
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(pysvc.call("add", json!([1, 1])).await.unwrap(), json!(2));
    py.assert_alive();
    env.finish().await;
}

// ===== nested calls =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_carry_context_through_both() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    let runner = env
        .runner(env.transport.clone(), [enoki::service::<EnokiSvc>()])
        .await;
    let mut py = env.nameko("py", &["PyService"]);
    let rpc = env.rpc(CALL_TIMEOUT).await;
    wait_ready(&rpc, "pysvc", &mut [&mut py]).await;
    let user = Value::Object(support::context_data());

    // Python client → pysvc.relay (Python RpcProxy) → enokisvc.context, and
    // Python client → enokisvc.relay (enoki RpcProxy) → pysvc.context.
    let seen = env.client("relay", &[json!(["pysvc", "enokisvc"])]).await;
    let inner = &seen["pysvc"]["inner"];
    assert_eq!(inner["data"], user, "{seen}");
    assert_stack(
        &inner["call_id_stack"],
        &[
            "standalone_rpc_proxy.call.",
            "pysvc.relay.",
            "enokisvc.context.",
        ],
    );
    let inner = &seen["enokisvc"]["inner"];
    assert_eq!(inner["data"], user, "{seen}");
    assert_stack(
        &inner["call_id_stack"],
        &[
            "standalone_rpc_proxy.call.",
            "enokisvc.relay.",
            "pysvc.context.",
        ],
    );
    // The intermediate worker's id is the one the inner worker received.
    assert_eq!(
        seen["enokisvc"]["here"]["call_id_stack"][1],
        seen["enokisvc"]["inner"]["call_id_stack"][1]
    );

    // enoki client → enokisvc.relay → pysvc.relay → enokisvc.context.
    let seen = rpc
        .call("enokisvc", "relay", json!(["pysvc", "relay"]), Map::new())
        .await
        .unwrap();
    let middle = &seen["inner"]["here"];
    assert_eq!(middle["data"], user, "{seen}");
    assert_stack(
        &middle["call_id_stack"],
        &[
            "standalone_rpc_proxy.call.",
            "enokisvc.relay.",
            "pysvc.relay.",
        ],
    );
    let innermost = &seen["inner"]["inner"];
    assert_eq!(innermost["data"], user, "{seen}");
    assert_stack(
        &innermost["call_id_stack"],
        &[
            "standalone_rpc_proxy.call.",
            "enokisvc.relay.",
            "pysvc.relay.",
            "enokisvc.context.",
        ],
    );
    assert_eq!(
        innermost["call_id_stack"][2], middle["call_id_stack"][2],
        "{seen}"
    );
    py.assert_alive();
    runner.stop().await;
    env.finish().await;
}

// ===== events: Python → enoki =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_events_reach_enoki_handlers_of_every_type() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    // Two enoki instances of `enokilistener`, on two connections.
    let (sink_a, sink_b) = (Sink::default(), Sink::default());
    let runner_a = env.runner(env.transport.clone(), [listener(&sink_a)]).await;
    let runner_b = env
        .runner(env.connect_again().await, [listener(&sink_b)])
        .await;
    let mut py = env.nameko("py", &["PyService"]);
    let rpc = env.rpc(CALL_TIMEOUT).await;
    wait_ready(&rpc, "pysvc", &mut [&mut py]).await;

    // 6 events from the standalone dispatcher (no headers), 6 from pysvc's
    // EventDispatcher inside calls with context data.
    const COUNT: u64 = 6;
    let sent = env.client("dispatch_events", &[json!(COUNT)]).await;
    assert_eq!(sent["sent"], json!(2 * COUNT));

    let expected = 2 * COUNT as usize;
    eventually(
        || {
            let (a, b) = (sink_a.events(), sink_b.events());
            total(&a, "broadcast") >= expected
                && total(&b, "broadcast") >= expected
                && total(&a, "service_pool") + total(&b, "service_pool") >= expected
                && total(&a, "singleton") + total(&b, "singleton") >= expected
        },
        || {
            format!(
                "events at a: {:?}\nat b: {:?}",
                sink_a.events(),
                sink_b.events()
            )
        },
    )
    .await;
    // Nothing more arrives (no duplicates).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a, b) = (sink_a.events(), sink_b.events());
    check_two_instances(&a, &b, ["service", "standalone"], COUNT);

    for event in a.iter().chain(&b) {
        let handler = event["handler"].as_str().unwrap();
        let own = format!("enokilistener.{}.", handler_method(handler));
        if event["payload"]["via"] == "service" {
            assert_eq!(
                event["data"],
                Value::Object(support::context_data()),
                "{event}"
            );
            assert_stack(
                &event["call_id_stack"],
                &["standalone_rpc_proxy.call.", "pysvc.emit.", &own],
            );
        } else {
            assert_eq!(event["data"], json!({}), "{event}");
            assert_stack(&event["call_id_stack"], &[&own]);
        }
    }
    py.assert_alive();
    runner_a.stop().await;
    runner_b.stop().await;
    env.finish().await;
}

fn handler_method(handler: &str) -> &'static str {
    match handler {
        "service_pool" => "on_pool",
        "singleton" => "on_singleton",
        "broadcast" => "on_broadcast",
        other => panic!("unknown handler {other}"),
    }
}

// ===== events: enoki → Python =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enoki_events_reach_python_handlers_of_every_type() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    // Two nameko processes of `pylistener`.
    let mut py1 = env.nameko("py1", &["PyListener"]);
    let mut py2 = env.nameko("py2", &["PyListener"]);
    let runner = env
        .runner(env.transport.clone(), [enoki::service::<EnokiSvc>()])
        .await;
    let rpc = env.rpc(CALL_TIMEOUT).await;
    wait_ready(&rpc, "pylistener", &mut [&mut py1, &mut py2]).await;

    // 6 events from the standalone publisher, 6 from enokisvc's Dispatcher
    // inside calls with context data.
    const COUNT: u64 = 6;
    let publisher = EventPublisher::new(env.transport.clone(), &Settings::new());
    for n in 0..COUNT {
        publisher
            .dispatch("enokisvc", "evt", &json!({"n": n, "via": "publisher"}))
            .await
            .unwrap();
    }
    for n in 0..COUNT {
        rpc.call(
            "enokisvc",
            "emit",
            json!(["evt", {"n": n, "via": "service"}]),
            Map::new(),
        )
        .await
        .unwrap();
    }

    let expected = 2 * COUNT as usize;
    eventually(
        || {
            let (a, b) = (py1.events(), py2.events());
            total(&a, "broadcast") >= expected
                && total(&b, "broadcast") >= expected
                && total(&a, "service_pool") + total(&b, "service_pool") >= expected
                && total(&a, "singleton") + total(&b, "singleton") >= expected
        },
        || {
            format!(
                "events at py1: {:?}\nat py2: {:?}",
                py1.events(),
                py2.events()
            )
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a, b) = (py1.events(), py2.events());
    check_two_instances(&a, &b, ["publisher", "service"], COUNT);

    for event in a.iter().chain(&b) {
        let handler = event["handler"].as_str().unwrap();
        let own = format!("pylistener.{}.", handler_method(handler));
        if event["payload"]["via"] == "service" {
            assert_eq!(
                event["data"],
                Value::Object(support::context_data()),
                "{event}"
            );
            assert_stack(
                &event["call_id_stack"],
                &["standalone_rpc_proxy.call.", "enokisvc.emit.", &own],
            );
        } else {
            assert_eq!(event["data"], json!({}), "{event}");
            assert_stack(&event["call_id_stack"], &[&own]);
        }
    }
    py1.assert_alive();
    py2.assert_alive();
    runner.stop().await;
    env.finish().await;
}

// ===== one queue, two implementations =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_enoki_instances_share_an_rpc_queue() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    let mut py = env.nameko("py", &["SharedPy"]);
    let runner = env
        .runner(env.transport.clone(), [enoki::service::<EnokiShared>()])
        .await;
    let rpc = env.rpc(CALL_TIMEOUT).await;
    wait_ready(&rpc, "shared", &mut [&mut py]).await;

    const CALLS: u64 = 40;
    let check = |caller: &str, replies: &[Value]| {
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        assert_eq!(replies.len(), CALLS as usize, "{caller}: {replies:?}");
        for (n, reply) in replies.iter().enumerate() {
            assert_eq!(reply["n"], json!(n), "{caller}: reply {n} is {reply}");
            *by.entry(reply["by"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        assert_eq!(
            by.keys().cloned().collect::<BTreeSet<_>>(),
            BTreeSet::from(["enoki".to_owned(), "py".to_owned()]),
            "{caller}: both instances serve: {by:?}"
        );
    };

    // An enoki caller: 40 calls in flight at once.
    let calls = (0..CALLS).map(|n| {
        let rpc = rpc.clone();
        async move { rpc.service("shared").call("who", json!([n])).await }
    });
    let replies: Vec<Value> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|reply| reply.expect("every call gets its reply"))
        .collect();
    check("enoki caller", &replies);

    // A Python caller: 40 calls in flight at once (call_async).
    let replies = env.client("call_shared", &[json!(CALLS)]).await;
    check(
        "python caller",
        replies.as_array().expect("a list of replies"),
    );
    py.assert_alive();
    runner.stop().await;
    env.finish().await;
}

// ===== declarations =====

/// Exchanges and queues (with their flags) in the vhost, as a sorted list.
fn topology(env: &Interop) -> Vec<String> {
    let mut lines: Vec<String> = env
        .vhost
        .list_queues(&["name", "durable", "auto_delete", "exclusive", "arguments"])
        .lines()
        .filter(|line| {
            !line.starts_with("rpc.reply-") && !line.contains("--pylistener.on_broadcast-")
        })
        .map(str::to_owned)
        .collect();
    lines.extend(
        common::amqp::rabbitmqctl(&[
            "list_exchanges",
            "-q",
            "--no-table-headers",
            "-p",
            &env.vhost.name,
            "name",
            "type",
            "durable",
            "auto_delete",
            "arguments",
        ])
        .lines()
        .filter(|line| !line.starts_with("amq.") && !line.trim_start().starts_with("direct"))
        .map(|line| format!("exchange {line}")),
    );
    lines.sort();
    lines
}

/// The twins and clients enoki starts over Python's declarations (or
/// before them): `rpc-pysvc`, `nameko-rpc`, `pysvc.events`,
/// `enokisvc.events`, the `pylistener` event queues.
async fn start_enoki_twins(env: &Interop, settings: &Settings) -> ServiceRunner {
    let runner = env
        .runner_with(
            env.transport.clone(),
            settings.clone(),
            [
                enoki::service::<PysvcTwin>(),
                enoki::service::<PylistenerTwin>(),
                enoki::service::<EnokiSvc>(),
            ],
        )
        .await;
    EventPublisher::new(env.transport.clone(), &Settings::new())
        .dispatch("pysvc", "declared", &json!({}))
        .await
        .expect("enoki redeclares pysvc.events");
    runner
}

async fn assert_python_serves(env: &Interop, py: &mut NamekoProcess) {
    let rpc = env.rpc(CALL_TIMEOUT).await;
    wait_ready(&rpc, "pysvc", &mut [&mut *py]).await;
    wait_ready(&rpc, "pylistener", &mut [&mut *py]).await;
    py.assert_alive();
    let log = py.log();
    assert!(
        !log.contains("PRECONDITION_FAILED"),
        "nameko saw a redeclaration failure:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enoki_redeclares_what_python_declared() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    let mut py = env.nameko("py", &["PyService", "PyListener"]);
    // nameko's own reply-queue form, so that every declaration compares.
    let nameko_form = Settings::new().with("RPC_REPLY_QUEUE", json!("durable"));
    let rpc = env.rpc_with(CALL_TIMEOUT, &nameko_form).await;
    wait_ready(&rpc, "pysvc", &mut [&mut py]).await;
    wait_ready(&rpc, "pylistener", &mut [&mut py]).await;
    let before = topology(&env);

    // Every declaration succeeds (a 406 would fail start or dispatch).
    let runner = start_enoki_twins(&env, &nameko_form).await;
    let after = topology(&env);
    for line in &before {
        assert!(
            after.contains(line),
            "Python's declaration `{line}` is unchanged after enoki's: {after:#?}"
        );
    }
    // The queues each side names uniquely are declared alike: reply queues
    // (Python's `pysvc` RpcProxy; enoki's `enokisvc` RpcProxy and client),
    // and broadcast queues (Python's and enoki's `pylistener`).
    for (prefix, owners) in [
        (
            "rpc.reply-",
            &[
                "rpc.reply-pysvc-",
                "rpc.reply-enokisvc-",
                "rpc.reply-standalone_rpc_proxy-",
            ][..],
        ),
        ("evt-enokisvc-evt--pylistener.on_broadcast-", &[][..]),
    ] {
        let queues =
            env.vhost
                .list_queues(&["name", "durable", "auto_delete", "exclusive", "arguments"]);
        let lines: Vec<(&str, &str)> = queues
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.split_once('\t'))
            .collect();
        let flags: BTreeSet<&str> = lines.iter().map(|(_, flags)| *flags).collect();
        assert_eq!(flags.len(), 1, "{prefix}* queues differ: {lines:#?}");
        assert!(lines.len() >= 2, "{prefix}* from both sides: {lines:#?}");
        for owner in owners {
            assert!(
                lines.iter().any(|(name, _)| name.starts_with(owner)),
                "no {owner}* queue: {lines:#?}"
            );
        }
    }
    assert_python_serves(&env, &mut py).await;
    runner.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_redeclares_what_enoki_declared() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    let runner = start_enoki_twins(&env, &Settings::new()).await;
    let _client = env.rpc(CALL_TIMEOUT).await;
    // nameko declares the same names over enoki's declarations; a 406
    // would kill its container (the process exits, `wait_ready` fails).
    let mut py = env.nameko("py", &["PyService", "PyListener"]);
    assert_python_serves(&env, &mut py).await;
    runner.stop().await;
    env.finish().await;
}

/// The default reply queue is nameko's but not durable (so persistent
/// replies skip the broker's message store); `RPC_REPLY_QUEUE: durable` is
/// nameko's own. A Python service answers both, and a Python `RpcProxy`
/// (in `pysvc`) keeps declaring its own form beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_services_answer_both_reply_queue_forms() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    let mut py = env.nameko("py", &["PyService"]);
    let transient = env.rpc(CALL_TIMEOUT).await;
    let durable = env
        .rpc_with(
            CALL_TIMEOUT,
            &Settings::new().with("RPC_REPLY_QUEUE", json!("durable")),
        )
        .await;
    wait_ready(&transient, "pysvc", &mut [&mut py]).await;
    for (rpc, n) in [(&transient, 1), (&durable, 2)] {
        let pysvc = rpc.service("pysvc");
        let sums =
            futures::future::join_all((0..20).map(|i| pysvc.call("add", json!([i, n])))).await;
        for (i, sum) in sums.into_iter().enumerate() {
            assert_eq!(sum.expect("Python answers"), json!(i as i64 + n));
        }
    }
    let queues =
        env.vhost
            .list_queues(&["name", "durable", "auto_delete", "exclusive", "arguments"]);
    let flags = |name: &str| -> String {
        queues
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('\t'))
            .unwrap_or_else(|| panic!("no queue {name}: {queues}"))
            .to_owned()
    };
    let python_form = queues
        .lines()
        .find_map(|line| Some(line.strip_prefix("rpc.reply-pysvc-")?.split_once('\t')?.1))
        .unwrap_or_else(|| panic!("no reply queue of Python's RpcProxy: {queues}"));
    assert!(
        python_form.starts_with("true\tfalse\tfalse\t"),
        "{python_form}"
    );
    assert!(python_form.contains("300000"), "x-expires: {python_form}");
    assert_eq!(flags(durable.reply_queue()), python_form);
    assert_eq!(
        flags(transient.reply_queue()),
        python_form.replacen("true", "false", 1),
        "only durability differs"
    );
    py.assert_alive();
    env.finish().await;
}

/// With `QUEUE_TYPE: quorum` enoki declares `rpc-<service>` and the
/// service-pool and singleton event queues as quorum queues. A Python
/// nameko service of the same name cannot join them: its classic
/// declaration of the same queue fails with 406 PRECONDITION_FAILED
/// (`inequivalent arg ...`), again at each of its reconnection attempts, so
/// it never serves. This is
/// what docs/scaling.md tells a fleet: switch only once no Python instance
/// of that service remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cannot_join_enokis_quorum_queues() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    let quorum = Settings::new().with("QUEUE_TYPE", json!("quorum"));
    let runner = start_enoki_twins(&env, &quorum).await;
    let types = env.vhost.list_queues(&["name", "type"]);
    let type_of = |queue: &str| {
        types
            .lines()
            .find_map(|line| {
                let (name, kind) = line.split_once('\t')?;
                (name == queue).then(|| kind.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no queue {queue}: {types}"))
    };
    assert_eq!(type_of("rpc-pysvc"), "quorum");
    assert_eq!(type_of("rpc-pysvc.dlq"), "quorum");
    let replies: Vec<&str> = types
        .lines()
        .filter(|line| line.starts_with("rpc.reply-"))
        .collect();
    assert!(
        !replies.is_empty() && replies.iter().all(|line| line.ends_with("classic")),
        "reply queues stay classic: {replies:?}"
    );
    let py = env.nameko("py", &["PyService"]);
    eventually(
        || py.log().contains("PRECONDITION_FAILED"),
        || format!("nameko's declaration of rpc-pysvc fails:\n{}", py.log()),
    )
    .await;
    let log = py.log();
    assert!(
        log.contains("inequivalent arg") && log.contains("rpc-pysvc"),
        "{log}"
    );
    // enoki's side keeps serving.
    let rpc = env.rpc(CALL_TIMEOUT).await;
    assert_eq!(
        rpc.service("enokisvc").call("ping", json!([])).await.ok(),
        Some(json!("enoki"))
    );
    runner.stop().await;
    env.finish().await;
}
