//! The `EventDispatcher` provider: dispatch events as this service.

use std::sync::Arc;

use serde::Serialize;

use crate::client::{declare_event_exchange, publish_event};
use crate::config::Settings;
use crate::context::{ContainerCtx, WorkerCtx};
use crate::dependency::DependencyProvider;
use crate::error::Result;
use crate::message::names;
use crate::transport::Transport;

/// Provides a [`Dispatcher`] that publishes events from this service to
/// `<service>.events`, carrying the worker's context (nameko's
/// `EventDispatcher`). The exchange is declared at setup.
#[derive(Debug, Default)]
pub struct EventDispatcher {
    shared: Option<Arc<Shared>>,
}

#[derive(Debug)]
struct Shared {
    transport: Arc<dyn Transport>,
    settings: Settings,
    source: String,
}

impl DependencyProvider for EventDispatcher {
    type Dependency = Dispatcher;

    async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        let exchange = names::event_exchange(ctx.service_name());
        declare_event_exchange(ctx.transport(), ctx.settings(), &exchange).await?;
        self.shared = Some(Arc::new(Shared {
            transport: ctx.transport().clone(),
            settings: ctx.settings().with("DECLARE_EVENT_EXCHANGES", false.into()),
            source: ctx.service_name().to_owned(),
        }));
        Ok(())
    }

    fn get_dependency(&self, worker: &WorkerCtx) -> Dispatcher {
        Dispatcher {
            shared: self
                .shared
                .clone()
                .expect("EventDispatcher::setup runs before any worker"),
            worker: worker.clone(),
        }
    }
}

/// Dispatches events from a worker: `dispatch.emit("greeted", &payload)`.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    worker: WorkerCtx,
}

impl Dispatcher {
    /// Publishes `event_type` with `payload` as the body, and the worker's
    /// context as headers. Returns once the broker has taken it.
    pub async fn emit(&self, event_type: &str, payload: impl Serialize) -> Result<()> {
        let body = serde_json::to_vec(&payload)?;
        publish_event(
            &self.shared.transport,
            &self.shared.settings,
            &self.shared.source,
            event_type,
            body,
            self.worker.headers(),
        )
        .await
    }

    /// The source service name.
    pub fn source(&self) -> &str {
        &self.shared.source
    }
}
