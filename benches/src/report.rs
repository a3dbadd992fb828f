//! What a run prints on stdout: one line per phase as it ends, a summary table of medians over
//! rounds, the error breakdown, and last one JSON line for machines. Progress goes to stderr.

use serde_json::json;
use uuid::Uuid;

use crate::holds::HoldsArgs;
use crate::stats::{Phase, Side, SideSummary};

/// One line per measured phase.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
pub fn phase_line(p: &Phase) {
    println!(
        "round {:>2}  {}  holds/s {:>9.1}  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  granted {:>7}  conflicts {:>6} ({:>5.1}%)  errors {}",
        p.round,
        p.side.name(),
        p.holds_per_sec,
        p.p50_ms,
        p.p99_ms,
        p.max_ms,
        p.granted,
        p.conflicts,
        p.conflict_rate * 100.0,
        p.errors,
    );
}

/// The summary of the `holds` scenario.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
pub fn holds_summary(args: &HoldsArgs, showtime_id: Uuid, phases: &[Phase]) {
    let of = |side: Side| SideSummary::of(&phases.iter().filter(|p| p.side == side).collect::<Vec<_>>());
    let (api, raw) = (of(Side::Api), of(Side::Raw));
    let ratio = if raw.holds_per_sec > 0.0 { api.holds_per_sec / raw.holds_per_sec } else { 0.0 };
    let load = &args.load;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let redis = if std::env::var("SEATGATE_REDIS_CLUSTER_NODES").is_ok_and(|n| !n.trim().is_empty()) {
        "cluster"
    } else {
        "single"
    };

    println!();
    println!(
        "holds: median of {} rounds, {} users, {} s per phase, {} seats, {} showtime(s), redis {redis}, {cores} cores",
        load.rounds,
        load.users,
        load.duration_secs,
        args.rows * args.seats_per_row,
        args.showtimes
    );
    println!("side    holds/s    p50 ms    p99 ms  conflicts  errors");
    for (side, s) in [(Side::Api, &api), (Side::Raw, &raw)] {
        println!(
            "{:<4} {:>10.1} {:>9.2} {:>9.2} {:>9.1}% {:>7}",
            side.name(),
            s.holds_per_sec,
            s.p50_ms,
            s.p99_ms,
            s.conflict_rate * 100.0,
            s.errors
        );
    }
    println!("ratio api/raw (median holds/s): {ratio:.3}");
    for (side, s) in [(Side::Api, &api), (Side::Raw, &raw)] {
        for (kind, n) in &s.error_kinds {
            println!("ERROR {}: {n} x {kind}", side.name());
        }
    }
    for p in phases {
        for sample in &p.samples {
            println!("  e.g. round {} {}: {sample}", p.round, p.side.name());
        }
    }
    let summary = json!({
        "scenario": "holds",
        "users": load.users,
        "duration_secs": load.duration_secs,
        "rounds": load.rounds,
        "seats": args.rows * args.seats_per_row,
        "cores": cores,
        "showtime_id": showtime_id,
        "showtimes": args.showtimes,
        "redis": redis,
        "api": api,
        "raw": raw,
        "ratio_api_raw": ratio,
        "phases": phases,
    });
    println!("{summary}");
}
