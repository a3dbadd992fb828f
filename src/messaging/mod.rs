//! RabbitMQ: the topology every process declares, the versioned messages, and publishing with
//! publisher confirms. Business logic stays free of AMQP (docs/DESIGN.md §5).

pub mod messages;
pub mod outbox;
pub mod publisher;
pub mod topology;
