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
//!
//! The reserved method [`DESCRIBE_METHOD`] (when the service has no method
//! of that name) is answered at once with the service's
//! [`ServiceDescription`], without a worker.

use super::poison::{RedeliveryLimit, Return, admit};
use super::{Entrypoint, consume_options, declare_work_queue, next_delivery, settle};
use crate::container_ctx::ContainerCtx;
use crate::context::check_headers;
use crate::describe::{DESCRIBE_METHOD, ServiceDescription};
use crate::error::{RemoteError, Result};
use crate::message::{CONTENT_TYPE_JSON, Headers, Message, encode_reply};
use crate::names;
use crate::outcome::Outcome;
use crate::service_metrics::QueueMetrics;
use crate::transport::{Delivery, ExchangeSpec, PublishOptions, QueueSpec};
use crate::worker::{WorkerPool, WorkerSlot};
use serde_json::value::RawValue;

/// The RPC entrypoint of one container: serves every `#[rpc]` method.
#[derive(Debug)]
pub struct RpcEntrypoint {
    methods: Vec<&'static str>,
    queue: String,
    description: Option<ServiceDescription>,
    described: Option<std::sync::Arc<RawValue>>,
    /// Counts the returns of requests on a classic queue.
    redelivery: Option<RedeliveryLimit>,
    /// The queue's counters, when the container records metrics.
    metrics: Option<QueueMetrics>,
}

impl RpcEntrypoint {
    /// The entrypoint of these RPC methods.
    pub fn new(methods: Vec<&'static str>) -> Self {
        RpcEntrypoint {
            methods,
            queue: String::new(),
            description: None,
            described: None,
            redelivery: None,
            metrics: None,
        }
    }

    /// Answers [`DESCRIBE_METHOD`] with `description` (by default, the
    /// RPC methods of this entrypoint alone).
    #[must_use]
    pub fn describing(mut self, description: ServiceDescription) -> Self {
        self.description = Some(description);
        self
    }
}

impl Entrypoint for RpcEntrypoint {
    /// Declares the RPC exchange, the `rpc-<service>` queue and its binding.
    async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        let transport = ctx.transport();
        let exchange = ctx.settings().rpc_exchange();
        let service = ctx.service_name();
        self.queue = names::rpc_queue(service);
        let description = self.description.take().unwrap_or_else(|| {
            let specs: Vec<_> = self
                .methods
                .iter()
                .map(|m| crate::service::EntrypointSpec::rpc(m))
                .collect();
            ServiceDescription::of(service, &specs)
        });
        self.described = Some(serde_json::value::to_raw_value(&description)?.into());
        transport
            .declare_exchange(&ExchangeSpec::topic(exchange))
            .await?;
        let queue = declare_work_queue(ctx, QueueSpec::durable(&self.queue)).await?;
        self.metrics = ctx.queue_metrics(&queue.name);
        self.redelivery = RedeliveryLimit::new(ctx.settings(), &queue, Return::AsRouted)
            .map(|limit| limit.with_metrics(self.metrics.clone()));
        transport
            .bind(&self.queue, exchange, &names::rpc_binding(service))
            .await
    }

    /// Starts consuming, in a managed task.
    async fn start(&mut self, workers: WorkerPool) -> Result<()> {
        let mut consumer = workers
            .ctx()
            .transport()
            .consume(&self.queue, consume_options(workers.ctx()))
            .await?;
        let queue = self.queue.clone();
        let methods = self.methods.clone();
        let described = self.described.clone();
        let redelivery = self.redelivery.clone();
        let metrics = self.metrics.clone();
        let pool = workers.clone();
        workers.spawn_managed(async move {
            while let Some(delivery) = next_delivery(&mut consumer, &pool, &queue).await {
                if delivery.redelivered
                    && let Some(metrics) = &metrics
                {
                    metrics.redelivered();
                }
                let Some(delivery) = admit(redelivery.as_ref(), pool.ctx(), delivery).await else {
                    continue;
                };
                let check = Request::check(&pool, &methods, described.as_deref(), delivery);
                if let Some(request) = check.await {
                    // Dropping the request (when stopping) puts it back on the queue.
                    let Some(slot) = pool.slot().await else {
                        break;
                    };
                    request.spawn(&pool, slot);
                }
            }
        });
        Ok(())
    }
}

/// A request that passed the checks that need no worker.
struct Request {
    delivery: Delivery,
    method: &'static str,
    /// Its headers, checked: the worker reads its context from them.
    context: Headers,
}

impl Request {
    /// Answers (and acks) requests that are bad before any worker runs.
    async fn check(
        pool: &WorkerPool,
        methods: &[&'static str],
        described: Option<&RawValue>,
        delivery: Delivery,
    ) -> Option<Request> {
        let service = pool.service_name();
        let properties = &delivery.message.properties;
        if properties.reply_to.is_none() {
            tracing::error!(
                service,
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
        let called = delivery
            .routing_key
            .strip_prefix(service)
            .and_then(|rest| rest.strip_prefix('.'));
        let method = called.and_then(|method| methods.iter().copied().find(|m| *m == method));
        if let (None, None, Some(DESCRIBE_METHOD), Some(described)) =
            (&rejected, method, called, described)
        {
            let outcome = Ok(described.to_owned());
            reply_and_ack(pool.ctx(), delivery, &outcome).await;
            return None;
        }
        let context = check_headers(&properties.headers).map(|()| properties.headers.clone());
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
            service,
            routing_key = %delivery.routing_key,
            %error,
            "bad RPC request"
        );
        let outcome = Err(error);
        reply_and_ack(pool.ctx(), delivery, &outcome).await;
        None
    }

    fn spawn(self, pool: &WorkerPool, slot: WorkerSlot) {
        let Request {
            delivery,
            method,
            context,
        } = self;
        let payload = delivery.message.clone();
        let ctx = pool.ctx().clone();
        pool.spawn(slot, method, payload, context, move |outcome| async move {
            reply_and_ack(&ctx, delivery, &outcome).await;
            outcome
        });
    }
}

/// Publishes the reply, then acks the request. If the reply cannot be
/// published, the request is requeued once (its worker runs again), then
/// dropped.
async fn reply_and_ack(ctx: &ContainerCtx, delivery: Delivery, outcome: &Outcome) {
    // `check` made sure there is a reply_to.
    let reply_to = delivery
        .message
        .properties
        .reply_to
        .as_deref()
        .unwrap_or_default();
    let transport = ctx.transport();
    let mut reply = Message::json(encode_reply(outcome));
    reply.properties.correlation_id = delivery.message.properties.correlation_id.clone();
    let exchange = ctx.settings().rpc_exchange();
    match transport
        .publish(exchange, reply_to, reply, PublishOptions::default())
        .await
    {
        Ok(()) => settle(delivery.ack().await),
        Err(error) => {
            let requeue = !delivery.redelivered;
            tracing::error!(
                service = ctx.service_name(),
                %error,
                requeue,
                "could not publish an RPC reply"
            );
            settle(delivery.reject(requeue).await);
        }
    }
}
