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
        let delays = settings.retry_delays();
        assert!(delays.len() <= 32 && delays.iter().all(|d| !d.is_zero()));
        let _ = (settings.retry_limit(), settings.queue_delivery_limit());
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
