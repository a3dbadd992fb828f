//! The `seatgate` command: parses arguments and delegates to the library.

use clap::{Parser, Subcommand};
use seatgate::config::Config;
use seatgate::startup::{self, Application};
use seatgate::{auth, infra, seed, telemetry};

/// mimalloc instead of glibc malloc: every request allocates and frees headers, buffers, JSON
/// and key names, and glibc's allocator (malloc, free, consolidation) was about a fifth of the
/// API's CPU in the holds profile (docs/SCALING.md), as it was for seatgate-lb (docs/lb.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "seatgate", version, about = "Ticket-booking backend: API server and admin tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve,
    /// Run the API and the background workers in one process (for a laptop).
    AllInOne,
    /// Apply database migrations and exit.
    Migrate,
    /// Load the demo catalog and demo accounts (idempotent).
    SeedDemo,
    /// Check the invariants of docs/DESIGN.md §2 against PostgreSQL and Redis; prints a JSON
    /// report and exits non-zero on any violation. Writes nothing: a missing database is an error.
    CheckInvariants {
        /// Seconds a pending reservation may be past its deadline (sweeper interval + slack).
        #[arg(long, default_value_t = 30)]
        slack_secs: i64,
    },
    /// Write COUNT bench or staging accounts (`<prefix><i>@<domain>`, i = 1..=COUNT, role
    /// `user`) straight into PostgreSQL, in bulk, with ONE argon2id hash of PASSWORD computed
    /// once: every seeded account shares that password. For load tests and staging only; real
    /// users register through the API. Idempotent: existing emails are skipped (and keep their
    /// password). Prints `{"created": …, "existing": …}` (with `"ids"` under --print-ids).
    SeedUsers {
        /// How many accounts.
        #[arg(long)]
        count: u32,
        /// Start of each email, before the account's number (`bench-` gives `bench-1@…`).
        #[arg(long)]
        email_prefix: String,
        #[arg(long, default_value = "example.com")]
        email_domain: String,
        /// The one password of every seeded account (8 to 128 characters).
        #[arg(long, env = "SEATGATE_SEED_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "Seeded User")]
        name: String,
        /// Also print the accounts' ids, in email order (seeded and existing alike).
        #[arg(long)]
        print_ids: bool,
    },
    /// Manage accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account, or promote an existing account to admin.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, env = "SEATGATE_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    let log_to = match cli.command {
        Command::CheckInvariants { .. } | Command::SeedUsers { .. } => telemetry::LogTo::Stderr,
        _ => telemetry::LogTo::Stdout,
    };
    telemetry::init("seatgate", config.log_format, log_to);
    match cli.command {
        Command::Serve => serve(config, false).await,
        Command::AllInOne => serve(config, true).await,
        Command::Migrate => {
            let db = infra::db::connect(&config.database).await?;
            infra::db::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::SeedDemo => {
            let db = infra::db::connect(&config.database).await?;
            infra::db::migrate(&db).await?;
            let redis = infra::redis::pool(&config.redis)?;
            let summary = seed::seed_demo(&db).await?;
            seatgate::catalog::cache::invalidate(&seatgate::state::AppState::new(config, db, redis)).await;
            tracing::info!(?summary, "demo data loaded");
            Ok(())
        }
        Command::CheckInvariants { slack_secs } => {
            let db = infra::db::connect_existing(&config.database).await?;
            let redis = infra::redis::pool(&config.redis)?;
            let state = seatgate::state::AppState::new(config, db, redis);
            let report = seatgate::invariants::check(&state, slack_secs).await?;
            report_json(&report)?;
            if report.violations.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} invariant violations", report.violations.len())
            }
        }
        Command::SeedUsers { count, email_prefix, email_domain, password, name, print_ids } => {
            let db = infra::db::connect(&config.database).await?;
            infra::db::migrate(&db).await?;
            let req = auth::bulk::SeedUsers { count, email_prefix, email_domain, password, name };
            let started = std::time::Instant::now();
            let seeded = auth::bulk::seed_users(&db, &req, print_ids).await?;
            tracing::info!(created = seeded.created, existing = seeded.existing, elapsed = ?started.elapsed(), "users seeded");
            json_out(&seeded)
        }
        Command::Admin { command: AdminCommand::Create { email, password } } => {
            let db = infra::db::connect(&config.database).await?;
            infra::db::migrate(&db).await?;
            let outcome = auth::service::ensure_admin(&db, &email, &password).await?;
            tracing::info!(?outcome, "admin account ready");
            Ok(())
        }
    }
}

async fn serve(config: Config, with_workers: bool) -> anyhow::Result<()> {
    let grace = config.http.shutdown_grace;
    let state = startup::connect(config).await?;
    let stop = startup::shutdown_on_signal(Some(state.clone()), grace);
    let workers = with_workers
        .then(|| tokio::spawn(seatgate::worker::run(seatgate::worker::Role::All, state.clone(), stop.clone())));
    let app = Application::with_state(state.clone(), stop.clone())?;
    tracing::info!(port = app.port(), with_workers, "seatgate API listening");
    app.run_until_stopped().await?;
    stop.cancel();
    if let Some(workers) = workers {
        workers.await??;
    }
    state.amqp.close().await;
    tracing::info!("seatgate API stopped");
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the report is the command's output")]
fn report_json(report: &seatgate::invariants::Report) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(report)?);
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the summary is the command's output")]
fn json_out(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
