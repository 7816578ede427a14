//! `#[http]` entrypoints: extractors in, responses out, errors as the
//! gateway's JSON; workers bounded by `max_workers` with the providers'
//! worker hooks; one web server per process shared by services; route
//! clashes that stop start-up naming both; the routes inside the gateway;
//! the `users` example's `GET /users/{id}/profile` through the binary.
//!
//! Run: `cargo test --test http`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use enoki::outcome::Outcome;
use enoki::prelude::*;
use enoki::transport::MemoryTransport;
use enoki::web::WebServer;
use serde_json::{Value, json};

// ===== a service with every kind of parameter =====

#[derive(Dependencies)]
struct Shop {
    #[dependency(Outcomes::default())]
    outcomes: Arc<parking_lot::Mutex<Vec<Result<(), String>>>>,
}

/// Records every worker's outcome, as a database session would see it.
#[derive(Default)]
struct Outcomes(Arc<parking_lot::Mutex<Vec<Result<(), String>>>>);

impl DependencyProvider for Outcomes {
    type Dependency = Arc<parking_lot::Mutex<Vec<Result<(), String>>>>;

    fn get_dependency(&self, _worker: &WorkerCtx) -> Self::Dependency {
        self.0.clone()
    }

    async fn worker_result(&self, _worker: &WorkerCtx, outcome: &Outcome) {
        let seen = match outcome {
            Ok(_) => Ok(()),
            Err(error) => Err(error.exc_type.clone()),
        };
        self.0.lock().push(seen);
    }
}

#[derive(serde::Deserialize)]
struct Page {
    limit: Option<u32>,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct NewItem {
    name: String,
}

#[service(name = "shop")]
impl Shop {
    #[http(GET, "/items/{id}")]
    async fn item(
        &self,
        Path(id): Path<u32>,
        Query(page): Query<Page>,
        headers: HeaderMap,
    ) -> Result<Json<Value>, RemoteError> {
        if id == 404 {
            return Err(RemoteError::new("NotFound", format!("no item {id}")));
        }
        let agent = headers
            .get("x-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(Json(
            json!({ "id": id, "limit": page.limit, "agent": agent }),
        ))
    }

    #[http(POST, "/items")]
    async fn create(
        &self,
        ctx: &WorkerCtx,
        Json(item): Json<NewItem>,
    ) -> (StatusCode, Json<Value>) {
        (
            StatusCode::CREATED,
            Json(json!({ "name": item.name, "by": ctx.entrypoint() })),
        )
    }

    #[http(DELETE, "/items/{id}")]
    async fn remove(&self, Path(id): Path<u32>) {
        assert!(id != 13, "unlucky");
    }

    #[http(GET, "/outcomes")]
    async fn outcomes(&self) -> Json<Vec<Value>> {
        let seen = self.outcomes.lock().clone();
        Json(
            seen.into_iter()
                .map(|o| match o {
                    Ok(()) => json!("ok"),
                    Err(e) => json!(e),
                })
                .collect(),
        )
    }

    #[rpc]
    async fn ping(&self) -> Result<String, RemoteError> {
        Ok("pong".into())
    }
}

async fn start(settings: Settings, defs: Vec<enoki::ServiceDef>) -> (ServiceRunner, WebServer) {
    let server = WebServer::new("127.0.0.1:0");
    let mut runner = ServiceRunner::new(MemoryTransport::new(), settings);
    runner.web_server(server.clone());
    for def in defs {
        runner.add(def);
    }
    runner.start().await.expect("services start");
    (runner, server)
}

/// An error with its causes, on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

#[tokio::test]
async fn extractors_in_responses_out_errors_as_json() {
    let (runner, server) = start(Settings::new(), vec![enoki::service::<Shop>()]).await;
    let base = format!("http://{}", server.local_addr().unwrap());
    let http = client();

    let (status, body) = json_of(
        http.get(format!("{base}/items/7?limit=3"))
            .header("x-agent", "test")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "id": 7, "limit": 3, "agent": "test" }));

    // A returned error answers as the gateway does.
    let (status, body) = json_of(http.get(format!("{base}/items/404")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "NotFound");
    assert_eq!(body["error"]["message"], "no item 404");

    // Rejections of the extractors are JSON 400s, not axum's plain text.
    let (status, body) = json_of(http.get(format!("{base}/items/abc")).send().await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "BadRequest");
    let (status, body) = json_of(
        http.post(format!("{base}/items"))
            .header("content-type", "application/json")
            .body("{\"nom\": 1}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("name"),
        "{body}"
    );
    let (status, body) = json_of(
        http.post(format!("{base}/items"))
            .body("{\"name\": \"hat\"}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["error"]["type"], "UnsupportedMediaType");
    // Bodies are bounded (axum's 2 MiB default).
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(3 << 20));
    let (status, _) = json_of(
        http.post(format!("{base}/items"))
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413);

    // Any IntoResponse; the worker context is there.
    let (status, body) = json_of(
        http.post(format!("{base}/items"))
            .json(&json!({ "name": "hat" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body, json!({ "name": "hat", "by": "create" }));

    // A panic is a 500 JSON answer, and the container goes on.
    let (status, _) = json_of(
        http.delete(format!("{base}/items/12"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = json_of(
        http.delete(format!("{base}/items/13"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["type"], "WorkerPanic", "{body}");

    // Unknown routes and methods.
    let (status, body) = json_of(http.get(format!("{base}/nothing")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (404, Some("NotFound"))
    );
    let response = http.put(format!("{base}/items/1")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);

    // The providers saw each worker's outcome: failures as failures
    // (`worker_result` runs after the answer, so wait for the last one).
    let mut seen = Value::Null;
    for _ in 0..200 {
        seen = json_of(http.get(format!("{base}/outcomes")).send().await.unwrap())
            .await
            .1;
        if seen.as_array().unwrap().len() >= 9 {
            break;
        }
    }
    let mut seen: Vec<String> = seen
        .as_array()
        .unwrap()
        .iter()
        .take(9)
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    let mut expected = json!([
        "ok",
        "NotFound",
        "BadRequest",
        "BadRequest",
        "UnsupportedMediaType",
        "PayloadTooLarge",
        "ok",
        "ok",
        "WorkerPanic"
    ]);
    let mut expected: Vec<String> = expected
        .as_array_mut()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(seen, expected);

    // The #[http] method is not an RPC method; the RPC one still is.
    let rpc = ClusterRpc::connect(runner.transport().clone(), &Settings::new())
        .await
        .unwrap();
    let err = rpc
        .service("shop")
        .call("item", json!([7]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("MethodNotFound"), "{err}");
    assert_eq!(
        rpc.service("shop").call("ping", json!([])).await.unwrap(),
        "pong"
    );

    // Stopped: the routes leave, the server closes.
    runner.stop().await;
    assert!(server.local_addr().is_none());
    assert!(http.get(format!("{base}/items/7")).send().await.is_err());
}

// ===== max_workers =====

/// What the slow handlers share with the test (a static: the test must
/// open the gate without a worker slot of its own).
static GATE: GateState = GateState {
    active: AtomicUsize::new(0),
    most: AtomicUsize::new(0),
    open: tokio::sync::Semaphore::const_new(0),
};

struct GateState {
    active: AtomicUsize,
    most: AtomicUsize,
    open: tokio::sync::Semaphore,
}

#[derive(Dependencies)]
struct Slow;

#[service(name = "slow")]
impl Slow {
    #[http(GET, "/slow")]
    async fn slow(&self) -> &'static str {
        let now = GATE.active.fetch_add(1, Ordering::SeqCst) + 1;
        GATE.most.fetch_max(now, Ordering::SeqCst);
        GATE.open.acquire().await.unwrap().forget();
        GATE.active.fetch_sub(1, Ordering::SeqCst);
        "done"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_workers_count_against_max_workers() {
    let settings = Settings::new().with("max_workers", 3.into());
    let (runner, server) = start(settings, vec![enoki::service::<Slow>()]).await;
    let base = format!("http://{}", server.local_addr().unwrap());
    let http = client();
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let http = http.clone();
            let url = format!("{base}/slow");
            tokio::spawn(async move { http.get(url).send().await.unwrap().text().await.unwrap() })
        })
        .collect();
    // The three slots fill up; the other five requests wait for one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while GATE.active.load(Ordering::SeqCst) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow requests never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..8 {
        GATE.open.add_permits(1);
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), "done");
    }
    assert_eq!(GATE.active.load(Ordering::SeqCst), 0);
    assert_eq!(
        GATE.most.load(Ordering::SeqCst),
        3,
        "at most max_workers (3) ran at once"
    );
    runner.stop().await;
}

// ===== one server per process, clashes =====

#[derive(Dependencies)]
struct Other;

#[service(name = "other")]
impl Other {
    #[http(GET, "/other/{name}")]
    async fn hello(&self, Path(name): Path<String>) -> String {
        format!("other says hello to {name}")
    }
}

#[derive(Dependencies)]
struct Rival;

#[service(name = "rival")]
impl Rival {
    /// `/items/{id}` in shop, with another parameter name.
    #[http(GET, "/items/{item_id}")]
    async fn item(&self, Path(id): Path<u32>) -> String {
        id.to_string()
    }
}

#[tokio::test]
async fn services_share_the_process_server() {
    let (runner, server) = start(
        Settings::new(),
        vec![enoki::service::<Shop>(), enoki::service::<Other>()],
    )
    .await;
    let base = format!("http://{}", server.local_addr().unwrap());
    let http = client();
    let other = http.get(format!("{base}/other/Ann")).send().await.unwrap();
    assert_eq!(other.text().await.unwrap(), "other says hello to Ann");
    let shop = http.get(format!("{base}/items/1")).send().await.unwrap();
    assert_eq!(shop.status().as_u16(), 200);

    // WebServer::shared: one per address in the process.
    let a = WebServer::shared("127.0.0.1:0");
    let b = WebServer::shared("127.0.0.1:0");
    let c = WebServer::shared("127.0.0.2:0");
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    let route = enoki::web::WebRoute::new(axum::http::Method::GET, "/x", "test", |_| async {
        axum::response::IntoResponse::into_response("x")
    });
    let registration = a.register(vec![route.clone()]).await.unwrap();
    assert_eq!(a.local_addr(), b.local_addr());
    let err = b
        .register(vec![route.clone()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP route clash"), "{err}");
    assert!(c.local_addr().is_none());
    registration.close().await;
    runner.stop().await;
}

#[tokio::test]
async fn a_clash_stops_start_up_naming_both_routes() {
    let server = WebServer::new("127.0.0.1:0");
    let mut runner = ServiceRunner::new(MemoryTransport::new(), Settings::new());
    runner.web_server(server.clone());
    runner.add(enoki::service::<Shop>());
    runner.add(enoki::service::<Rival>());
    let err = runner.start().await.unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains("GET /items/{id} of shop.item (#[http])")
            && text.contains("GET /items/{item_id} of rival.item (#[http])"),
        "{text}"
    );
    // Nothing was left behind: the shop's routes left with it.
    assert!(server.local_addr().is_none());

    // A bind failure names the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let mut runner = ServiceRunner::new(MemoryTransport::new(), Settings::new());
    runner.web_server(WebServer::new(&address));
    runner.add(enoki::service::<Other>());
    let err = chain(&runner.start().await.unwrap_err());
    assert!(
        err.contains(&address) && err.contains("WEB_SERVER_ADDRESS"),
        "{err}"
    );
}

// ===== inside the gateway =====

#[tokio::test]
async fn inside_the_gateway_routes_sit_beside_its_own() {
    use tower::ServiceExt;

    let transport = MemoryTransport::new();
    let mut routes = enoki::gateway::RouteTable::default();
    routes
        .add_yaml(
            "routes:\n  - {method: GET, path: '/items/{id}', rpc: shop.ping}\n",
            "test.yaml",
        )
        .unwrap();
    // The route file takes GET /items/{id}: shop's #[http] one clashes.
    let web = WebServer::mounted();
    let _state = enoki::gateway::GatewayState::builder(transport.clone())
        .routes(routes)
        .web_server(web.clone())
        .build()
        .await
        .unwrap();
    let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
    runner.web_server(web);
    runner.add(enoki::service::<Shop>());
    let err = chain(&runner.start().await.unwrap_err());
    assert!(
        err.contains("the route at test.yaml:2") && err.contains("shop.item (#[http])"),
        "{err}"
    );

    // Without the clash, both are served, behind the gateway's layers.
    let web = WebServer::mounted();
    let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
    runner.web_server(web.clone());
    runner.add(enoki::service::<Other>());
    runner.add(enoki::service::<Shop>());
    let infos = [enoki::service::<Other>(), enoki::service::<Shop>()]
        .iter()
        .map(|def| enoki::gateway::ServiceInfo::from_def(def, true))
        .collect();
    let state = enoki::gateway::GatewayState::builder(transport.clone())
        .web_server(web)
        .services(infos)
        .build()
        .await
        .unwrap();
    runner.start().await.unwrap();
    // /openapi.json lists them, with their path parameters.
    let openapi: Value = serde_json::from_str(state.openapi()).unwrap();
    let item = &openapi["paths"]["/items/{id}"];
    assert_eq!(item["get"]["summary"], "shop.item (#[http])", "{item}");
    assert_eq!(item["delete"]["summary"], "shop.remove (#[http])", "{item}");
    assert_eq!(item["get"]["parameters"][0]["name"], "id");
    assert!(openapi["paths"]["/other/{name}"]["get"].is_object());
    assert!(
        state.web_server().local_addr().is_none(),
        "mounted: never listens"
    );
    let app = enoki::gateway::router(state.clone());
    let get = |path: &str| {
        axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let response = app.clone().oneshot(get("/other/Bo")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().contains_key("x-request-id"),
        "the gateway's layers"
    );
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"other says hello to Bo");
    let response = app.clone().oneshot(get("/items/404")).await.unwrap();
    assert_eq!(response.status(), 404);
    let response = app.clone().oneshot(get("/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);
    runner.stop().await;
    state.close().await;
}

// ===== the users example, through the binary =====

#[test]
fn users_profile_through_the_gateway_and_on_its_own() {
    let dir = std::env::temp_dir().join(format!("enoki-http-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut gateway, listen) =
        common::binary::start_gateway(&dir, std::process::Stdio::null(), &[]);
    let request = |method: &str, path: &str, body: &str| {
        let raw = common::binary::http(&listen, method, path, body);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (
            status,
            serde_json::from_str::<Value>(body).unwrap_or(Value::Null),
        )
    };
    let (status, ann) = request("POST", "/users", r#"{"username": "ann"}"#);
    assert_eq!(status, 201, "{ann}");
    let (status, profile) = request("GET", &format!("/users/{}/profile", ann["id"]), "");
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["greeting"], "Hello, ann!");
    assert_eq!(profile["user"]["username"], "ann");
    let (status, body) = request("GET", "/users/424242/profile", "");
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (404, Some("NotFound"))
    );
    let (status, body) = request("GET", "/users/abc/profile", "");
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("BadRequest"))
    );
    let _ = gateway.kill();
    let _ = gateway.wait();

    // `enoki run`: the same endpoint on the process's web server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let define = format!("WEB_SERVER_ADDRESS={address}");
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_enoki"))
        .args(["run", "users", "greeter", "--define", &define])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let profile = loop {
        if std::net::TcpStream::connect(&address).is_ok() {
            let raw = common::binary::http(
                &address,
                "GET",
                &format!("/users/{}/profile", ann["id"]),
                "",
            );
            break raw;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "enoki run never listened on {address}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = run.kill();
    let _ = run.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(profile.starts_with("HTTP/1.1 200"), "{profile}");
    assert!(
        profile.contains("\"greeting\":\"Hello, ann!\""),
        "{profile}"
    );
}
