//! JSON ⇄ AMQP field tables and [`Properties`] ⇄ AMQP basic properties, as
//! py-amqp and nameko write them (`nameko-wire.md` §1.2).
//!
//! Encoding: string → long string `S`; bool → `t`; integer → int32 `I` if it
//! fits, else int64 `l` (RabbitMQ's and amq-protocol's code for a signed
//! 64-bit integer; py-amqp writes `L` for the same thing and reads both);
//! float → `d`; array → `A`; object → `F`; null → `V`.
//!
//! Decoding takes any AMQP type to its natural JSON value: byte arrays `x`
//! become a string when they are UTF-8 and an array of numbers otherwise,
//! timestamps become integers, decimals numbers.

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};
use crate::message::{Headers, Properties, shared_property};
use crate::trace_context::TraceContext;

/// A short string (at most 255 bytes), or a clear error naming `what`.
pub(crate) fn short(what: &str, value: &str) -> Result<ShortString> {
    crate::transport::check_name(what, value)?;
    ShortString::try_new(value).map_err(|_| {
        Error::Invalid(format!(
            "{what} is longer than 255 bytes ({} bytes)",
            value.len()
        ))
    })
}

/// A JSON value as an AMQP field value.
pub(crate) fn to_amqp(value: &Value) -> Result<AMQPValue> {
    Ok(match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                match i32::try_from(i) {
                    Ok(small) => AMQPValue::LongInt(small),
                    Err(_) => AMQPValue::LongLongInt(i),
                }
            } else if n.as_u64().is_some() {
                return Err(Error::Transport(format!(
                    "integer {n} does not fit an AMQP signed 64-bit field"
                )));
            } else {
                AMQPValue::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        Value::Array(items) => {
            let items = items.iter().map(to_amqp).collect::<Result<Vec<_>>>()?;
            AMQPValue::FieldArray(FieldArray::from(items))
        }
        Value::Object(map) => AMQPValue::FieldTable(to_table(map)?),
    })
}

/// A JSON object as an AMQP field table.
pub(crate) fn to_table(map: &Map<String, Value>) -> Result<FieldTable> {
    let mut table = FieldTable::default();
    for (key, value) in map {
        table.insert(short("header name", key)?, to_amqp(value)?);
    }
    Ok(table)
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
    }
}

/// An AMQP field value as JSON.
pub(crate) fn from_amqp(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => Value::from(*i),
        AMQPValue::ShortShortUInt(i) => Value::from(*i),
        AMQPValue::ShortInt(i) => Value::from(*i),
        AMQPValue::ShortUInt(i) => Value::from(*i),
        AMQPValue::LongInt(i) => Value::from(*i),
        AMQPValue::LongUInt(i) => Value::from(*i),
        AMQPValue::LongLongInt(i) => Value::from(*i),
        AMQPValue::Float(f) => float(f64::from(*f)),
        AMQPValue::Double(f) => float(*f),
        AMQPValue::DecimalValue(d) => float(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(from_amqp).collect())
        }
        AMQPValue::Timestamp(t) => Value::from(*t),
        AMQPValue::FieldTable(table) => Value::Object(from_table(table)),
        AMQPValue::ByteArray(bytes) => bytes_value(bytes.as_slice()),
        AMQPValue::Void => Value::Null,
    }
}

/// An AMQP field table as a JSON object.
pub(crate) fn from_table(table: &FieldTable) -> Map<String, Value> {
    table
        .into_iter()
        .map(|(key, value)| (key.as_str().to_owned(), from_amqp(value)))
        .collect()
}

/// [`Properties`] as AMQP basic properties. A headers table is always sent,
/// even when empty, as nameko does; the trace context goes into it, over
/// any headers of the same names (see [`crate::trace_context`]).
pub(crate) fn to_basic_properties(props: &Properties) -> Result<BasicProperties> {
    let mut out = BasicProperties::default();
    if let Some(v) = &props.content_type {
        out = out.with_content_type(short("content_type", v)?);
    }
    if let Some(v) = &props.content_encoding {
        out = out.with_content_encoding(short("content_encoding", v)?);
    }
    let mut headers = to_table(&props.headers)?;
    if let Some(trace) = &props.trace {
        for (key, value) in trace.headers() {
            headers.insert(ShortString::from(key), AMQPValue::LongString(value.into()));
        }
    }
    out = out.with_headers(headers);
    if let Some(v) = props.delivery_mode {
        out = out.with_delivery_mode(v);
    }
    if let Some(v) = props.priority {
        out = out.with_priority(v);
    }
    if let Some(v) = &props.correlation_id {
        out = out.with_correlation_id(short("correlation_id", v)?);
    }
    if let Some(v) = &props.reply_to {
        out = out.with_reply_to(short("reply_to", v)?);
    }
    if let Some(v) = props.expiration {
        // At least 1 ms: "0" would expire the message unless a consumer
        // is ready at once.
        let ms = v.as_millis().max(1);
        out = out.with_expiration(ShortString::from(ms.to_string()));
    }
    Ok(out)
}

/// AMQP basic properties as [`Properties`]; the trace context headers are
/// taken out of the headers (see [`crate::trace_context`]).
pub(crate) fn from_basic_properties(props: &BasicProperties) -> Properties {
    let shared = |v: &Option<ShortString>| v.as_ref().map(|s| shared_property(s.as_str()));
    let string = |v: &Option<ShortString>| v.as_ref().map(|s| Arc::from(s.as_str()));
    let mut headers = props.headers().as_ref().map(from_table).unwrap_or_default();
    let trace = TraceContext::take_from(&mut headers).map(Arc::new);
    Properties {
        content_type: shared(props.content_type()),
        content_encoding: shared(props.content_encoding()),
        delivery_mode: *props.delivery_mode(),
        priority: *props.priority(),
        correlation_id: string(props.correlation_id()),
        reply_to: string(props.reply_to()),
        headers: Headers::from(headers),
        expiration: props
            .expiration()
            .as_ref()
            .and_then(|ms| ms.as_str().parse().ok())
            .map(std::time::Duration::from_millis),
        trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::basic::{gen_properties, parse_properties};

    /// Real nameko 2.14.1 messages (a copy of `shared/nameko-captures`).
    const CAPTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nameko-captures"
    );

    /// The properties of a content-header frame payload: class id (2),
    /// weight (2), body size (8), then flags and properties.
    fn parse_payload(bytes: &[u8]) -> BasicProperties {
        let (rest, props) = parse_properties(&bytes[12..]).expect("valid properties");
        assert!(rest.is_empty(), "trailing bytes after properties");
        props
    }

    fn encode(props: &BasicProperties) -> Vec<u8> {
        let ctx = gen_properties(props)(Vec::new().into()).expect("serialisable properties");
        ctx.write
    }

    /// The AMQP type codes of a table, recursively, keyed by header name.
    fn types(table: &FieldTable) -> Vec<(String, String)> {
        fn code(v: &AMQPValue) -> String {
            match v {
                AMQPValue::FieldArray(items) => {
                    let inner: Vec<String> = items.as_slice().iter().map(code).collect();
                    format!("A[{}]", inner.join(","))
                }
                AMQPValue::FieldTable(t) => format!("F{:?}", types(t)),
                other => other.get_type().get_id().to_string(),
            }
        }
        table
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), code(v)))
            .collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn captures() -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(CAPTURES) else {
            return out;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json")
                && path.file_name().is_some_and(|n| n != "all_messages.json")
            {
                let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                if json.get("content_header_frame_payload_hex").is_some() {
                    out.push((path.display().to_string(), json));
                }
            }
        }
        out
    }

    #[test]
    fn decodes_and_reencodes_every_nameko_capture() {
        let captures = captures();
        assert!(
            captures.len() >= 10,
            "nameko captures missing from {CAPTURES}"
        );
        for (name, capture) in captures {
            let bytes = hex(capture["content_header_frame_payload_hex"]
                .as_str()
                .unwrap());
            let golden = parse_payload(&bytes);
            let decoded = from_basic_properties(&golden);

            let props = &capture["properties"];
            let field = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_owned);
            let byte = |k: &str| props.get(k).and_then(Value::as_u64).map(|v| v as u8);
            assert_eq!(
                decoded.content_type.as_deref(),
                field("content_type").as_deref(),
                "{name}"
            );
            assert_eq!(
                decoded.content_encoding.as_deref(),
                field("content_encoding").as_deref(),
                "{name}"
            );
            assert_eq!(
                decoded.correlation_id.as_deref(),
                field("correlation_id").as_deref(),
                "{name}"
            );
            assert_eq!(
                decoded.reply_to.as_deref(),
                field("reply_to").as_deref(),
                "{name}"
            );
            assert_eq!(decoded.delivery_mode, byte("delivery_mode"), "{name}");
            assert_eq!(decoded.priority, byte("priority"), "{name}");
            assert_eq!(
                Value::Object(decoded.headers.clone().into_map()),
                capture["headers"],
                "{name}"
            );

            // Our encoding of the same values: same flags, same fields, same
            // AMQP types (the table is sorted by key, so the order may differ).
            let ours = to_basic_properties(&decoded).unwrap();
            let reparsed = parse_payload(&[&bytes[..12], &encode(&ours)].concat());
            assert_eq!(bytes[12..14], encode(&ours)[..2], "{name}: property flags");
            assert_eq!(from_basic_properties(&reparsed), decoded, "{name}");
            let golden_headers = golden.headers().clone().unwrap_or_default();
            let our_headers = reparsed.headers().clone().unwrap_or_default();
            let mut golden_types = types(&golden_headers);
            golden_types.sort();
            assert_eq!(types(&our_headers), golden_types, "{name}: header types");
        }
    }

    #[test]
    fn call_id_stack_and_context_types_match_nameko() {
        let headers = serde_json::json!({
            "nameko.call_id_stack": ["standalone_rpc_proxy.call.1", "svc.m.2"],
            "nameko.user_id": 42,
            "nameko.language": "en",
            "big": 5_000_000_000_i64,
            "neg": -7,
            "flag": true,
            "ratio": 0.5,
            "nothing": null,
            "nested": {"a": [1, "x"]},
        });
        let table = to_table(headers.as_object().unwrap()).unwrap();
        let t: std::collections::HashMap<_, _> = types(&table).into_iter().collect();
        assert_eq!(t["nameko.call_id_stack"], "A[S,S]");
        assert_eq!(t["nameko.user_id"], "I");
        assert_eq!(t["nameko.language"], "S");
        assert_eq!(t["big"], "l");
        assert_eq!(t["neg"], "I");
        assert_eq!(t["flag"], "t");
        assert_eq!(t["ratio"], "d");
        assert_eq!(t["nothing"], "V");
        assert!(t["nested"].starts_with('F'));
        assert_eq!(Value::Object(from_table(&table)), headers);
    }

    #[test]
    fn x_expires_goes_out_as_int32() {
        let mut args = Headers::new();
        args.insert("x-expires".into(), 300_000.into());
        let table = to_table(&args).unwrap();
        assert_eq!(
            table.inner().get("x-expires"),
            Some(&AMQPValue::LongInt(300_000))
        );
    }

    #[test]
    fn decodes_other_amqp_types_naturally() {
        use lapin::types::{ByteArray, DecimalValue};
        assert_eq!(
            from_amqp(&AMQPValue::ByteArray(ByteArray::from(&b"hi"[..]))),
            "hi"
        );
        assert_eq!(
            from_amqp(&AMQPValue::ByteArray(ByteArray::from(vec![0xff, 1]))),
            serde_json::json!([255, 1])
        );
        assert_eq!(
            from_amqp(&AMQPValue::Timestamp(1_700_000_000)),
            1_700_000_000_u64
        );
        assert_eq!(
            from_amqp(&AMQPValue::DecimalValue(DecimalValue {
                scale: 3,
                value: 1234
            })),
            1.234
        );
        assert_eq!(from_amqp(&AMQPValue::ShortString("s".into())), "s");
        assert_eq!(from_amqp(&AMQPValue::ShortInt(-3)), -3);
        assert_eq!(from_amqp(&AMQPValue::Float(0.5)), 0.5);
    }

    #[test]
    fn empty_headers_are_still_sent() {
        let props = to_basic_properties(&Properties::default()).unwrap();
        assert_eq!(props.headers(), &Some(FieldTable::default()));
    }

    #[test]
    fn the_trace_context_travels_as_context_data_and_as_bare_headers() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut props = Properties {
            trace: TraceContext::parse(traceparent, Some("a=b")).map(Arc::new),
            ..Properties::default()
        };
        props.headers.insert("nameko.language".into(), "en".into());
        // A stale copy in the headers is written over.
        props.headers.insert("traceparent".into(), "junk".into());
        let encoded = to_basic_properties(&props).unwrap();
        // As nameko-opentelemetry sends them: long strings.
        let table = encoded.headers().clone().unwrap();
        for (key, value) in [
            ("traceparent", traceparent),
            ("nameko.traceparent", traceparent),
            ("tracestate", "a=b"),
            ("nameko.tracestate", "a=b"),
        ] {
            assert_eq!(
                table.inner().get(key),
                Some(&AMQPValue::LongString(value.into())),
                "{key}"
            );
        }
        let decoded = from_basic_properties(&encoded);
        assert_eq!(decoded.trace, props.trace);
        assert_eq!(
            Value::Object(decoded.headers.into_map()),
            serde_json::json!({ "nameko.language": "en" }),
            "the trace context is taken out of the headers"
        );
        // From Python nameko: the prefixed form only, or one that does not
        // parse (ignored, and not passed on as context data).
        for (headers, expected) in [
            (
                serde_json::json!({ "nameko.traceparent": traceparent }),
                true,
            ),
            (
                serde_json::json!({ "nameko.traceparent": "00-1-2-01" }),
                false,
            ),
        ] {
            let table = to_table(headers.as_object().unwrap()).unwrap();
            let decoded = from_basic_properties(&BasicProperties::default().with_headers(table));
            assert_eq!(decoded.trace.is_some(), expected, "{headers}");
            assert!(decoded.headers.is_empty());
        }
        // None, and nothing is written.
        let plain = to_basic_properties(&Properties::default()).unwrap();
        assert_eq!(from_basic_properties(&plain).trace, None);
    }

    #[test]
    fn expiration_travels_as_milliseconds() {
        let props = Properties {
            expiration: Some(std::time::Duration::from_millis(1500)),
            ..Properties::default()
        };
        let encoded = to_basic_properties(&props).unwrap();
        assert_eq!(encoded.expiration().as_ref().unwrap().as_str(), "1500");
        assert_eq!(from_basic_properties(&encoded).expiration, props.expiration);
        // Below a millisecond still expires, never "0" (expire unless a
        // consumer is ready) by rounding.
        let tiny = Properties {
            expiration: Some(std::time::Duration::from_micros(10)),
            ..Properties::default()
        };
        let encoded = to_basic_properties(&tiny).unwrap();
        assert_eq!(encoded.expiration().as_ref().unwrap().as_str(), "1");
        // A value that is not a number (another client's) is ignored.
        let odd = BasicProperties::default().with_expiration("soon".into());
        assert_eq!(from_basic_properties(&odd).expiration, None);
    }

    #[test]
    fn overlong_short_strings_are_errors_not_panics() {
        let props = Properties {
            correlation_id: Some("x".repeat(300).into()),
            ..Properties::default()
        };
        assert!(matches!(
            to_basic_properties(&props),
            Err(Error::Invalid(_))
        ));
    }
}
