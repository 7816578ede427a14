//! `listener`: handles `greeter`'s `greeted` event with all three handler
//! types, and answers `received()` with the events it has handled.
//!
//! - service pool: one copy per (service, method); instances compete;
//! - singleton: one copy in total, whoever takes it;
//! - broadcast: one copy per running instance.
//!
//! Shared state lives in a dependency provider (`Received`), because, as in
//! nameko, every worker gets a fresh service instance.
//!
//! Run with: `cargo run --example listener`, or everything at once: `cargo run`.

use std::collections::VecDeque;
use std::sync::Arc;

use enoki::prelude::*;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// How many handled events `received()` remembers.
const KEEP: usize = 100;

/// The events this instance has handled, newest last.
#[derive(Debug, Clone, Default)]
pub struct Inbox(Arc<Mutex<VecDeque<Value>>>);

impl Inbox {
    fn record(&self, handler_type: HandlerType, ctx: &WorkerCtx, payload: Value) {
        let mut events = self.0.lock();
        if events.len() == KEEP {
            events.pop_front();
        }
        events.push_back(json!({
            "handler_type": handler_type.as_str(),
            "handler": ctx.entrypoint(),
            "payload": payload,
        }));
    }

    fn snapshot(&self) -> Vec<Value> {
        self.0.lock().iter().cloned().collect()
    }
}

/// A custom provider: one `Inbox` per container, shared by its workers.
#[derive(Debug, Default)]
pub struct Received {
    inbox: Inbox,
}

impl DependencyProvider for Received {
    type Dependency = Inbox;

    fn get_dependency(&self, _worker: &WorkerCtx) -> Inbox {
        self.inbox.clone()
    }
}

/// Listens to `greeter.greeted` in every way nameko can.
#[derive(Debug, Dependencies)]
pub struct Listener {
    #[dependency(Received)]
    inbox: Inbox,
}

#[service(name = "listener")]
impl Listener {
    /// One copy per listener service, shared by its instances.
    #[event_handler("greeter", "greeted")]
    pub async fn on_greeted_pool(
        &self,
        payload: Value,
        ctx: &WorkerCtx,
    ) -> Result<(), RemoteError> {
        self.inbox.record(HandlerType::ServicePool, ctx, payload);
        Ok(())
    }

    /// One copy for all singleton handlers of `greeted`.
    #[event_handler("greeter", "greeted", handler_type = singleton)]
    pub async fn on_greeted_singleton(
        &self,
        payload: Value,
        ctx: &WorkerCtx,
    ) -> Result<(), RemoteError> {
        self.inbox.record(HandlerType::Singleton, ctx, payload);
        Ok(())
    }

    /// One copy per running listener instance.
    #[event_handler("greeter", "greeted", handler_type = broadcast)]
    pub async fn on_greeted_broadcast(
        &self,
        payload: Value,
        ctx: &WorkerCtx,
    ) -> Result<(), RemoteError> {
        self.inbox.record(HandlerType::Broadcast, ctx, payload);
        Ok(())
    }

    /// The events handled so far (the last 100), each with its handler type.
    #[rpc]
    pub async fn received(&self) -> Result<Vec<Value>, RemoteError> {
        Ok(self.inbox.snapshot())
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    enoki::cli::main([enoki::service::<Listener>()]).await
}
