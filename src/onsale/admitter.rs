//! The admission loop (docs/DESIGN.md §6): every `SEATGATE_QUEUE_ADMIT_INTERVAL_MS`, for each
//! showtime whose sale has a waiting room, take or renew that showtime's admitter lease and run
//! one admission step under its fencing token. Any number of processes (API, workers,
//! all-in-one) run this loop; per showtime exactly one of them admits, and a process that lost
//! its lease while stalled is refused inside `queue_admit.lua` by the token check, so two
//! admitters never admit for the same showtime at once. Leases are per showtime (not one
//! global lock) because the token must be checked in the same script, on the showtime's
//! Redis Cluster slot, as the admission it guards.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::repo;
use super::store::{self, AdmitOutcome, LeaseOutcome};
use crate::holds::gate as mirror;
use crate::state::AppState;

/// How often the list of queued sales is re-learned from PostgreSQL (in case Redis lost it).
const RELEARN: Duration = Duration::from_secs(30);

/// What one pass did, summed over showtimes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Showtimes this process admitted for (held the lease).
    pub led: u64,
    /// Showtimes another process leads.
    pub followed: u64,
    pub admitted: u64,
    pub expired: u64,
}

/// One process' admitter: its owner id and the tokens of the leases it holds.
#[derive(Debug)]
pub struct Admitter {
    owner: String,
    tokens: HashMap<Uuid, String>,
    relearned_at: Option<Instant>,
}

impl Default for Admitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Admitter {
    /// A new admitter with a random owner id.
    pub fn new() -> Self {
        Self { owner: format!("admitter-{}", Uuid::new_v4()), tokens: HashMap::new(), relearned_at: None }
    }

    /// Showtimes whose lease this admitter holds right now.
    pub fn leading(&self) -> impl Iterator<Item = &Uuid> {
        self.tokens.keys()
    }

    /// One pass over every queued sale.
    pub async fn step(&mut self, state: &AppState) -> anyhow::Result<Pass> {
        let cfg = &state.config.onsale;
        let mut conn = state.redis.get().await?;
        let index = state.keys.queued_showtimes();
        if self.relearned_at.is_none_or(|t| t.elapsed() >= RELEARN) {
            let ids = repo::queued_sales(&mut *state.db.acquire().await?).await?;
            if !ids.is_empty() {
                let members: Vec<String> = ids.iter().map(Uuid::to_string).collect();
                let _: () = redis::cmd("SADD").arg(&index).arg(members).query_async(&mut conn).await?;
            }
            self.relearned_at = Some(Instant::now());
        }
        let members: Vec<String> = redis::cmd("SMEMBERS").arg(&index).query_async(&mut conn).await?;
        let mut pass = Pass::default();
        for showtime_id in members.iter().filter_map(|m| m.parse::<Uuid>().ok()) {
            let keys = state.keys.showtime(showtime_id);
            let token = match store::lease(&mut conn, &keys, &self.owner, cfg.lease_ttl).await? {
                LeaseOutcome::Held(token) => token,
                LeaseOutcome::Taken => {
                    self.tokens.remove(&showtime_id);
                    pass.followed += 1;
                    continue;
                }
            };
            if self.tokens.insert(showtime_id, token.clone()).as_ref() != Some(&token) {
                tracing::info!(showtime.id = %showtime_id, fencing_token = %token, "admitter lease taken");
            }
            let mut outcome = store::admit(&mut conn, &keys, &token, cfg.burst, cfg.max_batch).await?;
            if outcome == AdmitOutcome::Cold {
                match mirror::warm(&state.db, &mut conn, &state.keys, showtime_id).await {
                    Ok(_) => outcome = store::admit(&mut conn, &keys, &token, cfg.burst, cfg.max_batch).await?,
                    Err(crate::error::ApiError::NotFound(_)) => outcome = AdmitOutcome::NoQueue,
                    Err(e) => return Err(anyhow::anyhow!("warm the sale mirror: {e}")),
                }
            }
            match outcome {
                AdmitOutcome::Step { admitted, newly_expired, waiting, .. } => {
                    pass.led += 1;
                    pass.admitted += admitted;
                    pass.expired += newly_expired;
                    let label = showtime_id.to_string();
                    metrics::gauge!("seatgate_queue_depth", "showtime" => label).set(waiting as f64);
                    if admitted > 0 {
                        metrics::counter!("seatgate_queue_admissions_total").increment(admitted);
                    }
                    if newly_expired > 0 {
                        metrics::counter!("seatgate_queue_admissions_expired_total").increment(newly_expired);
                    }
                }
                AdmitOutcome::Fenced => {
                    tracing::warn!(showtime.id = %showtime_id, "admitter lease lost to another process");
                    self.tokens.remove(&showtime_id);
                }
                AdmitOutcome::NoQueue | AdmitOutcome::Cold => {
                    // No waiting room any more (settings changed, or the showtime ended).
                    let _: () =
                        redis::cmd("SREM").arg(&index).arg(showtime_id.to_string()).query_async(&mut conn).await?;
                    store::release_lease(&mut conn, &keys, &self.owner).await?;
                    self.tokens.remove(&showtime_id);
                    metrics::gauge!("seatgate_queue_depth", "showtime" => showtime_id.to_string()).set(0.0);
                }
            }
        }
        Ok(pass)
    }

    /// Gives back every lease this admitter holds, so another process takes over at once.
    pub async fn release_all(&mut self, state: &AppState) {
        let Ok(mut conn) = state.redis.get().await else { return };
        for showtime_id in std::mem::take(&mut self.tokens).into_keys() {
            let _ = store::release_lease(&mut conn, &state.keys.showtime(showtime_id), &self.owner).await;
        }
    }
}

/// Runs the admission loop until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) -> anyhow::Result<()> {
    let mut admitter = Admitter::new();
    let mut tick = tokio::time::interval(state.config.onsale.admit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => match admitter.step(&state).await {
                Ok(pass) => {
                    if failing {
                        tracing::info!("admission loop recovered");
                        failing = false;
                    }
                    if pass.admitted > 0 || pass.expired > 0 {
                        tracing::debug!(?pass, "admission pass");
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %format!("{e:#}"), "admission pass failed; retrying every tick");
                    }
                    failing = true;
                }
            },
        }
    }
    admitter.release_all(&state).await;
    Ok(())
}
