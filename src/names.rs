//! nameko's naming rules: the exchanges, queues, routing keys and headers
//! every nameko 2.x service agrees on (`nameko-wire.md` §1–§3).
//!
//! Plain functions of plain strings, so that every module that needs a
//! name (entrypoints, clients, the gateway) asks here and nowhere else.
//!
//! ```
//! use enoki::names;
//!
//! assert_eq!(names::rpc_queue("greeter"), "rpc-greeter");
//! assert_eq!(names::rpc_routing_key("greeter", "hello"), "greeter.hello");
//! assert_eq!(names::event_exchange("greeter"), "greeter.events");
//! assert_eq!(
//!     names::service_pool_queue("greeter", "greeted", "listener", "on_greeted"),
//!     "evt-greeter-greeted--listener.on_greeted"
//! );
//! ```

/// The default RPC exchange (config key `rpc_exchange`).
pub const DEFAULT_RPC_EXCHANGE: &str = "nameko-rpc";
/// The reply-queue owner name of standalone clients (nameko 2.x).
pub const STANDALONE_OWNER: &str = "standalone_rpc_proxy";
/// How long an idle reply queue lives, in milliseconds (`x-expires`).
pub const REPLY_QUEUE_TTL_MS: i64 = 300_000;
/// The prefix of context-data headers (`nameko.user_id`, ...).
pub const HEADER_PREFIX: &str = "nameko.";
/// The context-data key (and bare header) of the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// The context-data key (and bare header) of the W3C trace state.
pub const TRACESTATE: &str = "tracestate";

/// `rpc-<service>`: the queue of a service's RPC requests.
pub fn rpc_queue(service: &str) -> String {
    format!("rpc-{service}")
}

/// `<service>.*`: the binding of a service's RPC queue.
pub fn rpc_binding(service: &str) -> String {
    format!("{service}.*")
}

/// `<service>.<method>` in a buffer of its own, on the stack when it is
/// short (as almost every one is): the routing key of a request being sent.
pub(crate) struct RoutingKey(smallvec::SmallVec<[u8; 96]>);

impl RoutingKey {
    /// `<service>.<method>`.
    pub(crate) fn rpc(service: &str, method: &str) -> Self {
        let mut key = smallvec::SmallVec::new();
        key.extend_from_slice(service.as_bytes());
        key.push(b'.');
        key.extend_from_slice(method.as_bytes());
        RoutingKey(key)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Two strings and a dot: valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// `<service>.<method>`: the routing key of an RPC request.
pub fn rpc_routing_key(service: &str, method: &str) -> String {
    let mut key = String::with_capacity(service.len() + method.len() + 1);
    key.push_str(service);
    key.push('.');
    key.push_str(method);
    key
}

/// `rpc.reply-<owner>-<uuid>`: a caller's reply queue.
pub fn reply_queue(owner: &str, uuid: &str) -> String {
    format!("{REPLY_QUEUE_PREFIX}{owner}-{uuid}")
}

const REPLY_QUEUE_PREFIX: &str = "rpc.reply-";

/// Whether a request's `reply_to` names a reply queue (an enoki caller's,
/// which is bound under its own name), rather than being a bare routing
/// key (a nameko caller's uuid): its reply can then go straight to the
/// queue through the default exchange.
pub fn names_reply_queue(reply_to: &str) -> bool {
    reply_to.starts_with(REPLY_QUEUE_PREFIX)
}

/// `<queue>.dlq`: where the broker dead-letters a quorum work queue's
/// messages past their delivery limit.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// `<queue>.retry.<ms>`: the delay queue that holds a failed event of
/// `queue` for `delay` (milliseconds) before it goes back to `queue`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(enoki::names::retry_queue("q", Duration::from_secs(5)), "q.retry.5000");
/// ```
pub fn retry_queue(queue: &str, delay: std::time::Duration) -> String {
    format!("{}{}", retry_queue_prefix(queue), delay.as_millis())
}

/// `<queue>.retry.`: what the names of `queue`'s delay queues start with.
pub fn retry_queue_prefix(queue: &str) -> String {
    format!("{queue}.retry.")
}

/// `timer-<service>.<method>`: the lease of a `cluster_once` timer, shared
/// by the service's instances (enoki's own; nameko has no such timer).
pub fn timer_lease_queue(service: &str, method: &str) -> String {
    format!("timer-{service}.{method}")
}

/// `<service>.events`: a service's event exchange.
pub fn event_exchange(service: &str) -> String {
    format!("{service}.events")
}

/// `evt-<source>-<event>--<service>.<method>`: the queue of a service-pool
/// event handler, shared by every instance of the service.
pub fn service_pool_queue(source: &str, event_type: &str, service: &str, method: &str) -> String {
    format!("evt-{source}-{event_type}--{service}.{method}")
}

/// `evt-<source>-<event>`: the one queue of every singleton handler of an
/// event.
pub fn singleton_queue(source: &str, event_type: &str) -> String {
    format!("evt-{source}-{event_type}")
}

/// `evt-<source>-<event>--<service>.<method>-<identifier>`: the queue of a
/// broadcast handler, one per service instance.
pub fn broadcast_queue(
    source: &str,
    event_type: &str,
    service: &str,
    method: &str,
    identifier: &str,
) -> String {
    format!("evt-{source}-{event_type}--{service}.{method}-{identifier}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nameko() {
        assert_eq!(rpc_queue("greeter"), "rpc-greeter");
        assert_eq!(rpc_binding("greeter"), "greeter.*");
        assert_eq!(reply_queue("gateway", "u"), "rpc.reply-gateway-u");
        assert!(names_reply_queue(&reply_queue("gateway", "u")));
        assert!(!names_reply_queue("0a1322eb-ce57-4fc3-a42a-d9d6787fed0a"));
        assert_eq!(
            service_pool_queue("greeter", "greeted", "listener", "on"),
            "evt-greeter-greeted--listener.on"
        );
        assert_eq!(singleton_queue("greeter", "greeted"), "evt-greeter-greeted");
        assert_eq!(
            broadcast_queue("greeter", "greeted", "listener", "on", "abc"),
            "evt-greeter-greeted--listener.on-abc"
        );
    }
}
