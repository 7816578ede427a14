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

use super::poison::{RedeliveryLimit, Return, admit_soon};
use super::{Entrypoint, consume_direct, declare_work_queue, settle};
use crate::container_ctx::ContainerCtx;
use crate::context::{Incoming, check_headers};
use crate::describe::{DESCRIBE_METHOD, ServiceDescription};
use crate::error::{Error, RemoteError, Result};
use crate::message::{CONTENT_TYPE_JSON, Message, encode_reply};
use crate::names;
use crate::outcome::Outcome;
use crate::service_metrics::QueueMetrics;
use crate::transport::{Delivery, ExchangeSpec, PublishOptions, QueueSpec, TransportFuture};
use crate::worker::{WorkerPool, WorkerSlot};
use serde_json::value::RawValue;
use std::future::Future;
use std::sync::Arc;

/// The RPC entrypoint of one container: serves every `#[rpc]` method.
#[derive(Debug)]
pub struct RpcEntrypoint {
    methods: Vec<&'static str>,
    queue: String,
    description: Option<ServiceDescription>,
    described: Option<Arc<RawValue>>,
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

    /// Starts consuming: each request is checked and its worker started as
    /// soon as the broker hands it over (on the embedded broker, on the
    /// task that published it, until the worker first waits); a managed
    /// task ends the consumer when the container stops.
    async fn start(&mut self, workers: WorkerPool) -> Result<()> {
        let intake = Arc::new(Intake {
            pool: workers.clone(),
            methods: self.methods.clone(),
            described: self.described.clone(),
            redelivery: self.redelivery.clone(),
            metrics: self.metrics.clone(),
        });
        consume_direct(&workers, &self.queue, move |delivery| intake.take(delivery)).await
    }
}

/// What the consumer of `rpc-<service>` needs to take a request.
struct Intake {
    pool: WorkerPool,
    methods: Vec<&'static str>,
    described: Option<Arc<RawValue>>,
    /// Counts the returns of requests on a classic queue.
    redelivery: Option<RedeliveryLimit>,
    metrics: Option<QueueMetrics>,
}

impl Intake {
    /// Takes one request: the returned future is its worker (a good
    /// request with a free slot), or what comes first (a redelivery to
    /// count, a wait for a slot), or its answer (a bad request).
    fn take(self: &Arc<Self>, delivery: Delivery) -> TransportFuture<'static, ()> {
        let intake = self.clone();
        let admitted = admit_soon(
            self.redelivery.as_ref(),
            self.metrics.as_ref(),
            self.pool.ctx(),
            delivery,
            move |delivery| async move { intake.checked(delivery).await },
        );
        let delivery = match admitted {
            Ok(delivery) => delivery,
            Err(later) => return later,
        };
        match Request::check(
            &self.pool,
            &self.methods,
            self.described.as_deref(),
            delivery,
        ) {
            Checked::Run(request) => match self.pool.try_slot() {
                Some(slot) => TransportFuture::boxed(request.worker(&self.pool, slot)),
                None => {
                    let pool = self.pool.clone();
                    TransportFuture::boxed(async move { request.run_when_free(&pool).await })
                }
            },
            answer => {
                let ctx = self.pool.ctx().clone();
                TransportFuture::boxed(async move { answer.settle(&ctx).await })
            }
        }
    }

    /// Checks an admitted request, then runs or answers it.
    async fn checked(&self, delivery: Delivery) {
        match Request::check(
            &self.pool,
            &self.methods,
            self.described.as_deref(),
            delivery,
        ) {
            Checked::Run(request) => request.run_when_free(&self.pool).await,
            answer => answer.settle(self.pool.ctx()).await,
        }
    }
}

/// A request that passed the checks that need no worker.
struct Request {
    delivery: Delivery,
    method: &'static str,
}

/// What the checks made of a request.
enum Checked {
    /// A good request, for a worker.
    Run(Request),
    /// Answered without a worker (an error, or the description).
    Answer(Delivery, Outcome),
    /// Without `reply_to`: nobody to answer; acked and dropped.
    Drop(Delivery),
}

impl Checked {
    /// Answers (and acks) or drops a request that needs no worker.
    async fn settle(self, ctx: &ContainerCtx) {
        match self {
            Checked::Run(_) => {}
            Checked::Answer(delivery, outcome) => reply_and_ack(ctx, delivery, &outcome).await,
            Checked::Drop(delivery) => settle(delivery.ack().await),
        }
    }
}

impl Request {
    /// The checks that need no worker: what is wrong with a request is
    /// answered with nameko's errors.
    fn check(
        pool: &WorkerPool,
        methods: &[&'static str],
        described: Option<&RawValue>,
        delivery: Delivery,
    ) -> Checked {
        let service = pool.service_name();
        let properties = &delivery.message.properties;
        if properties.reply_to.is_none() {
            tracing::error!(
                service,
                routing_key = %delivery.routing_key,
                "RPC request without reply_to: cannot reply; dropped"
            );
            return Checked::Drop(delivery);
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
            return Checked::Answer(delivery, Ok(described.to_owned().into()));
        }
        let headers = check_headers(&properties.headers);
        let error = match (rejected, method, headers) {
            (Some(error), _, _) => error,
            (None, None, _) => {
                let name = delivery.routing_key.rsplit('.').next().unwrap_or_default();
                RemoteError::method_not_found(name)
            }
            (None, _, Err(error)) => error,
            (None, Some(method), Ok(())) => return Checked::Run(Request { delivery, method }),
        };
        tracing::warn!(
            service,
            routing_key = %delivery.routing_key,
            %error,
            "bad RPC request"
        );
        Checked::Answer(delivery, Err(error))
    }

    /// Runs the request once a worker slot is free; dropped (back to the
    /// queue) if the container stops first.
    async fn run_when_free(self, pool: &WorkerPool) {
        if let Some(slot) = pool.slot().await {
            self.worker(pool, slot).await;
        }
    }

    /// The request's worker, which replies and acks.
    fn worker(self, pool: &WorkerPool, slot: WorkerSlot) -> impl Future<Output = ()> + use<> {
        let Request { delivery, method } = self;
        // The headers were checked: the worker reads its context from them.
        let context = Incoming::from_properties(&delivery.message.properties);
        let payload = delivery.message.clone();
        let ctx = pool.ctx().clone();
        pool.worker(slot, method, payload, context, move |outcome| async move {
            reply_and_ack(&ctx, delivery, &outcome).await;
            outcome
        })
    }
}

/// Publishes the reply, then acks the request. If the reply cannot be
/// published, the request is requeued once (its worker runs again), then
/// dropped. (An `async move` block that settles the delivery where it was
/// captured: an `async fn` would hold a second copy of it, in every RPC
/// worker's future.)
#[allow(clippy::manual_async_fn, reason = "an async fn's future is larger")]
fn reply_and_ack<'a>(
    ctx: &'a ContainerCtx,
    delivery: Delivery,
    outcome: &'a Outcome,
) -> impl Future<Output = ()> + Send + 'a {
    async move {
        // `check` made sure there is a reply_to.
        let properties = &delivery.message.properties;
        let reply_to = properties.reply_to.as_deref().unwrap_or_default();
        // The error is logged, and dropped, before the delivery is settled.
        let requeue = match publish_reply(ctx, reply_to, &properties.correlation_id, outcome).await
        {
            Ok(()) => None,
            Err(error) => {
                let requeue = !delivery.redelivered;
                tracing::error!(
                    service = ctx.service_name(),
                    %error,
                    requeue,
                    "could not publish an RPC reply"
                );
                Some(requeue)
            }
        };
        match requeue {
            None => settle(delivery.ack().await),
            Some(requeue) => settle(delivery.reject(requeue).await),
        }
    }
}

/// Publishes a reply as nameko does, through the RPC exchange with
/// `reply_to` as routing key; or, when `reply_to` names a reply queue (an
/// enoki caller's), straight to that queue through the default exchange,
/// `mandatory`, falling back to nameko's way if no queue has that name.
async fn publish_reply(
    ctx: &ContainerCtx,
    reply_to: &str,
    correlation_id: &Option<Arc<str>>,
    outcome: &Outcome,
) -> Result<()> {
    let transport = ctx.transport();
    let reply = || {
        let mut reply = Message::json(encode_reply(outcome));
        reply.properties.correlation_id = correlation_id.clone();
        reply
    };
    let exchange = ctx.settings().rpc_exchange();
    if names::names_reply_queue(reply_to) {
        let direct = PublishOptions { mandatory: true };
        match transport.publish("", reply_to, reply(), direct).await {
            Err(Error::Unroutable { .. }) => {}
            published => return published,
        }
    }
    transport
        .publish(exchange, reply_to, reply(), PublishOptions::default())
        .await
}
