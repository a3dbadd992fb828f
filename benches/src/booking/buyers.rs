//! The API side of `booking`: the showtimes users buy from, and the rounds of API phases
//! (alternating with pgbench phases).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::pgbench::{PgPhase, Pgbench};
use super::report::{api_line, pg_line};
use super::shop::{Attempt, Pick, Shop};
use super::tally::{Figures, Tally};
use super::{BookingArgs, MAX_SEATS_PER_HOLD, PAUSE};
use crate::api::User;

/// Unsold seats of one showtime, as far as this run knows (only the bench buys here).
pub(super) struct FreeSeats {
    seats: Vec<Uuid>,
    index: HashMap<Uuid, usize>,
}

impl FreeSeats {
    pub(super) fn new(seats: &[Uuid]) -> Self {
        Self { seats: seats.to_vec(), index: seats.iter().enumerate().map(|(i, s)| (*s, i)).collect() }
    }

    fn remove(&mut self, seat: Uuid) {
        if let Some(i) = self.index.remove(&seat) {
            self.seats.swap_remove(i);
            if let Some(moved) = self.seats.get(i) {
                self.index.insert(*moved, i);
            }
        }
    }
}

/// The showtimes of a `booking` run; everybody buys from the current one until it is full.
pub(super) struct Showtimes {
    pub(super) list: Vec<(Uuid, Mutex<FreeSeats>)>,
    pub(super) current: AtomicUsize,
    /// A showtime with fewer unsold seats than this is left for the next one.
    pub(super) keep_free: usize,
}

impl Showtimes {
    /// The current showtime's index and id, and `n` random unsold seats of it; `None` when
    /// every showtime is full.
    fn pick(&self, rng: &mut StdRng, n: usize) -> Option<(usize, Uuid, Vec<Uuid>)> {
        loop {
            let i = self.current.load(Ordering::Acquire);
            let (id, free) = self.list.get(i)?;
            let free = free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if free.seats.len() <= self.keep_free.max(n) {
                drop(free);
                let _ = self.current.compare_exchange(i, i + 1, Ordering::AcqRel, Ordering::Acquire);
                continue;
            }
            return Some((i, *id, free.seats.choose_multiple(rng, n).copied().collect()));
        }
    }

    /// Forgets seats that are sold (or may be: a checkout that did not confirm).
    fn sold(&self, i: usize, seats: &[Uuid]) {
        if let Some((_, free)) = self.list.get(i) {
            let mut free = free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for seat in seats {
                free.remove(*seat);
            }
        }
    }

    /// How many showtimes users have moved past.
    pub(super) fn used(&self) -> usize {
        (self.current.load(Ordering::Acquire) + 1).min(self.list.len())
    }
}

/// What the API phases need, made once through the real API.
pub(super) struct BookingTarget {
    pub(super) shop: Shop,
    pub(super) showtimes: Arc<Showtimes>,
    pub(super) users: Vec<User>,
}

/// One measured API phase of `booking`.
#[derive(Clone, Debug, Serialize)]
pub struct ApiPhase {
    pub round: u32,
    pub elapsed_secs: f64,
    pub bookings: u64,
    pub seats: u64,
    /// Reservations seen confirmed per second.
    pub bookings_per_sec: f64,
    pub seats_per_sec: f64,
    pub holds: u64,
    pub conflicts: u64,
    /// Conflicts / (holds + conflicts).
    pub conflict_rate: f64,
    pub checkouts: u64,
    pub polls_per_booking: f64,
    /// Reservation streams that gave no final status (the buyer polled instead).
    pub push_fallbacks: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

impl ApiPhase {
    fn of(round: u32, elapsed: Duration, mut t: Tally) -> Self {
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let figures = Figures::take(&mut t);
        let attempts = t.holds + t.conflicts;
        Self {
            round,
            elapsed_secs: secs,
            bookings: t.bookings,
            seats: t.seats,
            bookings_per_sec: t.bookings as f64 / secs,
            seats_per_sec: t.seats as f64 / secs,
            holds: t.holds,
            conflicts: t.conflicts,
            conflict_rate: if attempts == 0 { 0.0 } else { t.conflicts as f64 / attempts as f64 },
            checkouts: t.checkouts,
            polls_per_booking: if t.bookings == 0 { 0.0 } else { t.polls as f64 / t.bookings as f64 },
            push_fallbacks: t.push_fallbacks,
            figures,
        }
    }
}

/// Warm-up, then API and pgbench phases in turn.
pub(super) async fn booking_rounds(
    target: &BookingTarget,
    pg: &mut Pgbench,
    args: &BookingArgs,
) -> anyhow::Result<(Vec<ApiPhase>, Vec<PgPhase>)> {
    let load = &args.load;
    if load.warmup_secs > 0 {
        let warm = Duration::from_secs(load.warmup_secs);
        eprintln!("warming up both sides for {} s each (not measured)...", load.warmup_secs);
        pg.checkpoint().await?;
        let a = booking_api_phase(target, warm, 0).await?;
        if a.figures.errors > 0 {
            eprintln!("warm-up api: {} errors: {:?}", a.figures.errors, a.figures.error_kinds);
        }
        tokio::time::sleep(PAUSE).await;
        let p = pg.phase(warm, 0).await?;
        if let Some(e) = &p.error {
            eprintln!("warm-up pgbench: {e}");
        }
        tokio::time::sleep(PAUSE).await;
    }
    let duration = Duration::from_secs(load.duration_secs);
    let (mut api_phases, mut pg_phases) = (Vec::new(), Vec::new());
    for round in 1..=load.rounds {
        pg.checkpoint().await?;
        let a = booking_api_phase(target, duration, round).await?;
        api_line(&a);
        api_phases.push(a);
        tokio::time::sleep(PAUSE).await;
        let p = pg.phase(duration, round).await?;
        pg_line(&p);
        pg_phases.push(p);
        tokio::time::sleep(PAUSE).await;
    }
    Ok((api_phases, pg_phases))
}

/// Every user buys until `duration` has passed; a purchase under way then completes.
async fn booking_api_phase(target: &BookingTarget, duration: Duration, round: u32) -> anyhow::Result<ApiPhase> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for user in target.users.iter().cloned() {
        let (shop, showtimes) = (target.shop.clone(), target.showtimes.clone());
        tasks.spawn(async move {
            let mut rng = StdRng::from_rng(&mut rand::rng());
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let n = rng.random_range(1..=MAX_SEATS_PER_HOLD);
                let Some((i, showtime, seats)) = showtimes.pick(&mut rng, n) else {
                    tally.error("out of seats: every showtime is past --fill-limit", String::new);
                    break;
                };
                match shop.purchase(&user.token, showtime, Pick::Seats(&seats), &mut tally).await {
                    Attempt::Booked | Attempt::NotConfirmed => showtimes.sold(i, &seats),
                    Attempt::Conflict(_) => {}
                    // Do not spin on a failing API; wait as long as it asks.
                    Attempt::HoldFailed => {
                        let wait = tally.retry_after.take().unwrap_or(Duration::from_millis(20));
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a virtual user panicked")?);
    }
    Ok(ApiPhase::of(round, start.elapsed(), total))
}
