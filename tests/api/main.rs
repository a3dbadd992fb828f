//! Integration tests of the seatgate API against real PostgreSQL, Redis and RabbitMQ.
//! One binary; one file per capability; a fresh database per test (`#[sqlx::test]`), a Redis
//! key prefix and AMQP namespace per test, so every test can run in parallel with the others.

mod abuse;
mod auth;
mod best;
mod bookings;
mod catalog;
mod cli;
mod docs;
mod helpers;
mod holds;
mod invariants;
mod ledger;
mod live;
mod onsale;
mod ops;
mod problems;
mod reservation_events;
mod scripts;
mod security;
mod seed_users;
mod tickets;
mod web;
