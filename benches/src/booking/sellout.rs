//! The race of `sellout` and its verification: one task per user, the shared state they
//! report to, then PostgreSQL and `seatgate check-invariants` on what the sale left.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::psql::psql;
use super::shop::{Attempt, Pick, SeatMap, Shop, send};
use super::tally::{Figures, Tally};
use super::{MAX_SEATS_PER_HOLD, SelloutArgs};
use crate::api::{self, User, chain, problem_code as code, transport_kind};

/// The race's shared state.
pub(super) struct Race {
    pub(super) shop: Shop,
    pub(super) showtime: Uuid,
    pub(super) map_url: String,
    pub(super) start: Instant,
    pub(super) deadline: Instant,
    pub(super) total_seats: u64,
    pub(super) refresh_ms: u64,
    /// Seats of reservations their buyers have seen confirmed.
    pub(super) confirmed_seats: AtomicU64,
    /// When `confirmed_seats` reached `total_seats`.
    pub(super) all_confirmed_at: OnceLock<Duration>,
    /// When a user first got a seat map with no seat available and none held.
    pub(super) sold_out_seen_at: OnceLock<Duration>,
    /// Percent of buyers who ask for the best seats together instead of picking seats.
    pub(super) best_percent: u32,
    /// `GET /api/v1/showtimes/{id}/availability`, what best-available buyers look at.
    pub(super) availability_url: String,
    /// The screen's categories; with more than one, a best-available buyer names one.
    pub(super) categories: Vec<&'static str>,
    /// Turns to take part (`--active-users`); `None`: everybody at once.
    pub(super) active: Option<Arc<tokio::sync::Semaphore>>,
}

impl Race {
    fn confirmed(&self, seats: u64) {
        let now = self.start.elapsed();
        let total = self.confirmed_seats.fetch_add(seats, Ordering::AcqRel) + seats;
        if total >= self.total_seats {
            let _ = self.all_confirmed_at.set(now);
        }
    }
}

/// How a user's race ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Ending {
    /// Got tickets.
    Booked,
    /// Saw the seat map sold out.
    SoldOut,
    /// Still trying at `--time-limit-secs`.
    TimeLimit,
}

/// A random wait between half and one and a half of `mean_ms`.
fn jitter(rng: &mut StdRng, mean_ms: u64) -> Duration {
    Duration::from_millis(rng.random_range(mean_ms / 2..=mean_ms + mean_ms / 2))
}

/// The wait after the `failures`-th failed request in a row: 0.5 s doubling up to 8 s, at
/// least what the API asked for with `Retry-After`, jittered.
fn backoff(rng: &mut StdRng, failures: u32, retry_after: Option<Duration>) -> Duration {
    let doubling = 500u64 << failures.saturating_sub(1).min(4);
    let asked = retry_after.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    jitter(rng, doubling.max(asked))
}

/// The counts of `GET /api/v1/showtimes/{id}/availability` a buyer looks at.
#[derive(Deserialize)]
struct Availability {
    sold_out: bool,
    categories: Vec<CategoryCount>,
}

#[derive(Deserialize)]
struct CategoryCount {
    category: String,
    available: u32,
}

/// One user. A best-available buyer ([`best_buyer`]) never loads the seat map. Any other: load
/// the seat map, hold 1-4 seats shown available, check out, follow the reservation; on a
/// conflict try other seats from the same map (a fresh map after three conflicts in a row or
/// when the map's seats are used up); stop with tickets, on a sold-out map, or at the limit.
/// After an error the user backs off (`backoff`), honouring the API's `Retry-After`. With
/// `--active-users`, the user first waits for a turn and keeps it until the end.
pub(super) async fn racer(race: Arc<Race>, user: User, n: u32) -> (Tally, Ending) {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut tally = Tally::default();
    tokio::time::sleep_until(tokio::time::Instant::from_std(race.start)).await;
    let _turn = match &race.active {
        Some(turns) => Some(turns.clone().acquire_owned().await.expect("the turns are never closed")),
        None => None,
    };
    if n % 100 < race.best_percent {
        return best_buyer(&race, &user, &mut rng, tally).await;
    }
    let client = &race.shop.client;
    let mut seen: Vec<Uuid> = Vec::new();
    let mut misses = 0;
    let mut failures = 0;
    loop {
        if Instant::now() >= race.deadline {
            return (tally, Ending::TimeLimit);
        }
        if seen.is_empty() || misses >= 3 {
            misses = 0;
            tally.seat_maps += 1;
            let answer = send(client.get(&race.map_url).bearer_auth(&user.token)).await;
            let Some((available, all_sold)) = read(answer, "seat map", &mut tally, SeatMap::available) else {
                failures += 1;
                tokio::time::sleep(backoff(&mut rng, failures, tally.retry_after.take())).await;
                continue;
            };
            failures = 0;
            seen = available;
            if seen.is_empty() {
                if all_sold {
                    let _ = race.sold_out_seen_at.set(race.start.elapsed());
                    return (tally, Ending::SoldOut);
                }
                // Held seats may come back: look again in a moment, as a person would.
                tokio::time::sleep(jitter(&mut rng, race.refresh_ms)).await;
                continue;
            }
        }
        let n = rng.random_range(1..=MAX_SEATS_PER_HOLD).min(seen.len());
        let mut seats = Vec::with_capacity(n);
        for _ in 0..n {
            let i = rng.random_range(0..seen.len());
            seats.push(seen.swap_remove(i));
        }
        match race.shop.purchase(&user.token, race.showtime, Pick::Seats(&seats), &mut tally).await {
            Attempt::Booked => {
                race.confirmed(seats.len() as u64);
                return (tally, Ending::Booked);
            }
            Attempt::Conflict(taken) => {
                failures = 0;
                misses += 1;
                seen.retain(|s| !taken.contains(s));
            }
            Attempt::HoldFailed | Attempt::NotConfirmed => {
                failures += 1;
                tokio::time::sleep(backoff(&mut rng, failures, tally.retry_after.take())).await;
            }
        }
    }
}

/// A best-available buyer wants 1-4 seats together: reads the showtime's availability (sold
/// out ends the race for him; only held seats left: he looks again in a moment), picks a
/// category with free seats (on a one-category screen he names none), asks for his count
/// there, then for fewer while no block is free, then looks at the availability again.
async fn best_buyer(race: &Race, user: &User, rng: &mut StdRng, mut tally: Tally) -> (Tally, Ending) {
    let wanted = rng.random_range(1..=MAX_SEATS_PER_HOLD) as u32;
    let mut failures = 0;
    loop {
        if Instant::now() >= race.deadline {
            return (tally, Ending::TimeLimit);
        }
        tally.availability_reads += 1;
        let answer = send(race.shop.client.get(&race.availability_url).bearer_auth(&user.token)).await;
        let Some(counts) =
            read(answer, "availability", &mut tally, |body| serde_json::from_slice::<Availability>(body))
        else {
            failures += 1;
            tokio::time::sleep(backoff(rng, failures, tally.retry_after.take())).await;
            continue;
        };
        failures = 0;
        if counts.sold_out {
            let _ = race.sold_out_seen_at.set(race.start.elapsed());
            return (tally, Ending::SoldOut);
        }
        let open: Vec<&CategoryCount> = counts.categories.iter().filter(|c| c.available > 0).collect();
        let Some(choice) = open.choose(rng) else {
            tokio::time::sleep(jitter(rng, race.refresh_ms)).await;
            continue;
        };
        let category = (race.categories.len() > 1).then_some(choice.category.as_str());
        let mut count = wanted.min(choice.available).max(1);
        loop {
            tally.best_available += 1;
            match race.shop.purchase(&user.token, race.showtime, Pick::Best(count, category), &mut tally).await {
                Attempt::Booked => {
                    race.confirmed(u64::from(count));
                    return (tally, Ending::Booked);
                }
                Attempt::Conflict(_) if count > 1 => count -= 1,
                // Not even one seat there: the availability was a moment old (it is shared
                // for SEATGATE_SEATMAP_CACHE_MS); look again after about that long.
                Attempt::Conflict(_) => {
                    tokio::time::sleep(jitter(rng, CONFLICT_PAUSE_MS)).await;
                    break;
                }
                Attempt::HoldFailed | Attempt::NotConfirmed => {
                    failures += 1;
                    tokio::time::sleep(backoff(rng, failures, tally.retry_after.take())).await;
                    break;
                }
            }
        }
    }
}

/// Mean pause of a best-available buyer after no seat at all was free where he asked.
const CONFLICT_PAUSE_MS: u64 = 300;

/// A 200 answer's body read by `parse`; anything else is recorded as an error of `what`.
fn read<T>(
    answer: Result<super::shop::Answer, reqwest::Error>,
    what: &str,
    tally: &mut Tally,
    parse: impl FnOnce(&[u8]) -> Result<T, serde_json::Error>,
) -> Option<T> {
    if let Ok(answer) = &answer {
        tally.note(answer);
    }
    match answer.map(|a| (a.status, a.body)) {
        Ok((StatusCode::OK, body)) => match parse(&body) {
            Ok(value) => Some(value),
            Err(e) => {
                tally.error(format!("{what} 200 unreadable"), || e.to_string());
                None
            }
        },
        Ok((status, body)) => {
            tally.error(format!("{what} {} {}", status.as_u16(), code(&body)), || {
                format!("{what} {status}: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
            });
            None
        }
        Err(e) => {
            tally.error(format!("{what}: transport error ({})", transport_kind(&e)), || chain(&e));
            None
        }
    }
}

/// What the race showed.
#[derive(Debug, Serialize)]
pub struct RaceResult {
    pub users: u32,
    pub seats: u64,
    pub registration_secs: f64,
    /// From the start signal to the last seat seen confirmed by its buyer.
    pub all_confirmed_secs: Option<f64>,
    /// From the start signal to the first seat map with every seat sold.
    pub sold_out_seen_secs: Option<f64>,
    pub race_secs: f64,
    pub confirmed_seats_seen: u64,
    pub endings: BTreeMap<String, u64>,
    pub bookings: u64,
    pub holds: u64,
    pub conflicts: u64,
    /// Hold attempts that asked for the best seats together.
    pub best_available_attempts: u64,
    /// Reads of the showtime's availability by best-available buyers.
    pub availability_reads: u64,
    pub checkouts: u64,
    pub checkout_retries: u64,
    pub seat_maps: u64,
    pub polls: u64,
    /// Reservation streams followed after checkout, and those that failed (then polled).
    pub pushes: u64,
    pub push_fallbacks: u64,
    pub push_failures: BTreeMap<String, u64>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One verification and whether it held.
#[derive(Debug, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// Waits (at most 120 s) until no reservation of the showtime is `payment_pending`; returns
/// how many still are.
pub(super) async fn settle(args: &SelloutArgs, showtime: Uuid) -> anyhow::Result<u64> {
    let sql =
        format!("select count(*) from reservations where showtime_id = '{showtime}' and status = 'payment_pending'");
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let pending: u64 = psql(&args.psql_bin, &args.database_url, &sql)
            .await?
            .trim()
            .parse()
            .context("count pending reservations")?;
        if pending == 0 || Instant::now() >= until {
            return Ok(pending);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Checks the sale in PostgreSQL directly.
pub(super) async fn verify(
    args: &SelloutArgs,
    showtime: Uuid,
    screen: Uuid,
    race: &RaceResult,
    pending: u64,
) -> anyhow::Result<Vec<Check>> {
    let sql = format!(
        "select
           (select count(*) from booked_seats where showtime_id = '{showtime}'),
           (select count(distinct seat_id) from booked_seats where showtime_id = '{showtime}'),
           (select count(*) from seats where screen_id = '{screen}'),
           (select count(*) from booked_seats bs where bs.showtime_id = '{showtime}'
              and not exists (select 1 from seats s where s.id = bs.seat_id and s.screen_id = '{screen}')),
           (select count(*) from (select rs.seat_id from reservations r
              join reservation_seats rs on rs.reservation_id = r.id
              where r.showtime_id = '{showtime}' and r.status = 'confirmed'
              group by rs.seat_id having count(*) > 1) d),
           (select count(*) from bookings where showtime_id = '{showtime}' and status = 'confirmed'),
           (select count(*) from payments p join reservations r on r.id = p.reservation_id
              where r.showtime_id = '{showtime}' and p.status = 'succeeded'),
           (select count(*) from payments p join reservations r on r.id = p.reservation_id
              where r.showtime_id = '{showtime}' and p.status = 'succeeded'
                and not exists (select 1 from bookings b where b.reservation_id = p.reservation_id
                                and b.status = 'confirmed')),
           (select count(*) from payments p join reservations r on r.id = p.reservation_id
              where r.showtime_id = '{showtime}' and p.status = 'refunded'),
           (select count(*) from payments p join reservations r on r.id = p.reservation_id
              where r.showtime_id = '{showtime}' and p.status = 'initiated'),
           (select coalesce(string_agg(status::text || ' ' || n, ', ' order by status), '')
              from (select status, count(*) n from reservations where showtime_id = '{showtime}' group by status) s)"
    );
    let row = psql(&args.psql_bin, &args.database_url, &sql).await.context("verification queries")?;
    let v: Vec<&str> = row.trim().split('|').collect();
    let num = |i: usize| -> anyhow::Result<u64> {
        v.get(i).and_then(|s| s.parse().ok()).with_context(|| format!("verification column {i} in {row:?}"))
    };
    let (booked, distinct, screen_seats, foreign) = (num(0)?, num(1)?, num(2)?, num(3)?);
    let (doubled, bookings, succeeded, unbooked, refunded, initiated) =
        (num(4)?, num(5)?, num(6)?, num(7)?, num(8)?, num(9)?);
    let reservations = v.get(10).copied().unwrap_or_default().to_owned();
    let check = |what: &str, ok: bool, detail: String| Check { what: what.to_owned(), ok, detail };
    Ok(vec![
        check(
            "every seat booked exactly once",
            booked == race.seats && screen_seats == race.seats,
            format!("{booked} booked_seats rows for {screen_seats} seats of the screen"),
        ),
        check(
            "no seat twice in booked_seats",
            distinct == booked,
            format!("{distinct} distinct seats in {booked} rows"),
        ),
        check("booked seats belong to the showtime's screen", foreign == 0, format!("{foreign} foreign seats")),
        check(
            "no seat in two confirmed reservations",
            doubled == 0,
            format!("{doubled} seats in more than one confirmed reservation"),
        ),
        check(
            "every succeeded payment has its booking",
            unbooked == 0 && succeeded == bookings,
            format!(
                "{succeeded} succeeded payments, {bookings} confirmed bookings, {unbooked} without a booking; {refunded} refunded"
            ),
        ),
        check(
            "nothing left pending",
            pending == 0 && initiated == 0,
            format!(
                "{pending} reservations payment_pending, {initiated} payments initiated; reservations: {reservations}"
            ),
        ),
        check(
            "buyers saw what PostgreSQL holds",
            race.confirmed_seats_seen == booked && race.bookings == bookings,
            format!(
                "buyers saw {} bookings / {} seats confirmed; PostgreSQL has {bookings} / {booked}",
                race.bookings, race.confirmed_seats_seen
            ),
        ),
    ])
}

/// What `seatgate check-invariants` said.
#[derive(Debug, Serialize)]
pub struct Invariants {
    pub ok: bool,
    pub exit: String,
    pub report: Value,
}

/// Runs `<seatgate> check-invariants` with this process' environment (the API's settings).
pub(super) async fn check_invariants(bin: &str) -> Invariants {
    let run = tokio::process::Command::new(bin).arg("check-invariants").kill_on_drop(true).output();
    let out = match tokio::time::timeout(Duration::from_secs(120), run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Invariants { ok: false, exit: format!("cannot run {bin}: {e}"), report: Value::Null },
        Err(_) => return Invariants { ok: false, exit: "timed out after 120 s".into(), report: Value::Null },
    };
    // The report is pretty JSON at the end of stdout; log lines (JSON, one per line) may come first.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout
        .find("\n{\n")
        .map(|i| &stdout[i + 1..])
        .or_else(|| stdout.starts_with("{\n").then_some(&stdout[..]))
        .and_then(|json| serde_json::from_str::<Value>(json).ok())
        .unwrap_or_else(|| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            json!({"unparsed_stdout": api::truncate(&stdout, 2000), "stderr": api::truncate(&stderr, 2000)})
        });
    let clean = report["violations"].as_array().is_some_and(Vec::is_empty);
    Invariants { ok: out.status.success() && clean, exit: out.status.to_string(), report }
}
