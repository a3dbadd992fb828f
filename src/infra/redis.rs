//! The Redis pool and the names of the keys seatgate keeps there.
//!
//! Every key starts with the configured prefix (`sg` by default; one per test). Keys of one
//! showtime share the hash tag `{st:<id>}` so every multi-key script runs on one Redis Cluster
//! slot.

use anyhow::Context;
use deadpool_redis::{Config as PoolConfig, Pool, PoolConfig as PoolSize, Runtime, Timeouts};

use crate::config::RedisConfig;

/// Builds the pool. Connections are opened lazily, so this succeeds while Redis is down;
/// readiness reports it.
pub fn pool(config: &RedisConfig) -> anyhow::Result<Pool> {
    let mut cfg = PoolConfig::from_url(config.url.expose());
    cfg.pool = Some(PoolSize {
        max_size: config.pool_size,
        timeouts: Timeouts { wait: Some(config.timeout), create: Some(config.timeout), recycle: Some(config.timeout) },
        ..PoolSize::default()
    });
    cfg.create_pool(Some(Runtime::Tokio1)).context("invalid SEATGATE_REDIS_URL")
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
            events: format!("{base}:events"),
        }
    }

    /// Which showtime a hold belongs to (holds are addressed by id alone in the API).
    pub fn hold_index(&self, hold_id: uuid::Uuid) -> String {
        format!("{}:holdidx:{hold_id}", self.prefix)
    }

    /// Showtimes that may have live holds: what the sweeper visits.
    pub fn active_showtimes(&self) -> String {
        format!("{}:active-showtimes", self.prefix)
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
    /// Pub/sub channel of seat status changes (not a key).
    pub events: String,
}
