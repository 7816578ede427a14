pub(crate) mod amqp;
pub(crate) mod binary;
pub(crate) mod cluster;
pub(crate) mod proxy;
