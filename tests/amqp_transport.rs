//! `AmqpTransport` against a real RabbitMQ (127.0.0.1:5672, guest/guest),
//! each test in its own throwaway vhost. Skipped (with a message) when
//! RabbitMQ is not reachable, unless `CI=true`.
#![cfg(feature = "amqp")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::amqp::{TestVhost, rabbitmqctl};
use enoki::error::Error;
use enoki::message::{Headers, Message};
use enoki::transport::{
    AmqpOptions, AmqpTransport, ConsumeOptions, Consumer, Delivery, ExchangeSpec, PublishOptions,
    QueueSpec, Transport,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn setup() -> Option<(TestVhost, Arc<AmqpTransport>)> {
    let vhost = TestVhost::create()?;
    let transport = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
        .await
        .expect("connect to the test vhost");
    Some((vhost, transport))
}

/// Declares exchange `ex` and a durable queue `name` bound with `pattern`.
async fn queue(t: &AmqpTransport, name: &str, pattern: &str) {
    t.declare_exchange(&ExchangeSpec::topic("ex"))
        .await
        .unwrap();
    t.declare_queue(&QueueSpec::durable(name)).await.unwrap();
    t.bind(name, "ex", pattern).await.unwrap();
}

async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a delivery within the timeout")
        .expect("the consumer is still running")
}

async fn nothing_within(consumer: &mut Consumer, wait: Duration) {
    if let Ok(Some(d)) = tokio::time::timeout(wait, consumer.next()).await {
        panic!("unexpected delivery {d:?}");
    }
}

fn body(d: &Delivery) -> &[u8] {
    &d.message.body
}

async fn publish(t: &AmqpTransport, key: &str, body: &'static [u8]) {
    t.publish("ex", key, Message::json(body), PublishOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn round_trip_keeps_every_property_and_header_type() {
    let Some((_vhost, t)) = setup().await else {
        return;
    };
    queue(&t, "q", "svc.*").await;
    let mut consumer = t
        .consume("q", ConsumeOptions { prefetch: 10 })
        .await
        .unwrap();

    let headers: Headers = json!({
        "nameko.call_id_stack": ["standalone_rpc_proxy.call.0", "svc.m.1"],
        "nameko.user_id": 42,
        "nameko.language": "en-gb",
        "big": 5_000_000_000_i64,
        "ratio": 0.25,
        "flag": false,
        "nothing": null,
        "nested": {"a": [1, "two", {"b": true}]},
    })
    .as_object()
    .unwrap()
    .clone();
    let sent = Message::json(&br#"{"args": [], "kwargs": {}}"#[..])
        .with_headers(headers)
        .with_correlation_id("corr-1")
        .with_reply_to("reply-uuid");
    t.publish(
        "ex",
        "svc.method",
        sent.clone(),
        PublishOptions { mandatory: true },
    )
    .await
    .unwrap();

    let d = next(&mut consumer).await;
    assert_eq!(d.exchange, "ex");
    assert_eq!(d.routing_key, "svc.method");
    assert!(!d.redelivered);
    assert_eq!(*d.message, sent);
    assert_eq!(d.message.properties.priority, Some(0));
    assert_eq!(d.message.properties.delivery_mode, Some(2));
    d.ack().await.unwrap();

    // An empty headers table arrives as an empty table.
    let reply = Message::json(&b"{}"[..]).with_correlation_id("c2");
    t.publish("ex", "svc.reply", reply.clone(), PublishOptions::default())
        .await
        .unwrap();
    let d = next(&mut consumer).await;
    assert_eq!(*d.message, reply);
    d.ack().await.unwrap();
    t.close().await;
}

#[tokio::test]
async fn mandatory_unroutable_fails_and_plain_is_dropped() {
    let Some((_vhost, t)) = setup().await else {
        return;
    };
    t.declare_exchange(&ExchangeSpec::topic("ex"))
        .await
        .unwrap();
    let err = t
        .publish(
            "ex",
            "nobody.here",
            Message::json(&b"{}"[..]),
            PublishOptions { mandatory: true },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unroutable { exchange, routing_key } if exchange == "ex" && routing_key == "nobody.here"),
        "{err:?}"
    );
    publish(&t, "nobody.here", b"{}").await;

    // Many at once, routable and not, each gets its own answer.
    queue(&t, "q", "yes.*").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let key = if i % 2 == 0 { "yes.x" } else { "no.x" };
            let r = t
                .publish(
                    "ex",
                    key,
                    Message::json(&b"{}"[..]),
                    PublishOptions { mandatory: true },
                )
                .await;
            (i, r)
        }));
    }
    for task in tasks {
        let (i, r) = task.await.unwrap();
        if i % 2 == 0 {
            r.unwrap();
        } else {
            assert!(matches!(r, Err(Error::Unroutable { .. })), "{i}: {r:?}");
        }
    }
    t.close().await;
}

#[tokio::test]
async fn missing_exchange_fails_and_the_transport_keeps_working() {
    let Some((_vhost, t)) = setup().await else {
        return;
    };
    queue(&t, "q", "#").await;
    for _ in 0..2 {
        let err = t
            .publish(
                "nosuch.events",
                "x",
                Message::json(&b"{}"[..]),
                PublishOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::ExchangeNotFound(name) if name == "nosuch.events"),
            "{err:?}"
        );
        publish(&t, "after", b"1").await;
    }
    // Concurrent good publishes are not hurt by a bad one on a shared channel.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let exchange = if i == 7 { "nosuch" } else { "ex" };
            (
                i,
                t.publish(
                    exchange,
                    "k",
                    Message::json(&b"2"[..]),
                    PublishOptions::default(),
                )
                .await,
            )
        }));
    }
    for task in tasks {
        let (i, r) = task.await.unwrap();
        if i == 7 {
            assert!(matches!(r, Err(Error::ExchangeNotFound(_))), "{r:?}");
        } else {
            r.unwrap();
        }
    }
    // Binding to a missing exchange is a 404 on the control channel, which recovers too.
    let err = t.bind("q", "nosuch", "#").await.unwrap_err();
    assert!(
        matches!(&err, Error::ExchangeNotFound(name) if name == "nosuch"),
        "{err:?}"
    );
    let mut consumer = t
        .consume("q", ConsumeOptions { prefetch: 0 })
        .await
        .unwrap();
    let mut count = 0;
    while count < 2 + 39 {
        next(&mut consumer).await.ack().await.unwrap();
        count += 1;
    }
    let err = t
        .consume("nosuch-queue", ConsumeOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::QueueNotFound(name) if name == "nosuch-queue"),
        "{err:?}"
    );
    t.close().await;
}

#[tokio::test]
async fn redeclare_same_flags_ok_other_flags_precondition_failed() {
    let Some((_vhost, t)) = setup().await else {
        return;
    };
    let ex = ExchangeSpec::topic("nameko-rpc");
    t.declare_exchange(&ex).await.unwrap();
    t.declare_exchange(&ex).await.unwrap();
    let err = t
        .declare_exchange(&ExchangeSpec {
            auto_delete: true,
            ..ex.clone()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");

    let reply = QueueSpec::durable("rpc.reply-x-1").expires_after_ms(300_000);
    t.declare_queue(&reply).await.unwrap();
    t.declare_queue(&reply).await.unwrap();
    let err = t
        .declare_queue(&QueueSpec::durable("rpc.reply-x-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    let err = t
        .declare_queue(&QueueSpec {
            durable: false,
            ..reply.clone()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");

    // Still works afterwards.
    t.bind("rpc.reply-x-1", "nameko-rpc", "1").await.unwrap();
    t.publish(
        "nameko-rpc",
        "1",
        Message::json(&b"{}"[..]),
        PublishOptions { mandatory: true },
    )
    .await
    .unwrap();
    let mut consumer = t
        .consume("rpc.reply-x-1", ConsumeOptions::default())
        .await
        .unwrap();
    next(&mut consumer).await.ack().await.unwrap();

    // Another connection's exclusive queue is locked.
    let other = AmqpTransport::connect(&_vhost.uri, AmqpOptions::default())
        .await
        .unwrap();
    let excl = QueueSpec {
        exclusive: true,
        auto_delete: true,
        ..QueueSpec::durable("excl")
    };
    other.declare_queue(&excl).await.unwrap();
    let err = t
        .consume("excl", ConsumeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ResourceLocked(_)), "{err:?}");
    other.close().await;

    t.delete_queue("rpc.reply-x-1").await.unwrap();
    t.delete_queue("rpc.reply-x-1").await.unwrap();
    t.unbind("nothing", "nowhere", "#").await.unwrap();
    t.close().await;
}

#[tokio::test]
async fn competing_consumers_share_a_queue() {
    let Some((_vhost, t)) = setup().await else {
        return;
    };
    queue(&t, "q", "#").await;
    let mut a = t
        .consume("q", ConsumeOptions { prefetch: 1 })
        .await
        .unwrap();
    let mut b = t
        .consume("q", ConsumeOptions { prefetch: 1 })
        .await
        .unwrap();
    for _ in 0..10 {
        publish(&t, "k", b"x").await;
    }
    let (mut got_a, mut got_b) = (0, 0);
    while got_a + got_b < 10 {
        tokio::select! {
            Some(d) = a.next() => { got_a += 1; d.ack().await.unwrap(); }
            Some(d) = b.next() => { got_b += 1; d.ack().await.unwrap(); }
            () = tokio::time::sleep(WAIT) => panic!("timed out with {got_a} + {got_b}"),
        }
    }
    assert!(got_a > 0 && got_b > 0, "a={got_a} b={got_b}");
    t.close().await;
}

#[tokio::test]
async fn prefetch_window_is_respected() {
    let Some((_vhost, t)) = setup().await else {
        return;
    };
    queue(&t, "q", "#").await;
    publish(&t, "k", b"1").await;
    publish(&t, "k", b"2").await;
    let mut consumer = t
        .consume("q", ConsumeOptions { prefetch: 1 })
        .await
        .unwrap();
    let first = next(&mut consumer).await;
    assert_eq!(body(&first), b"1");
    nothing_within(&mut consumer, Duration::from_millis(500)).await;
    first.ack().await.unwrap();
    let second = next(&mut consumer).await;
    assert_eq!(body(&second), b"2");
    second.ack().await.unwrap();
    t.close().await;
}

#[tokio::test]
async fn reject_with_requeue_redelivers_and_without_drops() {
    let Some((_vhost, t)) = setup().await else {
        return;
    };
    queue(&t, "q", "#").await;
    publish(&t, "k", b"1").await;
    let mut consumer = t
        .consume("q", ConsumeOptions { prefetch: 1 })
        .await
        .unwrap();
    let d = next(&mut consumer).await;
    assert!(!d.redelivered);
    d.reject(true).await.unwrap();
    let d = next(&mut consumer).await;
    assert!(d.redelivered);
    assert_eq!(body(&d), b"1");
    d.reject(false).await.unwrap();
    nothing_within(&mut consumer, Duration::from_millis(300)).await;
    t.close().await;
}

#[tokio::test]
async fn an_unsettled_delivery_dropped_is_requeued() {
    let Some((_vhost, t)) = setup().await else {
        return;
    };
    queue(&t, "q", "#").await;
    publish(&t, "k", b"1").await;
    let mut consumer = t
        .consume("q", ConsumeOptions { prefetch: 1 })
        .await
        .unwrap();
    drop(next(&mut consumer).await);
    let d = next(&mut consumer).await;
    assert!(d.redelivered);
    assert_eq!(body(&d), b"1");
    d.ack().await.unwrap();
    t.close().await;
}

#[tokio::test]
async fn a_delivery_can_be_acked_after_its_consumer_is_dropped() {
    let Some((vhost, t)) = setup().await else {
        return;
    };
    queue(&t, "q", "#").await;
    for b in [&b"1"[..], b"2", b"3"] {
        t.publish("ex", "k", Message::json(b), PublishOptions::default())
            .await
            .unwrap();
    }
    let mut consumer = t
        .consume("q", ConsumeOptions { prefetch: 2 })
        .await
        .unwrap();
    let first = next(&mut consumer).await;
    drop(consumer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.ack().await.unwrap();

    // The acked one is gone; the other two (one buffered, one never sent)
    // are back in the queue for the next consumer.
    let mut again = t
        .consume("q", ConsumeOptions { prefetch: 0 })
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let d = next(&mut again).await;
        bodies.push(body(&d).to_vec());
        d.ack().await.unwrap();
    }
    bodies.sort();
    assert_eq!(bodies, vec![b"2".to_vec(), b"3".to_vec()]);
    nothing_within(&mut again, Duration::from_millis(300)).await;
    drop(again);
    let _ = vhost;
    t.close().await;
}

#[tokio::test]
async fn x_expires_is_an_integer_rabbitmq_understands() {
    let Some((vhost, t)) = setup().await else {
        return;
    };
    t.declare_queue(&QueueSpec::durable("rpc.reply-svc-1").expires_after_ms(300_000))
        .await
        .unwrap();
    let listing = vhost.list_queues(&["name", "durable", "auto_delete", "arguments"]);
    let line = listing
        .lines()
        .find(|l| l.starts_with("rpc.reply-svc-1"))
        .expect(&listing);
    assert!(line.contains("300000"), "{line}");
    assert!(line.contains("x-expires"), "{line}");
    assert!(line.contains("true\tfalse"), "{line}");
    t.close().await;
}

#[tokio::test]
async fn close_ends_consumers_and_later_calls_fail() {
    let Some((_vhost, t)) = setup().await else {
        return;
    };
    queue(&t, "q", "#").await;
    let mut consumer = t.consume("q", ConsumeOptions::default()).await.unwrap();
    assert_eq!(t.kind(), "amqp");
    t.close().await;
    let ended = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("consumer ends");
    assert!(ended.is_none());
    let err = t
        .publish(
            "ex",
            "k",
            Message::json(&b"{}"[..]),
            PublishOptions::default(),
        )
        .await;
    assert!(matches!(err, Err(Error::TransportClosed)), "{err:?}");
    let err = t.declare_queue(&QueueSpec::durable("q2")).await;
    assert!(matches!(err, Err(Error::TransportClosed)), "{err:?}");
    assert!(matches!(
        t.consume("q", ConsumeOptions::default()).await,
        Err(Error::TransportClosed)
    ));
    t.close().await;
}

#[tokio::test]
async fn connection_errors_are_clear_and_hide_the_password() {
    if !common::amqp::broker_reachable() {
        let Some(_) = TestVhost::create() else { return };
    }
    let err = AmqpTransport::connect("http://nope", AmqpOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("invalid AMQP URI"), "{text}");

    let err = AmqpTransport::connect("amqp://guest:sekrit@127.0.0.1:5999", AmqpOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("amqp://guest:***@127.0.0.1:5999"), "{text}");
    assert!(text.contains("connection refused"), "{text}");
    assert!(!text.contains("sekrit"), "{text}");

    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let uri = vhost.uri.replace("guest:guest", "guest:wrong-password");
    let err = AmqpTransport::connect(&uri, AmqpOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("access refused"), "{text}");
    assert!(!text.contains("wrong-password"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    println!("{text}");
}

#[tokio::test]
async fn consumers_survive_a_dropped_connection() {
    let Some((vhost, t)) = setup().await else {
        return;
    };
    queue(&t, "q", "#").await;
    let mut consumer = t
        .consume("q", ConsumeOptions { prefetch: 5 })
        .await
        .unwrap();
    publish(&t, "k", b"before").await;
    next(&mut consumer).await.ack().await.unwrap();

    rabbitmqctl(&[
        "close_all_connections",
        "--vhost",
        &vhost.name,
        "enoki test",
    ]);
    // Until the connection is back, publishes fail as ConnectionLost (or
    // succeed if recovery already finished).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match t
            .publish(
                "ex",
                "k",
                Message::json(&b"after"[..]),
                PublishOptions::default(),
            )
            .await
        {
            Ok(()) => break,
            Err(Error::ConnectionLost(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{err:?}"),
        }
    }
    let d = next(&mut consumer).await;
    assert_eq!(body(&d), b"after");
    d.ack().await.unwrap();
    assert!(t.is_connected());
    t.close().await;
}

/// Prints publishes/s one at a time and pipelined, by size of the
/// publishing channel pool; not a pass/fail figure.
#[tokio::test]
async fn pipelined_publishing_throughput() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    for channels in [1, 2, 4] {
        let options = AmqpOptions {
            publish_channels: channels,
            ..AmqpOptions::default()
        };
        let t = AmqpTransport::connect(&vhost.uri, options).await.unwrap();
        queue(&t, "q", "#").await;
        let n = 1000;
        let start = Instant::now();
        for _ in 0..n / 4 {
            publish(&t, "k", b"{}").await;
        }
        let sequential = f64::from(n / 4) / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let t = t.clone();
                tokio::spawn(async move { publish(&t, "k", b"{}").await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let pipelined = f64::from(n) / start.elapsed().as_secs_f64();
        let line = format!(
            "publishes/s with {channels} channel(s): one at a time {sequential:.0}, \
             {n} concurrent {pipelined:.0}"
        );
        println!("{line}");
        eprintln!("{line}");
        t.delete_queue("q").await.unwrap();
        t.close().await;
    }
}
