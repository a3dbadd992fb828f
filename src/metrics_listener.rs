//! The metrics listener of a process that serves no API (`seatgate-workers`): `GET /metrics` in
//! Prometheus text, from the same process-wide recorder as the API's `/metrics`
//! ([`crate::ops::metrics_handle`]), and `GET /health/live`. Without it, what only the workers
//! record (`seatgate_payments_total`, `seatgate_booking_finalisation_seconds`, the sweeper's
//! counters) would never reach a scrape. It is its own socket
//! (`SEATGATE_WORKERS_METRICS_LISTEN`), so it can stay on a private interface.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::ops;

/// A bound, not yet running, metrics listener.
pub struct MetricsListener {
    port: u16,
    server: Server,
}

impl MetricsListener {
    /// Installs the recorder (before anything is recorded, so nothing counted is lost) and binds
    /// `addr` (port 0 picks a free port). Serves until `stop` is cancelled.
    pub fn bind(addr: SocketAddr, stop: CancellationToken) -> anyhow::Result<Self> {
        ops::metrics_handle();
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} (SEATGATE_WORKERS_METRICS_LISTEN)"))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(|| {
            App::new()
                .service(ops::prometheus_metrics)
                .service(ops::live)
                .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
        })
        .workers(1)
        .shutdown_signal(stop.cancelled_owned())
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the stop token is cancelled.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
