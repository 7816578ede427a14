//! The frames a WebSocket client sends (`static/PROTOCOL.md`), and their
//! decoder: [`ClientFrame::parse`]. Decoding is bounded by the frame size
//! ([`MAX_MESSAGE_SIZE`](super::limits::MAX_MESSAGE_SIZE)) and serde_json's
//! nesting limit; a frame that does not decode is a [`FrameError`] that
//! keeps the frame's `id` when it has one, never a panic.

use serde::Deserialize;
use serde_json::{Map, Value};

/// One frame from a client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// `{"type": "subscribe", "id": 1, "events": ["clock.tick"]}`
    Subscribe {
        /// Echoed in the answer.
        #[serde(default)]
        id: Value,
        /// `service.event_type` patterns.
        events: Vec<String>,
    },
    /// `{"type": "unsubscribe", "id": 2, "events": ["clock.tick"]}`
    Unsubscribe {
        /// Echoed in the answer.
        #[serde(default)]
        id: Value,
        /// Patterns subscribed before.
        events: Vec<String>,
    },
    /// `{"type": "call", "id": "c1", "service": "greeter", "method": "hello", "args": ["Ann"]}`
    Call {
        /// Echoed in the result.
        #[serde(default)]
        id: Value,
        /// The service.
        service: String,
        /// The method.
        method: String,
        /// Positional arguments (an array, or absent).
        #[serde(default)]
        args: Value,
        /// Keyword arguments.
        #[serde(default)]
        kwargs: Option<Map<String, Value>>,
        /// Seconds to wait for the reply.
        #[serde(default)]
        timeout: Option<f64>,
    },
    /// `{"type": "ping", "id": 3}`
    Ping {
        /// Echoed in the pong.
        #[serde(default)]
        id: Value,
    },
}

/// A frame that did not decode: why, and its `id` if it had one (so the
/// error frame can answer it).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    /// The frame's `id`, or null.
    pub id: Value,
    /// Why it did not decode.
    pub message: String,
}

impl ClientFrame {
    /// Decodes one text frame.
    ///
    /// ```
    /// use enoki::gateway::protocol::ClientFrame;
    ///
    /// let frame = ClientFrame::parse(r#"{"type": "ping", "id": 7}"#).unwrap();
    /// assert!(matches!(frame, ClientFrame::Ping { id } if id == 7));
    /// let err = ClientFrame::parse(r#"{"type": "dance", "id": 8}"#).unwrap_err();
    /// assert_eq!(err.id, 8);
    /// ```
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        serde_json::from_str(text).map_err(|err| FrameError {
            id: serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(Value::Null),
            message: format!("{err} (see /PROTOCOL.md)"),
        })
    }
}
