//! An SSE `?subscribe=` list: comma-separated `service.event_type`
//! patterns, each matched against a few routing keys.
#![no_main]

use enoki::gateway::EventPattern;
use enoki::transport::topic;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|list: &str| {
    for item in list.split(',').take(64) {
        if let Ok(pattern) = EventPattern::parse(item) {
            assert!(pattern.to_string().len() <= enoki::transport::MAX_NAME_LEN);
            for key in ["tick", "a.b.c", "", "greeted.x.y.z"] {
                let _ = topic::matches(&pattern.event_type, key);
            }
        }
    }
});
