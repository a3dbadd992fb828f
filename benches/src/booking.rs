//! Scenarios `booking` and `sellout`: the whole way from a hold to a confirmed booking, with
//! PostgreSQL, RabbitMQ and the payment workers in the loop (start them next to the API:
//! `scripts/bench.sh` does).
//!
//! - `booking`: `--users` virtual users loop "hold 1-4 random seats, check out with `tok_ok`,
//!   poll the reservation until it is final" on large showtimes. API phases alternate with
//!   `pgbench` phases that run the payment worker's booking transaction (`finalise` in
//!   `src/payments/service.rs`) against a scratch database migrated with the same migrations;
//!   the ratio is confirmed bookings/s through the API over pgbench transactions/s.
//! - `sellout`: `--users` (5,000) accounts race for one showtime of `--rows` x `--seats-per-row`
//!   (1,000) seats, each picking seats it sees available in the seat map and retrying on 409,
//!   until the seat map shows nothing available and nothing held. Then PostgreSQL is checked
//!   directly (`psql`) and with `seatgate check-invariants`.
//!
//! Errors are classified by the API's problem+json `code` and never folded into the figures.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::{self, Api, LoadArgs, TargetArgs, User};
use crate::stats::{median, percentile_ms};

/// Attempts of one checkout (the same Idempotency-Key each time) before the user gives up.
const CHECKOUT_ATTEMPTS: u32 = 5;
/// Seats one hold asks for: 1 to this many.
const MAX_SEATS_PER_HOLD: usize = 4;
/// Seats of one pgbench booking (the issue asks for "a booking + 4 booked_seats").
const PGBENCH_SEATS: u64 = 4;
/// Seat category of the benchmark screens.
const CATEGORY: &str = "standard";
/// Pause between phases, so one phase's tail does not overlap the next one's start.
const PAUSE: Duration = Duration::from_millis(500);
/// Error examples kept per phase (the counts are complete; the examples are not).
const ERROR_SAMPLES: usize = 5;
/// Bound of one `psql` call (fixtures of a pgbench phase included).
const PSQL_TIMEOUT: Duration = Duration::from_secs(120);
/// Transactions/s assumed for sizing the first pgbench phase's fixtures.
const PGBENCH_TPS_GUESS: f64 = 10_000.0;
/// Fixture slots per pgbench client: this many times what the fastest phase so far would use.
const PGBENCH_MARGIN: f64 = 2.5;

// ---------------------------------------------------------------------------------------------
// Flags

/// Flags of the `booking` scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct BookingArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Rows of the benchmark screen.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rows: u32,
    /// Seats per row (rows x seats at most 5000, the API's limit).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub seats_per_row: u32,
    /// Showtimes on the screen. Users buy from one until less than `--fill-limit` of its seats
    /// are unsold, then move on to the next, so seats never run out during a run.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub showtimes: u32,
    /// Share of a showtime's seats that may be sold before users move on to the next one.
    #[arg(long, default_value_t = 0.5)]
    pub fill_limit: f64,
    /// Interval between two polls of a reservation, in milliseconds.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub poll_ms: u64,
    /// Longest wait from the checkout's 202 to a final reservation status, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub confirm_timeout_secs: u64,
    #[command(flatten)]
    pub pgbench: PgbenchArgs,
}

/// Where and how pgbench runs.
#[derive(Clone, Debug, clap::Args)]
pub struct PgbenchArgs {
    /// Scratch database of the pgbench phases (loopback only), migrated with seatgate's own
    /// migrations beforehand (`seatgate migrate`); its tables get fixture rows.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/seatgate_bench_pgbench")]
    pub pgbench_database_url: String,
    /// pgbench clients (connections). Default: the payment worker's prefetch, i.e. how many
    /// booking transactions one worker process can have in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub pgbench_clients: u32,
    /// pgbench threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub pgbench_jobs: u32,
    #[arg(long, default_value = "pgbench")]
    pub pgbench_bin: String,
    #[arg(long, default_value = "psql")]
    pub psql_bin: String,
    /// Directory for the pgbench script and its per-transaction logs (deleted once read).
    #[arg(long, default_value = "target/bench")]
    pub out_dir: PathBuf,
}

/// Flags of the `sellout` scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct SelloutArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Users racing for the showtime, each with their own account.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub users: u32,
    /// Rows of the screen.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rows: u32,
    /// Seats per row (default 20 x 50 = 1000 seats).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub seats_per_row: u32,
    /// Registrations in flight at once during set-up (each hashes a password with argon2).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub register_concurrency: u32,
    /// The race stops here even if seats are left, in seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub time_limit_secs: u64,
    /// Timeout of one request during the race, in seconds (a browser waits a while).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub request_timeout_secs: u64,
    /// Interval between two polls of a reservation, in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub poll_ms: u64,
    /// Longest wait from the checkout's 202 to a final reservation status, in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub confirm_timeout_secs: u64,
    /// Mean wait before reloading a seat map that shows no free seat but some held ones, in
    /// milliseconds (drawn between half and one and a half of it).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub refresh_ms: u64,
    /// The API's database (loopback only), for the verification.
    #[arg(long, env = "SEATGATE_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/seatgate_bench")]
    pub database_url: String,
    /// The `seatgate` binary whose `check-invariants` runs at the end, with this process'
    /// environment (the API's `SEATGATE_*` settings).
    #[arg(long, default_value = "target/release/seatgate")]
    pub seatgate_bin: String,
    #[arg(long, default_value = "psql")]
    pub psql_bin: String,
}

// ---------------------------------------------------------------------------------------------
// What one virtual user records

/// What one virtual user saw during a phase (or the whole race).
#[derive(Debug, Default)]
struct Tally {
    /// Holds granted (201).
    holds: u64,
    /// Holds refused with 409 `seats_unavailable`.
    conflicts: u64,
    /// Checkouts answered 202.
    checkouts: u64,
    /// Checkouts sent again with the same key after a 503, 429 or transport error.
    checkout_retries: u64,
    /// Reservations seen `confirmed`.
    bookings: u64,
    /// Seats of those reservations.
    seats: u64,
    /// `GET /api/v1/reservations/{id}` calls.
    polls: u64,
    /// `GET /api/v1/showtimes/{id}/seats` calls (sellout).
    seat_maps: u64,
    hold_us: Vec<u64>,
    checkout_us: Vec<u64>,
    /// From the checkout's 202 to the poll answer that said `confirmed`.
    confirm_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
    samples: Vec<String>,
    /// The longest `Retry-After` of the error answers since the caller last took it.
    retry_after: Option<Duration>,
}

impl Tally {
    fn error(&mut self, kind: impl Into<String>, detail: impl FnOnce() -> String) {
        *self.errors.entry(kind.into()).or_default() += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(detail());
        }
    }

    /// Remembers an answer's `Retry-After`.
    fn note(&mut self, answer: &Answer) {
        if let Some(wait) = answer.retry_after {
            self.retry_after = Some(self.retry_after.map_or(wait, |w| w.max(wait)));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.holds += other.holds;
        self.conflicts += other.conflicts;
        self.checkouts += other.checkouts;
        self.checkout_retries += other.checkout_retries;
        self.bookings += other.bookings;
        self.seats += other.seats;
        self.polls += other.polls;
        self.seat_maps += other.seat_maps;
        self.hold_us.extend(other.hold_us);
        self.checkout_us.extend(other.checkout_us);
        self.confirm_us.extend(other.confirm_us);
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        let room = ERROR_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// p50, p99 and max of microseconds, in milliseconds (sorts in place).
fn spread(us: &mut [u64]) -> (f64, f64, f64) {
    us.sort_unstable();
    (percentile_ms(us, 50.0), percentile_ms(us, 99.0), us.last().map_or(0.0, |v| *v as f64 / 1000.0))
}

// ---------------------------------------------------------------------------------------------
// HTTP of one purchase

/// The parts of a problem+json body the bench looks at.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    unavailable_seat_ids: Vec<Uuid>,
}

fn problem(body: &[u8]) -> Problem {
    serde_json::from_slice(body).unwrap_or_default()
}

fn code(body: &[u8]) -> String {
    problem(body).code.unwrap_or_else(|| "-".to_owned())
}

#[derive(Deserialize)]
struct HoldCreated {
    hold_id: Uuid,
}

#[derive(Deserialize)]
struct CheckoutAccepted {
    reservation_id: Uuid,
}

#[derive(Deserialize)]
struct ReservationView {
    status: String,
    #[serde(default)]
    failure_reason: Option<String>,
}

#[derive(Deserialize)]
struct SeatMap {
    seats: Vec<MapSeat>,
}

#[derive(Deserialize)]
struct MapSeat {
    id: Uuid,
    status: String,
}

/// An answer: status, whole body, and the `Retry-After` of a 429 or 503 (in seconds).
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    retry_after: Option<Duration>,
}

/// Sends a request and reads the whole body.
async fn send(req: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let res = req.send().await?;
    let status = res.status();
    let retry_after = matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
        .then(|| res.headers().get(reqwest::header::RETRY_AFTER))
        .flatten()
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = res.bytes().await?.to_vec();
    Ok(Answer { status, body, retry_after })
}

fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    }
}

/// An error and its causes on one line (reqwest's `Display` names only the outermost).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How one purchase attempt ended.
#[derive(Debug)]
enum Attempt {
    /// Confirmed: the seats are sold to this user.
    Booked,
    /// 409 `seats_unavailable`: nothing was held.
    Conflict(Vec<Uuid>),
    /// The hold was not granted for another reason (recorded as an error).
    HoldFailed,
    /// Held, but no confirmation (recorded as an error); the seats may be held or sold.
    NotConfirmed,
}

/// What a purchase needs besides the user and the seats.
#[derive(Clone)]
struct Shop {
    client: reqwest::Client,
    base: String,
    poll: Duration,
    confirm_timeout: Duration,
}

impl Shop {
    /// Hold `seats`, check out with `tok_ok` and a fresh `Idempotency-Key`, then poll the
    /// reservation until it is final or `confirm_timeout` has passed since the 202.
    async fn purchase(&self, token: &str, showtime: Uuid, seats: &[Uuid], tally: &mut Tally) -> Attempt {
        let hold_url = format!("{}/api/v1/showtimes/{showtime}/holds", self.base);
        let sent = Instant::now();
        let answer = send(self.client.post(&hold_url).bearer_auth(token).json(&json!({"seat_ids": seats}))).await;
        let (status, body) = match answer {
            Ok(answer) => {
                tally.note(&answer);
                (answer.status, answer.body)
            }
            Err(e) => {
                tally.error(format!("hold: transport error ({})", transport_kind(&e)), || chain(&e));
                return Attempt::HoldFailed;
            }
        };
        tally.hold_us.push(micros(sent.elapsed()));
        let hold_id = match status {
            StatusCode::CREATED => match serde_json::from_slice::<HoldCreated>(&body) {
                Ok(h) => h.hold_id,
                Err(_) => {
                    tally.error("hold 201 without hold_id", || String::from_utf8_lossy(&body).into_owned());
                    return Attempt::HoldFailed;
                }
            },
            StatusCode::CONFLICT => {
                let p = problem(&body);
                if p.code.as_deref() == Some("seats_unavailable") {
                    tally.conflicts += 1;
                    return Attempt::Conflict(p.unavailable_seat_ids);
                }
                tally.error(format!("hold 409 {}", p.code.as_deref().unwrap_or("-")), || {
                    format!("hold 409: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
                });
                return Attempt::HoldFailed;
            }
            other => {
                tally.error(format!("hold {} {}", other.as_u16(), code(&body)), || {
                    format!("hold {other}: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
                });
                return Attempt::HoldFailed;
            }
        };
        tally.holds += 1;

        // A payment page retries a checkout the API could not take (503, 429, a dropped
        // connection) with the same Idempotency-Key, after the Retry-After it was given: the key
        // makes the retry safe, and giving up would strand the hold until it expires.
        let checkout_url = format!("{}/api/v1/holds/{hold_id}/checkout", self.base);
        let key = Uuid::new_v4().to_string();
        let sent = Instant::now();
        let mut attempt = 0;
        let reservation_id = loop {
            attempt += 1;
            let answer = send(
                self.client
                    .post(&checkout_url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"payment_token": "tok_ok"})),
            )
            .await;
            if let Ok(answer) = &answer {
                tally.note(answer);
            }
            let retryable = match answer.map(|a| (a.status, a.body)) {
                Ok((StatusCode::ACCEPTED, body)) => match serde_json::from_slice::<CheckoutAccepted>(&body) {
                    Ok(c) => break c.reservation_id,
                    Err(_) => {
                        tally.error("checkout 202 without reservation_id", || {
                            String::from_utf8_lossy(&body).into_owned()
                        });
                        return Attempt::NotConfirmed;
                    }
                },
                Ok((status, body)) => {
                    tally.error(format!("checkout {} {}", status.as_u16(), code(&body)), || {
                        format!("checkout {status}: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
                    });
                    matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS)
                        || (status == StatusCode::CONFLICT && code(&body) == "conflict")
                }
                Err(e) => {
                    tally.error(format!("checkout: transport error ({})", transport_kind(&e)), || chain(&e));
                    true
                }
            };
            if !retryable || attempt >= CHECKOUT_ATTEMPTS {
                return Attempt::NotConfirmed;
            }
            tally.checkout_retries += 1;
            let wait = tally.retry_after.take().unwrap_or(Duration::from_millis(500));
            tokio::time::sleep(wait).await;
        };
        let accepted = Instant::now();
        tally.checkout_us.push(micros(accepted.duration_since(sent)));
        tally.checkouts += 1;

        let poll_url = format!("{}/api/v1/reservations/{reservation_id}", self.base);
        loop {
            let wait = tally.retry_after.take().map_or(self.poll, |asked| asked.max(self.poll));
            tokio::time::sleep(wait).await;
            if accepted.elapsed() > self.confirm_timeout {
                tally.error("reservation not final within --confirm-timeout-secs", || {
                    format!("reservation {reservation_id} still not final after {:?}", self.confirm_timeout)
                });
                return Attempt::NotConfirmed;
            }
            tally.polls += 1;
            let (status, body) = match send(self.client.get(&poll_url).bearer_auth(token)).await {
                Ok(answer) => {
                    tally.note(&answer);
                    (answer.status, answer.body)
                }
                Err(e) => {
                    tally.error(format!("poll: transport error ({})", transport_kind(&e)), || chain(&e));
                    continue;
                }
            };
            if status != StatusCode::OK {
                tally.error(format!("poll {} {}", status.as_u16(), code(&body)), || {
                    format!("poll {status}: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
                });
                continue;
            }
            let view = match serde_json::from_slice::<ReservationView>(&body) {
                Ok(view) => view,
                Err(_) => {
                    tally.error("poll 200 without status", || String::from_utf8_lossy(&body).into_owned());
                    continue;
                }
            };
            match view.status.as_str() {
                "payment_pending" => {}
                "confirmed" => {
                    tally.confirm_us.push(micros(accepted.elapsed()));
                    tally.bookings += 1;
                    tally.seats += seats.len() as u64;
                    return Attempt::Booked;
                }
                other => {
                    tally.error(format!("reservation {other}"), || {
                        format!(
                            "reservation {reservation_id} {other}: {}",
                            view.failure_reason.as_deref().unwrap_or("-")
                        )
                    });
                    return Attempt::NotConfirmed;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Set-up through the API

/// Admin login, a movie, a theater, a screen; returns the admin token, the movie and screen
/// ids and the screen's seat ids in layout order.
async fn catalog(api: &Api, target: &TargetArgs, run_id: &str, rows: u32, per_row: u32) -> anyhow::Result<Catalog> {
    api.ready().await?;
    let admin = api.login(&target.admin_email, &target.admin_password).await?;
    let movie = json!({"title": format!("Bench {run_id}"), "duration_minutes": 120, "genres": ["drama"]});
    let (movie_id, _) = api.create(&admin, "/api/v1/movies", &movie).await.context("create the movie")?;
    let theater = json!({"name": format!("Bench Theater {run_id}"), "city": "Benchville", "address": "Loop 1"});
    let (theater_id, _) = api.create(&admin, "/api/v1/theaters", &theater).await.context("create the theater")?;
    let row_list: Vec<Value> =
        (1..=rows).map(|r| json!({"label": format!("R{r}"), "seats": per_row, "category": CATEGORY})).collect();
    let screen = json!({"name": format!("Bench Screen {run_id}"), "rows": row_list});
    let (screen_id, _) = api
        .create(&admin, &format!("/api/v1/theaters/{theater_id}/screens"), &screen)
        .await
        .context("create the screen")?;
    let screen = api
        .call(Method::GET, &format!("/api/v1/screens/{screen_id}"), None, None, StatusCode::OK)
        .await
        .context("read the screen's seats")?;
    let seat_ids = screen["seats"]
        .as_array()
        .context("GET /api/v1/screens/{id}: no seats array")?
        .iter()
        .map(|s| s["id"].as_str().and_then(|id| id.parse().ok()).context("a seat without a UUID id"))
        .collect::<anyhow::Result<Vec<Uuid>>>()?;
    let expected = (rows * per_row) as usize;
    if seat_ids.len() != expected {
        bail!("the screen has {} seats, expected {expected}", seat_ids.len());
    }
    Ok(Catalog { admin, movie_id, screen_id, seat_ids })
}

struct Catalog {
    admin: String,
    movie_id: Uuid,
    screen_id: Uuid,
    seat_ids: Vec<Uuid>,
}

/// A showtime on the screen, `offset_hours` after this time tomorrow (two hours long).
async fn showtime(api: &Api, c: &Catalog, offset_hours: i64) -> anyhow::Result<Uuid> {
    let starts = chrono::Utc::now() + chrono::Duration::days(1) + chrono::Duration::hours(offset_hours);
    let body = json!({
        "movie_id": c.movie_id,
        "screen_id": c.screen_id,
        "starts_at": starts.format("%Y-%m-%dT%H:%M:00Z").to_string(),
        "prices": {CATEGORY: 1200},
        "currency": "EUR",
    });
    let (id, _) = api.create(&c.admin, "/api/v1/showtimes", &body).await.context("create a showtime")?;
    Ok(id)
}

/// Registers `n` accounts, `concurrency` at a time, with progress on stderr.
async fn register_users(api: &Api, run_id: &str, n: u32, concurrency: u32) -> anyhow::Result<Vec<User>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency as usize));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (api, run_id, limit) = (api.clone(), run_id.to_owned(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            api.register(&run_id, i).await.with_context(|| format!("register user {i}"))
        });
    }
    let started = Instant::now();
    let mut users = Vec::with_capacity(n as usize);
    while let Some(joined) = tasks.join_next().await {
        users.push(joined.context("a registration task panicked")??);
        if users.len() % 500 == 0 && users.len() < n as usize {
            eprintln!("  {} of {n} users registered ({:.0} s)", users.len(), started.elapsed().as_secs_f64());
        }
    }
    Ok(users)
}

fn run_id() -> String {
    Uuid::new_v4().simple().to_string()[..8].to_owned()
}

// ---------------------------------------------------------------------------------------------
// Scenario `booking`: the API side

/// Unsold seats of one showtime, as far as this run knows (only the bench buys here).
struct FreeSeats {
    seats: Vec<Uuid>,
    index: HashMap<Uuid, usize>,
}

impl FreeSeats {
    fn new(seats: &[Uuid]) -> Self {
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
struct Showtimes {
    list: Vec<(Uuid, Mutex<FreeSeats>)>,
    current: AtomicUsize,
    /// A showtime with fewer unsold seats than this is left for the next one.
    keep_free: usize,
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
    fn used(&self) -> usize {
        (self.current.load(Ordering::Acquire) + 1).min(self.list.len())
    }
}

/// What the API phases need, made once through the real API.
struct BookingTarget {
    shop: Shop,
    showtimes: Arc<Showtimes>,
    users: Vec<User>,
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
    pub hold_p50_ms: f64,
    pub hold_p99_ms: f64,
    pub checkout_p50_ms: f64,
    pub checkout_p99_ms: f64,
    /// From the checkout's 202 to the poll that saw `confirmed`.
    pub confirm_p50_ms: f64,
    pub confirm_p99_ms: f64,
    pub confirm_max_ms: f64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    #[serde(skip)]
    pub samples: Vec<String>,
}

impl ApiPhase {
    fn of(round: u32, elapsed: Duration, mut t: Tally) -> Self {
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let (hold_p50_ms, hold_p99_ms, _) = spread(&mut t.hold_us);
        let (checkout_p50_ms, checkout_p99_ms, _) = spread(&mut t.checkout_us);
        let (confirm_p50_ms, confirm_p99_ms, confirm_max_ms) = spread(&mut t.confirm_us);
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
            hold_p50_ms,
            hold_p99_ms,
            checkout_p50_ms,
            checkout_p99_ms,
            confirm_p50_ms,
            confirm_p99_ms,
            confirm_max_ms,
            errors: t.errors.values().sum(),
            error_kinds: t.errors,
            samples: t.samples,
        }
    }
}

/// Runs the scenario and prints the report.
pub async fn run_booking(args: BookingArgs) -> anyhow::Result<()> {
    let api_url = api::loopback_url("--api", &args.target.api)?;
    api::loopback_url("--pgbench-database-url", &args.pgbench.pgbench_database_url)?;
    let seats = args.rows * args.seats_per_row;
    if seats > 5000 {
        bail!("--rows x --seats-per-row is {seats}; a screen has at most 5000 seats");
    }
    if !(args.fill_limit > 0.0 && args.fill_limit <= 1.0) {
        bail!("--fill-limit must be above 0 and at most 1");
    }
    if u64::from(seats) < PGBENCH_SEATS {
        bail!("the screen needs at least {PGBENCH_SEATS} seats");
    }
    let mut pg = Pgbench::new(&args.pgbench, u64::from(seats)).await?;
    let api = Api::new(api::client(args.load.users)?, &api_url);

    eprintln!(
        "setting up through {api_url} ({} users, {} showtimes of {seats} seats)...",
        args.load.users, args.showtimes
    );
    let started = Instant::now();
    let setup = async {
        let run_id = run_id();
        let c = catalog(&api, &args.target, &run_id, args.rows, args.seats_per_row).await?;
        let mut list = Vec::new();
        for k in 0..args.showtimes {
            let id = showtime(&api, &c, 3 * i64::from(k)).await?;
            list.push((id, Mutex::new(FreeSeats::new(&c.seat_ids))));
        }
        let users = register_users(&api, &run_id, args.load.users, 8).await?;
        let keep_free = ((1.0 - args.fill_limit) * f64::from(seats)).ceil() as usize;
        let shop = Shop {
            client: api.client.clone(),
            base: api.url(""),
            poll: Duration::from_millis(args.poll_ms),
            confirm_timeout: Duration::from_secs(args.confirm_timeout_secs),
        };
        let showtimes = Arc::new(Showtimes { list, current: AtomicUsize::new(0), keep_free });
        anyhow::Ok(BookingTarget { shop, showtimes, users })
    };
    let target = tokio::time::timeout(Duration::from_secs(300), setup)
        .await
        .context("the API set-up took longer than 300 s")??;
    pg.setup().await?;
    eprintln!("set-up done in {:.1} s", started.elapsed().as_secs_f64());

    let phase_bound = Duration::from_secs(args.load.duration_secs + args.confirm_timeout_secs)
        + 2 * api::LOAD_REQUEST_TIMEOUT
        + PSQL_TIMEOUT
        + PAUSE;
    let budget = phase_bound * (2 * args.load.rounds + 2) + Duration::from_secs(60);
    let (api_phases, pg_phases) = tokio::time::timeout(budget, booking_rounds(&target, &mut pg, &args))
        .await
        .with_context(|| format!("the rounds took longer than {} s", budget.as_secs()))??;
    let written = pg.written().await?;
    booking_summary(&args, &target, &api_phases, &pg_phases, &pg, &written);
    Ok(())
}

/// Warm-up, then API and pgbench phases in turn.
async fn booking_rounds(
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
        if a.errors > 0 {
            eprintln!("warm-up api: {} errors: {:?}", a.errors, a.error_kinds);
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
                match shop.purchase(&user.token, showtime, &seats, &mut tally).await {
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

// ---------------------------------------------------------------------------------------------
// Scenario `booking`: the pgbench side

/// One pgbench phase.
#[derive(Clone, Debug, Serialize)]
pub struct PgPhase {
    pub round: u32,
    pub duration_secs: f64,
    /// Booking transactions committed.
    pub transactions: u64,
    /// pgbench's own figure (without the initial connection time).
    pub tps: f64,
    pub latency_avg_ms: f64,
    /// Of the per-transaction log.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Transactions pgbench logged as failed.
    pub failed: u64,
    /// Fixture slots (reservation + payment pairs) made ready for each client.
    pub slots_per_client: u64,
    /// pgbench exited non-zero (e.g. an aborted client): what it said.
    pub error: Option<String>,
}

/// The pgbench side: a scratch database with seatgate's schema, fixture rows, and a script
/// that runs the payment worker's booking transaction on them.
///
/// Every id the script touches is computed from a slot number `n`:
/// `<run prefix, 8 hex><kind, 1 hex><n, 23 hex>` (kind 1 reservation, 2 payment, 3 booking,
/// 4 showtime, 5 seat, 6 hold). Client `c` of a phase uses the slots
/// `base + c * stride ..= base + c * stride + stride - 1`, one per transaction; slot `n`
/// books seats `4 * (n % per_showtime) .. +3` of showtime `n / per_showtime`.
struct Pgbench {
    args: PgbenchArgs,
    url: String,
    prefix: String,
    script: PathBuf,
    seats: u64,
    per_showtime: u64,
    user: Uuid,
    movie: Uuid,
    screen: Uuid,
    next_base: u64,
    best_tps: f64,
}

impl Pgbench {
    /// Checks the tools and the scratch database, and writes the script.
    async fn new(args: &PgbenchArgs, seats: u64) -> anyhow::Result<Self> {
        for bin in [&args.pgbench_bin, &args.psql_bin] {
            let out = tokio::process::Command::new(bin)
                .arg("--version")
                .kill_on_drop(true)
                .output()
                .await
                .with_context(|| format!("run {bin} --version (is the PostgreSQL client installed?)"))?;
            if !out.status.success() {
                bail!("{bin} --version failed");
            }
        }
        let url = args.pgbench_database_url.clone();
        psql(&args.psql_bin, &url, "select count(*) from bookings").await.with_context(|| {
            format!(
                "the pgbench scratch database {url} is not ready: create it with \
                 `SEATGATE_DATABASE_URL={url} target/release/seatgate migrate` (scripts/bench.sh does)"
            )
        })?;
        tokio::fs::create_dir_all(&args.out_dir).await.with_context(|| format!("create {}", args.out_dir.display()))?;
        let mut pg = Self {
            args: args.clone(),
            url,
            prefix: Uuid::new_v4().simple().to_string()[..8].to_owned(),
            script: PathBuf::new(),
            seats: seats - seats % PGBENCH_SEATS,
            per_showtime: seats / PGBENCH_SEATS,
            user: Uuid::now_v7(),
            movie: Uuid::now_v7(),
            screen: Uuid::now_v7(),
            next_base: 0,
            best_tps: 0.0,
        };
        pg.script = args.out_dir.join(format!("pgbench-booking-{}.sql", pg.prefix));
        tokio::fs::write(&pg.script, pg.script_text())
            .await
            .with_context(|| format!("write {}", pg.script.display()))?;
        Ok(pg)
    }

    /// `('<prefix><kind>' || lpad(to_hex(<n>), 23, '0'))::uuid`
    fn id(&self, kind: char, n: &str) -> String {
        format!("('{}{kind}' || lpad(to_hex({n}), 23, '0'))::uuid", self.prefix)
    }

    /// The transaction of `finalise` (src/payments/service.rs) with the statements of
    /// src/payments/repo.rs, in the same order: payment initiated -> succeeded, reservation
    /// payment_pending -> confirmed, the booking, its booked_seats; one round trip each.
    fn script_text(&self) -> String {
        let n = ":n::bigint";
        format!(
            "-- seatgate-bench `booking`: the payment worker's booking transaction (`finalise` in\n\
             -- src/payments/service.rs, statements of src/payments/repo.rs) on one fixture slot.\n\
             \\set i :i + 1\n\
             \\set n :base + :client_id * :stride + :i - 1\n\
             \\set k :n / :per_showtime\n\
             \\set s0 (:n % :per_showtime) * {seats}\n\
             begin;\n\
             update payments set status = 'succeeded', gateway_ref = coalesce('sim_' || :n, gateway_ref), \
             failure_reason = coalesce(null::text, failure_reason), updated_at = now() \
             where id = {payment} and status = 'initiated';\n\
             update reservations set status = 'confirmed', failure_reason = coalesce(null::text, failure_reason), \
             updated_at = now() where id = {reservation} and status = 'payment_pending';\n\
             insert into bookings (id, reservation_id, user_id, showtime_id, ticket_code, amount_minor, currency) \
             values ({booking}, {reservation}, '{user}', {showtime}, 'PG-{prefix}-' || :n, {amount}, 'EUR') returning id;\n\
             insert into booked_seats (showtime_id, seat_id, booking_id) \
             select {showtime}, {seat}, {booking} from generate_series(:s0::bigint, :s0::bigint + {last}) as t(s);\n\
             commit;\n",
            seats = PGBENCH_SEATS,
            payment = self.id('2', n),
            reservation = self.id('1', n),
            booking = self.id('3', n),
            showtime = self.id('4', ":k::bigint"),
            seat = self.id('5', "t.s"),
            user = self.user,
            prefix = self.prefix,
            amount = 1200 * PGBENCH_SEATS,
            last = PGBENCH_SEATS - 1,
        )
    }

    /// The rows every slot refers to: a user, a movie, a theater, a screen and its seats.
    async fn setup(&self) -> anyhow::Result<()> {
        let theater = Uuid::now_v7();
        let sql = format!(
            "insert into users (id, email, name, password_hash) values ('{user}', 'pgbench-{p}@example.com', 'pgbench', 'none');\n\
             insert into movies (id, title, duration_minutes) values ('{movie}', 'pgbench {p}', 120);\n\
             insert into theaters (id, name, city) values ('{theater}', 'pgbench {p}', 'Benchville');\n\
             insert into screens (id, theater_id, name) values ('{screen}', '{theater}', 'pgbench');\n\
             insert into seats (id, screen_id, row_label, number, category, row_index)\n\
               select {seat}, '{screen}', 'R' || (s / 50 + 1), s % 50 + 1, '{CATEGORY}', s / 50\n\
               from generate_series(0::bigint, {last}) as t(s);\n",
            user = self.user,
            movie = self.movie,
            screen = self.screen,
            p = self.prefix,
            seat = self.id('5', "t.s"),
            last = self.seats - 1,
        );
        psql(&self.args.psql_bin, &self.url, &sql).await.context("pgbench fixtures: catalog")?;
        Ok(())
    }

    /// Showtimes, reservations (`payment_pending`) and payments (`initiated`) for `count`
    /// slots from `base`, as checkout leaves them; then a checkpoint.
    async fn fixtures(&self, base: u64, count: u64) -> anyhow::Result<()> {
        let (first, last) = (base, base + count - 1);
        let p = self.per_showtime;
        let sql = format!(
            "insert into showtimes (id, movie_id, screen_id, starts_at, ends_at, prices, currency)\n\
               select {showtime}, '{movie}', '{screen}', timestamptz '2031-01-01 00:00:00+00' + k * interval '3 hours',\n\
                 timestamptz '2031-01-01 02:00:00+00' + k * interval '3 hours', '{{\"{CATEGORY}\": 1200}}', 'EUR'\n\
               from generate_series({first}::bigint / {p}, {last}::bigint / {p}) as t(k)\n\
               where not exists (select 1 from showtimes where id = {showtime});\n\
             insert into reservations (id, user_id, showtime_id, hold_id, status, amount_minor, currency, deadline)\n\
               select {reservation}, '{user}', {showtime_of_n}, {hold}, 'payment_pending', {amount}, 'EUR', now() + interval '1 day'\n\
               from generate_series({first}::bigint, {last}) as t(n);\n\
             insert into payments (id, reservation_id, attempt, status, amount_minor, currency, payment_token, idempotency_key)\n\
               select {payment}, {reservation}, 1, 'initiated', {amount}, 'EUR', 'tok_ok', 'pgbench-' || n\n\
               from generate_series({first}::bigint, {last}) as t(n);\n\
             checkpoint;\n",
            showtime = self.id('4', "t.k"),
            showtime_of_n = self.id('4', &format!("t.n / {p}")),
            reservation = self.id('1', "t.n"),
            payment = self.id('2', "t.n"),
            hold = self.id('6', "t.n"),
            movie = self.movie,
            screen = self.screen,
            user = self.user,
            amount = 1200 * PGBENCH_SEATS,
        );
        psql(&self.args.psql_bin, &self.url, &sql).await.context("pgbench fixtures: slots")?;
        Ok(())
    }

    /// A checkpoint, so the previous phase's dirty pages are not written during the next one.
    async fn checkpoint(&self) -> anyhow::Result<()> {
        psql(&self.args.psql_bin, &self.url, "checkpoint").await.context("checkpoint")?;
        Ok(())
    }

    /// Fixtures for the phase (not measured), then pgbench for `duration`.
    async fn phase(&mut self, duration: Duration, round: u32) -> anyhow::Result<PgPhase> {
        let clients = u64::from(self.args.pgbench_clients);
        let tps = if self.best_tps > 0.0 { self.best_tps } else { PGBENCH_TPS_GUESS };
        let stride = (tps * duration.as_secs_f64() * PGBENCH_MARGIN / clients as f64).ceil() as u64 + 100;
        let base = self.next_base;
        self.fixtures(base, stride * clients).await?;
        self.next_base += stride * clients;
        tokio::time::sleep(PAUSE).await;

        let log_prefix = format!("pgbench-{}-r{round}", self.prefix);
        let secs = duration.as_secs().max(1);
        let mut cmd = tokio::process::Command::new(&self.args.pgbench_bin);
        cmd.arg("--no-vacuum")
            .args(["--protocol", "prepared"])
            .args(["--client", &self.args.pgbench_clients.to_string()])
            .args(["--jobs", &self.args.pgbench_jobs.to_string()])
            .args(["--time", &secs.to_string()])
            .arg(format!("--file={}", self.script.display()))
            .args(["--define", "i=0"])
            .args(["--define", &format!("base={base}")])
            .args(["--define", &format!("stride={stride}")])
            .args(["--define", &format!("per_showtime={}", self.per_showtime)])
            .arg("--log")
            .arg(format!("--log-prefix={}", self.args.out_dir.join(&log_prefix).display()))
            .arg(&self.url)
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(secs + 60), cmd.output())
            .await
            .context("pgbench did not end within its duration + 60 s")?
            .context("run pgbench")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let figure = |prefix: &str| -> Option<f64> {
            stdout.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|rest| {
                rest.trim().split(|c: char| c.is_whitespace() || c == '/').next().and_then(|v| v.parse().ok())
            })
        };
        let mut latencies = Vec::new();
        let mut failed = 0;
        read_pgbench_logs(&self.args.out_dir, &log_prefix, &mut latencies, &mut failed).await?;
        let (p50_ms, p99_ms, max_ms) = spread(&mut latencies);
        let error = (!out.status.success()).then(|| {
            let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).take(3).collect();
            format!("pgbench exited with {}: {}", out.status, said.join(" | "))
        });
        let phase = PgPhase {
            round,
            duration_secs: duration.as_secs_f64(),
            transactions: figure("number of transactions actually processed:").map_or(0, |v| v as u64),
            tps: figure("tps =").unwrap_or(0.0),
            latency_avg_ms: figure("latency average =").unwrap_or(0.0),
            p50_ms,
            p99_ms,
            max_ms,
            failed: failed + figure("number of failed transactions:").map_or(0, |v| v as u64),
            slots_per_client: stride,
            error,
        };
        if phase.error.is_none() && phase.tps <= 0.0 {
            bail!("pgbench printed no tps; its output:\n{stdout}\n{stderr}");
        }
        self.best_tps = self.best_tps.max(phase.tps);
        Ok(phase)
    }

    /// What the pgbench phases left in the scratch database.
    async fn written(&self) -> anyhow::Result<String> {
        let sql = format!(
            "select (select count(*) from bookings where user_id = '{user}'),\n\
                    (select count(*) from booked_seats bs join bookings b on b.id = bs.booking_id \
                       where b.user_id = '{user}'),\n\
                    (select count(*) from payments where status = 'succeeded' and idempotency_key like 'pgbench-%'),\n\
                    (select count(*) from reservations where status = 'confirmed' and user_id = '{user}')",
            user = self.user,
        );
        let row = psql(&self.args.psql_bin, &self.url, &sql).await.context("count pgbench's rows")?;
        let v: Vec<&str> = row.trim().split('|').collect();
        Ok(format!(
            "bookings {}, booked_seats {}, payments succeeded {}, reservations confirmed {}",
            v.first().unwrap_or(&"?"),
            v.get(1).unwrap_or(&"?"),
            v.get(2).unwrap_or(&"?"),
            v.get(3).unwrap_or(&"?"),
        ))
    }
}

/// Reads and deletes pgbench's per-transaction logs `<dir>/<prefix>.<pid>[.<thread>]`:
/// the third field is the transaction's time in microseconds, or `failed` / `skipped`.
async fn read_pgbench_logs(dir: &Path, prefix: &str, latencies: &mut Vec<u64>, failed: &mut u64) -> anyhow::Result<()> {
    let mut entries = tokio::fs::read_dir(dir).await.with_context(|| format!("list {}", dir.display()))?;
    let wanted = format!("{prefix}.");
    while let Some(entry) = entries.next_entry().await? {
        if !entry.file_name().to_string_lossy().starts_with(&wanted) {
            continue;
        }
        let text = tokio::fs::read_to_string(entry.path()).await?;
        for line in text.lines() {
            match line.split_whitespace().nth(2).map(str::parse::<u64>) {
                Some(Ok(us)) => latencies.push(us),
                Some(Err(_)) => *failed += 1,
                None => {}
            }
        }
        tokio::fs::remove_file(entry.path()).await?;
    }
    Ok(())
}

/// Runs SQL through `psql` (on stdin, stop at the first error) and returns its unaligned,
/// tuples-only output.
async fn psql(bin: &str, url: &str, sql: &str) -> anyhow::Result<String> {
    let mut child = tokio::process::Command::new(bin)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("run {bin} (is the PostgreSQL client installed?)"))?;
    let mut stdin = child.stdin.take().context("psql's stdin")?;
    let sql = sql.to_owned();
    let run = async move {
        let write = async move {
            stdin.write_all(sql.as_bytes()).await?;
            stdin.shutdown().await
        };
        let (written, out) = tokio::join!(write, child.wait_with_output());
        written.context("write to psql")?;
        out.context("wait for psql")
    };
    let out = tokio::time::timeout(PSQL_TIMEOUT, run)
        .await
        .with_context(|| format!("psql took longer than {} s", PSQL_TIMEOUT.as_secs()))??;
    if !out.status.success() {
        bail!("psql failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Scenario `booking`: the report

/// One line per measured API phase.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn api_line(p: &ApiPhase) {
    println!(
        "round {:>2}  api      bookings/s {:>7.1}  seats/s {:>7.1}  confirm p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  \
         holds {:>6}  conflicts {:>5} ({:>4.1}%)  polls/booking {:>4.1}  errors {}",
        p.round,
        p.bookings_per_sec,
        p.seats_per_sec,
        p.confirm_p50_ms,
        p.confirm_p99_ms,
        p.confirm_max_ms,
        p.holds,
        p.conflicts,
        p.conflict_rate * 100.0,
        p.polls_per_booking,
        p.errors,
    );
}

/// One line per measured pgbench phase.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn pg_line(p: &PgPhase) {
    println!(
        "round {:>2}  pgbench  tx/s       {:>7.1}  seats/s {:>7.1}  tx      p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.1} ms  \
         tx {:>7}  failed {}{}",
        p.round,
        p.tps,
        p.tps * PGBENCH_SEATS as f64,
        p.p50_ms,
        p.p99_ms,
        p.max_ms,
        p.transactions,
        p.failed,
        p.error.as_deref().map(|e| format!("  ERROR {e}")).unwrap_or_default(),
    );
}

/// The summary of the `booking` scenario.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn booking_summary(
    args: &BookingArgs,
    target: &BookingTarget,
    api_phases: &[ApiPhase],
    pg_phases: &[PgPhase],
    pg: &Pgbench,
    written: &str,
) {
    let m = |f: fn(&ApiPhase) -> f64| median(api_phases.iter().map(f));
    let g = |f: fn(&PgPhase) -> f64| median(pg_phases.iter().map(f));
    let (bookings, seats, tps) = (m(|p| p.bookings_per_sec), m(|p| p.seats_per_sec), g(|p| p.tps));
    let ratio = if tps > 0.0 { bookings / tps } else { 0.0 };
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    for p in api_phases {
        for (kind, n) in &p.error_kinds {
            *error_kinds.entry(kind.clone()).or_default() += n;
        }
    }
    let api_errors: u64 = error_kinds.values().sum();
    let pg_failed: u64 = pg_phases.iter().map(|p| p.failed).sum();
    let load = &args.load;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    println!();
    println!(
        "booking: median of {} rounds, {} users, {} s per phase, showtimes of {} seats ({} of {} used), \
         pgbench {} clients / {} threads, {cores} cores",
        load.rounds,
        load.users,
        load.duration_secs,
        args.rows * args.seats_per_row,
        target.showtimes.used(),
        args.showtimes,
        args.pgbench.pgbench_clients,
        args.pgbench.pgbench_jobs,
    );
    println!(
        "api      bookings/s {bookings:>8.1}  seats/s {seats:>8.1}  confirm p50 {:>7.1} ms  p99 {:>7.1} ms  \
         hold p50 {:.1} ms  checkout p50 {:.1} ms  conflicts {:.1}%  polls/booking {:.1}  errors {api_errors}",
        m(|p| p.confirm_p50_ms),
        m(|p| p.confirm_p99_ms),
        m(|p| p.hold_p50_ms),
        m(|p| p.checkout_p50_ms),
        m(|p| p.conflict_rate) * 100.0,
        m(|p| p.polls_per_booking),
    );
    println!(
        "pgbench  tx/s       {tps:>8.1}  seats/s {:>8.1}  tx      p50 {:>7.2} ms  p99 {:>7.2} ms  failed {pg_failed}",
        tps * PGBENCH_SEATS as f64,
        g(|p| p.p50_ms),
        g(|p| p.p99_ms),
    );
    println!("ratio api bookings/s / pgbench tx/s (medians): {ratio:.4}");
    println!("pgbench wrote in total (warm-up included): {written}");
    for (kind, n) in &error_kinds {
        println!("ERROR api: {n} x {kind}");
    }
    for p in pg_phases {
        if let Some(e) = &p.error {
            println!("ERROR pgbench round {}: {e}", p.round);
        }
    }
    for p in api_phases {
        for sample in &p.samples {
            println!("  e.g. round {} api: {sample}", p.round);
        }
    }
    let summary = json!({
        "scenario": "booking",
        "users": load.users,
        "duration_secs": load.duration_secs,
        "rounds": load.rounds,
        "seats_per_showtime": args.rows * args.seats_per_row,
        "showtimes_used": target.showtimes.used(),
        "poll_ms": args.poll_ms,
        "pgbench_clients": args.pgbench.pgbench_clients,
        "pgbench_jobs": args.pgbench.pgbench_jobs,
        "pgbench_script": pg.script,
        "cores": cores,
        "api": {
            "bookings_per_sec": bookings,
            "seats_per_sec": seats,
            "confirm_p50_ms": m(|p| p.confirm_p50_ms),
            "confirm_p99_ms": m(|p| p.confirm_p99_ms),
            "conflict_rate": m(|p| p.conflict_rate),
            "errors": api_errors,
            "error_kinds": error_kinds,
        },
        "pgbench": {"tps": tps, "p50_ms": g(|p| p.p50_ms), "p99_ms": g(|p| p.p99_ms), "failed": pg_failed},
        "ratio_api_bookings_pgbench_tps": ratio,
        "api_phases": api_phases,
        "pgbench_phases": pg_phases,
    });
    println!("{summary}");
}

// ---------------------------------------------------------------------------------------------
// Scenario `sellout`

/// The race's shared state.
struct Race {
    shop: Shop,
    showtime: Uuid,
    map_url: String,
    start: Instant,
    deadline: Instant,
    total_seats: u64,
    refresh_ms: u64,
    /// Seats of reservations their buyers have seen confirmed.
    confirmed_seats: std::sync::atomic::AtomicU64,
    /// When `confirmed_seats` reached `total_seats`.
    all_confirmed_at: OnceLock<Duration>,
    /// When a user first got a seat map with no seat available and none held.
    sold_out_seen_at: OnceLock<Duration>,
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
enum Ending {
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

/// One user: load the seat map, hold 1-4 seats shown available, check out, poll; on a
/// conflict try other seats from the same map (a fresh map after three conflicts in a row or
/// when the map's seats are used up); stop with tickets, on a sold-out map, or at the limit.
/// After an error the user backs off (`backoff`), honouring the API's `Retry-After`.
async fn racer(race: Arc<Race>, user: User) -> (Tally, Ending) {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut tally = Tally::default();
    tokio::time::sleep_until(tokio::time::Instant::from_std(race.start)).await;
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
            if let Ok(answer) = &answer {
                tally.note(answer);
            }
            let map = match answer.map(|a| (a.status, a.body)) {
                Ok((StatusCode::OK, body)) => match serde_json::from_slice::<SeatMap>(&body) {
                    Ok(map) => Some(map),
                    Err(e) => {
                        tally.error("seat map 200 unreadable", || e.to_string());
                        None
                    }
                },
                Ok((status, body)) => {
                    tally.error(format!("seat map {} {}", status.as_u16(), code(&body)), || {
                        format!("seat map {status}: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
                    });
                    None
                }
                Err(e) => {
                    tally.error(format!("seat map: transport error ({})", transport_kind(&e)), || chain(&e));
                    None
                }
            };
            let Some(map) = map else {
                failures += 1;
                tokio::time::sleep(backoff(&mut rng, failures, tally.retry_after.take())).await;
                continue;
            };
            failures = 0;
            seen = map.seats.iter().filter(|s| s.status == "available").map(|s| s.id).collect();
            if seen.is_empty() {
                if map.seats.iter().all(|s| s.status == "sold") {
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
        match race.shop.purchase(&user.token, race.showtime, &seats, &mut tally).await {
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
    pub checkouts: u64,
    pub checkout_retries: u64,
    pub seat_maps: u64,
    pub polls: u64,
    pub hold_p50_ms: f64,
    pub hold_p99_ms: f64,
    pub checkout_p50_ms: f64,
    pub checkout_p99_ms: f64,
    pub confirm_p50_ms: f64,
    pub confirm_p99_ms: f64,
    pub confirm_max_ms: f64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    #[serde(skip)]
    pub samples: Vec<String>,
}

/// One verification and whether it held.
#[derive(Debug, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// Runs the scenario and prints the report.
pub async fn run_sellout(args: SelloutArgs) -> anyhow::Result<()> {
    let api_url = api::loopback_url("--api", &args.target.api)?;
    api::loopback_url("--database-url", &args.database_url)?;
    let total = u64::from(args.rows * args.seats_per_row);
    if total > 5000 {
        bail!("--rows x --seats-per-row is {total}; a screen has at most 5000 seats");
    }
    // Fail before the long registration if the verification could not run.
    psql(&args.psql_bin, &args.database_url, "select 1").await.context("--database-url")?;
    if !Path::new(&args.seatgate_bin).is_file() {
        bail!("--seatgate-bin {} does not exist (build it, or pass the path)", args.seatgate_bin);
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(args.request_timeout_secs))
        .pool_max_idle_per_host(args.users as usize)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("build the HTTP client")?;
    let api = Api::new(client.clone(), &api_url);

    eprintln!("setting up through {api_url}: one showtime of {total} seats...");
    let run_id = run_id();
    let c = catalog(&api, &args.target, &run_id, args.rows, args.seats_per_row).await?;
    let showtime_id = showtime(&api, &c, 0).await?;
    // The seat map once before the sale, as the on-sale page would have been viewed: caches warm.
    api.call(Method::GET, &format!("/api/v1/showtimes/{showtime_id}/seats"), None, None, StatusCode::OK)
        .await
        .context("read the seat map")?;
    eprintln!("registering {} users, {} at a time...", args.users, args.register_concurrency);
    let registering = Instant::now();
    let users = tokio::time::timeout(
        Duration::from_secs(1800),
        register_users(&api, &run_id, args.users, args.register_concurrency),
    )
    .await
    .context("registration took longer than 1800 s")??;
    let registration = registering.elapsed();
    eprintln!("{} users registered in {:.1} s; the sale starts", users.len(), registration.as_secs_f64());

    let start = Instant::now() + Duration::from_secs(1);
    let race = Arc::new(Race {
        shop: Shop {
            client,
            base: api.url(""),
            poll: Duration::from_millis(args.poll_ms),
            confirm_timeout: Duration::from_secs(args.confirm_timeout_secs),
        },
        showtime: showtime_id,
        map_url: api.url(&format!("/api/v1/showtimes/{showtime_id}/seats")),
        start,
        deadline: start + Duration::from_secs(args.time_limit_secs),
        total_seats: total,
        refresh_ms: args.refresh_ms,
        confirmed_seats: std::sync::atomic::AtomicU64::new(0),
        all_confirmed_at: OnceLock::new(),
        sold_out_seen_at: OnceLock::new(),
    });
    let mut tasks = JoinSet::new();
    for user in users {
        tasks.spawn(racer(race.clone(), user));
    }
    let progress = tokio::spawn({
        let race = race.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                eprintln!(
                    "  {:>5.0} s: {} of {} seats seen confirmed",
                    race.start.elapsed().as_secs_f64(),
                    race.confirmed_seats.load(Ordering::Acquire),
                    race.total_seats
                );
            }
        }
    });
    // Users stop by themselves at the limit; a purchase under way is bounded by the request
    // timeouts and --confirm-timeout-secs. This is the backstop.
    let bound = Duration::from_secs(
        1 + args.time_limit_secs + args.confirm_timeout_secs + 3 * args.request_timeout_secs + args.refresh_ms / 500,
    ) + Duration::from_secs(30);
    let mut total_tally = Tally::default();
    let mut endings: BTreeMap<String, u64> = BTreeMap::new();
    let joined = tokio::time::timeout(bound, async {
        while let Some(joined) = tasks.join_next().await {
            let (tally, ending) = joined.context("a user task panicked")?;
            total_tally.merge(tally);
            let name = serde_json::to_value(ending).ok().and_then(|v| v.as_str().map(str::to_owned));
            *endings.entry(name.unwrap_or_default()).or_default() += 1;
        }
        anyhow::Ok(())
    })
    .await;
    progress.abort();
    let race_secs = race.start.elapsed().as_secs_f64();
    match joined {
        Ok(result) => result?,
        Err(_) => {
            tasks.abort_all();
            bail!("the race did not end within {} s", bound.as_secs());
        }
    }

    let mut t = total_tally;
    let (hold_p50_ms, hold_p99_ms, _) = spread(&mut t.hold_us);
    let (checkout_p50_ms, checkout_p99_ms, _) = spread(&mut t.checkout_us);
    let (confirm_p50_ms, confirm_p99_ms, confirm_max_ms) = spread(&mut t.confirm_us);
    let result = RaceResult {
        users: args.users,
        seats: total,
        registration_secs: registration.as_secs_f64(),
        all_confirmed_secs: race.all_confirmed_at.get().map(Duration::as_secs_f64),
        sold_out_seen_secs: race.sold_out_seen_at.get().map(Duration::as_secs_f64),
        race_secs,
        confirmed_seats_seen: race.confirmed_seats.load(Ordering::Acquire),
        endings,
        bookings: t.bookings,
        holds: t.holds,
        conflicts: t.conflicts,
        checkouts: t.checkouts,
        checkout_retries: t.checkout_retries,
        seat_maps: t.seat_maps,
        polls: t.polls,
        hold_p50_ms,
        hold_p99_ms,
        checkout_p50_ms,
        checkout_p99_ms,
        confirm_p50_ms,
        confirm_p99_ms,
        confirm_max_ms,
        errors: t.errors.values().sum(),
        error_kinds: t.errors,
        samples: t.samples,
    };

    eprintln!("waiting for every reservation of the showtime to be final...");
    let pending = settle(&args, showtime_id).await?;
    let checks = verify(&args, showtime_id, c.screen_id, &result, pending).await?;
    let invariants = check_invariants(&args.seatgate_bin).await;
    sellout_summary(&args, showtime_id, &result, &checks, &invariants);
    if checks.iter().any(|c| !c.ok) || !invariants.ok {
        bail!("verification failed (see above)");
    }
    Ok(())
}

/// Waits (at most 120 s) until no reservation of the showtime is `payment_pending`; returns
/// how many still are.
async fn settle(args: &SelloutArgs, showtime: Uuid) -> anyhow::Result<u64> {
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
async fn verify(
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
async fn check_invariants(bin: &str) -> Invariants {
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

/// The report of the `sellout` scenario.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn sellout_summary(args: &SelloutArgs, showtime: Uuid, r: &RaceResult, checks: &[Check], inv: &Invariants) {
    let secs = |v: Option<f64>| v.map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "sellout: {} users, {} seats, showtime {showtime}, {cores} cores, poll {} ms, refresh {} ms, request timeout {} s",
        r.users, r.seats, args.poll_ms, args.refresh_ms, args.request_timeout_secs
    );
    println!(
        "set-up: {} registrations in {:.1} s ({:.1}/s, {} at a time), not part of the race",
        r.users,
        r.registration_secs,
        f64::from(r.users) / r.registration_secs.max(f64::EPSILON),
        args.register_concurrency
    );
    println!(
        "time to sell out: {} (last seat seen confirmed by its buyer); first sold-out seat map: {}; race ended after {:.2} s",
        secs(r.all_confirmed_secs),
        secs(r.sold_out_seen_secs),
        r.race_secs
    );
    println!(
        "users: {}   bookings {} ({} seats)   holds {}  conflicts {} ({:.1}% of hold attempts)   checkouts {} (retried {})   seat maps {}   polls {}",
        r.endings.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        r.bookings,
        r.confirmed_seats_seen,
        r.holds,
        r.conflicts,
        100.0 * r.conflicts as f64 / (r.holds + r.conflicts).max(1) as f64,
        r.checkouts,
        r.checkout_retries,
        r.seat_maps,
        r.polls,
    );
    println!(
        "latency: hold p50 {:.1} / p99 {:.1} ms, checkout p50 {:.1} / p99 {:.1} ms, checkout->confirmed p50 {:.1} / p99 {:.1} / max {:.1} ms",
        r.hold_p50_ms,
        r.hold_p99_ms,
        r.checkout_p50_ms,
        r.checkout_p99_ms,
        r.confirm_p50_ms,
        r.confirm_p99_ms,
        r.confirm_max_ms
    );
    println!("errors: {}", r.errors);
    for (kind, n) in &r.error_kinds {
        println!("ERROR: {n} x {kind}");
    }
    for sample in &r.samples {
        println!("  e.g. {sample}");
    }
    println!("verification (PostgreSQL, {}):", args.database_url);
    for c in checks {
        println!("  [{}] {}: {}", if c.ok { "ok" } else { "FAILED" }, c.what, c.detail);
    }
    println!("  [{}] seatgate check-invariants ({}): {}", if inv.ok { "ok" } else { "FAILED" }, inv.exit, inv.report);
    let summary = json!({
        "scenario": "sellout",
        "showtime_id": showtime,
        "cores": cores,
        "poll_ms": args.poll_ms,
        "refresh_ms": args.refresh_ms,
        "request_timeout_secs": args.request_timeout_secs,
        "race": r,
        "checks": checks,
        "check_invariants": inv,
    });
    println!("{summary}");
}
