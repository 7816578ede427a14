//! A WebSocket text frame from a browser, decoded as the gateway decodes
//! it, with the patterns of a subscription and the timeout of a call
//! checked as the session checks them.
#![no_main]

use enoki::gateway::EventPattern;
use enoki::gateway::protocol::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match ClientFrame::parse(text) {
        Ok(ClientFrame::Subscribe { events, .. } | ClientFrame::Unsubscribe { events, .. }) => {
            for event in events {
                let _ = EventPattern::parse(&event);
            }
        }
        Ok(ClientFrame::Call {
            timeout: Some(t), ..
        }) => {
            let _ =
                enoki::config::positive_seconds("timeout", t, enoki::config::MAX_CLIENT_SECONDS);
        }
        Ok(_) => {}
        Err(err) => assert!(!err.message.is_empty()),
    }
});
