//! An RPC request or reply body from the broker: nameko's
//! `{"args": [...], "kwargs": {...}}` bound to a signature, and
//! `{"result", "error"}` replies.
#![no_main]

use enoki::args::{Args, Param};
use enoki::message::{ReplyBody, RequestBody};
use libfuzzer_sys::fuzz_target;

const PARAMS: &[Param] = &[
    Param {
        name: "name",
        required: true,
    },
    Param {
        name: "greeting",
        required: false,
    },
];

fuzz_target!(|body: &[u8]| {
    if RequestBody::parse(body).is_ok() {
        if let Ok(args) = Args::bind("hello", body, PARAMS) {
            let _ = args.get::<String>(0);
            let _ = args.get::<Option<String>>(1);
            let _ = args.get::<serde_json::Value>(1);
        }
    }
    let _ = ReplyBody::decode(body);
    let _ = enoki::args::event_payload::<serde_json::Value>("on_event", body);
});
