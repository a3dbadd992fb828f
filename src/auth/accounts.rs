//! Which accounts exist, and with which role, as PostgreSQL says now: a token outlives neither
//! its account nor a change of role by more than the cache's time to live. A short in-process
//! cache keeps the check off the database on the hot path (holds).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use super::Role;

/// Entries kept at most; the cache is emptied when full.
const CAPACITY: usize = 100_000;

/// Roles of accounts by id, each remembered for `ttl`.
#[derive(Debug)]
pub struct AccountCache {
    ttl: Duration,
    entries: RwLock<HashMap<Uuid, (Option<Role>, Instant)>>,
}

impl AccountCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: RwLock::new(HashMap::new()) }
    }

    /// Forgets what is known of one account (after its role changed through this instance).
    pub fn forget(&self, id: Uuid) {
        if let Ok(mut map) = self.entries.write() {
            map.remove(&id);
        }
    }

    /// The account's current role, `None` when it no longer exists.
    pub async fn role_of(&self, db: &PgPool, id: Uuid) -> Result<Option<Role>, sqlx::Error> {
        if !self.ttl.is_zero()
            && let Some((role, at)) = self.entries.read().ok().and_then(|m| m.get(&id).copied())
            && at.elapsed() < self.ttl
        {
            return Ok(role);
        }
        let role: Option<Role> =
            sqlx::query_scalar("select role from users where id = $1").bind(id).fetch_optional(db).await?;
        if !self.ttl.is_zero()
            && let Ok(mut map) = self.entries.write()
        {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(id, (role, Instant::now()));
        }
        Ok(role)
    }
}
