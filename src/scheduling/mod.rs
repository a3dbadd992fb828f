//! Changes to a showtime already on sale, a use case above the catalog, the seat holds and the
//! ledger: moving it (the hold scripts learn its new start) and cancelling it (its bookings
//! cancelled and refunded, its pending checkouts cancelled uncharged, its holds dropped), so
//! that `catalog` itself imports neither `holds` nor the ledger.

pub mod routes;
pub mod service;
