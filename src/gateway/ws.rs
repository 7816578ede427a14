//! `GET /ws`: the WebSocket protocol. Every frame is a JSON text message
//! with a `type`; the full description is `static/PROTOCOL.md`.
//!
//! Client → gateway:
//! - `{"type": "subscribe", "events": ["clock.tick", "greeter.*"], "id": 1}`
//!   → `{"type": "subscribed", "id": 1, "events": [...]}`
//! - `{"type": "unsubscribe", "events": ["clock.tick"], "id": 2}`
//!   → `{"type": "unsubscribed", "id": 2, "events": [...]}`
//! - `{"type": "call", "id": "c1", "service": "greeter", "method": "hello",
//!   "args": ["Ann"], "kwargs": {}, "timeout": 5}`
//!   → `{"type": "result", "id": "c1", "result": "Hello, Ann!"}`
//! - `{"type": "ping", "id": 3}` → `{"type": "pong", "id": 3}`
//!
//! Gateway → client:
//! - `{"type": "welcome", "protocol": 1, "user_id": null}` on connect;
//! - `{"type": "event", "service": "clock", "event_type": "tick", "payload": {...}}`;
//! - `{"type": "dropped", "count": 3}` when this client was too slow and
//!   lost its oldest events;
//! - `{"type": "error", "id": ..., "error": {"type", "message", "status", ...}}`
//!   for a failed call, a refused subscription or a malformed frame (the
//!   connection stays open).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

use super::auth::Identity;
use super::bridge::{ClientQueue, EventPattern};
use super::error::ApiError;
use super::leave::{Kind, Leave};
use super::paths;
use super::protocol::ClientFrame;
use super::rate_limit::{Client, PeerAddr};
use super::rpc::{ContextData, context_data};
use super::state::GatewayState;
use crate::config::{MAX_CLIENT_SECONDS, positive_seconds};

use super::limits::{MAX_CALLS_IN_FLIGHT, MAX_MESSAGE_SIZE, SEND_TIMEOUT};

/// The upgrade handler.
pub(crate) async fn handler(
    State(state): State<GatewayState>,
    identity: Identity,
    peer: PeerAddr,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let context = context_data(&headers, identity.user());
    let user = identity.user().map(str::to_owned);
    ws.read_buffer_size(2048)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(MAX_MESSAGE_SIZE)
        .max_frame_size(MAX_MESSAGE_SIZE)
        .on_upgrade(move |socket| session(state, socket, user, peer, context))
        .into_response()
}

fn frame(value: &Value) -> Utf8Bytes {
    Utf8Bytes::from(value.to_string())
}

fn error_frame(id: &Value, error: &ApiError) -> Utf8Bytes {
    let mut body = error.body();
    body["type"] = json!("error");
    body["id"] = id.clone();
    frame(&body)
}

async fn session(
    state: GatewayState,
    socket: WebSocket,
    user: Option<String>,
    peer: PeerAddr,
    context: ContextData,
) {
    let shutdown = state.shutdown_token().clone();
    let client = state.event_client(user.as_deref());
    // Whatever ends the session (the client, the gateway, a panic), its
    // subscriptions and its count in the gauge go with it.
    let _leave = Leave::new(&state, &client, Kind::WebSocket);
    client.push_control(frame(
        &json!({ "type": "welcome", "protocol": 1, "user_id": user }),
    ));
    let calls = Arc::new(AtomicUsize::new(0));
    let (mut sink, mut stream) = socket.split();
    let mut batch: Vec<Utf8Bytes> = Vec::new();
    let close = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Some((1001, "the gateway is shutting down")),
            alive = client.next_batch(&mut batch) => {
                if !alive {
                    break Some((1008, "too slow: the event queue overflowed"));
                }
                // A client that stops reading fills its TCP window; after
                // SEND_TIMEOUT without progress it is disconnected, so it
                // holds neither this task nor a graceful shutdown.
                let send = async {
                    for text in batch.drain(..) {
                        sink.feed(Message::Text(text)).await?;
                    }
                    sink.flush().await
                };
                let mut send = std::pin::pin!(send);
                // Almost always written at once: the timer (a wheel entry
                // per batch) only for a send that has to wait.
                let sent = match futures::poll!(send.as_mut()) {
                    std::task::Poll::Ready(result) => Ok(result),
                    std::task::Poll::Pending => tokio::time::timeout(SEND_TIMEOUT, send).await,
                };
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => {
                        tracing::info!("a WebSocket client stopped reading; disconnected");
                        break None;
                    }
                }
            }
            message = stream.next() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                Some(Ok(Message::Text(text))) => {
                    on_frame(&state, &client, &calls, user.as_deref(), peer, &context, text.as_str()).await;
                }
                Some(Ok(Message::Binary(_))) => client.push_control(error_frame(
                    &Value::Null,
                    &ApiError::bad_request("binary frames are not supported; send JSON text"),
                )),
                Some(Ok(_)) => {}
            },
        }
    };
    if let Some((code, reason)) = close {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            }))),
        )
        .await;
    }
}

fn patterns(events: &[String]) -> Result<Vec<EventPattern>, ApiError> {
    if events.is_empty() {
        return Err(ApiError::bad_request("`events` is empty"));
    }
    events
        .iter()
        .map(|e| EventPattern::parse(e).map_err(|err| ApiError::bad_request(err.to_string())))
        .collect()
}

async fn on_frame(
    state: &GatewayState,
    client: &Arc<ClientQueue>,
    calls: &Arc<AtomicUsize>,
    user: Option<&str>,
    peer: PeerAddr,
    context: &ContextData,
    text: &str,
) {
    let parsed = match ClientFrame::parse(text) {
        Ok(f) => f,
        Err(err) => {
            client.push_control(error_frame(
                &err.id,
                &ApiError::new(StatusCode::BAD_REQUEST, "MalformedFrame", err.message),
            ));
            return;
        }
    };
    match parsed {
        ClientFrame::Ping { id } => client.push_control(frame(&json!({"type": "pong", "id": id}))),
        ClientFrame::Subscribe { id, events } => {
            let result = async {
                let patterns = patterns(&events)?;
                for p in &patterns {
                    state.auth().check_event(&p.to_string(), user)?;
                }
                let max = state.config().max_subscriptions;
                let mut held = client.subscriptions();
                held.extend(patterns.iter().cloned());
                held.sort_by_key(ToString::to_string);
                held.dedup();
                if held.len() > max {
                    return Err(ApiError::too_many_subscriptions(max));
                }
                for p in &patterns {
                    match state.event_source_known(&p.service).await {
                        Ok(true) => {}
                        Ok(false) => return Err(ApiError::unknown_event_source(&p.service)),
                        Err(err) => return Err(ApiError::subscribe_failed(p, &err)),
                    }
                }
                for p in &patterns {
                    state
                        .bridge()
                        .subscribe(client, p)
                        .await
                        .map_err(|err| ApiError::subscribe_failed(p, &err))?;
                }
                Ok::<_, ApiError>(patterns)
            }
            .await;
            client.push_control(match result {
                Ok(p) => frame(&json!({
                    "type": "subscribed",
                    "id": id,
                    "events": p.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })),
                Err(err) => error_frame(&id, &err),
            });
        }
        ClientFrame::Unsubscribe { id, events } => {
            let result = async {
                let patterns = patterns(&events)?;
                for p in &patterns {
                    let _ = state.bridge().unsubscribe(client, p).await;
                }
                Ok::<_, ApiError>(patterns)
            }
            .await;
            client.push_control(match result {
                Ok(p) => frame(&json!({
                    "type": "unsubscribed",
                    "id": id,
                    "events": p.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })),
                Err(err) => error_frame(&id, &err),
            });
        }
        ClientFrame::Call {
            id,
            service,
            method,
            args,
            kwargs,
            timeout,
        } => {
            let refuse = |err: ApiError| {
                client.push_control(error_frame(&id, &err.target(&service, &method)))
            };
            if !state.config().rpc.allows(&service) {
                return refuse(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "UnknownService",
                    format!("service `{service}` is not exposed by this gateway"),
                ));
            }
            let path = paths::rpc(&service, &method);
            if let Err(denied) = state.auth().check_path(&Method::POST, &path, user) {
                return refuse(denied.into());
            }
            // A call is a request to the generic endpoint: its limit holds.
            if let Some(limiter) = state.rpc_limiter() {
                let caller = Client {
                    address: peer.0,
                    user,
                };
                if let Err(limited) = limiter.check(&caller) {
                    state.metrics().request_rate_limited();
                    return refuse(limited);
                }
            }
            let timeout = match timeout {
                None => state.config().rpc_timeout(),
                Some(t) => match positive_seconds("timeout", t, MAX_CLIENT_SECONDS) {
                    Ok(timeout) => timeout,
                    Err(err) => return refuse(ApiError::bad_request(err.to_string())),
                },
            };
            if !matches!(args, Value::Null | Value::Array(_)) {
                return refuse(ApiError::bad_request("`args` must be an array"));
            }
            if calls.fetch_add(1, Ordering::AcqRel) >= MAX_CALLS_IN_FLIGHT {
                calls.fetch_sub(1, Ordering::AcqRel);
                return refuse(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyCalls",
                    format!("at most {MAX_CALLS_IN_FLIGHT} calls may be in flight per connection"),
                ));
            }
            let (state, client, calls, context) = (
                state.clone(),
                client.clone(),
                calls.clone(),
                context.clone(),
            );
            tokio::spawn(async move {
                let kwargs = kwargs.unwrap_or_default();
                let args = if args.is_null() {
                    Value::Array(vec![])
                } else {
                    args
                };
                let request = crate::message::encode_request(&args, &kwargs);
                let result =
                    super::rpc::call(&state, &service, &method, request, context, timeout).await;
                calls.fetch_sub(1, Ordering::AcqRel);
                client.push_control(match result {
                    Ok(raw) => Utf8Bytes::from(format!(
                        r#"{{"type":"result","id":{},"result":{}}}"#,
                        id,
                        raw.get()
                    )),
                    Err(err) => error_frame(&id, &err),
                });
            });
        }
    }
}
