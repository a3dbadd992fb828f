//! What `booking` and `sellout` print on stdout: a line per phase as it ends, the summary, the
//! errors, and last one JSON line for machines. Progress goes to stderr.

use std::collections::BTreeMap;

use serde_json::json;
use uuid::Uuid;

use super::buyers::{ApiPhase, BookingTarget};
use super::pgbench::{PgPhase, Pgbench};
use super::sellout::{Check, Invariants, RaceResult};
use super::{BookingArgs, PGBENCH_SEATS, SelloutArgs};
use crate::stats::median;

/// One line per measured API phase.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
pub(super) fn api_line(p: &ApiPhase) {
    println!(
        "round {:>2}  api      bookings/s {:>7.1}  seats/s {:>7.1}  confirm p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  \
         holds {:>6}  conflicts {:>5} ({:>4.1}%)  polls/booking {:>4.1}  push fallbacks {}  errors {}",
        p.round,
        p.bookings_per_sec,
        p.seats_per_sec,
        p.figures.confirm_p50_ms,
        p.figures.confirm_p99_ms,
        p.figures.confirm_max_ms,
        p.holds,
        p.conflicts,
        p.conflict_rate * 100.0,
        p.polls_per_booking,
        p.push_fallbacks,
        p.figures.errors,
    );
}

/// One line per measured pgbench phase.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
pub(super) fn pg_line(p: &PgPhase) {
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

/// The end of `booking --pgbench-only`: the script and what it wrote.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
pub(super) fn pgbench_only_summary(pg: &Pgbench, written: &str) {
    println!("pgbench script: {}", pg.script.display());
    println!("pgbench wrote in total: {written}");
}

/// The summary of the `booking` scenario.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
pub(super) fn booking_summary(
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
        for (kind, n) in &p.figures.error_kinds {
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
        m(|p| p.figures.confirm_p50_ms),
        m(|p| p.figures.confirm_p99_ms),
        m(|p| p.figures.hold_p50_ms),
        m(|p| p.figures.checkout_p50_ms),
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
        for sample in &p.figures.samples {
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
            "confirm_p50_ms": m(|p| p.figures.confirm_p50_ms),
            "confirm_p99_ms": m(|p| p.figures.confirm_p99_ms),
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

/// The report of the `sellout` scenario.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
pub(super) fn sellout_summary(args: &SelloutArgs, showtime: Uuid, r: &RaceResult, checks: &[Check], inv: &Invariants) {
    let secs = |v: Option<f64>| v.map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "sellout: {} users ({} at once), {} seats in {} categories, {}% best-available, showtime {showtime}, {cores} cores, poll {} ms, refresh {} ms, request timeout {} s",
        r.users,
        if args.active_users == 0 { "all".to_owned() } else { args.active_users.to_string() },
        r.seats,
        args.categories,
        args.best_available_percent,
        args.poll_ms,
        args.refresh_ms,
        args.request_timeout_secs
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
        "users: {}   bookings {} ({} seats)   holds {}  conflicts {} ({:.1}% of hold attempts; {} attempts best-available)   checkouts {} (retried {})   seat maps {}   availability reads {}   polls {}   streams {} (fell back to polling {}{})",
        r.endings.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        r.bookings,
        r.confirmed_seats_seen,
        r.holds,
        r.conflicts,
        100.0 * r.conflicts as f64 / (r.holds + r.conflicts).max(1) as f64,
        r.best_available_attempts,
        r.checkouts,
        r.checkout_retries,
        r.seat_maps,
        r.availability_reads,
        r.polls,
        r.pushes,
        r.push_fallbacks,
        if r.push_failures.is_empty() {
            String::new()
        } else {
            format!(": {}", r.push_failures.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
        },
    );
    println!(
        "latency: hold p50 {:.1} / p99 {:.1} ms, checkout p50 {:.1} / p99 {:.1} ms, checkout->confirmed p50 {:.1} / p99 {:.1} / max {:.1} ms",
        r.figures.hold_p50_ms,
        r.figures.hold_p99_ms,
        r.figures.checkout_p50_ms,
        r.figures.checkout_p99_ms,
        r.figures.confirm_p50_ms,
        r.figures.confirm_p99_ms,
        r.figures.confirm_max_ms
    );
    println!("errors: {}", r.figures.errors);
    for (kind, n) in &r.figures.error_kinds {
        println!("ERROR: {n} x {kind}");
    }
    for sample in &r.figures.samples {
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
        "active_users": args.active_users,
        "categories": args.categories,
        "best_available_percent": args.best_available_percent,
        "race": r,
        "checks": checks,
        "check_invariants": inv,
    });
    println!("{summary}");
}
