//! Connections to the backing services: PostgreSQL, Redis and RabbitMQ. Each is built once per
//! process and shared; none is made per request.

pub mod amqp;
pub mod db;
pub mod redis;
