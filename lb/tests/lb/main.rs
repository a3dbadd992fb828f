//! seatgate-lb end to end: real upstreams and a real lb on 127.0.0.1 port 0, one test binary.

mod admin;
mod balancing;
mod headers;
mod health;
mod limits;
mod panic;
mod retry;
mod shutdown;
mod streaming;
mod support;
