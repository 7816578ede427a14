//! The `EventDispatcher` provider: dispatch events as this service.

use std::sync::Arc;

use serde::Serialize;

use crate::client::declare_event_exchange;
use crate::container_ctx::ContainerCtx;
use crate::context::WorkerCtx;
use crate::dependency::DependencyProvider;
use crate::error::Result;
use crate::message::Message;
use crate::names;
use crate::transport::{PublishOptions, Transport};

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
    /// `<service>.events`, declared at setup.
    exchange: String,
    source: String,
}

impl DependencyProvider for EventDispatcher {
    type Dependency = Dispatcher;

    async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        let exchange = names::event_exchange(ctx.service_name());
        declare_event_exchange(ctx.transport(), ctx.settings(), &exchange).await?;
        self.shared = Some(Arc::new(Shared {
            transport: ctx.transport().clone(),
            exchange,
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
        let body = crate::message::json_body(&payload)?;
        let (trace, _span) =
            crate::telemetry::publish_span(&self.shared.exchange, event_type, self.worker.trace());
        let message = Message::json(body)
            .with_headers(self.worker.headers())
            .with_trace(trace);
        self.shared
            .transport
            .publish(
                &self.shared.exchange,
                event_type,
                message,
                PublishOptions::default(),
            )
            .await
    }

    /// The source service name.
    pub fn source(&self) -> &str {
        &self.shared.source
    }
}
