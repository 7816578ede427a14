//! A route file, loaded as the gateway loads `routes/*.yaml`; the routes it
//! accepts are mounted on an axum router, which must not panic (axum does
//! on routes that conflict).
#![no_main]

use axum::routing::{MethodFilter, MethodRouter, get};
use enoki::gateway::RouteTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let mut table = RouteTable::default();
    if table.add_yaml(text, "fuzz.yaml").is_err() {
        return;
    }
    let _ = enoki::gateway::openapi::document(&table, &Default::default());
    let mut app: axum::Router = axum::Router::new().route("/healthz", get(|| async { "ok" }));
    for (path, group) in table.by_path() {
        let mut methods: MethodRouter = MethodRouter::new();
        for route in group {
            let filter = MethodFilter::try_from(route.method.clone()).expect("checked on load");
            methods = methods.on(filter, || async { "routed" });
        }
        app = app.route(path, methods);
    }
    drop(app);
});
