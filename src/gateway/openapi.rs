//! `/openapi.json`: an OpenAPI 3.1 document generated from the routes
//! (with utoipa's builder types), the `#[http]` entrypoints of the embedded
//! services, and the generic RPC endpoint when it is enabled, with the
//! schemas of the embedded services' methods for parameters, bodies and
//! results ([`with_schemas`]; the same ones `/asyncapi.json` shows). Built
//! once at start-up.

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
use crate::schema::{MethodSchema, ParamSchema};

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

/// The schemas of the services' methods ([`crate::schema`]) put into a
/// document made by [`document_with`]: each route's response is its
/// method's result; a path, query or header parameter that feeds a method
/// parameter as it is (no `int`/`float`/`bool` conversion) gets that
/// parameter's schema, and so do body fields; the default mapping's body is
/// an object of the parameters the path does not give. Routes to methods
/// without a schema keep "any JSON".
pub fn with_schemas(
    document: &mut serde_json::Value,
    routes: &RouteTable,
    schemas: &[(&str, &MethodSchema)],
) {
    use serde_json::{Value, json};
    for route in &routes.routes {
        let Some((_, schema)) = schemas
            .iter()
            .find(|(service, s)| *service == route.service && s.method == route.rpc_method)
        else {
            continue;
        };
        let verb = route.method.as_str().to_ascii_lowercase();
        let Some(op) =
            document.pointer_mut(&format!("/paths/{}/{verb}", pointer_escape(&route.path)))
        else {
            continue;
        };
        let status = route.status.as_u16().to_string();
        if let Some(content) =
            op.pointer_mut(&format!("/responses/{status}/content/application~1json"))
        {
            content["schema"] = schema.result.clone();
        }
        let by_name = |name: &str| schema.params.iter().find(|p| p.name == name);
        // (source, the parameter it feeds)
        let mut fed: Vec<(Part, Conv, &ParamSchema)> = Vec::new();
        if route.default_mapping() {
            for name in &route.params {
                if let Some(param) = by_name(name) {
                    fed.push((Part::Path(name.clone()), Conv::Keep, param));
                }
            }
            if route.reads_body() {
                let rest: Vec<&ParamSchema> = schema
                    .params
                    .iter()
                    .filter(|p| !route.params.iter().any(|n| n == p.name))
                    .collect();
                let properties: serde_json::Map<String, Value> = rest
                    .iter()
                    .map(|p| (p.name.to_owned(), p.schema.clone()))
                    .collect();
                let required: Vec<&str> =
                    rest.iter().filter(|p| p.required).map(|p| p.name).collect();
                if let Some(body) = op.pointer_mut("/requestBody/content/application~1json") {
                    body["schema"] =
                        json!({"type": "object", "properties": properties, "required": required});
                }
            }
        } else {
            for (index, source) in route.args.iter().flatten().enumerate() {
                if let Some(param) = schema.params.get(index) {
                    fed.push((source.from.clone(), source.conv, param));
                }
            }
            for (name, source) in route.kwargs.iter().flatten() {
                if let Some(param) = by_name(name) {
                    fed.push((source.from.clone(), source.conv, param));
                }
            }
        }
        let mut fields = serde_json::Map::new();
        for (from, conv, param) in fed {
            let (name, place) = match &from {
                Part::Path(n) => (n, "path"),
                Part::Query(n) => (n, "query"),
                Part::Header(n) => (n, "header"),
                Part::BodyField(n) => {
                    fields.insert(n.clone(), param.schema.clone());
                    continue;
                }
                Part::Body => {
                    if let Some(body) = op.pointer_mut("/requestBody/content/application~1json") {
                        body["schema"] = param.schema.clone();
                    }
                    continue;
                }
            };
            // A converted value is what the conversion makes; as it is, a
            // string (or JSON) the method's type describes.
            let as_is = matches!(conv, Conv::Keep | Conv::Str | Conv::Json);
            let string = param.schema.get("type").and_then(Value::as_str) == Some("string");
            if !(as_is && (string || conv == Conv::Json)) {
                continue;
            }
            if let Some(Value::Array(parameters)) = op.get_mut("parameters") {
                for parameter in parameters {
                    if parameter["name"] == name.as_str() && parameter["in"] == place {
                        parameter["schema"] = param.schema.clone();
                    }
                }
            }
        }
        if !fields.is_empty()
            && let Some(body) = op.pointer_mut("/requestBody/content/application~1json")
        {
            body["schema"] = json!({"type": "object", "properties": fields});
        }
    }
}

/// A JSON pointer token: `~` as `~0`, `/` as `~1`.
fn pointer_escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::{MethodSchema, Probed};

    fn schema() -> MethodSchema {
        MethodSchema::new(
            "create",
            &[],
            vec![
                (
                    "username",
                    true,
                    Probed::Schema(json!({"type": "string", "maxLength": 32})),
                ),
                ("age", false, Probed::Schema(json!({"type": "integer"}))),
            ],
            Probed::Schema(json!({"type": "object", "properties": {"id": {"type": "integer"}}})),
        )
    }

    fn patched(yaml: &str) -> serde_json::Value {
        let mut routes = RouteTable::default();
        routes.add_yaml(yaml, "test.yaml").unwrap();
        let mut doc = serde_json::to_value(document(&routes, &GatewayConfig::default())).unwrap();
        let schema = schema();
        with_schemas(&mut doc, &routes, &[("users", &schema)]);
        doc
    }

    #[test]
    fn the_default_mapping_gets_the_parameters_and_the_result() {
        let doc =
            patched("routes:\n  - {method: POST, path: '/users/{username}', rpc: users.create}\n");
        let op = &doc["paths"]["/users/{username}"]["post"];
        assert_eq!(op["parameters"][0]["schema"]["maxLength"], 32, "{op}");
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"],
            json!({"type": "object", "properties": {"age": {"type": "integer"}}, "required": []})
        );
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["id"]["type"],
            "integer"
        );
    }

    #[test]
    fn mapped_sources_get_their_parameters_schema_unless_converted() {
        let doc = patched(
            "routes:\n  - {method: POST, path: /users, rpc: users.create, status: 201, kwargs: {username: 'query.u', age: 'body.years:int'}}\n",
        );
        let op = &doc["paths"]["/users"]["post"];
        assert_eq!(op["parameters"][0]["schema"]["maxLength"], 32, "{op}");
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"],
            json!({"type": "object", "properties": {"years": {"type": "integer"}}})
        );
        assert!(
            op["responses"]["201"]["content"]["application/json"]["schema"]["properties"]
                .is_object()
        );
        // An int conversion of a string parameter keeps the conversion's type.
        let doc = patched(
            "routes:\n  - {method: GET, path: '/users/{n}', rpc: users.create, args: ['path.n:int']}\n",
        );
        assert_eq!(
            doc["paths"]["/users/{n}"]["get"]["parameters"][0]["schema"],
            json!({"type": "integer"})
        );
        // Another method: untouched.
        let doc = patched("routes:\n  - {method: GET, path: '/other/{x}', rpc: users.other}\n");
        assert_eq!(
            doc["paths"]["/other/{x}"]["get"]["parameters"][0]["schema"],
            json!({"type": "string"})
        );
    }
}
