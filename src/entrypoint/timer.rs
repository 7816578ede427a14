//! The timer entrypoint, with nameko's semantics (`nameko-wire.md` §4):
//! fire *n* is due at `start + n × interval` (n from 0 if `eager`, else 1),
//! so the schedule does not drift; after each fire the timer waits for the
//! worker to finish, so runs never overlap; a run that overruns is followed
//! by the missed fires back to back until the schedule is caught up.
//!
//! A `cluster_once` timer ([`TimerSpec::cluster_once`]) keeps the same
//! schedule on every instance but fires only on the instance holding the
//! lease: the one token message of the single-active-consumer queue
//! `timer-<service>.<method>`, kept unacknowledged by the active consumer.
//! Each instance publishes one token when it starts; the holder acks any
//! token beyond the one it keeps, so there is one token whenever an
//! instance is running. The lease is checked before each fire: a token
//! whose connection has gone (the broker has requeued it, maybe to
//! another instance) no longer counts.

use bytes::Bytes;
use tokio::time::Instant;

use super::{Entrypoint, settle};
use crate::config::QueueType;
use crate::container_ctx::ContainerCtx;
use crate::context::ContextData;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::names;
use crate::service::TimerSpec;
use crate::transport::{ConsumeOptions, Consumer, Delivery, PublishOptions, QueueSpec};
use crate::worker::WorkerPool;

/// One `#[timer]` entrypoint.
#[derive(Debug)]
pub struct TimerEntrypoint {
    method: &'static str,
    spec: TimerSpec,
    /// The lease queue of a `cluster_once` timer, once declared.
    lease: Option<String>,
}

impl TimerEntrypoint {
    /// The timer of `method`.
    pub fn new(method: &'static str, spec: TimerSpec) -> Self {
        TimerEntrypoint {
            method,
            spec,
            lease: None,
        }
    }
}

/// The lease queue of a `cluster_once` timer: single active consumer;
/// durable (a quorum queue under `QUEUE_TYPE: quorum`, so the lease
/// outlives the loss of a node) but without a delivery limit, since the
/// token is redelivered each time its holder goes.
fn lease_queue(ctx: &ContainerCtx, method: &str) -> QueueSpec {
    let mut spec = QueueSpec::durable(names::timer_lease_queue(ctx.service_name(), method));
    spec.arguments
        .insert("x-single-active-consumer".into(), true.into());
    if ctx.settings().queue_type() == QueueType::Quorum {
        spec.arguments
            .insert("x-queue-type".into(), "quorum".into());
    }
    spec
}

/// The lease of a `cluster_once` timer, as one instance sees it.
struct Lease {
    consumer: Consumer,
    token: Option<Delivery>,
}

impl Lease {
    /// Whether this instance holds the lease now.
    fn held(&self) -> bool {
        self.token
            .as_ref()
            .is_some_and(|token| token.acker.is_held())
    }

    /// Takes a token the broker delivered: kept if none is held, acked
    /// (removed) if one is.
    async fn offer(&mut self, token: Delivery) {
        if self.held() {
            settle(token.ack().await);
        } else {
            if self.token.is_none() {
                tracing::info!("cluster_once timer: this instance holds the lease");
            }
            self.token = Some(token);
        }
    }
}

impl Entrypoint for TimerEntrypoint {
    /// Declares the lease queue of a `cluster_once` timer.
    async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        if self.spec.cluster_once {
            let spec = lease_queue(ctx, self.method);
            ctx.transport().declare_queue(&spec).await?;
            self.lease = Some(spec.name);
        }
        Ok(())
    }

    /// Starts ticking, in a managed task.
    async fn start(&mut self, workers: WorkerPool) -> Result<()> {
        if self.spec.interval.is_zero() {
            return Err(Error::Config(format!(
                "timer `{}` has a zero interval",
                self.method
            )));
        }
        let mut lease = match &self.lease {
            Some(queue) => {
                let transport = workers.ctx().transport();
                // Room for the kept token and one more, to ack.
                let consumer = transport
                    .consume(queue, ConsumeOptions { prefetch: 2 })
                    .await?;
                transport
                    .publish(
                        "",
                        queue,
                        Message::json(&b"{}"[..]),
                        PublishOptions::default(),
                    )
                    .await?;
                Some(Lease {
                    consumer,
                    token: None,
                })
            }
            None => None,
        };
        let (method, spec) = (self.method, self.spec);
        let pool = workers.clone();
        workers.spawn_managed(async move {
            let start = Instant::now();
            let mut n: u32 = if spec.eager { 0 } else { 1 };
            loop {
                let due = start + spec.interval * n;
                let token = async {
                    match lease.as_mut() {
                        Some(lease) => lease.consumer.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    () = pool.stopped() => break,
                    Some(token) = token => {
                        if let Some(lease) = lease.as_mut() {
                            lease.offer(token).await;
                        }
                        continue;
                    }
                    () = tokio::time::sleep_until(due) => {}
                }
                n = n.saturating_add(1);
                if lease.as_ref().is_some_and(|lease| !lease.held()) {
                    // Another instance fires this one.
                    continue;
                }
                let Some(slot) = pool.slot().await else {
                    break;
                };
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                pool.spawn(
                    slot,
                    method,
                    Bytes::new(),
                    ContextData::default(),
                    move |outcome| async move {
                        let _ = done_tx.send(());
                        outcome
                    },
                );
                // Wait for the run to finish; when stopping, the container
                // drains it (up to its grace period) instead.
                tokio::select! {
                    _ = done_rx => {}
                    () = pool.stopped() => break,
                }
            }
            // Dropping the lease requeues the token: the next instance
            // takes over.
            drop(lease);
        });
        Ok(())
    }
}
