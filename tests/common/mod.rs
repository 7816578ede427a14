pub(crate) mod amqp;
