//! Payments: the gateway behind a trait, and the worker's rules that turn a payment task into
//! a confirmed booking or a refund (docs/DESIGN.md §2 invariants 4 to 6). Free of AMQP: the consume
//! loop in [`crate::worker`] maps outcomes to acks, retries and dead letters.

pub mod gateway;
pub mod repo;
pub mod service;
