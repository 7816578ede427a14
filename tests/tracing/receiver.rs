//! An OTLP/HTTP receiver for the tracing tests: `POST /v1/traces` with
//! JSON bodies, the spans kept in order of arrival.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// One exported span, as OTLP/JSON gives it.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace: String,
    pub id: String,
    pub parent: String,
    pub name: String,
    /// OTLP's span kind: 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: u64,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub status: u64,
    pub attributes: HashMap<String, String>,
}

/// Starts the receiver: its base URL (the OTLP endpoint) and the spans.
pub async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post({
            let spans = spans.clone();
            move |body: axum::body::Bytes| {
                let spans = spans.clone();
                async move {
                    let request: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                    let mut found = spans.lock().unwrap();
                    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
                        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                            for span in scope["spans"].as_array().into_iter().flatten() {
                                let text = |key: &str| span[key].as_str().unwrap_or("").to_owned();
                                let attributes = span["attributes"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(|kv| {
                                        let value = &kv["value"];
                                        let value = value["stringValue"]
                                            .as_str()
                                            .map(str::to_owned)
                                            .unwrap_or_else(|| value.to_string());
                                        (kv["key"].as_str().unwrap_or("").to_owned(), value)
                                    })
                                    .collect();
                                found.push(Span {
                                    trace: text("traceId"),
                                    id: text("spanId"),
                                    parent: text("parentSpanId"),
                                    name: text("name"),
                                    kind: span["kind"].as_u64().unwrap_or(0),
                                    status: span["status"]["code"].as_u64().unwrap_or(0),
                                    attributes,
                                });
                            }
                        }
                    }
                    "{}"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

pub fn find<'a>(spans: &'a [Span], trace: &str, name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.trace == trace && s.name == name)
        .collect()
}

pub fn by_id<'a>(spans: &'a [Span], id: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no span {id} in {spans:#?}"))
}
