//! The timer entrypoint, with nameko's semantics (`nameko-wire.md` §4):
//! fire *n* is due at `start + n × interval` (n from 0 if `eager`, else 1),
//! so the schedule does not drift; after each fire the timer waits for the
//! worker to finish, so runs never overlap; a run that overruns is followed
//! by the missed fires back to back until the schedule is caught up.

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::container::Shared;
use crate::context::ContextData;
use crate::service::TimerSpec;

/// One `#[timer]` entrypoint.
pub(crate) struct TimerEntrypoint {
    method: &'static str,
    spec: TimerSpec,
}

impl TimerEntrypoint {
    pub(crate) fn new(method: &'static str, spec: TimerSpec) -> Self {
        TimerEntrypoint { method, spec }
    }

    /// Starts ticking; the task ends when `stop` is cancelled.
    pub(crate) fn start(self, shared: Arc<Shared>, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let start = Instant::now();
            let mut n: u32 = if self.spec.eager { 0 } else { 1 };
            loop {
                let due = start + self.spec.interval * n;
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep_until(due) => {}
                }
                let Some(permit) = super::worker_slot(&shared, &stop).await else {
                    break;
                };
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                shared.spawn_worker(
                    permit,
                    self.method,
                    Bytes::new(),
                    ContextData::default(),
                    move |outcome| async move {
                        let _ = done_tx.send(());
                        outcome
                    },
                );
                // Wait for the run to finish (even while stopping: the
                // container drains it).
                let _ = done_rx.await;
                n = n.saturating_add(1);
            }
        })
    }
}
