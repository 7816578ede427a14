//! The W3C trace context a message carries: [`TraceContext`].
//!
//! A message carries its trace context as a typed field of its
//! [`Properties`](crate::message::Properties), not as header strings: in
//! process (the embedded transport) it is passed on as it is, without being
//! formatted, copied into a header table or parsed again. A transport that
//! puts messages on a wire writes it as nameko's OpenTelemetry
//! instrumentation does, twice: as context data (`nameko.traceparent`,
//! `nameko.tracestate`) and as the bare `traceparent` and `tracestate`
//! headers; reading, it takes either (the bare one first) out of the table.
//!
//! A worker sees its message's trace context as
//! [`WorkerCtx::trace`](crate::WorkerCtx::trace), and as `traceparent` and
//! `tracestate` context data (as nameko's Python workers do). The calls and
//! events it makes carry it on (or their own publish span's, when spans are
//! exported).
//!
//! Everything here reads input from outside, so it is bounded and strict:
//! a `traceparent` is at most [`MAX_TRACEPARENT_LEN`] bytes and must be a
//! valid one (fuzzed: `fuzz/fuzz_targets/traceparent.rs`), a `tracestate`
//! at most [`MAX_TRACESTATE_LEN`] printable ASCII bytes. What does not
//! parse is ignored: the message then carries no trace context, and a new
//! trace starts where spans are made.
//!
//! ```
//! use enoki::trace_context::TraceContext;
//!
//! let text = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
//! let context = TraceContext::parse(text, Some("vendor=opaque")).unwrap();
//! assert!(context.sampled);
//! assert_eq!(context.traceparent(), text);
//! assert_eq!(context.tracestate(), Some("vendor=opaque"));
//! assert_eq!(TraceContext::parse("00-not-a-traceparent", None), None);
//! ```

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::names::{TRACEPARENT, TRACESTATE};

/// The context-data header of the `traceparent`: `nameko.traceparent`.
pub const PREFIXED_TRACEPARENT: &str = "nameko.traceparent";
/// The context-data header of the `tracestate`: `nameko.tracestate`.
pub const PREFIXED_TRACESTATE: &str = "nameko.tracestate";
/// The longest `traceparent` read (version 00 is 55 bytes; a later version
/// may carry more after them).
pub const MAX_TRACEPARENT_LEN: usize = 256;
/// The longest `tracestate` kept (as OpenTelemetry's propagator: 32
/// members of a few bytes each).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// The length of a version 00 `traceparent`.
pub(crate) const TRACEPARENT_LEN: usize = 55;

/// A W3C trace context: the trace, the span that sent the message (its
/// parent), the sampled flag, and the vendors' `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace id (not all zero).
    pub trace_id: [u8; 16],
    /// The sending span's id (not all zero).
    pub parent_id: [u8; 8],
    /// The sampled flag (the only flag kept).
    pub sampled: bool,
    /// The `tracestate`, when there is one (not empty).
    pub state: Option<Arc<str>>,
}

impl TraceContext {
    /// Reads a `traceparent` and its `tracestate`: `None` when the
    /// `traceparent` is not a valid one (see the [module docs](self)); a
    /// `tracestate` that is empty, too long or not printable ASCII is
    /// dropped.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        if traceparent.len() > MAX_TRACEPARENT_LEN {
            return None;
        }
        let parent = parse_traceparent(traceparent)?;
        let state = tracestate
            .map(str::trim)
            .filter(|state| {
                !state.is_empty()
                    && state.len() <= MAX_TRACESTATE_LEN
                    && state.bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .map(Arc::from);
        Some(TraceContext {
            trace_id: parent.trace_id,
            parent_id: parent.parent_id,
            sampled: parent.sampled,
            state,
        })
    }

    /// As a W3C `traceparent` (version 00, lowercase hex, the sampled flag
    /// only): `00-<trace id>-<parent id>-<flags>`.
    pub fn traceparent(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        fn hex(out: &mut [u8], bytes: &[u8]) {
            for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
                pair[0] = DIGITS[usize::from(byte >> 4)];
                pair[1] = DIGITS[usize::from(byte & 0xf)];
            }
        }
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex(&mut out[3..35], &self.trace_id);
        hex(&mut out[36..52], &self.parent_id);
        out[54] = if self.sampled { b'1' } else { b'0' };
        std::str::from_utf8(&out)
            .expect("hex digits and dashes are ASCII")
            .to_owned()
    }

    /// The `tracestate`, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The trace context in headers (or context data): the bare
    /// `traceparent` and `tracestate` when the `traceparent` is valid, else
    /// the `nameko.`-prefixed pair.
    pub fn from_headers(headers: &Map<String, Value>) -> Option<Self> {
        let text = |key: &str| headers.get(key).and_then(Value::as_str);
        text(TRACEPARENT)
            .and_then(|traceparent| Self::parse(traceparent, text(TRACESTATE)))
            .or_else(|| {
                text(PREFIXED_TRACEPARENT)
                    .and_then(|traceparent| Self::parse(traceparent, text(PREFIXED_TRACESTATE)))
            })
    }

    /// Takes the trace context out of a table read off the wire: the four
    /// headers are removed (valid or not), and the context they carried,
    /// if valid, returned ([`from_headers`](Self::from_headers)). What a
    /// transport of its own does with the headers it receives, as
    /// [`headers`](Self::headers) gives what it sends.
    ///
    /// ```
    /// use enoki::trace_context::TraceContext;
    /// use serde_json::json;
    ///
    /// let mut headers = json!({
    ///     "nameko.traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    ///     "nameko.language": "en",
    /// });
    /// let headers = headers.as_object_mut().unwrap();
    /// let trace = TraceContext::take_from(headers).unwrap();
    /// assert!(!trace.sampled);
    /// assert_eq!(headers.len(), 1);
    /// ```
    pub fn take_from(headers: &mut Map<String, Value>) -> Option<Self> {
        if !HEADERS.iter().any(|key| headers.contains_key(*key)) {
            return None;
        }
        let context = Self::from_headers(headers);
        for key in HEADERS {
            headers.remove(key);
        }
        context
    }

    /// The four headers that carry it on the wire, with their values:
    /// `traceparent`, `nameko.traceparent`, then (when there is one)
    /// `tracestate` and `nameko.tracestate`.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        let traceparent = self.traceparent();
        let state = self.tracestate();
        [
            (TRACEPARENT, Some(traceparent.clone())),
            (PREFIXED_TRACEPARENT, Some(traceparent)),
            (TRACESTATE, state.map(str::to_owned)),
            (PREFIXED_TRACESTATE, state.map(str::to_owned)),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
    }

    /// Adds it to context data as `traceparent` (and `tracestate`).
    pub(crate) fn add_to_data(&self, data: &mut Map<String, Value>) {
        data.insert(TRACEPARENT.to_owned(), Value::String(self.traceparent()));
        if let Some(state) = self.tracestate() {
            data.insert(TRACESTATE.to_owned(), Value::String(state.to_owned()));
        }
    }
}

/// The headers of a trace context on the wire.
const HEADERS: [&str; 4] = [
    TRACEPARENT,
    PREFIXED_TRACEPARENT,
    TRACESTATE,
    PREFIXED_TRACESTATE,
];

/// Whether context-data key `key` (without its `nameko.` prefix) is part
/// of the trace context rather than context data of its own.
pub(crate) fn is_trace_key(key: &str) -> bool {
    key == TRACEPARENT || key == TRACESTATE
}

/// A W3C `traceparent`, read ([`parse_traceparent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    /// The trace id (not all zero).
    pub(crate) trace_id: [u8; 16],
    /// The caller's span id (not all zero).
    pub(crate) parent_id: [u8; 8],
    /// The sampled flag (the only flag kept).
    pub(crate) sampled: bool,
}

/// The value of each lowercase hex digit, by byte; `0xff` for the rest.
static HEX: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut digit = 0u8;
    while digit < 16 {
        let c = if digit < 10 {
            b'0' + digit
        } else {
            b'a' + digit - 10
        };
        table[c as usize] = digit;
        digit += 1;
    }
    table
};

/// Parses a W3C `traceparent` (from outside: an HTTP header or a
/// message's): two hex digits of version (not `ff`), 32 of trace id and 16
/// of parent id (lowercase, not all zero), two of flags (only the sampled
/// flag is kept); version 00 has nothing after them, a later version may
/// (after a `-`). Surrounding whitespace is ignored. `None` when it is not
/// one. Fuzzed (`fuzz/fuzz_targets/traceparent.rs`).
pub(crate) fn parse_traceparent(text: &str) -> Option<TraceParent> {
    /// `N` bytes from `2 * N` lowercase hex digits.
    fn bytes<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
        if hex.len() != 2 * N {
            return None;
        }
        let mut out = [0u8; N];
        // Any byte not a digit has a high bit in its table entry.
        let mut not_hex = 0u8;
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let (high, low) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
            not_hex |= high | low;
            *byte = (high << 4) | (low & 0xf);
        }
        (not_hex & 0xf0 == 0).then_some(out)
    }
    let text = text.trim().as_bytes();
    let (head, rest) = text.split_at_checked(TRACEPARENT_LEN)?;
    let [version] = bytes::<1>(head.get(..2)?)?;
    let valid_rest = match version {
        0 => rest.is_empty(),
        0xff => false,
        _ => rest.is_empty() || rest.first() == Some(&b'-'),
    };
    if !valid_rest || head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
        return None;
    }
    let trace_id = bytes::<16>(&head[3..35])?;
    let parent_id = bytes::<8>(&head[36..52])?;
    let [flags] = bytes::<1>(&head[53..55])?;
    (trace_id != [0; 16] && parent_id != [0; 8]).then_some(TraceParent {
        trace_id,
        parent_id,
        sampled: flags & 1 == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::HEADER_PREFIX;
    use serde_json::json;

    const ID: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";

    fn traceparent(flags: &str) -> String {
        format!("00-{ID}-{PARENT}-{flags}")
    }

    #[test]
    fn the_prefixed_headers_are_context_data() {
        assert_eq!(
            format!("{HEADER_PREFIX}{TRACEPARENT}"),
            PREFIXED_TRACEPARENT
        );
        assert_eq!(format!("{HEADER_PREFIX}{TRACESTATE}"), PREFIXED_TRACESTATE);
    }

    #[test]
    fn a_traceparent_is_written_back_as_it_was_read() {
        for flags in ["00", "01"] {
            let text = traceparent(flags);
            let context = TraceContext::parse(&text, None).unwrap();
            assert_eq!(context.traceparent(), text);
            assert_eq!(context.sampled, flags == "01");
        }
        // Unknown flags are dropped, later versions written as 00.
        let context = TraceContext::parse(&format!("cc-{ID}-{PARENT}-ff-more"), None).unwrap();
        assert_eq!(context.traceparent(), traceparent("01"));
    }

    #[test]
    fn bad_input_is_bounded_and_ignored() {
        let long = format!("{}{}", traceparent("01"), " ".repeat(MAX_TRACEPARENT_LEN));
        assert_eq!(TraceContext::parse(&long, None), None, "too long");
        assert_eq!(TraceContext::parse("00-1-2-01", None), None);
        let text = traceparent("01");
        for state in [
            String::new(),
            "   ".to_owned(),
            "a=b\nc=d".to_owned(),
            "a=é".to_owned(),
            "a=".repeat(MAX_TRACESTATE_LEN),
        ] {
            let context = TraceContext::parse(&text, Some(&state)).unwrap();
            assert_eq!(context.state, None, "{state:?}");
        }
        let context = TraceContext::parse(&text, Some(" a=b,c=d ")).unwrap();
        assert_eq!(context.tracestate(), Some("a=b,c=d"));
    }

    #[test]
    fn either_form_is_read_the_bare_one_first() {
        let other = format!("00-{ID}-{}-00", "1".repeat(16));
        let headers = json!({
            "nameko.traceparent": other,
            "nameko.tracestate": "p=1",
            "traceparent": traceparent("01"),
            "tracestate": "b=1",
        });
        let context = TraceContext::from_headers(headers.as_object().unwrap()).unwrap();
        assert_eq!(context.traceparent(), traceparent("01"));
        assert_eq!(context.tracestate(), Some("b=1"));
        // A bare one that does not parse gives way to the prefixed one.
        let headers = json!({ "nameko.traceparent": other, "traceparent": "junk" });
        let context = TraceContext::from_headers(headers.as_object().unwrap()).unwrap();
        assert_eq!(context.traceparent(), other);
        assert_eq!(context.state, None);
        assert_eq!(TraceContext::from_headers(&Map::new()), None);
    }

    #[test]
    fn taking_it_from_a_table_removes_all_four_headers() {
        let mut headers = json!({
            "nameko.traceparent": traceparent("00"),
            "traceparent": "junk",
            "tracestate": "b=1",
            "nameko.language": "en",
        })
        .as_object()
        .unwrap()
        .clone();
        let context = TraceContext::take_from(&mut headers).unwrap();
        assert_eq!(context.traceparent(), traceparent("00"));
        assert_eq!(Value::Object(headers), json!({ "nameko.language": "en" }));
        let mut junk = json!({ "traceparent": "junk" })
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(TraceContext::take_from(&mut junk), None);
        assert!(junk.is_empty());
    }

    #[test]
    fn it_goes_out_in_both_forms() {
        let context = TraceContext::parse(&traceparent("01"), Some("a=b")).unwrap();
        let written: Map<String, Value> = context
            .headers()
            .map(|(key, value)| (key.to_owned(), Value::String(value)))
            .collect();
        assert_eq!(
            Value::Object(written.clone()),
            json!({
                "traceparent": traceparent("01"),
                "nameko.traceparent": traceparent("01"),
                "tracestate": "a=b",
                "nameko.tracestate": "a=b",
            })
        );
        assert_eq!(TraceContext::from_headers(&written), Some(context.clone()));
        let bare = TraceContext::parse(&traceparent("00"), None).unwrap();
        assert_eq!(bare.headers().count(), 2);
        let mut data = Map::new();
        context.add_to_data(&mut data);
        assert_eq!(
            Value::Object(data),
            json!({ "traceparent": traceparent("01"), "tracestate": "a=b" })
        );
    }
}
