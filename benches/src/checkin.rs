//! Scenario `checkin`: the doors open. A showtime of `--tickets` confirmed bookings (one seat
//! each, written straight into PostgreSQL as the payment worker would leave them), their signed
//! tickets fetched as their owner sees them, then `--gates` gates scan them online at once, each
//! gate one scanner in a loop (a scanner waits for its answer before the next guest), each
//! guest at one gate; `--rescan-percent` of the guests try a second gate too (409
//! `already_checked_in`). Reports scans/s and latency per scan (p50/p99/max) by outcome, and
//! checks that every ticket was let in exactly once.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::{self, Api, TargetArgs};
use crate::stats::percentile_ms;

#[derive(Clone, Debug, clap::Args)]
pub struct CheckinArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Confirmed bookings (one seat each) of the showtime.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub tickets: u32,
    /// Gates scanning at once, one scanner each.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub gates: u32,
    /// Share of guests (percent) who also try another gate after getting in.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub rescan_percent: u32,
    /// The API's database (for the bookings' set-up only).
    #[arg(long, env = "SEATGATE_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/seatgate_bench")]
    pub database_url: String,
    #[arg(long, default_value = "psql")]
    pub psql_bin: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Seats per row of the bench screen.
const PER_ROW: u32 = 100;

/// One scan's answer and how long it took.
struct Scan {
    status: u16,
    micros: u64,
}

pub async fn run(args: CheckinArgs) -> anyhow::Result<()> {
    let base = api::loopback_url("--api", &args.target.api)?;
    api::loopback_url("--database-url", &args.database_url)?;
    let api = Api::new(api::client(args.gates * 2 + 16)?, &base);
    api.ready().await?;
    let admin = api.login(&args.target.admin_email, &args.target.admin_password).await?;
    let rows = args.tickets.div_ceil(PER_ROW);
    let showtime = crate::onsale_setup::showtime(&api, &admin, rows, PER_ROW).await?;
    let show = api.call(Method::GET, &format!("/api/v1/showtimes/{showtime}"), None, None, StatusCode::OK).await?;
    let screen_id = show["screen_id"].as_str().context("showtime without screen_id")?;
    let screen = api.call(Method::GET, &format!("/api/v1/screens/{screen_id}"), None, None, StatusCode::OK).await?;
    let seats = api::screen_seat_ids(&screen, (rows * PER_ROW) as usize)?;
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let buyer = api.register(&run_id, 0).await?;
    let buyer_id = me(&api, &buyer.token).await?;
    eprintln!("checkin: writing {} bookings...", args.tickets);
    let bookings = insert_bookings(&args, showtime, buyer_id, &seats[..args.tickets as usize]).await?;
    let door = api.register(&run_id, 1).await?;
    let door_id = me(&api, &door.token).await?;
    api.call(
        Method::PUT,
        &format!("/api/v1/users/{door_id}/role"),
        Some(&admin),
        Some(&json!({"role": "door"})),
        StatusCode::OK,
    )
    .await
    .context("grant the door role")?;
    eprintln!("checkin: fetching {} signed tickets...", bookings.len());
    let tickets = signed_tickets(&api, &buyer.token, &bookings).await?;

    // Each guest at one gate, in a random order; some try another gate afterwards.
    let mut rng = StdRng::seed_from_u64(7);
    let mut order: Vec<usize> = (0..tickets.len()).collect();
    order.shuffle(&mut rng);
    let gates = args.gates as usize;
    let mut queues: Vec<Vec<usize>> = vec![Vec::new(); gates];
    for (i, guest) in order.iter().enumerate() {
        queues[i % gates].push(*guest);
    }
    let rescans = tickets.len() * args.rescan_percent as usize / 100;
    for (i, guest) in order.iter().take(rescans).enumerate() {
        queues[(i + 1) % gates].push(*guest);
    }
    eprintln!("checkin: {gates} gates scanning {} tickets ({rescans} second tries)...", tickets.len());
    let started = Instant::now();
    let mut scanners = JoinSet::new();
    for (g, queue) in queues.into_iter().enumerate() {
        let (api, token) = (api.clone(), door.token.clone());
        let tickets: Vec<String> = queue.iter().map(|i| tickets[*i].clone()).collect();
        scanners.spawn(async move {
            let mut scans = Vec::with_capacity(tickets.len());
            for ticket in tickets {
                let body = json!({"ticket": ticket, "gate": format!("gate-{}", g + 1)});
                let sent = Instant::now();
                let res = api.client.post(api.url("/api/v1/checkins")).bearer_auth(&token).json(&body).send().await;
                let status = match res {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let _ = res.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                scans.push(Scan { status, micros: sent.elapsed().as_micros() as u64 });
            }
            scans
        });
    }
    let mut scans = Vec::new();
    while let Some(done) = scanners.join_next().await {
        scans.extend(done.context("a scanner panicked")?);
    }
    let elapsed = started.elapsed();
    report(&args, &scans, elapsed, verify(&args, showtime).await?)
}

async fn me(api: &Api, token: &str) -> anyhow::Result<Uuid> {
    let me = api.call(Method::GET, "/api/v1/me", Some(token), None, StatusCode::OK).await?;
    me["id"].as_str().context("no id in /me")?.parse().context("id is not a UUID")
}

/// One confirmed reservation, booking and booked seat per seat, for `buyer`, in one `\copy` each.
async fn insert_bookings(args: &CheckinArgs, showtime: Uuid, buyer: Uuid, seats: &[Uuid]) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<(Uuid, Uuid)> = seats.iter().map(|_| (Uuid::now_v7(), Uuid::now_v7())).collect();
    type Row<'a> = Box<dyn Fn(usize) -> String + 'a>;
    let tables: [(&str, Row); 4] = [
        (
            "reservations (id, user_id, showtime_id, hold_id, status, amount_minor, currency, deadline)",
            Box::new(|i| {
                format!("{},{buyer},{showtime},{},confirmed,1000,EUR,2030-01-01T00:00:00Z\n", ids[i].0, Uuid::now_v7())
            }),
        ),
        (
            "reservation_seats (reservation_id, seat_id, category, price_minor)",
            Box::new(|i| format!("{},{},standard,1000\n", ids[i].0, seats[i])),
        ),
        (
            "bookings (id, reservation_id, user_id, showtime_id, ticket_code, amount_minor, currency)",
            Box::new(|i| {
                format!(
                    "{},{},{buyer},{showtime},BN-{}-{i},1000,EUR\n",
                    ids[i].1,
                    ids[i].0,
                    &showtime.simple().to_string()[..8]
                )
            }),
        ),
        (
            "booked_seats (showtime_id, seat_id, booking_id)",
            Box::new(|i| format!("{showtime},{},{}\n", seats[i], ids[i].1)),
        ),
    ];
    for (table, row) in &tables {
        let mut child = tokio::process::Command::new(&args.psql_bin)
            .arg(&args.database_url)
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", &format!(r"\copy {table} from stdin with csv")])
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("run {}", args.psql_bin))?;
        let mut stdin = child.stdin.take().context("psql stdin")?;
        let csv: String = (0..seats.len()).map(row).collect();
        stdin.write_all(csv.as_bytes()).await?;
        drop(stdin);
        let status = child.wait().await?;
        if !status.success() {
            bail!("psql \\copy into {table} failed ({status})");
        }
    }
    drop(tables);
    Ok(ids.into_iter().map(|(_, booking)| booking).collect())
}

/// The signed form of each booking's ticket, as its owner gets it (`GET /api/v1/bookings/{id}`).
async fn signed_tickets(api: &Api, token: &str, bookings: &[Uuid]) -> anyhow::Result<Vec<String>> {
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = JoinSet::new();
    for (i, booking) in bookings.iter().enumerate() {
        let (api, token, limit, booking) = (api.clone(), token.to_owned(), limit.clone(), *booking);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let b: Value = api
                .call(Method::GET, &format!("/api/v1/bookings/{booking}"), Some(&token), None, StatusCode::OK)
                .await?;
            anyhow::Ok((i, b["ticket"]["signed"].as_str().context("no signed ticket")?.to_owned()))
        });
    }
    let mut tickets = vec![String::new(); bookings.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, ticket) = done.context("a ticket fetch panicked")??;
        tickets[i] = ticket;
    }
    Ok(tickets)
}

/// Check-ins recorded for the showtime, straight from PostgreSQL.
async fn verify(args: &CheckinArgs, showtime: Uuid) -> anyhow::Result<u64> {
    let out = tokio::process::Command::new(&args.psql_bin)
        .arg(&args.database_url)
        .args(["-At", "-c", &format!("select count(*) from checkins where showtime_id = '{showtime}'")])
        .output()
        .await?;
    String::from_utf8_lossy(&out.stdout).trim().parse().context("count the check-ins")
}

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn report(args: &CheckinArgs, scans: &[Scan], elapsed: Duration, recorded: u64) -> anyhow::Result<()> {
    let by = |status: u16| {
        let mut us: Vec<u64> = scans.iter().filter(|s| s.status == status).map(|s| s.micros).collect();
        us.sort_unstable();
        us
    };
    let mut all: Vec<u64> = scans.iter().map(|s| s.micros).collect();
    all.sort_unstable();
    let (admitted, again) = (by(201), by(409));
    let others = scans.len() - admitted.len() - again.len();
    let line = |us: &[u64]| {
        json!({"count": us.len(), "p50_ms": percentile_ms(us, 50.0), "p99_ms": percentile_ms(us, 99.0),
               "max_ms": us.last().map_or(0.0, |m| *m as f64 / 1000.0)})
    };
    let result = json!({
        "tickets": args.tickets, "gates": args.gates, "scans": scans.len(),
        "elapsed_secs": elapsed.as_secs_f64(), "scans_per_sec": scans.len() as f64 / elapsed.as_secs_f64(),
        "all": line(&all), "checked_in": line(&admitted), "already_checked_in": line(&again),
        "other_answers": others, "checkins_recorded": recorded,
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "checkin: {} gates, {} tickets, {} scans in {:.1} s ({:.0} scans/s)",
            args.gates,
            args.tickets,
            scans.len(),
            elapsed.as_secs_f64(),
            result["scans_per_sec"].as_f64().unwrap_or(0.0)
        );
        for (name, key) in
            [("all scans", "all"), ("let in (201)", "checked_in"), ("second try (409)", "already_checked_in")]
        {
            let l = &result[key];
            println!(
                "  {name:<17} {:>6}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.1} ms",
                l["count"],
                l["p50_ms"].as_f64().unwrap_or(0.0),
                l["p99_ms"].as_f64().unwrap_or(0.0),
                l["max_ms"].as_f64().unwrap_or(0.0)
            );
        }
        println!("  other answers {others}; check-ins recorded {recorded} (want {})", args.tickets);
    }
    if recorded != u64::from(args.tickets) || admitted.len() != args.tickets as usize || others > 0 {
        bail!(
            "every ticket must be let in exactly once: {recorded} recorded, {} let in, {others} other answers",
            admitted.len()
        );
    }
    Ok(())
}
