//! `seatgate-bench`: seatgate's load generator. Each scenario drives a running API over HTTP
//! and, in the same run, the same work without the API (a "raw" baseline), alternating the two
//! so both see the same machine conditions. Only loopback targets are accepted: this tool is
//! for measuring a local instance, never for pointing load at someone else's server.

mod api;
mod holds;
mod report;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "seatgate-bench", version, about = "Load scenarios against a local seatgate API, with raw baselines")]
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Holds(args) => holds::run(args).await,
    }
}
