//! The seat-lock gateway: atomic multi-seat holds in Redis (docs/DESIGN.md §2 invariants 2 and 3,
//! §3). A hold takes all its seats or none in one Lua script, expires by Redis' clock, and is
//! visible to its owner only. The seat map combines the immutable layout (cached in process)
//! with one Redis round trip for status, shared for a moment by every reader of the showtime
//! (`snapshot`). No database write happens on the hold path.

pub mod best;
pub mod gate;
pub mod layout;
pub mod owners;
pub mod routes;
pub mod service;
pub mod snapshot;
pub mod store;
