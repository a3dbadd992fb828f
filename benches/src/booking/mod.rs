//! Scenarios `booking` and `sellout`: the whole way from a hold to a confirmed booking, with
//! PostgreSQL, RabbitMQ and the payment workers in the loop (start them next to the API:
//! `scripts/bench.sh` does).
//!
//! - `booking`: `--users` virtual users loop "hold 1-4 random seats, check out with `tok_ok`,
//!   poll the reservation until it is final" on large showtimes. API phases alternate with
//!   `pgbench` phases that run the payment worker's booking transaction (`finalise` in
//!   `src/ledger/charge.rs`, built from the very statements of `src/ledger/repo.rs`) against a
//!   scratch database migrated with the same migrations; the ratio is confirmed bookings/s
//!   through the API over pgbench transactions/s. `--pgbench-only` runs the pgbench phases alone.
//! - `sellout`: `--users` (5,000) accounts race for one showtime of `--rows` x `--seats-per-row`
//!   (1,000) seats, each picking seats it sees available in the seat map and retrying on 409,
//!   until the seat map shows nothing available and nothing held. Then PostgreSQL is checked
//!   directly (`psql`) and with `seatgate check-invariants`.
//!
//! Errors are classified by the API's problem+json `code` and never folded into the figures.
//!
//! Files: `shop` (the HTTP of one purchase), `fixtures` (catalog, showtimes, users through the
//! API), `buyers` (the API phases of `booking`), `pgbench` and `script` (its pgbench phases),
//! `sellout` (the race and its verification), `tally` (what a user records), `report`.

mod buyers;
mod fixtures;
mod pgbench;
mod psql;
mod report;
mod script;
mod sellout;
mod shop;
mod tally;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use tokio::task::JoinSet;

use crate::api::{self, Api, LoadArgs, TargetArgs, register_users};
use buyers::{BookingTarget, FreeSeats, Showtimes, booking_rounds};
use fixtures::{catalog, categories, run_id, showtime};
use pgbench::Pgbench;
use psql::{PSQL_TIMEOUT, psql};
use sellout::{Race, RaceResult, check_invariants, racer, settle, verify};
use shop::Shop;
use tally::{Figures, Tally};

/// Seats one hold asks for: 1 to this many.
const MAX_SEATS_PER_HOLD: usize = 4;
/// Seats of one pgbench booking (the issue asks for "a booking + 4 booked_seats").
const PGBENCH_SEATS: u64 = 4;
/// Seat category of the benchmark screens.
const CATEGORY: &str = "standard";
/// Pause between phases, so one phase's tail does not overlap the next one's start.
const PAUSE: Duration = Duration::from_millis(500);

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
    /// Poll the reservation after checkout instead of following its event stream (the push).
    #[arg(long)]
    pub no_push: bool,
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
    /// Run only the pgbench phases (`--rounds` of `--duration-secs`, no warm-up, no API): a
    /// check that the worker's booking transaction runs on the scratch database. Fails if a
    /// transaction failed.
    #[arg(long)]
    pub pgbench_only: bool,
}

/// Flags of the `sellout` scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct SelloutArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Users racing for the showtime, each with their own account.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: u32,
    /// At most this many users take part at once (0: all of them): the others wait their turn,
    /// first come first served, and step in as users leave (with tickets or with "sold out"), as
    /// behind a waiting room. Every user is a connection while active, so 50,000 at once would
    /// need 50,000 file descriptors on each side of this one machine.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub active_users: u32,
    /// Seat categories of the screen (1-3): rows fall front to back into equal bands, `premium`
    /// (45.00), `standard` (25.00) and `economy` (12.00); with 1, every seat is `standard` (12.00).
    /// A best-available buyer asks for one category, picked at random among those with seats left.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3))]
    pub categories: u32,
    /// Rows of the screen.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub rows: u32,
    /// Seats per row (default 20 x 50 = 1000 seats; rows x seats at most 20,000, the API's limit).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub seats_per_row: u32,
    /// Registrations in flight at once with --register-through-api (each hashes a password with
    /// argon2).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub register_concurrency: u32,
    /// Register every user through `POST /api/v1/auth/register` (one argon2 hash each on the
    /// server) instead of seeding them in bulk into `--database-url` (`seatgate seed-users`'
    /// code, one hash for all, tokens signed with the API's `SEATGATE_JWT_SECRET`).
    #[arg(long)]
    pub register_through_api: bool,
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
    /// Poll the reservation after checkout instead of following its event stream (the push).
    #[arg(long)]
    pub no_push: bool,
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
    /// Share of buyers (percent) who ask for the best seats together (best-available) instead of
    /// picking seats from the seat map. They never load the seat map: they read the showtime's
    /// availability (`GET /api/v1/showtimes/{id}/availability`, a few hundred bytes) to choose a
    /// category and to learn that it is sold out.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub best_available_percent: u32,
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
    if args.pgbench.pgbench_only {
        return pgbench_alone(&mut pg, &args).await;
    }
    let api = Api::new(api::client(args.load.users)?, &api_url);

    eprintln!(
        "setting up through {api_url} ({} users, {} showtimes of {seats} seats)...",
        args.load.users, args.showtimes
    );
    let started = Instant::now();
    let setup = async {
        let run_id = run_id();
        let c = catalog(&api, &args.target, &run_id, args.rows, args.seats_per_row, &categories(1)).await?;
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
            push: !args.no_push,
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
    report::booking_summary(&args, &target, &api_phases, &pg_phases, &pg, &written);
    Ok(())
}

/// `--pgbench-only`: the pgbench phases without the API, each round's line and what they wrote.
async fn pgbench_alone(pg: &mut Pgbench, args: &BookingArgs) -> anyhow::Result<()> {
    pg.setup().await?;
    let duration = Duration::from_secs(args.load.duration_secs);
    let mut failed = 0;
    for round in 1..=args.load.rounds {
        pg.checkpoint().await?;
        let p = pg.phase(duration, round).await?;
        report::pg_line(&p);
        failed += p.failed + u64::from(p.error.is_some());
    }
    report::pgbench_only_summary(pg, &pg.written().await?);
    if failed > 0 {
        bail!("{failed} pgbench transactions (or runs) failed (see above)");
    }
    Ok(())
}

/// Runs the scenario and prints the report.
pub async fn run_sellout(args: SelloutArgs) -> anyhow::Result<()> {
    let api_url = api::loopback_url("--api", &args.target.api)?;
    api::loopback_url("--database-url", &args.database_url)?;
    let total = u64::from(args.rows * args.seats_per_row);
    if total > 20_000 {
        bail!("--rows x --seats-per-row is {total}; a screen has at most 20,000 seats");
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

    eprintln!("setting up through {api_url}: one showtime of {total} seats in {} categories...", args.categories);
    let run_id = run_id();
    let c = catalog(&api, &args.target, &run_id, args.rows, args.seats_per_row, &categories(args.categories)).await?;
    let showtime_id = showtime(&api, &c, 0).await?;
    // The seat map once before the sale, as the on-sale page would have been viewed: caches warm.
    api.call(Method::GET, &format!("/api/v1/showtimes/{showtime_id}/seats"), None, None, StatusCode::OK)
        .await
        .context("read the seat map")?;
    let registering = Instant::now();
    let users = if args.register_through_api {
        eprintln!("registering {} users, {} at a time...", args.users, args.register_concurrency);
        tokio::time::timeout(
            Duration::from_secs(1800),
            register_users(&api, &run_id, args.users, args.register_concurrency),
        )
        .await
        .context("registration took longer than 1800 s")??
    } else {
        eprintln!("seeding {} users into --database-url...", args.users);
        crate::accounts::seed(&args.database_url, &run_id, args.users).await?.users
    };
    let registration = registering.elapsed();
    eprintln!("{} users ready in {:.1} s; the sale starts", users.len(), registration.as_secs_f64());

    let start = Instant::now() + Duration::from_secs(1);
    let race = Arc::new(Race {
        shop: Shop {
            client,
            base: api.url(""),
            poll: Duration::from_millis(args.poll_ms),
            confirm_timeout: Duration::from_secs(args.confirm_timeout_secs),
            push: !args.no_push,
        },
        showtime: showtime_id,
        map_url: api.url(&format!("/api/v1/showtimes/{showtime_id}/seats")),
        availability_url: api.url(&format!("/api/v1/showtimes/{showtime_id}/availability")),
        categories: c.categories.iter().map(|(name, _)| *name).collect(),
        active: (args.active_users > 0).then(|| Arc::new(tokio::sync::Semaphore::new(args.active_users as usize))),
        start,
        deadline: start + Duration::from_secs(args.time_limit_secs),
        total_seats: total,
        refresh_ms: args.refresh_ms,
        confirmed_seats: AtomicU64::new(0),
        all_confirmed_at: OnceLock::new(),
        best_percent: args.best_available_percent,
        sold_out_seen_at: OnceLock::new(),
    });
    let mut tasks = JoinSet::new();
    for (n, user) in (0u32..).zip(users) {
        tasks.spawn(racer(race.clone(), user, n));
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
    let figures = Figures::take(&mut t);
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
        best_available_attempts: t.best_available,
        availability_reads: t.availability_reads,
        checkouts: t.checkouts,
        checkout_retries: t.checkout_retries,
        seat_maps: t.seat_maps,
        polls: t.polls,
        pushes: t.pushes,
        push_fallbacks: t.push_fallbacks,
        push_failures: std::mem::take(&mut t.push_failures),
        figures,
    };

    eprintln!("waiting for every reservation of the showtime to be final...");
    let pending = settle(&args, showtime_id).await?;
    let checks = verify(&args, showtime_id, c.screen_id, &result, pending).await?;
    let invariants = check_invariants(&args.seatgate_bin).await;
    report::sellout_summary(&args, showtime_id, &result, &checks, &invariants);
    if checks.iter().any(|c| !c.ok) || !invariants.ok {
        bail!("verification failed (see above)");
    }
    Ok(())
}
