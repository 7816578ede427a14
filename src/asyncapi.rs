//! The AsyncAPI 3.0 document of a set of services: what each one receives
//! and answers on the broker, for people and for code generators. The
//! gateway serves it at `/asyncapi.json` for the services it knows;
//! `enoki asyncapi` prints it for the program's services.
//!
//! - **Channels**: `rpc-<service>` (the service's RPC queue, bound to the
//!   `nameko-rpc` exchange), the reply queues (their address is each
//!   caller's `reply_to`), and one channel per event type a handler
//!   subscribes to (routing key `<event_type>` on the `<source>.events`
//!   exchange).
//! - **Operations**: `<service>_<method>` for each RPC method (receive on
//!   `rpc-<service>`, reply on the reply channel) and each event handler
//!   (receive on its event's channel).
//! - **Messages**: nameko's request body (`{"args": [...], "kwargs":
//!   {...}}`, each parameter with its schema), its reply (`{"result": ...,
//!   "error": ...}`) and each event's payload, from the Rust types
//!   ([`schema`](crate::schema)); a type without a schema is any JSON, with
//!   a log line naming it.
//!
//! Services known only by name (a gateway route to a service that runs
//! elsewhere) show their routed methods with any JSON for parameters and
//! result. Events a service dispatches are not declared anywhere in
//! enoki, so only the events someone handles have channels.
//!
//! ```
//! use enoki::asyncapi::{Contract, document};
//! use enoki::prelude::*;
//!
//! #[derive(Dependencies)]
//! struct Greeter;
//!
//! #[service(name = "greeter")]
//! impl Greeter {
//!     #[rpc]
//!     async fn hello(&self, name: String) -> Result<String, RemoteError> {
//!         Ok(format!("Hello, {name}!"))
//!     }
//! }
//!
//! let doc = document(&[Contract::of(&enoki::service::<Greeter>())], "nameko-rpc");
//! assert_eq!(doc["asyncapi"], "3.0.0");
//! assert_eq!(doc["channels"]["rpc-greeter"]["address"], "rpc-greeter");
//! assert_eq!(doc["operations"]["greeter_hello"]["action"], "receive");
//! let request = &doc["components"]["messages"]["greeter_hello_request"]["payload"];
//! assert_eq!(request["properties"]["kwargs"]["required"][0], "name");
//! // The positions, in order, titled with the parameters' names.
//! assert_eq!(request["properties"]["args"]["prefixItems"][0]["title"], "name");
//! ```

use serde_json::{Map, Value, json};

use crate::container::ServiceDef;
use crate::schema::{MethodSchema, any};
use crate::service::{EntrypointKind, EventHandlerSpec};

/// The AsyncAPI version of the documents.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// What one service receives: its RPC methods and event handlers.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// The service name.
    pub service: String,
    /// Its RPC methods.
    pub rpc: Vec<RpcMethod>,
    /// Its event handlers.
    pub handlers: Vec<Handler>,
}

/// One RPC method of a [`Contract`].
#[derive(Debug, Clone, PartialEq)]
pub struct RpcMethod {
    /// The method name.
    pub method: String,
    /// Its schemas; `None` for a method known only by name.
    pub schema: Option<MethodSchema>,
}

/// One event handler of a [`Contract`].
#[derive(Debug, Clone, PartialEq)]
pub struct Handler {
    /// The handler method.
    pub method: String,
    /// What it subscribes to.
    pub spec: EventHandlerSpec,
    /// The payload's schema.
    pub payload: Value,
    /// Its doc comment.
    pub doc: String,
}

impl Contract {
    /// A service definition's contract, with the schemas `#[service]`
    /// recorded.
    pub fn of(def: &ServiceDef) -> Contract {
        let schema_of = |method: &str| def.schemas().iter().find(|s| s.method == method);
        let mut contract = Contract {
            service: def.name().to_owned(),
            rpc: Vec::new(),
            handlers: Vec::new(),
        };
        for entrypoint in def.entrypoints() {
            let found = schema_of(entrypoint.method);
            match &entrypoint.kind {
                EntrypointKind::Rpc => contract.rpc.push(RpcMethod {
                    method: entrypoint.method.to_owned(),
                    schema: found.cloned(),
                }),
                EntrypointKind::Event(spec) => contract.handlers.push(Handler {
                    method: entrypoint.method.to_owned(),
                    spec: spec.clone(),
                    payload: found
                        .and_then(|schema| schema.params.first())
                        .map_or_else(any, |param| param.schema.clone()),
                    doc: found.map(|schema| schema.doc.clone()).unwrap_or_default(),
                }),
                _ => {}
            }
        }
        contract
    }

    /// A service known only by the names of some of its methods.
    pub fn named(service: &str, methods: &[String]) -> Contract {
        Contract {
            service: service.to_owned(),
            rpc: methods
                .iter()
                .map(|method| RpcMethod {
                    method: method.clone(),
                    schema: None,
                })
                .collect(),
            handlers: Vec::new(),
        }
    }
}

/// An id AsyncAPI accepts for a channel, operation or message
/// (`^[A-Za-z0-9_\-]+$`).
fn id(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|part| {
            part.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// The first sentence of a doc comment's first paragraph, on one line.
fn summary(doc: &str) -> String {
    let paragraph: Vec<&str> = doc
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    let text = paragraph.join(" ");
    match text.find(". ") {
        Some(end) => text[..=end].to_owned(),
        None => text,
    }
}

/// nameko's error reply.
fn error_schema() -> Value {
    json!({
        "type": ["object", "null"],
        "properties": {
            "exc_type": {"type": "string"},
            "exc_path": {"type": ["string", "null"]},
            "value": {"type": "string"},
            "exc_args": {"type": "array"}
        }
    })
}

/// The request body of an RPC method.
fn request_schema(method: &RpcMethod) -> Value {
    let Some(schema) = &method.schema else {
        return json!({
            "type": "object",
            "properties": {"args": {"type": "array"}, "kwargs": {"type": "object"}}
        });
    };
    let params = &schema.params;
    // Each position titled with its parameter's name: the order of the
    // names, which `kwargs` (an object) cannot keep.
    let items: Vec<Value> = params
        .iter()
        .map(|p| match &p.schema {
            Value::Object(schema) => {
                let mut schema = schema.clone();
                schema.insert("title".into(), json!(p.name));
                Value::Object(schema)
            }
            _ => json!({"title": p.name}),
        })
        .collect();
    let mut properties = Map::new();
    for param in params {
        properties.insert(param.name.to_owned(), param.schema.clone());
    }
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name)
        .collect();
    json!({
        "type": "object",
        "description": "nameko's request body: the parameters by position (`args`) or by name (`kwargs`), or both",
        "properties": {
            "args": {"type": "array", "prefixItems": items, "maxItems": params.len()},
            "kwargs": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false
            }
        }
    })
}

/// The AsyncAPI 3.0 document of `contracts`, whose RPC queues are bound
/// to `rpc_exchange` (the `RPC_EXCHANGE` setting, `nameko-rpc` by default).
pub fn document(contracts: &[Contract], rpc_exchange: &str) -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let content_type = crate::message::CONTENT_TYPE_JSON;

    if contracts.iter().any(|c| !c.rpc.is_empty()) {
        channels.insert(
            "rpc_replies".into(),
            json!({
                "address": null,
                "description": "A caller's reply queue: its address is the request's `reply_to`, bound to the RPC exchange by that name; the reply carries the request's `correlation_id`.",
                "messages": {}
            }),
        );
    }
    for contract in contracts {
        let service = contract.service.as_str();
        for &missing in contract
            .rpc
            .iter()
            .filter_map(|m| m.schema.as_ref())
            .flat_map(|schema| &schema.missing)
        {
            if cfg!(feature = "schemars") {
                tracing::info!(
                    service,
                    r#type = missing,
                    "no JSON schema for this type (derive schemars::JsonSchema); shown as any JSON"
                );
            } else {
                tracing::debug!(
                    service,
                    r#type = missing,
                    "no JSON schema without the schemars feature; shown as any JSON"
                );
            }
        }
        if !contract.rpc.is_empty() {
            let queue = crate::names::rpc_queue(service);
            let mut channel_messages = Map::new();
            for method in &contract.rpc {
                let name = method.method.as_str();
                let result = method
                    .schema
                    .as_ref()
                    .map_or_else(any, |s| s.result.clone());
                let doc = method.schema.as_ref().map_or("", |s| s.doc.as_str());
                let request = id(&[service, name, "request"]);
                let reply = id(&[service, name, "reply"]);
                messages.insert(
                    request.clone(),
                    json!({
                        "name": request,
                        "title": format!("{service}.{name} request"),
                        "contentType": content_type,
                        "correlationId": {"location": "$message.header#/correlation_id"},
                        "payload": request_schema(method),
                        "bindings": {"amqp": {"messageType": format!("{service}.{name}")}}
                    }),
                );
                messages.insert(
                    reply.clone(),
                    json!({
                        "name": reply,
                        "title": format!("{service}.{name} reply"),
                        "contentType": content_type,
                        "correlationId": {"location": "$message.header#/correlation_id"},
                        "payload": {
                            "type": "object",
                            "properties": {
                                "result": result,
                                "error": error_schema()
                            }
                        }
                    }),
                );
                channel_messages.insert(
                    request.clone(),
                    json!({"$ref": format!("#/components/messages/{request}")}),
                );
                channels["rpc_replies"]["messages"][&reply] =
                    json!({"$ref": format!("#/components/messages/{reply}")});
                let mut operation = json!({
                    "action": "receive",
                    "channel": {"$ref": format!("#/channels/{}", id(&[&queue]))},
                    "messages": [{"$ref": format!("#/channels/{}/messages/{request}", id(&[&queue]))}],
                    "reply": {
                        "address": {"location": "$message.header#/reply_to"},
                        "channel": {"$ref": "#/channels/rpc_replies"},
                        "messages": [{"$ref": format!("#/channels/rpc_replies/messages/{reply}")}]
                    }
                });
                if !doc.is_empty() {
                    operation["summary"] = json!(summary(doc));
                    operation["description"] = json!(doc);
                }
                operations.insert(id(&[service, name]), operation);
            }
            channels.insert(
                id(&[&queue]),
                json!({
                    "address": queue,
                    "description": format!("The RPC queue of {service}, bound to `{}` by `{service}.*`.", rpc_exchange),
                    "messages": channel_messages,
                    "bindings": {"amqp": {
                        "is": "queue",
                        "queue": {"name": queue, "durable": true, "exclusive": false, "autoDelete": false}
                    }}
                }),
            );
        }
        for handler in &contract.handlers {
            let spec = &handler.spec;
            let exchange = crate::names::event_exchange(spec.source_service);
            let channel = id(&[spec.source_service, "events", spec.event_type]);
            let message = id(&[spec.source_service, spec.event_type]);
            messages.entry(message.clone()).or_insert_with(|| {
                json!({
                    "name": message,
                    "title": format!("{} from {}", spec.event_type, spec.source_service),
                    "contentType": content_type,
                    "payload": handler.payload
                })
            });
            channels.entry(channel.clone()).or_insert_with(|| {
                json!({
                    "address": spec.event_type,
                    "description": format!("`{}` events of {}: routing key `{}` on the `{exchange}` topic exchange.", spec.event_type, spec.source_service, spec.event_type),
                    "messages": {&message: {"$ref": format!("#/components/messages/{message}")}},
                    "bindings": {"amqp": {
                        "is": "routingKey",
                        "exchange": {"name": exchange, "type": "topic", "durable": true, "autoDelete": false}
                    }}
                })
            });
            let mut operation = json!({
                "action": "receive",
                "channel": {"$ref": format!("#/channels/{channel}")},
                "messages": [{"$ref": format!("#/channels/{channel}/messages/{message}")}],
                "x-enoki-handler-type": spec.handler_type.as_str()
            });
            if !handler.doc.is_empty() {
                operation["summary"] = json!(summary(&handler.doc));
                operation["description"] = json!(handler.doc);
            }
            operations.insert(id(&[service, &handler.method]), operation);
        }
    }
    json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "enoki services",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("The services {}, as enoki serves them (nameko's AMQP protocol).", contracts.iter().map(|c| c.service.as_str()).collect::<Vec<_>>().join(", "))
        },
        "defaultContentType": content_type,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_the_first_sentence() {
        assert_eq!(
            summary("Creates a user; a name\nthat is taken is a `Conflict`. More.\n\nDetails."),
            "Creates a user; a name that is taken is a `Conflict`."
        );
        assert_eq!(summary("No full stop"), "No full stop");
    }

    #[test]
    fn ids_keep_to_asyncapis_alphabet() {
        assert_eq!(id(&["rpc-greeter"]), "rpc-greeter");
        assert_eq!(id(&["a.b", "c d", "e_f"]), "a_b_c_d_e_f");
    }

    #[test]
    fn a_service_known_by_name_has_any_json_methods() {
        let doc = document(
            &[Contract::named("remote", &["work".to_owned()])],
            "nameko-rpc",
        );
        let request = &doc["components"]["messages"]["remote_work_request"]["payload"];
        assert_eq!(request["properties"]["kwargs"], json!({"type": "object"}));
        assert_eq!(
            doc["components"]["messages"]["remote_work_reply"]["payload"]["properties"]["result"],
            json!({})
        );
        assert_eq!(
            doc["operations"]["remote_work"]["reply"]["channel"]["$ref"],
            "#/channels/rpc_replies"
        );
        assert!(doc["channels"]["rpc_replies"]["messages"]["remote_work_reply"].is_object());
    }

    #[test]
    fn no_services_make_an_empty_but_valid_document() {
        let doc = document(&[], "nameko-rpc");
        assert_eq!(doc["asyncapi"], "3.0.0");
        assert_eq!(doc["channels"], json!({}));
        assert_eq!(doc["operations"], json!({}));
    }
}
