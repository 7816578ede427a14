//! `/openapi.json`: an OpenAPI 3.1 document generated from the routes
//! (with utoipa's builder types), the `#[http]` entrypoints of the embedded
//! services, and the generic RPC endpoint when it is enabled. Built once at
//! start-up.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Required};

use super::config::GatewayConfig;
use super::routes::{Conv, Part, Route, RouteTable};
use crate::describe::HttpDescription;

fn schema(ty: Type) -> Schema {
    Schema::Object(ObjectBuilder::new().schema_type(ty).build())
}

fn conv_type(conv: Conv) -> Type {
    match conv {
        Conv::Int => Type::Integer,
        Conv::Float => Type::Number,
        Conv::Bool => Type::Boolean,
        _ => Type::String,
    }
}

fn json_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Schema::Object(ObjectBuilder::new().build())))
        .build()
}

fn error_response() -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(r#"An error: {"error": {"type", "message", "status", "service", "method"}}"#)
        .content("application/json", json_content())
        .build()
}

fn rate_limited_response(limit: &super::rate_limit::RateLimit) -> utoipa::openapi::Response {
    let per = match limit.by {
        super::rate_limit::RateKey::Client => "client address",
        super::rate_limit::RateKey::User => "user",
    };
    ResponseBuilder::new()
        .description(format!(
            "Rate limited: {} requests per {} s per {per}; `Retry-After` says when to retry",
            limit.requests, limit.per
        ))
        .content("application/json", json_content())
        .build()
}

fn http_method(method: &axum::http::Method) -> HttpMethod {
    match method.as_str() {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn operation(route: &Route) -> utoipa::openapi::path::Operation {
    let rpc = format!("{}.{}", route.service, route.rpc_method);
    let mut op = OperationBuilder::new()
        .operation_id(Some(format!(
            "{}_{}",
            route.method.as_str().to_ascii_lowercase(),
            rpc.replace('.', "_")
        )))
        .tag(route.service.clone())
        .summary(Some(
            route
                .summary
                .clone()
                .unwrap_or_else(|| format!("Calls {rpc}")),
        ))
        .description(Some(format!("RPC `{rpc}` (defined at {}).", route.origin)));
    for name in &route.params {
        let ty = route
            .sources()
            .find(|s| s.from == Part::Path(name.clone()))
            .map_or(Type::String, |s| conv_type(s.conv));
        op = op.parameter(
            ParameterBuilder::new()
                .name(name.clone())
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema(ty))),
        );
    }
    for source in route.sources() {
        let (name, place) = match &source.from {
            Part::Query(n) => (n.clone(), ParameterIn::Query),
            Part::Header(n) => (n.clone(), ParameterIn::Header),
            _ => continue,
        };
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(place)
                .required(Required::False)
                .schema(Some(schema(conv_type(source.conv)))),
        );
    }
    if route.reads_body() {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content())
                .build(),
        ));
    }
    if let Some(limiter) = &route.rate_limit {
        op = op.response("429", rate_limited_response(limiter.limit()));
    }
    op.response(
        route.status.as_u16().to_string(),
        ResponseBuilder::new()
            .description(format!("The result of {rpc}"))
            .content("application/json", json_content())
            .build(),
    )
    .response("default", error_response())
    .build()
}

/// The operation of an `#[http]` entrypoint `service.method`.
fn http_operation(
    service: &str,
    http: &crate::describe::HttpDescription,
) -> utoipa::openapi::path::Operation {
    let mut op = OperationBuilder::new()
        .operation_id(Some(format!(
            "{}_{service}_{}",
            http.http_method.to_ascii_lowercase(),
            http.method
        )))
        .tag(service.to_owned())
        .summary(Some(format!("{service}.{} (#[http])", http.method)))
        .description(Some(format!(
            "The `#[http]` entrypoint `{}` of the `{service}` service.",
            http.method
        )));
    for name in super::routes::parse_path(&http.path).unwrap_or_default() {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema(Type::String))),
        );
    }
    op.response(
        "200",
        ResponseBuilder::new()
            .description("What the method answers")
            .build(),
    )
    .response("default", error_response())
    .build()
}

/// The document for these routes and settings.
pub fn document(routes: &RouteTable, config: &GatewayConfig) -> OpenApi {
    document_with(routes, config, &[])
}

/// The document for these routes and settings, with the `#[http]`
/// entrypoints `http` (service name, entrypoint) that the gateway mounts.
pub fn document_with(
    routes: &RouteTable,
    config: &GatewayConfig,
    http: &[(&str, &HttpDescription)],
) -> OpenApi {
    let mut items: Vec<(String, PathItem)> = Vec::new();
    let mut add = |path: &str, next: PathItem| match items.iter_mut().find(|(p, _)| p == path) {
        Some((_, item)) => item.merge_operations(next),
        None => items.push((path.to_owned(), next)),
    };
    for (path, group) in routes.by_path() {
        for route in group {
            add(
                path,
                PathItem::new(http_method(&route.method), operation(route)),
            );
        }
    }
    for (service, entrypoint) in http {
        let method = axum::http::Method::from_bytes(entrypoint.http_method.as_bytes())
            .unwrap_or(axum::http::Method::GET);
        add(
            &entrypoint.path,
            PathItem::new(http_method(&method), http_operation(service, entrypoint)),
        );
    }
    let mut paths = PathsBuilder::new();
    for (path, item) in items {
        paths = paths.path(path, item);
    }
    if config.rpc.enabled {
        let op = OperationBuilder::new()
            .operation_id(Some("rpc_call"))
            .tag("rpc")
            .summary(Some("Calls any exposed RPC method"))
            .description(Some(match &config.rpc.services {
                None => "Calls `service.method` with the body's `args` and `kwargs`.".to_owned(),
                Some(list) => format!(
                    "Calls `service.method` with the body's `args` and `kwargs`. Exposed services: {}.",
                    list.join(", ")
                ),
            }))
            .parameter(
                ParameterBuilder::new()
                    .name("service")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(schema(Type::String))),
            )
            .parameter(
                ParameterBuilder::new()
                    .name("method")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(schema(Type::String))),
            )
            .request_body(Some(
                RequestBodyBuilder::new()
                    .description(Some(r#"{"args": [...], "kwargs": {...}}"#))
                    .content("application/json", json_content())
                    .build(),
            ))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The method's result")
                    .content("application/json", json_content())
                    .build(),
            )
            .response("default", error_response());
        let op = match &config.rpc.rate_limit {
            Some(limit) => op.response("429", rate_limited_response(limit)),
            None => op,
        }
        .build();
        paths = paths.path(super::paths::RPC, PathItem::new(HttpMethod::Post, op));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("enoki gateway")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "HTTP routes to enoki / nameko RPC methods. Events: GET /ws (WebSocket) and GET /events (SSE).",
                ))
                .build(),
        )
        .paths(paths.build())
        .build()
}
