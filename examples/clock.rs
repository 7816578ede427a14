//! `clock`: a timer that dispatches a `tick` event every second, with a
//! counter and the time. The gateway's page shows these ticks live.
//!
//! Run with: `cargo run --example clock`, or everything at once: `cargo run`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use enoki::prelude::*;
use serde_json::json;

/// Counts ticks across workers.
#[derive(Debug, Default)]
pub struct TickCounter(Arc<AtomicU64>);

impl DependencyProvider for TickCounter {
    type Dependency = Arc<AtomicU64>;

    fn get_dependency(&self, _worker: &WorkerCtx) -> Arc<AtomicU64> {
        self.0.clone()
    }
}

/// Ticks.
#[derive(Debug, Dependencies)]
pub struct Clock {
    #[dependency(EventDispatcher)]
    dispatch: Dispatcher,
    #[dependency(TickCounter)]
    ticks: Arc<AtomicU64>,
}

#[service(name = "clock")]
impl Clock {
    /// Every second: dispatch `tick` with `{"n": count, "time": unix seconds}`.
    #[timer(interval = 1)]
    pub async fn tick(&self) -> Result<(), RemoteError> {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.dispatch
            .emit("tick", json!({ "n": n, "time": time }))
            .await?;
        Ok(())
    }

    /// How many ticks so far.
    #[rpc]
    pub async fn ticks(&self) -> Result<u64, RemoteError> {
        Ok(self.ticks.load(Ordering::Relaxed))
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    enoki::cli::main([enoki::service::<Clock>()]).await
}
