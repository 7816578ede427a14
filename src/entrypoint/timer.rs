//! The timer entrypoint, with nameko's semantics (`nameko-wire.md` §4):
//! fire *n* is due at `start + n × interval` (n from 0 if `eager`, else 1),
//! so the schedule does not drift; after each fire the timer waits for the
//! worker to finish, so runs never overlap; a run that overruns is followed
//! by the missed fires back to back until the schedule is caught up.

use bytes::Bytes;
use tokio::time::Instant;

use super::Entrypoint;
use crate::context::ContextData;
use crate::error::{Error, Result};
use crate::service::TimerSpec;
use crate::worker::WorkerPool;

/// One `#[timer]` entrypoint.
#[derive(Debug)]
pub struct TimerEntrypoint {
    method: &'static str,
    spec: TimerSpec,
}

impl TimerEntrypoint {
    /// The timer of `method`.
    pub fn new(method: &'static str, spec: TimerSpec) -> Self {
        TimerEntrypoint { method, spec }
    }
}

impl Entrypoint for TimerEntrypoint {
    /// Starts ticking, in a managed task.
    async fn start(&mut self, workers: WorkerPool) -> Result<()> {
        if self.spec.interval.is_zero() {
            return Err(Error::Config(format!(
                "timer `{}` has a zero interval",
                self.method
            )));
        }
        let (method, spec) = (self.method, self.spec);
        let pool = workers.clone();
        workers.spawn_managed(async move {
            let start = Instant::now();
            let mut n: u32 = if spec.eager { 0 } else { 1 };
            loop {
                let due = start + spec.interval * n;
                tokio::select! {
                    biased;
                    () = pool.stopped() => break,
                    () = tokio::time::sleep_until(due) => {}
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
                n = n.saturating_add(1);
            }
        });
        Ok(())
    }
}
