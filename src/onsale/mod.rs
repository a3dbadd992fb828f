//! On-sales and the virtual waiting room (docs/DESIGN.md §6, invariant 9; docs/ONSALE.md).
//!
//! - `repo`, `mirror`, `store`: sale settings in PostgreSQL, mirrored into Redis for the
//!   admission gate that hold.lua runs before taking any seat (`lua/_admission.lua`); the
//!   queue scripts' typed face. These sit below the hold path, which warms the mirror.
//! - `service`, `routes`, `live`: joining, the place in line (pushed live), the admin's view.
//! - `admitter`: the admission loop; one elected admitter per showtime (a lease with a
//!   fencing token), run by every worker and all-in-one process.
//! - `check`: invariant 9 for the checker.

pub mod admitter;
pub mod check;
pub mod live;

pub mod repo;
pub mod routes;
pub mod service;
pub mod store;
