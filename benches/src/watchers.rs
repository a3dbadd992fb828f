//! Scenario `watchers`: many live seat maps on one showtime while seats are held and released.
//!
//! `--watchers` clients open `GET /api/v1/showtimes/{id}/seats/events` (one TCP connection
//! each) and read every frame; `--holders` users then hold one seat and release it at once,
//! paced to `--holds-per-sec` in all, for `--duration-secs`. Each holder owns its own slice of
//! seats and cycles through it, so a seat is held again only after a whole slice of holds; a
//! watcher that sees `held` for a seat looks up when that hold was *sent* and records the delay
//! (hold request sent -> event read by the watcher: what a user watching the map waits). The
//! API's resident memory comes from `/proc/<pid>/status` before the watchers connect, once they
//! all have their snapshot, and at the end; the difference over the count is the memory per
//! open stream. Before any watcher connects, the same holders run the same load for the same
//! time with no stream open (unless `--skip-baseline`): that phase's hold latency is the
//! baseline, and the report sets the two side by side (with / without streams).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::{self, Api, TargetArgs, User};
use crate::stats::percentile_ms;

/// Flags of the `watchers` scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct WatchersArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Event-stream clients on the one showtime.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=20000))]
    pub watchers: u32,
    /// Users holding and releasing seats meanwhile.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub holders: u32,
    /// Holds per second over all holders (each also releases, so twice as many events).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub holds_per_sec: u32,
    /// Length of the measured phase, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_secs: u64,
    /// Seats of the benchmark screen (one row per 20).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(20..=5000))]
    pub seats: u32,
    /// Skip the first phase (the same load with no stream open, the hold latency baseline).
    #[arg(long)]
    pub skip_baseline: bool,
    /// The API's process id, for its memory from /proc (scripts/bench.sh sets it).
    #[arg(long, env = "SEATGATE_BENCH_API_PID")]
    pub api_pid: Option<u32>,
}

/// Streams opened at once while connecting.
const CONNECT_CONCURRENCY: usize = 64;
/// Bound of set-up and of connecting every watcher.
const SETUP_BUDGET: Duration = Duration::from_secs(300);

/// When each seat's latest hold was sent.
type Sent = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// What one watcher saw.
#[derive(Default)]
struct Seen {
    delays_us: Vec<u64>,
    held: u64,
    other: u64,
    snapshots: u64,
    unmatched: u64,
}

/// Runs the scenario and prints the report.
pub async fn run(args: WatchersArgs) -> anyhow::Result<()> {
    let api_url = api::loopback_url("--api", &args.target.api)?;
    let api = Api::new(api::client(args.holders)?, &api_url);
    eprintln!("setting up through {api_url} ({} watchers, {} holders)...", args.watchers, args.holders);
    let (showtime_id, seats, holders) =
        tokio::time::timeout(SETUP_BUDGET, setup(&api, &args)).await.context("set-up took too long")??;
    let duration = Duration::from_secs(args.duration_secs);
    let per_holder = Duration::from_secs_f64(f64::from(args.holders) / f64::from(args.holds_per_sec));
    let sent: Sent = Arc::default();
    // Phase 1: the same load with no stream open, on the same API, seats and users.
    let baseline = if args.skip_baseline {
        None
    } else {
        eprintln!("baseline: {} s of holds with no stream open...", args.duration_secs);
        let load = hold_phase(&api_url, showtime_id, &holders, &seats, &sent, per_holder, duration).await?;
        // Let the last releases settle before the watchers' snapshots.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some(load)
    };
    let rss_before = rss_kib(args.api_pid);

    // Watchers: one connection each, no pooling (a stream never gives its connection back).
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .http1_only()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("build the watchers' client")?;
    let url = api.url(&format!("/api/v1/showtimes/{showtime_id}/seats/events"));
    let ready = Arc::new(AtomicU64::new(0));
    // A state, not a notification: a watcher busy with a frame when it flips still sees it.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let limit = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let mut watchers = JoinSet::new();
    let connect_start = Instant::now();
    for _ in 0..args.watchers {
        let (client, url, sent, ready, mut stop, limit) =
            (client.clone(), url.clone(), sent.clone(), ready.clone(), stop.clone(), limit.clone());
        watchers.spawn(async move {
            let permit = limit.acquire_owned().await.context("semaphore closed")?;
            watch(&client, &url, &sent, &ready, permit, &mut stop).await
        });
    }
    let deadline = Instant::now() + SETUP_BUDGET;
    while ready.load(Ordering::SeqCst) < u64::from(args.watchers) {
        if Instant::now() > deadline {
            bail!("only {} of {} watchers got their snapshot", ready.load(Ordering::SeqCst), args.watchers);
        }
        if watchers.len() < args.watchers as usize {
            // A watcher ended before the load: report why.
            if let Some(joined) = watchers.join_next().await {
                joined.context("a watcher panicked")??;
                bail!("a watcher's stream ended before the load started");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();
    eprintln!("{} watchers connected in {connect_secs:.1} s", args.watchers);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = rss_kib(args.api_pid);

    // Phase 2: the load with every stream open.
    let (api_cpu_start, own_cpu_start) = (cpu_secs(args.api_pid), cpu_secs(Some(std::process::id())));
    let loaded = hold_phase(&api_url, showtime_id, &holders, &seats, &sent, per_holder, duration).await?;
    let (load_secs, holds_done, hold_errors) = (loaded.secs, loaded.latencies_us.len() as u64, loaded.errors);
    let hold_latencies = loaded.latencies_us;
    let cpu_share = |start: Option<f64>, pid: Option<u32>| Some((cpu_secs(pid)? - start?) / load_secs);
    let api_cpu = cpu_share(api_cpu_start, args.api_pid);
    let own_cpu = cpu_share(own_cpu_start, Some(std::process::id()));
    let rss_loaded = rss_kib(args.api_pid);
    // Let the last events arrive, then stop the watchers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send_replace(true);
    let mut seen = Seen::default();
    let mut watcher_errors = 0u64;
    while let Some(joined) = watchers.join_next().await {
        match joined.context("a watcher panicked")? {
            Ok(s) => {
                seen.delays_us.extend(s.delays_us);
                seen.held += s.held;
                seen.other += s.other;
                seen.snapshots += s.snapshots;
                seen.unmatched += s.unmatched;
            }
            Err(e) => {
                watcher_errors += 1;
                if watcher_errors <= 3 {
                    eprintln!("watcher error: {e:#}");
                }
            }
        }
    }
    seen.delays_us.sort_unstable();
    let expected_held = holds_done * u64::from(args.watchers);
    let per_conn = |rss: Option<u64>| match (rss_before, rss) {
        (Some(before), Some(after)) => Some((after.saturating_sub(before)) as f64 * 1024.0 / f64::from(args.watchers)),
        _ => None,
    };
    let report = json!({
        "scenario": "watchers",
        "showtime_id": showtime_id,
        "watchers": args.watchers,
        "holders": args.holders,
        "holds_per_sec_target": args.holds_per_sec,
        "holds": holds_done,
        "holds_per_sec": holds_done as f64 / load_secs,
        "hold_errors": hold_errors,
        "hold_p50_ms": percentile_ms(&hold_latencies, 50.0),
        "hold_p99_ms": percentile_ms(&hold_latencies, 99.0),
        "baseline_holds": baseline.as_ref().map(|b| b.latencies_us.len()),
        "baseline_hold_errors": baseline.as_ref().map(|b| b.errors),
        "baseline_hold_p50_ms": baseline.as_ref().map(|b| percentile_ms(&b.latencies_us, 50.0)),
        "baseline_hold_p99_ms": baseline.as_ref().map(|b| percentile_ms(&b.latencies_us, 99.0)),
        "hold_p50_ratio": baseline.as_ref().map(|b| percentile_ms(&hold_latencies, 50.0) / percentile_ms(&b.latencies_us, 50.0)),
        "hold_p99_ratio": baseline.as_ref().map(|b| percentile_ms(&hold_latencies, 99.0) / percentile_ms(&b.latencies_us, 99.0)),
        "held_events_expected": expected_held,
        "held_events_seen": seen.held,
        "other_events_seen": seen.other,
        "resync_snapshots": seen.snapshots,
        "unmatched_events": seen.unmatched,
        "watcher_errors": watcher_errors,
        "delay_p50_ms": percentile_ms(&seen.delays_us, 50.0),
        "delay_p90_ms": percentile_ms(&seen.delays_us, 90.0),
        "delay_p99_ms": percentile_ms(&seen.delays_us, 99.0),
        "delay_max_ms": percentile_ms(&seen.delays_us, 100.0),
        "connect_secs": connect_secs,
        "api_cpu_cores_during_load": api_cpu,
        "bench_cpu_cores_during_load": own_cpu,
        "api_rss_kib_before": rss_before,
        "api_rss_kib_connected": rss_connected,
        "api_rss_kib_loaded": rss_loaded,
        "api_rss_bytes_per_stream_idle": per_conn(rss_connected),
        "api_rss_bytes_per_stream_loaded": per_conn(rss_loaded),
    });
    print_report(&report);
    let baseline_errors = baseline.as_ref().map_or(0, |b| b.errors);
    if watcher_errors > 0 || hold_errors > 0 || baseline_errors > 0 {
        bail!("{watcher_errors} watcher errors, {hold_errors} hold errors ({baseline_errors} without streams)");
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn print_report(r: &Value) {
    let kib = |v: &Value| v.as_u64().map_or("n/a".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let per = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |b| format!("{:.1} KiB", b / 1024.0));
    println!(
        "watchers {}  holds {} ({:.1}/s, p50 {:.2} ms, p99 {:.2} ms, errors {})",
        r["watchers"],
        r["holds"],
        r["holds_per_sec"].as_f64().unwrap_or(0.0),
        r["hold_p50_ms"].as_f64().unwrap_or(0.0),
        r["hold_p99_ms"].as_f64().unwrap_or(0.0),
        r["hold_errors"],
    );
    let ms = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |m| format!("{m:.2} ms"));
    let ratio = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |x| format!("{x:.2}x"));
    println!(
        "hold latency without streams / with {} streams: p50 {} / {} ({}), p99 {} / {} ({})",
        r["watchers"],
        ms(&r["baseline_hold_p50_ms"]),
        ms(&r["hold_p50_ms"]),
        ratio(&r["hold_p50_ratio"]),
        ms(&r["baseline_hold_p99_ms"]),
        ms(&r["hold_p99_ms"]),
        ratio(&r["hold_p99_ratio"]),
    );
    println!(
        "held events seen {} of {} expected (resync snapshots {}, unmatched {}, watcher errors {})",
        r["held_events_seen"],
        r["held_events_expected"],
        r["resync_snapshots"],
        r["unmatched_events"],
        r["watcher_errors"],
    );
    println!(
        "hold sent -> event at watcher: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        r["delay_p50_ms"].as_f64().unwrap_or(0.0),
        r["delay_p90_ms"].as_f64().unwrap_or(0.0),
        r["delay_p99_ms"].as_f64().unwrap_or(0.0),
        r["delay_max_ms"].as_f64().unwrap_or(0.0),
    );
    println!(
        "API RSS: {} before, {} with every stream open, {} after the load; per stream {} idle, {} loaded",
        kib(&r["api_rss_kib_before"]),
        kib(&r["api_rss_kib_connected"]),
        kib(&r["api_rss_kib_loaded"]),
        per(&r["api_rss_bytes_per_stream_idle"]),
        per(&r["api_rss_bytes_per_stream_loaded"]),
    );
    println!(
        "CPU during the load, in cores: API {}, this load generator {}",
        r["api_cpu_cores_during_load"].as_f64().map_or("n/a".to_owned(), |c| format!("{c:.2}")),
        r["bench_cpu_cores_during_load"].as_f64().map_or("n/a".to_owned(), |c| format!("{c:.2}")),
    );
    println!("{r}");
}

/// User plus system CPU time of a process so far, in seconds (Linux `/proc/<pid>/stat`,
/// assuming the usual 100 clock ticks per second).
fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Admin login, a showtime of `--seats` seats tomorrow, and the holders' accounts.
async fn setup(api: &Api, args: &WatchersArgs) -> anyhow::Result<(Uuid, Vec<Uuid>, Vec<User>)> {
    api.ready().await?;
    let admin = api.login(&args.target.admin_email, &args.target.admin_password).await?;
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let movie = json!({"title": format!("Watchers {run_id}"), "duration_minutes": 100, "genres": ["drama"]});
    let (movie_id, _) = api.create(&admin, "/api/v1/movies", &movie).await?;
    let theater = json!({"name": format!("Watchers {run_id}"), "city": "Benchville", "address": "Loop 2"});
    let (theater_id, _) = api.create(&admin, "/api/v1/theaters", &theater).await?;
    let rows: Vec<Value> = (0..args.seats.div_ceil(20))
        .map(|r| json!({"label": format!("R{r}"), "seats": 20.min(args.seats - r * 20), "category": "standard"}))
        .collect();
    let screen = json!({"name": format!("Watchers {run_id}"), "rows": rows});
    let (screen_id, _) = api.create(&admin, &format!("/api/v1/theaters/{theater_id}/screens"), &screen).await?;
    let starts = chrono::Utc::now() + chrono::Duration::days(1);
    let showtime = json!({
        "movie_id": movie_id, "screen_id": screen_id,
        "starts_at": starts.format("%Y-%m-%dT%H:%M:00Z").to_string(),
        "prices": {"standard": 1200}, "currency": "EUR",
    });
    let (showtime_id, _) = api.create(&admin, "/api/v1/showtimes", &showtime).await?;
    let screen = api.call(Method::GET, &format!("/api/v1/screens/{screen_id}"), None, None, StatusCode::OK).await?;
    let seats = screen["seats"]
        .as_array()
        .context("no seats")?
        .iter()
        .filter_map(|s| s["id"].as_str().and_then(|id| id.parse().ok()))
        .collect::<Vec<Uuid>>();
    if seats.len() < args.holders as usize {
        bail!("fewer seats than holders");
    }
    let mut holders = Vec::new();
    for i in 0..args.holders {
        holders.push(api.register(&run_id, i).await?);
    }
    Ok((showtime_id, seats, holders))
}

/// What one hold phase measured.
struct HoldPhase {
    /// Latency of every successful hold, sorted, in microseconds.
    latencies_us: Vec<u64>,
    errors: u64,
    secs: f64,
}

/// Every holder on its own slice of seats, paced, for `duration`. The holders run on their own
/// thread, runtime and HTTP client: a real holder is not on the watchers' machine, and on the
/// watchers' runtime each hold's reply would wait behind 2,000 watcher tasks woken by the
/// same change, which is this process' queueing, not the API's.
async fn hold_phase(
    api_url: &reqwest::Url,
    showtime_id: Uuid,
    holders: &[User],
    seats: &[Uuid],
    sent: &Sent,
    per_holder: Duration,
    duration: Duration,
) -> anyhow::Result<HoldPhase> {
    let (api_url, holders, seats, sent) = (api_url.clone(), holders.to_vec(), seats.to_vec(), sent.clone());
    let thread = std::thread::Builder::new().name("holders".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("holders' runtime")?;
        runtime.block_on(async move {
            let api = Api::new(api::client(holders.len() as u32)?, &api_url);
            let slice = seats.len() / holders.len();
            let mut holds = JoinSet::new();
            let start = Instant::now();
            for (i, user) in holders.into_iter().enumerate() {
                let mine: Vec<Uuid> = seats[i * slice..(i + 1) * slice].to_vec();
                let (api, sent) = (api.clone(), sent.clone());
                holds.spawn(
                    async move { hold_loop(&api, showtime_id, &user, &mine, &sent, per_holder, duration).await },
                );
            }
            let (mut latencies_us, mut errors) = (Vec::new(), 0u64);
            while let Some(joined) = holds.join_next().await {
                let (latencies, e) = joined.context("a holder panicked")?;
                latencies_us.extend(latencies);
                errors += e;
            }
            latencies_us.sort_unstable();
            Ok(HoldPhase { latencies_us, errors, secs: start.elapsed().as_secs_f64() })
        })
    })?;
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .context("join the holders' thread")?
        .map_err(|_| anyhow::anyhow!("the holders' thread panicked"))?
}

/// One holder: hold a seat of its slice, release it, next seat, at its pace, until `duration`.
/// Returns the hold latencies (microseconds) and the error count.
async fn hold_loop(
    api: &Api,
    showtime_id: Uuid,
    user: &User,
    seats: &[Uuid],
    sent: &Sent,
    every: Duration,
    duration: Duration,
) -> (Vec<u64>, u64) {
    let hold_url = api.url(&format!("/api/v1/showtimes/{showtime_id}/holds"));
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut latencies, mut errors) = (Vec::new(), 0u64);
    for seat in seats.iter().cycle() {
        tick.tick().await;
        if start.elapsed() >= duration {
            break;
        }
        let began = Instant::now();
        if let Ok(mut map) = sent.lock() {
            map.insert(*seat, began);
        }
        let res = api.client.post(&hold_url).bearer_auth(&user.token).json(&json!({"seat_ids": [seat]})).send().await;
        let hold_id = match res {
            Ok(res) if res.status() == StatusCode::CREATED => {
                latencies.push(began.elapsed().as_micros() as u64);
                res.json::<Value>().await.ok().and_then(|v| v["hold_id"].as_str().map(str::to_owned))
            }
            _ => None,
        };
        let Some(hold_id) = hold_id else {
            errors += 1;
            continue;
        };
        let released =
            api.client.delete(api.url(&format!("/api/v1/holds/{hold_id}"))).bearer_auth(&user.token).send().await;
        if !released.is_ok_and(|r| r.status() == StatusCode::NO_CONTENT) {
            errors += 1;
        }
    }
    (latencies, errors)
}

/// One watcher: open the stream, count the snapshot as ready, then time every `held` event.
async fn watch(
    client: &reqwest::Client,
    url: &str,
    sent: &Sent,
    ready: &AtomicU64,
    permit: tokio::sync::OwnedSemaphorePermit,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Seen> {
    let mut res = client.get(url).header("Accept", "text/event-stream").send().await.context("connect")?;
    if res.status() != StatusCode::OK {
        bail!("stream answered {}", res.status());
    }
    let mut seen = Seen::default();
    let mut buf = String::new();
    let mut first = true;
    let mut permit = Some(permit);
    loop {
        let chunk = tokio::select! {
            chunk = res.chunk() => chunk.context("read the stream")?,
            _ = stop.wait_for(|stop| *stop) => return Ok(seen),
        };
        let Some(chunk) = chunk else { bail!("the stream ended") };
        let now = Instant::now();
        buf.push_str(std::str::from_utf8(&chunk).context("UTF-8")?);
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let event = frame.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default();
            match event {
                "snapshot" if first => {
                    first = false;
                    permit.take();
                    ready.fetch_add(1, Ordering::SeqCst);
                }
                "snapshot" => seen.snapshots += 1,
                "held" => {
                    seen.held += 1;
                    let data = frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("{}");
                    let seat = serde_json::from_str::<Value>(data)
                        .ok()
                        .and_then(|v| v["seat_ids"][0].as_str().and_then(|s| s.parse::<Uuid>().ok()));
                    let began = seat.and_then(|s| sent.lock().ok().and_then(|m| m.get(&s).copied()));
                    match began {
                        Some(began) if began <= now => seen.delays_us.push((now - began).as_micros() as u64),
                        _ => seen.unmatched += 1,
                    }
                }
                "" => {}
                _ => seen.other += 1,
            }
        }
    }
}
