//! The catalog: movies, theaters, screens with their seat layouts, showtimes and reviews.
//! Anyone reads it; only admins write it. Reads of lists, showtimes and layouts are cached in
//! Redis and every write invalidates them (see [`cache`]).

pub mod cache;
pub mod layout;
pub mod model;
pub mod repo;
pub mod routes;
pub mod service;
