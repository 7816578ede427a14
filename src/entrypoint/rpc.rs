//! The RPC entrypoint: requests on `rpc-<service>`, bound to the RPC
//! exchange with `<service>.*`; replies to the RPC exchange with the
//! request's `reply_to` as routing key.
//!
//! Bad requests are answered with nameko's errors without running a
//! worker: an unknown method is `MethodNotFound`, a body that is not
//! `{"args", "kwargs"}` is `MalformedRequest`, arguments that don't fit are
//! `IncorrectSignature` (from the worker's argument binding), a bad
//! `nameko.call_id_stack` header is `MalformedRequest`. A request without
//! `reply_to` cannot be answered: it is logged and acked. Every request is
//! acked only after its reply is published.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{next_delivery, settle, worker_slot};
use crate::container::Shared;
use crate::context::ContextData;
use crate::error::{RemoteError, Result};
use crate::message::{CONTENT_TYPE_JSON, Message, encode_reply, names};
use crate::service::Outcome;
use crate::transport::{Delivery, ExchangeSpec, PublishOptions, QueueSpec, Transport};

/// The RPC entrypoint of one container, after setup.
pub(crate) struct RpcEntrypoint {
    queue: String,
}

impl RpcEntrypoint {
    /// Declares the RPC exchange, the `rpc-<service>` queue and its binding.
    pub(crate) async fn setup(shared: &Arc<Shared>) -> Result<Self> {
        let transport = shared.ctx.transport();
        let exchange = shared.ctx.settings().rpc_exchange();
        let queue = names::rpc_queue(shared.name);
        transport
            .declare_exchange(&ExchangeSpec::topic(exchange))
            .await?;
        transport.declare_queue(&QueueSpec::durable(&queue)).await?;
        transport
            .bind(&queue, exchange, &names::rpc_binding(shared.name))
            .await?;
        Ok(RpcEntrypoint { queue })
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
                if let Some(request) = Request::check(&shared, delivery).await {
                    // Dropping the request (when stopping) puts it back on the queue.
                    let Some(permit) = worker_slot(&shared, &stop).await else {
                        break;
                    };
                    request.spawn(&shared, permit);
                }
            }
        }))
    }
}

/// A request that passed the checks that need no worker.
struct Request {
    delivery: Delivery,
    method: &'static str,
    context: ContextData,
}

impl Request {
    /// Answers (and acks) requests that are bad before any worker runs.
    async fn check(shared: &Arc<Shared>, delivery: Delivery) -> Option<Request> {
        let properties = &delivery.message.properties;
        if properties.reply_to.is_none() {
            tracing::error!(
                service = shared.name,
                routing_key = %delivery.routing_key,
                "RPC request without reply_to: cannot reply; dropped"
            );
            settle(delivery.ack().await);
            return None;
        }
        let rejected = if properties
            .content_type
            .as_deref()
            .is_some_and(|ct| ct != CONTENT_TYPE_JSON)
        {
            Some(RemoteError::malformed_request(format!(
                "unsupported content type {:?}: enoki speaks {CONTENT_TYPE_JSON}",
                properties.content_type.as_deref().unwrap_or_default()
            )))
        } else {
            None
        };
        let method = delivery
            .routing_key
            .strip_prefix(shared.name)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|method| shared.rpc_method(method));
        let context = ContextData::from_headers(&properties.headers);
        let error = match (rejected, method, context) {
            (Some(error), _, _) => error,
            (None, None, _) => {
                let name = delivery.routing_key.rsplit('.').next().unwrap_or_default();
                RemoteError::method_not_found(name)
            }
            (None, _, Err(error)) => error,
            (None, Some(method), Ok(context)) => {
                return Some(Request {
                    delivery,
                    method,
                    context,
                });
            }
        };
        tracing::warn!(
            service = shared.name,
            routing_key = %delivery.routing_key,
            %error,
            "bad RPC request"
        );
        let outcome = Err(error);
        reply_and_ack(shared, delivery, &outcome).await;
        None
    }

    fn spawn(self, shared: &Arc<Shared>, permit: tokio::sync::OwnedSemaphorePermit) {
        let Request {
            delivery,
            method,
            context,
        } = self;
        let payload = delivery.message.body.clone();
        let replier = shared.clone();
        shared.spawn_worker(
            permit,
            method,
            payload,
            context,
            move |outcome| async move {
                reply_and_ack(&replier, delivery, &outcome).await;
                outcome
            },
        );
    }
}

/// Publishes the reply, then acks the request. If the reply cannot be
/// published, the request is requeued once (its worker runs again), then
/// dropped.
async fn reply_and_ack(shared: &Shared, delivery: Delivery, outcome: &Outcome) {
    // `check` made sure there is a reply_to.
    let reply_to = delivery
        .message
        .properties
        .reply_to
        .as_deref()
        .unwrap_or_default();
    let transport: &Arc<dyn Transport> = shared.ctx.transport();
    let mut reply = Message::json(encode_reply(outcome));
    reply.properties.correlation_id = delivery.message.properties.correlation_id.clone();
    let exchange = shared.ctx.settings().rpc_exchange();
    match transport
        .publish(exchange, reply_to, reply, PublishOptions::default())
        .await
    {
        Ok(()) => settle(delivery.ack().await),
        Err(error) => {
            let requeue = !delivery.redelivered;
            tracing::error!(
                service = shared.name,
                %error,
                requeue,
                "could not publish an RPC reply"
            );
            settle(delivery.reject(requeue).await);
        }
    }
}
