//! The live seat map: `GET /api/v1/showtimes/{id}/seats/events`, a stream of server-sent
//! events. Every Lua script that changes a seat PUBLISHes (SPUBLISHes, on a Redis Cluster) the change on the showtime's events
//! channel (`lua/_prelude.lua`); one pub/sub connection per process receives them all
//! ([`hub`]) and fans them out to the streams of that showtime ([`stream`]).
//!
//! What a client sees is state, not history: a `snapshot` first, then one event per change.
//! Whenever the stream may have missed a change (a reconnect with `Last-Event-ID`, a client too
//! slow for the buffer, the pub/sub connection lost and regained) it gets a fresh snapshot.
//! See docs/LIVE.md.

pub mod hub;
pub mod limits;
pub mod routes;
pub mod stream;

pub use hub::LiveHub;
