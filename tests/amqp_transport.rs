//! What only `AmqpTransport` has, against a real RabbitMQ (127.0.0.1:5672,
//! guest/guest), each test in its own throwaway vhost: channel recovery
//! after a 404, `x-expires` as RabbitMQ reads it, close, connection
//! errors, consumers across a dropped connection, pipelined publishing.
//! The behaviours every transport shares run on RabbitMQ too, in
//! `tests/transport_suite.rs`. Skipped (with a message) when RabbitMQ is
//! not reachable, unless `CI=true`.
#![cfg(feature = "amqp")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::amqp::{TestVhost, rabbitmqctl};
use enoki::error::Error;
use enoki::message::Message;
use enoki::transport::{
    AmqpOptions, AmqpTransport, ConsumeOptions, Consumer, Delivery, ExchangeSpec, PublishOptions,
    QueueSpec, Transport,
};

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

fn body(d: &Delivery) -> &[u8] {
    &d.message.body
}

/// Publishes `body` to `ex` with key `k` once the transport has
/// reconnected: until then publishes fail with `ConnectionLost` (or
/// succeed if recovery already finished).
async fn publish_once_reconnected(t: &AmqpTransport, body: &'static [u8], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let message = Message::json(body);
        match t
            .publish("ex", "k", message, PublishOptions::default())
            .await
        {
            Ok(()) => return,
            Err(Error::ConnectionLost(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("{err:?}"),
        }
    }
}

async fn publish(t: &AmqpTransport, key: &str, body: &'static [u8]) {
    t.publish("ex", key, Message::json(body), PublishOptions::default())
        .await
        .unwrap();
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
        .consume(
            "q",
            ConsumeOptions {
                prefetch: 0,
                ..Default::default()
            },
        )
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
        .consume(
            "q",
            ConsumeOptions {
                prefetch: 5,
                ..Default::default()
            },
        )
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
    publish_once_reconnected(&t, b"after", Duration::from_secs(30)).await;
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

#[tokio::test]
async fn reply_queues_consume_with_a_bounded_prefetch() {
    let Some((vhost, t)) = setup().await else {
        return;
    };
    let rpc = enoki::ClusterRpc::connect(t.clone(), &enoki::Settings::new())
        .await
        .unwrap();
    let consumers = rabbitmqctl(&[
        "list_consumers",
        "-q",
        "--no-table-headers",
        "-p",
        &vhost.name,
        "queue_name",
        "prefetch_count",
    ]);
    let line = consumers
        .lines()
        .find(|l| l.starts_with(rpc.reply_queue()))
        .unwrap_or_else(|| panic!("no consumer on the reply queue: {consumers}"));
    let prefetch: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(prefetch, enoki::client::REPLY_PREFETCH, "{line}");
    rpc.close().await;
    t.close().await;
}

/// kombu's failover syntax: the transport connects to the first broker in
/// the list that answers, and when that one goes away it moves to the next
/// and replays its topology there; consumers carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_list_moves_to_the_next_broker() {
    use common::proxy::TcpProxy;
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let upstream = common::amqp::broker_addr();
    let (dead, first, second) = (
        TcpProxy::start(&upstream).await,
        TcpProxy::start(&upstream).await,
        TcpProxy::start(&upstream).await,
    );
    // The first address refuses everyone: the connection goes to the next.
    dead.set_blocked(true);
    let uris = format!(
        "{};{}; {}",
        dead.uri(&vhost),
        first.uri(&vhost),
        second.uri(&vhost)
    );
    let t = AmqpTransport::connect(&uris, AmqpOptions::default())
        .await
        .expect("connects to the first broker that answers");
    assert_eq!((first.accepted(), second.accepted()), (1, 0));
    queue(&t, "q", "#").await;
    let mut consumer = t
        .consume(
            "q",
            ConsumeOptions {
                prefetch: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    publish(&t, "k", b"before").await;
    next(&mut consumer).await.ack().await.unwrap();

    // The broker in use dies for good.
    first.set_blocked(true);
    assert_eq!(first.cut(), 1);
    publish_once_reconnected(&t, b"after", WAIT).await;
    // The ack of `before` may have died with the connection (in the
    // proxy's buffers): then it comes again first, redelivered.
    let mut d = next(&mut consumer).await;
    if body(&d) == b"before" {
        assert!(d.redelivered, "an acked message came back");
        d.ack().await.unwrap();
        d = next(&mut consumer).await;
    }
    assert_eq!(body(&d), b"after");
    d.ack().await.unwrap();
    assert_eq!(second.accepted(), 1, "one reconnection, to the next broker");
    t.close().await;
}

/// A list whose entries are all unreachable fails at once, naming each
/// entry and why, passwords hidden.
#[tokio::test]
async fn a_failover_list_of_dead_brokers_names_each() {
    let err = AmqpTransport::connect(
        "amqp://guest:secret1@127.0.0.1:1//;amqp://guest:secret2@127.0.0.1:2//",
        AmqpOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot connect to any of 2 brokers"), "{err}");
    assert!(err.contains("amqp://guest:***@127.0.0.1:1//"), "{err}");
    assert!(err.contains("amqp://guest:***@127.0.0.1:2//"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

/// What a graceful stop does, many times over, on a quorum queue: the
/// consumer is dropped (its cancel, and the return of what it had
/// buffered, run in the background), the deliveries taken are acked, and
/// the transport is closed at once. Every acked message must stay acked;
/// only the deliveries never taken come back. Two ways it failed: the
/// close met the consumer's channel closing, lapin dropped the socket, and
/// the broker, cut off before it read the last acks, requeued those
/// messages; and RabbitMQ dropping acks a quorum queue had not applied when
/// their channel closed (rabbitmq-server#10327; 2 runs in 8 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_made_before_close_are_never_lost() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    const ROUNDS: usize = 20;
    const SENT: usize = 40;
    const TAKEN: usize = 25;
    let admin = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
        .await
        .expect("connect");
    // A quorum queue, as in the cluster tests: its cancel is answered
    // later than a classic queue's, so the close often overtakes it.
    admin
        .declare_queue(&QueueSpec::durable("work.dlq"))
        .await
        .unwrap();
    admin
        .declare_queue(&QueueSpec::durable("work").quorum(None, "work.dlq"))
        .await
        .unwrap();
    admin
        .declare_exchange(&ExchangeSpec::topic("ex"))
        .await
        .unwrap();
    admin.bind("work", "ex", "work").await.unwrap();
    for round in 0..ROUNDS {
        for i in 0..SENT {
            admin
                .publish(
                    "ex",
                    "work",
                    Message::json(format!("{round}-{i}").into_bytes()),
                    PublishOptions::default(),
                )
                .await
                .unwrap();
        }
        let transport = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
            .await
            .expect("connect");
        // As a service does: it declares what it consumes.
        transport
            .declare_queue(&QueueSpec::durable("work").quorum(None, "work.dlq"))
            .await
            .unwrap();
        let mut consumer = transport
            .consume(
                "work",
                ConsumeOptions {
                    prefetch: SENT as u16,
                    ..ConsumeOptions::default()
                },
            )
            .await
            .unwrap();
        let mut taken = Vec::with_capacity(TAKEN);
        let mut taken_ids = Vec::new();
        for _ in 0..TAKEN {
            let d = next(&mut consumer).await;
            taken_ids.push(String::from_utf8_lossy(body(&d)).into_owned());
            taken.push(d);
        }
        drop(consumer);
        for delivery in taken {
            delivery.ack().await.expect("an ack on an open connection");
        }
        transport.close().await;
        // What was not taken comes back; nothing that was acked does.
        let mut count = 0;
        let mut acked_back = Vec::new();
        let left = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
            .await
            .expect("connect");
        let mut again = left
            .consume(
                "work",
                ConsumeOptions {
                    prefetch: 0,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        while let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(300), again.next()).await
        {
            let id = String::from_utf8_lossy(body(&delivery)).into_owned();
            if taken_ids.contains(&id) {
                acked_back.push(id);
            }
            delivery.ack().await.unwrap();
            count += 1;
        }
        drop(again);
        left.close().await;
        assert_eq!(
            count,
            SENT - TAKEN,
            "round {round}: {count} messages back, {} expected; acked ones among them: {acked_back:?}",
            SENT - TAKEN
        );
    }
    admin.close().await;
}

/// A consumer with `coalesce_acks` settles in any order, and every ack
/// reaches the broker: none covers a delivery still held (a held one
/// dropped unsettled comes back), a reject is a reject, and after the
/// consumer is gone nothing acked is delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_acks_reach_the_broker_in_any_order() {
    let Some((vhost, t)) = setup().await else {
        return;
    };
    const SENT: usize = 40;
    // Unbounded: a held delivery holds back the acks of every later one,
    // and so, at a prefetch, the deliveries after them.
    let mut consumer = numbered_and_coalescing(&t, SENT, 0).await;
    // Every fifth delivery is held while the later ones are acked; the
    // held ones are settled at the end, in reverse order: message 0 rejected
    // (dropped: no dead-letter exchange), message 5 dropped unsettled
    // (requeued, and acked when it comes back), the rest acked.
    let mut held = Vec::new();
    let mut seen = Vec::new();
    while seen.len() < SENT {
        let d = next(&mut consumer).await;
        let n: usize = std::str::from_utf8(body(&d)).unwrap().parse().unwrap();
        seen.push(n);
        if n.is_multiple_of(5) {
            held.push((n, d));
        } else {
            d.ack().await.unwrap();
        }
    }
    async fn settle(n: usize, d: Delivery) {
        match n {
            0 => d.reject(false).await.unwrap(),
            5 => drop(d),
            _ => d.ack().await.unwrap(),
        }
    }
    while let Some((n, d)) = held.pop() {
        settle(n, d).await;
    }
    // Message 5 comes back (dropped unsettled: requeued), redelivered.
    let again = next(&mut consumer).await;
    assert_eq!(body(&again), b"5");
    assert!(again.redelivered);
    again.ack().await.unwrap();
    // Waiting for a next delivery sends what is unsent.
    let nothing = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(
        nothing.is_err(),
        "no delivery is left: {:?}",
        nothing.map(|d| d.map(|d| d.message.body.clone()))
    );
    until_settled(&vhost, "q").await;
    drop(consumer);
    t.close().await;
    // Nothing acked or rejected comes back to a new consumer.
    let t = AmqpTransport::connect(&vhost.uri, AmqpOptions::default())
        .await
        .unwrap();
    let mut consumer = t.consume("q", ConsumeOptions::default()).await.unwrap();
    let back = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    assert!(back.is_err(), "a settled message came back");
    assert_eq!(seen.len(), SENT);
    t.close().await;
}

/// Coalesced acks settled from many tasks at once (each flush racing the
/// others and the consumer's own) still reach the broker in tag order: an
/// ack for a tag an earlier one covered would close the channel, and its
/// messages would come back, redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_acks_settled_from_many_tasks_go_out_in_order() {
    let Some((vhost, t)) = setup().await else {
        return;
    };
    const SENT: usize = 600;
    // A small prefetch: a flush every second settlement.
    let mut consumer = numbered_and_coalescing(&t, SENT, 4).await;
    let mut acks = Vec::with_capacity(SENT);
    for _ in 0..SENT {
        let d = next(&mut consumer).await;
        assert!(!d.redelivered, "a delivery came back: the channel failed");
        acks.push(tokio::spawn(async move { d.ack().await }));
    }
    for ack in acks {
        ack.await.unwrap().expect("an ack on an open channel");
    }
    let nothing = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(nothing.is_err(), "no delivery is left");
    until_settled(&vhost, "q").await;
    drop(consumer);
    t.close().await;
}

/// Queue `q` with messages `0` to `sent - 1`, and a consumer of it that
/// coalesces its acks.
async fn numbered_and_coalescing(t: &AmqpTransport, sent: usize, prefetch: u16) -> Consumer {
    queue(t, "q", "k").await;
    for i in 0..sent {
        t.publish(
            "ex",
            "k",
            Message::json(i.to_string().into_bytes()),
            PublishOptions::default(),
        )
        .await
        .unwrap();
    }
    t.consume(
        "q",
        ConsumeOptions {
            prefetch,
            coalesce_acks: true,
        },
    )
    .await
    .unwrap()
}

/// Waits until `queue` holds no message, unacknowledged or ready.
async fn until_settled(vhost: &TestVhost, queue: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let listing = vhost.list_queues(&["name", "messages_unacknowledged", "messages"]);
        if listing
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [queue, "0", "0"])
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "acks never reached the broker: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
