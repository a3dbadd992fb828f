//! `seatgate-lb`: reads its settings, serves, and drains on SIGTERM/SIGINT. Everything else lives
//! in the library so tests can run the same code on port 0.

use std::process::ExitCode;

use seatgate_lb::{Config, Drain, Lb};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: a proxy allocates and frees small header maps and buffers
/// on every request, and glibc's allocator showed up at ~7% of CPU in profiles (docs/lb.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    init_tracing();
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("seatgate-lb: {e:#}");
            return ExitCode::from(2);
        }
    };
    // The proxy runs on its own worker threads (one per core unless set); this thread only runs
    // the health checks, the admin listener and the signal handling.
    if config.worker_threads.is_none() {
        config.worker_threads = Some(std::thread::available_parallelism().map_or(1, usize::from));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
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

/// `RUST_LOG` filters (default `info`); `SEATGATE_LOG_FORMAT=json` for JSON lines. Colours only
/// when stderr is a terminal: a log file or pipe gets plain text.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("SEATGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}
