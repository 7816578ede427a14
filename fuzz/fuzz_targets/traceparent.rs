//! The W3C `traceparent` reader (HTTP and message headers) against a
//! plain reading of the spec (split on `-`, check each field): they must
//! agree on every input, and a version 00 value it accepts reads back the
//! same once written again; `TraceContext::parse` (what a message
//! carries) reads the same, within its bounds, and writes the same.
#![no_main]

use enoki::__fuzz::traceparent;
use enoki::trace_context::{MAX_TRACEPARENT_LEN, MAX_TRACESTATE_LEN, TraceContext};
use libfuzzer_sys::fuzz_target;

/// `hex` as bytes, when it is exactly `len` lowercase hex digits.
fn lower_hex(hex: &str, len: usize) -> Option<Vec<u8>> {
    if hex.len() != len || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..len)
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

fn reference(text: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let text = text.trim();
    let mut fields = text.splitn(5, '-');
    let version = lower_hex(fields.next()?, 2)?[0];
    let trace: [u8; 16] = lower_hex(fields.next()?, 32)?.try_into().ok()?;
    let parent: [u8; 8] = lower_hex(fields.next()?, 16)?.try_into().ok()?;
    let flags = lower_hex(fields.next()?, 2)?[0];
    let rest = fields.next();
    let rest_ok = match version {
        0 => rest.is_none(),
        0xff => false,
        // A later version may go on after a dash (even with nothing).
        _ => true,
    };
    (rest_ok && trace != [0; 16] && parent != [0; 8]).then_some((trace, parent, flags & 1 == 1))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|text: &str| {
    let got = traceparent(text);
    assert_eq!(got, reference(text), "{text:?}");
    if let Some((trace, parent, sampled)) = got {
        let written = format!("00-{}-{}-0{}", hex(&trace), hex(&parent), u8::from(sampled));
        assert_eq!(traceparent(&written), got, "{written}");
    }
    // The message's trace context: the same reading, bounded, written as
    // the reference writes it; the same text as a tracestate is kept only
    // when it is short, printable ASCII.
    let context = TraceContext::parse(text, Some(text));
    assert_eq!(
        context.as_ref().map(|c| (c.trace_id, c.parent_id, c.sampled)),
        got.filter(|_| text.len() <= MAX_TRACEPARENT_LEN),
        "{text:?}"
    );
    if let Some(context) = context {
        let (trace, parent, sampled) = got.unwrap();
        let written = format!("00-{}-{}-0{}", hex(&trace), hex(&parent), u8::from(sampled));
        assert_eq!(context.traceparent(), written);
        if let Some(state) = context.tracestate() {
            assert!(!state.is_empty() && state.len() <= MAX_TRACESTATE_LEN);
            assert!(state.bytes().all(|b| (0x20..0x7f).contains(&b)), "{state:?}");
        }
    }
});
