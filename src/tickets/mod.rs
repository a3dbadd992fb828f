//! From seat to door (DESIGN.md §6c): signed tickets that scanners verify offline, their QR
//! codes, and check-in, exactly once per booking, online at a gate or uploaded later from an
//! offline scanner. See docs/TICKETS.md.

pub mod repo;
pub mod routes;
pub mod service;
pub mod sign;
