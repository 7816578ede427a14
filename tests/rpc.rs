//! RPC on the embedded transport: arguments, results, nameko's errors,
//! timeouts, context propagation and concurrency; requests that expire
//! while queued, on both transports.

use std::time::Duration;

mod common;

use enoki::prelude::*;
use enoki::testing::Cluster;
use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error)]
#[error("this call always fails")]
struct GreeterError;

#[derive(Dependencies)]
struct Greeter {
    #[dependency(EventDispatcher)]
    dispatch: Dispatcher,
}

#[service(name = "greeter")]
impl Greeter {
    #[rpc]
    async fn hello(&self, name: String) -> Result<String, RemoteError> {
        self.dispatch
            .emit("greeted", json!({ "name": name }))
            .await?;
        Ok(format!("Hello, {name}!"))
    }

    #[rpc]
    async fn greet(&self, name: String, greeting: Option<String>) -> Result<String, RemoteError> {
        Ok(format!(
            "{}, {name}!",
            greeting.unwrap_or_else(|| "Hello".into())
        ))
    }

    #[rpc]
    async fn add(&self, a: i64, b: i64) -> Result<i64, RemoteError> {
        Ok(a + b)
    }

    #[rpc]
    async fn fail(&self) -> Result<(), GreeterError> {
        Err(GreeterError)
    }

    #[rpc]
    async fn panics(&self) -> Result<(), RemoteError> {
        panic!("boom")
    }

    #[rpc]
    async fn slow(&self, millis: u64) -> Result<u64, RemoteError> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(millis)
    }

    #[rpc]
    async fn context(&self, ctx: &WorkerCtx) -> Result<Value, RemoteError> {
        Ok(json!({
            "call_id_stack": ctx.call_id_stack(),
            "data": ctx.context_data(),
        }))
    }
}

/// Calls `greeter` from inside a worker, to check context propagation.
#[derive(Dependencies)]
struct Frontdesk {
    #[dependency(RpcProxy)]
    rpc: ClusterRpc,
}

#[service(name = "frontdesk")]
impl Frontdesk {
    #[rpc]
    async fn relay(&self) -> Result<Value, RemoteError> {
        Ok(self
            .rpc
            .service("greeter")
            .call("context", json!([]))
            .await?)
    }

    #[rpc]
    async fn typed(&self, name: String) -> Result<String, RemoteError> {
        Ok(GreeterClient::new(&self.rpc).hello(name).await?)
    }

    #[rpc]
    async fn missing(&self) -> Result<Value, RemoteError> {
        Ok(self.rpc.service("nobody").call("x", json!([])).await?)
    }
}

async fn cluster() -> Cluster {
    Cluster::start([enoki::service::<Greeter>(), enoki::service::<Frontdesk>()])
        .await
        .expect("cluster starts")
}

#[tokio::test]
async fn typed_client_calls_a_service() {
    let cluster = cluster().await;
    let greeter = GreeterClient::new(cluster.rpc());
    assert_eq!(greeter.hello("Ann".into()).await.unwrap(), "Hello, Ann!");
    assert_eq!(greeter.add(2, 3).await.unwrap(), 5);
    assert_eq!(
        greeter.greet("Bo".into(), Some("Hi".into())).await.unwrap(),
        "Hi, Bo!"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn positional_keyword_and_mixed_arguments() {
    let cluster = cluster().await;
    let rpc = cluster.rpc();
    let kwargs = |v: Value| v.as_object().unwrap().clone();
    assert_eq!(
        rpc.call("greeter", "add", json!([2, 3]), Map::new())
            .await
            .unwrap(),
        json!(5)
    );
    assert_eq!(
        rpc.call("greeter", "add", json!([]), kwargs(json!({"b": 3, "a": 2})))
            .await
            .unwrap(),
        json!(5)
    );
    assert_eq!(
        rpc.call("greeter", "add", json!([2]), kwargs(json!({"b": 3})))
            .await
            .unwrap(),
        json!(5)
    );
    // An Option parameter left out is None.
    assert_eq!(
        rpc.call("greeter", "greet", json!(["Ann"]), Map::new())
            .await
            .unwrap(),
        json!("Hello, Ann!")
    );
    cluster.stop().await;
}

fn remote(err: enoki::Error) -> RemoteError {
    match err {
        enoki::Error::Remote(remote) => remote,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test]
async fn nameko_errors_for_bad_calls() {
    let cluster = cluster().await;
    let rpc = cluster.rpc();

    let err = remote(
        rpc.call("greeter", "nosuch", json!([]), Map::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({
            "exc_type": "MethodNotFound",
            "exc_path": "nameko.exceptions.MethodNotFound",
            "exc_args": ["nosuch"],
            "value": "nosuch"
        })
    );

    let err = remote(
        rpc.call("greeter", "hello", json!([]), Map::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({
            "exc_type": "IncorrectSignature",
            "exc_path": "nameko.exceptions.IncorrectSignature",
            "exc_args": ["hello() missing 1 required positional argument: 'name'"],
            "value": "hello() missing 1 required positional argument: 'name'"
        })
    );

    let err = remote(
        rpc.call("greeter", "add", json!([1, 2, 3]), Map::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.value,
        "add() takes 3 positional arguments but 4 were given"
    );

    let err = remote(
        rpc.call("greeter", "add", json!(["x", 2]), Map::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.exc_type, "IncorrectSignature");
    assert!(err.value.contains("argument 'a'"), "{}", err.value);

    let err = remote(
        rpc.call("greeter", "fail", json!([]), Map::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.exc_type, "GreeterError");
    assert_eq!(err.value, "this call always fails");
    assert_eq!(err.exc_args, vec![json!("this call always fails")]);

    // The container survives all of it.
    assert_eq!(
        rpc.call("greeter", "add", json!([1, 1]), Map::new())
            .await
            .unwrap(),
        json!(2)
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_panicking_worker_gets_an_error_reply_and_the_container_survives() {
    let cluster = cluster().await;
    let rpc = cluster.rpc();
    let err = remote(
        rpc.call("greeter", "panics", json!([]), Map::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.exc_type, "WorkerPanic");
    assert_eq!(err.value, "boom");
    assert_eq!(
        rpc.call("greeter", "add", json!([2, 2]), Map::new())
            .await
            .unwrap(),
        json!(4)
    );
    cluster.stop().await;
}

#[tokio::test]
async fn unknown_service_and_timeout() {
    let cluster = cluster().await;
    let rpc = cluster.rpc();
    let err = rpc
        .call("nobody", "hello", json!([]), Map::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, enoki::Error::UnknownService(ref s) if s == "nobody"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "Unknown service `nobody`");

    let quick = rpc.with_timeout(Duration::from_millis(50));
    let err = quick
        .call("greeter", "slow", json!([2000]), Map::new())
        .await
        .unwrap_err();
    assert!(matches!(err, enoki::Error::RpcTimeout { .. }), "{err:?}");

    // A nested call to an unknown service reaches the caller as nameko's
    // UnknownService.
    let err = remote(
        rpc.call("frontdesk", "missing", json!([]), Map::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.exc_type, "UnknownService");
    assert_eq!(err.exc_path, "nameko.exceptions.UnknownService");
    cluster.stop().await;
}

#[tokio::test]
async fn context_data_and_call_id_stack_propagate() {
    let cluster = cluster().await;
    let data = json!({"user_id": 7, "language": "en", "auth_token": "t0k3n", "tenant": "acme"});
    let rpc = cluster
        .rpc()
        .with_context_data(data.as_object().unwrap().clone());

    let direct = rpc
        .call("greeter", "context", json!([]), Map::new())
        .await
        .unwrap();
    assert_eq!(direct["data"], data);
    let stack = direct["call_id_stack"].as_array().unwrap();
    assert_eq!(stack.len(), 2);
    assert!(
        stack[0]
            .as_str()
            .unwrap()
            .starts_with("standalone_rpc_proxy.call.")
    );
    assert!(stack[1].as_str().unwrap().starts_with("greeter.context."));

    let nested = rpc
        .call("frontdesk", "relay", json!([]), Map::new())
        .await
        .unwrap();
    assert_eq!(nested["data"], data);
    let stack: Vec<&str> = nested["call_id_stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(stack.len(), 3, "{stack:?}");
    assert!(stack[0].starts_with("standalone_rpc_proxy.call."));
    assert!(stack[1].starts_with("frontdesk.relay."));
    assert!(stack[2].starts_with("greeter.context."));
    // Each id is `service.method.uuid4`.
    let uuid = stack[2].rsplit('.').next().unwrap();
    assert_eq!(uuid.len(), 36);

    assert_eq!(
        rpc.call("frontdesk", "typed", json!(["Cy"]), Map::new())
            .await
            .unwrap(),
        "Hello, Cy!"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn call_id_stack_is_bounded_by_parent_calls_tracked() {
    let settings = Settings::new().with("parent_calls_tracked", 2.into());
    let cluster = Cluster::start_with([enoki::service::<Greeter>()], settings)
        .await
        .unwrap();
    let client = ClusterRpc::connect(cluster.transport(), &Settings::new())
        .await
        .unwrap();
    // A caller that already has a deep stack.
    let deep: Vec<String> = (0..5).map(|i| format!("svc.m.{i}")).collect();
    let worker = WorkerCtx::new(
        "caller",
        "run",
        enoki::context::ContextData {
            data: Map::new(),
            call_id_stack: deep,
        },
        10,
    );
    let reply = client
        .bind(&worker)
        .call("greeter", "context", json!([]), Map::new())
        .await
        .unwrap();
    let stack = reply["call_id_stack"].as_array().unwrap();
    assert_eq!(stack.len(), 3, "{stack:?}");
    assert!(stack[1].as_str().unwrap().starts_with("caller.run."));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_in_flight_on_one_reply_queue() {
    let cluster = cluster().await;
    let greeter = GreeterClient::new(cluster.rpc());
    let calls = (0..500).map(|i| {
        let greeter = greeter.clone();
        async move { greeter.add(i, i).await.unwrap() }
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(results, (0..500).map(|i| i * 2).collect::<Vec<_>>());
    cluster.stop().await;
}

/// Gates and run logs per test, so tests in this binary don't share them.
mod backlog {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock};

    use parking_lot::Mutex;
    use tokio::sync::Semaphore;

    static GATES: LazyLock<Mutex<HashMap<String, Arc<Semaphore>>>> =
        LazyLock::new(Default::default);
    static RUNS: LazyLock<Mutex<HashMap<String, Vec<String>>>> = LazyLock::new(Default::default);

    pub(super) fn gate(key: &str) -> Arc<Semaphore> {
        GATES
            .lock()
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(0)))
            .clone()
    }

    pub(super) fn record(key: &str, what: &str) {
        RUNS.lock()
            .entry(key.to_owned())
            .or_default()
            .push(what.to_owned());
    }

    pub(super) fn runs(key: &str) -> Vec<String> {
        RUNS.lock().get(key).cloned().unwrap_or_default()
    }
}

#[derive(Dependencies)]
struct Backlog;

#[service(name = "backlog")]
impl Backlog {
    /// Holds its worker until the test opens the gate.
    #[rpc]
    async fn hold(&self, key: String) -> Result<(), RemoteError> {
        backlog::record(&key, "hold");
        let gate = backlog::gate(&key);
        gate.acquire().await.expect("gate open").forget();
        Ok(())
    }

    #[rpc]
    async fn mark(&self, key: String, label: String) -> Result<String, RemoteError> {
        backlog::record(&key, &label);
        Ok(label)
    }
}

/// A throwaway vhost on RabbitMQ and a transport on it (`None`, with a
/// message, when RabbitMQ is not reachable and `CI` is not set).
async fn on_rabbitmq() -> Option<(
    common::amqp::TestVhost,
    std::sync::Arc<enoki::transport::AmqpTransport>,
)> {
    let vhost = common::amqp::TestVhost::create()?;
    let transport = enoki::transport::AmqpTransport::connect(&vhost.uri, Default::default())
        .await
        .expect("connects");
    Some((vhost, transport))
}

/// The backlog service with `max_workers`, started on `transport`, and a
/// client.
async fn backlog_with_client(
    transport: std::sync::Arc<dyn enoki::transport::Transport>,
    max_workers: u32,
) -> (ServiceRunner, ClusterRpc) {
    let settings = Settings::new().with("max_workers", json!(max_workers));
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    runner.add(enoki::service::<Backlog>());
    runner.start().await.expect("starts");
    let rpc = ClusterRpc::connect(transport, &settings)
        .await
        .expect("client");
    (runner, rpc)
}

/// A request still queued when its caller's timeout passes is never
/// executed: it carries the timeout as its AMQP `expiration`, and the
/// broker drops it (nameko's `delivery_timeout`).
async fn requests_nobody_waits_for_are_not_executed(
    transport: std::sync::Arc<dyn enoki::transport::Transport>,
) {
    let key = uuid::Uuid::new_v4().to_string();
    let (runner, rpc) = backlog_with_client(transport.clone(), 1).await;

    // The only worker is busy...
    let holding = tokio::spawn({
        let (rpc, key) = (rpc.clone(), key.clone());
        async move { rpc.service("backlog").call("hold", json!([key])).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backlog::runs(&key).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "hold never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...so this request waits in the queue until its caller gives up.
    let late = rpc
        .with_timeout(Duration::from_millis(300))
        .service("backlog")
        .call("mark", json!([key, "late"]))
        .await;
    assert!(
        matches!(late, Err(enoki::Error::RpcTimeout { .. })),
        "{late:?}, runs {:?}, holding finished: {}",
        backlog::runs(&key),
        holding.is_finished()
    );
    // RabbitMQ drops an expired message at the head of a queue on a timer
    // of its own, a little after the caller gave up (the message reached it
    // after the caller's clock started): wait for that before freeing the
    // worker. The embedded broker has the message at once, so it has
    // expired by the caller's deadline; it drops it instead of handing it
    // over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while transport.kind() == "amqp"
        && transport.queue_depth("rpc-backlog").await.unwrap() != Some(0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker never dropped the expired request"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    backlog::gate(&key).add_permits(1);
    holding.await.unwrap().expect("hold answered");
    // Queues are FIFO: once this one is answered, the late one would have
    // run before it.
    let after = rpc
        .service("backlog")
        .call("mark", json!([key, "after"]))
        .await
        .expect("answered");
    assert_eq!(after, json!("after"));
    assert_eq!(
        backlog::runs(&key),
        ["hold", "after"],
        "the late request ran"
    );
    rpc.close().await;
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_requests_are_dropped_on_the_embedded_broker() {
    requests_nobody_waits_for_are_not_executed(enoki::transport::MemoryTransport::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_requests_are_dropped_on_rabbitmq() {
    let Some((_vhost, transport)) = on_rabbitmq().await else {
        return;
    };
    requests_nobody_waits_for_are_not_executed(transport.clone()).await;
    enoki::transport::Transport::close(&*transport).await;
}

/// A request whose worker dies with its instance each time (the instance
/// is killed while `hold` runs) comes back unsettled; on a classic queue
/// enoki counts each return in the request itself and, past
/// `QUEUE_DELIVERY_LIMIT` (2 here) returns, parks it in `rpc-backlog.dlq`
/// instead of running it again. Replayed once the cause is fixed, it runs
/// and its caller, still waiting, gets the answer.
async fn a_request_that_kills_its_instance_is_parked_after_the_limit<F, Fut>(connect: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::sync::Arc<dyn enoki::transport::Transport>>,
{
    const LIMIT: usize = 2;
    let key = uuid::Uuid::new_v4().to_string();
    let settings = Settings::new()
        .with("max_workers", json!(1))
        .with("QUEUE_DELIVERY_LIMIT", json!(LIMIT));
    let client_transport = connect().await;
    let rpc = ClusterRpc::connect(client_transport.clone(), &settings)
        .await
        .expect("client");
    let instance = || async {
        let transport = connect().await;
        let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
        runner.add(enoki::service::<Backlog>());
        runner.start().await.expect("starts");
        (runner, transport)
    };
    let (runner, transport) = instance().await;
    let call = tokio::spawn({
        let (rpc, key) = (rpc.clone(), key.clone());
        async move {
            rpc.with_timeout(Duration::from_secs(60))
                .service("backlog")
                .call("hold", json!([key]))
                .await
        }
    });
    let (mut runner, mut transport) = (runner, transport);
    for run in 1..=LIMIT + 1 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while backlog::runs(&key).len() < run {
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run} never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The instance dies mid-request: its delivery goes back unsettled.
        runner.kill().await;
        transport.close().await;
        (runner, transport) = instance().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let letters = loop {
        let letters = enoki::dlq::list(&*client_transport, "rpc-backlog", 10)
            .await
            .unwrap_or_default();
        if !letters.is_empty() {
            break letters;
        }
        assert!(tokio::time::Instant::now() < deadline, "never parked");
    };
    assert_eq!(
        backlog::runs(&key).len(),
        LIMIT + 1,
        "run once, then once per allowed return"
    );
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].queue, "rpc-backlog");
    assert_eq!(letters[0].reason, "delivery_limit");
    assert_eq!(letters[0].exchange, "nameko-rpc");
    assert_eq!(letters[0].routing_key, "backlog.hold");
    assert!(!call.is_finished(), "the caller still waits");

    backlog::gate(&key).add_permits(1);
    let replayed = enoki::dlq::replay(&*client_transport, "rpc-backlog", 10)
        .await
        .expect("replays");
    assert_eq!(replayed.replayed, 1);
    assert_eq!(call.await.unwrap().expect("answered"), json!(null));
    assert_eq!(backlog::runs(&key).len(), LIMIT + 2);
    rpc.close().await;
    runner.stop().await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_request_is_parked_on_the_embedded_broker() {
    let broker = enoki::transport::MemoryTransport::new();
    a_request_that_kills_its_instance_is_parked_after_the_limit(|| {
        let transport: std::sync::Arc<dyn enoki::transport::Transport> = broker.connect();
        async move { transport }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_request_is_parked_on_rabbitmq() {
    let Some(vhost) = common::amqp::TestVhost::create() else {
        return;
    };
    a_request_that_kills_its_instance_is_parked_after_the_limit(|| async {
        let transport: std::sync::Arc<dyn enoki::transport::Transport> =
            enoki::transport::AmqpTransport::connect(&vhost.uri, Default::default())
                .await
                .expect("connects");
        transport
    })
    .await;
}

/// A caller whose `reply_to` names its reply queue (an enoki caller) gets
/// its reply straight through the default exchange; one whose `reply_to`
/// only looks like a queue name (no such queue) gets it through the RPC
/// exchange, as nameko routes replies; so does one with a bare uuid.
#[tokio::test]
async fn replies_go_to_the_queue_reply_to_names_or_through_the_rpc_exchange() {
    use enoki::message::Message;
    use enoki::transport::{ConsumeOptions, PublishOptions, QueueSpec, Transport};

    let cluster = cluster().await;
    let transport = cluster.transport().connect();
    assert!(
        cluster.rpc().reply_queue().starts_with("rpc.reply-"),
        "an enoki caller sends its queue's name as reply_to"
    );
    let named = "rpc.reply-test-named";
    transport
        .declare_queue(&QueueSpec::durable(named))
        .await
        .unwrap();
    transport.bind(named, "nameko-rpc", named).await.unwrap();
    let catcher = "catcher";
    transport
        .declare_queue(&QueueSpec::durable(catcher))
        .await
        .unwrap();
    for key in [
        "rpc.reply-test-absent",
        "0a1322eb-ce57-4fc3-a42a-d9d6787fed0a",
    ] {
        transport.bind(catcher, "nameko-rpc", key).await.unwrap();
    }
    let request = |reply_to: &str| {
        Message::json(br#"{"args":["Ann"],"kwargs":{}}"#.to_vec())
            .with_correlation_id(reply_to)
            .with_reply_to(reply_to)
    };
    let options = ConsumeOptions {
        prefetch: 0,
        ..Default::default()
    };
    let mut replies = transport.consume(named, options).await.unwrap();
    let mut caught = transport.consume(catcher, options).await.unwrap();
    for reply_to in [
        named,
        "rpc.reply-test-absent",
        "0a1322eb-ce57-4fc3-a42a-d9d6787fed0a",
    ] {
        transport
            .publish(
                "nameko-rpc",
                "greeter.greet",
                request(reply_to),
                PublishOptions::default(),
            )
            .await
            .unwrap();
        let consumer = if reply_to == named {
            &mut replies
        } else {
            &mut caught
        };
        let reply = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a reply in time")
            .expect("the consumer is open");
        let expected_exchange = if reply_to == named { "" } else { "nameko-rpc" };
        assert_eq!(&*reply.exchange, expected_exchange, "reply_to {reply_to}");
        assert_eq!(&*reply.routing_key, reply_to);
        assert_eq!(
            reply.message.properties.correlation_id.as_deref(),
            Some(reply_to)
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&reply.message.body).unwrap(),
            json!({"result": "Hello, Ann!", "error": null})
        );
        reply.ack().await.unwrap();
    }
    cluster.stop().await;
}

/// On RabbitMQ a client acks its replies several at a time (one
/// `basic.ack` with `multiple`): every reply of a burst of calls is acked
/// once the burst is over, none is left unacknowledged on the reply queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_on_rabbitmq_leaves_no_reply_unacked() {
    let Some((vhost, transport)) = on_rabbitmq().await else {
        return;
    };
    let (runner, rpc) = backlog_with_client(transport.clone(), 32).await;
    let key = uuid::Uuid::new_v4().to_string();
    let calls = (0..300).map(|i| {
        let (rpc, key) = (rpc.clone(), key.clone());
        async move {
            rpc.service("backlog")
                .call("mark", json!([key, i.to_string()]))
                .await
                .unwrap()
        }
    });
    let replies = futures::future::join_all(calls).await;
    assert_eq!(
        replies,
        (0..300).map(|i| json!(i.to_string())).collect::<Vec<_>>()
    );
    // The reply queue: name, unacknowledged, ready.
    let reply_queue = || -> Vec<String> {
        vhost
            .list_queues(&["name", "messages_unacknowledged", "messages_ready"])
            .lines()
            .find(|l| l.starts_with(rpc.reply_queue()))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = reply_queue();
        if listed.get(1..) == Some(&["0".to_owned(), "0".to_owned()][..]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replies left unacked on the reply queue: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rpc.close().await;
    runner.stop().await;
    enoki::transport::Transport::close(&*transport).await;
}
