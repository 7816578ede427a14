//! The [`Service`] trait: the only trait `#[service]` implements, and the
//! container's only call into user code.
//!
//! A service is plain data (its name and a table of [`EntrypointSpec`]s)
//! plus one `dispatch` function: decode the arguments, call the method,
//! encode the result. Spawning, acking, timers and concurrency live in the
//! container. `examples/manual_service.rs` implements it by hand.

use std::fmt;
use std::time::Duration;

use crate::context::WorkerCtx;
use crate::dependency::Dependencies;
use crate::error::{Error, RemoteError};
use crate::names;

/// Moved to [`crate::outcome::Outcome`].
#[deprecated(since = "0.1.0", note = "use `enoki::outcome::Outcome`")]
pub type Outcome = crate::outcome::Outcome;
/// Moved to [`crate::args::Param`].
#[deprecated(since = "0.1.0", note = "use `enoki::args::Param`")]
pub type Param = crate::args::Param;
/// Moved to [`crate::args::Args`].
#[deprecated(since = "0.1.0", note = "use `enoki::args::Args`")]
pub type Args<'a> = crate::args::Args<'a>;
/// Moved to [`crate::args::event_payload`].
#[deprecated(since = "0.1.0", note = "use `enoki::args::event_payload`")]
pub fn event_payload<T: serde::de::DeserializeOwned>(
    method: &str,
    body: &[u8],
) -> Result<T, RemoteError> {
    crate::args::event_payload(method, body)
}
/// `IntoOutcome` lives in [`crate::outcome`];
/// this path stays for existing code.
pub use crate::outcome::IntoOutcome;

/// A service: a name, its entrypoints, and a dispatcher.
///
/// One instance is built per worker from the service's dependency providers
/// ([`Dependencies::inject`]), as nameko builds one instance per worker.
pub trait Service: Dependencies {
    /// The service name (`rpc-<name>` queue, `<name>.events` exchange).
    const NAME: &'static str;

    /// The entrypoints: which methods run on RPC calls, events and timers.
    fn entrypoints() -> Vec<EntrypointSpec>;

    /// The schemas of the RPC methods and event handlers (see
    /// [`schema`](crate::schema)); none by default.
    fn schemas() -> Vec<crate::schema::MethodSchema> {
        Vec::new()
    }

    /// Runs one entrypoint method.
    ///
    /// `payload` is the raw message body: for RPC methods the
    /// `{"args": [...], "kwargs": {...}}` request, for event handlers the
    /// event payload, for timers empty. Unknown methods answer
    /// [`RemoteError::method_not_found`]; arguments that don't fit the
    /// signature answer [`RemoteError::incorrect_signature`].
    fn dispatch<'a>(
        &'a self,
        method: &'a str,
        payload: &'a [u8],
        ctx: &'a WorkerCtx,
    ) -> impl Future<Output = crate::outcome::Outcome> + Send + 'a;

    /// Runs one `#[http]` method: its parameters are axum extractors of
    /// `request`, its result becomes the response. The default (a service
    /// without `#[http]` methods) answers 404 `MethodNotFound`.
    #[cfg(feature = "http")]
    fn dispatch_http<'a>(
        &'a self,
        method: &'a str,
        request: crate::web::Request,
        ctx: &'a WorkerCtx,
    ) -> futures::future::BoxFuture<'a, crate::web::Response> {
        let _ = (request, ctx);
        Box::pin(async move {
            axum::response::IntoResponse::into_response(RemoteError::method_not_found(method))
        })
    }
}

/// One entrypoint of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct EntrypointSpec {
    /// The method name.
    pub method: &'static str,
    /// What triggers it.
    pub kind: EntrypointKind,
}

impl EntrypointSpec {
    /// An RPC entrypoint.
    pub fn rpc(method: &'static str) -> Self {
        EntrypointSpec {
            method,
            kind: EntrypointKind::Rpc,
        }
    }

    /// An event handler entrypoint.
    pub fn event(method: &'static str, spec: EventHandlerSpec) -> Self {
        EntrypointSpec {
            method,
            kind: EntrypointKind::Event(spec),
        }
    }

    /// A timer entrypoint.
    pub fn timer(method: &'static str, spec: TimerSpec) -> Self {
        EntrypointSpec {
            method,
            kind: EntrypointKind::Timer(spec),
        }
    }

    /// An `#[http]` entrypoint.
    pub fn http(method: &'static str, spec: HttpSpec) -> Self {
        EntrypointSpec {
            method,
            kind: EntrypointKind::Http(spec),
        }
    }

    /// An `#[entrypoint]` method: triggered by an [`Entrypoint`] of the
    /// user's own, added with
    /// [`ServiceDef::with_entrypoint`](crate::container::ServiceDef::with_entrypoint).
    ///
    /// [`Entrypoint`]: crate::entrypoint::Entrypoint
    pub fn custom(method: &'static str) -> Self {
        EntrypointSpec {
            method,
            kind: EntrypointKind::Custom,
        }
    }
}

/// What triggers an entrypoint.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EntrypointKind {
    /// `#[rpc]`: a request on `rpc-<service>` with routing key
    /// `<service>.<method>`.
    Rpc,
    /// `#[event_handler]`: an event from another service.
    Event(EventHandlerSpec),
    /// `#[timer]`: a periodic tick.
    Timer(TimerSpec),
    /// `#[http]`: an HTTP request on the process's web server (or the
    /// gateway).
    Http(HttpSpec),
    /// `#[entrypoint]`: whatever a user-written
    /// [`Entrypoint`](crate::entrypoint::Entrypoint) of the service hands
    /// it; the payload is decoded as an event handler's is.
    Custom,
}

/// How events reach a handler (nameko's `handler_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HandlerType {
    /// One copy per (service, method); instances of the service compete.
    #[default]
    ServicePool,
    /// One copy in total, shared by every singleton handler of the event.
    Singleton,
    /// One copy per service instance.
    Broadcast,
}

impl HandlerType {
    /// nameko's name: `service_pool`, `singleton` or `broadcast`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerType::ServicePool => "service_pool",
            HandlerType::Singleton => "singleton",
            HandlerType::Broadcast => "broadcast",
        }
    }
}

impl fmt::Display for HandlerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for HandlerType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "service_pool" => Ok(HandlerType::ServicePool),
            "singleton" => Ok(HandlerType::Singleton),
            "broadcast" => Ok(HandlerType::Broadcast),
            other => Err(Error::Config(format!(
                "unknown handler_type `{other}`: expected service_pool, singleton or broadcast"
            ))),
        }
    }
}

/// The configuration of an `#[event_handler]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventHandlerSpec {
    /// The service that dispatches the event.
    pub source_service: &'static str,
    /// The event type (routing key; `*` and `#` act as wildcards).
    pub event_type: &'static str,
    /// How events reach this handler.
    pub handler_type: HandlerType,
    /// Keep the queue (and its events) while no instance runs. When false
    /// the queue is auto-delete (and exclusive for broadcast handlers).
    pub reliable_delivery: bool,
    /// Requeue the event when the handler fails (instead of dropping it).
    pub requeue_on_error: bool,
    /// A stable identifier for the broadcast queue of this instance; `None`
    /// draws a fresh uuid per container (and requires
    /// `reliable_delivery = false`, as in nameko).
    pub broadcast_identifier: Option<&'static str>,
}

impl EventHandlerSpec {
    /// A service-pool handler with reliable delivery, as nameko's defaults.
    pub fn new(source_service: &'static str, event_type: &'static str) -> Self {
        EventHandlerSpec {
            source_service,
            event_type,
            handler_type: HandlerType::ServicePool,
            reliable_delivery: true,
            requeue_on_error: false,
            broadcast_identifier: None,
        }
    }

    /// Sets the handler type. A broadcast handler without an identifier
    /// defaults to `reliable_delivery = false`.
    #[must_use]
    pub fn handler_type(mut self, handler_type: HandlerType) -> Self {
        self.handler_type = handler_type;
        if handler_type == HandlerType::Broadcast && self.broadcast_identifier.is_none() {
            self.reliable_delivery = false;
        }
        self
    }

    /// Sets `reliable_delivery`.
    #[must_use]
    pub fn reliable_delivery(mut self, reliable: bool) -> Self {
        self.reliable_delivery = reliable;
        self
    }

    /// Sets `requeue_on_error`.
    #[must_use]
    pub fn requeue_on_error(mut self, requeue: bool) -> Self {
        self.requeue_on_error = requeue;
        self
    }

    /// The name of the queue this handler of `service.method` consumes
    /// from, by handler type ([`crate::names`]); `identifier` tells one
    /// broadcast queue from another.
    pub fn queue_name(&self, service: &str, method: &str, identifier: &str) -> String {
        let (source, event) = (self.source_service, self.event_type);
        match self.handler_type {
            HandlerType::ServicePool => names::service_pool_queue(source, event, service, method),
            HandlerType::Singleton => names::singleton_queue(source, event),
            HandlerType::Broadcast => {
                names::broadcast_queue(source, event, service, method, identifier)
            }
        }
    }
}

/// The configuration of an `#[http]` entrypoint:
/// `#[http(GET, "/users/{id}/profile")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSpec {
    /// The HTTP method, upper case: `GET`, `POST`, `PUT`, `PATCH`,
    /// `DELETE`, `HEAD` or `OPTIONS`.
    pub method: &'static str,
    /// The path, axum's syntax: `{name}` for a segment, `{*rest}` for the
    /// rest.
    pub path: &'static str,
}

/// The configuration of a `#[timer]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimerSpec {
    /// Time between runs.
    pub interval: Duration,
    /// Fire once at start instead of after the first interval.
    pub eager: bool,
    /// Fire on one instance of the service at a time, not on every
    /// instance (nameko's behaviour, the default). The instances share a
    /// lease: a single-active-consumer queue (`timer-<service>.<method>`)
    /// holding one token message, which the active instance keeps
    /// unacknowledged while it lives. When that instance stops or dies the
    /// broker hands the token to the next one, which fires from its next
    /// tick on. The embedded broker keeps the same semantics. With `eager`,
    /// the fire at start happens only if the lease has already arrived.
    pub cluster_once: bool,
    /// A cron schedule instead of an interval (`interval` is then unused).
    pub cron: Option<CronSpec>,
}

/// The cron schedule of a timer: `#[timer(cron = "0 */5 * * * *")]`, with
/// `timezone = "Europe/Paris"` (UTC by default), or
/// `#[timer(cron_from_config = "REPORT_CRON")]` to read the expression from
/// a config key at start.
///
/// An expression has six fields, seconds first, and an optional year:
/// `sec min hour day-of-month month day-of-week [year]` (the `cron`
/// crate's syntax: `*`, lists `1,2`, ranges `1-5`, steps `*/5`, names
/// `Mon`, `Jan`). An occurrence missed because the previous run was still
/// going is skipped, not caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronSpec {
    /// The expression, or with `from_config` the config key that holds it.
    pub expression: &'static str,
    /// Read the expression from the config key `expression` at start (a
    /// missing or malformed value stops the start with an error).
    pub from_config: bool,
    /// The IANA time zone the expression is read in (`UTC` by default).
    pub timezone: &'static str,
}

impl TimerSpec {
    /// A timer firing every `interval` seconds (fractions allowed).
    pub fn every_secs(interval: f64) -> Self {
        TimerSpec {
            interval: Duration::from_secs_f64(interval),
            eager: false,
            cluster_once: false,
            cron: None,
        }
    }

    /// A timer on a cron schedule, in UTC (see [`CronSpec`]).
    ///
    /// ```
    /// use enoki::service::TimerSpec;
    ///
    /// let spec = TimerSpec::cron("0 */5 * * * *").in_timezone("Europe/Paris");
    /// assert_eq!(spec.cron.unwrap().timezone, "Europe/Paris");
    /// ```
    pub fn cron(expression: &'static str) -> Self {
        TimerSpec {
            interval: Duration::ZERO,
            eager: false,
            cluster_once: false,
            cron: Some(CronSpec {
                expression,
                from_config: false,
                timezone: "UTC",
            }),
        }
    }

    /// A timer on the cron schedule the config key `key` holds.
    pub fn cron_from_config(key: &'static str) -> Self {
        let mut spec = TimerSpec::cron(key);
        if let Some(cron) = spec.cron.as_mut() {
            cron.from_config = true;
        }
        spec
    }

    /// The same cron timer, its expression read in the IANA time zone
    /// `timezone` (no effect on an interval timer).
    #[must_use]
    pub fn in_timezone(mut self, timezone: &'static str) -> Self {
        if let Some(cron) = self.cron.as_mut() {
            cron.timezone = timezone;
        }
        self
    }

    /// The same timer, firing on one instance of the service at a time
    /// (see [`TimerSpec::cluster_once`]).
    #[must_use]
    pub fn cluster_once(mut self) -> Self {
        self.cluster_once = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_by_handler_type() {
        let spec = EventHandlerSpec::new("greeter", "greeted");
        let name = |t| {
            spec.clone()
                .handler_type(t)
                .queue_name("listener", "on", "abc")
        };
        assert_eq!(
            name(HandlerType::ServicePool),
            "evt-greeter-greeted--listener.on"
        );
        assert_eq!(name(HandlerType::Singleton), "evt-greeter-greeted");
        assert_eq!(
            name(HandlerType::Broadcast),
            "evt-greeter-greeted--listener.on-abc"
        );
    }

    #[test]
    fn handler_types_parse_by_nameko_name() {
        for t in [
            HandlerType::ServicePool,
            HandlerType::Singleton,
            HandlerType::Broadcast,
        ] {
            assert_eq!(t.as_str().parse::<HandlerType>().unwrap(), t);
        }
        let err = "pool".parse::<HandlerType>().unwrap_err().to_string();
        assert!(err.contains("unknown handler_type `pool`"), "{err}");
    }
}
