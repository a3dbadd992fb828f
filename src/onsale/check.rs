//! Invariant 9, fair on-sales, for the checker (`seatgate check-invariants`; called from
//! `src/invariants.rs`). For every sale with a waiting room whose queue is still in Redis:
//!
//! - no live hold and no reservation made after opening belongs to a user the admitter never
//!   admitted (unless the sale is switched to fail-open, which the report then says);
//! - admission went strictly in line order: no admitted user's place is behind a waiting one's;
//! - joiners after opening are all behind every pre-opening joiner;
//! - the pre-opening joiners' places are not correlated with their join order (Spearman's rank
//!   correlation; flagged past 4.5 standard errors, a chance of about 7 in a million for a
//!   uniform shuffle), for 20 or more of them.

use std::collections::{HashMap, HashSet};

use deadpool_redis::redis;
use uuid::Uuid;

use super::repo::Admission;
use super::store::{self, LATE_BASE};
use crate::invariants::Violation;
use crate::state::AppState;

const INVARIANT: &str = "fair_onsales";

/// Spearman's rank correlation of two equally long samples without ties (ranks by order).
pub fn spearman(xs: &[f64], ys: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
        let mut r = vec![0.0; v.len()];
        for (rank, i) in idx.into_iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    }
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let (rx, ry) = (ranks(xs), ranks(ys));
    let d2: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - b) * (a - b)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// Checks invariant 9; every breach is one [`Violation`] (invariant `fair_onsales`).
pub async fn check_fair_onsales(state: &AppState) -> anyhow::Result<Vec<Violation>> {
    let mut out = Vec::new();
    let mut breach = |detail: String| out.push(Violation { invariant: INVARIANT, detail });
    let sales: Vec<(Uuid, chrono::DateTime<chrono::Utc>, Admission)> =
        sqlx::query_as("select showtime_id, opens_at, admission from showtime_sales where queue_status is not null")
            .fetch_all(&state.db)
            .await?;
    let mut conn = state.redis.get().await?;
    for (showtime_id, opens_at, admission) in sales {
        let keys = state.keys.showtime(showtime_id);
        let store::Records { joined, admitted, waiting } = store::entries(&mut conn, &keys).await?;
        if joined.is_empty() {
            // Nobody joined, or the queue's keys are gone (a day after the show): nothing to judge.
            continue;
        }
        let opens_ms = opens_at.timestamp_millis();
        let admitted_users: HashSet<Uuid> = admitted.iter().map(|(u, _)| *u).collect();
        let fail_open = admission == Admission::FailOpen;

        // Live holds by users never admitted.
        let (infos, (secs, micros)): (HashMap<String, String>, (i64, i64)) =
            redis::pipe().hgetall(&keys.info).cmd("TIME").query_async(&mut conn).await?;
        let now_ms = secs * 1000 + micros / 1000;
        for (hold_id, raw) in infos {
            let Ok(info) = serde_json::from_str::<serde_json::Value>(&raw) else { continue };
            let live = info["e"].as_i64().is_some_and(|e| e > now_ms);
            let user = info["u"].as_str().and_then(|u| u.parse::<Uuid>().ok());
            if let (true, Some(user)) = (live, user)
                && !admitted_users.contains(&user)
                && !fail_open
            {
                breach(format!("showtime {showtime_id}: live hold {hold_id} of user {user}, who was never admitted"));
            }
        }

        // Reservations after opening by users never admitted.
        let buyers: Vec<(Uuid, Uuid)> =
            sqlx::query_as("select id, user_id from reservations where showtime_id = $1 and created_at >= $2")
                .bind(showtime_id)
                .bind(opens_at)
                .fetch_all(&state.db)
                .await?;
        for (reservation, user) in buyers {
            if !admitted_users.contains(&user) && !fail_open {
                breach(format!(
                    "showtime {showtime_id}: reservation {reservation} of user {user}, who was never admitted"
                ));
            }
        }

        // Admission in line order: every admitted place is ahead of every waiting one.
        let score_of: HashMap<Uuid, u64> = joined.iter().map(|(u, _, s)| (*u, *s)).collect();
        let last_admitted = admitted.iter().filter_map(|(u, _)| score_of.get(u)).max();
        let first_waiting = waiting.iter().map(|(_, s)| *s).min();
        if let (Some(a), Some(w)) = (last_admitted, first_waiting)
            && *a > w
        {
            breach(format!("showtime {showtime_id}: a user was admitted while someone ahead of them still waits"));
        }

        // Later joiners behind the pre-queue; the pre-queue shuffled.
        let (early, late): (Vec<_>, Vec<_>) = joined.iter().partition(|(_, at, _)| *at < opens_ms);
        if let Some((user, _, _)) = early.iter().find(|(_, _, s)| *s >= LATE_BASE) {
            breach(format!("showtime {showtime_id}: user {user} joined before opening but has a late place"));
        }
        if let Some((user, _, _)) = late.iter().find(|(_, _, s)| *s < LATE_BASE) {
            breach(format!("showtime {showtime_id}: user {user} joined after opening but has a pre-queue place"));
        }
        if early.len() >= 20 {
            let times: Vec<f64> = early.iter().map(|(_, at, _)| *at as f64).collect();
            let places: Vec<f64> = early.iter().map(|(_, _, s)| *s as f64).collect();
            let rho = spearman(&times, &places);
            let z = rho * ((early.len() - 1) as f64).sqrt();
            if z.abs() > 4.5 {
                breach(format!(
                    "showtime {showtime_id}: the pre-queue of {} users is not shuffled (rank correlation of join \
                     order and place {rho:.3}, {z:.1} standard errors)",
                    early.len()
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_correlation_is_one_for_the_same_order_and_minus_one_for_the_reverse() {
        let xs: Vec<f64> = (0..10).map(f64::from).collect();
        let rev: Vec<f64> = xs.iter().rev().copied().collect();
        assert!((spearman(&xs, &xs) - 1.0).abs() < 1e-9);
        assert!((spearman(&xs, &rev) + 1.0).abs() < 1e-9);
    }
}
