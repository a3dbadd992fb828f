//! seatgate: a ticket-booking backend. Seats are held atomically in Redis, paid for
//! asynchronously through RabbitMQ, and booked in PostgreSQL, the source of truth.
//!
//! This crate is the API server and the domain code the workers share; see docs/DESIGN.md.

pub mod auth;
pub mod catalog;
pub mod checkout;
pub mod client_ip;
pub mod config;
pub mod domain;
pub mod error;
pub mod holds;
pub mod infra;
pub mod invariants;
pub mod ledger;
pub mod live;
pub mod messaging;
pub mod metrics_listener;
pub mod onsale;
pub mod openapi;
pub mod ops;
pub mod paging;
pub mod scheduling;
pub mod seed;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tickets;
pub mod validate;
pub mod web;
pub mod worker;

/// The schema, from `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
