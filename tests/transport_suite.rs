//! The transport behaviour suite: what every [`Transport`] must do, written
//! once and run against each implementation (see the contract in
//! `src/transport/mod.rs`).
//!
//! - `transport_suite/behaviours.rs`: one `async fn(&dyn TransportEnv)`
//!   per behaviour;
//! - `transport_suite/support.rs`: [`TransportEnv`] (hands out NEW
//!   connections to one broker) and helpers;
//! - this file: the `transport_suite!` macro, which expands to one
//!   `#[tokio::test]` per behaviour, and its instantiations.
//!
//! Names are unique per test run (uuid suffixes), so instantiations on a
//! shared broker cannot collide. Checks that something does NOT arrive wait
//! [`support::SILENCE`] (200 ms); everything else awaits the consumer.
//!
//! Run: `cargo test --test transport_suite`.
//!
//! [`Transport`]: enoki::transport::Transport
//! [`TransportEnv`]: support::TransportEnv

#[macro_use]
#[path = "transport_suite/support.rs"]
mod support;

#[path = "transport_suite/behaviours.rs"]
mod behaviours;

use std::sync::Arc;

use async_trait::async_trait;
use enoki::transport::{MemoryTransport, Transport};

use crate::support::TransportEnv;

/// `transport_suite!(module, env_expr)` expands to `mod module { ... }`
/// with one multi-threaded `#[tokio::test]` per behaviour. `env_expr` is
/// evaluated inside each (async) test, so it may `.await`; it must produce
/// a value implementing [`TransportEnv`], fresh for that test.
macro_rules! transport_suite {
    ($module:ident, $env:expr) => {
        transport_suite!(@tests $module, $env;
            round_trip_preserves_properties_and_headers,
            topic_routing,
            fan_out_reaches_each_queue_once,
            default_exchange_routes_by_queue_name,
            mandatory_unroutable_fails,
            non_mandatory_unroutable_is_dropped,
            publish_to_missing_exchange_fails,
            redeclare_with_other_flags_fails,
            competing_consumers_share_exactly_once,
            prefetch_one_waits_for_ack,
            reject_requeue_redelivers,
            reject_without_requeue_discards,
            dropped_delivery_is_redelivered,
            dropped_consumer_returns_only_unhanded_deliveries,
            requeued_messages_keep_publish_order,
            closing_connection_requeues_and_cleans_up,
            stale_ack_settles_nothing,
            closed_connection_consumer_yields_nothing_more,
            exclusive_queue_is_locked_to_its_connection,
            auto_delete_queue_vanishes_with_last_consumer,
            unbind_stops_delivery,
            delete_queue_removes_it,
            single_consumer_sees_publish_order,
            x_expires_deletes_unused_queue,
            expired_messages_are_never_delivered,
            single_active_consumer_hands_over,
            names_over_255_bytes_are_refused,
            exchange_exists_asks_without_creating,
            max_length_drops_the_oldest_or_refuses,
            dead_lettering_records_x_death,
            quorum_queues_dead_letter_past_the_delivery_limit,
            direct_consumer_gets_deliveries_within_prefetch,
        );
    };
    (@tests $module:ident, $env:expr; $($behaviour:ident),+ $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    let env = $env;
                    $crate::support::run(&env, $crate::behaviours::$behaviour(&env)).await;
                }
            )+
        }
    };
}

// ===== memory =====

/// The embedded broker: a fresh one per test. `connect()` opens another
/// connection to it; the first connection is held for the env's lifetime
/// (dropping a [`MemoryTransport`] closes its connection).
#[derive(Debug)]
struct MemoryEnv {
    first: Arc<MemoryTransport>,
}

impl MemoryEnv {
    fn new() -> Self {
        MemoryEnv {
            first: MemoryTransport::new(),
        }
    }
}

#[async_trait]
impl TransportEnv for MemoryEnv {
    async fn connect(&self) -> Arc<dyn Transport> {
        self.first.connect()
    }

    async fn consumer_count(&self, queue: &str) -> Option<usize> {
        self.first.consumer_count(queue)
    }
}

transport_suite!(memory, MemoryEnv::new());

// ===== amqp (RabbitMQ) =====

#[cfg(feature = "amqp")]
#[path = "common/amqp.rs"]
mod amqp_common;

/// A fresh RabbitMQ vhost per test (see `tests/common/amqp.rs`):
/// `connect()` opens a NEW AMQP connection to it on every call, and
/// `teardown()` closes those connections and deletes the vhost.
///
/// When RabbitMQ is not reachable the vhost helper prints `skipped: ...`
/// (and the test passes vacuously), unless `CI=true`, where it panics.
#[cfg(feature = "amqp")]
#[derive(Debug)]
struct AmqpEnv {
    vhost: parking_lot::Mutex<Option<amqp_common::TestVhost>>,
    uri: String,
    connections: parking_lot::Mutex<Vec<Arc<enoki::transport::AmqpTransport>>>,
}

#[cfg(feature = "amqp")]
impl AmqpEnv {
    /// `None` (after printing `skipped: ...`) when RabbitMQ is unreachable
    /// outside CI.
    async fn new() -> Option<Self> {
        let vhost = tokio::task::spawn_blocking(amqp_common::TestVhost::create)
            .await
            .expect("creating the test vhost")?;
        Some(AmqpEnv {
            uri: vhost.uri.clone(),
            vhost: parking_lot::Mutex::new(Some(vhost)),
            connections: parking_lot::Mutex::new(Vec::new()),
        })
    }
}

#[cfg(feature = "amqp")]
#[async_trait]
impl TransportEnv for AmqpEnv {
    async fn connect(&self) -> Arc<dyn Transport> {
        let options = enoki::transport::AmqpOptions {
            connection_name: Some("enoki-transport-suite".into()),
            ..Default::default()
        };
        let transport = enoki::transport::AmqpTransport::connect(&self.uri, options)
            .await
            .unwrap_or_else(|err| panic!("connecting to the test vhost: {err}"));
        self.connections.lock().push(transport.clone());
        transport
    }

    async fn consumer_count(&self, queue: &str) -> Option<usize> {
        let vhost = self.vhost.lock().as_ref()?.name.clone();
        let queue = queue.to_owned();
        tokio::task::spawn_blocking(move || {
            amqp_common::rabbitmqctl(&[
                "list_queues",
                "-q",
                "--no-table-headers",
                "-p",
                &vhost,
                "name",
                "consumers",
            ])
            .lines()
            .find_map(|line| {
                let (name, count) = line.split_once('\t')?;
                (name == queue).then(|| count.trim().parse().ok())?
            })
        })
        .await
        .expect("rabbitmqctl")
    }

    async fn teardown(&self) {
        let connections = std::mem::take(&mut *self.connections.lock());
        for transport in connections {
            transport.close().await;
        }
        let vhost = self.vhost.lock().take();
        if let Some(vhost) = vhost {
            // `TestVhost`'s drop runs `rabbitmqctl delete_vhost`.
            let _ = tokio::task::spawn_blocking(move || drop(vhost)).await;
        }
    }
}

/// `transport_suite!` for an env that may be absent (RabbitMQ not
/// reachable outside CI): the test then passes after the `skipped:` line.
#[cfg(feature = "amqp")]
macro_rules! amqp_env_or_skip {
    () => {
        match $crate::AmqpEnv::new().await {
            Some(env) => env,
            None => return,
        }
    };
}

#[cfg(feature = "amqp")]
transport_suite!(amqp, amqp_env_or_skip!());
