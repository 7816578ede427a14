//! Events on the embedded transport: the three handler types, several
//! instances of one service, requeue_on_error, and context propagation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use enoki::prelude::*;
use enoki::testing::{Cluster, MockProvider, entrypoint_waiter};
use enoki::transport::MemoryTransport;
use parking_lot::Mutex;
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<(String, Value, Value)>>>;

/// The example greeter itself: `hello(name)` dispatches `greeted`.
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/greeter.rs"]
mod greeter;
use greeter::{Greeter, GreeterClient};

#[derive(Dependencies)]
struct Listener {
    #[dependency(MockProvider::new(Seen::default()))]
    seen: Seen,
}

impl Listener {
    fn record(&self, kind: &str, payload: Value, ctx: &WorkerCtx) {
        let context = json!({ "data": ctx.context_data(), "stack": ctx.call_id_stack() });
        self.seen.lock().push((kind.to_owned(), payload, context));
    }
}

#[service(name = "listener")]
impl Listener {
    #[event_handler("greeter", "greeted")]
    async fn pool(&self, payload: Value, ctx: &WorkerCtx) -> Result<(), RemoteError> {
        self.record("service_pool", payload, ctx);
        Ok(())
    }

    #[event_handler("greeter", "greeted", handler_type = singleton)]
    async fn single(&self, payload: Value, ctx: &WorkerCtx) -> Result<(), RemoteError> {
        self.record("singleton", payload, ctx);
        Ok(())
    }

    #[event_handler("greeter", "greeted", handler_type = broadcast)]
    async fn everyone(&self, payload: Value, ctx: &WorkerCtx) -> Result<(), RemoteError> {
        self.record("broadcast", payload, ctx);
        Ok(())
    }
}

/// Starts another instance of `service` on another connection to the same
/// broker, with its own `seen` log.
async fn instance(transport: &Arc<MemoryTransport>, seen: &Seen) -> ServiceRunner {
    let mut def = enoki::service::<Listener>();
    def.replace_dependency("seen", MockProvider::new(seen.clone()))
        .unwrap();
    let mut runner = ServiceRunner::new(transport.connect(), Settings::new());
    runner.add(def);
    runner.start().await.unwrap();
    runner
}

async fn settle() {
    // Events are asynchronous: give in-flight handlers time to finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn kinds(seen: &Seen) -> Vec<String> {
    let mut kinds: Vec<String> = seen.lock().iter().map(|(k, _, _)| k.clone()).collect();
    kinds.sort();
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_handler_type_gets_the_event_with_its_context() {
    let cluster = Cluster::start([enoki::service::<Greeter>()]).await.unwrap();
    let seen = Seen::default();
    let listener = instance(&cluster.transport(), &seen).await;

    let rpc = cluster
        .rpc()
        .with_context_data(json!({"user_id": 42}).as_object().unwrap().clone());
    assert_eq!(
        GreeterClient::new(&rpc).hello("Ann".into()).await.unwrap(),
        "Hello, Ann!"
    );
    settle().await;

    assert_eq!(kinds(&seen), vec!["broadcast", "service_pool", "singleton"]);
    for (_, payload, context) in seen.lock().iter() {
        assert_eq!(payload, &json!({"name": "Ann"}));
        assert_eq!(context["data"]["user_id"], 42);
        let stack: Vec<&str> = context["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(stack.len(), 3, "{stack:?}");
        assert!(stack[0].starts_with("standalone_rpc_proxy.call."));
        assert!(stack[1].starts_with("greeter.hello."));
        assert!(stack[2].starts_with("listener."));
    }
    listener.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_pool_and_singleton_but_both_get_broadcasts() {
    let cluster = Cluster::start([enoki::service::<Greeter>()]).await.unwrap();
    let (a, b) = (Seen::default(), Seen::default());
    let first = instance(&cluster.transport(), &a).await;
    let second = instance(&cluster.transport(), &b).await;

    let greeter = GreeterClient::new(cluster.rpc());
    const N: usize = 20;
    for i in 0..N {
        greeter.hello(format!("n{i}")).await.unwrap();
    }
    settle().await;

    let count = |seen: &Seen, kind: &str| seen.lock().iter().filter(|(k, _, _)| k == kind).count();
    // Broadcast: every instance gets every event.
    assert_eq!(count(&a, "broadcast"), N);
    assert_eq!(count(&b, "broadcast"), N);
    // Service pool and singleton: each event handled once in total, and
    // both instances take part.
    for kind in ["service_pool", "singleton"] {
        assert_eq!(count(&a, kind) + count(&b, kind), N, "{kind}");
        assert!(
            count(&a, kind) > 0 && count(&b, kind) > 0,
            "{kind} not shared"
        );
    }
    first.stop().await;
    second.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn queues_have_nameko_names() {
    let cluster = Cluster::start([enoki::service::<Greeter>()]).await.unwrap();
    let seen = Seen::default();
    let listener = instance(&cluster.transport(), &seen).await;
    let names = cluster.transport().queue_names();
    assert!(names.contains(&"rpc-greeter".to_owned()), "{names:?}");
    assert!(
        names.contains(&"evt-greeter-greeted--listener.pool".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"evt-greeter-greeted".to_owned()),
        "{names:?}"
    );
    let broadcast: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("evt-greeter-greeted--listener.everyone-"))
        .collect();
    assert_eq!(broadcast.len(), 1, "{names:?}");
    assert_eq!(
        broadcast[0].rsplit('-').next().unwrap().len(),
        32,
        "uuid4 hex identifier"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("rpc.reply-standalone_rpc_proxy-"))
    );
    listener.stop().await;
    // The broadcast queue is exclusive and auto-delete: it goes with its instance.
    let names = cluster.transport().queue_names();
    assert!(
        !names.iter().any(|n| n.contains("listener.everyone-")),
        "{names:?}"
    );
    assert!(names.contains(&"evt-greeter-greeted--listener.pool".to_owned()));
    cluster.stop().await;
}

#[derive(Dependencies)]
struct Flaky {
    #[dependency(MockProvider::new(Arc::new(AtomicUsize::new(0))))]
    attempts: Arc<AtomicUsize>,
}

#[service(name = "flaky")]
impl Flaky {
    /// Fails twice, then succeeds: retried until it does.
    #[event_handler("shop", "sold", requeue_on_error = true)]
    async fn retrying(&self, item: String) -> Result<String, RemoteError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt < 3 {
            return Err(RemoteError::new("Flaky", format!("attempt {attempt}")));
        }
        Ok(format!("{item} after {attempt}"))
    }

    /// Fails once and the event is dropped.
    #[event_handler("shop", "returned")]
    async fn dropping(&self, _item: String) -> Result<(), RemoteError> {
        Err(RemoteError::new("Nope", "never works"))
    }
}

#[tokio::test(start_paused = true)]
async fn requeue_on_error_redelivers_and_default_drops() {
    let cluster = Cluster::start([enoki::service::<Flaky>()]).await.unwrap();
    let container = cluster.container("flaky").unwrap();

    let waiter = entrypoint_waiter(container, "retrying").filter(|r| r.result().is_ok());
    cluster
        .dispatch("shop", "sold", &json!("hat"))
        .await
        .unwrap();
    let record = waiter.wait().await.unwrap();
    assert_eq!(record.result().unwrap(), json!("hat after 3"));
    // Through the first two delay queues, now empty.
    for queue in [
        "evt-shop-sold--flaky.retrying.retry.1000",
        "evt-shop-sold--flaky.retrying.retry.5000",
    ] {
        assert_eq!(cluster.transport().ready_count(queue), Some(0), "{queue}");
    }

    let waiter = entrypoint_waiter(container, "dropping");
    cluster
        .dispatch("shop", "returned", &json!("hat"))
        .await
        .unwrap();
    assert_eq!(
        waiter.wait().await.unwrap().result().unwrap_err().exc_type,
        "Nope"
    );
    settle().await;
    assert_eq!(
        cluster
            .transport()
            .ready_count("evt-shop-returned--flaky.dropping"),
        Some(0)
    );

    // A payload that does not fit the handler is dropped, not requeued
    // forever, even with requeue_on_error.
    let waiter = entrypoint_waiter(container, "retrying");
    cluster
        .dispatch("shop", "sold", &json!({"not": "a string"}))
        .await
        .unwrap();
    let err = waiter.wait().await.unwrap().result().unwrap_err();
    assert_eq!(err.exc_type, "IncorrectSignature");
    settle().await;
    assert_eq!(
        cluster
            .transport()
            .ready_count("evt-shop-sold--flaky.retrying"),
        Some(0)
    );
    cluster.stop().await;
}

#[derive(Dependencies)]
struct Poisoned;

/// When `poisoned.on_sold` ran (one test uses it).
static POISON_ATTEMPTS: Mutex<Vec<tokio::time::Instant>> = Mutex::new(Vec::new());

#[service(name = "poisoned")]
impl Poisoned {
    /// Fails four times, then works.
    #[event_handler("shop", "sold", requeue_on_error = true)]
    async fn on_sold(&self, item: Value) -> Result<Value, RemoteError> {
        let mut attempts = POISON_ATTEMPTS.lock();
        attempts.push(tokio::time::Instant::now());
        if attempts.len() > 4 {
            return Ok(item);
        }
        Err(RemoteError::new("Poison", "cannot handle it"))
    }
}

/// With `RETRY_DELAYS` [1, 5] and `RETRY_LIMIT` 3, an event that keeps
/// failing runs four times, 1 s, 5 s and 5 s apart, then sits in the
/// dead-letter queue, where `dlq::list` shows where it came from and
/// `dlq::replay` sends it back to its handler (and only it).
#[tokio::test(start_paused = true)]
async fn a_failing_event_is_retried_with_backoff_then_dead_lettered() {
    let settings = Settings::new()
        .with("RETRY_DELAYS", json!([1, 5]))
        .with("RETRY_LIMIT", json!(3));
    let cluster = Cluster::start_with(
        [enoki::service::<Poisoned>(), enoki::service::<Flaky>()],
        settings,
    )
    .await
    .unwrap();
    let container = cluster.container("poisoned").unwrap();
    let queue = "evt-shop-sold--poisoned.on_sold";
    let dlq = format!("{queue}.dlq");
    let transport = cluster.transport();
    assert_eq!(transport.ready_count(&dlq), Some(0));

    let started = tokio::time::Instant::now();
    let fourth = entrypoint_waiter(container, "on_sold")
        .timeout(Duration::from_secs(60))
        .filter({
            let seen = AtomicUsize::new(0);
            move |_| seen.fetch_add(1, Ordering::SeqCst) == 3
        });
    cluster
        .dispatch("shop", "sold", &json!({"n": 1}))
        .await
        .unwrap();
    let record = fourth.wait().await.unwrap();
    assert_eq!(record.result().unwrap_err().exc_type, "Poison");
    tokio::time::timeout(Duration::from_secs(1), async {
        while transport.ready_count(&dlq) != Some(1) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the event reaches the dead-letter queue");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(11) && elapsed < Duration::from_secs(12),
        "{elapsed:?}"
    );
    let gaps: Vec<Duration> = POISON_ATTEMPTS
        .lock()
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert_eq!(gaps.len(), 3);
    for (gap, delay) in gaps.iter().zip([1, 5, 5]) {
        let delay = Duration::from_secs(delay);
        assert!(
            *gap >= delay && *gap < delay + Duration::from_millis(100),
            "{gaps:?}"
        );
    }
    for delay in ["1000", "5000"] {
        assert_eq!(
            transport.ready_count(&format!("{queue}.retry.{delay}")),
            Some(0)
        );
    }
    assert_eq!(transport.ready_count(queue), Some(0));

    let letters = enoki::dlq::list(&*transport, queue, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].queue, queue);
    assert_eq!(letters[0].reason, "rejected");
    assert_eq!(letters[0].count, 4);
    assert_eq!(letters[0].exchange, "shop.events");
    assert_eq!(letters[0].routing_key, "sold");
    assert_eq!(
        transport.ready_count(&dlq),
        Some(1),
        "listing leaves it there"
    );

    // Replayed to this handler only (flaky.retrying also handles `sold`):
    // its fifth run works.
    let flaky = entrypoint_waiter(cluster.container("flaky").unwrap(), "retrying")
        .timeout(Duration::from_secs(3));
    let works = entrypoint_waiter(container, "on_sold")
        .timeout(Duration::from_secs(60))
        .filter(|record| record.result().is_ok());
    let replayed = enoki::dlq::replay(&*transport, queue, 10).await.unwrap();
    assert_eq!(replayed.replayed, 1);
    assert_eq!(
        works.wait().await.unwrap().result().unwrap(),
        json!({"n": 1})
    );
    assert_eq!(transport.ready_count(&dlq), Some(0));
    assert!(
        flaky.wait().await.is_err(),
        "the other handler of `sold` did not get it again"
    );
    cluster.stop().await;
}

/// A standalone publisher declares a source's exchange once, not on every
/// dispatch; an auto-delete exchange that went away since (its last
/// binding gone) is declared again, and the event still goes out.
#[tokio::test]
async fn a_publisher_declares_once_and_again_when_the_exchange_went_away() {
    use enoki::transport::{ConsumeOptions, QueueSpec, Transport};
    let transport = MemoryTransport::new();
    let settings = Settings::new().with("AUTO_DELETE_EVENT_EXCHANGES", json!(true));
    let publisher = EventPublisher::new(transport.clone(), &settings);
    let queue = QueueSpec {
        exclusive: true,
        auto_delete: true,
        durable: false,
        ..QueueSpec::durable("watch")
    };
    let watch = async |n: u64| {
        transport.declare_queue(&queue).await.unwrap();
        transport.bind("watch", "src.events", "#").await.unwrap();
        let mut consumer = transport
            .consume("watch", ConsumeOptions::default())
            .await
            .unwrap();
        publisher.dispatch("src", "ping", &n).await.unwrap();
        let delivery = consumer.next().await.expect("the event");
        assert_eq!(&delivery.message.body[..], n.to_string().as_bytes());
        delivery.ack().await.unwrap();
        // The queue goes with its consumer, and the exchange with its
        // last binding.
        drop(consumer);
    };
    publisher.dispatch("src", "ping", &0).await.unwrap();
    watch(1).await;
    assert!(
        !transport.exchange_exists("src.events").await.unwrap(),
        "the auto-delete exchange went with its last binding"
    );
    // Declared again for this dispatch, then bound and seen.
    publisher.dispatch("src", "ping", &2).await.unwrap();
    assert!(transport.exchange_exists("src.events").await.unwrap());
    watch(3).await;
}
