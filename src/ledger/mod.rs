//! The ledger: reservations, payments, bookings and refunds, the money side of seatgate
//! (invariants 4 to 6 and 8; docs/DESIGN.md §9). Its state changes are typed
//! functions over guarded SQL in [`repo`]; checkout, the payment worker and the sweeper call
//! them. Money moves only after its guard is won: `initiated -> charging` before a charge,
//! `... -> refunding` before a refund. Every message it causes (payment and refund tasks,
//! booking events) is staged in the outbox in the same transaction.
//!
//! Floors: the ledger sits above `holds` (a worker claims and sells seats) and below the use
//! cases that span several capabilities (`checkout`, `scheduling`).

pub mod bookings;
pub mod cancel;
pub mod charge;
pub mod events;
pub mod gateway;
pub mod reconcile;
pub mod refund;
pub mod repo;
pub mod routes;
pub mod stream;
pub mod ticket;
