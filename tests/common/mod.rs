pub(crate) mod amqp;
pub(crate) mod proxy;
