//! The gateway's own endpoints: `/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json` and `/api/info` ([`super::paths`]).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::GatewayState;

pub(crate) async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(State(state): State<GatewayState>) -> Response {
    let services = state.services_ready();
    let broker = state.broker_ready();
    let body = json!({
        "ready": services && broker,
        "services": services,
        "broker": broker,
        "transport": state.transport().kind(),
    });
    let status = if services && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

pub(crate) async fn metrics(State(state): State<GatewayState>) -> Response {
    let mut text = state.metrics().render();
    if let Some(services) = state.service_metrics() {
        text.push_str(&services.render_with_queues().await);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

pub(crate) async fn openapi(State(state): State<GatewayState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.openapi().to_owned(),
    )
        .into_response()
}

pub(crate) async fn asyncapi(State(state): State<GatewayState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.asyncapi().to_owned(),
    )
        .into_response()
}

pub(crate) async fn info(State(state): State<GatewayState>) -> impl IntoResponse {
    let routes: Vec<Value> = state
        .routes()
        .routes
        .iter()
        .map(|r| {
            json!({
                "method": r.method.as_str(),
                "path": r.path,
                "rpc": format!("{}.{}", r.service, r.rpc_method),
                "params": r.params,
                "body": r.reads_body(),
                "status": r.status.as_u16(),
                "summary": r.summary,
            })
        })
        .collect();
    axum::Json(json!({
        "name": "enoki gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "transport": state.transport().kind(),
        "routes": routes,
        "services": state.services(),
        "rpc": { "enabled": state.config().rpc.enabled, "services": state.config().rpc.services },
        "auth": state.auth().enabled(),
    }))
}
