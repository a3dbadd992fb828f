//! Scenario `holds`: the hot path of an on-sale. Every virtual user loops "hold 1-4 random
//! seats, release them at once" on one large showtime (or, with `--showtimes N`, on a showtime
//! picked at random per hold among N of the same screen: N hash tags, spread over a Redis
//! Cluster's slots), first through the HTTP API
//! (`POST /api/v1/showtimes/{id}/holds`, `DELETE /api/v1/holds/{id}`), then straight through
//! `hold.lua` / `release.lua` via the library's store (the raw baseline), alternating for
//! `--rounds` rounds. The API/raw ratio of hold attempts per second is what HTTP, auth, JSON
//! and the API's extra bookkeeping cost on top of the scripts themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deadpool_redis::redis;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use reqwest::{Method, StatusCode};
use seatgate::config::{Config, HoldConfig};
use seatgate::holds::store::{self, HoldOutcome, HoldParams, ReleaseOutcome, ShowtimeMeta};
use seatgate::infra::redis::{Keys, ShowtimeKeys};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::{self, Api, LoadArgs, TargetArgs, User, chain, problem_code, transport_kind};
use crate::report;
use crate::stats::{Phase, Side, Tally};

/// Flags of the `holds` scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct HoldsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Rows of the benchmark screen.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rows: u32,
    /// Seats per row (rows x seats at most 5000, the API's limit).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub seats_per_row: u32,
    /// Redis of the raw phase (loopback only): the one the API uses, so both share it.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// The API's database (loopback only). When known, the users are seeded into it in bulk
    /// (`seatgate seed-users`' code: one argon2 hash for all; tokens signed with the API's
    /// `SEATGATE_JWT_SECRET`); otherwise they register through the API.
    #[arg(long, env = "SEATGATE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Showtimes the holds are spread over (random per hold), each its own hash tag and so its
    /// own Redis Cluster slot; 1 is one hot showtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub showtimes: u32,
    /// Register the users through `POST /api/v1/auth/register` (one argon2 hash each) even when
    /// `--database-url` is known.
    #[arg(long)]
    pub register_through_api: bool,
}

/// Seats one hold asks for: 1 to this many.
const MAX_SEATS_PER_HOLD: usize = 4;
/// Seat category of the benchmark screen.
const CATEGORY: &str = "standard";
/// Registrations in flight at once during set-up (each hashes a password on the server).
const REGISTER_CONCURRENCY: u32 = 8;
/// Bound of the whole set-up.
const SETUP_BUDGET: Duration = Duration::from_secs(300);
/// Pause between phases, so one phase's tail does not overlap the next one's start.
const PAUSE: Duration = Duration::from_millis(500);

/// What the API phase needs, made once through the real API.
struct ApiTarget {
    api: Api,
    showtime_ids: Arc<Vec<Uuid>>,
    seat_ids: Arc<Vec<Uuid>>,
    users: Vec<User>,
}

/// What the raw phase needs: its own keys and seats in the same Redis.
struct RawTarget {
    pool: seatgate::infra::redis::RedisPool,
    names: Arc<Keys>,
    /// Each showtime with its keys.
    showtimes: Arc<Vec<(Uuid, ShowtimeKeys)>>,
    seat_ids: Arc<Vec<Uuid>>,
    holds: HoldConfig,
}

/// Runs the scenario and prints the report.
pub async fn run(args: HoldsArgs) -> anyhow::Result<()> {
    let api_url = api::loopback_url("--api", &args.target.api)?;
    api::loopback_url("--redis-url", &args.redis_url)?;
    let seats = args.rows * args.seats_per_row;
    if seats > 5000 {
        bail!("--rows x --seats-per-row is {seats}; a screen has at most 5000 seats");
    }
    let api = Api::new(api::client(args.load.users)?, &api_url);

    eprintln!("setting up through {api_url} ({} users, {seats} seats)...", args.load.users);
    let started = Instant::now();
    let target = tokio::time::timeout(SETUP_BUDGET, setup(api, &args))
        .await
        .with_context(|| format!("set-up took longer than {} s", SETUP_BUDGET.as_secs()))??;
    eprintln!(
        "set-up done in {:.1} s: {} showtime(s), first {}",
        started.elapsed().as_secs_f64(),
        target.showtime_ids.len(),
        target.showtime_ids[0]
    );

    let raw = RawTarget::new(&args.redis_url, seats as usize, args.showtimes as usize)?;
    // Warm before anything else so a Redis that is not there fails before the load starts.
    let warmed = raw.warm().await;
    // Every phase is bounded by its duration plus the request timeout; this is the backstop.
    let phase_bound = Duration::from_secs(args.load.duration_secs) + api::LOAD_REQUEST_TIMEOUT + PAUSE;
    let budget = phase_bound * (2 * args.load.rounds + 2) + Duration::from_secs(30);
    let outcome = match warmed {
        Ok(()) => tokio::time::timeout(budget, rounds(&target, &raw, &args.load))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the rounds took longer than {} s", budget.as_secs()))),
        Err(e) => Err(e),
    };
    // Clean up whatever happened above; report a failed clean-up only if the run itself worked.
    let cleaned = tokio::time::timeout(Duration::from_secs(10), raw.cleanup())
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("clean-up of the raw keys timed out")));
    let phases = outcome?;
    cleaned?;
    report::holds_summary(&args, target.showtime_ids[0], &phases);
    Ok(())
}

/// Warm-up, then API and raw phases in turn.
async fn rounds(target: &ApiTarget, raw: &RawTarget, load: &LoadArgs) -> anyhow::Result<Vec<Phase>> {
    let users = load.users as usize;
    if load.warmup_secs > 0 {
        let warm = Duration::from_secs(load.warmup_secs);
        eprintln!("warming up both sides for {} s each (not measured)...", load.warmup_secs);
        for phase in [api_phase(target, users, warm, 0).await?, raw_phase(raw, users, warm, 0).await?] {
            if phase.errors > 0 {
                eprintln!("warm-up {}: {} errors: {:?}", phase.side.name(), phase.errors, phase.error_kinds);
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
    let duration = Duration::from_secs(load.duration_secs);
    let mut phases = Vec::new();
    for round in 1..=load.rounds {
        let phase = api_phase(target, users, duration, round).await?;
        report::phase_line(&phase);
        phases.push(phase);
        tokio::time::sleep(PAUSE).await;
        let phase = raw_phase(raw, users, duration, round).await?;
        report::phase_line(&phase);
        phases.push(phase);
        tokio::time::sleep(PAUSE).await;
    }
    Ok(phases)
}

/// Admin login, a movie, a theater, a screen, a showtime tomorrow, and one account per user.
async fn setup(api: Api, args: &HoldsArgs) -> anyhow::Result<ApiTarget> {
    api.ready().await?;
    let admin = api.login(&args.target.admin_email, &args.target.admin_password).await?;
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();

    let movie = json!({"title": format!("Bench {run_id}"), "duration_minutes": 120, "genres": ["drama"]});
    let (movie_id, _) = api.create(&admin, "/api/v1/movies", &movie).await.context("create the movie")?;
    let theater = json!({"name": format!("Bench Theater {run_id}"), "city": "Benchville", "address": "Loop 1"});
    let (theater_id, _) = api.create(&admin, "/api/v1/theaters", &theater).await.context("create the theater")?;
    let rows: Vec<Value> = (1..=args.rows)
        .map(|r| json!({"label": format!("R{r}"), "seats": args.seats_per_row, "category": CATEGORY}))
        .collect();
    let screen = json!({"name": format!("Bench Screen {run_id}"), "rows": rows});
    let (screen_id, _) = api
        .create(&admin, &format!("/api/v1/theaters/{theater_id}/screens"), &screen)
        .await
        .context("create the screen")?;
    let mut showtime_ids = Vec::with_capacity(args.showtimes as usize);
    for i in 0..args.showtimes {
        // Three hours apart on the one screen, so no two overlap.
        let starts_at = tomorrow() + chrono::Duration::hours(3 * i64::from(i));
        let showtime = json!({
            "movie_id": movie_id,
            "screen_id": screen_id,
            "starts_at": starts_at.format("%Y-%m-%dT%H:%M:00Z").to_string(),
            "prices": {CATEGORY: 1200},
            "currency": "EUR",
        });
        let (id, _) = api.create(&admin, "/api/v1/showtimes", &showtime).await.context("create a showtime")?;
        showtime_ids.push(id);
    }

    let screen = api
        .call(Method::GET, &format!("/api/v1/screens/{screen_id}"), None, None, StatusCode::OK)
        .await
        .context("read the screen's seats")?;
    let seat_ids = api::screen_seat_ids(&screen, (args.rows * args.seats_per_row) as usize)?;

    let users = match (&args.database_url, args.register_through_api) {
        (Some(url), false) => crate::accounts::seed(url, &run_id, args.load.users).await?.users,
        _ => api::register_users(&api, &run_id, args.load.users, REGISTER_CONCURRENCY).await?,
    };
    Ok(ApiTarget { api, showtime_ids: Arc::new(showtime_ids), seat_ids: Arc::new(seat_ids), users })
}

/// Tomorrow, same time: far enough that the showtime does not start during the run.
fn tomorrow() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::days(1)
}

/// 1 to 4 distinct random seats.
fn pick(rng: &mut StdRng, seats: &[Uuid]) -> Vec<Uuid> {
    let n = rand::Rng::random_range(rng, 1..=MAX_SEATS_PER_HOLD.min(seats.len()));
    seats.choose_multiple(rng, n).copied().collect()
}

/// `users` tasks hold and release through the API until `duration` has passed.
async fn api_phase(target: &ApiTarget, users: usize, duration: Duration, round: u32) -> anyhow::Result<Phase> {
    let hold_urls: Arc<Vec<String>> = Arc::new(
        target.showtime_ids.iter().map(|id| target.api.url(&format!("/api/v1/showtimes/{id}/holds"))).collect(),
    );
    let release_base = target.api.url("/api/v1/holds/");
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for user in target.users.iter().take(users).cloned() {
        let client = target.api.client.clone();
        let (hold_urls, release_base, seats) = (hold_urls.clone(), release_base.clone(), target.seat_ids.clone());
        tasks.spawn(async move {
            let mut rng = StdRng::from_rng(&mut rand::rng());
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let body = json!({"seat_ids": pick(&mut rng, &seats)});
                let hold_url = hold_urls.choose(&mut rng).expect("at least one showtime");
                let sent = Instant::now();
                let answer = match client.post(hold_url).bearer_auth(&user.token).json(&body).send().await {
                    Ok(res) => {
                        let status = res.status();
                        res.bytes().await.map(|b| (status, b))
                    }
                    Err(e) => Err(e),
                };
                let (status, bytes) = match answer {
                    Ok(answer) => answer,
                    Err(e) => {
                        tally.error(format!("hold: transport error ({})", transport_kind(&e)), || chain(&e));
                        continue;
                    }
                };
                tally.latency(sent.elapsed());
                match status {
                    StatusCode::CREATED => {
                        tally.granted += 1;
                        let hold_id = serde_json::from_slice::<Value>(&bytes)
                            .ok()
                            .and_then(|v| v["hold_id"].as_str().map(str::to_owned));
                        let Some(hold_id) = hold_id else {
                            tally.error("hold 201 without hold_id", || String::from_utf8_lossy(&bytes).into_owned());
                            continue;
                        };
                        release_via_api(&client, &format!("{release_base}{hold_id}"), &user.token, &mut tally).await;
                    }
                    StatusCode::CONFLICT => tally.conflicts += 1,
                    other => {
                        let text = String::from_utf8_lossy(&bytes);
                        tally.error(format!("hold {} {}", other.as_u16(), problem_code(&bytes)), || {
                            format!("hold {other}: {}", api::truncate(&text, 300))
                        });
                    }
                }
            }
            tally
        });
    }
    let tallies = join_all(tasks).await?;
    Ok(Phase::from_tallies(Side::Api, round, start.elapsed(), tallies))
}

async fn release_via_api(client: &reqwest::Client, url: &str, token: &str, tally: &mut Tally) {
    match client.delete(url).bearer_auth(token).send().await {
        Ok(res) => {
            let status = res.status();
            let bytes = res.bytes().await.unwrap_or_default();
            if status != StatusCode::NO_CONTENT {
                let text = String::from_utf8_lossy(&bytes);
                tally.error(format!("release {} {}", status.as_u16(), problem_code(&bytes)), || {
                    format!("release {status}: {}", api::truncate(&text, 300))
                });
            }
        }
        Err(e) => tally.error(format!("release: transport error ({})", transport_kind(&e)), || chain(&e)),
    }
}

/// `users` tasks run hold.lua / release.lua through the store until `duration` has passed.
async fn raw_phase(raw: &RawTarget, users: usize, duration: Duration, round: u32) -> anyhow::Result<Phase> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..users {
        let (pool, names, showtimes, seats, holds) =
            (raw.pool.clone(), raw.names.clone(), raw.showtimes.clone(), raw.seat_ids.clone(), raw.holds.clone());
        tasks.spawn(async move {
            let mut rng = StdRng::from_rng(&mut rand::rng());
            let mut tally = Tally::default();
            // Each virtual user is its own customer, as in the API phase.
            let user_id = Uuid::now_v7();
            let user = user_id.to_string();
            while Instant::now() < deadline {
                let chosen = pick(&mut rng, &seats);
                let (showtime_id, keys) = showtimes.choose(&mut rng).expect("at least one showtime");
                let showtime_id = *showtime_id;
                let params = HoldParams {
                    showtime_id,
                    hold_id: names.new_hold_id(showtime_id),
                    user_id,
                    ttl: holds.ttl,
                    max_lifetime: holds.max_lifetime,
                    max_seats_per_user: holds.max_seats_per_user,
                };
                // A pooled connection per hold, as the API takes one per request.
                let sent = Instant::now();
                let mut conn = match pool.get().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tally.error("raw: redis pool", || format!("{e:#}"));
                        continue;
                    }
                };
                let outcome = store::hold(&mut conn, &names, keys, params, &chosen).await;
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tally.error("raw: hold.lua failed", || format!("{e:#}"));
                        continue;
                    }
                };
                tally.latency(sent.elapsed());
                match outcome {
                    HoldOutcome::Held { .. } => {
                        tally.granted += 1;
                        match store::release(&mut conn, &names, keys, params.hold_id, &user, false).await {
                            Ok(ReleaseOutcome::Released) => {}
                            Ok(other) => tally.error(format!("raw: release {other:?}"), || format!("{other:?}")),
                            Err(e) => tally.error("raw: release.lua failed", || format!("{e:#}")),
                        }
                    }
                    HoldOutcome::Unavailable(_) => tally.conflicts += 1,
                    other => {
                        let kind = match &other {
                            HoldOutcome::OverLimit { .. } => "raw: hold over the per-user limit",
                            HoldOutcome::Closed(_) => "raw: showtime closed",
                            HoldOutcome::Cold => "raw: showtime cache cold",
                            HoldOutcome::SaleNotOpen { .. } | HoldOutcome::NotAdmitted => "raw: refused by the sale",
                            HoldOutcome::Held { .. } | HoldOutcome::Unavailable(_) => "raw: unexpected",
                        };
                        tally.error(kind, || format!("{other:?}"));
                    }
                }
            }
            tally
        });
    }
    let tallies = join_all(tasks).await?;
    Ok(Phase::from_tallies(Side::Raw, round, start.elapsed(), tallies))
}

async fn join_all(mut tasks: JoinSet<Tally>) -> anyhow::Result<Vec<Tally>> {
    let mut tallies = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        tallies.push(joined.context("a virtual user panicked")?);
    }
    Ok(tallies)
}

impl RawTarget {
    /// A pool like the API's (same size and timeouts, from the same config defaults), a unique
    /// key prefix, `showtimes` random showtime ids and random seat ids.
    fn new(redis_url: &str, seats: usize, showtimes: usize) -> anyhow::Result<Self> {
        // In cluster mode when the environment says so, like every seatgate process.
        let cluster = std::env::var("SEATGATE_REDIS_CLUSTER_NODES").unwrap_or_default();
        let mut config = Config::from_source(&[
            ("SEATGATE_REDIS_URL", redis_url),
            ("SEATGATE_REDIS_CLUSTER_NODES", cluster.as_str()),
        ])
        .context("--redis-url or SEATGATE_REDIS_CLUSTER_NODES")?;
        config.redis.key_prefix = format!("bench{}", Uuid::new_v4().simple());
        let pool = seatgate::infra::redis::pool(&config.redis)?;
        let names = Keys::new(config.redis.key_prefix.clone());
        let showtimes = (0..showtimes)
            .map(|_| {
                let id = Uuid::now_v7();
                (id, names.showtime(id))
            })
            .collect();
        let seat_ids = (0..seats).map(|_| Uuid::now_v7()).collect();
        Ok(Self {
            pool,
            names: Arc::new(names),
            showtimes: Arc::new(showtimes),
            seat_ids: Arc::new(seat_ids),
            holds: config.holds,
        })
    }

    /// Caches each showtime's meta and an empty sold set, as the API does on its first hold.
    async fn warm(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await.context("connect to Redis (--redis-url)")?;
        let meta = ShowtimeMeta { starts_at_ms: tomorrow().timestamp_millis(), cancelled: false };
        for (_, keys) in self.showtimes.iter() {
            store::warm(&mut conn, keys, meta, &[], Duration::from_secs(3600)).await?;
            // No sale settings (on sale now, no queue), as the API mirrors them on its first hold.
            let open = seatgate::onsale::store::SaleMirror::open_now(meta.starts_at_ms + 7_200_000);
            let index = format!("{}-queued", keys.holds);
            seatgate::onsale::store::mirror(&mut conn, keys, &index, Uuid::nil(), &open).await?;
        }
        Ok(())
    }

    /// Deletes every key of the raw showtimes (one DEL per showtime: its keys share a slot).
    async fn cleanup(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await.context("connect to Redis for clean-up")?;
        for (_, k) in self.showtimes.iter() {
            let _: i64 = redis::cmd("DEL")
                .arg(&[&k.holds, &k.expiry, &k.info, &k.users, &k.sold, &k.meta, &k.sale])
                .query_async(&mut conn)
                .await
                .context("delete the raw showtime's keys")?;
        }
        Ok(())
    }
}
