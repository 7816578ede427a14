//! The twins agree: `examples/manual_service.rs` (the traits written by
//! hand) and `tests/expand/manual_service.rs` (the same service through
//! the macros, whose expansion is the snapshot
//! `tests/expand/manual_service.expanded.rs`) have the same name,
//! entrypoint table, dependencies, client, and answers to the same calls,
//! bad ones included.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/manual_service.rs"]
mod manual;

#[allow(dead_code, unreachable_pub)]
#[path = "expand/manual_service.rs"]
mod generated;

use enoki::prelude::*;
use enoki::transport::MemoryTransport;
use serde_json::{Value, json};

/// The outcome of one raw call, comparable across the twins.
fn outcome(result: enoki::Result<Box<serde_json::value::RawValue>>) -> Value {
    match result {
        Ok(raw) => json!({ "ok": serde_json::from_str::<Value>(raw.get()).unwrap() }),
        Err(enoki::Error::Remote(err)) => json!({ "err": [err.exc_type, err.value] }),
        Err(other) => json!({ "other": other.to_string() }),
    }
}

async fn answers(def: enoki::ServiceDef) -> Vec<Value> {
    let transport = MemoryTransport::new();
    let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
    runner.add(def);
    runner.start().await.unwrap();
    let rpc = ClusterRpc::connect(transport, &Settings::new())
        .await
        .unwrap();
    let calls: &[(&str, &str)] = &[
        ("add", r#"{"args": [2, 3], "kwargs": {}}"#),
        ("add", r#"{"args": [], "kwargs": {"b": 1, "a": 2}}"#),
        ("add", r#"{"args": [9223372036854775807, 1], "kwargs": {}}"#),
        ("add", r#"{"args": [1], "kwargs": {}}"#),
        ("add", r#"{"args": [1, 2, 3], "kwargs": {}}"#),
        ("add", r#"{"args": ["x", 2], "kwargs": {}}"#),
        ("add", r#"{"args": [1], "kwargs": {"a": 2}}"#),
        ("add", r#"{"args": [1, 2], "kwargs": {"c": 2}}"#),
        ("add", r#"{"args": 1, "kwargs": {}}"#),
        ("add", r#"{"kwargs": {}}"#),
        ("greet", r#"{"args": ["Ann"], "kwargs": {}}"#),
        ("greet", r#"{"args": ["Ann", "Hi"], "kwargs": {}}"#),
        (
            "greet",
            r#"{"args": [], "kwargs": {"greeting": "Yo", "name": "Bo"}}"#,
        ),
        ("greet", r#"{"args": [], "kwargs": {}}"#),
        ("whoami", r#"{"args": [1], "kwargs": {}}"#),
        ("nosuch", r#"{"args": [], "kwargs": {}}"#),
    ];
    let mut out = Vec::new();
    for (method, body) in calls {
        let result = rpc
            .call_raw("manual_service", method, body.as_bytes().to_vec())
            .await;
        out.push(json!({ "call": [method, body], "outcome": outcome(result) }));
    }
    // whoami answers call ids that differ from run to run: compare its shape.
    let who = rpc
        .call("manual_service", "whoami", json!([]), Default::default())
        .await
        .unwrap();
    out.push(json!({
        "whoami keys": who.as_object().unwrap().keys().collect::<Vec<_>>(),
        "rpc_exchange": who["rpc_exchange"],
        "stack depth": who["call_id_stack"].as_array().unwrap().len(),
    }));
    rpc.close().await;
    runner.stop().await;
    out
}

#[test]
fn the_twins_declare_the_same_service() {
    assert_eq!(
        <manual::ManualService as Service>::NAME,
        <generated::ManualService as Service>::NAME
    );
    assert_eq!(
        <manual::ManualService as Service>::entrypoints(),
        <generated::ManualService as Service>::entrypoints()
    );
    let names = |set: enoki::ProviderSet| set.names().collect::<Vec<_>>();
    assert_eq!(
        names(<manual::ManualService as Dependencies>::providers()),
        names(<generated::ManualService as Dependencies>::providers())
    );
    assert_eq!(
        manual::ManualServiceClient::SERVICE,
        generated::ManualServiceClient::SERVICE
    );
}

#[tokio::test]
async fn the_twins_answer_alike() {
    let by_hand = answers(enoki::service::<manual::ManualService>()).await;
    let by_macro = answers(enoki::service::<generated::ManualService>()).await;
    assert_eq!(by_hand.len(), by_macro.len());
    for (hand, macros) in by_hand.iter().zip(&by_macro) {
        assert_eq!(hand, macros, "the twins differ");
    }
    // And the answers are the ones nameko would give.
    assert_eq!(by_hand[0]["outcome"], json!({ "ok": 5 }));
    assert_eq!(
        by_hand[3]["outcome"]["err"],
        json!([
            "IncorrectSignature",
            "add() missing 1 required positional argument: 'b'"
        ])
    );
}

#[tokio::test]
async fn the_twin_clients_call_alike() {
    let transport = MemoryTransport::new();
    let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
    runner.add(enoki::service::<manual::ManualService>());
    runner.start().await.unwrap();
    let rpc = ClusterRpc::connect(transport, &Settings::new())
        .await
        .unwrap();
    let hand = manual::ManualServiceClient::new(&rpc);
    let macros = generated::ManualServiceClient::new(&rpc);
    assert_eq!(
        hand.add(2, 40).await.unwrap(),
        macros.add(2, 40).await.unwrap()
    );
    assert_eq!(
        hand.greet("Ann".into(), None).await.unwrap(),
        macros.greet("Ann".into(), None).await.unwrap()
    );
    rpc.close().await;
    runner.stop().await;
}
