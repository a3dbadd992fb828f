//! From seat to door (docs/DESIGN.md §6): the door side of tickets, whose signed form the
//! ledger issues (`ledger/ticket.rs`): their QR codes, and check-in, exactly once per booking,
//! online at a gate or uploaded later from an offline scanner. See docs/TICKETS.md.

pub mod repo;
pub mod routes;
pub mod service;
