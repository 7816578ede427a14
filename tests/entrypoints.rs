//! A user-written entrypoint (the public `Entrypoint` trait) running in a
//! container beside `#[rpc]` methods: one that consumes a plain queue and
//! hands each message to an `#[entrypoint]` method, on the embedded broker
//! and on RabbitMQ. It gets the container's worker pool: the `max_workers`
//! bound, the result callback (ack or reject), stop and kill.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use enoki::entrypoint::{Entrypoint, settle};
use enoki::message::Message;
use enoki::prelude::*;
use enoki::transport::{
    AmqpOptions, AmqpTransport, ConsumeOptions, MemoryTransport, PublishOptions, QueueSpec,
    Transport,
};
use enoki::worker::WorkerPool;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

/// Runs `method` for every message on `queue`: acks when it succeeds,
/// rejects (no requeue) when it fails.
struct QueueConsumer {
    queue: &'static str,
    method: &'static str,
}

impl Entrypoint for QueueConsumer {
    async fn setup(&mut self, ctx: &ContainerCtx) -> enoki::Result<()> {
        ctx.transport()
            .declare_queue(&QueueSpec::durable(self.queue))
            .await
    }

    async fn start(&mut self, workers: WorkerPool) -> enoki::Result<()> {
        let method = workers.method(self.method).ok_or_else(|| {
            enoki::Error::Lifecycle(format!("no entrypoint method `{}`", self.method))
        })?;
        let options = ConsumeOptions {
            prefetch: workers.max_workers() as u16,
            ..ConsumeOptions::default()
        };
        let mut consumer = workers
            .ctx()
            .transport()
            .consume(self.queue, options)
            .await?;
        let pool = workers.clone();
        workers.spawn_managed(async move {
            loop {
                let delivery = tokio::select! {
                    () = pool.stopped() => break,
                    delivery = consumer.next() => match delivery {
                        Some(delivery) => delivery,
                        None => break,
                    },
                };
                let Some(slot) = pool.slot().await else { break };
                let payload = delivery.message.body.clone();
                pool.spawn(
                    slot,
                    method,
                    payload,
                    enoki::context::Incoming::default(),
                    move |outcome| async move {
                        match &outcome {
                            Ok(_) => settle(delivery.ack().await),
                            Err(_) => settle(delivery.reject(false).await),
                        }
                        outcome
                    },
                );
            }
        });
        Ok(())
    }
}

/// What a job saw.
#[derive(Debug)]
struct Seen {
    job: Value,
    entrypoint: String,
    call_id: String,
}

/// The test's view into the service: a channel of jobs seen, a gate that
/// holds jobs back, and a count of jobs running at once.
#[derive(Clone)]
struct Probe {
    seen: mpsc::UnboundedSender<Seen>,
    gate: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

struct ProbeProvider(Probe);

impl DependencyProvider for ProbeProvider {
    type Dependency = Probe;
    fn get_dependency(&self, _worker: &WorkerCtx) -> Probe {
        self.0.clone()
    }
}

#[derive(Dependencies)]
struct Jobs {
    #[dependency(ProbeProvider(unreachable_probe()))]
    probe: Probe,
}

/// The default provider is always replaced by the test's own.
fn unreachable_probe() -> Probe {
    let (seen, _) = mpsc::unbounded_channel();
    Probe {
        seen,
        gate: Arc::new(Semaphore::new(0)),
        running: Arc::default(),
        most: Arc::default(),
    }
}

#[service(name = "jobs")]
impl Jobs {
    /// Waits at the gate, then records the job; `{"fail": true}` fails.
    #[entrypoint]
    async fn process(&self, job: Value, ctx: &WorkerCtx) -> Result<(), RemoteError> {
        let probe = &self.probe;
        let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
        probe.most.fetch_max(now, Ordering::SeqCst);
        let permit = probe.gate.acquire().await;
        probe.running.fetch_sub(1, Ordering::SeqCst);
        drop(permit);
        let fail = job["fail"] == json!(true);
        let _ = probe.seen.send(Seen {
            job,
            entrypoint: ctx.entrypoint().to_owned(),
            call_id: ctx.call_id().to_owned(),
        });
        if fail {
            return Err(RemoteError::new("JobFailed", "this job always fails"));
        }
        Ok(())
    }

    #[rpc]
    async fn ping(&self) -> Result<String, RemoteError> {
        Ok("pong".into())
    }
}

const QUEUE: &str = "jobs.incoming";

async fn publish_job(transport: &Arc<dyn Transport>, job: Value) {
    // The default exchange routes to the queue named by the routing key.
    transport
        .publish(
            "",
            QUEUE,
            Message::json(job.to_string()),
            PublishOptions::default(),
        )
        .await
        .unwrap();
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a job was handled within 10 s")
        .expect("the service is running")
}

/// Waits (bounded) until `condition` holds.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The scenario, on any transport: jobs are handled by the user's
/// entrypoint, at most `max_workers` at a time, beside a working RPC
/// method; a failing job is rejected and not seen again; the container
/// stops cleanly. `ready` tells how many messages wait in the queue.
async fn scenario(transport: Arc<dyn Transport>, ready: impl Fn() -> usize) {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let probe = Probe {
        seen: seen_tx,
        gate: Arc::new(Semaphore::new(0)),
        running: Arc::default(),
        most: Arc::default(),
    };
    let settings = Settings::new().with("max_workers", json!(2));
    let mut def = enoki::service::<Jobs>().with_entrypoint(QueueConsumer {
        queue: QUEUE,
        method: "process",
    });
    def.replace_dependency("probe", ProbeProvider(probe.clone()))
        .unwrap();
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    runner.add(def);
    runner.start().await.unwrap();

    // Six jobs against max_workers = 2: two run, the rest wait in the queue.
    for n in 0..6 {
        publish_job(&transport, json!({ "n": n })).await;
    }
    until("two jobs running", || {
        probe.running.load(Ordering::SeqCst) == 2
    })
    .await;
    let container = runner.container("jobs").unwrap();
    assert_eq!(container.running_workers(), 2);
    assert_eq!(container.workers().unwrap().max_workers(), 2);

    // The RPC entrypoint is served meanwhile... but by the same pool, so it
    // needs a free slot: let the jobs through first.
    probe.gate.add_permits(1000);
    let mut numbers = Vec::new();
    for _ in 0..6 {
        let job = next_seen(&mut seen).await;
        assert_eq!(job.entrypoint, "process");
        assert!(job.call_id.starts_with("jobs.process."), "{}", job.call_id);
        numbers.push(job.job["n"].as_i64().unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, vec![0, 1, 2, 3, 4, 5]);
    assert!(
        probe.most.load(Ordering::SeqCst) <= 2,
        "more than max_workers ran at once"
    );

    let rpc = ClusterRpc::connect(transport.clone(), &settings)
        .await
        .unwrap();
    let pong = rpc
        .call("jobs", "ping", json!([]), Default::default())
        .await
        .unwrap();
    assert_eq!(pong, json!("pong"));

    // A failing job is handled once, rejected without requeue, and gone.
    publish_job(&transport, json!({ "n": 6, "fail": true })).await;
    let failed = next_seen(&mut seen).await;
    assert_eq!(failed.job["fail"], json!(true));
    until("the failed job left the queue", || ready() == 0).await;
    publish_job(&transport, json!({ "n": 7 })).await;
    let after = next_seen(&mut seen).await;
    assert_eq!(after.job["n"], json!(7), "the failed job came back");

    rpc.close().await;
    tokio::time::timeout(Duration::from_secs(10), runner.stop())
        .await
        .expect("the container stops with a user-written entrypoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_entrypoint_on_the_embedded_broker() {
    let transport = MemoryTransport::new();
    let probe = transport.clone();
    scenario(transport, move || probe.ready_count(QUEUE).unwrap_or(0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_entrypoint_on_rabbitmq() {
    let Some(vhost) = common::amqp::TestVhost::create() else {
        return;
    };
    let transport = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
        .await
        .unwrap();
    let name = vhost.name.clone();
    let ready = move || {
        let out = common::amqp::rabbitmqctl(&[
            "list_queues",
            "-q",
            "--no-table-headers",
            "-p",
            &name,
            "name",
            "messages_ready",
        ]);
        out.lines()
            .filter_map(|line| {
                let mut cols = line.split_whitespace();
                (cols.next() == Some(QUEUE)).then(|| cols.next()?.parse().ok())?
            })
            .next()
            .unwrap_or(0)
    };
    scenario(transport.clone(), ready).await;
    transport.close().await;
}

#[tokio::test]
async fn an_entrypoint_for_an_unknown_method_stops_the_start() {
    let transport = MemoryTransport::new();
    let mut runner = ServiceRunner::new(transport, Settings::new());
    runner.add(enoki::service::<Jobs>().with_entrypoint(QueueConsumer {
        queue: QUEUE,
        method: "nosuch",
    }));
    let err = runner.start().await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("service `jobs` failed to start")
            && message.contains("no entrypoint method `nosuch`"),
        "{message}"
    );
    // The cause is kept, not only its text.
    let source = std::error::Error::source(&err).expect("the start error keeps its cause");
    assert!(source.to_string().contains("nosuch"));
}
