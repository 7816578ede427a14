//! The timer entrypoint, with nameko's semantics (`nameko-wire.md` §4):
//! fire *n* is due at `start + n × interval` (n from 0 if `eager`, else 1),
//! so the schedule does not drift; after each fire the timer waits for the
//! worker to finish, so runs never overlap; a run that overruns is followed
//! by the missed fires back to back until the schedule is caught up.
//!
//! A cron timer ([`CronSpec`]) fires at the occurrences of its expression
//! in its time zone (the wall clock read once at start, then followed on
//! the monotonic clock); an occurrence that passes while the previous run
//! is still going is skipped.
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

use super::cron::CronSchedule;
use super::{Entrypoint, settle};
use crate::config::QueueType;
use crate::config::Settings;
use crate::container_ctx::ContainerCtx;
use crate::context::ContextData;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::names;
use crate::service::{CronSpec, TimerSpec};
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

/// When a timer fires next.
enum Plan {
    /// nameko's: fire n at `start + n × interval`.
    Every {
        start: Instant,
        interval: std::time::Duration,
        n: u32,
    },
    /// The occurrences of a cron schedule.
    Cron {
        schedule: Box<CronSchedule>,
        /// The wall clock at `start`.
        origin: chrono::DateTime<chrono::Utc>,
        start: Instant,
        /// Fire at `start` first (`eager`).
        eager: bool,
        /// The occurrence last reached.
        last: chrono::DateTime<chrono::Utc>,
        /// The next one, once computed.
        next: Option<chrono::DateTime<chrono::Utc>>,
    },
}

impl Plan {
    fn new(method: &str, spec: &TimerSpec, settings: &Settings) -> Result<Plan> {
        let start = Instant::now();
        let Some(cron) = spec.cron else {
            if spec.interval.is_zero() {
                return Err(Error::Config(format!(
                    "timer `{method}` has a zero interval"
                )));
            }
            return Ok(Plan::Every {
                start,
                interval: spec.interval,
                n: if spec.eager { 0 } else { 1 },
            });
        };
        let schedule = cron_schedule(method, &cron, settings)?;
        let origin = chrono::Utc::now();
        Ok(Plan::Cron {
            schedule: Box::new(schedule),
            origin,
            start,
            eager: spec.eager,
            last: origin,
            next: None,
        })
    }

    /// When the next fire is due; `None` when the schedule has no more.
    fn due(&mut self) -> Option<Instant> {
        match self {
            Plan::Every { start, interval, n } => Some(*start + *interval * *n),
            Plan::Cron {
                start, eager: true, ..
            } => Some(*start),
            Plan::Cron {
                schedule,
                origin,
                start,
                last,
                next,
                ..
            } => {
                if next.is_none() {
                    let now =
                        *origin + chrono::Duration::from_std(start.elapsed()).unwrap_or_default();
                    *next = schedule.next_after((*last).max(now));
                }
                let after = (*next)?.signed_duration_since(*origin).to_std().ok()?;
                Some(*start + after)
            }
        }
    }

    /// The due fire was reached (fired, or left to another instance).
    fn advance(&mut self) {
        match self {
            Plan::Every { n, .. } => *n = n.saturating_add(1),
            Plan::Cron {
                eager: eager @ true,
                ..
            } => *eager = false,
            Plan::Cron { last, next, .. } => {
                if let Some(reached) = next.take() {
                    *last = reached;
                }
            }
        }
    }
}

/// The parsed schedule of a cron timer; a bad one stops the start.
fn cron_schedule(method: &str, cron: &CronSpec, settings: &Settings) -> Result<CronSchedule> {
    let expression = if cron.from_config {
        settings
            .get(cron.expression)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                Error::Config(format!(
                    "timer `{method}` reads its cron schedule from the config key {}, which is not set to a string",
                    cron.expression
                ))
            })?
    } else {
        cron.expression
    };
    CronSchedule::parse(expression, cron.timezone).map_err(|why| {
        let why = match why {
            Error::Invalid(why) => why,
            other => other.to_string(),
        };
        let from = if cron.from_config {
            format!(" (config key {})", cron.expression)
        } else {
            String::new()
        };
        Error::Config(format!("timer `{method}`{from}: {why}"))
    })
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
        let mut plan = Plan::new(self.method, &self.spec, workers.ctx().settings())?;
        let mut lease = match &self.lease {
            Some(queue) => {
                let transport = workers.ctx().transport();
                // Room for the kept token and one more, to ack.
                let consumer = transport
                    .consume(
                        queue,
                        ConsumeOptions {
                            prefetch: 2,
                            ..Default::default()
                        },
                    )
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
        let method = self.method;
        let pool = workers.clone();
        workers.spawn_managed(async move {
            loop {
                let Some(due) = plan.due() else {
                    tracing::info!(timer = method, "the cron schedule has no more occurrences");
                    pool.stopped().await;
                    break;
                };
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
                plan.advance();
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
