//! seatgate-workers: the background processes of seatgate. The rules they apply live in the
//! `seatgate` library; this binary only picks which loops to run, and serves what they record
//! on its metrics listener (`SEATGATE_WORKERS_METRICS_LISTEN`).

use clap::{Parser, ValueEnum};
use seatgate::config::Config;
use seatgate::metrics_listener::MetricsListener;
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
    telemetry::init("seatgate-workers", config.log_format, telemetry::LogTo::Stdout);
    let role = match cli.role {
        RoleArg::Payments => Role::Payments,
        RoleArg::Notifications => Role::Notifications,
        RoleArg::Sweeper => Role::Sweeper,
        RoleArg::All => Role::All,
    };
    let stop = startup::shutdown_on_signal(None, std::time::Duration::ZERO);
    // Bound before anything is recorded, and before connecting, so a taken port fails fast.
    let metrics = match config.workers.metrics_listen {
        Some(addr) => {
            let listener = MetricsListener::bind(addr, stop.clone())?;
            tracing::info!(port = listener.port(), "metrics listening on /metrics");
            Some(tokio::spawn(listener.run_until_stopped()))
        }
        None => None,
    };
    let state = startup::connect(config).await?;
    tracing::info!(?role, "seatgate workers starting");
    let result = worker::run(role, state.clone(), stop.clone()).await;
    stop.cancel();
    state.amqp.close().await;
    if let Some(metrics) = metrics {
        metrics.await??;
    }
    result?;
    tracing::info!("seatgate workers stopped");
    Ok(())
}
