//! Declaring exchanges and queues on a channel, as
//! [`ExchangeSpec`] and [`QueueSpec`] describe them.

use lapin::Channel;
use lapin::ExchangeKind;
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use super::codec;
use crate::transport::{ExchangeSpec, QueueSpec};

/// Declares a topic exchange.
pub(super) async fn declare_exchange_on(
    channel: &Channel,
    spec: &ExchangeSpec,
) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        durable: spec.durable,
        auto_delete: spec.auto_delete,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            spec.name.as_str().into(),
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
}

/// Declares a queue.
pub(super) async fn declare_queue_on(channel: &Channel, spec: &QueueSpec) -> lapin::Result<()> {
    let options = QueueDeclareOptions {
        passive: false,
        durable: spec.durable,
        exclusive: spec.exclusive,
        auto_delete: spec.auto_delete,
        nowait: false,
    };
    // Arguments were checked by the caller (to_table on the same map).
    let arguments = codec::to_table(&spec.arguments).unwrap_or_default();
    channel
        .queue_declare(spec.name.as_str().into(), options, arguments)
        .await
        .map(|_| ())
}

/// A passive declare: succeeds if the exchange exists, 404 otherwise.
/// The messages ready in a queue (a passive declare: a missing queue is a
/// 404 that closes the channel).
pub(super) async fn queue_depth_on(channel: &Channel, name: &str) -> lapin::Result<u64> {
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await?;
    Ok(u64::from(queue.message_count()))
}

pub(super) async fn exchange_exists_on(channel: &Channel, name: &str) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
}
