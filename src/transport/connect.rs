//! [`connect`]: the transport a configuration asks for.

use std::sync::Arc;

use super::{MemoryTransport, Transport};
use crate::config::Settings;
use crate::error::Result;

/// The transport the settings ask for: RabbitMQ when `AMQP_URI` is set
/// (with `HEARTBEAT`), the embedded broker otherwise (a new, empty one).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
/// let transport = enoki::transport::connect(&enoki::Settings::new()).await?;
/// assert_eq!(transport.kind(), "memory");
/// # Ok(()) }
/// ```
pub async fn connect(settings: &Settings) -> Result<Arc<dyn Transport>> {
    match settings.amqp_uri() {
        None => Ok(MemoryTransport::new()),
        #[cfg(feature = "amqp")]
        Some(uri) => {
            let options = super::AmqpOptions {
                heartbeat: settings.heartbeat(),
                io_thread: settings.amqp_io_thread(),
                connection_name: Some(format!("enoki {}", std::process::id())),
                ..Default::default()
            };
            let transport = super::AmqpTransport::connect(uri, options).await?;
            Ok(transport)
        }
        #[cfg(not(feature = "amqp"))]
        Some(_) => Err(crate::error::Error::Config(
            "AMQP_URI is set, but this build has no AMQP transport (feature `amqp`)".into(),
        )),
    }
}
