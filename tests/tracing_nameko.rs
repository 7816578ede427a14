//! A Python nameko service in the middle keeps the trace: an enoki client
//! calls `pysvc.relay` (nameko 2.14.1), which calls `enokisvc.context`
//! through its `RpcProxy`. nameko passes `nameko.traceparent` on as it
//! passes all context data, so the enoki worker continues the client's
//! trace, a child of the client's publish span (Python makes no span of
//! its own). Needs RabbitMQ and the nameko venv, as `tests/interop.rs`.

mod common;
#[path = "tracing/receiver.rs"]
mod receiver;
#[path = "interop/support.rs"]
mod support;

use std::time::Duration;

use enoki::prelude::*;
use serde_json::{Value, json};
use support::{Interop, wait_ready};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Dependencies)]
struct EnokiSvc;

#[service(name = "enokisvc")]
impl EnokiSvc {
    /// The context data this worker received.
    #[rpc]
    async fn context(&self, ctx: &WorkerCtx) -> Result<Value, RemoteError> {
        Ok(json!({ "data": ctx.context_data() }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_service_in_the_middle_keeps_the_trace() {
    let Some(env) = Interop::setup().await else {
        return;
    };
    let (endpoint, spans) = receiver::receiver().await;
    let (layer, telemetry) = enoki::telemetry::otlp_layer("enoki-nameko-test", Some(&endpoint))
        .unwrap()
        .unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();

    let runner = env
        .runner(env.transport.clone(), [enoki::service::<EnokiSvc>()])
        .await;
    let mut py = env.nameko("py", &["PyService"]);
    let rpc = env.rpc(Duration::from_secs(20)).await;
    wait_ready(&rpc, "pysvc", &mut [&mut py]).await;

    let seen = rpc
        .service("pysvc")
        .call("relay", json!([]))
        .instrument(tracing::info_span!("caller"))
        .await
        .unwrap();
    let traceparent = seen["inner"]["data"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent reached enokisvc: {seen}"))
        .to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");

    tokio::task::block_in_place(|| telemetry.flush());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = spans.lock().unwrap().clone();
        if spans.iter().any(|s| s.name == "process enokisvc.context") {
            break spans;
        }
        assert!(tokio::time::Instant::now() < deadline, "{spans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::task::block_in_place(|| telemetry.flush());
    };
    let publish = spans
        .iter()
        .find(|s| {
            s.name == "publish nameko-rpc"
                && s.attributes
                    .get("messaging.rabbitmq.destination.routing_key")
                    == Some(&"pysvc.relay".to_owned())
        })
        .expect("the client's publish span");
    let caller = receiver::by_id(&spans, &publish.parent);
    assert_eq!(caller.name, "caller");
    // The trace went through Python unchanged...
    assert_eq!(parts[1], publish.trace, "{traceparent}");
    assert_eq!(
        parts[2], publish.id,
        "Python passes the parent on as it got it"
    );
    // ...and the enoki worker continues it.
    let process = spans
        .iter()
        .find(|s| s.name == "process enokisvc.context")
        .unwrap();
    assert_eq!(process.trace, publish.trace);
    assert_eq!(process.parent, publish.id);

    py.assert_alive();
    rpc.close().await;
    runner.stop().await;
    env.finish().await;
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap();
}
