//! Container lifecycle: provider hooks in nameko's order, `max_workers`,
//! graceful stop that drains workers, the grace timeout, kill, and acks
//! only after the worker is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use enoki::outcome::Outcome;
use enoki::prelude::*;
use enoki::testing::{Cluster, entrypoint_hook, replace_dependencies, restrict_entrypoints};
use parking_lot::Mutex;
use serde_json::{Map, json};

type Log = Arc<Mutex<Vec<String>>>;

/// Records every hook it sees.
#[derive(Default)]
struct Recorder {
    log: Log,
}

impl Recorder {
    fn push(&self, entry: impl Into<String>) {
        self.log.lock().push(entry.into());
    }
}

impl DependencyProvider for Recorder {
    type Dependency = Log;

    async fn setup(&mut self, ctx: &ContainerCtx) -> enoki::Result<()> {
        self.push(format!("setup {}", ctx.service_name()));
        Ok(())
    }
    async fn start(&self) -> enoki::Result<()> {
        self.push("start");
        Ok(())
    }
    async fn stop(&self) {
        self.push("stop");
    }
    fn kill(&self) {
        self.push("kill");
    }
    fn get_dependency(&self, worker: &WorkerCtx) -> Log {
        self.push(format!("get_dependency {}", worker.entrypoint()));
        self.log.clone()
    }
    async fn worker_setup(&self, worker: &WorkerCtx) {
        self.push(format!("worker_setup {}", worker.entrypoint()));
    }
    async fn worker_result(&self, _worker: &WorkerCtx, outcome: &Outcome) {
        self.push(format!(
            "worker_result {}",
            if outcome.is_ok() { "ok" } else { "err" }
        ));
    }
    async fn worker_teardown(&self, worker: &WorkerCtx) {
        self.push(format!("worker_teardown {}", worker.entrypoint()));
    }
}

/// Tracks how many workers run at once.
#[derive(Default, Clone)]
struct Gauge {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

#[derive(Dependencies)]
struct Busy {
    #[dependency(Recorder)]
    log: Log,
    #[dependency(enoki::testing::MockProvider::new(Gauge::default()))]
    gauge: Gauge,
}

#[service(name = "busy")]
impl Busy {
    #[rpc]
    async fn work(&self, millis: u64) -> Result<u64, RemoteError> {
        let now = self.gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.gauge.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        self.gauge.now.fetch_sub(1, Ordering::SeqCst);
        self.log.lock().push(format!("ran {millis}"));
        Ok(millis)
    }

    #[rpc]
    async fn fail(&self) -> Result<(), RemoteError> {
        Err(RemoteError::new("Boom", "no"))
    }

    #[timer(interval = 3600, eager = true)]
    async fn noisy_timer(&self) -> Result<(), RemoteError> {
        self.log.lock().push("timer ran".into());
        Ok(())
    }
}

#[tokio::test]
async fn provider_hooks_run_in_nameko_order() {
    let log = Log::default();
    let mut builder = Cluster::builder([enoki::service::<Busy>()], Settings::new());
    let container = builder.container_mut("busy").unwrap();
    replace_dependencies(container, "log", Recorder { log: log.clone() }).unwrap();
    restrict_entrypoints(container, &["work", "fail"]).unwrap();
    let cluster = builder.start().await.unwrap();

    let busy = BusyClient::new(cluster.rpc());
    assert_eq!(busy.work(1).await.unwrap(), 1);
    assert!(busy.fail().await.is_err());
    cluster.stop().await;

    let log = log.lock().clone();
    assert_eq!(
        log,
        vec![
            "setup busy",
            "start",
            "get_dependency work",
            "worker_setup work",
            "ran 1",
            "worker_result ok",
            "worker_teardown work",
            "get_dependency fail",
            "worker_setup fail",
            "worker_result err",
            "worker_teardown fail",
            "stop",
        ]
    );
}

#[tokio::test]
async fn replacing_with_the_wrong_type_or_name_is_an_error() {
    let mut builder = Cluster::builder([enoki::service::<Busy>()], Settings::new());
    let container = builder.container_mut("busy").unwrap();
    let err = replace_dependencies(container, "nope", Recorder::default()).unwrap_err();
    assert!(
        err.to_string().contains("no dependency named `nope`"),
        "{err}"
    );
    let err = replace_dependencies(container, "gauge", Recorder::default()).unwrap_err();
    assert!(err.to_string().contains("dependency `gauge` is a"), "{err}");
    let err = restrict_entrypoints(container, &["nope"]).unwrap_err();
    assert!(err.to_string().contains("no entrypoint `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_workers_bounds_concurrency() {
    let gauge = Gauge::default();
    let settings = Settings::new().with("max_workers", 3.into());
    let mut builder = Cluster::builder([enoki::service::<Busy>()], settings);
    let container = builder.container_mut("busy").unwrap();
    replace_dependencies(
        container,
        "gauge",
        enoki::testing::MockProvider::new(gauge.clone()),
    )
    .unwrap();
    restrict_entrypoints(container, &["work"]).unwrap();
    let cluster = builder.start().await.unwrap();

    let busy = BusyClient::new(cluster.rpc());
    let calls = (0..12).map(|_| {
        let busy = busy.clone();
        async move { busy.work(30).await.unwrap() }
    });
    futures::future::join_all(calls).await;
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
    cluster.stop().await;
}

/// Waits (at most 10 s) until the `busy` container runs one worker: the
/// call was delivered and is in flight.
async fn busy_worker_running(cluster: &enoki::testing::Cluster) {
    let container = cluster.container("busy").expect("busy runs");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while container.running_workers() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never reached its worker"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_drains_in_flight_workers() {
    let cluster = Cluster::start([enoki::service::<Busy>()]).await.unwrap();
    let rpc = cluster.rpc().clone();
    let call = tokio::spawn(async move { BusyClient::new(&rpc).work(300).await });
    busy_worker_running(&cluster).await;
    cluster.runner().stop().await;
    // The in-flight call finished and got its reply before stop returned.
    assert_eq!(call.await.unwrap().unwrap(), 300);
    // After stop, nothing consumes: a new call waits in the queue.
    let quick = cluster.rpc().with_timeout(Duration::from_millis(100));
    let err = quick
        .call("busy", "work", json!([1]), Map::new())
        .await
        .unwrap_err();
    assert!(matches!(err, enoki::Error::RpcTimeout { .. }), "{err:?}");
    assert_eq!(cluster.transport().ready_count("rpc-busy"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_then_kill_requeues_the_unfinished_request() {
    let settings = Settings::new().with("GRACE_PERIOD", 0.1.into());
    let cluster = Cluster::start_with([enoki::service::<Busy>()], settings)
        .await
        .unwrap();
    let rpc = cluster.rpc().with_timeout(Duration::from_secs(5));
    let call = tokio::spawn(async move { BusyClient::new(&rpc).work(60_000).await });
    busy_worker_running(&cluster).await;
    let started = std::time::Instant::now();
    cluster.runner().stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop waited {:?}",
        started.elapsed()
    );
    // The killed worker never acked: the request is back on the queue.
    assert_eq!(cluster.transport().ready_count("rpc-busy"), Some(1));
    call.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_acked_only_after_its_worker_is_done() {
    let cluster = Cluster::start([enoki::service::<Busy>()]).await.unwrap();
    let rpc = cluster.rpc().clone();
    let call = tokio::spawn(async move { BusyClient::new(&rpc).work(300).await });
    busy_worker_running(&cluster).await;
    // In flight: delivered, not acked, so killing the container puts it back.
    cluster.runner().kill().await;
    assert_eq!(cluster.transport().ready_count("rpc-busy"), Some(1));
    // Given back once, not counted as a crash over and over until parked.
    assert_eq!(
        cluster.transport().ready_count("rpc-busy.dlq").unwrap_or(0),
        0
    );
    call.abort();
}

#[tokio::test]
async fn entrypoint_hook_runs_timers_and_rpc_through_workers() {
    let log = Log::default();
    let mut builder = Cluster::builder([enoki::service::<Busy>()], Settings::new());
    let container = builder.container_mut("busy").unwrap();
    replace_dependencies(container, "log", Recorder { log: log.clone() }).unwrap();
    let cluster = builder.start().await.unwrap();
    let container = cluster.container("busy").unwrap();
    // The eager timer fired once at start.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.lock().iter().filter(|l| *l == "timer ran").count(), 1);
    entrypoint_hook(container, "noisy_timer")
        .tick()
        .await
        .unwrap();
    assert_eq!(log.lock().iter().filter(|l| *l == "timer ran").count(), 2);
    assert_eq!(
        entrypoint_hook(container, "work")
            .call(json!([5]))
            .await
            .unwrap(),
        json!(5)
    );
    let err = entrypoint_hook(container, "fail")
        .call(json!([]))
        .await
        .unwrap_err();
    assert_eq!(err.exc_type, "Boom");
    let err = entrypoint_hook(container, "nope")
        .call(json!([]))
        .await
        .unwrap_err();
    assert!(err.value.contains("no entrypoint `nope`"), "{err}");
    cluster.stop().await;
}

#[tokio::test]
async fn settings_of_the_wrong_type_stop_the_start_naming_the_key() {
    let transport = enoki::transport::MemoryTransport::new();
    let settings = Settings::new().with("max_workers", json!("lots"));
    let mut container = enoki::ServiceContainer::new(enoki::service::<Busy>(), transport, settings);
    let err = container.start().await.unwrap_err().to_string();
    assert!(
        err.contains("`max_workers`") && err.contains("\"lots\""),
        "{err}"
    );
    assert_eq!(container.running_workers(), 0);
}
