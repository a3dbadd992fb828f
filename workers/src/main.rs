//! seatgate-workers: the background processes of seatgate. The rules they apply live in the
//! `seatgate` library; this binary only picks which loops to run.

use clap::{Parser, ValueEnum};
use seatgate::config::Config;
use seatgate::worker::{self, Role};
use seatgate::{startup, telemetry};

#[derive(Parser)]
#[command(name = "seatgate-workers", version, about = "seatgate background workers")]
struct Cli {
    /// Which loops to run.
    #[arg(value_enum)]
    role: RoleArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Consume payment tasks: charge, book or refund.
    Payments,
    /// Consume booking events and deliver notifications.
    Notifications,
    /// Expire holds and reservations, republish lost payment tasks.
    Sweeper,
    /// All of the above.
    All,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    telemetry::init("seatgate-workers", config.log_format);
    let role = match cli.role {
        RoleArg::Payments => Role::Payments,
        RoleArg::Notifications => Role::Notifications,
        RoleArg::Sweeper => Role::Sweeper,
        RoleArg::All => Role::All,
    };
    let state = startup::connect(config).await?;
    let stop = startup::shutdown_on_signal(None, std::time::Duration::ZERO);
    tracing::info!(?role, "seatgate workers starting");
    worker::run(role, state.clone(), stop).await?;
    state.amqp.close().await;
    tracing::info!("seatgate workers stopped");
    Ok(())
}
