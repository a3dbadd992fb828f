//! seatgate-lb: the reverse proxy in front of stateless seatgate API instances (docs/DESIGN.md §7).
//!
//! It knows nothing of the API: it spreads HTTP/1.1 requests over upstreams (round-robin or
//! least-connections), keeps unhealthy ones out of the rotation (active checks plus passive
//! ejection; when the checks fail everywhere, "panic routing" falls back to the upstreams that
//! still answer, see [`upstream`]), retries only requests that never reached an upstream (see [`proxy`] for the exact
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
        // Without worker threads the proxy listens on the caller's runtime (tests, embedding);
        // with them each worker thread binds its own listener below.
        let (listener, mut local_addr) = match config.worker_threads {
            None => {
                let listener = TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.listen))?;
                let addr = listener.local_addr().context("listener has no local address")?;
                (Listener::Here(listener), addr)
            }
            Some(n) => (Listener::Workers(n), config.listen),
        };
        let worker_count = config.worker_threads.unwrap_or(1);
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
            worker_count,
            config.max_idle_per_upstream,
            &config.health,
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
        if limiter.is_some() || !proxy.routes.is_empty() {
            let stop = life.stop.clone();
            let routes = Arc::clone(&proxy.routes);
            background.spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = ticker.tick() => {
                            if let Some(limiter) = &limiter {
                                limiter.sweep();
                            }
                            routes.sweep();
                        }
                    }
                }
            });
        }

        let serving = Arc::clone(&proxy);
        let make_service = move |peer| {
            let proxy = Arc::clone(&serving);
            hyper::service::service_fn(move |req| {
                let proxy = Arc::clone(&proxy);
                async move { Ok(proxy.handle(req, peer).await) }
            })
        };
        let mut workers = Vec::new();
        match listener {
            Listener::Here(listener) => {
                background.spawn(server::accept_loop(
                    listener,
                    make_service,
                    Arc::clone(&client_permits),
                    config.client_header_timeout,
                    life.clone(),
                ));
            }
            Listener::Workers(n) => {
                for id in 0..n {
                    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
                    let bind_to = local_addr;
                    let (make_service, permits, worker_life) =
                        (make_service.clone(), Arc::clone(&client_permits), life.clone());
                    let header_timeout = config.client_header_timeout;
                    let thread = std::thread::Builder::new()
                        .name(format!("seatgate-lb-{id}"))
                        .spawn(move || {
                            server::set_worker_id(id);
                            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                                Ok(runtime) => runtime,
                                Err(e) => {
                                    let _ = bound_tx
                                        .send(Err(anyhow::Error::from(e).context("cannot start a worker runtime")));
                                    return;
                                }
                            };
                            runtime.block_on(async move {
                                let listener = match server::reuseport_listener(bind_to) {
                                    Ok(listener) => listener,
                                    Err(e) => {
                                        let _ =
                                            bound_tx
                                                .send(Err(anyhow::Error::from(e)
                                                    .context(format!("cannot listen on {bind_to}"))));
                                        return;
                                    }
                                };
                                let _ = bound_tx.send(listener.local_addr().map_err(anyhow::Error::from));
                                let life = worker_life;
                                server::accept_loop(listener, make_service, permits, header_timeout, life.clone())
                                    .await;
                                // This runtime drives the connections it accepted: keep it until
                                // the drain is over.
                                tokio::select! {
                                    () = life.connections.wait() => {}
                                    () = life.hard_stop.cancelled() => {}
                                }
                            });
                        })
                        .context("cannot spawn a worker thread")?;
                    workers.push(thread);
                    match bound_rx.await {
                        Ok(Ok(addr)) => local_addr = addr,
                        Ok(Err(e)) => {
                            life.stop.cancel();
                            life.hard_stop.cancel();
                            return Err(e);
                        }
                        Err(_) => {
                            life.stop.cancel();
                            life.hard_stop.cancel();
                            anyhow::bail!("worker thread {id} died during start-up");
                        }
                    }
                }
            }
        }

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

        Ok(LbHandle { local_addr, admin_addr, life, background, workers, shutdown_timeout: config.shutdown_timeout })
    }
}

enum Listener {
    Here(TcpListener),
    Workers(usize),
}

/// A running lb.
pub struct LbHandle {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    life: Lifecycle,
    background: TaskTracker,
    workers: Vec<std::thread::JoinHandle<()>>,
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
    pub async fn shutdown(mut self) -> Drain {
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
        let workers = std::mem::take(&mut self.workers);
        if !workers.is_empty() {
            let joined = tokio::task::spawn_blocking(move || workers.into_iter().all(|w| w.join().is_ok())).await;
            if !matches!(joined, Ok(true)) {
                tracing::error!("a worker thread panicked");
            }
        }
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
