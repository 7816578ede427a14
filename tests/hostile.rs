//! Hostile input against a running gateway: what once crashed it or got
//! past its auth rules, and the bounds that keep it up. Each defect has its
//! regression test here.

mod common;
#[path = "gateway/support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One raw HTTP/1.1 request over its own connection, exactly as written
/// (no client library to normalise the path); the status and the body.
async fn raw_http(addr: SocketAddr, method: &str, target: &str, token: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("a response within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

// ===== defect 1: one WebSocket frame aborted the process =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_of_many_hashes_is_refused_not_a_stack_overflow() {
    let gw = Gw::start("").await;
    let addr = gw.serve().await;
    let mut ws = ws_connect(addr, "").await;
    // About 100 KB of `#` words: once a stack overflow that aborted the
    // gateway, now an error frame.
    let pattern = format!("clock{}", ".#".repeat(50_000));
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "events": [pattern]}),
    )
    .await;
    let err = ws_next_of(&mut ws, "error").await;
    assert_eq!(err["id"], 1);
    assert_eq!(err["error"]["status"], 400);
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("longer than 255 bytes"), "{message}");

    // The most `#`s that fit in 255 bytes are fine, and events still flow.
    let many = format!("clock{}", ".#".repeat(125));
    assert!(many.len() <= 255);
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 2, "events": [many]}),
    )
    .await;
    assert_eq!(ws_next_of(&mut ws, "subscribed").await["id"], 2);
    let tick = ws_next_of(&mut ws, "event").await;
    assert_eq!(tick["service"], "clock");

    // SSE: the same pattern is a 400.
    let (status, body) = gw
        .get(&format!("/events?subscribe=clock{}", ".%23".repeat(200)))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("255"));
    gw.stop().await;
}

// ===== defect 2: a percent-escape passed the auth rules =====

const AUTH: &str = r#"
auth:
  enabled: true
  api_keys: {key-alice: alice, key-bob: bob}
  default: authenticated
  routes:
    - {path: "/rpc/manual_service/*", methods: [POST], users: [alice]}
  events:
    - {pattern: "greeter.greeted", users: [alice]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_decides_on_the_target_however_the_path_spells_it() {
    let gw = Gw::start(AUTH).await;
    let addr = gw.serve().await;
    let spellings = [
        "/rpc/manual_service/whoami",
        "/rpc/manual%5Fservice/whoami",
        "/rpc/manual%5fservice/whoami",
        "/rpc/%6Danual_service/whoami",
        "/rpc/manual_service/%77hoami",
        "//rpc/manual_service/whoami",
        "/rpc//manual_service/whoami",
        "/rpc/manual_service/whoami/",
        "/rpc/manual_service//whoami",
    ];
    for target in spellings {
        let (status, body) = raw_http(addr, "POST", target, "key-bob").await;
        assert!(
            status == 403 || status == 404,
            "bob reached {target}: {status} {body}"
        );
        // Whatever routing makes of the spelling, alice gets it or a 404.
        let (status, body) = raw_http(addr, "POST", target, "key-alice").await;
        assert!(
            status == 200 || status == 404,
            "alice on {target}: {status} {body}"
        );
        if status == 200 {
            let who: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(who["context_data"]["user_id"], "alice", "{target}");
        }
    }
    // The escaped spelling routes, so it is the one that used to pass.
    let (status, _) = raw_http(addr, "POST", "/rpc/manual%5Fservice/whoami", "key-alice").await;
    assert_eq!(status, 200);

    // A WebSocket call names the target directly: the same rule.
    let mut bob = ws_connect(addr, "?token=key-bob").await;
    ws_send(
        &mut bob,
        json!({"type": "call", "id": 1, "service": "manual_service", "method": "whoami"}),
    )
    .await;
    assert_eq!(ws_next_of(&mut bob, "error").await["error"]["status"], 403);

    // Events: bob may subscribe to `greeter.*`, but the one event type the
    // rules keep for alice never reaches him; alice gets it.
    ws_send(
        &mut bob,
        json!({"type": "subscribe", "id": 2, "events": ["greeter.*"]}),
    )
    .await;
    ws_next_of(&mut bob, "subscribed").await;
    let mut alice = ws_connect(addr, "?token=key-alice").await;
    ws_send(
        &mut alice,
        json!({"type": "subscribe", "id": 1, "events": ["greeter.*"]}),
    )
    .await;
    ws_next_of(&mut alice, "subscribed").await;
    let (status, _) = raw_http(addr, "GET", "/hello/Eve", "key-alice").await;
    assert_eq!(status, 200);
    let event = ws_next_of(&mut alice, "event").await;
    assert_eq!(event["event_type"], "greeted");
    ws_send(&mut bob, json!({"type": "ping", "id": 3})).await;
    let next = ws_next(&mut bob).await;
    assert_eq!(
        next["type"], "pong",
        "bob saw something other than his pong: {next}"
    );
    gw.stop().await;
}

// ===== defect 3: a huge timeout panicked the session =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_call_timeouts_are_errors_and_the_session_lives_on() {
    let gw = Gw::start("").await;
    let addr = gw.serve().await;
    let mut ws = ws_connect(addr, "").await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 0, "events": ["greeter.greeted"]}),
    )
    .await;
    ws_next_of(&mut ws, "subscribed").await;
    for (id, timeout) in [
        (1, json!(1e20)),
        (2, json!(-1)),
        (3, json!(0)),
        (4, json!(3601)),
        (5, json!("soon")),
    ] {
        ws_send(
            &mut ws,
            json!({"type": "call", "id": id, "service": "greeter", "method": "hello",
                   "args": ["Ann"], "timeout": timeout}),
        )
        .await;
        let err = ws_next_of(&mut ws, "error").await;
        assert_eq!(err["id"], id, "{err}");
        assert_eq!(err["error"]["status"], 400, "{err}");
    }
    // Still alive: a call with a sane timeout answers.
    ws_send(
        &mut ws,
        json!({"type": "call", "id": 6, "service": "greeter", "method": "hello",
               "args": ["Ann"], "timeout": 5}),
    )
    .await;
    assert_eq!(ws_next_of(&mut ws, "result").await["result"], "Hello, Ann!");
    drop(ws);
    eventually("the closed session's subscription is gone", || async {
        gw.state.bridge().bindings().await.is_empty()
    })
    .await;
    gw.stop().await;
}

// ===== no input grows state without a bound =====

/// The number of series of one metric in `/metrics`.
async fn series(gw: &Gw, metric: &str) -> usize {
    let (_, text) = gw.get("/metrics").await;
    let text = text.as_str().unwrap_or_default().to_owned();
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_names_do_not_grow_the_metrics() {
    let gw = Gw::start("").await;
    let metric = "enoki_gateway_rpc_duration_seconds_count";
    gw.post_json("/rpc/greeter/hello", json!({"args": ["Ann"]}))
        .await;
    let before = series(&gw, metric).await;
    for n in 0..300 {
        let (status, _) = gw
            .post_json(&format!("/rpc/made-up-{n}/method-{n}"), json!({}))
            .await;
        assert_eq!(status, 404);
        let (status, _) = gw
            .post_json(&format!("/rpc/greeter/nosuch-{n}"), json!({}))
            .await;
        assert_eq!(status, 404);
    }
    let after = series(&gw, metric).await;
    assert!(
        after <= before + 2,
        "600 made-up targets added {} series",
        after - before
    );
    let (_, text) = gw.get("/metrics").await;
    assert!(text.as_str().unwrap().contains(r#"service="other""#));

    // Made-up HTTP methods count as `other` too.
    let http = "enoki_gateway_http_requests_total";
    let before = series(&gw, http).await;
    for n in 0..50 {
        let request = axum::http::Request::builder()
            .method(format!("BREW{n}").as_str())
            .uri("/healthz")
            .body(axum::body::Body::empty())
            .unwrap();
        gw.request(request).await;
    }
    let after = series(&gw, http).await;
    assert!(
        after <= before + 2,
        "50 methods added {} series",
        after - before
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_to_made_up_services_create_nothing() {
    let gw = Gw::start("").await;
    let addr = gw.serve().await;
    let mut ws = ws_connect(addr, "").await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "events": ["nobody-knows.x"]}),
    )
    .await;
    let err = ws_next_of(&mut ws, "error").await;
    assert_eq!(err["error"]["type"], "UnknownService", "{err}");
    assert_eq!(err["error"]["status"], 404);
    let (status, body) = gw.get("/events?subscribe=nor-this.y").await;
    assert_eq!(status, 404, "{body}");
    use enoki::transport::Transport;
    for exchange in ["nobody-knows.events", "nor-this.events"] {
        assert!(
            !gw.transport.exchange_exists(exchange).await.unwrap(),
            "{exchange} was declared for a made-up name"
        );
    }
    // A service that exists on the broker (its exchange is there) is fine.
    use enoki::transport::ExchangeSpec;
    gw.transport
        .declare_exchange(&ExchangeSpec::topic("elsewhere.events"))
        .await
        .unwrap();
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 2, "events": ["elsewhere.thing"]}),
    )
    .await;
    assert_eq!(ws_next_of(&mut ws, "subscribed").await["id"], 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_client_are_bounded() {
    let gw = Gw::start("max_subscriptions: 3").await;
    let addr = gw.serve().await;
    let mut ws = ws_connect(addr, "").await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "events": ["clock.a", "clock.b", "clock.c"]}),
    )
    .await;
    ws_next_of(&mut ws, "subscribed").await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 2, "events": ["clock.d"]}),
    )
    .await;
    let err = ws_next_of(&mut ws, "error").await;
    assert_eq!(err["error"]["type"], "TooManySubscriptions", "{err}");
    assert_eq!(err["error"]["status"], 429);
    // The same patterns again are not more subscriptions.
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 3, "events": ["clock.a"]}),
    )
    .await;
    assert_eq!(ws_next_of(&mut ws, "subscribed").await["id"], 3);
    let (status, body) = gw
        .get("/events?subscribe=clock.a,clock.b,clock.c,clock.d")
        .await;
    assert_eq!(status, 429, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn the_embedded_broker_bounds_its_queues() {
    use enoki::message::Message;
    use enoki::transport::{MemoryTransport, PublishOptions, QueueSpec, Transport};
    let transport = MemoryTransport::with_max_length(3);
    transport
        .declare_queue(&QueueSpec::durable("flood"))
        .await
        .unwrap();
    for n in 0..1000 {
        transport
            .publish(
                "",
                "flood",
                Message::json(n.to_string()),
                PublishOptions::default(),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        transport.ready_count("flood"),
        Some(3),
        "drop-head keeps the newest"
    );
    assert_eq!(
        MemoryTransport::new().connect().kind(),
        "memory",
        "the default broker is bounded too (DEFAULT_MAX_LENGTH)"
    );
    assert_eq!(enoki::transport::memory::DEFAULT_MAX_LENGTH, 100_000);
}

// ===== a panic stays where it happened =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_a_500_and_the_gateway_serves_on() {
    let gw = Gw::start("").await;
    let extra = axum::Router::new().route(
        "/boom",
        axum::routing::get(|| async {
            let parsed: Result<u8, _> = "not a number".parse::<u8>();
            parsed
                .map(|n| n.to_string())
                .unwrap_or_else(|err| panic!("this handler always panics: {err}"))
        }),
    );
    let app = enoki::gateway::router_with(gw.state.clone(), extra);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    for _ in 0..3 {
        let (status, body) = raw_http(addr, "GET", "/boom", "none").await;
        assert_eq!(status, 500, "{body}");
        let body: Value = serde_json::from_str(&body).expect("a JSON error body");
        assert_eq!(body["error"]["type"], "GatewayError");
    }
    let (status, _) = raw_http(addr, "GET", "/hello/Ann", "none").await;
    assert_eq!(status, 200, "the gateway serves on");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_vanishes_leaves_nothing_behind() {
    let gw = Gw::start("").await;
    let addr = gw.serve().await;
    let gauge = |text: &Value| {
        text.as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with("enoki_gateway_ws_clients "))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
    };
    for round in 0..3 {
        let mut ws = ws_connect(addr, "").await;
        ws_send(
            &mut ws,
            json!({"type": "subscribe", "id": round, "events": ["clock.tick", "greeter.*"]}),
        )
        .await;
        ws_next_of(&mut ws, "subscribed").await;
        assert_eq!(gauge(&gw.get("/metrics").await.1).as_deref(), Some("1"));
        // No close frame: the TCP connection just goes.
        drop(ws);
        eventually("the vanished session is cleaned up", || async {
            gw.state.bridge().bindings().await.is_empty()
                && gauge(&gw.get("/metrics").await.1).as_deref() == Some("0")
        })
        .await;
    }
    gw.stop().await;
}

// ===== tokens =====

const JWT_AUTH: &str = r#"
auth:
  enabled: true
  jwt_secret: s3cret
  default: authenticated
"#;

fn jwt(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"s3cret"),
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_must_expire_and_be_valid_now() {
    let gw = Gw::start(JWT_AUTH).await;
    let addr = gw.serve().await;
    let cases = [
        (json!({"sub": "ann", "exp": now() + 600}), 200),
        (json!({"sub": "ann"}), 401),
        (json!({"sub": "ann", "exp": now() - 600}), 401),
        (
            json!({"sub": "ann", "exp": now() + 600, "nbf": now() + 600}),
            401,
        ),
        // Within the 5 s leeway.
        (json!({"sub": "ann", "exp": now() - 2}), 200),
    ];
    for (claims, expected) in cases {
        let (status, body) =
            raw_http(addr, "POST", "/rpc/testing/context", &jwt(claims.clone())).await;
        assert_eq!(status, expected, "{claims}: {body}");
    }
    // A query token that is not even valid percent-encoding: a clear 401.
    let (status, body) =
        raw_http(addr, "GET", "/events?subscribe=clock.tick&token=%a%E9", "x").await;
    assert_eq!(status, 401, "{body}");
    gw.stop().await;

    let gw = Gw::start(&format!("{JWT_AUTH}  allow_no_exp: true\n")).await;
    let addr = gw.serve().await;
    let (status, body) = raw_http(
        addr,
        "POST",
        "/rpc/testing/context",
        &jwt(json!({"sub": "ann"})),
    )
    .await;
    assert_eq!(
        status, 200,
        "allow_no_exp accepts a token without exp: {body}"
    );
    gw.stop().await;
}

// ===== slow and many clients =====

/// Serves the gateway with `serve`, the limits a public server needs.
async fn serve_limited(gw: &Gw, limits: enoki::gateway::serve::ServeLimits) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gw.app.clone();
    let metrics = gw.state.metrics().clone();
    tokio::spawn(enoki::gateway::serve::serve(
        listener,
        app,
        limits,
        Some(metrics),
        std::future::pending(),
    ));
    addr
}

/// Whether the server closed the connection (EOF or reset) within `wait`.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_others_are_served_meanwhile() {
    let gw = Gw::start("").await;
    let addr = serve_limited(
        &gw,
        enoki::gateway::serve::ServeLimits {
            header_timeout: Duration::from_secs(1),
            max_connections: 1000,
            shutdown_grace: Duration::from_secs(1),
        },
    )
    .await;
    // 200 slowloris clients: half a request line, then silence.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /hello/Ann HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    // Meanwhile a normal client is served.
    let (status, _) = raw_http(addr, "GET", "/hello/Ann", "none").await;
    assert_eq!(status, 200);
    // The slow ones are cut off after the header timeout.
    for stream in &mut slow {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "a slowloris connection outlived the header timeout"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let gw = Gw::start("").await;
    let addr = serve_limited(
        &gw,
        enoki::gateway::serve::ServeLimits {
            header_timeout: Duration::from_secs(30),
            max_connections: 5,
            shutdown_grace: Duration::from_secs(1),
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // The server accepts in arrival order: the sixth is the one refused.
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(5)).await,
        "a sixth connection was kept"
    );
    let (_, metrics) = gw.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("enoki_gateway_connections_refused_total 1"),
        "{metrics}"
    );
    // Once one goes, a new one is served (as soon as the server has seen
    // the first one close).
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
        if response.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot came free");
        tokio::task::yield_now().await;
    }
    gw.stop().await;
}

// ===== frames and bodies nobody would send =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_broken_and_deep_frames_end_cleanly() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let gw = Gw::start("").await;
    let addr = gw.serve().await;
    let mut probe = ws_connect(addr, "").await;

    // 8 MiB in one message: the connection is closed, nothing else.
    let mut big = ws_connect(addr, "").await;
    let _ = big.send(Message::text("x".repeat(8 * 1024 * 1024))).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match big.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "an 8 MiB message did not end the connection");

    // Invalid UTF-8 in a text frame: the connection ends, the gateway lives.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    // A masked text frame of two bytes that are not UTF-8.
    stream
        .write_all(&[0x81, 0x82, 1, 2, 3, 4, 0xff ^ 1, 0xfe ^ 2])
        .await
        .unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await);

    // JSON nested 100,000 deep: an error frame, then business as usual.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    probe.send(Message::text(deep.clone())).await.unwrap();
    let err = ws_next_of(&mut probe, "error").await;
    assert_eq!(err["error"]["type"], "MalformedFrame", "{err}");
    ws_send(&mut probe, json!({"type": "ping", "id": 1})).await;
    assert_eq!(ws_next_of(&mut probe, "pong").await["id"], 1);

    // The same in a body: 400.
    let request = axum::http::Request::post("/rpc/greeter/hello")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(deep))
        .unwrap();
    let (status, _, body) = gw.request(request).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "MalformedRequest");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_times_out() {
    let gw = Gw::start("request_timeout: 1").await;
    let addr = gw.serve().await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /rpc/greeter/hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"args\": [",
        )
        .await
        .unwrap();
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut response))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("RequestTimeout"), "{text}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_holds_nothing_up() {
    let gw = Gw::start("client_queue: 16").await;
    let addr = gw.serve().await;
    // The attacker subscribes and never reads again.
    let mut idle = ws_connect(addr, "").await;
    ws_send(
        &mut idle,
        json!({"type": "subscribe", "id": 1, "events": ["greeter.*"]}),
    )
    .await;
    ws_next_of(&mut idle, "subscribed").await;
    let mut probe = ws_connect(addr, "").await;
    ws_send(
        &mut probe,
        json!({"type": "subscribe", "id": 1, "events": ["greeter.greeted"]}),
    )
    .await;
    ws_next_of(&mut probe, "subscribed").await;
    // A flood of 20,000 events of 1 KiB.
    let payload = json!({ "name": "x".repeat(1024) }).to_string();
    let bridge = gw.state.bridge().clone();
    let flood = tokio::task::spawn_blocking(move || {
        for _ in 0..20_000 {
            bridge.fan_out("greeter", "greeted", payload.as_bytes());
        }
    });
    // The probe keeps getting events while the flood runs; its own queue is
    // bounded, so it may be told it lost some.
    let mut seen = 0;
    while seen < 100 {
        let frame = ws_next(&mut probe).await;
        match frame["type"].as_str() {
            Some("event") => seen += 1,
            Some("dropped") => {}
            other => panic!("unexpected frame {other:?}: {frame}"),
        }
    }
    flood.await.unwrap();
    // And it still calls.
    ws_send(
        &mut probe,
        json!({"type": "call", "id": 2, "service": "greeter", "method": "hello", "args": ["P"]}),
    )
    .await;
    assert_eq!(
        ws_next_of(&mut probe, "result").await["result"],
        "Hello, P!"
    );
    drop(idle);
    gw.stop().await;
}

// ===== the same on RabbitMQ, where a made-up exchange would be durable =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_made_up_names_declare_nothing_and_timeouts_are_checked() {
    use enoki::gateway::GatewayArgs;
    let Some(vhost) = common::amqp::TestVhost::create() else {
        return;
    };
    let settings = enoki::Settings::from_map(
        json!({ "AMQP_URI": vhost.uri })
            .as_object()
            .unwrap()
            .clone(),
    );
    let args = GatewayArgs {
        listen: "127.0.0.1:0".into(),
        embed: vec!["greeter".into()],
        ..Default::default()
    };
    let gateway = support::Served::start(args, settings).await;
    let addr = gateway.addr;
    let exchanges = || vhost_exchanges(&vhost.name);
    let before = exchanges();

    let mut ws = ws_connect(addr, "").await;
    for (id, name) in (0..50).map(|n| (n, format!("made-up-{n}"))) {
        ws_send(
            &mut ws,
            json!({"type": "subscribe", "id": id, "events": [format!("{name}.x")]}),
        )
        .await;
        let err = ws_next_of(&mut ws, "error").await;
        assert_eq!(err["error"]["type"], "UnknownService", "{err}");
    }
    let (status, _) = raw_http(addr, "GET", "/events?subscribe=also-made-up.y", "none").await;
    assert_eq!(status, 404);
    // The embedded greeter's events are fine, and nothing new exists.
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 99, "events": ["greeter.greeted"]}),
    )
    .await;
    assert_eq!(ws_next_of(&mut ws, "subscribed").await["id"], 99);
    let after = exchanges();
    let made_up: Vec<&String> = after.iter().filter(|e| e.contains("made-up")).collect();
    assert!(
        made_up.is_empty(),
        "declared for made-up names: {made_up:?}"
    );
    assert!(after.len() <= before.len() + 1, "{before:?} -> {after:?}");

    // A huge pattern and a huge timeout: error frames, the session lives on.
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 100, "events": [format!("greeter{}", ".#".repeat(50_000))]}),
    )
    .await;
    assert_eq!(ws_next_of(&mut ws, "error").await["error"]["status"], 400);
    ws_send(
        &mut ws,
        json!({"type": "call", "id": 101, "service": "greeter", "method": "hello",
               "args": ["Ann"], "timeout": 1e20}),
    )
    .await;
    assert_eq!(ws_next_of(&mut ws, "error").await["error"]["status"], 400);
    ws_send(
        &mut ws,
        json!({"type": "call", "id": 102, "service": "greeter", "method": "hello", "args": ["Ann"]}),
    )
    .await;
    assert_eq!(ws_next_of(&mut ws, "result").await["result"], "Hello, Ann!");
    drop(ws);
    gateway.stop().await.unwrap();
}

/// The exchange names of a vhost.
fn vhost_exchanges(vhost: &str) -> Vec<String> {
    common::amqp::rabbitmqctl(&[
        "list_exchanges",
        "-q",
        "--no-table-headers",
        "-p",
        vhost,
        "name",
    ])
    .lines()
    .map(|l| l.trim().to_owned())
    .filter(|l| !l.is_empty())
    .collect()
}
