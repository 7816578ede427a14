//! Property tests of the pure functions that read outside input, in the
//! normal suite (the fuzz targets in `fuzz/` go deeper): none panics on
//! any input, and each keeps its promise.

use enoki::args::{Args, Param};
use enoki::config::{Settings, positive_seconds, substitute};
use enoki::gateway::EventPattern;
use enoki::gateway::auth::normalize_path;
use enoki::gateway::paths;
use enoki::gateway::protocol::ClientFrame;
use enoki::message::{ReplyBody, RequestBody};
use proptest::prelude::*;

const PARAMS: &[Param] = &[
    Param {
        name: "a",
        required: true,
    },
    Param {
        name: "b",
        required: false,
    },
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = RequestBody::parse(&body);
        let _ = ReplyBody::decode(&body);
        if let Ok(args) = Args::bind("m", &body, PARAMS) {
            let _ = args.get::<serde_json::Value>(0);
        }
    }

    #[test]
    fn json_shaped_bodies_bind_or_say_why(
        args in proptest::collection::vec(any::<i64>(), 0..4),
        key in "[a-c]",
    ) {
        let body = serde_json::json!({"args": args, "kwargs": {key.clone(): 1}}).to_string();
        match Args::bind("m", body.as_bytes(), PARAMS) {
            Ok(_) => prop_assert!(args.len() <= 2),
            Err(err) => prop_assert_eq!(err.exc_type, "IncorrectSignature"),
        }
    }

    /// The one-pass request parser reads what a plain parse into a JSON
    /// value reads, and refuses what it would refuse, for the same reason.
    #[test]
    fn requests_parse_as_their_json_says(
        top in json_value(2),
        args in json_value(3),
        kwargs in json_value(3),
        present in 0u8..4,
        extra in proptest::option::of(json_value(2)),
    ) {
        let mut object = serde_json::Map::new();
        if present & 1 == 1 {
            object.insert("args".into(), args);
        }
        if present & 2 == 2 {
            object.insert("kwargs".into(), kwargs);
        }
        if let Some(extra) = extra {
            object.insert("other".into(), extra);
        }
        let mut body = serde_json::Value::Object(object);
        if present == 0 && !top.is_object() {
            body = top;
        }
        let text = body.to_string();
        let parsed = RequestBody::parse(text.as_bytes());
        let expected: Result<(Vec<serde_json::Value>, serde_json::Map<String, serde_json::Value>), &str> =
            match &body {
                serde_json::Value::Object(map) => match (map.get("args"), map.get("kwargs")) {
                    (Some(serde_json::Value::Array(a)), Some(serde_json::Value::Object(k))) => {
                        Ok((a.clone(), k.clone()))
                    }
                    (Some(_), Some(serde_json::Value::Object(_))) => Err("`args` must be"),
                    (Some(serde_json::Value::Array(_)), Some(_)) => Err("`kwargs` must be"),
                    (Some(_), Some(_)) => Err("`args` must be"),
                    _ => Err("missing"),
                },
                _ => Err("not a JSON object"),
            };
        match (parsed, expected) {
            (Ok(request), Ok((args, kwargs))) => {
                let got: Vec<serde_json::Value> = request
                    .args
                    .iter()
                    .map(|raw| serde_json::from_str(raw.get()).unwrap())
                    .collect();
                prop_assert_eq!(got, args);
                let got: serde_json::Map<String, serde_json::Value> = request
                    .kwargs
                    .iter()
                    .map(|(k, raw)| (k.to_string(), serde_json::from_str(raw.get()).unwrap()))
                    .collect();
                prop_assert_eq!(got, kwargs);
            }
            (Err(err), Err(why)) => {
                prop_assert_eq!(&err.exc_type, "MalformedRequest");
                prop_assert!(err.value.contains(why), "{} does not say {}", err.value, why);
            }
            (got, want) => prop_assert!(false, "{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn paths_normalise_to_single_slashes(path in ".{0,64}") {
        let normal = normalize_path(&path);
        prop_assert!(normal.starts_with('/'));
        prop_assert!(normal == "/" || (!normal.contains("//") && !normal.ends_with('/')));
    }

    #[test]
    fn resolved_targets_stay_two_segments(service in ".{1,16}", method in ".{1,16}") {
        let normal = normalize_path(&paths::rpc(&service, &method));
        prop_assert_eq!(normal.split('/').count(), 4, "{}", normal);
    }

    #[test]
    fn patterns_parse_or_refuse_within_bounds(text in ".{0,300}") {
        if let Ok(pattern) = EventPattern::parse(&text) {
            prop_assert!(pattern.to_string().len() <= 255);
            prop_assert!(!pattern.service.contains(['*', '#', '.']));
        }
    }

    #[test]
    fn frames_parse_or_keep_their_id(text in ".{0,128}", id in any::<u32>()) {
        let _ = ClientFrame::parse(&text);
        let frame = format!(r#"{{"type": "nonsense", "id": {id}}}"#);
        let err = ClientFrame::parse(&frame).unwrap_err();
        prop_assert_eq!(err.id, serde_json::json!(id));
    }

    #[test]
    fn durations_are_checked(secs in any::<f64>()) {
        match positive_seconds("t", secs, 3600.0) {
            Ok(d) => prop_assert!(secs > 0.0 && secs <= 3600.0 && d.as_secs_f64() <= 3600.0),
            Err(_) => prop_assert!(!(secs > 0.0 && secs <= 3600.0)),
        }
    }

    #[test]
    fn config_text_never_panics(text in ".{0,200}") {
        let _ = substitute(&text);
        if let Ok(settings) = Settings::from_yaml_str(&text, "p.yaml") {
            let _ = settings.validate();
        }
    }
}

/// Any JSON value, nested at most `depth` deep, with keys that need
/// escaping now and then.
fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z\\\"\u{e9}]{0,6}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-c\\\"]{1,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
