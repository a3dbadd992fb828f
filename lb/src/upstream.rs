//! The set of upstreams and their health state.
//!
//! Health is a few atomics per [`Backend`] (the active check's verdict, consecutive connection
//! failures, the end of a passive ejection, requests in flight). Whenever a verdict changes, the
//! list of backends that may take traffic is rebuilt and published through an [`ArcSwap`]: the
//! request path only loads that snapshot, so choosing an upstream takes no lock and never sees a
//! half-updated list.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use http::HeaderValue;

use crate::config::UpstreamUrl;
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

    fn available(&self, now_ms: u64) -> bool {
        self.is_healthy() && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
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

/// All configured backends plus the published snapshot of those taking traffic.
pub struct Upstreams {
    all: Vec<Arc<Backend>>,
    live: ArcSwap<Vec<Arc<Backend>>>,
    epoch: Instant,
    /// Serialises rebuilds of `live` (rare: only when a verdict changes), never taken by requests.
    rebuild: Mutex<()>,
    fail_threshold: u32,
    eject_cooldown: Duration,
}

impl Upstreams {
    /// Builds the set with every backend presumed healthy.
    pub fn new(
        urls: &[UpstreamUrl],
        workers: usize,
        max_idle: usize,
        fail_threshold: u32,
        eject_cooldown: Duration,
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
                    failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                    in_flight: AtomicUsize::new(0),
                    pools: (0..workers.max(1)).map(|_| Pool::new(max_idle)).collect(),
                    stats,
                }))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            live: ArcSwap::from_pointee(all.clone()),
            all,
            epoch: Instant::now(),
            rebuild: Mutex::new(()),
            fail_threshold,
            eject_cooldown,
        })
    }

    /// Every configured backend, healthy or not.
    pub fn all(&self) -> &[Arc<Backend>] {
        &self.all
    }

    /// The backends currently taking traffic: a lock-free snapshot.
    pub fn live(&self) -> Guard<Arc<Vec<Arc<Backend>>>> {
        self.live.load()
    }

    /// Records the active check's verdict; rebuilds the snapshot if it changed.
    pub fn set_healthy(&self, backend: &Backend, healthy: bool) -> bool {
        let changed = backend.healthy.swap(healthy, Ordering::Relaxed) != healthy;
        if changed {
            self.refresh();
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

    /// Recomputes the live snapshot from the atomics (also ends cool-downs that have run out).
    pub fn refresh(&self) {
        let _serial = self.rebuild.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.now_ms();
        let next: Vec<Arc<Backend>> = self.all.iter().filter(|b| b.available(now)).cloned().collect();
        let current = self.live.load();
        let same = current.len() == next.len() && current.iter().zip(&next).all(|(a, b)| a.index == b.index);
        if same {
            return;
        }
        for backend in &self.all {
            let live = next.iter().any(|b| b.index == backend.index);
            backend.stats.healthy.set(if live { 1.0 } else { 0.0 });
        }
        tracing::info!(live = next.len(), total = self.all.len(), "upstream rotation changed");
        self.live.store(Arc::new(next));
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
