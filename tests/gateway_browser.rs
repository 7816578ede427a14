//! End to end in a real headless Chromium, driven over the Chrome DevTools
//! Protocol: open the gateway's page, call `greeter.hello` from its form,
//! see the result, see live events (clock ticks, the greeting) arrive.
//!
//! Needs `chromium` (Debian's package; `scripts/test` installs it). Without
//! it the test prints `skipped: ...`, unless `CI=true`, where it fails.
#![cfg(all(feature = "gateway", feature = "cli"))]

#[path = "gateway/support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::Gw;
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> Option<String> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Some(name.to_owned());
        }
    }
    let why = "chromium is not installed (scripts/test installs it)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true: the browser test must run)");
    }
    println!("skipped: {why}");
    None
}

/// The browser process, killed on drop, with its profile directory.
struct Browser {
    child: Child,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn launch(binary: &str) -> (Browser, String) {
    let profile = std::env::temp_dir().join(format!("enoki-chromium-{}", uuid::Uuid::new_v4()));
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(url) = line.split("DevTools listening on ").nth(1) {
                let _ = tx.send(url.trim().to_owned());
                sent = true;
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium prints its DevTools URL");
    (Browser { child, profile }, url)
}

/// A minimal CDP client on the browser's WebSocket (flattened sessions).
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Cdp {
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut frame = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            frame["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("CDP answers")
                .unwrap()
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    async fn eval(&mut self, session: &str, expression: &str) -> Value {
        let r = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    async fn wait_for(&mut self, session: &str, what: &str, expression: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.eval(session, expression).await;
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_calls_greeter_and_shows_live_events() {
    let Some(binary) = chromium() else { return };
    let gw = Gw::start("").await;
    let addr = gw.serve().await;
    let (_browser, url) = launch(&binary);
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("CDP connects");
    let mut cdp = Cdp { ws, next: 0 };
    let target = cdp
        .call(
            None,
            "Target.createTarget",
            json!({"url": format!("http://{addr}/")}),
        )
        .await;
    let attached = cdp
        .call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    let session = attached["sessionId"].as_str().unwrap().to_owned();

    cdp.wait_for(
        &session,
        "a WebSocket connection",
        "document.getElementById('ws-status')?.textContent === 'connected'",
    )
    .await;
    let routes = cdp.wait_for(&session, "the routes",
        "document.querySelector('#routes tbody')?.textContent.includes('/hello/{name}') && document.querySelector('#routes tbody').textContent").await;
    assert!(
        routes.as_str().unwrap().contains("greeter.hello"),
        "{routes}"
    );
    cdp.wait_for(
        &session,
        "the services",
        "document.getElementById('services').textContent.includes('greeter')",
    )
    .await;

    cdp.eval(
        &session,
        r#"
        document.getElementById('call-service').value = 'greeter';
        document.getElementById('call-method').value = 'hello';
        document.getElementById('call-args').value = '["Browser"]';
        document.getElementById('call-submit').click();
        true"#,
    )
    .await;
    let result = cdp.wait_for(&session, "the call's result",
        "document.getElementById('call-result').className.includes('ok') && document.getElementById('call-result').textContent").await;
    assert_eq!(result, json!("\"Hello, Browser!\""));

    let greeted = cdp.wait_for(&session, "the greeted event",
        "[...document.querySelectorAll('#events li.event[data-source=\"greeter.greeted\"]')].map(e => e.textContent).join('\\n')").await;
    assert!(greeted.as_str().unwrap().contains("Browser"), "{greeted}");
    let ticks = cdp.wait_for(&session, "two clock ticks",
        "document.querySelectorAll('#events li.event[data-source=\"clock.tick\"]').length >= 2 && document.querySelector('#events li.event[data-source=\"clock.tick\"]').textContent").await;
    assert!(ticks.as_str().unwrap().contains("\"n\":"), "{ticks}");

    // An error shows as one.
    cdp.eval(
        &session,
        r#"
        document.getElementById('call-method').value = 'nosuch';
        document.getElementById('call-submit').click();
        true"#,
    )
    .await;
    let error = cdp.wait_for(&session, "the error",
        "document.getElementById('call-result').className.includes('error') && document.getElementById('call-result').textContent").await;
    assert!(
        error.as_str().unwrap().starts_with("MethodNotFound"),
        "{error}"
    );
    gw.stop().await;
}
