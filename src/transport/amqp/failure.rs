//! What lapin's errors mean: the reason a connection failed, and which
//! errors are channel-level (soft).

use lapin::ErrorKind;
use lapin::protocol::AMQPErrorKind;

/// Why a connection attempt failed, in one short phrase.
pub(super) fn connect_reason(err: &lapin::Error) -> String {
    match err.kind() {
        ErrorKind::IOError(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::TimedOut => "connection timed out".into(),
            _ => io.to_string(),
        },
        ErrorKind::ProtocolError(amqp) => match amqp.get_id() {
            403 => format!(
                "access refused, check the user name and password ({})",
                amqp.get_message()
            ),
            530 => format!(
                "not allowed, check the vhost and its permissions ({})",
                amqp.get_message()
            ),
            _ => amqp.to_string(),
        },
        _ => err.to_string(),
    }
}

/// Whether an error is a soft (channel-level) AMQP error.
pub(super) fn is_soft_error(err: &lapin::Error) -> bool {
    matches!(err.kind(), ErrorKind::ProtocolError(amqp) if matches!(amqp.kind(), AMQPErrorKind::Soft(_)))
}
