//! The gateway on the embedded broker: routes, the generic endpoint, errors
//! as HTTP, WebSocket and SSE, the event bridge, tower layers, health,
//! metrics, OpenAPI, auth and graceful shutdown. The browser test is
//! `tests/gateway_browser.rs`; the nameko test `tests/gateway_nameko.rs`.
#![cfg(all(feature = "gateway", feature = "cli"))]

#[path = "gateway/support.rs"]
mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use enoki::gateway::cli::{GatewayArgs, run_until};
use enoki::gateway::{EventPattern, RouteTable, SlowClient};
use enoki::prelude::*;
use enoki::transport::Transport;
use futures::SinkExt;
use serde_json::{Value, json};
use support::*;

// ===== 1. routes =====

#[tokio::test]
async fn example_routes_call_their_methods() {
    let gw = Gw::start("").await;
    assert_eq!(
        gw.get("/hello/Ann").await,
        (StatusCode::OK, json!("Hello, Ann!"))
    );
    assert_eq!(gw.get("/add/2/3").await, (StatusCode::OK, json!(5)));
    assert_eq!(
        gw.post_json("/add", json!({"a": 4, "b": "5"})).await,
        (StatusCode::CREATED, json!(9))
    );
    assert_eq!(
        gw.post_json("/greet/Bo?greeting=Hi", json!({})).await,
        (StatusCode::OK, json!("Hi, Bo!"))
    );
    let (s, _, v) = gw
        .request(Request::post("/greet/Bo").body(Body::empty()).unwrap())
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!("Hello, Bo!")));
    let (s, v) = gw.get("/clock/ticks").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.is_u64());
    // greeted events reach the listener through the embedded broker.
    eventually("listener received", || async {
        let (_, v) = gw.get("/listener/received").await;
        v.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn route_files_with_errors_name_file_line_and_problem() {
    let dir = std::env::temp_dir().join(format!("enoki-routes-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "routes:\n  - method: GET\n    path: /a\n    rpc: a.b\n    colour: red\n",
            ":5:",
            "unknown field `colour`",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    rpc: a.b\n  - method: GET\n    path: /a\n    rpc: c.d\n",
            ":6:",
            "duplicate route GET /a",
        ),
        (
            "routes:\n  - method: GET\n    path: a/{x}\n    rpc: a.b\n",
            ":3:",
            "must start with `/`",
        ),
        (
            "routes:\n  - method: GET\n    path: /a/{x}x\n    rpc: a.b\n",
            ":3:",
            "bad path",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    rpc: ab\n",
            ":4:",
            "not SERVICE.METHOD",
        ),
        (
            "routes:\n  - method: GET\n   path: /a\n",
            ":2:",
            "missing field `path`",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    rpc: a.b\n    status: 404\n",
            ":5:",
            "not a success status",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    rpc: a.b\n    rate_limit: {requests: 0}\n",
            ":5:",
            "rate_limit: `requests` must be from 1 to 1000000, got 0",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    rpc: a.b\n    rate_limit:\n      requests: 5\n      every: 2\n",
            ":7:",
            "unknown field `every`",
        ),
    ];
    for (i, (text, line, problem)) in cases.iter().enumerate() {
        let file = dir.join(format!("case{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        let err = RouteTable::load_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&format!("case{i}.yaml{line}")) && err.contains(problem),
            "case {i}: {err}"
        );
        std::fs::remove_file(&file).unwrap();
    }
    // And start-up stops.
    std::fs::write(dir.join("bad.yaml"), "routes: [").unwrap();
    let args = GatewayArgs {
        listen: "127.0.0.1:0".into(),
        routes: Some(dir.clone()),
        ..Default::default()
    };
    let err = run_until(args, Settings::new(), vec![], async {}, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad.yaml:"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ===== rate limits =====

/// A route's rate limit and the generic endpoint's, per client address, on
/// the gateway's own server: past the burst, 429 `TooManyRequests` with a
/// `Retry-After` of the time one token takes to come back, counted in
/// `/metrics`; a route without a limit is not limited; bad limits in
/// `GATEWAY` stop start-up naming the key and the problem.
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let transport = enoki::transport::MemoryTransport::new();
    let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
    for def in services() {
        runner.add(def);
    }
    runner.start().await.unwrap();
    let mut routes = RouteTable::default();
    routes
        .add_yaml(
            "routes:\n  - method: GET\n    path: /hello/{name}\n    rpc: greeter.hello\n    rate_limit: {requests: 3, per: 60}\n  - method: GET\n    path: /clock/ticks\n    rpc: clock.ticks\n",
            "limited.yaml",
        )
        .unwrap();
    let config: enoki::gateway::GatewayConfig =
        serde_yaml_ng::from_str("rpc: {rate_limit: {requests: 1, per: 10, burst: 2}}").unwrap();
    let state = enoki::gateway::GatewayState::builder(transport.clone())
        .config(config)
        .routes(routes)
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(enoki::gateway::serve::serve(
        listener,
        enoki::gateway::router(state.clone()),
        Default::default(),
        Some(state.metrics().clone()),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://{addr}{path}")).send();
    for _ in 0..3 {
        assert_eq!(get("/hello/Ann").await.unwrap().status(), 200);
    }
    let refused = get("/hello/Bob").await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (19..=20).contains(&retry),
        "one token every 20 s, got {retry}"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "TooManyRequests", "{body}");
    assert_eq!(body["error"]["service"], "greeter", "{body}");
    for _ in 0..10 {
        assert_eq!(
            get("/clock/ticks").await.unwrap().status(),
            200,
            "not limited"
        );
    }

    let call = || {
        http.post(format!("http://{addr}/rpc/greeter/hello"))
            .json(&json!({"args": ["Ann"]}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(call().await.unwrap().status(), 200);
    }
    let refused = call().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "10");
    // A WebSocket call is a call of the generic endpoint: the same bucket.
    let mut ws = ws_connect(addr, "").await;
    ws_send(
        &mut ws,
        json!({"type": "call", "id": 1, "service": "greeter", "method": "hello", "args": ["Ann"]}),
    )
    .await;
    let frame = ws_next_of(&mut ws, "error").await;
    assert_eq!(frame["error"]["type"], "TooManyRequests", "{frame}");
    assert_eq!(frame["id"], 1);

    let openapi: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    let paths = &openapi["paths"];
    assert!(
        paths["/hello/{name}"]["get"]["responses"]["429"].is_object(),
        "{paths}"
    );
    assert!(paths["/clock/ticks"]["get"]["responses"]["429"].is_null());
    assert!(paths["/rpc/{service}/{method}"]["post"]["responses"]["429"].is_object());

    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("enoki_gateway_requests_rate_limited_total 3"),
        "{metrics}"
    );
    server.abort();
    state.close().await;
    runner.stop().await;

    for (yaml, wants) in [
        (
            "rpc: {rate_limit: {requests: 5, per: -1}}",
            "GATEWAY.rpc.rate_limit: `per` must be",
        ),
        (
            "rpc: {rate_limit: {requests: 5, by: ip}}",
            "unknown variant `ip`",
        ),
    ] {
        let mut gateway = serde_json::Map::new();
        gateway.insert("GATEWAY".into(), serde_yaml_ng::from_str(yaml).unwrap());
        let settings = Settings::from_map(gateway);
        let err = enoki::gateway::GatewayConfig::from_settings(&settings)
            .unwrap_err()
            .to_string();
        assert!(err.contains(wants), "{yaml}: {err}");
    }
}

// ===== generic endpoint =====

#[tokio::test]
async fn generic_rpc_endpoint_and_its_config() {
    let gw = Gw::start("").await;
    assert_eq!(
        gw.post_json(
            "/rpc/manual_service/greet",
            json!({"args": ["Ann"], "kwargs": {"greeting": "Hey"}})
        )
        .await,
        (StatusCode::OK, json!("Hey, Ann!"))
    );
    let (s, _, v) = gw
        .request(
            Request::post("/rpc/clock/ticks")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.stop().await;

    let gw = Gw::start("rpc: {enabled: false}").await;
    let (s, v) = gw
        .post_json("/rpc/greeter/hello", json!({"args": ["A"]}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(gw.get("/hello/A").await.0, StatusCode::OK);
    gw.stop().await;

    let gw = Gw::start("rpc: {services: [greeter]}").await;
    assert_eq!(
        gw.post_json("/rpc/greeter/hello", json!({"args": ["A"]}))
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = gw
        .post_json("/rpc/manual_service/add", json!({"args": [1, 2]}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["type"], "UnknownService");
    gw.stop().await;
}

// ===== 2. errors =====

#[tokio::test]
async fn errors_are_json_with_the_right_status() {
    let gw = Gw::start("{error_status: {OverflowError: 422}, body_limit: 64}").await;
    let check = |(s, v): (StatusCode, Value), status: StatusCode, kind: &str| {
        assert_eq!(s, status, "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    };
    let (s, v) = gw.post_json("/rpc/nosuch/method", json!({})).await;
    check((s, v.clone()), StatusCode::NOT_FOUND, "UnknownService");
    assert_eq!(v["error"]["service"], "nosuch");
    assert_eq!(v["error"]["method"], "method");
    check(
        gw.post_json("/rpc/greeter/nosuch", json!({})).await,
        StatusCode::NOT_FOUND,
        "MethodNotFound",
    );
    check(
        gw.post_json("/rpc/greeter/hello", json!({"args": [1, 2, 3]}))
            .await,
        StatusCode::BAD_REQUEST,
        "IncorrectSignature",
    );
    check(
        gw.post_json("/rpc/greeter/hello", json!({"args": 5})).await,
        StatusCode::BAD_REQUEST,
        "MalformedRequest",
    );
    check(
        gw.post_json("/rpc/greeter/hello", json!({"bogus": 1}))
            .await,
        StatusCode::BAD_REQUEST,
        "MalformedRequest",
    );
    check(
        gw.get("/add/x/1").await,
        StatusCode::BAD_REQUEST,
        "BadRequest",
    );
    let (s, _, v) = gw
        .request(
            Request::post("/rpc/greeter/hello")
                .header("content-type", "application/json")
                .body(Body::from("{nope"))
                .unwrap(),
        )
        .await;
    check((s, v), StatusCode::BAD_REQUEST, "MalformedRequest");
    let (s, _, v) = gw
        .request(
            Request::post("/rpc/greeter/hello")
                .header("content-type", "text/plain")
                .body(Body::from("Ann"))
                .unwrap(),
        )
        .await;
    check(
        (s, v),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
    );
    let big = json!({"args": ["x".repeat(200)]});
    check(
        gw.post_json("/rpc/greeter/hello", big.clone()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLarge",
    );
    // Chunked, without a content-length.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(big.to_string().into_bytes())]);
    let (s, _, v) = gw
        .request(
            Request::post("/rpc/greeter/hello")
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap(),
        )
        .await;
    check((s, v), StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    check(
        gw.post_json("/rpc/testing/fail", json!({"args": ["ValueError"]}))
            .await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ValueError",
    );
    check(
        gw.post_json("/rpc/manual_service/add", json!({"args": [i64::MAX, 1]}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "OverflowError",
    );
    check(
        gw.get("/no/such/page").await,
        StatusCode::NOT_FOUND,
        "NotFound",
    );
    let (s, _, v) = gw
        .request(Request::delete("/hello/x").body(Body::empty()).unwrap())
        .await;
    check((s, v), StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");
    gw.stop().await;
}

#[tokio::test]
async fn rpc_timeout_is_504_and_broker_down_is_503() {
    let gw = Gw::start("rpc_timeout: 0.2").await;
    let (s, v) = gw
        .post_json("/rpc/testing/sleep", json!({"args": [2.0]}))
        .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert_eq!(v["error"]["type"], "RpcTimeout");
    gw.transport.close().await;
    let (s, h, v) = gw
        .request(
            Request::post("/rpc/greeter/hello")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"args":["A"]}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["type"], "ServiceUnavailable");
    assert!(h.contains_key("retry-after"));
    gw.runner.stop().await;
}

// ===== 3. WebSocket =====

#[tokio::test]
async fn websocket_subscribes_receives_calls_and_survives_bad_frames() {
    let gw = Gw::start("").await;
    let addr = gw.serve().await;
    let mut ws = ws_connect(addr, "").await;

    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "events": ["clock.tick", "greeter.*"]}),
    )
    .await;
    let ok = ws_next_of(&mut ws, "subscribed").await;
    assert_eq!(ok["id"], 1);
    assert_eq!(ok["events"], json!(["clock.tick", "greeter.*"]));

    let tick = ws_next_of(&mut ws, "event").await;
    assert_eq!(
        (tick["service"].as_str(), tick["event_type"].as_str()),
        (Some("clock"), Some("tick")),
        "{tick}"
    );
    assert!(tick["payload"]["n"].is_u64());

    ws_send(&mut ws, json!({"type": "call", "id": "c1", "service": "greeter", "method": "hello", "args": ["Ann"]})).await;
    // The greeted event may come before or after the result.
    let (mut result, mut greeted) = (None, None);
    while result.is_none() || greeted.is_none() {
        let frame = ws_next(&mut ws).await;
        match frame["type"].as_str() {
            Some("result") => result = Some(frame),
            Some("event") if frame["service"] == "greeter" => greeted = Some(frame),
            _ => {}
        }
    }
    assert_eq!(
        result.unwrap(),
        json!({"type": "result", "id": "c1", "result": "Hello, Ann!"})
    );
    let greeted = greeted.unwrap();
    assert_eq!(greeted["event_type"], "greeted");
    assert_eq!(greeted["payload"], json!({"name": "Ann"}));

    ws_send(
        &mut ws,
        json!({"type": "call", "id": 7, "service": "greeter", "method": "nope"}),
    )
    .await;
    let err = ws_next_of(&mut ws, "error").await;
    assert_eq!(err["id"], 7);
    assert_eq!(err["error"]["type"], "MethodNotFound");
    assert_eq!(err["error"]["status"], 404);

    ws.send(tokio_tungstenite::tungstenite::Message::text("{not json"))
        .await
        .unwrap();
    assert_eq!(
        ws_next_of(&mut ws, "error").await["error"]["type"],
        "MalformedFrame"
    );
    ws_send(&mut ws, json!({"type": "teleport", "id": 9})).await;
    let err = ws_next_of(&mut ws, "error").await;
    assert_eq!(
        (err["id"].clone(), err["error"]["type"].clone()),
        (json!(9), json!("MalformedFrame"))
    );
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 10, "events": ["*.tick"]}),
    )
    .await;
    assert_eq!(
        ws_next_of(&mut ws, "error").await["error"]["type"],
        "BadRequest"
    );

    // Still open.
    ws_send(&mut ws, json!({"type": "ping", "id": 11})).await;
    assert_eq!(ws_next_of(&mut ws, "pong").await["id"], 11);

    // Unsubscribe: no more ticks (beyond those already queued).
    ws_send(
        &mut ws,
        json!({"type": "unsubscribe", "id": 12, "events": ["clock.tick", "greeter.*"]}),
    )
    .await;
    ws_next_of(&mut ws, "unsubscribed").await;
    assert!(gw.state.bridge().bindings().await.is_empty());
    ws_send(&mut ws, json!({"type": "ping", "id": 13})).await;
    ws_next_of(&mut ws, "pong").await;
    let quiet = tokio::time::timeout(Duration::from_millis(1500), ws_next(&mut ws)).await;
    assert!(quiet.is_err(), "got {quiet:?} after unsubscribing");
    gw.stop().await;
}

// ===== 4. SSE =====

#[tokio::test]
async fn server_sent_events_stream_subscribed_events() {
    let gw = Gw::start("").await;
    let addr = gw.serve().await;
    let response = reqwest::get(format!(
        "http://{addr}/events?subscribe=greeter.greeted,clock.tick"
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let called = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        reqwest::get(format!("http://{addr}/hello/Sse"))
            .await
            .unwrap()
            .status()
    });
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(text.contains(r#""event_type":"greeted""#) && text.contains(r#""event_type":"tick""#)) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: subscribed\n"), "{text}");
    assert!(text.contains(r#"data: {"type":"event","service":"greeter","event_type":"greeted","payload":{"name":"Sse"}}"#), "{text}");
    assert_eq!(called.await.unwrap(), 200);
    let (s, v) = gw.get("/events?subscribe=nodot").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    gw.stop().await;
}

// ===== 5. the bridge =====

#[tokio::test]
async fn bridge_bindings_are_reference_counted() {
    let gw = Gw::start("").await;
    let addr = gw.serve().await;
    let mut a = ws_connect(addr, "").await;
    let mut b = ws_connect(addr, "").await;
    for ws in [&mut a, &mut b] {
        ws_send(
            ws,
            json!({"type": "subscribe", "events": ["greeter.greeted"]}),
        )
        .await;
        ws_next_of(ws, "subscribed").await;
    }
    let pattern = EventPattern::parse("greeter.greeted").unwrap();
    assert_eq!(
        gw.state.bridge().bindings().await,
        vec![(pattern.clone(), 2)]
    );
    drop(a);
    eventually("one binding left", || async {
        gw.state.bridge().bindings().await == vec![(pattern.clone(), 1)]
    })
    .await;
    // Still delivered to b.
    gw.get("/hello/B").await;
    assert_eq!(ws_next_of(&mut b, "event").await["payload"]["name"], "B");
    drop(b);
    eventually("no binding left", || async {
        gw.state.bridge().bindings().await.is_empty()
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn slow_clients_lose_oldest_events_or_are_disconnected() {
    for (policy, yaml) in [
        (SlowClient::DropOldest, "client_queue: 3"),
        (
            SlowClient::Disconnect,
            "{client_queue: 3, slow_client: disconnect}",
        ),
    ] {
        let gw = Gw::start(yaml).await;
        let bridge = gw.state.bridge().clone();
        let pattern = EventPattern::parse("bench.e").unwrap();
        let slow = bridge.client();
        let fast = bridge.client();
        bridge.subscribe(&slow, &pattern).await.unwrap();
        bridge.subscribe(&fast, &pattern).await.unwrap();
        let mut got = Vec::new();
        for i in 0..10 {
            bridge.fan_out("bench", "e", format!("{i}").as_bytes());
            // The fast client keeps up.
            assert!(fast.next_batch(&mut got).await);
        }
        assert_eq!(got.len(), 10);
        let mut batch = Vec::new();
        match policy {
            SlowClient::DropOldest => {
                assert!(slow.next_batch(&mut batch).await);
                let texts: Vec<&str> = batch.iter().map(|t| t.as_str()).collect();
                assert_eq!(texts[0], r#"{"type":"dropped","count":7}"#);
                assert_eq!(texts[1..].len(), 3);
                assert!(texts[3].ends_with(r#""payload":9}"#), "{texts:?}");
            }
            SlowClient::Disconnect => assert!(!slow.next_batch(&mut batch).await),
        }
        let metrics = gw.get("/metrics").await.1.as_str().unwrap().to_owned();
        assert!(
            metrics.contains("enoki_gateway_events_dropped_total"),
            "{metrics}"
        );
        gw.stop().await;
    }
}

// ===== 6. the page =====

#[tokio::test]
async fn the_page_and_info_are_served() {
    let gw = Gw::start("").await;
    let (s, page) = gw.get("/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.as_str()
            .unwrap()
            .contains("<title>enoki gateway</title>")
    );
    assert_eq!(gw.get("/app.js").await.0, StatusCode::OK);
    let (s, info) = gw.get("/api/info").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        info["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == "/hello/{name}" && r["rpc"] == "greeter.hello")
    );
    assert!(
        info["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "greeter")
    );
    gw.stop().await;
}

// ===== 7. layers, health, metrics, openapi =====

#[tokio::test]
async fn request_ids_are_generated_returned_and_passed_on() {
    let gw = Gw::start("").await;
    let (_, headers, v) = gw
        .request(
            Request::post("/rpc/testing/context")
                .header("x-request-id", "req-42")
                .header("accept-language", "fr-CH, fr;q=0.9")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(v["request_id"], "req-42", "{v}");
    assert_eq!(v["language"], "fr-CH");
    let (_, headers, v) = gw
        .request(
            Request::post("/rpc/testing/context")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(v["request_id"], id);
    gw.stop().await;
}

#[tokio::test]
async fn cors_compression_and_load_shedding() {
    let gw = Gw::start(
        "{cors: {allow_origins: ['http://app.example']}, concurrency_limit: 1, retry_after: 7}",
    )
    .await;
    let (s, h, _) = gw
        .request(
            Request::options("/hello/x")
                .header("origin", "http://app.example")
                .header("access-control-request-method", "GET")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(s.is_success(), "{s}");
    assert_eq!(h["access-control-allow-origin"], "http://app.example");
    let response = tower::ServiceExt::oneshot(
        gw.app.clone(),
        Request::get("/openapi.json")
            .header("accept-encoding", "gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");

    let addr = gw.serve().await;
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://{addr}/rpc/testing/sleep"))
            .json(&json!({"args": [1.0]}))
            .send()
            .await
            .unwrap()
            .status()
    });
    // The slow call holds the gateway's one permit once its worker runs.
    let testing = gw.runner.container("testing").expect("the testing service");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while testing.running_workers() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow call never reached its worker"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (s, h, v) = gw
        .request(Request::get("/hello/x").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["type"], "Overloaded");
    assert_eq!(h["retry-after"], "7");
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(gw.get("/hello/x").await.0, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn request_timeout_is_504() {
    let gw = Gw::start("{request_timeout: 0.3, rpc_timeout: 5}").await;
    let (s, v) = gw
        .post_json("/rpc/testing/sleep", json!({"args": [2.0]}))
        .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert_eq!(v["error"]["type"], "RequestTimeout");
    gw.stop().await;
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let gw = Gw::start("").await;
    assert_eq!(
        gw.get("/healthz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (s, v) = gw.get("/readyz").await;
    assert_eq!((s, v["ready"].clone()), (StatusCode::OK, json!(true)));
    gw.state.set_services_ready(false);
    assert_eq!(gw.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    gw.state.set_services_ready(true);

    gw.get("/hello/M").await;
    gw.post_json("/rpc/nosuch/x", json!({})).await;
    let addr = gw.serve().await;
    let _ws = ws_connect(addr, "").await;
    let (_, metrics) = gw.get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    for needle in [
        r#"enoki_gateway_http_requests_total{route="/hello/{name}",method="GET",status="200"} 1"#,
        r#"enoki_gateway_http_requests_total{route="/rpc/{service}/{method}",method="POST",status="404"} 1"#,
        r#"enoki_gateway_rpc_duration_seconds_bucket{service="greeter",method="hello",outcome="ok",le="#,
        "enoki_gateway_ws_clients 1",
        "enoki_gateway_sse_clients 0",
        "enoki_gateway_events_forwarded_total",
    ] {
        assert!(metrics.contains(needle), "no {needle} in\n{metrics}");
    }

    let (s, doc) = gw.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["info"]["title"], "enoki gateway");
    let hello = &doc["paths"]["/hello/{name}"]["get"];
    assert_eq!(hello["parameters"][0]["name"], "name");
    assert!(
        doc["paths"]["/add"]["post"]["responses"]["201"].is_object(),
        "{doc}"
    );
    assert_eq!(
        doc["paths"]["/add/{a}/{b}"]["get"]["parameters"][0]["schema"]["type"],
        "integer"
    );
    assert!(doc["paths"]["/rpc/{service}/{method}"]["post"].is_object());
    gw.stop().await;
}

// ===== 8. auth =====

const AUTH: &str = r#"
auth:
  enabled: true
  jwt_secret: s3cret
  api_keys: {key-alice: alice, key-bob: bob}
  default: authenticated
  routes:
    - {path: "/hello/*", allow: public}
    - {path: "/rpc/manual_service/*", users: [alice]}
    - {path: "/ws", allow: public}
  events:
    - {pattern: "clock.*", allow: public}
    - {pattern: "greeter.*", users: [alice]}
"#;

#[tokio::test]
async fn auth_tokens_rules_and_user_id() {
    let gw = Gw::start(AUTH).await;
    let with = |token: &str, uri: &str| {
        Request::post(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(gw.get("/hello/anyone").await.0, StatusCode::OK);
    assert_eq!(gw.get("/healthz").await.0, StatusCode::OK);
    let (s, v) = gw.post_json("/rpc/testing/context", json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["type"], "Unauthorized");
    let (s, _, v) = gw.request(with("wrong", "/rpc/testing/context")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, _, v) = gw.request(with("key-bob", "/rpc/testing/context")).await;
    assert_eq!((s, v["user_id"].clone()), (StatusCode::OK, json!("bob")));
    let (s, _, v) = gw
        .request(with("key-bob", "/rpc/manual_service/whoami"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["type"], "Forbidden");

    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"s3cret"),
    )
    .unwrap();
    let (s, _, v) = gw.request(with(&jwt, "/rpc/manual_service/whoami")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["context_data"]["user_id"], "alice");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice"}),
        &jsonwebtoken::EncodingKey::from_secret(b"other"),
    )
    .unwrap();
    assert_eq!(
        gw.request(with(&forged, "/rpc/testing/context")).await.0,
        StatusCode::UNAUTHORIZED
    );

    // WebSocket: public to connect; subscriptions and calls follow the rules.
    let addr = gw.serve().await;
    let mut ws = ws_connect(addr, "").await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "events": ["greeter.*"]}),
    )
    .await;
    let err = ws_next_of(&mut ws, "error").await;
    assert_eq!(
        (err["id"].clone(), err["error"]["type"].clone()),
        (json!(1), json!("Unauthorized"))
    );
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 2, "events": ["clock.tick"]}),
    )
    .await;
    ws_next_of(&mut ws, "subscribed").await;
    ws_send(
        &mut ws,
        json!({"type": "call", "id": 3, "service": "testing", "method": "context"}),
    )
    .await;
    assert_eq!(ws_next_of(&mut ws, "error").await["error"]["status"], 401);
    let mut bob = ws_connect(addr, "?token=key-bob").await;
    ws_send(
        &mut bob,
        json!({"type": "subscribe", "id": 1, "events": ["greeter.*"]}),
    )
    .await;
    assert_eq!(
        ws_next_of(&mut bob, "error").await["error"]["type"],
        "Forbidden"
    );
    ws_send(
        &mut bob,
        json!({"type": "call", "id": 2, "service": "testing", "method": "context"}),
    )
    .await;
    assert_eq!(
        ws_next_of(&mut bob, "result").await["result"]["user_id"],
        "bob"
    );
    let mut alice = ws_connect(addr, &format!("?token={jwt}")).await;
    ws_send(
        &mut alice,
        json!({"type": "subscribe", "id": 1, "events": ["greeter.*"]}),
    )
    .await;
    ws_next_of(&mut alice, "subscribed").await;
    // SSE too.
    let (s, v) = gw
        .get("/events?subscribe=greeter.greeted&token=key-bob")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    gw.stop().await;
}

// ===== 9. modes and graceful shutdown =====

#[tokio::test]
async fn run_embeds_services_and_shuts_down_gracefully() {
    let args = GatewayArgs {
        listen: "127.0.0.1:0".into(),
        routes: Some(routes_dir()),
        static_dir: "no-such-dir".into(),
        ..Default::default()
    };
    let mut gateway = Served::start(args, Settings::new()).await;
    let addr = gateway.addr;
    let base = format!("http://{addr}");
    assert_eq!(
        reqwest::get(format!("{base}/hello/Run"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        r#""Hello, Run!""#
    );
    // /metrics shows the embedded services' metrics after the gateway's.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for wants in [
        "enoki_gateway_http_requests_total",
        r#"enoki_entrypoint_handled_total{service="greeter",entrypoint="hello",outcome="ok"} 1"#,
        r#"enoki_max_workers{service="greeter"} 10"#,
        r#"enoki_queue_messages{service="greeter",queue="rpc-greeter"} 0"#,
    ] {
        assert!(metrics.contains(wants), "{wants} not in\n{metrics}");
    }
    // /asyncapi.json: the embedded services' channels, operations and
    // message schemas.
    let asyncapi: Value = reqwest::get(format!("{base}/asyncapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(asyncapi["asyncapi"], "3.0.0");
    assert_eq!(
        asyncapi["channels"]["rpc-greeter"]["address"],
        "rpc-greeter"
    );
    let hello = &asyncapi["operations"]["greeter_hello"];
    assert_eq!(hello["action"], "receive", "{asyncapi}");
    assert_eq!(hello["reply"]["channel"]["$ref"], "#/channels/rpc_replies");
    let request = &asyncapi["components"]["messages"]["greeter_hello_request"]["payload"];
    assert_eq!(request["properties"]["kwargs"]["required"], json!(["name"]));
    #[cfg(feature = "schemars")]
    assert_eq!(
        request["properties"]["kwargs"]["properties"]["name"],
        json!({"type": "string"})
    );
    let greeted = &asyncapi["channels"]["greeter_events_greeted"];
    assert_eq!(greeted["address"], "greeted", "{asyncapi}");
    assert_eq!(
        greeted["bindings"]["amqp"]["exchange"]["name"],
        "greeter.events"
    );
    assert_eq!(
        asyncapi["operations"]["listener_on_greeted_pool"]["channel"]["$ref"],
        "#/channels/greeter_events_greeted"
    );
    // /openapi.json uses the same schemas for the routes' parameters,
    // bodies and results.
    let openapi: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    #[cfg(feature = "schemars")]
    {
        let hello = &openapi["paths"]["/hello/{name}"]["get"];
        assert_eq!(
            hello["responses"]["200"]["content"]["application/json"]["schema"],
            json!({"type": "string"}),
            "{hello}"
        );
        assert_eq!(hello["parameters"][0]["schema"], json!({"type": "string"}));
    }
    // A method without schemas (a hand-written Service) keeps any JSON.
    assert!(
        openapi["paths"]["/add/{a}/{b}"]["get"]["parameters"][0]["schema"]["type"] == "integer",
        "the route's int conversion stays"
    );
    // The built-in page when there is no static directory.
    assert!(
        reqwest::get(&base)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("enoki gateway")
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let mut ws = ws_connect(addr, "").await;
    let slow = tokio::spawn({
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/rpc/testing/sleep"))
                .json(&json!({"args": [0.8]}))
                .send()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gateway.signal_stop();
    // The in-flight request finishes.
    let response = slow.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "0.8");
    // WebSocket clients are told.
    let close = ws_next_of(&mut ws, "closed").await;
    assert!(
        close["frame"].as_str().unwrap().contains("1001")
            || close["frame"].as_str().unwrap().contains("Away"),
        "{close}"
    );
    gateway.stop().await.unwrap();
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}

/// `/readyz` follows the broker connection, not only the embedded services.
#[tokio::test]
async fn readyz_is_unavailable_once_the_broker_connection_is_gone() {
    let gw = Gw::start("").await;
    assert_eq!(gw.get("/readyz").await.0, StatusCode::OK);
    gw.transport.close().await;
    let (status, body) = gw.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["broker"], json!(false), "{body}");
}
