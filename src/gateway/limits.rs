//! The gateway's fixed limits, beside the configurable ones of
//! [`GatewayConfig`](super::GatewayConfig). `docs/limits.md` lists them
//! all, with what a client sees when it hits one.

use std::time::Duration;

/// WebSocket calls one connection may have in flight (429 `TooManyCalls`
/// beyond).
pub const MAX_CALLS_IN_FLIGHT: usize = 64;

/// The longest a batch of frames may take to go out to a WebSocket client
/// that stopped reading; then it is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest WebSocket message (and frame) a client may send; a larger
/// one closes the connection.
pub const MAX_MESSAGE_SIZE: usize = 1024 * 1024;
