//! A short-lived, in-process cache of each showtime's seat status, so that thousands of people
//! looking at one seat map during an on-sale cost one `seatmap.lua` per showtime and instance
//! every `SEATGATE_SEATMAP_CACHE_MS`, not one per request. Without it, a sale's seat-map polls
//! kept single-threaded Redis saturated and the holds, claims and sales queued behind them.
//!
//! Loads are single-flight: while one request reads Redis, the others of that showtime wait for
//! its answer instead of sending their own. Every hold, release or checkout made through this
//! instance invalidates its showtime's entry, so a user sees their own change at once; changes
//! made through another instance show within the cache's lifetime. The seat map is advisory
//! either way: a hold is decided by `hold.lua` alone, and a 409 names exactly the seats taken.
//!
//! For callers who hold nothing in the showtime (almost everyone looking), the rendered JSON is
//! kept with the entry too, so such a request is answered without serialising 1,000 seats.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::layout::Layout;
use super::service::{Availability, CategoryAvailability, MapSeat, SeatMap, SeatState};
use crate::catalog::model::Showtime;
use crate::error::ApiError;

/// Showtimes tracked at most; past that, entries nobody is reading are dropped.
const CAPACITY: usize = 10_000;

/// What one read of Redis (and of the catalog) said about a showtime.
#[derive(Debug)]
pub struct Snapshot {
    pub showtime: Showtime,
    pub sold: HashSet<Uuid>,
    /// Held seat -> the holder's user id.
    pub held: HashMap<Uuid, String>,
    holders: HashSet<String>,
    anonymous: OnceLock<Result<actix_web::web::Bytes, String>>,
    counts: OnceLock<Result<actix_web::web::Bytes, String>>,
    fetched: Instant,
    epoch: u64,
}

impl Snapshot {
    /// A snapshot of what was just read.
    pub fn new(showtime: Showtime, sold: HashSet<Uuid>, held: HashMap<Uuid, String>) -> Self {
        let holders = held.values().cloned().collect();
        Self {
            showtime,
            sold,
            held,
            holders,
            anonymous: OnceLock::new(),
            counts: OnceLock::new(),
            fetched: Instant::now(),
            epoch: 0,
        }
    }

    /// The seat map as `me` (a user id, or nobody) sees it.
    pub fn render(&self, layout: &Layout, me: Option<&str>) -> SeatMap {
        let seats = layout
            .seats
            .iter()
            .map(|seat| {
                let (status, mine) = if self.sold.contains(&seat.id) {
                    (SeatState::Sold, false)
                } else if let Some(holder) = self.held.get(&seat.id) {
                    (SeatState::Held, me == Some(holder.as_str()))
                } else {
                    (SeatState::Available, false)
                };
                MapSeat {
                    id: seat.id,
                    row: seat.row.clone(),
                    number: seat.number,
                    category: seat.category.clone(),
                    price: self.showtime.prices.get(&seat.category).copied().unwrap_or_default(),
                    status,
                    held_by_me: mine,
                }
            })
            .collect();
        SeatMap { showtime_id: self.showtime.id, currency: self.showtime.currency.clone(), seats }
    }

    /// The seat map as JSON for `me`; shared bytes when `me` holds nothing here.
    pub fn render_json(&self, layout: &Layout, me: Option<&str>) -> Result<actix_web::web::Bytes, ApiError> {
        let holds_here = me.is_some_and(|me| self.holders.contains(me));
        let encode = |me| serde_json::to_vec(&self.render(layout, me)).map(actix_web::web::Bytes::from);
        if holds_here {
            return encode(me).map_err(|e| ApiError::Internal(e.into()));
        }
        self.anonymous
            .get_or_init(|| encode(None).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("seat map does not serialise: {e}")))
    }
}

impl Snapshot {
    /// How many seats are free, held and sold, in all and per category in layout order.
    pub fn availability(&self, layout: &Layout) -> Availability {
        let mut categories: Vec<CategoryAvailability> = Vec::new();
        for seat in &layout.seats {
            let i = match categories.iter().position(|c| c.category == seat.category) {
                Some(i) => i,
                None => {
                    categories.push(CategoryAvailability {
                        category: seat.category.clone(),
                        price: self.showtime.prices.get(&seat.category).copied().unwrap_or_default(),
                        available: 0,
                        held: 0,
                        sold: 0,
                    });
                    categories.len() - 1
                }
            };
            let counts = &mut categories[i];
            if self.sold.contains(&seat.id) {
                counts.sold += 1;
            } else if self.held.contains_key(&seat.id) {
                counts.held += 1;
            } else {
                counts.available += 1;
            }
        }
        let sum = |f: fn(&CategoryAvailability) -> u32| categories.iter().map(f).sum::<u32>();
        let (available, held, sold) = (sum(|c| c.available), sum(|c| c.held), sum(|c| c.sold));
        Availability {
            showtime_id: self.showtime.id,
            currency: self.showtime.currency.clone(),
            available,
            held,
            sold,
            sold_out: available == 0 && held == 0,
            categories,
        }
    }

    /// [`availability`](Self::availability) as JSON, rendered once per snapshot.
    pub fn availability_json(&self, layout: &Layout) -> Result<actix_web::web::Bytes, ApiError> {
        self.counts
            .get_or_init(|| {
                serde_json::to_vec(&self.availability(layout))
                    .map(actix_web::web::Bytes::from)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("availability does not serialise: {e}")))
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// Bumped by every invalidation; a snapshot read before the latest bump is stale.
    epoch: AtomicU64,
    /// The latest snapshot; its lock also makes loads single-flight.
    slot: tokio::sync::Mutex<Option<Arc<Snapshot>>>,
}

/// Seat status by showtime, for `ttl` at most (zero turns the cache off).
#[derive(Debug)]
pub struct SeatStatusCache {
    ttl: Duration,
    entries: Mutex<HashMap<Uuid, Arc<Entry>>>,
}

impl SeatStatusCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::default() }
    }

    /// Makes the showtime's snapshot stale: the next read loads a fresh one.
    pub fn invalidate(&self, showtime_id: Uuid) {
        let entry = self.entries.lock().ok().and_then(|map| map.get(&showtime_id).cloned());
        if let Some(entry) = entry {
            entry.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Makes every snapshot stale (a catalog write may have changed prices or a showtime).
    pub fn invalidate_all(&self) {
        if let Ok(map) = self.entries.lock() {
            for entry in map.values() {
                entry.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// The showtime's snapshot, from the cache while fresh, else from `load`.
    pub async fn get<F, Fut>(&self, showtime_id: Uuid, load: F) -> Result<Arc<Snapshot>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Snapshot, ApiError>>,
    {
        self.get_since(showtime_id, None, load).await
    }

    /// Like [`get`](Self::get), but with `since`, only a snapshot whose read began at or after
    /// that instant will do. A live stream subscribes to changes, then asks for a snapshot read
    /// after it subscribed, so no change can fall between the two; streams opened together still
    /// share one read.
    pub async fn get_since<F, Fut>(
        &self,
        showtime_id: Uuid,
        since: Option<Instant>,
        load: F,
    ) -> Result<Arc<Snapshot>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Snapshot, ApiError>>,
    {
        if self.ttl.is_zero() {
            return load().await.map(Arc::new);
        }
        let entry = self.entry(showtime_id);
        let mut slot = entry.slot.lock().await;
        let epoch = entry.epoch.load(Ordering::Acquire);
        let usable = |s: &&Arc<Snapshot>| {
            s.epoch == epoch && s.fetched.elapsed() < self.ttl && since.is_none_or(|since| s.fetched >= since)
        };
        if let Some(snapshot) = slot.as_ref().filter(usable) {
            metrics::counter!("seatgate_seatmap_cache_total", "result" => "hit").increment(1);
            return Ok(Arc::clone(snapshot));
        }
        metrics::counter!("seatgate_seatmap_cache_total", "result" => "miss").increment(1);
        let started = Instant::now();
        let mut fresh = load().await?;
        // Its age counts from when the read began; an invalidation during the load leaves it
        // stale, as it should be.
        fresh.fetched = started;
        fresh.epoch = epoch;
        let fresh = Arc::new(fresh);
        *slot = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    fn entry(&self, showtime_id: Uuid) -> Arc<Entry> {
        let Ok(mut map) = self.entries.lock() else {
            // A panic while the map was locked: work without the cache's memory.
            return Arc::default();
        };
        if map.len() >= CAPACITY && !map.contains_key(&showtime_id) {
            map.retain(|_, entry| Arc::strong_count(entry) > 1);
        }
        Arc::clone(map.entry(showtime_id).or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn showtime(id: Uuid) -> Showtime {
        Showtime {
            id,
            movie_id: Uuid::nil(),
            movie_title: String::new(),
            screen_id: Uuid::nil(),
            screen_name: String::new(),
            theater_id: Uuid::nil(),
            theater_name: String::new(),
            city: String::new(),
            starts_at: chrono::Utc::now(),
            ends_at: chrono::Utc::now(),
            prices: Default::default(),
            currency: "EUR".into(),
            status: crate::catalog::model::ShowtimeStatus::Scheduled,
            created_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn concurrent_readers_share_one_load_and_an_invalidation_forces_the_next() {
        let cache = Arc::new(SeatStatusCache::new(Duration::from_secs(60)));
        let id = Uuid::now_v7();
        let loads = Arc::new(AtomicUsize::new(0));
        let read = |cache: Arc<SeatStatusCache>, loads: Arc<AtomicUsize>| async move {
            cache
                .get(id, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(Snapshot::new(showtime(id), HashSet::new(), HashMap::new()))
                })
                .await
                .expect("loaded")
        };
        let readers: Vec<_> = (0..50).map(|_| tokio::spawn(read(cache.clone(), loads.clone()))).collect();
        for r in readers {
            r.await.expect("reader");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        cache.invalidate(id);
        read(cache.clone(), loads.clone()).await;
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_reader_that_needs_a_read_begun_after_it_subscribed_never_gets_an_older_one() {
        let cache = SeatStatusCache::new(Duration::from_secs(60));
        let id = Uuid::now_v7();
        let load = || async { Ok(Snapshot::new(showtime(id), HashSet::new(), HashMap::new())) };
        let first = cache.get(id, load).await.expect("loaded");
        let subscribed = Instant::now();
        let fresh = cache.get_since(id, Some(subscribed), load).await.expect("loaded");
        assert!(!Arc::ptr_eq(&first, &fresh), "a snapshot read before the subscription was reused");
        assert!(fresh.fetched >= subscribed);
        let shared = cache.get_since(id, Some(subscribed), load).await.expect("cached");
        assert!(Arc::ptr_eq(&fresh, &shared), "a read begun after the subscription is shared");
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_every_time() {
        let cache = SeatStatusCache::new(Duration::ZERO);
        let id = Uuid::now_v7();
        let loads = AtomicUsize::new(0);
        for _ in 0..3 {
            cache
                .get(id, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok(Snapshot::new(showtime(id), HashSet::new(), HashMap::new()))
                })
                .await
                .expect("loaded");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }
}
