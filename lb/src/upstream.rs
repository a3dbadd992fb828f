//! The set of upstreams and their health state.
//!
//! Health is a few atomics per [`Backend`] (the active check's verdict and whether the probe got
//! an answer at all, consecutive connection failures, the end of a passive ejection, requests in
//! flight). Whenever a verdict changes, a [`Rotation`] is rebuilt and published through an
//! [`ArcSwap`]: the backends that are live, and those that are merely reachable (the panic
//! routing fallback). The request path only loads that snapshot, so choosing an upstream takes
//! no lock and never sees a half-updated list, nor a live list and a fallback from two different
//! moments.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use http::HeaderValue;
use metrics::Gauge;

use crate::config::{HealthConfig, UpstreamUrl};
use crate::pool::Pool;
use crate::stats::{BackendStats, Stats};

/// One upstream: where it is, its idle connections, and what the lb currently believes of it.
pub struct Backend {
    /// Position in the configured list; stable for the life of the process.
    pub index: usize,
    /// The configured base URL.
    pub url: UpstreamUrl,
    /// `Host` sent when the client sent none (HTTP/1.0).
    pub(crate) host_header: HeaderValue,
    /// Verdict of the last active check; starts `true` so traffic flows before the first probe.
    healthy: AtomicBool,
    /// Whether the last active check got an HTTP answer (any status) from an instance that is not
    /// draining; starts `true`. A backend that is reachable but not healthy takes traffic only in
    /// panic mode.
    reachable: AtomicBool,
    /// Connection failures since the last success.
    failures: AtomicU32,
    /// Milliseconds since [`Upstreams`]' epoch until which a passive ejection lasts.
    ejected_until_ms: AtomicU64,
    /// Requests sent to this upstream whose response has not finished yet.
    in_flight: AtomicUsize,
    /// Idle keep-alive connections, one pool per worker thread: a connection is driven by the
    /// runtime that opened it, so reusing it from another thread would cost a cross-thread wake
    /// on every read and write.
    pools: Box<[Pool]>,
    /// Metric handles.
    pub(crate) stats: BackendStats,
}

impl Backend {
    /// Requests in flight to this upstream (streaming responses count until they end).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The active check's last verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The idle connections of the calling worker thread.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pools[crate::server::worker_id() % self.pools.len()]
    }

    /// Whether the last active check got an answer from an instance that is not draining.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("url", &self.url.to_string()).field("in_flight", &self.in_flight()).finish()
    }
}

/// Counts one request against a backend while it lives: created when the backend is chosen,
/// dropped when the response body ends (or the attempt fails), which is what least-connections
/// compares.
pub(crate) struct InFlight(Arc<Backend>);

impl InFlight {
    pub(crate) fn new(backend: &Arc<Backend>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(backend))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one active check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx answer in time: live.
    Healthy,
    /// Another HTTP answer (a 503 from readiness when a shared dependency is down, say): out of
    /// the rotation, but the instance still answers requests itself, so panic routing may use it.
    Unhealthy(String),
    /// No usable answer: connect failed, timed out, the answer broke off, or the instance says it
    /// is draining. Never sent traffic, not even in panic mode.
    Unreachable(String),
}

impl Verdict {
    fn healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }

    fn reachable(&self) -> bool {
        !matches!(self, Self::Unreachable(_))
    }
}

/// The published routing state: which backends take traffic right now.
#[derive(Debug, Default)]
pub struct Rotation {
    /// Backends passing their active checks and not passively ejected.
    pub live: Vec<Arc<Backend>>,
    /// Backends whose last probe got an answer and that are not passively ejected (a superset of
    /// `live`). Empty when panic routing is off.
    pub reachable: Vec<Arc<Backend>>,
}

impl Rotation {
    /// Where requests go: the live backends, or in panic mode the reachable ones.
    pub fn targets(&self) -> &[Arc<Backend>] {
        if self.live.is_empty() { &self.reachable } else { &self.live }
    }

    /// Panic mode: nothing is live, but some backends still answer, so requests go to them.
    pub fn in_panic(&self) -> bool {
        self.live.is_empty() && !self.reachable.is_empty()
    }

    fn same_as(&self, other: &Self) -> bool {
        same_backends(&self.live, &other.live) && same_backends(&self.reachable, &other.reachable)
    }
}

fn same_backends(a: &[Arc<Backend>], b: &[Arc<Backend>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.index == b.index)
}

/// All configured backends plus the published snapshot of those taking traffic.
pub struct Upstreams {
    all: Vec<Arc<Backend>>,
    rotation: ArcSwap<Rotation>,
    epoch: Instant,
    /// Serialises rebuilds of `rotation` (rare: only when a verdict changes), never taken by
    /// requests.
    rebuild: Mutex<()>,
    fail_threshold: u32,
    eject_cooldown: Duration,
    /// `SEATGATE_LB_PANIC_ROUTING`: fall back to reachable backends when none is live.
    panic_routing: bool,
    /// `seatgate_lb_panic_mode`.
    panic_gauge: Gauge,
}

impl Upstreams {
    /// Builds the set with every backend presumed healthy. `health` gives the passive-ejection
    /// settings and whether panic routing is on.
    pub fn new(
        urls: &[UpstreamUrl],
        workers: usize,
        max_idle: usize,
        health: &HealthConfig,
        stats: &Stats,
    ) -> anyhow::Result<Self> {
        let all: Vec<Arc<Backend>> = urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                let host_header = HeaderValue::from_str(&url.authority)
                    .map_err(|e| anyhow::anyhow!("upstream {url}: authority is not a valid Host header: {e}"))?;
                let stats = stats.backend(&url.authority);
                stats.healthy.set(1.0);
                Ok(Arc::new(Backend {
                    index,
                    url: url.clone(),
                    host_header,
                    healthy: AtomicBool::new(true),
                    reachable: AtomicBool::new(true),
                    failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                    in_flight: AtomicUsize::new(0),
                    pools: (0..workers.max(1)).map(|_| Pool::new(max_idle)).collect(),
                    stats,
                }))
            })
            .collect::<anyhow::Result<_>>()?;
        let panic_gauge = stats.panic_mode.clone();
        panic_gauge.set(0.0);
        let reachable = if health.panic_routing { all.clone() } else { Vec::new() };
        Ok(Self {
            rotation: ArcSwap::from_pointee(Rotation { live: all.clone(), reachable }),
            all,
            epoch: Instant::now(),
            rebuild: Mutex::new(()),
            fail_threshold: health.fail_threshold,
            eject_cooldown: health.eject_cooldown,
            panic_routing: health.panic_routing,
            panic_gauge,
        })
    }

    /// Every configured backend, healthy or not.
    pub fn all(&self) -> &[Arc<Backend>] {
        &self.all
    }

    /// The current routing state: a lock-free snapshot.
    pub fn rotation(&self) -> Guard<Arc<Rotation>> {
        self.rotation.load()
    }

    /// Records the active check's verdict; rebuilds the snapshot if it changed. Returns whether
    /// it changed.
    pub fn set_verdict(&self, backend: &Backend, verdict: &Verdict) -> bool {
        // Both bits change under the rebuild lock, so no rebuild sees one without the other (an
        // unreachable backend briefly counted as reachable would be a panic-mode target).
        let serial = self.rebuild.lock().unwrap_or_else(PoisonError::into_inner);
        let was_healthy = backend.healthy.swap(verdict.healthy(), Ordering::Relaxed);
        let was_reachable = backend.reachable.swap(verdict.reachable(), Ordering::Relaxed);
        let changed = was_healthy != verdict.healthy() || was_reachable != verdict.reachable();
        if changed {
            self.rebuild_locked(&serial);
        }
        changed
    }

    /// A request or a connection to `backend` worked: its failure streak ends.
    pub(crate) fn record_success(&self, backend: &Backend) {
        // Read first so the common case does not write a shared cache line.
        if backend.failures.load(Ordering::Relaxed) != 0 {
            backend.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A connection to `backend` could not be opened (or broke before a response). After
    /// `fail_threshold` in a row the backend leaves the rotation for the cool-down.
    pub(crate) fn record_connect_failure(&self, backend: &Backend) {
        backend.stats.connect_failures.increment(1);
        let streak = backend.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak >= self.fail_threshold {
            backend.failures.store(0, Ordering::Relaxed);
            let until = self.now_ms().saturating_add(duration_ms(self.eject_cooldown));
            backend.ejected_until_ms.store(until, Ordering::Relaxed);
            backend.stats.ejections.increment(1);
            tracing::warn!(
                upstream = %backend.url,
                failures = streak,
                cooldown_ms = duration_ms(self.eject_cooldown),
                "upstream ejected after consecutive connection failures"
            );
            self.refresh();
        }
    }

    /// Recomputes the snapshot from the atomics (also ends cool-downs that have run out), and
    /// logs the start and the end of panic mode.
    pub fn refresh(&self) {
        let serial = self.rebuild.lock().unwrap_or_else(PoisonError::into_inner);
        self.rebuild_locked(&serial);
    }

    /// The body of [`Self::refresh`]; the guard proves the caller holds the rebuild lock.
    fn rebuild_locked(&self, _serial: &MutexGuard<'_, ()>) {
        let now = self.now_ms();
        let next = Rotation {
            live: self.all.iter().filter(|b| b.is_healthy() && !b.ejected(now)).cloned().collect(),
            reachable: if self.panic_routing {
                self.all.iter().filter(|b| b.is_reachable() && !b.ejected(now)).cloned().collect()
            } else {
                Vec::new()
            },
        };
        let current = self.rotation.load_full();
        if current.same_as(&next) {
            return;
        }
        let next = Arc::new(next);
        self.rotation.store(Arc::clone(&next));
        // Gauges after the store: whoever reads the new values also finds the new rotation.
        let panic = next.in_panic();
        for backend in &self.all {
            let live = next.live.iter().any(|b| b.index == backend.index);
            backend.stats.healthy.set(if live { 1.0 } else { 0.0 });
        }
        self.panic_gauge.set(if panic { 1.0 } else { 0.0 });
        if !same_backends(&current.live, &next.live) {
            tracing::info!(live = next.live.len(), total = self.all.len(), "upstream rotation changed");
        }
        match (current.in_panic(), panic) {
            (false, true) => tracing::warn!(
                reachable = next.reachable.len(),
                total = self.all.len(),
                "panic mode: no upstream passes its health check; routing to the upstreams that still answer"
            ),
            (true, false) if next.live.is_empty() => {
                tracing::warn!(total = self.all.len(), "panic mode ended: no upstream is healthy or reachable any more")
            }
            (true, false) => tracing::info!(live = next.live.len(), "panic mode ended: an upstream is healthy again"),
            _ => {}
        }
    }

    /// Requests in flight over all upstreams.
    pub fn in_flight(&self) -> usize {
        self.all.iter().map(|b| b.in_flight()).sum()
    }

    fn now_ms(&self) -> u64 {
        duration_ms(self.epoch.elapsed())
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
