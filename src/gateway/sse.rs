//! `GET /events?subscribe=service.event_type,...`: Server-Sent Events for
//! clients that only listen.
//!
//! The first message is an `event: subscribed` with the patterns; then
//! each broker event is one unnamed message whose data is the same JSON as
//! the WebSocket's event frames (`{"type": "event", "service", "event_type",
//! "payload"}`), so `EventSource.onmessage` sees them all. A client too slow
//! for its queue gets a `{"type": "dropped", "count": n}` message (or is
//! disconnected, per `GATEWAY.slow_client`). Keep-alive comments are sent
//! every `GATEWAY.sse_keepalive` seconds.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use super::auth::Identity;
use super::bridge::{ClientQueue, EventPattern};
use super::error::ApiError;
use super::leave::{Kind, Leave};
use super::state::GatewayState;

#[derive(Debug, Deserialize)]
pub(crate) struct SseQuery {
    #[serde(default)]
    subscribe: String,
}

/// The SSE handler.
pub(crate) async fn handler(
    State(state): State<GatewayState>,
    Query(query): Query<SseQuery>,
    identity: Identity,
) -> Response {
    let max = state.config().max_subscriptions;
    let asked: Vec<&str> = query
        .subscribe
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .take(max + 1)
        .collect();
    if asked.len() > max {
        return ApiError::too_many_subscriptions(max).into_response();
    }
    let patterns: Result<Vec<EventPattern>, ApiError> = asked
        .into_iter()
        .map(|s| EventPattern::parse(s).map_err(|err| ApiError::bad_request(err.to_string())))
        .collect();
    let patterns = match patterns {
        Ok(p) if p.is_empty() => {
            return ApiError::bad_request(
                "add ?subscribe=service.event_type,... (e.g. ?subscribe=clock.tick)",
            )
            .into_response();
        }
        Ok(p) => p,
        Err(err) => return err.into_response(),
    };
    for p in &patterns {
        if let Err(denied) = state.auth().check_event(&p.to_string(), identity.user()) {
            return ApiError::from(denied).into_response();
        }
    }
    for p in &patterns {
        match state.event_source_known(&p.service).await {
            Ok(true) => {}
            Ok(false) => return ApiError::unknown_event_source(&p.service).into_response(),
            Err(err) => return ApiError::subscribe_failed(p, &err).into_response(),
        }
    }
    let bridge = state.bridge();
    let client = state.event_client(identity.user());
    let leave = Leave::new(&state, &client, Kind::Sse);
    for p in &patterns {
        if let Err(err) = bridge.subscribe(&client, p).await {
            drop(leave);
            return ApiError::subscribe_failed(p, &err).into_response();
        }
    }
    let hello = Event::default().event("subscribed").data(
        json!({ "events": patterns.iter().map(ToString::to_string).collect::<Vec<_>>() })
            .to_string(),
    );
    let events = event_stream(client, leave);
    let stream = stream::once(async move { Ok(hello) })
        .chain(events)
        .take_until(state.shutdown_token().clone().cancelled_owned());
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(state.config().sse_keepalive()))
        .into_response()
}

fn event_stream(
    client: Arc<ClientQueue>,
    leave: Leave,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    stream::unfold(
        (client, leave, Vec::new()),
        |(client, leave, mut batch)| async move {
            if !client.next_batch(&mut batch).await {
                return None;
            }
            let events: Vec<Result<Event, Infallible>> = batch
                .drain(..)
                .map(|text| Ok(Event::default().data(text.as_str())))
                .collect();
            Some((stream::iter(events), (client, leave, batch)))
        },
    )
    .flatten()
}
