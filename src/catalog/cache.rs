//! Read-through cache of catalog answers in Redis.
//!
//! Entries are keyed by a catalog *generation*: every catalog write bumps the generation after
//! its transaction commits, so the next read misses and reloads from PostgreSQL. Old entries
//! are never read again and expire by TTL. The cache is an optimisation only: when Redis is
//! unreachable, reads go to PostgreSQL and writes still succeed.

use std::future::Future;
use std::time::Duration;

use deadpool_redis::redis::AsyncCommands;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// How long an entry lives at most.
const TTL: Duration = Duration::from_secs(60);

/// The cached value of `name`, or `load()`'s, which is then cached.
pub async fn cached<T, F, Fut>(state: &AppState, name: &str, load: F) -> Result<T, ApiError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let key = match generation(state).await {
        Ok(generation) => Some(state.keys.catalog_entry(generation, name)),
        Err(e) => {
            tracing::warn!(error = %e, "catalog cache unavailable, reading PostgreSQL");
            None
        }
    };
    if let Some(key) = &key {
        match get(state, key).await {
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(value) => {
                    metrics::counter!("seatgate_catalog_cache_total", "result" => "hit").increment(1);
                    return Ok(value);
                }
                Err(e) => tracing::warn!(error = %e, "undecodable catalog cache entry, reloading"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "catalog cache read failed"),
        }
    }
    metrics::counter!("seatgate_catalog_cache_total", "result" => "miss").increment(1);
    let value = load().await?;
    if let Some(key) = key {
        match serde_json::to_vec(&value) {
            Ok(bytes) => {
                if let Err(e) = set(state, &key, bytes).await {
                    tracing::warn!(error = %e, "catalog cache write failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "catalog answer does not serialise"),
        }
    }
    Ok(value)
}

/// Makes every cached catalog answer stale. Call after the write committed.
pub async fn invalidate(state: &AppState) {
    state.seat_status.invalidate_all();
    let result: anyhow::Result<i64> = async {
        let mut conn = state.redis.get().await?;
        let key = state.keys.catalog_generation();
        // The counter expires after a day without writes; every entry it keyed is gone by then.
        let (generation, _): (i64, bool) =
            deadpool_redis::redis::pipe().incr(&key, 1).expire(&key, 86_400).query_async(&mut conn).await?;
        Ok(generation)
    }
    .await;
    if let Err(e) = result {
        // Entries expire within TTL anyway; a write must not fail because the cache is down.
        tracing::warn!(error = %e, "cannot invalidate the catalog cache");
    }
}

async fn generation(state: &AppState) -> anyhow::Result<i64> {
    let mut conn = state.redis.get().await?;
    let generation: Option<i64> = conn.get(state.keys.catalog_generation()).await?;
    Ok(generation.unwrap_or(0))
}

async fn get(state: &AppState, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let mut conn = state.redis.get().await?;
    Ok(conn.get(key).await?)
}

async fn set(state: &AppState, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
    let mut conn = state.redis.get().await?;
    let _: () = conn.set_ex(key, bytes, TTL.as_secs()).await?;
    Ok(())
}
