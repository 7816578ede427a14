//! Service metrics: what each service of a process does, per entrypoint,
//! in Prometheus' text format. Off unless asked for: `enoki run --metrics
//! ADDR` serves them at `http://ADDR/metrics`, and the gateway's
//! `/metrics` adds those of the services it embeds. A
//! [`ServiceRunner`](crate::ServiceRunner) records them once given a
//! registry ([`ServiceRunner::metrics`](crate::ServiceRunner::metrics)).
//!
//! - `enoki_workers_running{service}`, `enoki_max_workers{service}`
//!   (gauges, read when rendered);
//! - `enoki_entrypoint_handled_total{service, entrypoint, outcome}`: workers
//!   that finished, `outcome` `ok` or `error` (RPC calls, events, timer
//!   ticks and `#[http]` requests alike);
//! - `enoki_entrypoint_duration_seconds{service, entrypoint, outcome}`
//!   (histogram): how long the method ran;
//! - `enoki_queue_redeliveries_total{service, queue}`: deliveries the
//!   broker flagged as redelivered;
//! - `enoki_queue_retries_total{service, queue}`: failed events sent to a
//!   delay queue ([`retry`](crate::entrypoint::retry));
//! - `enoki_queue_dead_letters_total{service, queue}`: messages enoki
//!   parked in `<queue>.dlq` (past the retries, or past the delivery limit
//!   on a classic queue);
//! - `enoki_queue_messages{service, queue}` (gauge): the messages ready in
//!   each work queue and its `<queue>.dlq`, asked of the broker when
//!   rendered ([`ServiceMetrics::render_with_queues`]).
//!
//! Label values are the services' own declared names (services,
//! entrypoint methods, the queues their entrypoints declared), so the
//! number of series is bounded by the code, never by traffic.
//!
//! ```
//! use enoki::prelude::*;
//! use enoki::service_metrics::ServiceMetrics;
//!
//! #[derive(Dependencies)]
//! struct Greeter;
//!
//! #[service(name = "greeter")]
//! impl Greeter {
//!     #[rpc]
//!     async fn hello(&self, name: String) -> Result<String, RemoteError> {
//!         Ok(format!("Hello, {name}!"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
//! let transport = enoki::transport::MemoryTransport::new();
//! let metrics = ServiceMetrics::new();
//! let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
//! runner.metrics(metrics.clone()).add(enoki::service::<Greeter>());
//! runner.start().await?;
//! let rpc = ClusterRpc::connect(transport, &Settings::new()).await?;
//! rpc.service("greeter").call("hello", serde_json::json!(["Ann"])).await?;
//! let text = metrics.render_with_queues().await;
//! assert!(text.contains(r#"enoki_entrypoint_handled_total{service="greeter",entrypoint="hello",outcome="ok"} 1"#), "{text}");
//! assert!(text.contains(r#"enoki_queue_messages{service="greeter",queue="rpc-greeter"} 0"#), "{text}");
//! # runner.stop().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use parking_lot::Mutex;

use crate::transport::Transport;

const METADATA: Metadata<'static> = Metadata::new("enoki::service", Level::INFO, None);

/// Handler latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A Prometheus recorder of its own (not the process-global one), with
/// these histogram buckets; the gateway's metrics use one too.
pub(crate) fn recorder(buckets: &[f64]) -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets(buckets)
        .expect("static buckets are valid")
        .build_recorder()
}

/// The registry of a process's service metrics. Cheap to clone.
#[derive(Clone)]
pub struct ServiceMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pools: Mutex<Vec<PoolProbe>>,
    queues: Mutex<Vec<QueueProbe>>,
}

/// Reads a pool's gauges when rendering.
struct PoolProbe {
    running: Gauge,
    read: Box<dyn Fn() -> Option<usize> + Send + Sync>,
}

/// Asks the broker for a queue's depth when rendering.
struct QueueProbe {
    queue: String,
    depth: Gauge,
    transport: Weak<dyn Transport>,
}

impl std::fmt::Debug for ServiceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceMetrics")
            .field("pools", &self.inner.pools.lock().len())
            .field("queues", &self.inner.queues.lock().len())
            .finish()
    }
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceMetrics {
    /// An empty registry, of its own (not the process-global recorder).
    pub fn new() -> Self {
        let recorder = recorder(BUCKETS);
        let handle = recorder.handle();
        ServiceMetrics {
            inner: Arc::new(Inner {
                recorder,
                handle,
                pools: Mutex::new(Vec::new()),
                queues: Mutex::new(Vec::new()),
            }),
        }
    }

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        Key::from_parts(
            name,
            labels
                .iter()
                .map(|(k, v)| Label::new(*k, (*v).to_owned()))
                .collect::<Vec<_>>(),
        )
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.inner
            .recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.inner
            .recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.inner
            .recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// The handles of a service's entrypoints, registered (at zero) now.
    pub(crate) fn entrypoints(&self, service: &str, methods: &[&'static str]) -> EntrypointMetrics {
        let mut by_method = HashMap::with_capacity(methods.len());
        for &method in methods {
            let labels = |outcome| {
                [
                    ("service", service),
                    ("entrypoint", method),
                    ("outcome", outcome),
                ]
            };
            let handles = Handles {
                ok: self.counter("enoki_entrypoint_handled_total", &labels("ok")),
                error: self.counter("enoki_entrypoint_handled_total", &labels("error")),
                ok_took: self.histogram("enoki_entrypoint_duration_seconds", &labels("ok")),
                error_took: self.histogram("enoki_entrypoint_duration_seconds", &labels("error")),
            };
            by_method.insert(method, handles);
        }
        EntrypointMetrics(Arc::new(by_method))
    }

    /// Watches a worker pool: `read` says how many workers run (`None`
    /// once the pool is gone).
    pub(crate) fn pool(
        &self,
        service: &str,
        max_workers: usize,
        read: impl Fn() -> Option<usize> + Send + Sync + 'static,
    ) {
        self.gauge("enoki_max_workers", &[("service", service)])
            .set(max_workers as f64);
        let running = self.gauge("enoki_workers_running", &[("service", service)]);
        running.set(0.0);
        self.inner.pools.lock().push(PoolProbe {
            running,
            read: Box::new(read),
        });
    }

    /// The counters of a work queue, and its depth (and that of its
    /// `<queue>.dlq`) when rendered.
    pub(crate) fn queue(
        &self,
        service: &str,
        queue: &str,
        transport: &Arc<dyn Transport>,
    ) -> QueueMetrics {
        let labels = [("service", service), ("queue", queue)];
        let mut probes = self.inner.queues.lock();
        for name in [queue.to_owned(), crate::names::dead_letter_queue(queue)] {
            if probes.iter().any(|probe| probe.queue == name) {
                continue;
            }
            let depth = self.gauge(
                "enoki_queue_messages",
                &[("service", service), ("queue", &name)],
            );
            probes.push(QueueProbe {
                queue: name,
                depth,
                transport: Arc::downgrade(transport),
            });
        }
        QueueMetrics {
            redeliveries: self.counter("enoki_queue_redeliveries_total", &labels),
            retries: self.counter("enoki_queue_retries_total", &labels),
            dead_letters: self.counter("enoki_queue_dead_letters_total", &labels),
        }
    }

    /// The text exposition, with the gauges of the worker pools read now
    /// (queue depths as last asked; see
    /// [`render_with_queues`](Self::render_with_queues)).
    pub fn render(&self) -> String {
        self.inner
            .pools
            .lock()
            .retain(|probe| match (probe.read)() {
                Some(running) => {
                    probe.running.set(running as f64);
                    true
                }
                None => {
                    probe.running.set(0.0);
                    false
                }
            });
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }

    /// [`render`](Self::render), after asking the broker for the depth of
    /// each work queue and dead-letter queue (at most one second for all;
    /// a queue that does not exist yet, such as a `<queue>.dlq` nothing
    /// was parked in, shows 0).
    pub async fn render_with_queues(&self) -> String {
        let probes: Vec<(String, Gauge, Weak<dyn Transport>)> = self
            .inner
            .queues
            .lock()
            .iter()
            .map(|probe| {
                (
                    probe.queue.clone(),
                    probe.depth.clone(),
                    probe.transport.clone(),
                )
            })
            .collect();
        let ask = async {
            for (queue, depth, transport) in probes {
                let Some(transport) = transport.upgrade() else {
                    continue;
                };
                match transport.queue_depth(&queue).await {
                    Ok(found) => depth.set(found.unwrap_or(0) as f64),
                    Err(error) => tracing::debug!(%queue, %error, "queue depth unknown"),
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(1), ask)
            .await
            .is_err()
        {
            tracing::debug!("queue depths took over a second; shown as last read");
        }
        self.render()
    }
}

/// One entrypoint's handles.
struct Handles {
    ok: Counter,
    error: Counter,
    ok_took: Histogram,
    error_took: Histogram,
}

/// The handles of one service's entrypoints, by method.
#[derive(Clone)]
pub(crate) struct EntrypointMetrics(Arc<HashMap<&'static str, Handles>>);

impl EntrypointMetrics {
    /// A worker of `method` finished.
    pub(crate) fn handled(&self, method: &str, ok: bool, took: Duration) {
        if let Some(handles) = self.0.get(method) {
            let (count, histogram) = if ok {
                (&handles.ok, &handles.ok_took)
            } else {
                (&handles.error, &handles.error_took)
            };
            count.increment(1);
            histogram.record(took.as_secs_f64());
        }
    }
}

/// The counters of one work queue.
#[derive(Clone)]
pub struct QueueMetrics {
    redeliveries: Counter,
    retries: Counter,
    dead_letters: Counter,
}

impl std::fmt::Debug for QueueMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueMetrics")
    }
}

impl QueueMetrics {
    /// A delivery flagged redelivered.
    pub fn redelivered(&self) {
        self.redeliveries.increment(1);
    }

    /// A failed event sent to a delay queue.
    pub fn retried(&self) {
        self.retries.increment(1);
    }

    /// A message parked in `<queue>.dlq`.
    pub fn dead_lettered(&self) {
        self.dead_letters.increment(1);
    }
}
