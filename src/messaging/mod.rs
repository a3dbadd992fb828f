//! RabbitMQ: the connection, the topology every process declares, the versioned messages,
//! publishing with publisher confirms, and the outbox every message goes through. Business
//! logic stays free of AMQP (docs/DESIGN.md §5).

pub mod amqp;
pub mod messages;
pub mod outbox;
pub mod publisher;
pub mod topology;
