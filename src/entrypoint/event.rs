//! The event entrypoint: one queue per `#[event_handler]`, bound to
//! `<source>.events` with the event type, named and flagged as nameko does
//! (`nameko-wire.md` §3.3):
//!
//! | handler type | queue | flags |
//! |---|---|---|
//! | service pool | `evt-<source>-<event>--<service>.<method>` | durable; auto-delete unless reliable |
//! | singleton | `evt-<source>-<event>` | as service pool |
//! | broadcast | `evt-<source>-<event>--<service>.<method>-<id>` | exclusive and auto-delete unless reliable |
//!
//! An event is acked after its handler returns. A failing handler's event
//! is requeued if `requeue_on_error`, otherwise acked (dropped) and
//! logged. An event that cannot be decoded (bad JSON, a payload that does
//! not fit the handler, a bad context header) is never requeued: it could
//! only fail again.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{next_delivery, settle, worker_slot};
use crate::client::declare_event_exchange;
use crate::container::Shared;
use crate::context::{ContextData, new_uuid};
use crate::error::Result;
use crate::message::{CONTENT_TYPE_JSON, names};
use crate::service::{EventHandlerSpec, HandlerType};
use crate::transport::{Delivery, QueueSpec};

/// One event handler after setup.
pub(crate) struct EventEntrypoint {
    method: &'static str,
    queue: String,
    requeue_on_error: bool,
}

/// The queue an event handler consumes from, with nameko's flags.
pub fn queue_spec(service: &str, method: &str, spec: &EventHandlerSpec) -> QueueSpec {
    let identifier = match spec.broadcast_identifier {
        Some(id) => id.to_owned(),
        None => new_uuid().replace('-', ""),
    };
    let name = names::event_queue(
        spec.source_service,
        spec.event_type,
        spec.handler_type,
        service,
        method,
        &identifier,
    );
    let exclusive = spec.handler_type == HandlerType::Broadcast && !spec.reliable_delivery;
    QueueSpec {
        name,
        durable: true,
        // kombu turns `exclusive` into `auto_delete` too.
        auto_delete: !spec.reliable_delivery || exclusive,
        exclusive,
        arguments: Default::default(),
    }
}

impl EventEntrypoint {
    /// Declares the source's event exchange, the handler's queue and its
    /// binding.
    pub(crate) async fn setup(
        shared: &Arc<Shared>,
        method: &'static str,
        spec: &EventHandlerSpec,
    ) -> Result<Self> {
        let transport = shared.ctx.transport();
        let exchange = names::event_exchange(spec.source_service);
        declare_event_exchange(transport, shared.ctx.settings(), &exchange).await?;
        let queue = queue_spec(shared.name, method, spec);
        transport.declare_queue(&queue).await?;
        transport
            .bind(&queue.name, &exchange, spec.event_type)
            .await?;
        Ok(EventEntrypoint {
            method,
            queue: queue.name,
            requeue_on_error: spec.requeue_on_error,
        })
    }

    /// Starts consuming; the task ends when `stop` is cancelled.
    pub(crate) async fn start(
        self,
        shared: Arc<Shared>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>> {
        let transport = shared.ctx.transport().clone();
        let mut consumer = transport
            .consume(&self.queue, super::consume_options(&shared))
            .await?;
        Ok(tokio::spawn(async move {
            while let Some(delivery) = next_delivery(&mut consumer, &stop, &self.queue).await {
                let Some(context) = self.check(&shared, &delivery) else {
                    settle(delivery.ack().await);
                    continue;
                };
                let Some(permit) = worker_slot(&shared, &stop).await else {
                    break;
                };
                let payload = delivery.message.body.clone();
                let requeue_on_error = self.requeue_on_error;
                let method = self.method;
                let name = shared.name;
                shared.spawn_worker(
                    permit,
                    method,
                    payload,
                    context,
                    move |outcome| async move {
                        match &outcome {
                            Ok(_) => settle(delivery.ack().await),
                            Err(error) if error.is_bad_request() => {
                                tracing::error!(
                                    service = name, method, %error,
                                    "event does not fit its handler; dropped"
                                );
                                settle(delivery.ack().await);
                            }
                            Err(_) if requeue_on_error => settle(delivery.reject(true).await),
                            Err(_) => settle(delivery.ack().await),
                        }
                        outcome
                    },
                );
            }
        }))
    }

    /// The event's context, or `None` (logged) for an event that can never
    /// be handled.
    fn check(&self, shared: &Shared, delivery: &Delivery) -> Option<ContextData> {
        let properties = &delivery.message.properties;
        if let Some(content_type) = properties.content_type.as_deref()
            && content_type != CONTENT_TYPE_JSON
        {
            tracing::error!(
                service = shared.name,
                method = self.method,
                content_type,
                "event with an unsupported content type; dropped"
            );
            return None;
        }
        match ContextData::from_headers(&properties.headers) {
            Ok(context) => Some(context),
            Err(error) => {
                tracing::error!(
                    service = shared.name, method = self.method, %error,
                    "event with a bad context header; dropped"
                );
                None
            }
        }
    }
}
