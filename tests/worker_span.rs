//! Every worker runs in a `worker` span carrying the service, the method
//! and the call id, so what a handler logs with `tracing` is attributed.

use std::sync::Arc;

use enoki::prelude::*;
use enoki::transport::MemoryTransport;
use parking_lot::Mutex;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// The fields of one span or event, as text.
#[derive(Debug, Default, Clone)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        ));
    }
}

/// An event as seen: its fields, and the names and fields of the spans
/// around it.
#[derive(Debug, Clone)]
struct Seen {
    fields: Fields,
    spans: Vec<(String, Fields)>,
}

/// Records every event with the spans it is in.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|span| {
                        let fields = span.extensions().get::<Fields>().cloned();
                        (span.name().to_owned(), fields.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().push(Seen { fields, spans });
    }
}

#[derive(Dependencies)]
struct Chatty;

#[service(name = "chatty")]
impl Chatty {
    /// Logs, and answers its own call id.
    #[rpc]
    async fn talk(&self, ctx: &WorkerCtx) -> Result<String, RemoteError> {
        tracing::info!(topic = "weather", "a handler speaks");
        Ok(ctx.call_id().to_owned())
    }

    #[rpc]
    async fn fail(&self) -> Result<(), RemoteError> {
        Err(RemoteError::new("Grumpy", "not today"))
    }
}

#[tokio::test]
async fn a_handlers_logs_carry_service_method_and_call_id() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let transport = MemoryTransport::new();
    let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
    runner.add(enoki::service::<Chatty>());
    runner.start().await.unwrap();
    let rpc = ClusterRpc::connect(transport, &Settings::new())
        .await
        .unwrap();
    let call_id = rpc
        .call("chatty", "talk", json!([]), Default::default())
        .await
        .unwrap();
    let call_id = call_id.as_str().unwrap().to_owned();
    let _ = rpc
        .call("chatty", "fail", json!([]), Default::default())
        .await;
    rpc.close().await;
    runner.stop().await;

    let seen = capture.0.lock().clone();
    let spoken = seen
        .iter()
        .find(|e| e.fields.get("message") == Some("a handler speaks"))
        .expect("the handler's event was recorded");
    assert_eq!(spoken.fields.get("topic"), Some("weather"));
    let (name, span) = spoken
        .spans
        .iter()
        .find(|(name, _)| name == "worker")
        .expect("the handler's event is inside a `worker` span");
    assert_eq!(name, "worker");
    assert_eq!(span.get("service"), Some("chatty"));
    assert_eq!(span.get("method"), Some("talk"));
    assert_eq!(span.get("call_id"), Some(call_id.as_str()));

    // The framework's own log of a failed worker is attributed the same way.
    let failed = seen
        .iter()
        .find(|e| e.fields.get("message") == Some("worker failed"))
        .expect("the failure was logged");
    let (_, span) = failed
        .spans
        .iter()
        .find(|(name, _)| name == "worker")
        .expect("inside the worker span");
    assert_eq!(span.get("method"), Some("fail"));
    assert!(span.get("call_id").unwrap().starts_with("chatty.fail."));
}
