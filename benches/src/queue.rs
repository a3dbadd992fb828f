//! Scenario `queue`: an on-sale behind the waiting room (docs/DESIGN.md §6). `--users` accounts
//! (100,000 by default) join the queue before opening; the sale opens; the admitter lets them
//! in at `--admit-per-minute`; every admitted user holds 1-2 seats and checks out until the
//! showtime is sold out (or `--max-secs` passes). Meanwhile `--intruders` users who never
//! joined keep trying to hold.
//!
//! Accounts are seeded in bulk straight into PostgreSQL ([`crate::accounts`], the code of
//! `seatgate seed-users`: one argon2 hash for all) and their tokens signed with the API's
//! `SEATGATE_JWT_SECRET` (exported by scripts/bench.sh): registering 100,000 users through
//! argon2 would take longer than the sale. Admissions are read from Redis (the `adm` and
//! `q:joined` keys, with the API's `SEATGATE_REDIS_KEY_PREFIX`): that is where the admitter
//! writes them, exactly and without polling 100,000 users.
//!
//! Reports: join p50/p99; the admission rate achieved against the configured one; fairness,
//! the rank correlation of join order and admission order among pre-opening joiners (about 0
//! for a uniform shuffle); holds granted to users not admitted (must be 0); time to sell out.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::{self, Api, TargetArgs};
use crate::stats::percentile_ms;

/// Flags of the `queue` scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Accounts that join before opening.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub users: u32,
    /// Admissions per minute.
    #[arg(long, default_value_t = 6000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub admit_per_minute: u32,
    /// Minutes an admission lasts.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub admission_minutes: u32,
    /// Rows x seats of the screen (at most 5000 seats).
    #[arg(long, default_value_t = 20)]
    pub rows: u32,
    #[arg(long, default_value_t = 50)]
    pub seats_per_row: u32,
    /// Concurrent requests while joining and buying.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Users who never joined and try to hold during the sale (each grant is a breach).
    #[arg(long, default_value_t = 50)]
    pub intruders: u32,
    /// Upper bound of the sale after opening, in seconds.
    #[arg(long, default_value_t = 600)]
    pub max_secs: u64,
    /// The API's database (accounts are seeded into it in bulk).
    #[arg(long, env = "SEATGATE_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/seatgate_bench")]
    pub database_url: String,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    users: u32,
    seats: u32,
    join_p50_ms: f64,
    join_p99_ms: f64,
    join_errors: u64,
    admit_per_minute: u32,
    admitted: usize,
    admission_rate_per_minute: f64,
    admission_rate_error_pct: f64,
    fairness_rank_correlation: f64,
    intruder_attempts: u64,
    intruder_holds_granted: u64,
    holds_granted: u64,
    bookings_accepted: u64,
    sold_out: bool,
    time_to_sell_out_secs: f64,
    showtime_id: Uuid,
}

/// Runs the scenario.
pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    let api_url = api::loopback_url("--api", &args.target.api)?;
    let seats = args.rows * args.seats_per_row;
    if seats > 5000 {
        bail!("--rows x --seats-per-row is {seats}; a screen has at most 5000 seats");
    }
    let config = seatgate::config::Config::from_env().context("read the API's settings from the environment")?;
    api::loopback_url("SEATGATE_REDIS_URL", config.redis.url.expose())?;
    if config.auth.jwt_secret_generated {
        bail!("SEATGATE_JWT_SECRET must be the API's (run through scripts/bench.sh, which exports it)");
    }
    let redis = seatgate::infra::redis::pool(&config.redis)?;
    let keys = seatgate::infra::redis::Keys::new(config.redis.key_prefix.clone());
    let api = Api::new(api::client(args.concurrency)?, &api_url);
    api.ready().await?;

    // Set-up: a showtime with a sale an hour away, and the accounts.
    let admin = api.login(&args.target.admin_email, &args.target.admin_password).await?;
    let showtime_id = crate::onsale_setup::showtime(&api, &admin, args.rows, args.seats_per_row).await?;
    let queue = json!({"admit_per_minute": args.admit_per_minute, "admission_minutes": args.admission_minutes});
    let far = chrono::Utc::now() + chrono::Duration::hours(1);
    api.call(
        Method::PUT,
        &format!("/api/v1/showtimes/{showtime_id}/sale"),
        Some(&admin),
        Some(&json!({"opens_at": far, "queue": queue})),
        StatusCode::OK,
    )
    .await?;
    eprintln!("queue: making {} accounts in PostgreSQL...", args.users + args.intruders);
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let accounts = crate::accounts::seed(&args.database_url, &run_id, args.users + args.intruders).await?;
    let ids = accounts.ids;
    let tokens: Vec<String> = accounts.users.into_iter().map(|u| u.token).collect();
    let (members, intruders) = tokens.split_at(args.users as usize);

    // Join, all before opening.
    eprintln!("queue: {} users join before opening...", args.users);
    let (latencies, join_errors) = join_all(&api, showtime_id, members, args.concurrency).await;
    let mut sorted: Vec<u64> = latencies.clone();
    sorted.sort_unstable();

    // Open the sale.
    let opens_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    api.call(
        Method::PUT,
        &format!("/api/v1/showtimes/{showtime_id}/sale"),
        Some(&admin),
        Some(&json!({"opens_at": opens_at, "queue": queue})),
        StatusCode::OK,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opened = Instant::now();
    eprintln!("queue: open; buying as users are admitted...");

    // Buy as admissions come; intruders try meanwhile.
    let by_user: std::collections::HashMap<Uuid, String> = ids.iter().copied().zip(tokens.iter().cloned()).collect();
    let sale = Arc::new(SaleState::default());
    let mut tasks = JoinSet::new();
    for token in intruders {
        let (api, sale, token) = (api.clone(), Arc::clone(&sale), token.clone());
        tasks.spawn(async move { intrude(&api, showtime_id, &token, &sale).await });
    }
    let showtime_keys = keys.showtime(showtime_id);
    let mut seen: HashSet<Uuid> = HashSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let deadline = opened + Duration::from_secs(args.max_secs);
    let mut sold_out_after = None;
    while Instant::now() < deadline {
        let mut conn = redis.get().await?;
        let admitted: Vec<String> =
            deadpool_redis::redis::cmd("ZRANGE").arg(&showtime_keys.adm).arg(0).arg(-1).query_async(&mut conn).await?;
        drop(conn);
        for user in admitted.iter().filter_map(|u| u.parse::<Uuid>().ok()) {
            if seen.insert(user)
                && let Some(token) = by_user.get(&user).cloned()
            {
                let (api, sale, limit) = (api.clone(), Arc::clone(&sale), Arc::clone(&limit));
                tasks.spawn(async move {
                    let _slot = limit.acquire().await;
                    buy(&api, showtime_id, &token, &sale).await;
                });
            }
        }
        if sold_out(&api, showtime_id).await? {
            sold_out_after = Some(opened.elapsed());
            break;
        }
        if seen.len() as u32 >= args.users {
            // Everyone is in: let the buyers finish.
            while tasks.try_join_next().is_some() {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sale.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}

    // Admission rate and fairness from the admitter's own records.
    let mut conn = redis.get().await?;
    let seatgate::onsale::store::Records { joined, admitted, .. } =
        seatgate::onsale::store::entries(&mut conn, &showtime_keys).await?;
    let window_ms = i64::from(args.admission_minutes) * 60_000;
    let mut times: Vec<i64> = admitted.iter().map(|(_, until)| until - window_ms).collect();
    times.sort_unstable();
    let rate = match (times.first(), times.last()) {
        (Some(first), Some(last)) if last > first => (times.len() - 1) as f64 * 60_000.0 / (last - first) as f64,
        _ => 0.0,
    };
    let admitted_set: HashSet<Uuid> = admitted.iter().map(|(u, _)| *u).collect();
    let early: Vec<&(Uuid, i64, u64)> =
        joined.iter().filter(|(u, at, _)| admitted_set.contains(u) && *at < opens_at.timestamp_millis()).collect();
    let join_order: Vec<f64> = early.iter().map(|(_, at, _)| *at as f64).collect();
    let admission_order: Vec<f64> = early.iter().map(|(_, _, score)| *score as f64).collect();
    let summary = Summary {
        scenario: "queue",
        users: args.users,
        seats,
        join_p50_ms: percentile_ms(&sorted, 50.0),
        join_p99_ms: percentile_ms(&sorted, 99.0),
        join_errors,
        admit_per_minute: args.admit_per_minute,
        admitted: admitted.len(),
        admission_rate_per_minute: rate,
        admission_rate_error_pct: (rate - f64::from(args.admit_per_minute)) / f64::from(args.admit_per_minute) * 100.0,
        fairness_rank_correlation: seatgate::onsale::check::spearman(&join_order, &admission_order),
        intruder_attempts: sale.intruder_attempts.load(std::sync::atomic::Ordering::SeqCst),
        intruder_holds_granted: sale.intruder_grants.load(std::sync::atomic::Ordering::SeqCst),
        holds_granted: sale.holds.load(std::sync::atomic::Ordering::SeqCst),
        bookings_accepted: sale.checkouts.load(std::sync::atomic::Ordering::SeqCst),
        sold_out: sold_out_after.is_some(),
        time_to_sell_out_secs: sold_out_after.unwrap_or_else(|| opened.elapsed()).as_secs_f64(),
        showtime_id,
    };
    print(&summary, args.json)
}

#[derive(Default)]
struct SaleState {
    stop: std::sync::atomic::AtomicBool,
    holds: std::sync::atomic::AtomicU64,
    checkouts: std::sync::atomic::AtomicU64,
    intruder_attempts: std::sync::atomic::AtomicU64,
    intruder_grants: std::sync::atomic::AtomicU64,
}

/// Joins every token's user; join latencies in microseconds and the number of failures.
async fn join_all(api: &Api, showtime_id: Uuid, tokens: &[String], concurrency: u32) -> (Vec<u64>, u64) {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency as usize));
    let mut tasks = JoinSet::new();
    for token in tokens {
        let (api, limit, token) = (api.clone(), Arc::clone(&limit), token.clone());
        tasks.spawn(async move {
            let _slot = limit.acquire().await;
            let started = Instant::now();
            let res = api
                .client
                .post(api.url(&format!("/api/v1/showtimes/{showtime_id}/queue")))
                .bearer_auth(&token)
                .send()
                .await;
            let ok = res.is_ok_and(|r| r.status() == StatusCode::CREATED);
            (started.elapsed().as_micros() as u64, ok)
        });
    }
    let (mut latencies, mut errors) = (Vec::with_capacity(tokens.len()), 0);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((us, true)) => latencies.push(us),
            _ => errors += 1,
        }
    }
    (latencies, errors)
}

/// An admitted user: hold 1-2 free seats from the seat map, check out with `tok_ok`.
async fn buy(api: &Api, showtime_id: Uuid, token: &str, sale: &SaleState) {
    for _ in 0..5 {
        if sale.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Ok(map) = api
            .call(Method::GET, &format!("/api/v1/showtimes/{showtime_id}/seats"), Some(token), None, StatusCode::OK)
            .await
        else {
            continue;
        };
        let free: Vec<Value> = map["seats"]
            .as_array()
            .map(|s| s.iter().filter(|s| s["status"] == "available").map(|s| s["id"].clone()).collect())
            .unwrap_or_default();
        if free.is_empty() {
            return;
        }
        let n = rand::rng().random_range(1..=2usize).min(free.len());
        let start = rand::rng().random_range(0..free.len());
        let pick: Vec<Value> = free.iter().cycle().skip(start).take(n).cloned().collect();
        let held = api
            .call(
                Method::POST,
                &format!("/api/v1/showtimes/{showtime_id}/holds"),
                Some(token),
                Some(&json!({"seat_ids": pick})),
                StatusCode::CREATED,
            )
            .await;
        let Ok(hold) = held else { continue };
        sale.holds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let Some(hold_id) = hold["hold_id"].as_str() else { return };
        let checkout = api
            .client
            .post(api.url(&format!("/api/v1/holds/{hold_id}/checkout")))
            .bearer_auth(token)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&json!({"payment_token": "tok_ok"}))
            .send()
            .await;
        if checkout.is_ok_and(|r| r.status() == StatusCode::ACCEPTED) {
            sale.checkouts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        return;
    }
}

/// A user who never joined tries to hold a seat every 200 ms; any 201 is a breach.
async fn intrude(api: &Api, showtime_id: Uuid, token: &str, sale: &SaleState) {
    let seat = match api
        .call(Method::GET, &format!("/api/v1/showtimes/{showtime_id}/seats"), None, None, StatusCode::OK)
        .await
    {
        Ok(map) => map["seats"][0]["id"].clone(),
        Err(_) => return,
    };
    while !sale.stop.load(std::sync::atomic::Ordering::SeqCst) {
        sale.intruder_attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let res = api
            .client
            .post(api.url(&format!("/api/v1/showtimes/{showtime_id}/holds")))
            .bearer_auth(token)
            .json(&json!({"seat_ids": [seat]}))
            .send()
            .await;
        if res.is_ok_and(|r| r.status() == StatusCode::CREATED) {
            sale.intruder_grants.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sold_out(api: &Api, showtime_id: Uuid) -> anyhow::Result<bool> {
    let map =
        api.call(Method::GET, &format!("/api/v1/showtimes/{showtime_id}/seats"), None, None, StatusCode::OK).await?;
    Ok(map["seats"].as_array().is_some_and(|s| s.iter().all(|s| s["status"] == "sold")))
}

#[expect(clippy::print_stdout, reason = "the summary is the program's output")]
fn print(s: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
    } else {
        println!("{}", serde_json::to_string_pretty(s)?);
    }
    Ok(())
}
