//! `seatgate-lb`: reads its settings, serves, and drains on SIGTERM/SIGINT. Everything else lives
//! in the library so tests can run the same code on port 0.

use std::process::ExitCode;

use seatgate_lb::{Config, Drain, Lb};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    init_tracing();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("seatgate-lb: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("seatgate-lb: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "seatgate-lb stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let upstreams: Vec<String> = config.upstreams.iter().map(ToString::to_string).collect();
    let strategy = config.strategy;
    let lb = Lb::bind(config).await?;
    tracing::info!(
        listen = %lb.local_addr(),
        admin = ?lb.admin_addr(),
        upstreams = ?upstreams,
        %strategy,
        "seatgate-lb listening"
    );
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    match lb.shutdown().await {
        Drain::Complete => tracing::info!("drained"),
        Drain::Cut => tracing::warn!("drain deadline passed; some requests were cut"),
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the lb"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot listen for Ctrl-C either; stopping");
    }
}

/// `RUST_LOG` filters (default `info`); `SEATGATE_LOG_FORMAT=json` for JSON lines.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("SEATGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}
