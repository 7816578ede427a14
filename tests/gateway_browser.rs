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

use enoki::gateway::GatewayArgs;
use enoki::prelude::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
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

/// The cards that are wider inside than they show (`scrollWidth >
/// clientWidth`), and whether the page itself scrolls sideways.
const OVERFLOW: &str = r#"JSON.stringify({
    cards: [...document.querySelectorAll('.card')].filter(c => !c.hidden)
        .filter(c => c.scrollWidth > c.clientWidth).map(c => `${c.id}: ${c.scrollWidth} > ${c.clientWidth}`),
    page: document.documentElement.scrollWidth > window.innerWidth
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_calls_greeter_and_shows_live_events_and_load() {
    let Some(binary) = chromium() else { return };
    // The gateway as `enoki gateway` runs it: every service embedded, their
    // metrics in /metrics.
    let args = GatewayArgs {
        listen: "127.0.0.1:0".into(),
        routes: Some(support::routes_dir()),
        static_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static"),
        ..Default::default()
    };
    let gateway = support::Served::start(args, Settings::new()).await;
    let addr = gateway.addr;
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
    // Each service with its methods, and their summaries from the schemas.
    let greeter = cdp.wait_for(&session, "the greeter's card",
        "document.querySelector('.service[data-service=\"greeter\"] button[data-method=\"hello\"]') && document.querySelector('.service[data-service=\"greeter\"]').textContent").await;
    assert!(
        greeter.as_str().unwrap().contains("Hello, {name}!"),
        "the method's doc comment: {greeter}"
    );

    // Try it: picking a method builds a field per parameter.
    cdp.eval(
        &session,
        "document.querySelector('.service[data-service=\"greeter\"] button[data-method=\"hello\"]').click(); true",
    )
    .await;
    let field = cdp
        .wait_for(
            &session,
            "the name field",
            "document.querySelector('#call-params input[data-param=\"name\"]')?.dataset.type",
        )
        .await;
    #[cfg(feature = "schemars")]
    assert_eq!(field, json!("string"), "from the schema");
    let _ = field;
    cdp.eval(
        &session,
        r#"
        const name = document.querySelector('#call-params input[data-param="name"]');
        name.value = 'Browser';
        name.dispatchEvent(new Event('input'));
        document.getElementById('call-submit').click();
        true"#,
    )
    .await;
    let result = cdp.wait_for(&session, "the call's result",
        "document.getElementById('call-result').className.includes('ok') && document.getElementById('call-result').textContent").await;
    assert_eq!(result, json!("\"Hello, Browser!\""));
    assert_eq!(
        cdp.eval(&session, "document.getElementById('call-kwargs').value")
            .await,
        json!(r#"{"name":"Browser"}"#)
    );

    let greeted = cdp.wait_for(&session, "the greeted event",
        "[...document.querySelectorAll('#events li.event[data-source=\"greeter.greeted\"]')].map(e => e.textContent).join('\\n')").await;
    assert!(greeted.as_str().unwrap().contains("Browser"), "{greeted}");
    let ticks = cdp.wait_for(&session, "two clock ticks",
        "document.querySelectorAll('#events li.event[data-source=\"clock.tick\"]').length >= 2 && document.querySelector('#events li.event[data-source=\"clock.tick\"]').textContent").await;
    assert!(ticks.as_str().unwrap().contains("\"n\":"), "{ticks}");
    // A rate per event type.
    let rate = cdp.wait_for(&session, "the clock's rate",
        "(() => { const row = document.querySelector('#event-rates tr[data-source=\"clock.tick\"]'); return row && Number(row.children[2].textContent) >= 2 && Number(row.children[1].textContent) > 0 && row.textContent; })()").await;
    assert!(rate.as_str().unwrap().contains("clock.tick"), "{rate}");

    // Pause holds new events back (and counts them); resume shows them.
    let listed = cdp
        .eval(
            &session,
            "document.getElementById('events-pause').click(); document.querySelectorAll('#events li.event').length",
        )
        .await;
    let held = cdp.wait_for(&session, "events held while paused",
        "(() => { const n = parseInt(document.getElementById('events-paused').textContent); return n >= 1 && n; })()").await;
    assert!(held.as_u64().unwrap() >= 1, "{held}");
    assert_eq!(
        cdp.eval(
            &session,
            "document.querySelectorAll('#events li.event').length"
        )
        .await,
        listed,
        "nothing listed while paused"
    );
    let resumed = cdp
        .eval(
            &session,
            "document.getElementById('events-pause').click(); document.querySelectorAll('#events li.event').length",
        )
        .await;
    assert!(
        resumed.as_u64().unwrap() >= listed.as_u64().unwrap() + held.as_u64().unwrap(),
        "{resumed} listed after resuming, {listed} before, {held} held"
    );

    // The greeter's load, from the service metrics in /metrics.
    let load = cdp.wait_for(&session, "the greeter's load",
        "(() => { const load = document.querySelector('.service[data-service=\"greeter\"] .load'); return Number(load.dataset.handled) >= 1 && load.textContent; })()").await;
    assert!(load.as_str().unwrap().contains("workers 0/10"), "{load}");
    assert!(load.as_str().unwrap().contains("calls/s"), "{load}");

    // An error shows as one.
    cdp.eval(
        &session,
        r#"
        document.getElementById('call-method').value = 'nosuch';
        document.getElementById('call-method').dispatchEvent(new Event('change'));
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
    assert_eq!(
        cdp.eval(
            &session,
            "document.getElementById('call-params').children.length"
        )
        .await,
        json!(0),
        "no fields for an unknown method"
    );

    // Nothing overflows its card, on a desktop or on a phone; on a desktop
    // the try-it form and the events sit side by side.
    for (width, side_by_side) in [(1400, true), (400, false)] {
        cdp.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        let overflow = cdp
            .wait_for(
                &session,
                "the layout at the new width",
                &format!("window.innerWidth === {width} && {OVERFLOW}"),
            )
            .await;
        let overflow: Value = serde_json::from_str(overflow.as_str().unwrap()).unwrap();
        assert_eq!(
            overflow,
            json!({"cards": [], "page": false}),
            "at {width} px"
        );
        let beside = cdp
            .eval(
                &session,
                "document.getElementById('call-section').offsetTop === document.getElementById('events-section').offsetTop",
            )
            .await;
        assert_eq!(beside, json!(side_by_side), "at {width} px");
    }
    gateway.stop().await.unwrap();
}
