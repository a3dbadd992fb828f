//! Scenario `sale`: a ticket sale as customers live it, for the fault suite (`scripts/faults.sh`).
//! Set-up goes through the API (a movie, a theater, one screen, `--showtimes` showtimes starting
//! tomorrow a few hours apart, `--users` accounts). Then every virtual user loops until the
//! duration ends: pick a showtime and 1-3 random seats, hold them; on 201 take `--pay-ms` to
//! "enter payment details", then check the hold out with a fresh `Idempotency-Key` (`tok_ok`, or
//! `tok_declined` about one time in ten), retrying a 5xx or a lost answer with the same key and
//! back-off, as a real client survives a fault; keep the reservation id; pause `--think-ms`. After the duration every recorded reservation's event stream is followed until it
//! is final (`confirmed`, `failed`, `expired`), within `--settle-secs`: the push
//! ([`crate::push`]); a reservation whose stream fails is polled instead (counted apart, as
//! `push_fallbacks`).
//!
//! What counts as an error: a 5xx, a transport error (connection refused or reset, timeout), or
//! a status the API never gives for these calls (say 401). A 409 (seat taken, hold already
//! checked out), 404, 410 (hold expired, e.g. lost in a Redis restart) or 422 (per-user seat
//! limit) is a normal outcome of a sale under faults and is counted apart, by kind.
//!
//! With `--json` the summary is one JSON object on stdout; progress goes to stderr.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::{self, Api, TargetArgs, User, chain, problem_code, transport_kind};

/// Flags of the `sale` scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct SaleArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Virtual users: concurrent customers, each with their own account.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub users: u32,
    /// How long customers keep buying, in seconds (polling the reservations comes after).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_secs: u64,
    /// Showtimes on sale (all on one screen, three hours apart, starting tomorrow).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=24))]
    pub showtimes: u32,
    /// Rows of the screen.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rows: u32,
    /// Seats per row (rows x seats at most 5000, the API's limit).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub seats_per_row: u32,
    /// Mean pause of a customer between two purchases, in milliseconds (each pause is drawn
    /// between half and one and a half of it; 0: none).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub think_ms: u64,
    /// Mean time a customer takes between getting a hold and checking out (entering payment
    /// details), in milliseconds, drawn like `--think-ms`: how long holds are exposed to a fault.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub pay_ms: u64,
    /// Longest wait for every recorded reservation to become final after the sale, in seconds.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub settle_secs: u64,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Seats one hold asks for: 1 to this many.
const MAX_SEATS_PER_HOLD: usize = 3;
/// Share of checkouts paid with a card the simulated gateway declines.
const DECLINED_SHARE: f64 = 0.1;
/// Requests one checkout may take: the first and the retries with the same key.
const CHECKOUT_ATTEMPTS: u32 = 6;
/// Back-off before the first checkout retry; doubled each time, at most `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// No checkout retry starts later than this after the end of the sale.
const RETRY_GRACE: Duration = Duration::from_secs(15);
/// Seat category and price of the screen.
const CATEGORY: &str = "standard";
const PRICE: i64 = 1500;
/// Hours between two showtimes (the movie lasts two; showtimes of a screen may not overlap).
const SHOWTIME_SPACING_HOURS: i64 = 3;
/// Registrations in flight at once during set-up (each hashes a password on the server).
const REGISTER_CONCURRENCY: usize = 8;
/// Bound of the whole set-up.
const SETUP_BUDGET: Duration = Duration::from_secs(180);
/// Tries of one set-up step, and the pause between them (a fault may hit the set-up).
const SETUP_TRIES: u32 = 10;
const SETUP_PAUSE: Duration = Duration::from_secs(1);
/// Reservation streams followed at once after the sale.
const PUSH_CONCURRENCY: usize = 64;
/// Reservation polls in flight at once, and the pause between two polling rounds.
const POLL_CONCURRENCY: usize = 16;
const POLL_PAUSE: Duration = Duration::from_secs(1);
/// Error examples kept (the counts are complete; the examples are not).
const ERROR_SAMPLES: usize = 8;

/// Final statuses of a reservation.
const FINAL: [&str; 4] = ["confirmed", "failed", "expired", "cancelled"];

/// What set-up made.
struct Target {
    api: Api,
    showtimes: Vec<Uuid>,
    seat_ids: Arc<Vec<Uuid>>,
    users: Vec<User>,
}

/// A reservation to follow: its id and the token of its owner.
#[derive(Clone, Debug)]
struct Recorded {
    id: Uuid,
    user: usize,
}

/// What one virtual user (or the poller) saw.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    errors: BTreeMap<String, u64>,
    samples: Vec<String>,
    holds_granted: u64,
    hold_conflicts: u64,
    /// Normal outcomes other than a grant or a seat conflict, by kind (`checkout 410 hold_expired`).
    refusals: BTreeMap<String, u64>,
    checkouts_accepted: u64,
    /// Checkouts sent with the declined card (accepted or not).
    declined_cards: u64,
    /// Requests that repeated a checkout with the same key.
    checkout_retries: u64,
    /// Checkouts that never got an answer other than an error, after every retry.
    checkouts_abandoned: u64,
    reservations: Vec<Recorded>,
}

impl Tally {
    fn error(&mut self, kind: String, detail: impl FnOnce() -> String) {
        *self.errors.entry(kind).or_default() += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(detail());
        }
    }

    fn refused(&mut self, kind: String) {
        *self.refusals.entry(kind).or_default() += 1;
    }

    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        let room = ERROR_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
        self.holds_granted += other.holds_granted;
        self.hold_conflicts += other.hold_conflicts;
        for (kind, n) in other.refusals {
            *self.refusals.entry(kind).or_default() += n;
        }
        self.checkouts_accepted += other.checkouts_accepted;
        self.declined_cards += other.declined_cards;
        self.checkout_retries += other.checkout_retries;
        self.checkouts_abandoned += other.checkouts_abandoned;
        self.reservations.extend(other.reservations);
    }
}

/// The answer to one request: a status and body, or a transport failure.
enum Answer {
    Status(StatusCode, Vec<u8>),
    Transport(&'static str, String),
}

/// Sends one request (counted) and reads the whole answer.
async fn send(tally: &mut Tally, req: RequestBuilder) -> Answer {
    tally.requests += 1;
    match req.send().await {
        Ok(res) => {
            let status = res.status();
            match res.bytes().await {
                Ok(body) => Answer::Status(status, body.to_vec()),
                Err(e) => Answer::Transport(transport_kind(&e), chain(&e)),
            }
        }
        Err(e) => Answer::Transport(transport_kind(&e), chain(&e)),
    }
}

/// The summary of a run.
#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    users: u32,
    duration_secs: u64,
    showtimes: usize,
    seats: usize,
    setup_secs: f64,
    sale_secs: f64,
    settle_secs: f64,
    /// Every request of the sale and of the polling afterwards.
    requests: u64,
    /// Client-visible errors: 5xx, transport errors, statuses the API never gives here.
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    holds_granted: u64,
    hold_conflicts: u64,
    refusals: BTreeMap<String, u64>,
    checkouts_accepted: u64,
    declined_cards: u64,
    checkout_retries: u64,
    checkouts_abandoned: u64,
    confirmed: u64,
    failed: u64,
    expired: u64,
    still_pending: u64,
    /// Reservation streams followed after the sale, and those that gave no final status (then
    /// polled), by kind.
    pushes: u64,
    push_fallbacks: u64,
    push_failures: BTreeMap<String, u64>,
    /// Why reservations failed or expired, as the API says.
    failure_reasons: BTreeMap<String, u64>,
    showtime_ids: Vec<Uuid>,
    error_samples: Vec<String>,
}

/// Runs the scenario and prints the summary.
pub async fn run(args: SaleArgs) -> anyhow::Result<()> {
    let api_url = api::loopback_url("--api", &args.target.api)?;
    let seats = args.rows * args.seats_per_row;
    if seats > 5000 {
        bail!("--rows x --seats-per-row is {seats}; a screen has at most 5000 seats");
    }
    let api = Api::new(api::client(args.users)?, &api_url);

    eprintln!(
        "sale: setting up through {api_url} ({} users, {} showtimes of {seats} seats)...",
        args.users, args.showtimes
    );
    let started = Instant::now();
    let target = tokio::time::timeout(SETUP_BUDGET, setup(api, &args))
        .await
        .with_context(|| format!("set-up took longer than {} s", SETUP_BUDGET.as_secs()))??;
    let setup_secs = started.elapsed().as_secs_f64();
    eprintln!("sale: set-up done in {setup_secs:.1} s");

    // The sale is bounded by its duration, plus the last checkout's retries.
    let duration = Duration::from_secs(args.duration_secs);
    let sale_bound = duration
        + RETRY_GRACE
        + (api::LOAD_REQUEST_TIMEOUT + MAX_BACKOFF) * (CHECKOUT_ATTEMPTS + 1)
        + Duration::from_secs(30);
    eprintln!("sale: running for {} s", args.duration_secs);
    let sale_started = Instant::now();
    let mut tally = tokio::time::timeout(sale_bound, sale(&target, &args))
        .await
        .with_context(|| format!("the sale took longer than {} s", sale_bound.as_secs()))??;
    let sale_secs = sale_started.elapsed().as_secs_f64();
    eprintln!(
        "sale: over after {sale_secs:.1} s: {} holds, {} checkouts accepted, {} errors; polling the reservations",
        tally.holds_granted,
        tally.checkouts_accepted,
        tally.errors.values().sum::<u64>()
    );

    let settle_started = Instant::now();
    let recorded = std::mem::take(&mut tally.reservations);
    let budget = Duration::from_secs(args.settle_secs);
    let pushed = follow(&target, recorded, budget).await?;
    let mut polled = poll(&target, pushed.open, budget.saturating_sub(settle_started.elapsed())).await?;
    for (status, n) in pushed.statuses {
        *polled.statuses.entry(status).or_default() += n;
    }
    for (reason, n) in pushed.reasons {
        *polled.reasons.entry(reason).or_default() += n;
    }
    tally.add(pushed.tally);
    let settle_secs = settle_started.elapsed().as_secs_f64();
    tally.add(polled.tally);

    let count = |status: &str| polled.statuses.get(status).copied().unwrap_or_default();
    let summary = Summary {
        scenario: "sale",
        users: args.users,
        duration_secs: args.duration_secs,
        showtimes: target.showtimes.len(),
        seats: target.seat_ids.len() * target.showtimes.len(),
        setup_secs,
        sale_secs,
        settle_secs,
        requests: tally.requests,
        errors: tally.errors.values().sum(),
        errors_by_kind: tally.errors,
        holds_granted: tally.holds_granted,
        hold_conflicts: tally.hold_conflicts,
        refusals: tally.refusals,
        checkouts_accepted: tally.checkouts_accepted,
        declined_cards: tally.declined_cards,
        checkout_retries: tally.checkout_retries,
        checkouts_abandoned: tally.checkouts_abandoned,
        confirmed: count("confirmed"),
        failed: count("failed"),
        expired: count("expired"),
        still_pending: polled.pending,
        pushes: pushed.pushes,
        push_fallbacks: pushed.failures.values().sum(),
        push_failures: pushed.failures,
        failure_reasons: polled.reasons,
        showtime_ids: target.showtimes.clone(),
        error_samples: tally.samples,
    };
    print_summary(&summary, args.json)
}

#[expect(clippy::print_stdout, reason = "the summary is the program's output")]
fn print_summary(s: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    println!();
    println!(
        "sale: {} users, {} s, {} showtimes ({} seats); set-up {:.1} s, sale {:.1} s, settling {:.1} s",
        s.users, s.duration_secs, s.showtimes, s.seats, s.setup_secs, s.sale_secs, s.settle_secs
    );
    println!("requests            {:>8}", s.requests);
    println!("errors (5xx, transport, unexpected) {:>8}", s.errors);
    for (kind, n) in &s.errors_by_kind {
        println!("  {n:>6} x {kind}");
    }
    println!("holds granted       {:>8}", s.holds_granted);
    println!("hold conflicts      {:>8}", s.hold_conflicts);
    println!("other refusals      {:>8}", s.refusals.values().sum::<u64>());
    for (kind, n) in &s.refusals {
        println!("  {n:>6} x {kind}");
    }
    println!(
        "checkouts accepted  {:>8}   ({} with a declined card, {} retries, {} abandoned)",
        s.checkouts_accepted, s.declined_cards, s.checkout_retries, s.checkouts_abandoned
    );
    println!("confirmed           {:>8}", s.confirmed);
    println!("failed              {:>8}", s.failed);
    println!("expired             {:>8}", s.expired);
    println!("still pending       {:>8}", s.still_pending);
    for (reason, n) in &s.failure_reasons {
        println!("  {n:>6} x {reason}");
    }
    for sample in &s.error_samples {
        println!("  e.g. {sample}");
    }
    Ok(())
}

/// Retries a set-up step while it fails (a fault may be under way), within `SETUP_TRIES`.
async fn retried<T, F, Fut>(what: &str, mut step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut last = None;
    for attempt in 1..=SETUP_TRIES {
        match step().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                eprintln!("sale: {what} failed (try {attempt} of {SETUP_TRIES}): {e:#}");
                last = Some(e);
                tokio::time::sleep(SETUP_PAUSE).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no tries")).context(format!("{what}: every try failed")))
}

/// Admin login, a movie, a theater, a screen, the showtimes, and one account per user.
async fn setup(api: Api, args: &SaleArgs) -> anyhow::Result<Target> {
    retried("readiness", || api.ready()).await?;
    let admin = retried("admin login", || api.login(&args.target.admin_email, &args.target.admin_password)).await?;
    let admin = admin.as_str();
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();

    let movie = json!({"title": format!("Sale {run_id}"), "duration_minutes": 120, "genres": ["drama"]});
    let (movie_id, _) = retried("create the movie", || api.create(admin, "/api/v1/movies", &movie)).await?;
    let theater = json!({"name": format!("Sale Theater {run_id}"), "city": "Saleville", "address": "Fault Lane 1"});
    let (theater_id, _) = retried("create the theater", || api.create(admin, "/api/v1/theaters", &theater)).await?;
    let rows: Vec<Value> = (1..=args.rows)
        .map(|r| json!({"label": format!("R{r}"), "seats": args.seats_per_row, "category": CATEGORY}))
        .collect();
    let screen = json!({"name": format!("Sale Screen {run_id}"), "rows": rows});
    let screens = format!("/api/v1/theaters/{theater_id}/screens");
    let (screen_id, _) = retried("create the screen", || api.create(admin, &screens, &screen)).await?;

    // Tomorrow on the hour, then every few hours.
    let first = chrono::Utc::now() + chrono::Duration::days(1);
    let first =
        first - chrono::Duration::seconds(i64::from(chrono::Timelike::num_seconds_from_midnight(&first)) % 3600);
    let mut showtimes = Vec::with_capacity(args.showtimes as usize);
    for i in 0..args.showtimes {
        let starts_at = first + chrono::Duration::hours(SHOWTIME_SPACING_HOURS * i64::from(i));
        let body = json!({
            "movie_id": movie_id,
            "screen_id": screen_id,
            "starts_at": starts_at.format("%Y-%m-%dT%H:%M:00Z").to_string(),
            "prices": {CATEGORY: PRICE},
            "currency": "EUR",
        });
        let what = format!("create showtime {i}");
        let created = retried(&what, || async {
            match api.create(admin, "/api/v1/showtimes", &body).await {
                Ok((id, _)) => Ok(id),
                // An earlier try was created but its answer was lost: find it.
                Err(e) if format!("{e:#}").contains("409") => find_showtime(&api, screen_id, &body).await,
                Err(e) => Err(e),
            }
        })
        .await?;
        showtimes.push(created);
    }

    let path = format!("/api/v1/screens/{screen_id}");
    let screen = retried("read the screen", || api.call(Method::GET, &path, None, None, StatusCode::OK)).await?;
    let seat_ids = api::screen_seat_ids(&screen, (args.rows * args.seats_per_row) as usize)?;

    let users = register_users(&api, &run_id, args.users).await?;
    Ok(Target { api, showtimes, seat_ids: Arc::new(seat_ids), users })
}

/// The showtime of `screen_id` starting at the `starts_at` of `body` (after a lost answer).
async fn find_showtime(api: &Api, screen_id: Uuid, body: &Value) -> anyhow::Result<Uuid> {
    let starts_at = body["starts_at"].as_str().unwrap_or_default();
    let list = api.call(Method::GET, "/api/v1/showtimes?per_page=100", None, None, StatusCode::OK).await?;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            s["screen_id"].as_str() == Some(&screen_id.to_string())
                && s["starts_at"].as_str().is_some_and(|t| t.starts_with(&starts_at[..16]))
        })
        .and_then(|s| s["id"].as_str()?.parse().ok())
        .context("the showtime was refused as overlapping, but no showtime of the screen starts then")
}

/// Registers `n` accounts, a few at a time; a failed registration is tried again with a new
/// address (the old one may exist if only its answer was lost).
async fn register_users(api: &Api, run_id: &str, n: u32) -> anyhow::Result<Vec<User>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(REGISTER_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (api, run_id, limit) = (api.clone(), run_id.to_owned(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            retried(&format!("register user {i}"), || api.register(&run_id, i)).await
        });
    }
    let mut users = Vec::with_capacity(n as usize);
    while let Some(joined) = tasks.join_next().await {
        users.push(joined.context("a registration task panicked")??);
    }
    Ok(users)
}

/// Every virtual user buys until the duration is over.
async fn sale(target: &Target, args: &SaleArgs) -> anyhow::Result<Tally> {
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let showtimes = Arc::new(target.showtimes.clone());
    let mut tasks = JoinSet::new();
    for (index, user) in target.users.iter().cloned().enumerate() {
        let customer = Customer {
            index,
            user,
            api: target.api.clone(),
            showtimes: showtimes.clone(),
            seats: target.seat_ids.clone(),
            think: Duration::from_millis(args.think_ms),
            pay: Duration::from_millis(args.pay_ms),
            deadline,
        };
        tasks.spawn(customer.buy());
    }
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        total.add(joined.context("a virtual user panicked")?);
    }
    Ok(total)
}

/// One virtual user.
struct Customer {
    index: usize,
    user: User,
    api: Api,
    showtimes: Arc<Vec<Uuid>>,
    seats: Arc<Vec<Uuid>>,
    think: Duration,
    pay: Duration,
    deadline: Instant,
}

impl Customer {
    async fn buy(self) -> Tally {
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let mut tally = Tally::default();
        // Customers do not all arrive in the same millisecond.
        if !self.think.is_zero() {
            tokio::time::sleep(self.think.mul_f64(rng.random_range(0.0..1.0))).await;
        }
        while Instant::now() < self.deadline {
            self.attempt(&mut rng, &mut tally).await;
            if !self.think.is_zero() {
                let pause = self.think.mul_f64(rng.random_range(0.5..1.5));
                tokio::time::sleep(pause.min(self.deadline.saturating_duration_since(Instant::now()))).await;
            }
        }
        tally
    }

    /// One purchase: hold, then check out.
    async fn attempt(&self, rng: &mut StdRng, tally: &mut Tally) {
        let Some(showtime) = self.showtimes.choose(rng).copied() else { return };
        let n = rng.random_range(1..=MAX_SEATS_PER_HOLD.min(self.seats.len()));
        let mut chosen: Vec<Uuid> = self.seats.choose_multiple(rng, n).copied().collect();
        chosen.shuffle(rng);
        let url = self.api.url(&format!("/api/v1/showtimes/{showtime}/holds"));
        let req = self.api.client.post(url).bearer_auth(&self.user.token).json(&json!({"seat_ids": chosen}));
        let body = match send(tally, req).await {
            Answer::Status(StatusCode::CREATED, body) => body,
            Answer::Status(StatusCode::CONFLICT, _) => {
                tally.hold_conflicts += 1;
                return;
            }
            Answer::Status(status, body) => {
                classify(tally, "hold", status, &body);
                return;
            }
            Answer::Transport(kind, detail) => {
                tally.error(format!("hold: transport error ({kind})"), || format!("hold: {detail}"));
                return;
            }
        };
        tally.holds_granted += 1;
        let hold_id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["hold_id"].as_str().and_then(|id| id.parse::<Uuid>().ok()));
        let Some(hold_id) = hold_id else {
            tally.error("hold 201 without hold_id".into(), || String::from_utf8_lossy(&body).into_owned());
            return;
        };
        if !self.pay.is_zero() {
            tokio::time::sleep(self.pay.mul_f64(rng.random_range(0.5..1.5))).await;
        }
        self.checkout(rng, tally, hold_id).await;
    }

    /// Checks a hold out, retrying errors with the same `Idempotency-Key`.
    async fn checkout(&self, rng: &mut StdRng, tally: &mut Tally, hold_id: Uuid) {
        let key = Uuid::new_v4().to_string();
        let declined = rng.random_bool(DECLINED_SHARE);
        if declined {
            tally.declined_cards += 1;
        }
        let token = if declined { "tok_declined" } else { "tok_ok" };
        let url = self.api.url(&format!("/api/v1/holds/{hold_id}/checkout"));
        let body = json!({"payment_token": token});
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=CHECKOUT_ATTEMPTS {
            if attempt > 1 {
                tally.checkout_retries += 1;
            }
            let req =
                self.api.client.post(&url).bearer_auth(&self.user.token).header("Idempotency-Key", &key).json(&body);
            let retry = match send(tally, req).await {
                Answer::Status(StatusCode::ACCEPTED, answer) => {
                    let id = serde_json::from_slice::<Value>(&answer)
                        .ok()
                        .and_then(|v| v["reservation_id"].as_str().and_then(|id| id.parse::<Uuid>().ok()));
                    match id {
                        Some(id) => {
                            tally.checkouts_accepted += 1;
                            tally.reservations.push(Recorded { id, user: self.index });
                        }
                        None => tally.error("checkout 202 without reservation_id".into(), || {
                            String::from_utf8_lossy(&answer).into_owned()
                        }),
                    }
                    return;
                }
                // A retry may find the first attempt still running: wait and ask again.
                Answer::Status(StatusCode::CONFLICT, answer) if attempt > 1 && in_progress(&answer) => {
                    tally.refused("checkout 409 key in progress (retried)".into());
                    true
                }
                Answer::Status(status, answer) => classify(tally, "checkout", status, &answer),
                Answer::Transport(kind, detail) => {
                    tally.error(format!("checkout: transport error ({kind})"), || format!("checkout: {detail}"));
                    true
                }
            };
            let late = Instant::now() > self.deadline + RETRY_GRACE;
            if !retry || late || attempt == CHECKOUT_ATTEMPTS {
                if retry {
                    tally.checkouts_abandoned += 1;
                }
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Counts an answer that is neither the success nor the expected 409 of its call; true when a
/// client should retry it (a 5xx).
fn classify(tally: &mut Tally, call: &str, status: StatusCode, body: &[u8]) -> bool {
    let kind = format!("{call} {} {}", status.as_u16(), problem_code(body));
    match status {
        StatusCode::CONFLICT | StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::UNPROCESSABLE_ENTITY => {
            tally.refused(kind);
            false
        }
        s if s.is_server_error() => {
            let text = String::from_utf8_lossy(body).into_owned();
            tally.error(kind, || format!("{call} {status}: {}", api::truncate(&text, 300)));
            true
        }
        _ => {
            let text = String::from_utf8_lossy(body).into_owned();
            tally.error(kind, || format!("{call} {status} (unexpected): {}", api::truncate(&text, 300)));
            false
        }
    }
}

fn in_progress(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(|d| d.contains("in progress")))
        .unwrap_or(false)
}

/// What following the streams found, and the reservations left to poll.
struct Pushed {
    tally: Tally,
    statuses: BTreeMap<String, u64>,
    reasons: BTreeMap<String, u64>,
    pushes: u64,
    failures: BTreeMap<String, u64>,
    open: Vec<Recorded>,
}

/// Follows every reservation's event stream until it is final or `budget` has passed; the
/// reservations whose stream failed are left to [`poll`].
async fn follow(target: &Target, recorded: Vec<Recorded>, budget: Duration) -> anyhow::Result<Pushed> {
    let deadline = Instant::now() + budget;
    let mut pushed = Pushed {
        tally: Tally::default(),
        statuses: BTreeMap::new(),
        reasons: BTreeMap::new(),
        pushes: 0,
        failures: BTreeMap::new(),
        open: Vec::new(),
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(PUSH_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for r in recorded {
        let (api, token, limit) = (target.api.clone(), target.users[r.user].token.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
            let outcome = crate::push::follow(&api.client, &api.url(""), &token, r.id, left).await;
            (r, outcome)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (r, outcome) = joined.context("a stream task panicked")?;
        pushed.pushes += 1;
        pushed.tally.requests += 1;
        match outcome {
            Ok(view) => {
                if let Some(reason) = &view.failure_reason {
                    *pushed.reasons.entry(format!("{}: {reason}", view.status)).or_default() += 1;
                }
                *pushed.statuses.entry(view.status).or_default() += 1;
            }
            Err(e) => {
                *pushed.failures.entry(e.kind()).or_default() += 1;
                pushed.open.push(r);
            }
        }
    }
    Ok(pushed)
}

/// What polling found.
struct Polled {
    tally: Tally,
    statuses: BTreeMap<String, u64>,
    reasons: BTreeMap<String, u64>,
    pending: u64,
}

/// Polls every reservation until it is final or `budget` has passed.
async fn poll(target: &Target, recorded: Vec<Recorded>, budget: Duration) -> anyhow::Result<Polled> {
    let deadline = Instant::now() + budget;
    let mut polled =
        Polled { tally: Tally::default(), statuses: BTreeMap::new(), reasons: BTreeMap::new(), pending: 0 };
    let mut open = recorded;
    let mut round = 0u32;
    while !open.is_empty() {
        round += 1;
        let limit = Arc::new(tokio::sync::Semaphore::new(POLL_CONCURRENCY));
        let mut tasks = JoinSet::new();
        for r in open.drain(..) {
            let (api, token, limit) = (target.api.clone(), target.users[r.user].token.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let mut tally = Tally::default();
                let req = api.client.get(api.url(&format!("/api/v1/reservations/{}", r.id))).bearer_auth(&token);
                let status = match send(&mut tally, req).await {
                    Answer::Status(StatusCode::OK, body) => serde_json::from_slice::<Value>(&body).ok(),
                    Answer::Status(status, body) => {
                        classify(&mut tally, "poll", status, &body);
                        None
                    }
                    Answer::Transport(kind, detail) => {
                        tally.error(format!("poll: transport error ({kind})"), || format!("poll: {detail}"));
                        None
                    }
                };
                (r, status, tally)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (r, body, tally) = joined.context("a poll task panicked")?;
            polled.tally.add(tally);
            let status = body.as_ref().and_then(|b| b["status"].as_str()).unwrap_or("unknown");
            if FINAL.contains(&status) {
                *polled.statuses.entry(status.to_owned()).or_default() += 1;
                if let Some(reason) = body.as_ref().and_then(|b| b["failure_reason"].as_str()) {
                    *polled.reasons.entry(format!("{status}: {reason}")).or_default() += 1;
                }
            } else {
                open.push(r);
            }
        }
        if open.is_empty() || Instant::now() + POLL_PAUSE > deadline {
            break;
        }
        if round.is_multiple_of(10) {
            eprintln!("sale: {} reservations not final yet", open.len());
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    polled.pending = open.len() as u64;
    Ok(polled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_refusals_are_not_errors_and_5xx_are_retried() {
        let mut tally = Tally::default();
        assert!(!classify(&mut tally, "checkout", StatusCode::GONE, br#"{"code":"hold_expired"}"#));
        assert!(!classify(&mut tally, "hold", StatusCode::UNPROCESSABLE_ENTITY, b"{}"));
        assert!(classify(
            &mut tally,
            "checkout",
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"code":"service_unavailable"}"#
        ));
        assert!(classify(&mut tally, "hold", StatusCode::BAD_GATEWAY, b"oops"));
        assert!(!classify(&mut tally, "hold", StatusCode::UNAUTHORIZED, b"{}"));
        assert_eq!(tally.refusals.values().sum::<u64>(), 2);
        assert_eq!(tally.refusals["checkout 410 hold_expired"], 1);
        assert_eq!(tally.errors.values().sum::<u64>(), 3);
        assert_eq!(tally.errors["checkout 503 service_unavailable"], 1);
        assert_eq!(tally.errors["hold 502 -"], 1);
        assert_eq!(tally.samples.len(), 3);
    }

    #[test]
    fn a_retry_that_finds_the_first_attempt_running_is_recognised() {
        let body = br#"{"code":"conflict","detail":"a request with this Idempotency-Key is still in progress"}"#;
        assert!(in_progress(body));
        assert!(!in_progress(br#"{"code":"conflict","detail":"this hold is already checked out"}"#));
    }

    #[test]
    fn tallies_add_up() {
        let mut a = Tally { requests: 3, holds_granted: 1, ..Tally::default() };
        a.error("hold 503 service_unavailable".into(), || "x".into());
        let mut b = Tally { requests: 2, hold_conflicts: 4, checkouts_accepted: 1, ..Tally::default() };
        b.reservations.push(Recorded { id: Uuid::nil(), user: 0 });
        b.error("hold 503 service_unavailable".into(), || "y".into());
        a.add(b);
        assert_eq!((a.requests, a.holds_granted, a.hold_conflicts, a.checkouts_accepted), (5, 1, 4, 1));
        assert_eq!(a.errors["hold 503 service_unavailable"], 2);
        assert_eq!(a.reservations.len(), 1);
        assert_eq!(a.samples, ["x", "y"]);
    }
}
