//! A config file: nameko-style YAML with `${VAR:default}`, validated as
//! every container validates it, with the gateway's section read too.
#![no_main]

use enoki::Settings;
use enoki::gateway::GatewayConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(settings) = Settings::from_yaml_str(text, "fuzz.yaml") else {
        return;
    };
    let _ = settings.check_keys(&[], "fuzz.yaml");
    if settings.validate().is_ok() {
        // Validated settings read without surprises.
        let _ = (
            settings.max_workers(),
            settings.prefetch_count(),
            settings.heartbeat(),
        );
        let _ = (settings.grace_period(), settings.rpc_timeout());
    }
    if let Ok(config) = GatewayConfig::from_settings(&settings) {
        let _ = (
            config.request_timeout(),
            config.rpc_timeout(),
            config.sse_keepalive(),
        );
    }
    let _ = enoki::config::substitute(text);
});
