//! Connections to the backing services: PostgreSQL and Redis (RabbitMQ's lives in `messaging`). Each is built once per
//! process and shared; none is made per request.

pub mod db;
pub mod hash;
pub mod recent;
pub mod redis;
pub mod slots;
