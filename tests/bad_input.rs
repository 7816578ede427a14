//! Every path a message with bad content can take. Each gets nameko's error
//! reply when it has a reply address, is logged and acked otherwise, and
//! never stops the container or loses other messages.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use enoki::message::{Message, Properties};
use enoki::prelude::*;
use enoki::testing::Cluster;
use enoki::transport::{ConsumeOptions, Consumer, PublishOptions, QueueSpec, Transport};
use serde_json::{Value, json};

#[derive(Dependencies)]
struct Greeter;

#[service(name = "greeter")]
impl Greeter {
    #[rpc]
    async fn hello(&self, name: String) -> Result<String, RemoteError> {
        Ok(format!("Hello, {name}!"))
    }

    #[event_handler("src", "happened", requeue_on_error = true)]
    async fn on_happened(&self, payload: u32) -> Result<u32, RemoteError> {
        Ok(payload)
    }
}

/// A raw client: its own reply queue on the embedded broker.
struct Raw {
    transport: Arc<dyn Transport>,
    replies: Consumer,
}

impl Raw {
    async fn new(cluster: &Cluster) -> Raw {
        let transport: Arc<dyn Transport> = cluster.transport().connect();
        transport
            .declare_queue(&QueueSpec::durable("raw-replies"))
            .await
            .unwrap();
        transport
            .bind("raw-replies", "nameko-rpc", "raw-reply-key")
            .await
            .unwrap();
        let replies = transport
            .consume("raw-replies", ConsumeOptions::default())
            .await
            .unwrap();
        Raw { transport, replies }
    }

    async fn send(&self, routing_key: &str, message: Message) {
        self.transport
            .publish(
                "nameko-rpc",
                routing_key,
                message,
                PublishOptions::default(),
            )
            .await
            .unwrap();
    }

    async fn reply(&mut self) -> (Option<String>, Value) {
        let delivery = tokio::time::timeout(Duration::from_secs(5), self.replies.next())
            .await
            .expect("a reply")
            .expect("consumer open");
        let correlation_id = delivery
            .message
            .properties
            .correlation_id
            .as_deref()
            .map(str::to_owned);
        let body: Value = serde_json::from_slice(&delivery.message.body).unwrap();
        delivery.ack().await.unwrap();
        (correlation_id, body)
    }

    async fn no_reply(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(200), self.replies.next()).await;
        assert!(
            next.is_err(),
            "unexpected reply: {:?}",
            next.unwrap().map(|d| d.message)
        );
    }
}

fn request(body: &'static [u8]) -> Message {
    Message::json(Bytes::from_static(body))
        .with_reply_to("raw-reply-key")
        .with_correlation_id("c1")
}

async fn assert_still_serving(cluster: &Cluster) {
    let greeter = GreeterClient::new(cluster.rpc());
    assert_eq!(greeter.hello("Ann".into()).await.unwrap(), "Hello, Ann!");
    assert_eq!(cluster.transport().ready_count("rpc-greeter"), Some(0));
}

#[tokio::test]
async fn bad_requests_get_nameko_error_replies() {
    let cluster = Cluster::start([enoki::service::<Greeter>()]).await.unwrap();
    let mut raw = Raw::new(&cluster).await;
    let cases: Vec<(&str, Message, &str, &str)> = vec![
        (
            "greeter.hello",
            request(b"not json"),
            "MalformedRequest",
            "not a JSON object",
        ),
        (
            "greeter.hello",
            request(b"[1, 2]"),
            "MalformedRequest",
            "not a JSON object",
        ),
        (
            "greeter.hello",
            request(br#"{"args": ["Ann"]}"#),
            "MalformedRequest",
            "missing `args` or `kwargs`",
        ),
        (
            "greeter.hello",
            request(br#"{"args": 1, "kwargs": {}}"#),
            "MalformedRequest",
            "`args` must be a JSON array",
        ),
        (
            "greeter.hello",
            request(br#"{"args": [], "kwargs": {}}"#),
            "IncorrectSignature",
            "missing 1 required positional argument: 'name'",
        ),
        (
            "greeter.hello",
            request(br#"{"args": ["a", "b"], "kwargs": {}}"#),
            "IncorrectSignature",
            "takes 2 positional arguments but 3 were given",
        ),
        (
            "greeter.hello",
            request(br#"{"args": [42], "kwargs": {}}"#),
            "IncorrectSignature",
            "argument 'name'",
        ),
        (
            "greeter.hello",
            request(br#"{"args": [], "kwargs": {"nom": "x"}}"#),
            "IncorrectSignature",
            "unexpected keyword argument 'nom'",
        ),
        (
            "greeter.nosuch",
            request(br#"{"args": [], "kwargs": {}}"#),
            "MethodNotFound",
            "nosuch",
        ),
        (
            "greeter.on_happened",
            request(br#"{"args": [], "kwargs": {}}"#),
            "MethodNotFound",
            "on_happened",
        ),
    ];
    for (routing_key, message, exc_type, value) in cases {
        let body = String::from_utf8_lossy(&message.body).into_owned();
        raw.send(routing_key, message).await;
        let (correlation_id, reply) = raw.reply().await;
        assert_eq!(correlation_id.as_deref(), Some("c1"));
        assert_eq!(reply["result"], Value::Null, "{body}");
        assert_eq!(reply["error"]["exc_type"], exc_type, "{body}: {reply}");
        assert_eq!(
            reply["error"]["exc_path"],
            format!("nameko.exceptions.{exc_type}")
        );
        let got = reply["error"]["value"].as_str().unwrap();
        assert!(got.contains(value), "{body}: {got}");
    }
    assert_still_serving(&cluster).await;
    cluster.stop().await;
}

#[tokio::test]
async fn bad_headers_and_content_types_are_answered() {
    let cluster = Cluster::start([enoki::service::<Greeter>()]).await.unwrap();
    let mut raw = Raw::new(&cluster).await;

    // A call-id stack that is not an array of strings.
    for bad in [json!("greeter.x.1"), json!([1, 2])] {
        let mut message = request(br#"{"args": ["Ann"], "kwargs": {}}"#);
        message
            .properties
            .headers
            .insert("nameko.call_id_stack".into(), bad);
        raw.send("greeter.hello", message).await;
        let (_, reply) = raw.reply().await;
        assert_eq!(reply["error"]["exc_type"], "MalformedRequest", "{reply}");
        assert!(
            reply["error"]["value"]
                .as_str()
                .unwrap()
                .contains("call_id_stack")
        );
    }

    // A content type enoki does not speak (e.g. pickle).
    let mut message = request(br#"{"args": ["Ann"], "kwargs": {}}"#);
    message.properties.content_type = Some("application/x-python-serialize".into());
    raw.send("greeter.hello", message).await;
    let (_, reply) = raw.reply().await;
    assert_eq!(reply["error"]["exc_type"], "MalformedRequest");
    assert!(
        reply["error"]["value"]
            .as_str()
            .unwrap()
            .contains("content type")
    );

    // No content type at all: read as JSON (nameko would crash here).
    let message = Message {
        properties: Properties {
            reply_to: Some("raw-reply-key".into()),
            correlation_id: Some("c2".into()),
            ..Properties::default()
        },
        body: Bytes::from_static(br#"{"args": ["Bo"], "kwargs": {}}"#),
    };
    raw.send("greeter.hello", message).await;
    let (correlation_id, reply) = raw.reply().await;
    assert_eq!(correlation_id.as_deref(), Some("c2"));
    assert_eq!(reply, json!({"result": "Hello, Bo!", "error": null}));

    assert_still_serving(&cluster).await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_request_without_reply_to_is_acked_and_dropped() {
    let cluster = Cluster::start([enoki::service::<Greeter>()]).await.unwrap();
    let mut raw = Raw::new(&cluster).await;
    let mut message = request(br#"{"args": ["Ann"], "kwargs": {}}"#);
    message.properties.reply_to = None;
    raw.send("greeter.hello", message).await;
    raw.no_reply().await;
    // Not requeued (nameko would poison the queue with it).
    assert_still_serving(&cluster).await;
    cluster.stop().await;
}

#[tokio::test]
async fn bad_events_are_dropped_not_requeued_forever() {
    let cluster = Cluster::start([enoki::service::<Greeter>()]).await.unwrap();
    let container = cluster.container("greeter").unwrap();
    let transport: Arc<dyn Transport> = cluster.transport();
    let queue = "evt-src-happened--greeter.on_happened";
    for body in [&b"not json"[..], br#""a string""#, b"{}"] {
        let waiter = enoki::testing::entrypoint_waiter(container, "on_happened")
            .timeout(Duration::from_secs(5));
        let message = Message::json(Bytes::copy_from_slice(body));
        transport
            .publish("src.events", "happened", message, PublishOptions::default())
            .await
            .unwrap();
        let record = waiter.wait().await.unwrap();
        assert_eq!(record.result().unwrap_err().exc_type, "IncorrectSignature");
    }
    // An event with a bad context header never reaches a worker.
    let mut message = Message::json(Bytes::from_static(b"7"));
    message
        .properties
        .headers
        .insert("nameko.call_id_stack".into(), json!({"a": 1}));
    transport
        .publish("src.events", "happened", message, PublishOptions::default())
        .await
        .unwrap();
    // A good one still goes through afterwards.
    let waiter = enoki::testing::entrypoint_waiter(container, "on_happened");
    cluster.dispatch("src", "happened", &7).await.unwrap();
    assert_eq!(waiter.wait().await.unwrap().result().unwrap(), json!(7));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(cluster.transport().ready_count(queue), Some(0));
    cluster.stop().await;
}
