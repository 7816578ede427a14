//! Message schemas: what each entrypoint takes and gives, as JSON Schema,
//! from its Rust types. `#[service]` records them for every `#[rpc]`
//! method (its parameters and the `T` of its `Result<T, E>`) and every
//! event handler (its payload); [`asyncapi`](crate::asyncapi) publishes
//! them.
//!
//! With the `schemars` feature, a type that implements
//! [`schemars::JsonSchema`] (derive it) gets its schema; any other type,
//! and every type without the feature, shows as any JSON (`{}`), which a
//! [`MethodSchema::missing`] list names. No type ever fails a build or a
//! start-up for want of a schema.
//!
//! ```
//! use enoki::prelude::*;
//! use enoki::Service;
//!
//! #[derive(Dependencies)]
//! struct Greeter;
//!
//! #[service(name = "greeter")]
//! impl Greeter {
//!     /// Greets someone.
//!     #[rpc]
//!     async fn hello(&self, name: String, times: Option<u32>) -> Result<String, RemoteError> {
//!         Ok(format!("Hello, {name}!"))
//!     }
//! }
//!
//! let schemas = Greeter::schemas();
//! assert_eq!(schemas[0].method, "hello");
//! assert_eq!(schemas[0].doc, "Greets someone.");
//! assert_eq!(schemas[0].params[0].name, "name");
//! assert!(!schemas[0].params[1].required);
//! # #[cfg(feature = "schemars")]
//! assert_eq!(schemas[0].params[0].schema, serde_json::json!({"type": "string"}));
//! ```

use serde_json::{Map, Value};

/// The schemas of one entrypoint method.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodSchema {
    /// The method name.
    pub method: &'static str,
    /// Its doc comment, lines joined (empty without one).
    pub doc: String,
    /// The parameters, in order (for an event handler: its payload, named
    /// as in the code).
    pub params: Vec<ParamSchema>,
    /// The result (`T` of `Result<T, E>`); any JSON for event handlers.
    pub result: Value,
    /// The Rust types shown as any JSON, for want of a schema.
    pub missing: Vec<&'static str>,
}

/// One parameter's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSchema {
    /// The keyword name.
    pub name: &'static str,
    /// Whether a call must give it (`Option` parameters may be left out).
    pub required: bool,
    /// Its JSON Schema.
    pub schema: Value,
}

impl MethodSchema {
    /// A method's schema from its parts, as `#[service]` generates it.
    pub fn new(
        method: &'static str,
        doc: &[&str],
        params: Vec<(&'static str, bool, Probed)>,
        result: Probed,
    ) -> Self {
        let mut missing = Vec::new();
        let mut take = |probed: Probed| match probed {
            Probed::Schema(schema) => schema,
            Probed::Missing(type_name) => {
                if !missing.contains(&type_name) {
                    missing.push(type_name);
                }
                any()
            }
        };
        let params = params
            .into_iter()
            .map(|(name, required, probed)| ParamSchema {
                name,
                required,
                schema: take(probed),
            })
            .collect();
        let result = take(result);
        MethodSchema {
            method,
            doc: doc
                .iter()
                .map(|line| line.strip_prefix(' ').unwrap_or(line))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned(),
            params,
            result,
            missing,
        }
    }
}

/// Any JSON: the empty schema.
pub fn any() -> Value {
    Value::Object(Map::new())
}

/// What a [`SchemaProbe`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probed {
    /// The type's schema.
    Schema(Value),
    /// No schema for this type (its name).
    Missing(&'static str),
}

/// Asks whether `T` has a schema, by method resolution (the more specific
/// impl wins where it applies): `(&SchemaProbe::<T>::new()).probe()`
/// with both [`ViaJsonSchema`] and [`ViaAny`] in scope.
pub struct SchemaProbe<T: ?Sized>(std::marker::PhantomData<T>);

impl<T: ?Sized> std::fmt::Debug for SchemaProbe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SchemaProbe<{}>", std::any::type_name::<T>())
    }
}

impl<T: ?Sized> SchemaProbe<T> {
    /// A probe for `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        SchemaProbe(std::marker::PhantomData)
    }
}

/// The probe for types with a schema (the `schemars` feature).
pub trait ViaJsonSchema {
    /// The type's schema.
    fn probe(&self) -> Probed;
}

#[cfg(feature = "schemars")]
impl<T: schemars::JsonSchema + ?Sized> ViaJsonSchema for SchemaProbe<T> {
    fn probe(&self) -> Probed {
        let generator = schemars::generate::SchemaSettings::draft2020_12()
            .with(|settings| {
                settings.inline_subschemas = true;
                settings.meta_schema = None;
            })
            .into_generator();
        let mut schema =
            serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_else(|_| any());
        if let Value::Object(map) = &mut schema {
            // The type's name: a title of its own is noise in a message.
            map.remove("title");
        }
        Probed::Schema(schema)
    }
}

/// The fallback probe: any JSON.
pub trait ViaAny {
    /// Any JSON, with the type's name.
    fn probe(&self) -> Probed;
}

impl<T: ?Sized> ViaAny for &SchemaProbe<T> {
    fn probe(&self) -> Probed {
        Probed::Missing(std::any::type_name::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    struct Opaque;

    #[test]
    fn types_without_a_schema_are_any_json_and_named() {
        #[allow(unused_imports)]
        use super::{ViaAny as _, ViaJsonSchema as _};
        let schema = MethodSchema::new(
            "m",
            &[" One.", " Two."],
            vec![("a", true, (&SchemaProbe::<Opaque>::new()).probe())],
            (&SchemaProbe::<Opaque>::new()).probe(),
        );
        assert_eq!(schema.params[0].schema, any());
        assert_eq!(schema.result, any());
        assert_eq!(schema.doc, "One.\nTwo.");
        assert_eq!(schema.missing.len(), 1, "named once: {:?}", schema.missing);
        assert!(schema.missing[0].ends_with("Opaque"));
    }

    #[cfg(feature = "schemars")]
    #[test]
    #[allow(clippy::needless_borrow)]
    fn types_with_a_schema_get_it_inline() {
        #[allow(unused_imports)]
        use super::{ViaAny as _, ViaJsonSchema as _};
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Point {
            x: i32,
            tags: Vec<String>,
        }
        let Probed::Schema(schema) = (&SchemaProbe::<Point>::new()).probe() else {
            panic!("Point has a schema");
        };
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["x"]["type"], "integer");
        assert_eq!(schema["properties"]["tags"]["items"]["type"], "string");
        assert!(schema.get("$schema").is_none() && schema.get("title").is_none());
    }
}
