//! seatgate-lb: the reverse proxy in front of stateless seatgate API instances (DESIGN.md §7).
//!
//! It knows nothing of the API: it spreads HTTP/1.1 requests over upstreams (round-robin or
//! least-connections), keeps unhealthy ones out of the rotation (active checks plus passive
//! ejection), retries only requests that never reached an upstream (see [`proxy`] for the exact
//! policy), rewrites forwarding headers, limits each client IP, streams bodies both ways, and
//! drains in-flight requests on shutdown. Built on hyper 1's low-level HTTP/1 server and client.
//!
//! [`Lb::bind`] starts everything on the configured sockets (port 0 works, for tests) and returns
//! an [`LbHandle`] whose [`LbHandle::shutdown`] performs the graceful stop.

pub mod admin;
pub mod body;
pub mod config;
pub mod headers;
pub mod health;
pub mod pool;
pub mod proxy;
pub mod ratelimit;
pub mod select;
pub mod server;
pub mod stats;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::Config;
use crate::proxy::Proxy;
use crate::ratelimit::RateLimiter;
use crate::server::Lifecycle;
use crate::stats::Stats;
use crate::upstream::Upstreams;

/// Entry point of the library.
pub struct Lb;

impl Lb {
    /// Binds the proxy and admin listeners, starts health checking, and serves until
    /// [`LbHandle::shutdown`]. Fails only at start-up (a socket cannot be bound, a bad upstream).
    pub async fn bind(config: Config) -> anyhow::Result<LbHandle> {
        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = listener.local_addr().context("listener has no local address")?;
        let admin_listener = match config.admin_listen {
            Some(addr) => {
                Some(TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (admin)"))?)
            }
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .context("admin listener has no address")?;

        let stats = Arc::new(Stats::new());
        let upstreams = Arc::new(Upstreams::new(
            &config.upstreams,
            config.max_idle_per_upstream,
            config.health.fail_threshold,
            config.health.eject_cooldown,
            &stats,
        )?);
        let limiter = config.rate_limit.enabled().then(|| Arc::new(RateLimiter::new(config.rate_limit)));
        let proxy = Arc::new(Proxy::new(&config, Arc::clone(&upstreams), limiter.clone(), stats));

        let life = Lifecycle {
            stop: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            connections: TaskTracker::new(),
        };
        let background = TaskTracker::new();
        let client_permits = Arc::new(Semaphore::new(config.max_connections));

        background.spawn(health::run(
            Arc::clone(&upstreams),
            config.health.clone(),
            config.connect_timeout,
            life.stop.clone(),
        ));
        if let Some(limiter) = limiter {
            let stop = life.stop.clone();
            background.spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = ticker.tick() => limiter.sweep(),
                    }
                }
            });
        }

        let serving = Arc::clone(&proxy);
        background.spawn(server::accept_loop(
            listener,
            move |peer| {
                let proxy = Arc::clone(&serving);
                hyper::service::service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    async move { Ok(proxy.handle(req, peer).await) }
                })
            },
            Arc::clone(&client_permits),
            config.client_header_timeout,
            life.clone(),
        ));

        if let Some(admin_listener) = admin_listener {
            let admin = Arc::new(admin::Admin {
                proxy: Arc::clone(&proxy),
                client_permits: Arc::clone(&client_permits),
                max_connections: config.max_connections,
            });
            background.spawn(server::accept_loop(
                admin_listener,
                move |_peer| {
                    let admin = Arc::clone(&admin);
                    hyper::service::service_fn(move |req| {
                        let admin = Arc::clone(&admin);
                        async move { admin.handle(req).await }
                    })
                },
                // The admin socket has its own small cap: scrapes must not eat client permits.
                Arc::new(Semaphore::new(64)),
                config.client_header_timeout,
                life.clone(),
            ));
        }

        Ok(LbHandle { local_addr, admin_addr, life, background, shutdown_timeout: config.shutdown_timeout })
    }
}

/// A running lb.
pub struct LbHandle {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    life: Lifecycle,
    background: TaskTracker,
    shutdown_timeout: Duration,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every in-flight request finished before the deadline.
    Complete,
    /// The deadline passed; the remaining connections were closed.
    Cut,
}

impl LbHandle {
    /// The proxy's bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's bound address, unless it is off.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Stops accepting, lets in-flight requests finish for up to `SEATGATE_LB_SHUTDOWN_TIMEOUT_MS`,
    /// then closes what is left.
    pub async fn shutdown(self) -> Drain {
        self.life.stop.cancel();
        self.life.connections.close();
        let drain = match tokio::time::timeout(self.shutdown_timeout, self.life.connections.wait()).await {
            Ok(()) => Drain::Complete,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.shutdown_timeout.as_millis(),
                    "drain deadline passed; closing remaining connections"
                );
                self.life.hard_stop.cancel();
                self.life.connections.wait().await;
                Drain::Cut
            }
        };
        self.background.close();
        self.background.wait().await;
        drain
    }
}

impl Drop for LbHandle {
    /// A handle dropped without `shutdown` (a test that panicked) still stops its tasks.
    fn drop(&mut self) {
        self.life.stop.cancel();
        self.life.hard_stop.cancel();
    }
}
