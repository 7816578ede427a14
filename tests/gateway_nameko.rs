//! The gateway in front of a Python nameko 2.14.1 service on RabbitMQ:
//! HTTP routes and the generic endpoint call it, its errors map to HTTP,
//! `user_id` from a token reaches it as context data, and its events reach
//! WebSocket clients through the gateway's own queue.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 and the nameko venv (`ENOKI_PYTHON`,
//! else `scripts/venv`). Without them it prints `skipped: ...`, unless
//! `CI=true`, where it fails.
#![cfg(all(feature = "gateway", feature = "cli", feature = "amqp"))]

mod common;
#[path = "gateway/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use enoki::gateway::cli::GatewayArgs;
use enoki::prelude::*;
use serde_json::{Value, json};
use support::{ws_connect, ws_next, ws_send};

fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true: this test must run)");
    }
    println!("skipped: {why}");
}

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENOKI_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/venv");
    match Command::new(&script).stderr(Stdio::inherit()).output() {
        Ok(out) if out.status.success() => {
            Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        }
        _ => {
            skip("nameko venv unavailable (scripts/venv failed)");
            None
        }
    }
}

struct Nameko(std::process::Child);

impl Drop for Nameko {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_fronts_a_python_nameko_service() {
    let Some(python) = python() else { return };
    let Some(vhost) = common::amqp::TestVhost::create() else {
        return;
    };
    let _nameko = Nameko(
        Command::new(&python)
            .args([
                "-m",
                "nameko",
                "run",
                "pyservice:PyGreeter",
                "--broker",
                &vhost.uri,
            ])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gateway"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nameko run starts"),
    );

    let routes = std::env::temp_dir().join(format!("{}-routes", vhost.name));
    std::fs::create_dir_all(&routes).unwrap();
    std::fs::write(
        routes.join("py.yaml"),
        "routes:\n  - method: GET\n    path: /bonjour/{name}\n    rpc: pygreeter.hello\n    kwargs: {name: path.name, punctuation: query.p}\n",
    )
    .unwrap();
    let settings = Settings::from_map(
        json!({
            "AMQP_URI": vhost.uri,
            "GATEWAY": {
                "rpc_timeout": 10,
                "auth": {"enabled": true, "api_keys": {"k-ann": "ann"}, "default": "public"},
            },
        })
        .as_object()
        .unwrap()
        .clone(),
    );
    let args = GatewayArgs {
        listen: "127.0.0.1:0".into(),
        routes: Some(routes.clone()),
        ..Default::default()
    };
    let gateway = support::Served::start(args, settings).await;
    let addr = gateway.addr;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    // Broker mode with no --embed: only Python answers; enoki's examples do not run here.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let r = http
            .get(format!("{base}/bonjour/Ann?p=%3F"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            assert_eq!(r.json::<Value>().await.unwrap(), json!("Bonjour, Ann?"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nameko never answered: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = http
        .post(format!("{base}/rpc/greeter/hello"))
        .json(&json!({"args": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "greeter is not embedded in broker mode");

    let r = http
        .post(format!("{base}/rpc/pygreeter/boom"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "ValueError");
    assert_eq!(body["error"]["message"], "boom from python");
    let r = http
        .post(format!("{base}/rpc/pygreeter/nosuch"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{base}/rpc/pygreeter/hello"))
        .json(&json!({"args": [1, 2, 3]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/rpc/pygreeter/whoami"))
        .bearer_auth("k-ann")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!("ann"));

    // Python's events reach a WebSocket client.
    let mut ws = ws_connect(addr, "").await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "events": ["pygreeter.*"]}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["type"], "subscribed");
    let r = http
        .get(format!("{base}/bonjour/Events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let event = loop {
        let frame = ws_next(&mut ws).await;
        if frame["type"] == "event" {
            break frame;
        }
    };
    assert_eq!(event["service"], "pygreeter");
    assert_eq!(event["event_type"], "greeted");
    assert_eq!(event["payload"], json!({"name": "Events", "by": "python"}));
    // The gateway's own queue is exclusive and auto-delete.
    let queues = vhost.list_queues(&["name", "exclusive", "auto_delete"]);
    assert!(
        queues
            .lines()
            .any(|l| l.starts_with("enoki-gateway-events-") && l.contains("true\ttrue")),
        "{queues}"
    );

    gateway.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&routes);
}
