//! Choosing an upstream for one request.
//!
//! Selection reads the live snapshot published by [`crate::upstream::Upstreams`] and the atomic
//! in-flight counters on each backend: no lock is taken per request. A retry passes the backends
//! already tried so it lands on a different one.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::upstream::Backend;

/// The load-balancing strategy (`SEATGATE_LB_STRATEGY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Each request goes to the next live upstream in turn: even spread for uniform requests.
    RoundRobin,
    /// Each request goes to the live upstream with the fewest requests in flight (a streaming
    /// response counts until it ends); ties rotate so equal upstreams share the load.
    LeastConn,
}

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim() {
            "round_robin" => Ok(Self::RoundRobin),
            "least_conn" => Ok(Self::LeastConn),
            _ => Err(UnknownStrategy),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RoundRobin => "round_robin",
            Self::LeastConn => "least_conn",
        })
    }
}

/// The strategy name was not one of the supported ones.
#[derive(Debug, thiserror::Error)]
#[error("expected round_robin or least_conn")]
pub struct UnknownStrategy;

/// Picks backends according to a [`Strategy`]; shared by every connection.
#[derive(Debug)]
pub struct Selector {
    strategy: Strategy,
    /// Rotation point: the round-robin cursor, and the tie-breaker for least-connections.
    next: AtomicUsize,
}

impl Selector {
    /// A selector whose rotation starts at the first upstream.
    pub fn new(strategy: Strategy) -> Self {
        Self { strategy, next: AtomicUsize::new(0) }
    }

    /// Chooses one of `live`, skipping any whose index is in `exclude`. `None` when nothing is left.
    pub fn pick(&self, live: &[Arc<Backend>], exclude: &[usize]) -> Option<Arc<Backend>> {
        let n = live.len();
        if n == 0 {
            return None;
        }
        // A first pick advances the rotation; a retry only looks from where it stands, so a
        // failing upstream does not make every later request start on it.
        let start = if exclude.is_empty() {
            self.next.fetch_add(1, Ordering::Relaxed)
        } else {
            self.next.load(Ordering::Relaxed)
        } % n;
        let candidates = (0..n).map(|i| &live[(start + i) % n]).filter(|b| !exclude.contains(&b.index));
        match self.strategy {
            Strategy::RoundRobin => candidates.into_iter().next().cloned(),
            // `min_by_key` keeps the first of equal minima, and the walk starts at the rotating
            // cursor, so idle upstreams take turns instead of the first one taking everything.
            Strategy::LeastConn => candidates.min_by_key(|b| b.in_flight()).cloned(),
        }
    }
}
