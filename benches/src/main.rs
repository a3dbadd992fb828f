//! `seatgate-bench`: seatgate's load generator. Each scenario drives a running API over HTTP
//! and, in the same run, the same work without the API (a "raw" baseline), alternating the two
//! so both see the same machine conditions. Only loopback targets are accepted: this tool is
//! for measuring a local instance, never for pointing load at someone else's server.

mod accounts;
mod api;
mod booking;
mod checkin;
mod flood;
mod holds;
mod onsale_setup;
mod push;
mod queue;
mod report;
mod sale;
mod stats;
mod tickets;
mod watchers;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "seatgate-bench", version, about = "Load scenarios against a local seatgate API, with raw baselines")]
// A flag given twice takes the last value: scripts/bench.sh puts its defaults first.
#[command(args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// One variant per scenario; each owns its flags and its run function.
#[derive(Subcommand)]
enum Scenario {
    /// Hold 1-4 random seats and release them at once, through the API and through the Lua
    /// scripts directly, alternating rounds; reports holds/s, latency and the API/raw ratio.
    Holds(holds::HoldsArgs),
    /// A sale for the fault suite: customers hold 1-3 seats and check out (retrying errors with
    /// the same Idempotency-Key), then every reservation is polled until final; no raw baseline.
    Sale(sale::SaleArgs),
    /// Hold, check out (`tok_ok`), poll until confirmed, through the API with the payment
    /// workers; alternating with pgbench running the worker's booking transaction; reports
    /// bookings/s, checkout->confirmed latency and the API/pgbench ratio.
    Booking(booking::BookingArgs),
    /// Thousands of users race for one showtime until it is sold out; reports the time to sell
    /// out and verifies the result in PostgreSQL and with `seatgate check-invariants`.
    Sellout(booking::SelloutArgs),
    /// Thousands of live seat maps (server-sent events) on one showtime while seats are held
    /// and released; reports hold -> event delay at the clients and the API's memory per stream.
    Watchers(watchers::WatchersArgs),
    /// Offline ticket verification on one core: Ed25519 signatures of signed tickets checked
    /// against a check-in bundle's keys, no server involved; reports verifications/s.
    TicketVerify(tickets::TicketVerifyArgs),
    /// The doors open: gates scan a showtime's signed tickets online at once; reports scans/s and
    /// the latency of each scan (p50/p99), and checks every ticket was let in exactly once.
    Checkin(checkin::CheckinArgs),
    /// An on-sale behind the waiting room: 100,000 users join before opening, admission at a
    /// set rate, admitted users buy; reports join p50/p99, admission rate achieved, fairness
    /// (rank correlation of join and admission order), holds granted to non-admitted users.
    Queue(queue::QueueArgs),
    /// One client floods bogus logins and live streams while real buyers log in and hold;
    /// reports the buyers' login and hold p99 with and without the flood.
    Flood(flood::FloodArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Holds(args) => holds::run(args).await,
        Scenario::Sale(args) => sale::run(args).await,
        Scenario::Booking(args) => booking::run_booking(args).await,
        Scenario::Sellout(args) => booking::run_sellout(args).await,
        Scenario::Watchers(args) => watchers::run(args).await,
        Scenario::TicketVerify(args) => tickets::run(args),
        Scenario::Checkin(args) => checkin::run(args).await,
        Scenario::Queue(args) => queue::run(args).await,
        Scenario::Flood(args) => flood::run(args).await,
    }
}
