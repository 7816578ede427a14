//! The behaviours every [`Transport`] must show, each an `async fn` over a
//! [`TransportEnv`]. `transport_suite!` turns each into one test per
//! transport; add a behaviour here AND to the list in `transport_suite!`.

use std::collections::BTreeMap;

use bytes::Bytes;
use enoki::Error;
use enoki::message::{Message, Properties};
use enoki::transport::{ExchangeSpec, QueueSpec};
use serde_json::json;

use crate::support::{
    MANDATORY, NOT_MANDATORY, TransportEnv, assert_ended, assert_silent, assert_vanishes,
    await_no_consumers, body, bound_queue, exchange, msg, prefetch, publish, queue, queue_exists,
    recv, recv_acked, unique,
};

/// Every property and header survives publish → deliver, including nested
/// arrays and objects, integers and strings; a message with no properties
/// at all arrives with none; the delivery names its exchange and key.
pub(crate) async fn round_trip_preserves_properties_and_headers(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "rt").await;
    let q = bound_queue(&conn, "rt", &x, &["svc.*"]).await;
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");

    let headers = json!({
        "nameko.call_id_stack": ["standalone_rpc_proxy.call.1", "greeter.hello.2"],
        "nameko.user_id": "matt",
        "nameko.language": "",
        "count": 42,
        "negative": -7,
        "big": 9_007_199_254_740_993_i64,
        "ratio": 0.25,
        "flag": false,
        "nothing": null,
        "nested": {
            "name": "inner",
            "n": 3,
            "list": [1, "two", [3, "four"], {"five": 5}],
            "deeper": {"empty_list": [], "empty_object": {}},
        },
    });
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let sent = Message {
        properties: Properties {
            content_type: Some("application/json".into()),
            content_encoding: Some("utf-8".into()),
            delivery_mode: Some(2),
            priority: Some(3),
            correlation_id: Some(correlation_id.as_str().into()),
            reply_to: Some("reply-routing-key".into()),
            headers: headers.as_object().expect("object").clone().into(),
            expiration: Some(std::time::Duration::from_secs(60)),
            trace: enoki::trace_context::TraceContext::parse(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                Some("vendor=opaque"),
            )
            .map(std::sync::Arc::new),
        },
        body: Bytes::from_static(br#"{"args": ["Matt"], "kwargs": {}}"#),
    };
    conn.publish(&x, "svc.method", sent.clone(), MANDATORY)
        .await
        .expect("publish");

    let delivery = recv(&mut consumer).await;
    assert_eq!(&*delivery.exchange, x.as_str(), "delivery.exchange");
    assert_eq!(&*delivery.routing_key, "svc.method", "delivery.routing_key");
    assert!(!delivery.redelivered, "a first delivery is not redelivered");
    let got = &delivery.message.properties;
    assert_eq!(
        got.content_type, sent.properties.content_type,
        "content_type"
    );
    assert_eq!(
        got.content_encoding, sent.properties.content_encoding,
        "content_encoding"
    );
    assert_eq!(got.delivery_mode, Some(2), "delivery_mode");
    assert_eq!(got.priority, Some(3), "priority");
    assert_eq!(
        got.correlation_id.as_deref(),
        Some(correlation_id.as_str()),
        "correlation_id"
    );
    assert_eq!(
        got.reply_to.as_deref(),
        Some("reply-routing-key"),
        "reply_to"
    );
    assert_eq!(
        serde_json::Value::Object(got.headers.clone().into_map()),
        headers,
        "headers"
    );
    assert_eq!(got.expiration, sent.properties.expiration, "expiration");
    assert!(got.trace.is_some(), "trace");
    assert_eq!(got.trace, sent.properties.trace, "trace");
    assert_eq!(delivery.message.body, sent.body, "body");
    delivery.ack().await.expect("ack");

    // A bare message: no properties, no headers, a non-UTF-8 body.
    let bare = Message {
        properties: Properties::default(),
        body: Bytes::from_static(&[0, 159, 146, 150, 255]),
    };
    conn.publish(&x, "svc.bare", bare.clone(), MANDATORY)
        .await
        .expect("publish bare");
    let delivery = recv(&mut consumer).await;
    assert_eq!(*delivery.message, bare, "a bare message arrives bare");
    delivery.ack().await.expect("ack");
}

/// Topic routing: exact keys, `*` (exactly one word), `#` (zero or more
/// words, also at the end and in the middle); keys that match no binding
/// reach nobody.
pub(crate) async fn topic_routing(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "topic").await;
    let bindings: [(&str, &str); 5] = [
        ("exact", "shop.order.created"),
        ("star", "shop.*.created"),
        ("hash-tail", "shop.#"),
        ("hash-mid", "shop.#.created"),
        ("hash-all", "#"),
    ];
    let keys = [
        "shop.order.created",
        "shop.created",
        "shop",
        "shop.order.item.created",
        "shop.order.deleted",
        "other.order.created",
        "shopping.order.created",
    ];
    // Which keys each binding must receive, by RabbitMQ's topic rules.
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("exact", vec!["shop.order.created"]),
        ("star", vec!["shop.order.created"]),
        (
            "hash-tail",
            vec![
                "shop.order.created",
                "shop.created",
                "shop",
                "shop.order.item.created",
                "shop.order.deleted",
            ],
        ),
        (
            "hash-mid",
            vec![
                "shop.order.created",
                "shop.created",
                "shop.order.item.created",
            ],
        ),
        ("hash-all", keys.to_vec()),
    ]);

    let mut consumers = Vec::new();
    for (label, pattern) in bindings {
        let q = bound_queue(&conn, label, &x, &[pattern]).await;
        consumers.push((label, conn.consume(&q, prefetch(0)).await.expect("consume")));
    }
    for key in keys {
        conn.publish(&x, key, msg(key), NOT_MANDATORY)
            .await
            .expect("publish");
    }
    // A key that matches no binding (not even `#`, which matches all keys,
    // so use a separate exchange with only a `*` binding to check "nobody").
    let lonely = exchange(&conn, "topic-lonely").await;
    let lonely_q = bound_queue(&conn, "lonely", &lonely, &["one.*"]).await;
    let mut lonely_consumer = conn.consume(&lonely_q, prefetch(0)).await.expect("consume");
    for key in ["one", "one.two.three", "two.one", "one.two"] {
        conn.publish(&lonely, key, msg(key), NOT_MANDATORY)
            .await
            .expect("publish");
    }

    for (label, consumer) in &mut consumers {
        let want = &expected[label];
        let mut got = recv_acked(consumer, want.len()).await;
        got.sort();
        let mut want: Vec<String> = want.iter().map(|k| (*k).to_owned()).collect();
        want.sort();
        assert_eq!(got, want, "keys delivered to the {label:?} binding");
        assert_silent(consumer, &format!("{label:?} binding after its matches")).await;
    }
    assert_eq!(
        recv_acked(&mut lonely_consumer, 1).await,
        ["one.two"],
        "`one.*` matches one.two"
    );
    assert_silent(
        &mut lonely_consumer,
        "`one.*` must not match one, one.two.three, two.one",
    )
    .await;
}

/// A message routed to several queues reaches each exactly once, even a
/// queue bound by two matching patterns.
pub(crate) async fn fan_out_reaches_each_queue_once(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "fan").await;
    let q_twice = bound_queue(&conn, "fan-twice", &x, &["k.x", "k.*", "#"]).await;
    let q_star = bound_queue(&conn, "fan-star", &x, &["*.x"]).await;
    let q_exact = bound_queue(&conn, "fan-exact", &x, &["k.x"]).await;
    let q_other = bound_queue(&conn, "fan-other", &x, &["k.y"]).await;
    let mut consumers = Vec::new();
    for q in [&q_twice, &q_star, &q_exact] {
        consumers.push(conn.consume(q, prefetch(0)).await.expect("consume"));
    }
    let mut other = conn.consume(&q_other, prefetch(0)).await.expect("consume");

    conn.publish(&x, "k.x", msg("once"), MANDATORY)
        .await
        .expect("publish");
    for consumer in &mut consumers {
        assert_eq!(recv_acked(consumer, 1).await, ["once"]);
    }
    for consumer in &mut consumers {
        assert_silent(consumer, "a second copy of a fanned-out message").await;
    }
    assert_silent(&mut other, "a queue bound with another key").await;
}

/// The default exchange `""` routes to the queue named by the routing key.
pub(crate) async fn default_exchange_routes_by_queue_name(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let q = queue(&conn, "direct").await;
    let other = queue(&conn, "direct-other").await;
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    let mut other_consumer = conn.consume(&other, prefetch(0)).await.expect("consume");

    conn.publish("", &q, msg("to-q"), MANDATORY)
        .await
        .expect("publish");
    let delivery = recv(&mut consumer).await;
    assert_eq!(body(&delivery), "to-q");
    assert_eq!(
        &*delivery.exchange, "",
        "delivered via the default exchange"
    );
    assert_eq!(
        &*delivery.routing_key,
        q.as_str(),
        "routing key is the queue name"
    );
    delivery.ack().await.expect("ack");
    assert_silent(&mut other_consumer, "another queue on the default exchange").await;
}

/// A mandatory message that no queue is bound for fails with
/// `Error::Unroutable`, on a topic exchange and on the default exchange;
/// the connection keeps working and routable mandatory messages pass.
pub(crate) async fn mandatory_unroutable_fails(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "mand").await;

    match conn
        .publish(&x, "nobody.home", msg("lost"), MANDATORY)
        .await
    {
        Err(Error::Unroutable {
            exchange,
            routing_key,
        }) => {
            assert_eq!(exchange, x, "Unroutable names the exchange");
            assert_eq!(
                routing_key, "nobody.home",
                "Unroutable names the routing key"
            );
        }
        other => {
            panic!("mandatory publish to an unbound exchange: expected Unroutable, got {other:?}")
        }
    }

    let q = bound_queue(&conn, "mand", &x, &["a.b"]).await;
    assert_err!(
        conn.publish(&x, "a.c", msg("lost"), MANDATORY).await,
        Error::Unroutable { .. },
        "mandatory publish with a non-matching key"
    );
    let missing = unique("no-such-queue");
    assert_err!(
        conn.publish("", &missing, msg("lost"), MANDATORY).await,
        Error::Unroutable { .. },
        "mandatory publish to a missing queue via the default exchange"
    );

    // Still usable, and a routable mandatory message is delivered.
    conn.publish(&x, "a.b", msg("found"), MANDATORY)
        .await
        .expect("routable mandatory publish");
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    assert_eq!(recv_acked(&mut consumer, 1).await, ["found"]);
    assert_silent(&mut consumer, "an unroutable message must not be kept").await;
}

/// A non-mandatory message that no queue is bound for is accepted (Ok) and
/// dropped: it does not turn up in a queue bound or declared later.
pub(crate) async fn non_mandatory_unroutable_is_dropped(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "nonmand").await;
    conn.publish(&x, "a.b", msg("dropped-topic"), NOT_MANDATORY)
        .await
        .expect("non-mandatory unroutable publish is Ok");
    let later = unique("later");
    conn.publish("", &later, msg("dropped-default"), NOT_MANDATORY)
        .await
        .expect("non-mandatory publish to a missing queue is Ok");

    let q = bound_queue(&conn, "nonmand", &x, &["a.b"]).await;
    conn.declare_queue(&QueueSpec::durable(&later))
        .await
        .expect("declare");
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    let mut later_consumer = conn.consume(&later, prefetch(0)).await.expect("consume");
    publish(&conn, &x, "a.b", "marker").await;
    assert_eq!(
        recv_acked(&mut consumer, 1).await,
        ["marker"],
        "only the routable message"
    );
    assert_silent(&mut consumer, "a dropped message turning up after binding").await;
    assert_silent(
        &mut later_consumer,
        "a dropped message turning up after declaring",
    )
    .await;
}

/// Publishing to an exchange that does not exist fails with
/// `Error::ExchangeNotFound`, and the same connection works afterwards
/// (on AMQP the channel is closed by the broker and must be replaced).
pub(crate) async fn publish_to_missing_exchange_fails(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let missing = unique("no-such-exchange");
    for options in [NOT_MANDATORY, MANDATORY] {
        match conn.publish(&missing, "a.b", msg("lost"), options).await {
            Err(Error::ExchangeNotFound(name)) => {
                assert_eq!(name, missing, "ExchangeNotFound names the exchange");
            }
            other => {
                panic!("publish to a missing exchange: expected ExchangeNotFound, got {other:?}")
            }
        }
    }

    // Everything still works on the same connection.
    let x = exchange(&conn, "after-404").await;
    let q = bound_queue(&conn, "after-404", &x, &["a.b"]).await;
    let mut consumer = conn
        .consume(&q, prefetch(0))
        .await
        .expect("consume after 404");
    conn.publish(&x, "a.b", msg("after"), MANDATORY)
        .await
        .expect("publish after 404");
    assert_eq!(recv_acked(&mut consumer, 1).await, ["after"]);
}

/// Redeclaring an exchange or queue with the same flags is a no-op; with
/// other flags (or arguments) it is `Error::PreconditionFailed`, the
/// original stays as it was, and the connection keeps working.
pub(crate) async fn redeclare_with_other_flags_fails(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "redecl").await;
    let x_spec = ExchangeSpec::topic(&x);
    conn.declare_exchange(&x_spec)
        .await
        .expect("redeclare exchange, same flags");
    for (what, spec) in [
        (
            "exchange, durable differs",
            ExchangeSpec {
                durable: false,
                ..x_spec.clone()
            },
        ),
        (
            "exchange, auto_delete differs",
            ExchangeSpec {
                auto_delete: true,
                ..x_spec.clone()
            },
        ),
    ] {
        assert_err!(
            conn.declare_exchange(&spec).await,
            Error::PreconditionFailed(_),
            what
        );
    }
    conn.declare_exchange(&x_spec)
        .await
        .expect("exchange unchanged after failed redeclares");

    let q = queue(&conn, "redecl").await;
    let q_spec = QueueSpec::durable(&q);
    conn.declare_queue(&q_spec)
        .await
        .expect("redeclare queue, same flags");
    for (what, spec) in [
        (
            "queue, durable differs",
            QueueSpec {
                durable: false,
                ..q_spec.clone()
            },
        ),
        (
            "queue, auto_delete differs",
            QueueSpec {
                auto_delete: true,
                ..q_spec.clone()
            },
        ),
        (
            "queue, x-expires added",
            q_spec.clone().expires_after_ms(60_000),
        ),
    ] {
        assert_err!(
            conn.declare_queue(&spec).await,
            Error::PreconditionFailed(_),
            what
        );
    }
    conn.declare_queue(&q_spec)
        .await
        .expect("queue unchanged after failed redeclares");

    // A queue with arguments: same arguments OK, other value fails.
    let qe = unique("redecl-expires");
    let qe_spec = QueueSpec::durable(&qe).expires_after_ms(60_000);
    conn.declare_queue(&qe_spec)
        .await
        .expect("declare with x-expires");
    conn.declare_queue(&qe_spec)
        .await
        .expect("redeclare with the same x-expires");
    assert_err!(
        conn.declare_queue(&QueueSpec::durable(&qe).expires_after_ms(30_000))
            .await,
        Error::PreconditionFailed(_),
        "queue, x-expires differs"
    );

    // The connection still routes and delivers.
    conn.bind(&q, &x, "k")
        .await
        .expect("bind after precondition failures");
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    conn.publish(&x, "k", msg("still-works"), MANDATORY)
        .await
        .expect("publish");
    assert_eq!(recv_acked(&mut consumer, 1).await, ["still-works"]);
}

/// Two consumers on one queue (on two connections) compete: each gets
/// messages, and together they get every message exactly once.
pub(crate) async fn competing_consumers_share_exactly_once(env: &dyn TransportEnv) {
    const N: usize = 20;
    let conn_a = env.connect().await;
    let conn_b = env.connect().await;
    let q = queue(&conn_a, "compete").await;
    // prefetch 1 makes "each gets some" deterministic: whoever holds one
    // unacked message cannot take a second until it acks.
    let mut a = conn_a.consume(&q, prefetch(1)).await.expect("consume a");
    let mut b = conn_b.consume(&q, prefetch(1)).await.expect("consume b");
    for i in 0..N {
        publish(&conn_a, "", &q, &format!("m{i}")).await;
    }

    let first_a = recv(&mut a).await;
    let first_b = recv(&mut b).await;
    let mut seen = vec![body(&first_a), body(&first_b)];
    let (mut count_a, mut count_b) = (1, 1);
    first_a.ack().await.expect("ack");
    first_b.ack().await.expect("ack");
    while seen.len() < N {
        let (delivery, from_a) = tokio::time::timeout(crate::support::ARRIVAL_TIMEOUT, async {
            tokio::select! {
                Some(d) = a.next() => (d, true),
                Some(d) = b.next() => (d, false),
            }
        })
        .await
        .unwrap_or_else(|_| panic!("only {} of {N} messages arrived: {seen:?}", seen.len()));
        if from_a {
            count_a += 1;
        } else {
            count_b += 1;
        }
        assert!(!delivery.redelivered, "no message is redelivered here");
        seen.push(body(&delivery));
        delivery.ack().await.expect("ack");
    }
    assert_silent(&mut a, "consumer a after all messages").await;
    assert_silent(&mut b, "consumer b after all messages").await;
    assert!(
        count_a >= 1 && count_b >= 1,
        "both consumers got messages: {count_a}/{count_b}"
    );
    seen.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(
        seen, want,
        "every message exactly once across both consumers"
    );
}

/// With prefetch 1 a consumer gets the second message only after it has
/// acked the first.
pub(crate) async fn prefetch_one_waits_for_ack(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let q = queue(&conn, "prefetch").await;
    let mut consumer = conn.consume(&q, prefetch(1)).await.expect("consume");
    publish(&conn, "", &q, "first").await;
    publish(&conn, "", &q, "second").await;

    let first = recv(&mut consumer).await;
    assert_eq!(body(&first), "first");
    assert_silent(
        &mut consumer,
        "a second delivery beyond prefetch 1 before the ack",
    )
    .await;
    first.ack().await.expect("ack first");
    let second = recv(&mut consumer).await;
    assert_eq!(body(&second), "second");
    assert!(
        !second.redelivered,
        "the second message was never delivered before"
    );
    second.ack().await.expect("ack second");
}

/// `reject(requeue = true)` delivers the message again, flagged
/// `redelivered`; acked, it is gone.
pub(crate) async fn reject_requeue_redelivers(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let q = queue(&conn, "requeue").await;
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    publish(&conn, "", &q, "again").await;

    let first = recv(&mut consumer).await;
    assert_eq!(body(&first), "again");
    assert!(!first.redelivered, "first delivery is not redelivered");
    first.reject(true).await.expect("reject with requeue");
    let second = recv(&mut consumer).await;
    assert_eq!(body(&second), "again");
    assert!(
        second.redelivered,
        "a requeued message comes back with redelivered set"
    );
    assert_eq!(
        *second.message,
        msg("again"),
        "the requeued message is unchanged"
    );
    second.ack().await.expect("ack");
    assert_silent(&mut consumer, "an acked message coming back").await;
}

/// `reject(requeue = false)` drops the message.
pub(crate) async fn reject_without_requeue_discards(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let q = queue(&conn, "discard").await;
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    publish(&conn, "", &q, "gone").await;
    publish(&conn, "", &q, "kept").await;

    let gone = recv(&mut consumer).await;
    assert_eq!(body(&gone), "gone");
    gone.reject(false).await.expect("reject without requeue");
    assert_eq!(recv_acked(&mut consumer, 1).await, ["kept"]);
    assert_silent(&mut consumer, "a message rejected without requeue").await;
}

/// A delivery dropped without ack or reject is requeued and delivered
/// again with `redelivered` set.
pub(crate) async fn dropped_delivery_is_redelivered(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let q = queue(&conn, "dropped").await;
    let mut consumer = conn.consume(&q, prefetch(1)).await.expect("consume");
    publish(&conn, "", &q, "dropped").await;

    let first = recv(&mut consumer).await;
    assert!(!first.redelivered);
    drop(first);
    let again = recv(&mut consumer).await;
    assert_eq!(body(&again), "dropped");
    assert!(
        again.redelivered,
        "a dropped delivery comes back with redelivered set"
    );
    again.ack().await.expect("ack");
    assert_silent(&mut consumer, "an acked message coming back").await;
}

/// Dropping a consumer cancels it: deliveries already taken from it can
/// still be acked (and are not redelivered), while deliveries it had not
/// handed out yet go back to the queue for the next consumer.
pub(crate) async fn dropped_consumer_returns_only_unhanded_deliveries(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let q = queue(&conn, "cancel").await;
    let mut first = conn.consume(&q, prefetch(0)).await.expect("consume");
    for name in ["held", "buffered-1", "buffered-2"] {
        publish(&conn, "", &q, name).await;
    }
    let held = recv(&mut first).await;
    assert_eq!(body(&held), "held");
    drop(first);

    let mut second = conn.consume(&q, prefetch(0)).await.expect("consume again");
    let mut returned = Vec::new();
    for _ in 0..2 {
        let delivery = recv(&mut second).await;
        // Not asserting `redelivered` here: on a real broker the two may
        // not have reached the first consumer before it was cancelled.
        returned.push(body(&delivery));
        delivery.ack().await.expect("ack returned");
    }
    assert_eq!(
        returned,
        ["buffered-1", "buffered-2"],
        "buffered deliveries come back, in order"
    );
    held.ack()
        .await
        .expect("a delivery of a dropped consumer can still be acked");
    assert_silent(&mut second, "the held-and-acked delivery coming back").await;
}

/// Requeued messages keep their place: RabbitMQ holds a queue's messages
/// in publication order "even in the presence of requeueing or channel
/// closure", whatever order they are rejected or dropped in.
pub(crate) async fn requeued_messages_keep_publish_order(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let q = queue(&conn, "requeue-order").await;
    let mut first = conn.consume(&q, prefetch(0)).await.expect("consume");
    for i in 0..5 {
        publish(&conn, "", &q, &format!("m{i}")).await;
    }
    let mut held = Vec::new();
    for i in 0..5 {
        let delivery = recv(&mut first).await;
        assert_eq!(body(&delivery), format!("m{i}"));
        held.push(delivery);
    }
    // Cancel the consumer first, so requeued messages wait in the queue
    // instead of going straight back to it (and coming back again when its
    // buffer is drained, out of order): wait until the broker has seen the
    // cancel.
    drop(first);
    await_no_consumers(env, &q).await;
    let mut held = held.into_iter();
    let (m0, m1, m2, m3, m4) = (
        held.next().unwrap(),
        held.next().unwrap(),
        held.next().unwrap(),
        held.next().unwrap(),
        held.next().unwrap(),
    );
    m3.reject(true).await.expect("reject m3");
    m1.reject(true).await.expect("reject m1");
    drop(m4);
    m0.ack().await.expect("ack m0");
    m2.ack().await.expect("ack m2");

    let mut second = conn.consume(&q, prefetch(0)).await.expect("consume again");
    let mut got = Vec::new();
    for _ in 0..3 {
        let delivery = recv(&mut second).await;
        assert!(delivery.redelivered, "{} was requeued", body(&delivery));
        got.push(body(&delivery));
        delivery.ack().await.expect("ack");
    }
    assert_eq!(
        got,
        ["m1", "m3", "m4"],
        "requeued messages come back in publish order"
    );
    assert_silent(&mut second, "an acked message coming back").await;
}

/// Closing a connection: its consumers' streams end, its unacked
/// deliveries go to another connection's consumer with `redelivered` set,
/// its exclusive queues vanish, and its later calls fail with
/// `Error::TransportClosed`.
pub(crate) async fn closing_connection_requeues_and_cleans_up(env: &dyn TransportEnv) {
    let conn_a = env.connect().await;
    let conn_b = env.connect().await;
    let q = queue(&conn_b, "close").await;
    let qx = unique("close-exclusive");
    conn_a
        .declare_queue(&QueueSpec {
            durable: false,
            exclusive: true,
            ..QueueSpec::durable(&qx)
        })
        .await
        .expect("declare exclusive");

    let mut a = conn_a.consume(&q, prefetch(1)).await.expect("consume a");
    let mut a_exclusive = conn_a
        .consume(&qx, prefetch(0))
        .await
        .expect("consume exclusive");
    publish(&conn_b, "", &q, "held-by-a").await;
    let held = recv(&mut a).await;
    assert_eq!(body(&held), "held-by-a");
    assert!(!held.redelivered);
    publish(&conn_b, "", &q, "ready").await;
    let mut b = conn_b.consume(&q, prefetch(0)).await.expect("consume b");
    // `ready` may go to b now (a's window is full): a must not get it.

    conn_a.close().await;

    assert_ended(&mut a, "consumer of the closed connection").await;
    assert_ended(
        &mut a_exclusive,
        "consumer of a closed connection's exclusive queue",
    )
    .await;
    let mut got = BTreeMap::new();
    for _ in 0..2 {
        let delivery = recv(&mut b).await;
        got.insert(body(&delivery), delivery.redelivered);
        delivery.ack().await.expect("ack on b");
    }
    assert_eq!(
        got,
        BTreeMap::from([("held-by-a".to_owned(), true), ("ready".to_owned(), false)]),
        "b gets a's unacked delivery (redelivered) and the ready one (not)"
    );
    assert!(
        held.ack().await.is_err(),
        "acking on a closed connection fails"
    );
    assert_silent(&mut b, "a second copy of a requeued message").await;

    assert_vanishes(&conn_b, &qx, "exclusive queue of a closed connection").await;
    assert_closed(&conn_a, &q).await;
}

/// A delivery of a closed connection settles nothing when it is acked
/// later, not even the copy another consumer now holds (which the broker
/// may track in the same place).
pub(crate) async fn stale_ack_settles_nothing(env: &dyn TransportEnv) {
    let conn_a = env.connect().await;
    let conn_b = env.connect().await;
    let q = queue(&conn_b, "stale-ack").await;
    let mut a = conn_a.consume(&q, prefetch(1)).await.expect("consume a");
    publish(&conn_b, "", &q, "held").await;
    let stale = recv(&mut a).await;
    conn_a.close().await;

    let mut b = conn_b.consume(&q, prefetch(0)).await.expect("consume b");
    let again = recv(&mut b).await;
    assert_eq!(body(&again), "held");
    assert!(again.redelivered);
    assert!(stale.ack().await.is_err(), "acking a stale delivery fails");
    assert!(again.acker.is_held(), "b's copy is still unsettled");
    // Still b's to settle: requeued, it comes back once more.
    again.reject(true).await.expect("requeue on b");
    let last = recv(&mut b).await;
    assert_eq!(body(&last), "held");
    last.ack().await.expect("ack on b");
    assert_silent(&mut b, "a copy of a message acked once").await;
}

/// `x-single-active-consumer`: every message goes to the earliest
/// consumer, none to the others; a delivery it holds unsettled is still
/// held (`Acker::is_held`) until its connection closes, and then the next
/// consumer takes over, with that delivery redelivered.
pub(crate) async fn single_active_consumer_hands_over(env: &dyn TransportEnv) {
    let conn_a = env.connect().await;
    let conn_b = env.connect().await;
    let q = unique("single-active");
    let mut spec = QueueSpec::durable(&q);
    spec.arguments
        .insert("x-single-active-consumer".into(), true.into());
    conn_a.declare_queue(&spec).await.expect("declare");
    let mut a = conn_a.consume(&q, prefetch(0)).await.expect("consume a");
    let mut b = conn_b.consume(&q, prefetch(0)).await.expect("consume b");
    for body in ["one", "two", "held"] {
        publish(&conn_b, "", &q, body).await;
    }
    assert_eq!(recv_acked(&mut a, 2).await, ["one", "two"]);
    let held = recv(&mut a).await;
    assert_eq!(body(&held), "held");
    assert!(held.acker.is_held(), "an unsettled delivery is held");
    assert_silent(&mut b, "the consumer that is not active").await;

    conn_a.close().await;
    let again = recv(&mut b).await;
    assert_eq!(body(&again), "held");
    assert!(again.redelivered);
    assert!(
        !held.acker.is_held(),
        "a delivery of a closed connection is not held any more"
    );
    again.ack().await.expect("ack on b");
    publish(&conn_b, "", &q, "after").await;
    assert_eq!(recv_acked(&mut b, 1).await, ["after"]);
}

/// A closed connection's consumer yields nothing more, not even
/// deliveries it had received but not yet handed out: those went back to
/// the queue (to another consumer, flagged `redelivered`), and handing them
/// out as well would process them twice.
pub(crate) async fn closed_connection_consumer_yields_nothing_more(env: &dyn TransportEnv) {
    let conn_a = env.connect().await;
    let conn_b = env.connect().await;
    let q = queue(&conn_b, "close-buffered").await;
    let mut a = conn_a.consume(&q, prefetch(0)).await.expect("consume a");
    for i in 0..4 {
        publish(&conn_b, "", &q, &format!("m{i}")).await;
    }
    let held = recv(&mut a).await;
    assert_eq!(body(&held), "m0");
    // Wait until a has received at least one more (buffered or handed
    // out), so there is something that could be wrongly yielded after
    // close on any transport: take m1 through the stream, leave the rest.
    let taken = recv(&mut a).await;
    assert_eq!(body(&taken), "m1");

    conn_a.close().await;
    assert_ended(&mut a, "consumer of a closed connection").await;
    drop((held, taken));

    let mut b = conn_b.consume(&q, prefetch(0)).await.expect("consume b");
    let mut got = Vec::new();
    for _ in 0..4 {
        let delivery = recv(&mut b).await;
        got.push(body(&delivery));
        delivery.ack().await.expect("ack on b");
    }
    assert_eq!(
        got,
        ["m0", "m1", "m2", "m3"],
        "every message comes back, in order"
    );
    assert_silent(&mut b, "a second copy after close").await;
}

/// Calls on a closed connection fail with `Error::TransportClosed`.
async fn assert_closed(conn_a: &std::sync::Arc<dyn enoki::transport::Transport>, q: &str) {
    assert_err!(
        conn_a.publish("", q, msg("late"), NOT_MANDATORY).await,
        Error::TransportClosed,
        "publish on a closed connection"
    );
    assert_err!(
        conn_a
            .declare_queue(&QueueSpec::durable(unique("late")))
            .await,
        Error::TransportClosed,
        "declare on a closed connection"
    );
    assert_err!(
        conn_a.consume(q, prefetch(0)).await,
        Error::TransportClosed,
        "consume on a closed connection"
    );
}

/// An exclusive queue belongs to the connection that declared it: another
/// connection can neither consume from nor redeclare it
/// (`Error::ResourceLocked`), but can publish to it; the owner consumes.
pub(crate) async fn exclusive_queue_is_locked_to_its_connection(env: &dyn TransportEnv) {
    let owner = env.connect().await;
    let other = env.connect().await;
    let qx = unique("exclusive");
    let spec = QueueSpec {
        durable: false,
        exclusive: true,
        ..QueueSpec::durable(&qx)
    };
    owner.declare_queue(&spec).await.expect("declare exclusive");
    owner
        .declare_queue(&spec)
        .await
        .expect("the owner may redeclare it");

    assert_err!(
        other.consume(&qx, prefetch(0)).await,
        Error::ResourceLocked(_),
        "consume another connection's exclusive queue"
    );
    assert_err!(
        other.declare_queue(&spec).await,
        Error::ResourceLocked(_),
        "redeclare another connection's exclusive queue"
    );

    // The other connection still works, and may publish to the queue.
    let q = queue(&other, "after-locked").await;
    let mut other_consumer = other
        .consume(&q, prefetch(0))
        .await
        .expect("consume own queue");
    publish(&other, "", &q, "own").await;
    assert_eq!(recv_acked(&mut other_consumer, 1).await, ["own"]);
    other
        .publish("", &qx, msg("cross"), MANDATORY)
        .await
        .expect("publish to exclusive");

    let mut consumer = owner
        .consume(&qx, prefetch(0))
        .await
        .expect("owner consumes");
    assert_eq!(recv_acked(&mut consumer, 1).await, ["cross"]);
}

/// An auto-delete queue is not deleted before it has had a consumer, lives
/// while it has one, and vanishes when its last consumer goes.
pub(crate) async fn auto_delete_queue_vanishes_with_last_consumer(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let qa = unique("auto-delete");
    let spec = QueueSpec {
        durable: false,
        auto_delete: true,
        ..QueueSpec::durable(&qa)
    };
    conn.declare_queue(&spec)
        .await
        .expect("declare auto-delete");
    conn.publish("", &qa, msg("before-consumers"), MANDATORY)
        .await
        .expect("an auto-delete queue exists before its first consumer");

    let mut one = conn.consume(&qa, prefetch(0)).await.expect("consume one");
    let mut two = conn.consume(&qa, prefetch(0)).await.expect("consume two");
    // "before-consumers" went to one of them.
    let first = tokio::time::timeout(crate::support::ARRIVAL_TIMEOUT, async {
        tokio::select! {
            Some(d) = one.next() => d,
            Some(d) = two.next() => d,
        }
    })
    .await
    .expect("the message published before consuming arrives");
    assert_eq!(body(&first), "before-consumers");
    first.ack().await.expect("ack");

    drop(one);
    // One consumer left: still there, still delivering.
    conn.publish("", &qa, msg("one-left"), MANDATORY)
        .await
        .expect("an auto-delete queue with a consumer left still exists");
    assert_eq!(recv_acked(&mut two, 1).await, ["one-left"]);

    drop(two);
    assert_vanishes(&conn, &qa, "auto-delete queue after its last consumer").await;
}

/// Unbinding stops delivery through that binding (other bindings stay).
pub(crate) async fn unbind_stops_delivery(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "unbind").await;
    let q = bound_queue(&conn, "unbind", &x, &["a.b", "c.*"]).await;
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    publish(&conn, &x, "a.b", "bound").await;
    assert_eq!(recv_acked(&mut consumer, 1).await, ["bound"]);

    conn.unbind(&q, &x, "a.b").await.expect("unbind");
    conn.unbind(&q, &x, "never.bound")
        .await
        .expect("unbinding an unknown binding is Ok");
    assert_err!(
        conn.publish(&x, "a.b", msg("after-unbind"), MANDATORY)
            .await,
        Error::Unroutable { .. },
        "mandatory publish through a removed binding"
    );
    publish(&conn, &x, "a.b", "after-unbind").await;
    publish(&conn, &x, "c.d", "other-binding").await;
    assert_eq!(
        recv_acked(&mut consumer, 1).await,
        ["other-binding"],
        "other bindings stay"
    );
    assert_silent(&mut consumer, "a message through a removed binding").await;
}

/// Deleting a queue removes it with its messages and bindings and ends its
/// consumers; deleting an unknown queue is Ok.
pub(crate) async fn delete_queue_removes_it(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "delete").await;
    let q = bound_queue(&conn, "delete", &x, &["k"]).await;
    let mut consumer = conn.consume(&q, prefetch(1)).await.expect("consume");
    publish(&conn, &x, "k", "held").await;
    publish(&conn, &x, "k", "ready").await;
    let held = recv(&mut consumer).await;
    assert_eq!(body(&held), "held");

    conn.delete_queue(&q).await.expect("delete queue");
    assert_ended(&mut consumer, "consumer of a deleted queue").await;
    drop(held);
    assert_err!(
        conn.publish(&x, "k", msg("after-delete"), MANDATORY).await,
        Error::Unroutable { .. },
        "mandatory publish through a deleted queue's binding"
    );
    assert!(
        !queue_exists(&conn, &q).await,
        "a deleted queue is gone from the default exchange"
    );
    assert_err!(
        conn.consume(&q, prefetch(0)).await,
        Error::QueueNotFound(_),
        "consume a deleted queue"
    );
    conn.delete_queue(&unique("never-declared"))
        .await
        .expect("deleting an unknown queue is Ok");

    // Declared again, it is a new, empty, unbound queue.
    conn.declare_queue(&QueueSpec::durable(&q))
        .await
        .expect("redeclare");
    let mut consumer = conn
        .consume(&q, prefetch(0))
        .await
        .expect("consume new queue");
    assert_silent(&mut consumer, "messages of the deleted queue").await;
    conn.publish(&x, "k", msg("unbound"), NOT_MANDATORY)
        .await
        .expect("publish");
    assert_silent(
        &mut consumer,
        "a message through the deleted queue's old binding",
    )
    .await;
}

/// Messages published on one connection to one queue reach a single
/// consumer in publish order (also across its prefetch window).
pub(crate) async fn single_consumer_sees_publish_order(env: &dyn TransportEnv) {
    const N: usize = 100;
    let conn = env.connect().await;
    let x = exchange(&conn, "order").await;
    let q = bound_queue(&conn, "order", &x, &["o.*"]).await;
    let mut consumer = conn.consume(&q, prefetch(7)).await.expect("consume");
    // Half published before the consumer drains, half interleaved.
    for i in 0..N / 2 {
        publish(&conn, &x, "o.k", &format!("{i:03}")).await;
    }
    let mut got = recv_acked(&mut consumer, 10).await;
    for i in N / 2..N {
        publish(&conn, &x, "o.k", &format!("{i:03}")).await;
    }
    got.extend(recv_acked(&mut consumer, N - 10).await);
    let want: Vec<String> = (0..N).map(|i| format!("{i:03}")).collect();
    assert_eq!(got, want, "publish order is delivery order");
}

/// A queue declared with `x-expires` is deleted after being unused that
/// long; one that has a consumer is not.
pub(crate) async fn x_expires_deletes_unused_queue(env: &dyn TransportEnv) {
    const TTL_MS: i64 = 300;
    let conn = env.connect().await;
    // Declared (and consumed) first, so were it wrongly expired, it would
    // be gone before the unused one is.
    let used = unique("expires-used");
    conn.declare_queue(&QueueSpec::durable(&used).expires_after_ms(TTL_MS))
        .await
        .expect("declare");
    let mut consumer = conn.consume(&used, prefetch(0)).await.expect("consume");

    let unused = unique("expires-unused");
    conn.declare_queue(&QueueSpec::durable(&unused).expires_after_ms(TTL_MS))
        .await
        .expect("declare");
    assert!(
        queue_exists(&conn, &unused).await,
        "the queue exists right after declaring"
    );
    // Publishing does not count as use: the probes above and below must
    // not keep it alive.
    assert_vanishes(&conn, &unused, "x-expires queue without consumers").await;

    assert!(
        queue_exists(&conn, &used).await,
        "a queue with a consumer does not expire"
    );
    let probe = recv(&mut consumer).await;
    assert_eq!(body(&probe), "probe");
    probe.ack().await.expect("ack");
}

/// A message whose `expiration` passes while it waits in its queue is
/// dropped, never delivered; one with time left, or with none, is
/// delivered as usual.
pub(crate) async fn expired_messages_are_never_delivered(env: &dyn TransportEnv) {
    use std::time::Duration;
    const TTL: Duration = Duration::from_millis(50);
    let conn = env.connect().await;
    let x = exchange(&conn, "expiry").await;
    let q = bound_queue(&conn, "expiry", &x, &["k"]).await;
    for (body, expiration) in [
        ("stale", Some(TTL)),
        ("fresh", Some(Duration::from_secs(60))),
        ("plain", None),
    ] {
        let message = msg(body).with_expiration(expiration);
        conn.publish(&x, "k", message, MANDATORY)
            .await
            .expect("publish");
    }
    // Past the stale message's TTL (by six times): whatever the clock, it
    // has expired before anyone asks for it.
    tokio::time::sleep(TTL * 6).await;
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    assert_eq!(recv_acked(&mut consumer, 2).await, ["fresh", "plain"]);
    assert_silent(&mut consumer, "the expired message").await;
}

/// Exchange and queue names, routing keys and patterns longer than AMQP's
/// 255 bytes are refused with a clear error (RabbitMQ refuses them too), and
/// the connection keeps working; 255 bytes exactly is fine.
pub(crate) async fn names_over_255_bytes_are_refused(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "long").await;
    let q = bound_queue(&conn, "long", &x, &["ok.*"]).await;
    let long = "w.".repeat(128); // 256 bytes
    let refused = |what: &str, result: enoki::Result<()>| match result {
        Err(Error::Invalid(message)) => {
            assert!(
                message.contains("longer than 255 bytes"),
                "{what}: {message}"
            )
        }
        other => panic!("{what}: expected Error::Invalid, got {other:?}"),
    };
    refused("pattern", conn.bind(&q, &x, &long).await);
    refused(
        "routing key",
        conn.publish(&x, &long, msg("x"), NOT_MANDATORY).await,
    );
    refused(
        "queue name",
        conn.declare_queue(&QueueSpec::durable(long.clone())).await,
    );
    refused(
        "exchange name",
        conn.declare_exchange(&ExchangeSpec::topic(long.clone()))
            .await,
    );
    // Right at the limit, and the connection still works.
    let at_limit = format!("ok.{}", "k".repeat(252));
    assert_eq!(at_limit.len(), 255);
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    publish(&conn, &x, &at_limit, "fits").await;
    let delivery = recv(&mut consumer).await;
    assert_eq!(body(&delivery), "fits");
    assert_eq!(&*delivery.routing_key, at_limit.as_str());
    delivery.ack().await.expect("ack");
}

/// `exchange_exists` tells declared exchanges from unknown ones, creates
/// nothing, and leaves the connection usable after a "no".
pub(crate) async fn exchange_exists_asks_without_creating(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let x = exchange(&conn, "known").await;
    assert!(
        conn.exchange_exists(&x).await.expect("ask"),
        "a declared exchange exists"
    );
    let unknown = unique("made-up");
    for _ in 0..2 {
        assert!(
            !conn.exchange_exists(&unknown).await.expect("ask"),
            "an unknown exchange does not exist"
        );
    }
    // Asking created nothing: publishing to it still fails.
    let err = conn
        .publish(&unknown, "k", msg("x"), NOT_MANDATORY)
        .await
        .expect_err("publish to an exchange that was only asked about");
    assert!(matches!(err, Error::ExchangeNotFound(_)), "{err:?}");
    // And the connection works on.
    let q = bound_queue(&conn, "after", &x, &["k"]).await;
    let mut consumer = conn.consume(&q, prefetch(0)).await.expect("consume");
    publish(&conn, &x, "k", "still works").await;
    assert_eq!(body(&recv(&mut consumer).await), "still works");
}

/// `x-max-length`: a full queue drops its oldest ready message (the
/// default `x-overflow: drop-head`) or refuses the publish
/// (`reject-publish`), as RabbitMQ does.
pub(crate) async fn max_length_drops_the_oldest_or_refuses(env: &dyn TransportEnv) {
    let conn = env.connect().await;
    let mut spec = QueueSpec::durable(unique("bounded"));
    spec.arguments.insert("x-max-length".into(), json!(2));
    conn.declare_queue(&spec).await.expect("declare");
    for n in ["1", "2", "3"] {
        publish(&conn, "", &spec.name, n).await;
    }
    let mut consumer = conn
        .consume(&spec.name, prefetch(0))
        .await
        .expect("consume");
    assert_eq!(
        recv_acked(&mut consumer, 2).await,
        ["2", "3"],
        "the oldest went"
    );
    assert_silent(&mut consumer, "a third message in a queue of two").await;
    drop(consumer);

    let mut spec = QueueSpec::durable(unique("refusing"));
    spec.arguments.insert("x-max-length".into(), json!(1));
    spec.arguments
        .insert("x-overflow".into(), json!("reject-publish"));
    conn.declare_queue(&spec).await.expect("declare");
    publish(&conn, "", &spec.name, "kept").await;
    let refused = conn
        .publish("", &spec.name, msg("refused"), NOT_MANDATORY)
        .await;
    assert!(
        refused.is_err(),
        "a full reject-publish queue refuses: {refused:?}"
    );
    let mut consumer = conn
        .consume(&spec.name, prefetch(0))
        .await
        .expect("consume");
    assert_eq!(recv_acked(&mut consumer, 1).await, ["kept"]);
    assert_silent(&mut consumer, "the refused message").await;
}

/// A queue with `x-dead-letter-exchange` republishes what expires there
/// (`x-message-ttl`) or is rejected without requeue, to the exchange and
/// routing key it names, with an `x-death` entry (queue, reason, count, the
/// exchange and routing key it was published with) and no `expiration`. A
/// message republished by a client with its `x-death` dies again with the
/// count of that entry raised: enoki's retries count on that.
pub(crate) async fn dead_lettering_records_x_death(env: &dyn TransportEnv) {
    use enoki::transport::death;
    let conn = env.connect().await;
    let x = exchange(&conn, "dlx").await;
    let target = queue(&conn, "dlx-target").await;
    let dead_letter_to = |spec: &mut QueueSpec| {
        spec.arguments
            .insert("x-dead-letter-exchange".into(), "".into());
        spec.arguments
            .insert("x-dead-letter-routing-key".into(), target.clone().into());
    };
    let delay = unique("dlx-delay");
    let mut spec = QueueSpec::durable(&delay);
    spec.arguments.insert("x-message-ttl".into(), 50.into());
    dead_letter_to(&mut spec);
    conn.declare_queue(&spec)
        .await
        .expect("declare delay queue");
    conn.bind(&delay, &x, "k").await.expect("bind");
    let rejects = unique("dlx-rejects");
    let mut spec = QueueSpec::durable(&rejects);
    dead_letter_to(&mut spec);
    conn.declare_queue(&spec).await.expect("declare");
    conn.bind(&rejects, &x, "r").await.expect("bind");

    let mut dead = conn.consume(&target, prefetch(0)).await.expect("consume");
    let late = msg("late").with_expiration(Some(std::time::Duration::from_secs(60)));
    conn.publish(&x, "k", late, MANDATORY)
        .await
        .expect("publish");
    let first = recv(&mut dead).await;
    assert_eq!(body(&first), "late");
    assert_eq!(
        first.routing_key.as_ref(),
        target,
        "dead-lettered with the queue's key"
    );
    assert_eq!(first.message.properties.expiration, None);
    let entry = death::newest(&first.message.properties.headers).expect("x-death");
    assert_eq!(
        (entry.queue.as_str(), entry.reason.as_str(), entry.count),
        (delay.as_str(), "expired", 1)
    );
    assert_eq!(entry.exchange, x);
    assert_eq!(entry.routing_keys, ["k"]);

    // Once more, republished as it came: the same entry counts 2.
    let again = (*first.message).clone();
    first.ack().await.expect("ack");
    conn.publish("", &delay, again, MANDATORY)
        .await
        .expect("publish");
    let second = recv(&mut dead).await;
    let headers = &second.message.properties.headers;
    assert_eq!(
        death::count(headers, |queue, reason| queue == delay
            && reason == "expired"),
        2,
        "{headers:?}"
    );
    second.ack().await.expect("ack");

    // Rejected without requeue.
    let mut consumer = conn.consume(&rejects, prefetch(0)).await.expect("consume");
    publish(&conn, &x, "r", "refused").await;
    recv(&mut consumer)
        .await
        .reject(false)
        .await
        .expect("reject");
    let refused = recv(&mut dead).await;
    assert_eq!(body(&refused), "refused");
    let entry = death::newest(&refused.message.properties.headers).expect("x-death");
    assert_eq!(
        (entry.queue.as_str(), entry.reason.as_str(), entry.count),
        (rejects.as_str(), "rejected", 1)
    );
    refused.ack().await.expect("ack");
    assert_silent(&mut dead, "a third dead letter").await;
}

/// A quorum queue counts how often each message came back
/// (`x-delivery-count` on the redelivery) and dead-letters it, reason
/// `delivery_limit`, once it came back more often than `x-delivery-limit`.
pub(crate) async fn quorum_queues_dead_letter_past_the_delivery_limit(env: &dyn TransportEnv) {
    use enoki::transport::death;
    let conn = env.connect().await;
    let target = queue(&conn, "limit-target").await;
    let name = unique("limited");
    let spec = QueueSpec::durable(&name).quorum(Some(1), &target);
    conn.declare_queue(&spec)
        .await
        .expect("declare quorum queue");
    let mut dead = conn.consume(&target, prefetch(0)).await.expect("consume");
    let mut consumer = conn.consume(&name, prefetch(1)).await.expect("consume");
    publish(&conn, "", &name, "poison").await;
    let first = recv(&mut consumer).await;
    assert!(!first.redelivered);
    first.reject(true).await.expect("requeue");
    let second = recv(&mut consumer).await;
    assert!(second.redelivered);
    assert_eq!(
        second.message.properties.headers.get("x-delivery-count"),
        Some(&json!(1))
    );
    second.reject(true).await.expect("requeue");
    let parked = recv(&mut dead).await;
    assert_eq!(body(&parked), "poison");
    let entry = death::newest(&parked.message.properties.headers).expect("x-death");
    assert_eq!(
        (entry.queue.as_str(), entry.reason.as_str()),
        (name.as_str(), "delivery_limit")
    );
    parked.ack().await.expect("ack");
    assert_silent(&mut consumer, "the poison message, again").await;
}

/// A direct consumer (`consume_with`) is handed every delivery, in
/// publication order, within its prefetch window: past it, the next waits
/// for an ack. When its connection closes, the consumer's future
/// completes, and what it held unacked goes back to the queue.
pub(crate) async fn direct_consumer_gets_deliveries_within_prefetch(env: &dyn TransportEnv) {
    use crate::support::{ARRIVAL_TIMEOUT, SILENCE};
    use enoki::transport::{DeliverFn, Delivery, TransportFuture};

    let conn_a = env.connect().await;
    let conn_b = env.connect().await;
    let q = queue(&conn_b, "direct").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
    let deliver: DeliverFn = std::sync::Arc::new(move |delivery| {
        let _ = tx.send(delivery);
        TransportFuture::ready(())
    });
    let consuming = conn_a
        .consume_with(&q, prefetch(2), deliver)
        .await
        .expect("consume_with");
    let consuming = tokio::spawn(consuming);
    for i in 0..3 {
        publish(&conn_b, "", &q, &format!("m{i}")).await;
    }
    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Delivery>) -> Delivery {
        tokio::time::timeout(ARRIVAL_TIMEOUT, rx.recv())
            .await
            .expect("a direct delivery in time")
            .expect("the deliver function is still there")
    }
    let m0 = next(&mut rx).await;
    let m1 = next(&mut rx).await;
    assert_eq!((body(&m0), body(&m1)), ("m0".into(), "m1".into()));
    assert!(
        tokio::time::timeout(SILENCE, rx.recv()).await.is_err(),
        "a third delivery beyond prefetch 2 before an ack"
    );
    m0.ack().await.expect("ack m0");
    let m2 = next(&mut rx).await;
    assert_eq!(body(&m2), "m2");
    m2.ack().await.expect("ack m2");

    // m1 is still held when the connection closes.
    conn_a.close().await;
    tokio::time::timeout(ARRIVAL_TIMEOUT, consuming)
        .await
        .expect("the direct consumer ends with its connection")
        .expect("it does not panic");
    drop(m1);
    let mut b = conn_b.consume(&q, prefetch(0)).await.expect("consume b");
    let again = recv(&mut b).await;
    assert_eq!(body(&again), "m1");
    assert!(again.redelivered, "m1 was delivered before");
    again.ack().await.expect("ack m1");
    assert_silent(&mut b, "a copy of an acked message").await;
}
