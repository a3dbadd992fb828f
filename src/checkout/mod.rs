//! From a hold to a booking, on the API side: checkout (extend the hold, write the reservation
//! and payment, publish the payment task), reservations, bookings and their cancellation.
//! Retried requests with the same `Idempotency-Key` get the same answer (invariant 4).

pub mod idempotency;
pub mod routes;
pub mod service;
