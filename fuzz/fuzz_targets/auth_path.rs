//! A request path as auth sees it: normalising never panics, leaves no
//! empty segment, and keeps the generic RPC endpoint's segments apart.
#![no_main]

use enoki::gateway::auth::{glob, normalize_path};
use enoki::gateway::paths;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, &str)| {
    let (path, service, method) = input;
    let once = normalize_path(path);
    assert!(once.starts_with('/'));
    assert!(
        once == "/" || !once.contains("//") && !once.ends_with('/'),
        "{path:?} -> {once}"
    );
    let _ = glob("/rpc/*/x", &once);
    // A resolved service.method stays two segments whatever it contains.
    let rpc = normalize_path(&paths::rpc(service, method));
    if !service.is_empty() && !method.is_empty() {
        assert_eq!(rpc.split('/').count(), 4, "{service:?}.{method:?} -> {rpc}");
    }
});
