//! The tower and tower-http layers around every route, configured from
//! `GATEWAY` (outermost first): request ids (taken from `X-Request-Id` or
//! generated, and returned), access logs through `tracing`, the request's
//! OpenTelemetry span (when spans are exported), metrics, JSON
//! error bodies, CORS, gzip, the concurrency limit with load shedding
//! (503 with `Retry-After`), the request timeout (504), the body limit
//! (413) and auth. Innermost of all, a panic in a handler becomes a 500
//! with the JSON error body (tower-http's `CatchPanicLayer`): it never
//! takes the connection, let alone the process, down.

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, Version};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::map_request_body::MapRequestBodyLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use super::auth::Identity;
use super::config::CorsConfig;
use super::error::ApiError;
use super::paths;
use super::record::RecordLayer;
use super::rpc::REQUEST_ID_HEADER;
use super::shed::ShedLayer;
use super::span::HttpSpanLayer;
use super::state::GatewayState;

pub(crate) fn apply(app: Router<GatewayState>, state: &GatewayState) -> Router<GatewayState> {
    let config = state.config();
    let metrics = state.metrics().clone();
    let retry_after = config.retry_after;
    let cors = (!config.cors.allow_origins.is_empty()).then(|| cors(&config.cors));
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<Body>| {
            let id = request
                .headers()
                .get(&REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            // For logs; the request's OpenTelemetry span is the
            // `HttpSpanLayer`'s.
            tracing::info_span!(
                target: crate::telemetry::HTTP_TARGET,
                "http",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %id,
            )
        })
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));
    // One stack, applied once: `Router::layer` boxes every route again for
    // each layer it is given, and axum clones a route's whole service per
    // request, so ten layers applied one by one cost dozens of boxes per
    // request. Outermost first; CORS and auth are there only when
    // configured, compression always (it compresses nothing when off).
    let enabled = config.compression;
    let compression = CompressionLayer::new().compress_when(
        DefaultPredicate::new()
            .and(move |_: StatusCode, _: Version, _: &HeaderMap, _: &Extensions| enabled),
    );
    let auth = state
        .auth()
        .enabled()
        .then(|| middleware::from_fn_with_state(state.clone(), authenticate));
    let stack = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(trace)
        .layer(HttpSpanLayer)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(RecordLayer::new(metrics.clone()))
        // Compression's body back to axum's, which `RecordLayer` takes.
        .map_response(IntoResponse::into_response)
        .option_layer(cors)
        .layer(compression)
        .layer(ShedLayer::new(
            config.concurrency_limit,
            retry_after,
            metrics,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.request_timeout(),
        ))
        // Back to axum's response body (the timeout needs one it can
        // make empty).
        .map_response(IntoResponse::into_response)
        .layer(RequestBodyLimitLayer::new(config.body_limit))
        // Back to axum's body, which auth (an axum middleware) takes.
        .layer(MapRequestBodyLayer::new(Body::new))
        // Innermost but auth: a panic in a handler (or in auth) is a 500.
        .layer(CatchPanicLayer::custom(panicked))
        .option_layer(auth);
    app.layer(stack)
}

/// Request ids for requests that bring none: random (version 4) UUIDs,
/// written straight into the header value.
#[derive(Debug, Clone, Copy, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

/// A handler panicked: 500 with the JSON body, logged.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a handler panicked".to_owned());
    tracing::error!(%message, "request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "GatewayError",
        "the request failed inside the gateway",
    )
    .into_response()
}

fn cors(config: &CorsConfig) -> CorsLayer {
    let layer = if config.allow_origins.iter().any(|o| o == "*") {
        CorsLayer::new().allow_origin(Any)
    } else {
        let origins: Vec<HeaderValue> = config
            .allow_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        CorsLayer::new().allow_origin(AllowOrigin::list(origins))
    };
    let layer = layer
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([REQUEST_ID_HEADER.clone()]);
    match config.max_age {
        Some(secs) => layer.max_age(std::time::Duration::from_secs(secs)),
        None => layer,
    }
}

/// Identifies the user and applies the route rules.
async fn authenticate(
    State(state): State<GatewayState>,
    mut request: Request,
    next: Next,
) -> Response {
    let auth = state.auth();
    let Some(matched) = request.extensions().get::<MatchedPath>() else {
        return next.run(request).await; // static files
    };
    if paths::PUBLIC.contains(&matched.as_str()) {
        return next.run(request).await;
    }
    let token = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(percent_decode)
    });
    let user = match auth.identify(request.headers(), token.as_deref()) {
        Ok(user) => user,
        Err(denied) => return ApiError::from(denied).into_response(),
    };
    if let Err(denied) = auth.check_path(request.method(), request.uri().path(), user.as_deref()) {
        return ApiError::from(denied).into_response();
    }
    request.extensions_mut().insert(Identity::new(user));
    next.run(request).await
}

/// A query-string value, decoded as browsers encode it (`+` is a space).
fn percent_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn query_values_decode_without_panicking() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%2B"), "+");
        // Once a panic: a `%` before a multi-byte character.
        assert_eq!(percent_decode("%a\u{e9}"), "%a\u{e9}");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
