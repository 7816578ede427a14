//! HTTP → RPC: the handlers of routed and generic calls, and the mapping
//! of request parts to `args`/`kwargs`. Failures are [`ApiError`]s (the
//! status table is in [`super::error`]), naming the service and method.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::auth::Identity;
pub use super::error::ApiError;
use super::metrics::OTHER;
use super::paths;
use super::rate_limit::{Client, PeerAddr};
use super::routes::{Conv, Part, Route, Source};
use super::state::GatewayState;
use crate::error::Error;

/// The header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// [`REQUEST_ID`] as a header name: looked up without parsing the name.
pub(crate) static REQUEST_ID_HEADER: axum::http::HeaderName =
    axum::http::HeaderName::from_static(REQUEST_ID);

/// Moved to [`ApiError::from_rpc`].
#[deprecated(since = "0.1.0", note = "use `ApiError::from_rpc`")]
pub fn rpc_error(
    err: &Error,
    service: &str,
    method: &str,
    status_by_type: &HashMap<String, u16>,
    retry_after: u64,
) -> ApiError {
    ApiError::from_rpc(err, service, method, status_by_type, retry_after)
}

/// The context data of a gateway call, as pairs (no map is built for it):
/// the request id, the user and the language, if any.
pub(crate) type ContextData = smallvec::SmallVec<[(&'static str, String); 3]>;

/// Context data for a call: the request id and the user, if any.
pub(crate) fn context_data(headers: &HeaderMap, user: Option<&str>) -> ContextData {
    let mut data = ContextData::new();
    if let Some(id) = headers
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        data.push(("request_id", id.to_owned()));
    }
    if let Some(user) = user {
        data.push(("user_id", user.to_owned()));
    }
    if let Some(lang) = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split([',', ';']).next())
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "*")
    {
        data.push(("language", lang.to_owned()));
    }
    data
}

/// The outcome label of a call, for metrics.
fn outcome(result: &Result<Box<serde_json::value::RawValue>, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(Error::Remote(_)) => "remote_error",
        Err(Error::RpcTimeout { .. }) => "timeout",
        Err(Error::UnknownService(_)) => "unknown_service",
        Err(_) => "unavailable",
    }
}

/// Calls `service.method` with `request` (its encoded `args` and
/// `kwargs`) and answers with its JSON result.
pub(crate) async fn call(
    state: &GatewayState,
    service: &str,
    method: &str,
    request: Vec<u8>,
    context: ContextData,
    timeout: Duration,
) -> Result<Box<serde_json::value::RawValue>, ApiError> {
    let context = context
        .into_iter()
        .map(|(key, value)| (key, Value::String(value)));
    let rpc = state
        .rpc()
        .with_context_pairs(context)
        .with_trace(crate::telemetry::current_trace())
        .with_timeout(timeout);
    let started = Instant::now();
    let result = rpc.call_raw(service, method, request).await;
    // Label values only for names that exist: the gateway knows them, or
    // the service answered as having the method.
    let exists = match &result {
        Ok(_) => true,
        Err(Error::Remote(remote)) => remote.exc_type != "MethodNotFound",
        Err(_) => false,
    } || state.knows_method(service, method);
    let (service_label, method_label) = if exists {
        (service, method)
    } else {
        (OTHER, OTHER)
    };
    state.metrics().rpc_call(
        service_label,
        method_label,
        outcome(&result),
        started.elapsed(),
    );
    let config = state.config();
    result.map_err(|err| {
        ApiError::from_rpc(
            &err,
            service,
            method,
            &config.error_status,
            config.retry_after,
        )
    })
}

fn json_response(status: StatusCode, raw: Box<serde_json::value::RawValue>) -> Response {
    let text: Box<str> = raw.into();
    let mut response = Response::new(Body::from(String::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads a JSON body: `None` when empty; 415 when not JSON, 413 when too
/// large, 400 when malformed.
pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Option<Value>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    if bytes.is_empty() {
        return Ok(None);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !(essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body must be application/json, not `{}`",
                if content_type.is_empty() {
                    "(none)"
                } else {
                    content_type
                }
            ),
        ));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|err| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MalformedRequest",
            format!("the body is not valid JSON: {err}"),
        )
    })
}

/// Who sent a request, for the rate limits: the TCP peer the server
/// recorded, and the authenticated user.
fn client<'a>(parts: &Parts, identity: &'a Identity) -> Client<'a> {
    Client {
        address: PeerAddr::of(&parts.extensions).0,
        user: identity.user(),
    }
}

/// `POST /rpc/{service}/{method}` with `{"args": [...], "kwargs": {...}}`.
pub(crate) async fn generic(
    State(state): State<GatewayState>,
    Path((service, method)): Path<(String, String)>,
    identity: Identity,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let config = state.config();
    // Decided on the names routing resolved, however the path spelled them.
    if let Err(denied) = state.auth().check_path(
        &Method::POST,
        &paths::rpc(&service, &method),
        identity.user(),
    ) {
        return ApiError::from(denied)
            .target(&service, &method)
            .into_response();
    }
    if let Some(limiter) = state.rpc_limiter()
        && let Err(limited) = limiter.check(&client(&parts, &identity))
    {
        state.metrics().request_rate_limited();
        return limited.target(&service, &method).into_response();
    }
    if !config.rpc.allows(&service) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownService",
            format!("service `{service}` is not exposed by this gateway"),
        )
        .target(&service, &method)
        .into_response();
    }
    let result = async {
        let body = read_json(&parts.headers, body, config.body_limit).await?;
        let (args, kwargs) = split_call_body(body)?;
        let context = context_data(&parts.headers, identity.user());
        call(
            &state,
            &service,
            &method,
            crate::message::encode_request(&args, &kwargs),
            context,
            config.rpc_timeout(),
        )
        .await
    }
    .await;
    match result {
        Ok(raw) => json_response(StatusCode::OK, raw),
        Err(err) => err.target(&service, &method).into_response(),
    }
}

/// Splits `{"args": [...], "kwargs": {...}}` (either optional).
pub(crate) fn split_call_body(
    body: Option<Value>,
) -> Result<(Value, Map<String, Value>), ApiError> {
    let malformed = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "MalformedRequest", m);
    let mut object = match body {
        None => return Ok((Value::Array(vec![]), Map::new())),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(malformed(
                r#"the body must be {"args": [...], "kwargs": {...}}"#,
            ));
        }
    };
    if let Some(key) = object.keys().find(|k| *k != "args" && *k != "kwargs") {
        return Err(malformed(&format!(
            "unexpected key `{key}`: the body must be {{\"args\": [...], \"kwargs\": {{...}}}}"
        )));
    }
    let args = match object.remove("args") {
        None | Some(Value::Null) => Value::Array(vec![]),
        Some(list @ Value::Array(_)) => list,
        Some(_) => return Err(malformed("`args` must be an array")),
    };
    let kwargs = match object.remove("kwargs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(malformed("`kwargs` must be an object")),
    };
    Ok((args, kwargs))
}

/// A configured route.
pub(crate) async fn routed(
    state: GatewayState,
    route: Arc<Route>,
    identity: Identity,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let config = state.config();
    if let Some(limiter) = &route.rate_limit
        && let Err(limited) = limiter.check(&client(&parts, &identity))
    {
        state.metrics().request_rate_limited();
        return limited
            .target(&route.service, &route.rpc_method)
            .into_response();
    }
    let result = async {
        // Borrowed from the router's own (percent-decoded) parameters.
        let raw = if route.params.is_empty() {
            None
        } else {
            Some(
                RawPathParams::from_request_parts(&mut parts, &state)
                    .await
                    .map_err(|err| ApiError::bad_request(err.body_text()))?,
            )
        };
        let params: smallvec::SmallVec<[(&str, &str); 4]> =
            raw.iter().flat_map(RawPathParams::iter).collect();
        let query: Vec<(String, String)> = Query::try_from_uri(&parts.uri)
            .map_err(|err| ApiError::bad_request(err.body_text()))?
            .0;
        let body = if route.reads_body() {
            read_json(&parts.headers, body, config.body_limit).await?
        } else {
            None
        };
        let request = arguments(&route, &params, &query, &parts.headers, body)?.encode();
        let context = context_data(&parts.headers, identity.user());
        let timeout = route.timeout.unwrap_or_else(|| config.rpc_timeout());
        call(
            &state,
            &route.service,
            &route.rpc_method,
            request,
            context,
            timeout,
        )
        .await
    }
    .await;
    match result {
        Ok(raw) => json_response(route.status, raw),
        Err(err) => err
            .target(&route.service, &route.rpc_method)
            .into_response(),
    }
}

/// A call's arguments, as a route maps them from a request, encoded
/// straight into its request body ([`encode`](Self::encode)).
#[derive(Debug)]
pub(crate) enum Arguments<'a> {
    /// The default mapping: the body's fields, the query's parameters and
    /// the path's, as keyword arguments. Where a name comes more than
    /// once, the later one counts: a path parameter over a query
    /// parameter, over a body field (and a later query parameter over an
    /// earlier one).
    Fields(FieldKwargs<'a>),
    /// The route's `args` and `kwargs`, resolved.
    Mapped {
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    },
}

/// The most query and path parameters the default mapping encodes as they
/// are; with more, they are merged into a map first (so a request cannot
/// make the check for repeated names cost the square of its length).
const FIELDS_UNMERGED: usize = 16;

impl Arguments<'_> {
    /// The request body: `{"args": [...], "kwargs": {...}}`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        crate::message::json_body(self).expect("JSON values and strings always serialise")
    }
}

impl serde::Serialize for Arguments<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut request = serializer.serialize_struct("Request", 2)?;
        match self {
            Arguments::Fields(kwargs) => {
                request.serialize_field("args", &[(); 0])?;
                request.serialize_field("kwargs", kwargs)?;
            }
            Arguments::Mapped { args, kwargs } => {
                request.serialize_field("args", args)?;
                request.serialize_field("kwargs", kwargs)?;
            }
        }
        request.end()
    }
}

/// The default mapping's keyword arguments, each name once (the last of
/// its kind counts).
#[derive(Debug)]
pub(crate) struct FieldKwargs<'a> {
    body: Map<String, Value>,
    query: &'a [(String, String)],
    params: &'a [(&'a str, &'a str)],
}

impl serde::Serialize for FieldKwargs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let FieldKwargs {
            body,
            query,
            params,
        } = self;
        let in_params = |name: &str| params.iter().any(|(k, _)| *k == name);
        let mut kwargs = serializer.serialize_map(None)?;
        for (name, value) in body {
            if !in_params(name) && !query.iter().any(|(k, _)| k == name) {
                kwargs.serialize_entry(name, value)?;
            }
        }
        for (i, (name, value)) in query.iter().enumerate() {
            if !in_params(name) && !query[i + 1..].iter().any(|(k, _)| k == name) {
                kwargs.serialize_entry(name, value)?;
            }
        }
        for (i, (name, value)) in params.iter().enumerate() {
            if !params[i + 1..].iter().any(|(k, _)| k == name) {
                kwargs.serialize_entry(name, value)?;
            }
        }
        kwargs.end()
    }
}

/// Maps a request's parts to a call's arguments, as `route` says.
pub(crate) fn arguments<'a>(
    route: &Route,
    params: &'a [(&'a str, &'a str)],
    query: &'a [(String, String)],
    headers: &HeaderMap,
    body: Option<Value>,
) -> Result<Arguments<'a>, ApiError> {
    if route.default_mapping() {
        let mut body = match body {
            None => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MalformedRequest",
                    "the body must be a JSON object (its fields become keyword arguments)",
                ));
            }
        };
        if query.len() + params.len() <= FIELDS_UNMERGED {
            return Ok(Arguments::Fields(FieldKwargs {
                body,
                query,
                params,
            }));
        }
        let pairs = query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (k, v) in pairs.chain(params.iter().copied()) {
            body.insert(k.to_owned(), Value::String(v.to_owned()));
        }
        return Ok(Arguments::Mapped {
            args: Vec::new(),
            kwargs: body,
        });
    }
    let body = body.as_ref();
    let resolve = |source: &Source| resolve(source, params, query, headers, body);
    let mut args = Vec::new();
    for source in route.args.iter().flatten() {
        args.push(resolve(source)?.unwrap_or(Value::Null));
    }
    // Missing trailing arguments are left out, so their defaults apply.
    while args.last().is_some_and(Value::is_null) {
        args.pop();
    }
    let mut kwargs = Map::new();
    for (name, source) in route.kwargs.iter().flatten() {
        if let Some(value) = resolve(source)? {
            kwargs.insert(name.clone(), value);
        }
    }
    Ok(Arguments::Mapped { args, kwargs })
}

fn resolve(
    source: &Source,
    params: &[(&str, &str)],
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Result<Option<Value>, ApiError> {
    fn find<K: AsRef<str>, V: AsRef<str>>(list: &[(K, V)], name: &str) -> Option<Value> {
        list.iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| Value::String(v.as_ref().to_owned()))
    }
    let value = match &source.from {
        Part::Path(name) => find(params, name),
        Part::Query(name) => find(query, name),
        Part::Header(name) => headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(|v| Value::String(v.to_owned())),
        Part::Body => body.cloned(),
        Part::BodyField(name) => match body {
            None => None,
            Some(Value::Object(map)) => map.get(name).cloned(),
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MalformedRequest",
                    format!("the body must be a JSON object with `{name}`"),
                ));
            }
        },
    };
    value.map(|v| convert(v, source)).transpose()
}

fn convert(value: Value, source: &Source) -> Result<Value, ApiError> {
    let fail = |what: &str, value: &Value| {
        ApiError::bad_request(format!("{source}: expected {what}, got {value}"))
    };
    // What stays as it is is moved, not copied.
    Ok(match source.conv {
        Conv::Keep => value,
        Conv::Str => match value {
            Value::String(_) => value,
            other => Value::String(other.to_string()),
        },
        Conv::Int => match &value {
            Value::Number(n) if n.is_i64() || n.is_u64() => value,
            Value::String(t) => t
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| fail("an integer", &value))?,
            _ => return Err(fail("an integer", &value)),
        },
        Conv::Float => match &value {
            Value::Number(_) => value,
            Value::String(t) => t
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .ok_or_else(|| fail("a number", &value))?,
            _ => return Err(fail("a number", &value)),
        },
        Conv::Bool => match &value {
            Value::Bool(_) => value,
            Value::String(t) => match t.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Value::Bool(true),
                "false" | "0" | "no" | "off" => Value::Bool(false),
                _ => return Err(fail("a boolean", &value)),
            },
            _ => return Err(fail("a boolean", &value)),
        },
        Conv::Json => match &value {
            Value::String(t) => serde_json::from_str(t).map_err(|_| fail("JSON", &value))?,
            _ => value,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The converted value, or `None` when the conversion refuses it.
    fn conv(source: &str, value: Value) -> Option<Value> {
        let source = Source::parse(source).expect("a good source");
        convert(value, &source).ok()
    }

    /// The default mapping's kwargs as encoded, and how often each name
    /// appears in the encoding.
    fn default_kwargs(
        body: Value,
        query: &[(&str, &str)],
        params: &[(&str, &str)],
    ) -> (Value, Vec<(String, usize)>) {
        let route = Route {
            method: Method::GET,
            path: "/t".into(),
            params: Vec::new(),
            service: "svc".into(),
            rpc_method: "method".into(),
            args: None,
            kwargs: None,
            status: StatusCode::OK,
            timeout: None,
            summary: None,
            rate_limit: None,
            origin: "test".into(),
        };
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let arguments = arguments(&route, params, &query, &HeaderMap::new(), Some(body))
            .expect("an object body");
        let encoded = arguments.encode();
        let request: Value = serde_json::from_slice(&encoded).expect("JSON");
        assert_eq!(request["args"], json!([]));
        let text = String::from_utf8(encoded).expect("UTF-8");
        let counts = request["kwargs"]
            .as_object()
            .expect("kwargs")
            .keys()
            .map(|k| (k.clone(), text.matches(&format!("\"{k}\":")).count()))
            .collect();
        (request["kwargs"].clone(), counts)
    }

    #[test]
    fn default_mapping_names_each_argument_once_the_last_counting() {
        let (kwargs, counts) = default_kwargs(
            json!({"a": 1, "b": 2, "keep": true}),
            &[("b", "q"), ("c", "1"), ("c", "2")],
            &[("a", "p")],
        );
        assert_eq!(kwargs, json!({"a": "p", "b": "q", "c": "2", "keep": true}));
        assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    }

    #[test]
    fn default_mapping_merges_many_parameters_the_same_way() {
        let many: Vec<(String, String)> = (0..40)
            .map(|i| (format!("k{}", i % 7), i.to_string()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (kwargs, counts) = default_kwargs(json!({"k1": "body", "x": 0}), &many, &[("k2", "p")]);
        let mut expected = json!({"x": 0});
        for (k, v) in &many {
            expected[*k] = json!(v);
        }
        expected["k2"] = json!("p");
        assert_eq!(kwargs, expected);
        assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    }

    proptest::proptest! {
        /// Whatever names the body, the query and the path repeat (below
        /// the merging bound and above it): the encoded kwargs are the
        /// body's fields overwritten by the query's parameters, then the
        /// path's, in order, and each name is encoded once.
        #[test]
        fn default_mapping_is_a_merge_in_order(
            body in proptest::collection::btree_map("[a-e]", 0u8..9, 0..5),
            query in proptest::collection::vec(("[a-e]", "[a-z]{0,3}"), 0..24),
            params in proptest::collection::vec(("[a-e]", "[a-z]{0,3}"), 0..3),
        ) {
            let body: Map<String, Value> =
                body.into_iter().map(|(k, v)| (k, json!(v))).collect();
            let mut expected = body.clone();
            for (k, v) in query.iter().chain(&params) {
                expected.insert(k.clone(), json!(v));
            }
            let query: Vec<(&str, &str)> =
                query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let params: Vec<(&str, &str)> =
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (kwargs, counts) = default_kwargs(Value::Object(body), &query, &params);
            proptest::prop_assert_eq!(kwargs, Value::Object(expected));
            proptest::prop_assert!(counts.iter().all(|(_, n)| *n == 1), "{:?}", counts);
        }
    }

    #[test]
    fn conversions_keep_convert_or_refuse() {
        assert_eq!(conv("path.a", json!("x")), Some(json!("x")));
        assert_eq!(conv("body.a", json!({"k": [1]})), Some(json!({"k": [1]})));
        assert_eq!(conv("body.a:str", json!(5)), Some(json!("5")));
        assert_eq!(conv("path.a:int", json!(" 7 ")), Some(json!(7)));
        assert_eq!(conv("body.a:int", json!(7)), Some(json!(7)));
        assert!(conv("body.a:int", json!(7.5)).is_none());
        assert!(conv("path.a:int", json!("seven")).is_none());
        assert_eq!(conv("path.a:float", json!("2.5")), Some(json!(2.5)));
        assert_eq!(conv("body.a:float", json!(2)), Some(json!(2)));
        assert!(conv("path.a:float", json!("NaN")).is_none());
        assert_eq!(conv("path.a:bool", json!("YES")), Some(json!(true)));
        assert_eq!(conv("path.a:bool", json!("off")), Some(json!(false)));
        assert_eq!(conv("body.a:bool", json!(true)), Some(json!(true)));
        assert!(conv("path.a:bool", json!("maybe")).is_none());
        assert!(conv("body.a:bool", json!(1)).is_none());
        assert_eq!(conv("path.a:json", json!("[1, 2]")), Some(json!([1, 2])));
        assert_eq!(conv("body.a:json", json!({"a": 1})), Some(json!({"a": 1})));
        assert!(conv("path.a:json", json!("{")).is_none());
    }
}
