//! Scenario `flood`: one client sends bogus logins (ever-new unknown emails and malformed ones)
//! and opens live streams as fast as it can, while `--buyers` real buyers log in and hold a
//! seat (then release it), in rounds alternating with the same buyers without the flood.
//! Reports the buyers' login p99 and hold p99 with and without the flood, and what the flood
//! got (logins answered 401, 429 or 503; streams accepted or refused).
//!
//! Run it against the API directly (scripts/bench.sh), with the limits under test at their
//! defaults: `SEATGATE_AUTH_ATTEMPTS_PER_IP_PER_MINUTE=60 SEATGATE_SSE_MAX_PER_IP=32
//! scripts/bench.sh flood`. Clients are told apart by `X-Forwarded-For`, which the API believes
//! from loopback (`SEATGATE_TRUSTED_PROXIES`): each buyer has an address of its own, the flooder
//! one address.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::{self, Api, TargetArgs};
use crate::stats::percentile_ms;

/// How often one real buyer logs in: under the per-email throttle of 10 a minute.
const LOGIN_EVERY: Duration = Duration::from_secs(7);

/// Flags of the `flood` scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct FloodArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Real buyers.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub buyers: u32,
    /// Concurrent bogus login requests of the flooder.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub flood_concurrency: u32,
    /// Live streams the flooder tries to keep open.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub flood_streams: u32,
    /// Length of one phase, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_secs: u64,
    /// Rounds; each runs a phase without the flood, then one with it.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Serialize)]
struct PhaseResult {
    flood: bool,
    logins: usize,
    login_p50_ms: f64,
    login_p99_ms: f64,
    login_failures: u64,
    holds: usize,
    hold_p50_ms: f64,
    hold_p99_ms: f64,
    hold_failures: u64,
    flood_logins: u64,
    flood_401: u64,
    flood_429: u64,
    flood_503: u64,
    flood_streams_open: u64,
    flood_streams_refused: u64,
}

const FLOODER_IP: &str = "203.0.113.66";

fn buyer_ip(n: u32) -> String {
    format!("10.77.{}.{}", n / 250, n % 250 + 1)
}

/// Runs the scenario.
pub async fn run(args: FloodArgs) -> anyhow::Result<()> {
    let api_url = api::loopback_url("--api", &args.target.api)?;
    let api = Api::new(api::client(args.buyers + args.flood_concurrency)?, &api_url);
    api.ready().await?;
    let admin = api.login(&args.target.admin_email, &args.target.admin_password).await?;
    let seats_per_row = args.buyers.div_ceil(4).max(1);
    let showtime_id = crate::onsale_setup::showtime(&api, &admin, 4, seats_per_row).await?;
    let map =
        api.call(Method::GET, &format!("/api/v1/showtimes/{showtime_id}/seats"), None, None, StatusCode::OK).await?;
    let seat_ids: Vec<String> =
        map["seats"].as_array().context("seats")?.iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect();
    let run_id = Uuid::new_v4().simple().to_string();
    let mut buyers = Vec::new();
    for n in 0..args.buyers {
        let email = format!("buyer-{run_id}-{n}@example.com");
        let body = json!({"email": email, "password": "buyer-password", "name": "Buyer"});
        let req = api.client.post(api.url("/api/v1/auth/register")).header("X-Forwarded-For", buyer_ip(n)).json(&body);
        let res = req.send().await.context("register a buyer")?;
        anyhow::ensure!(res.status() == StatusCode::CREATED, "registering a buyer: {}", res.status());
        buyers.push((n, email, seat_ids[n as usize % seat_ids.len()].clone()));
    }
    let mut phases = Vec::new();
    for round in 1..=args.rounds {
        for flood in [false, true] {
            eprintln!("flood: round {round}, {} the flood", if flood { "with" } else { "without" });
            phases.push(phase(&api, &args, showtime_id, &buyers, flood).await);
        }
    }
    print(&phases, args.json)
}

async fn phase(
    api: &Api,
    args: &FloodArgs,
    showtime_id: Uuid,
    buyers: &[(u32, String, String)],
    flood: bool,
) -> PhaseResult {
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Arc<[AtomicU64; 6]> = Arc::new(Default::default());
    let mut flooders = JoinSet::new();
    if flood {
        for _ in 0..args.flood_concurrency {
            let (api, stop, counters) = (api.clone(), Arc::clone(&stop), Arc::clone(&counters));
            flooders.spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let email = if i.is_multiple_of(2) {
                        format!("nobody-{}@example.com", Uuid::new_v4().simple())
                    } else {
                        format!("garbage-{i}")
                    };
                    let res = api
                        .client
                        .post(api.url("/api/v1/auth/login"))
                        .header("X-Forwarded-For", FLOODER_IP)
                        .json(&json!({"email": email, "password": "guess-guess"}))
                        .send()
                        .await;
                    counters[0].fetch_add(1, Ordering::SeqCst);
                    match res.map(|r| r.status().as_u16()) {
                        Ok(401) => counters[1].fetch_add(1, Ordering::SeqCst),
                        Ok(429) => counters[2].fetch_add(1, Ordering::SeqCst),
                        Ok(503) => counters[3].fetch_add(1, Ordering::SeqCst),
                        _ => 0,
                    };
                }
            });
        }
        for _ in 0..args.flood_streams {
            let (api, stop, counters) = (api.clone(), Arc::clone(&stop), Arc::clone(&counters));
            flooders.spawn(async move {
                let res = api
                    .client
                    .get(api.url(&format!("/api/v1/showtimes/{showtime_id}/seats/events")))
                    .header("X-Forwarded-For", FLOODER_IP)
                    .timeout(Duration::from_secs(3600))
                    .send()
                    .await;
                match res {
                    Ok(mut r) if r.status() == StatusCode::OK => {
                        counters[4].fetch_add(1, Ordering::SeqCst);
                        while !stop.load(Ordering::SeqCst) {
                            if tokio::time::timeout(Duration::from_millis(500), r.chunk())
                                .await
                                .is_ok_and(|c| c.is_err())
                            {
                                break;
                            }
                        }
                    }
                    _ => {
                        counters[5].fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        // Let the flood build up before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let mut tasks = JoinSet::new();
    for (n, email, seat) in buyers.iter().cloned() {
        let api = api.clone();
        tasks.spawn(async move {
            let (mut logins, mut holds, mut login_failures, mut hold_failures) = (Vec::new(), Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                let started = Instant::now();
                let res = api
                    .client
                    .post(api.url("/api/v1/auth/login"))
                    .header("X-Forwarded-For", buyer_ip(n))
                    .json(&json!({"email": email, "password": "buyer-password"}))
                    .send()
                    .await;
                let token = match res {
                    Ok(r) if r.status() == StatusCode::OK => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|b| b["access_token"].as_str().map(str::to_owned)),
                    _ => None,
                };
                let Some(token) = token else {
                    login_failures += 1;
                    tokio::time::sleep(LOGIN_EVERY).await;
                    continue;
                };
                logins.push(started.elapsed().as_micros() as u64);
                let started = Instant::now();
                let res = api
                    .client
                    .post(api.url(&format!("/api/v1/showtimes/{showtime_id}/holds")))
                    .bearer_auth(&token)
                    .json(&json!({"seat_ids": [seat]}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        holds.push(started.elapsed().as_micros() as u64);
                        if let Ok(body) = r.json::<serde_json::Value>().await
                            && let Some(id) = body["hold_id"].as_str()
                        {
                            let _ = api
                                .client
                                .delete(api.url(&format!("/api/v1/holds/{id}")))
                                .bearer_auth(&token)
                                .send()
                                .await;
                        }
                    }
                    _ => hold_failures += 1,
                }
                // A person does not log in again at once, and never faster than the per-email
                // throttle allows (SEATGATE_LOGIN_ATTEMPTS_PER_MINUTE, 10): the buyers measure the
                // flood's effect, not their own throttle.
                tokio::time::sleep(LOGIN_EVERY).await;
            }
            (logins, holds, login_failures, hold_failures)
        });
    }
    let mut result = PhaseResult { flood, ..PhaseResult::default() };
    let (mut logins, mut holds) = (Vec::new(), Vec::new());
    while let Some(Ok((l, h, lf, hf))) = tasks.join_next().await {
        logins.extend(l);
        holds.extend(h);
        result.login_failures += lf;
        result.hold_failures += hf;
    }
    stop.store(true, Ordering::SeqCst);
    while flooders.join_next().await.is_some() {}
    logins.sort_unstable();
    holds.sort_unstable();
    result.logins = logins.len();
    result.login_p50_ms = percentile_ms(&logins, 50.0);
    result.login_p99_ms = percentile_ms(&logins, 99.0);
    result.holds = holds.len();
    result.hold_p50_ms = percentile_ms(&holds, 50.0);
    result.hold_p99_ms = percentile_ms(&holds, 99.0);
    let c = |i: usize| counters[i].load(Ordering::SeqCst);
    (result.flood_logins, result.flood_401, result.flood_429, result.flood_503) = (c(0), c(1), c(2), c(3));
    (result.flood_streams_open, result.flood_streams_refused) = (c(4), c(5));
    result
}

#[expect(clippy::print_stdout, reason = "the summary is the program's output")]
fn print(phases: &[PhaseResult], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(&json!({"scenario": "flood", "phases": phases}))?);
    } else {
        println!("{}", serde_json::to_string_pretty(phases)?);
    }
    Ok(())
}
