//! [`AmqpOptions`]: how an [`AmqpTransport`](super::AmqpTransport) connects.

/// Options of [`AmqpTransport::connect`](super::AmqpTransport::connect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpOptions {
    /// Heartbeat interval in seconds, unless the URI sets `heartbeat=`; 0
    /// disables heartbeats. Default 60, as nameko's consumers.
    pub heartbeat: u16,
    /// Channels in the publishing pool (at least 1). Default 1: on one
    /// channel a lone publish waits ~1 ms for its confirm, on several ~4 ms
    /// (measured on RabbitMQ 3.10, persistent messages), and many concurrent
    /// publishes reach about the same rate either way.
    pub publish_channels: usize,
    /// After a connection loss, reconnect (with backoff, forever) and restore
    /// topology and consumers; see the [module docs](super). Default true.
    /// When false a loss is final: later calls fail with
    /// [`Error::ConnectionLost`](crate::Error::ConnectionLost) and consumers end.
    pub auto_recover: bool,
    /// Connection name shown by RabbitMQ (`connection_name`).
    pub connection_name: Option<String>,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            heartbeat: 60,
            publish_channels: 1,
            auto_recover: true,
            connection_name: None,
        }
    }
}
