pub(crate) mod amqp;
pub(crate) mod binary;
pub(crate) mod proxy;
