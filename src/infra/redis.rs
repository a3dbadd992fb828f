//! The Redis pool and the names of the keys seatgate keeps there.
//!
//! One multiplexed, reconnecting connection per process, behind an admission limit: at most
//! `SEATGATE_REDIS_MAX_IN_FLIGHT` handles ([`Conn`]) are out at once, and a request that cannot
//! get one within `SEATGATE_REDIS_QUEUE_TIMEOUT_MS` fails fast (503, `Retry-After`). Without the
//! limit, a flash crowd queued thousands of commands on the socket; each then waited longer than
//! the reply timeout, timed out after Redis had done its work, and was retried by its client, so
//! Redis stayed saturated with work nobody waited for (a sale measured 0 bookings in 90 s). With
//! it, what is sent completes in time, and the rest is refused before it costs Redis anything.
//!
//! With `SEATGATE_REDIS_CLUSTER_NODES` set, the shared connection is a Redis Cluster connection
//! (redis-rs' `cluster_async`: slot map, MOVED/ASK redirects, reconnects to a promoted replica)
//! behind the same admission limit and timeouts; unset, it is one Redis at `SEATGATE_REDIS_URL`.
//!
//! Every key starts with the configured prefix (`sg` by default; one per test). Keys of one
//! showtime share the hash tag `{st:<id>}` so every multi-key script runs on one Redis Cluster
//! slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use deadpool_redis::redis::aio::ConnectionLike;
use deadpool_redis::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use deadpool_redis::redis::cluster::{ClusterClient, ClusterClientBuilder};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{Client, RedisError};
use deadpool_redis::redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::config::RedisConfig;

/// One multiplexed, self-reconnecting connection per process, shared by every request:
/// commands from concurrent requests are pipelined on it, and no per-request checkout (with its
/// health-check round trip) is needed. Opened on first use, so start-up succeeds while Redis is
/// down; readiness reports it.
#[derive(Clone)]
pub struct RedisPool {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    timeout: Duration,
    /// The runtime the connection's driver task runs on: the process' main runtime, not the
    /// per-thread runtime of whichever actix worker first needed Redis.
    runtime: Option<tokio::runtime::Handle>,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
}

/// One Redis, or a Redis Cluster.
enum Backend {
    Single {
        client: Client,
        connection: OnceCell<ConnectionManager>,
    },
    Cluster {
        /// Boxed: it is several times the size of the single-Redis variant.
        client: Box<ClusterClient>,
        connection: OnceCell<ClusterConnection>,
        /// One client per seed node, for dedicated connections (pub/sub), taken in turn.
        seeds: Vec<Client>,
        /// The seed nodes' URLs, for the sharded pub/sub connection.
        nodes: Vec<String>,
        next_seed: AtomicUsize,
    },
}

/// The shared connection of either kind.
#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A handle on the shared connection, holding one of the process' in-flight slots until dropped.
pub struct Conn {
    connection: Link,
    _slot: OwnedSemaphorePermit,
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.connection {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.connection {
            Link::Single(c) => c.req_packed_commands(cmd, offset, count),
            Link::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.connection {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.connection, Link::Cluster(_))
    }
}

/// Redis could not be reached (connect failed or timed out).
#[derive(Debug, thiserror::Error)]
#[error("redis is unavailable: {0}")]
pub struct RedisUnavailable(String);

/// Whether a Redis error means "not now" rather than "wrong": unreachable, timed out, or (on a
/// cluster) a slot that is moving or whose master is down or being replaced (MOVED/ASK past the
/// redirects the client follows itself, TRYAGAIN, CLUSTERDOWN, MASTERDOWN, LOADING, READONLY
/// from a demoted master, no connection to the slot's node). Callers answer it 503 with
/// `Retry-After`.
pub fn is_unavailable(e: &RedisError) -> bool {
    use deadpool_redis::redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading | ServerErrorKind::ReadOnly
                )
        )
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool").field("timeout", &self.inner.timeout).finish_non_exhaustive()
    }
}

impl RedisPool {
    /// A handle to the shared connection (cheap to clone; commands from clones are multiplexed).
    pub async fn get(&self) -> Result<Conn, RedisUnavailable> {
        let inner = &self.inner;
        let slot = match tokio::time::timeout(inner.queue_timeout, Arc::clone(&inner.slots).acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => return Err(RedisUnavailable("the connection is shutting down".into())),
            Err(_) => {
                metrics::counter!("seatgate_redis_shed_total").increment(1);
                return Err(RedisUnavailable(format!(
                    "overloaded: no Redis slot free within {} ms",
                    inner.queue_timeout.as_millis()
                )));
            }
        };
        let connection = match &inner.backend {
            Backend::Single { client, connection } => {
                let manager = connection
                    .get_or_try_init(|| async {
                        let config = ConnectionManagerConfig::new()
                            .set_response_timeout(Some(inner.timeout))
                            .set_connection_timeout(Some(inner.timeout))
                            .set_number_of_retries(1)
                            .set_max_delay(Duration::from_secs(1));
                        let client = client.clone();
                        inner.open(async move { ConnectionManager::new_with_config(client, config).await }).await
                    })
                    .await?;
                Link::Single(manager.clone())
            }
            Backend::Cluster { client, connection, .. } => {
                let cluster = connection
                    .get_or_try_init(|| async {
                        let client = client.clone();
                        inner.open(async move { client.get_async_connection().await }).await
                    })
                    .await?;
                Link::Cluster(cluster.clone())
            }
        };
        Ok(Conn { connection, _slot: slot })
    }

    /// Whether this process talks to a Redis Cluster (`SEATGATE_REDIS_CLUSTER_NODES`).
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.backend, Backend::Cluster { .. })
    }
}

impl Inner {
    /// Opens a connection on the process' runtime (so its driver task outlives the caller's).
    async fn open<C, F>(&self, connect: F) -> Result<C, RedisUnavailable>
    where
        C: Send + 'static,
        F: std::future::Future<Output = Result<C, RedisError>> + Send + 'static,
    {
        let result = match &self.runtime {
            Some(runtime) => runtime.spawn(connect).await.map_err(|e| RedisUnavailable(e.to_string()))?,
            None => connect.await,
        };
        result.map_err(|e| RedisUnavailable(e.to_string()))
    }
}

impl RedisPool {
    /// A client for a dedicated connection (pub/sub): the one Redis, or on a cluster the next
    /// seed node in turn (a PUBLISH reaches every node of a cluster, so any node will do, and a
    /// reconnect after a node is lost tries the next one).
    pub fn client(&self) -> &Client {
        match &self.inner.backend {
            Backend::Single { client, .. } => client,
            Backend::Cluster { seeds, next_seed, .. } => {
                &seeds[next_seed.fetch_add(1, Ordering::Relaxed) % seeds.len()]
            }
        }
    }

    /// On a Redis Cluster, a dedicated RESP3 cluster connection for sharded pub/sub
    /// (SSUBSCRIBE goes to the node of each channel's slot, and redis-rs subscribes again after
    /// a node is replaced); its pushes (messages, disconnections) go to `pushes`. `None` on one
    /// Redis, where a pattern subscription on [`RedisPool::client`] hears every showtime.
    pub async fn sharded_subscriber(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<deadpool_redis::redis::PushInfo>,
    ) -> Option<Result<ClusterConnection, RedisUnavailable>> {
        let Backend::Cluster { nodes, .. } = &self.inner.backend else { return None };
        let client = ClusterClientBuilder::new(nodes.clone())
            .use_protocol(deadpool_redis::redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .connection_timeout(self.inner.timeout)
            .response_timeout(self.inner.timeout)
            .build();
        let client = match client {
            Ok(client) => client,
            Err(e) => return Some(Err(RedisUnavailable(e.to_string()))),
        };
        Some(self.inner.open(async move { client.get_async_connection().await }).await)
    }

    /// The configured connect and reply timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The runtime background connection tasks should run on, if one was current at start-up.
    pub fn runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.inner.runtime.as_ref()
    }
}

/// Builds the (lazy) connection; fails only for an invalid URL.
pub fn pool(config: &RedisConfig) -> anyhow::Result<RedisPool> {
    let backend = if config.cluster_nodes.is_empty() {
        let client = Client::open(config.url.expose()).context("invalid SEATGATE_REDIS_URL")?;
        Backend::Single { client, connection: OnceCell::new() }
    } else {
        let nodes: Vec<&str> = config.cluster_nodes.iter().map(|n| n.expose()).collect();
        let seeds = nodes
            .iter()
            .map(|n| Client::open(*n))
            .collect::<Result<Vec<_>, _>>()
            .context("invalid SEATGATE_REDIS_CLUSTER_NODES")?;
        // Each attempt waits a reply timeout at most, the whole request (redirects and retries
        // after a failover included) twice that: what is not answered by then is a 503.
        let client = ClusterClientBuilder::new(nodes.clone())
            .connection_timeout(config.timeout)
            .response_timeout(config.timeout)
            .overall_response_timeout(Some(config.timeout * 2))
            .retries(3)
            .max_retry_wait(500)
            .build()
            .context("invalid SEATGATE_REDIS_CLUSTER_NODES")?;
        let nodes = nodes.into_iter().map(str::to_owned).collect();
        Backend::Cluster {
            client: Box::new(client),
            nodes,
            connection: OnceCell::new(),
            seeds,
            next_seed: AtomicUsize::new(0),
        }
    };
    Ok(RedisPool {
        inner: Arc::new(Inner {
            backend,
            timeout: config.timeout,
            runtime: tokio::runtime::Handle::try_current().ok(),
            slots: Arc::new(Semaphore::new(config.max_in_flight as usize)),
            queue_timeout: config.queue_timeout,
        }),
    })
}

/// Key names, all under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The prefix itself (e.g. to scan or delete a test's keys).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The keys of one showtime, all under the hash tag `{st:<id>}` (one Redis Cluster slot).
    pub fn showtime(&self, showtime_id: uuid::Uuid) -> ShowtimeKeys {
        let base = format!("{}:{{st:{showtime_id}}}", self.prefix);
        ShowtimeKeys {
            holds: format!("{base}:holds"),
            expiry: format!("{base}:expiry"),
            info: format!("{base}:info"),
            users: format!("{base}:users"),
            sold: format!("{base}:sold"),
            meta: format!("{base}:meta"),
            layout: format!("{base}:layout"),
            full: format!("{base}:full"),
            events: format!("{base}:events"),
            sale: format!("{base}:sale"),
            adm: format!("{base}:adm"),
            queue: QueueKeys {
                line: format!("{base}:q:line"),
                joined: format!("{base}:q:joined"),
                seq: format!("{base}:q:seq"),
                state: format!("{base}:q:state"),
                lease: format!("{base}:q:lease"),
                fence: format!("{base}:q:fence"),
                events: format!("{base}:q:events"),
            },
        }
    }

    /// A new hold id for a hold of `showtime_id`: it carries the showtime's cluster slot, so
    /// that [`Keys::hold_index`] lands in the same slot as the showtime's keys (see
    /// [`super::slots`]).
    pub fn new_hold_id(&self, showtime_id: uuid::Uuid) -> uuid::Uuid {
        // The slot of every showtime key is the slot of its hash tag alone: no need to build
        // the showtime's dozen key names (as `showtime` does) on every hold.
        super::slots::id_in_slot(super::slots::slot_of(format!("st:{showtime_id}").as_bytes()))
    }

    /// Which showtime (and user) a hold belongs to: holds are addressed by id alone in the API.
    /// Written and deleted by the hold scripts, in the slot the hold id names.
    pub fn hold_index(&self, hold_id: uuid::Uuid) -> String {
        let tag = super::slots::tag_for_slot(super::slots::slot_in_id(hold_id));
        format!("{}:{{{tag}}}:hold:{hold_id}", self.prefix)
    }

    /// The pub/sub pattern matching the events channel of every showtime.
    pub fn events_pattern(&self) -> String {
        format!("{}:{{st:*}}:events", self.prefix)
    }

    /// The showtime whose events channel this is, if it is one of this prefix.
    pub fn showtime_of_events(&self, channel: &str) -> Option<uuid::Uuid> {
        let rest = channel.strip_prefix(self.prefix.as_str())?.strip_prefix(":{st:")?;
        rest.strip_suffix("}:events")?.parse().ok()
    }

    /// The pub/sub channel of one reservation's state changes, under the reservation's own hash
    /// tag: the ledger publishes on it after each commit that settles the reservation, and the
    /// reservation's event streams listen. Named by the reservation alone, so a stream can
    /// subscribe before it has read the row, also on a cluster (SSUBSCRIBE needs the name).
    pub fn reservation_events(&self, reservation_id: uuid::Uuid) -> String {
        format!("{}:{{r:{reservation_id}}}:events", self.prefix)
    }

    /// The pub/sub pattern matching the channel of every reservation (one Redis).
    pub fn reservation_events_pattern(&self) -> String {
        format!("{}:{{r:*}}:events", self.prefix)
    }

    /// The reservation whose channel this is, if it is one of this prefix.
    pub fn reservation_of_events(&self, channel: &str) -> Option<uuid::Uuid> {
        let rest = channel.strip_prefix(self.prefix.as_str())?.strip_prefix(":{r:")?;
        rest.strip_suffix("}:events")?.parse().ok()
    }

    /// The pub/sub pattern matching the queue events channel of every showtime.
    pub fn queue_events_pattern(&self) -> String {
        format!("{}:{{st:*}}:q:events", self.prefix)
    }

    /// The showtime whose queue events channel this is, if it is one of this prefix.
    pub fn showtime_of_queue_events(&self, channel: &str) -> Option<uuid::Uuid> {
        let rest = channel.strip_prefix(self.prefix.as_str())?.strip_prefix(":{st:")?;
        rest.strip_suffix("}:q:events")?.parse().ok()
    }

    /// Showtimes whose sale has a waiting room: what the admitter visits.
    pub fn queued_showtimes(&self) -> String {
        format!("{}:onsale:queued", self.prefix)
    }

    /// Generation counter of the catalog cache: bumped by every catalog write.
    pub fn catalog_generation(&self) -> String {
        format!("{}:cache:catalog:gen", self.prefix)
    }

    /// One cached catalog answer, valid for one generation.
    pub fn catalog_entry(&self, generation: i64, name: &str) -> String {
        format!("{}:cache:catalog:{generation}:{name}", self.prefix)
    }
}

/// The Redis keys of one showtime; see `lua/_prelude.lua` for what each holds.
#[derive(Clone, Debug)]
pub struct ShowtimeKeys {
    pub holds: String,
    pub expiry: String,
    pub info: String,
    pub users: String,
    pub sold: String,
    pub meta: String,
    /// The layout in the form `best.lua` scans (see `lua/best.lua`).
    pub layout: String,
    /// Rows `best.lua` found sold out (a cache over `sold`; see `lua/best.lua`).
    pub full: String,
    /// Pub/sub channel of seat status changes (not a key).
    pub events: String,
    /// The sale settings mirrored from PostgreSQL (read by the admission gate, `lua/_admission.lua`).
    pub sale: String,
    /// Admitted users by admitted-until time (read by the admission gate).
    pub adm: String,
    /// The waiting room's own keys (`src/onsale/`).
    pub queue: QueueKeys,
}

/// The waiting room of one showtime; see `src/onsale/store.rs` for what each holds.
#[derive(Clone, Debug)]
pub struct QueueKeys {
    pub line: String,
    pub joined: String,
    pub seq: String,
    pub state: String,
    pub lease: String,
    pub fence: String,
    /// Pub/sub channel of queue progress (not a key).
    pub events: String,
}

#[cfg(test)]
mod tests {
    use deadpool_redis::redis::{ErrorKind, RedisError, ServerErrorKind};

    use super::*;

    #[test]
    fn a_moving_or_masterless_slot_is_unavailable_and_a_script_error_is_not() {
        for kind in [
            ServerErrorKind::Moved,
            ServerErrorKind::Ask,
            ServerErrorKind::TryAgain,
            ServerErrorKind::ClusterDown,
            ServerErrorKind::MasterDown,
            ServerErrorKind::BusyLoading,
            ServerErrorKind::ReadOnly,
        ] {
            let e = RedisError::from((ErrorKind::Server(kind), "from the cluster"));
            assert!(is_unavailable(&e), "{kind:?} is a 503");
        }
        let no_node = RedisError::from((ErrorKind::ClusterConnectionNotFound, "no node for the slot"));
        assert!(is_unavailable(&no_node));
        for kind in [ServerErrorKind::ResponseError, ServerErrorKind::CrossSlot] {
            let e = RedisError::from((ErrorKind::Server(kind), "a bug"));
            assert!(!is_unavailable(&e), "{kind:?} is a 500");
        }
    }

    #[tokio::test]
    async fn cluster_mode_opens_lazily_and_an_unreachable_cluster_is_unavailable() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut config = crate::config::Config::from_source(&[]).expect("defaults").redis;
        config.cluster_nodes = vec![crate::config::Secret::new(format!("redis://127.0.0.1:{closed}"))];
        config.timeout = Duration::from_millis(200);
        let pool = pool(&config).expect("built without connecting");
        assert!(pool.is_cluster());
        let refused = pool.get().await.err().expect("no cluster to reach");
        assert!(refused.to_string().contains("unavailable"), "{refused}");
    }
}
