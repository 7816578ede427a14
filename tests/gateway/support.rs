//! Helpers for the gateway tests: the example services plus a test service,
//! a gateway on the embedded broker, requests with `oneshot`, a real
//! listener for WebSocket and SSE.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use enoki::gateway::{GatewayConfig, GatewayState, RouteTable, router};
use enoki::prelude::*;
use enoki::transport::{MemoryTransport, Transport};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

#[path = "../../examples/clock.rs"]
pub mod clock;
#[path = "../../examples/greeter.rs"]
pub mod greeter;
#[path = "../../examples/listener.rs"]
pub mod listener;
#[path = "../../examples/manual_service.rs"]
pub mod manual_service;

/// A service for the error cases.
#[derive(Debug, Dependencies)]
pub struct Testing;

#[service(name = "testing")]
impl Testing {
    #[rpc]
    pub async fn sleep(&self, secs: f64) -> Result<f64, RemoteError> {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        Ok(secs)
    }

    #[rpc]
    pub async fn fail(&self, exc_type: String) -> Result<(), RemoteError> {
        Err(RemoteError::new(exc_type, "it failed"))
    }

    #[rpc]
    pub async fn context(&self, ctx: &WorkerCtx) -> Result<Value, RemoteError> {
        Ok(json!(ctx.context_data()))
    }
}

/// Every service the tests use.
pub fn services() -> Vec<enoki::ServiceDef> {
    vec![
        enoki::service::<greeter::Greeter>(),
        enoki::service::<listener::Listener>(),
        enoki::service::<clock::Clock>(),
        enoki::service::<manual_service::ManualService>(),
        enoki::service::<Testing>(),
    ]
}

pub fn routes_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("routes")
}

/// A gateway run as `enoki gateway` runs it (`run_until`, every service
/// of [`services`] embedded unless `settings` name a broker), on the
/// address `args` give.
pub struct Served {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<enoki::Result<()>>>,
}

impl Served {
    pub async fn start(args: enoki::gateway::GatewayArgs, settings: Settings) -> Served {
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(enoki::gateway::cli::run_until(
            args,
            settings,
            services(),
            async move {
                let _ = stop_rx.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        ));
        let addr = addr_rx.await.expect("the gateway listens");
        Served {
            addr,
            stop: Some(stop_tx),
            server: Some(server),
        }
    }

    /// Asks it to stop, as SIGTERM does.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops it and waits (at most 20 s) for the graceful shutdown.
    pub async fn stop(mut self) -> enoki::Result<()> {
        self.signal_stop();
        let server = self.server.take().expect("not stopped yet");
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("stops within 20 s")
            .expect("the server task does not panic")
    }
}

/// A gateway on a fresh embedded broker with every service running.
pub struct Gw {
    pub state: GatewayState,
    pub app: Router,
    pub transport: Arc<MemoryTransport>,
    pub runner: ServiceRunner,
}

impl Gw {
    pub async fn start(gateway_yaml: &str) -> Gw {
        let config: GatewayConfig = if gateway_yaml.is_empty() {
            GatewayConfig::default()
        } else {
            serde_yaml_ng::from_str(gateway_yaml).expect("gateway config")
        };
        let transport = MemoryTransport::new();
        let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
        for def in services() {
            runner.add(def);
        }
        runner.start().await.expect("services start");
        let state = GatewayState::builder(transport.clone())
            .config(config)
            .routes(RouteTable::load_dir(routes_dir()).expect("example routes load"))
            .static_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static"))
            .build()
            .await
            .expect("gateway builds");
        let app = router(state.clone());
        Gw {
            state,
            app,
            transport,
            runner,
        }
    }

    pub async fn request(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, value)
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (s, _, v) = self
            .request(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        (s, v)
    }

    pub async fn post_json(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self
            .request(
                Request::post(uri)
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await;
        (s, v)
    }

    /// Serves the app on 127.0.0.1:0.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = self.app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    pub async fn stop(self) {
        self.state.close().await;
        self.runner.stop().await;
        self.transport.close().await;
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws_connect(addr: SocketAddr, query: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws{query}"))
        .await
        .expect("ws connects");
    let welcome = ws_next(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

pub async fn ws_send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next JSON frame (within 10 s).
pub async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open")
            .expect("no ws error");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(frame) => {
                return json!({"type": "closed", "frame": format!("{frame:?}")});
            }
            _ => {}
        }
    }
}

/// The next frame of `kind`, skipping others (events, say).
pub async fn ws_next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = ws_next(ws).await;
        if frame["type"] == kind {
            return frame;
        }
        if frame["type"] != "event" {
            eprintln!("skipped while waiting for {kind}: {frame}");
        }
    }
}

pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn transport_dyn(t: &Arc<MemoryTransport>) -> Arc<dyn Transport> {
    t.clone()
}
