//! Rules of on-sales (docs/DESIGN.md §6, invariant 9): what valid sale settings are, what a queue
//! entry says to its user, and the admin's view of a sale. The decisions that must be atomic
//! (may this user hold now? who is admitted next?) are taken inside Redis scripts
//! (`lua/_admission.lua`, `lua/queue_*.lua`); this module validates, stores and explains.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::repo::{self, Admission, NewSale, QueueStatus, SaleRow};
use super::store::{self, EntryState, JoinOutcome};
use crate::auth::AuthUser;
use crate::error::{ApiError, FieldError};
use crate::holds::gate as mirror;
use crate::holds::service::{redis_conn, redis_error};
use crate::state::AppState;

/// Body of `PUT /api/v1/showtimes/{id}/sale`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleRequest {
    /// Holds are refused (409 `sale_not_open`) before this time; at most the showtime's start.
    pub opens_at: DateTime<Utc>,
    /// A virtual waiting room, or null for none (first come, first served from `opens_at`).
    #[serde(default)]
    pub queue: Option<QueueRequest>,
}

/// The waiting room of a sale.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueRequest {
    /// Users admitted per minute.
    #[schema(minimum = 1, maximum = 1000000, example = 600)]
    pub admit_per_minute: i64,
    /// How long an admission lets its user start new holds.
    #[schema(minimum = 1, maximum = 1440, example = 10)]
    pub admission_minutes: i64,
    /// Fail-open switch: every signed-in user may hold, admitted or not. For a waiting room
    /// in trouble only; see docs/ONSALE.md for the risk.
    #[serde(default)]
    pub fail_open: bool,
}

/// The sale settings of a showtime.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sale {
    pub showtime_id: Uuid,
    /// Null: no settings, on sale now.
    pub opens_at: Option<DateTime<Utc>>,
    pub queue: Option<QueueSettings>,
}

/// A waiting room's settings as stored.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueSettings {
    pub admit_per_minute: i32,
    pub admission_minutes: i32,
    pub paused: bool,
    pub fail_open: bool,
}

impl Sale {
    fn from_row(showtime_id: Uuid, row: Option<&SaleRow>) -> Self {
        let Some(row) = row else { return Self { showtime_id, opens_at: None, queue: None } };
        let queue = match (row.admit_per_minute, row.admission_minutes, row.queue_status) {
            (Some(admit_per_minute), Some(admission_minutes), Some(status)) => Some(QueueSettings {
                admit_per_minute,
                admission_minutes,
                paused: status == QueueStatus::Paused,
                fail_open: row.admission == Admission::FailOpen,
            }),
            _ => None,
        };
        Self { showtime_id, opens_at: Some(row.opens_at), queue }
    }
}

/// Where a user is in a waiting room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    Waiting,
    Admitted,
    Expired,
}

/// A user's entry in a waiting room.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueEntry {
    pub state: QueueState,
    /// 1-based place in line while waiting; null until the sale opens (the pre-queue is
    /// shuffled at opening) and once admitted.
    pub position: Option<u64>,
    pub joined_at: DateTime<Utc>,
    /// Until when an admission lets the user start holds.
    pub admitted_until: Option<DateTime<Utc>>,
    /// Seconds until admission at the configured rate (null if unknown or paused).
    pub estimated_wait_secs: Option<u64>,
}

/// `GET /api/v1/showtimes/{id}/queue` (admin).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub showtime_id: Uuid,
    pub opens_at: DateTime<Utc>,
    pub waiting: u64,
    /// Admissions still running.
    pub admitted: u64,
    /// Admissions that ran out.
    pub expired: u64,
    /// Admitted so far, running or not.
    pub admitted_total: u64,
    pub admit_per_minute: i32,
    pub admission_minutes: i32,
    pub paused: bool,
    pub fail_open: bool,
    /// Seats in live holds.
    pub held: u64,
    /// Seats sold (PostgreSQL).
    pub sold: i64,
    /// Bookings confirmed per second over the last minute.
    pub bookings_per_second: f64,
}

fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Checks a sale request against the showtime's start; the settings to store.
pub fn parse_sale(req: &SaleRequest, starts_at: DateTime<Utc>) -> Result<NewSale, ApiError> {
    let mut errors = Vec::new();
    if req.opens_at >= starts_at {
        errors.push(FieldError::new("opens_at", "must be before the showtime starts"));
    }
    let queue = match &req.queue {
        None => None,
        Some(q) => {
            if !(1..=1_000_000).contains(&q.admit_per_minute) {
                errors.push(FieldError::new("queue.admit_per_minute", "must be 1 to 1000000"));
            }
            if !(1..=1440).contains(&q.admission_minutes) {
                errors.push(FieldError::new("queue.admission_minutes", "must be 1 to 1440"));
            }
            Some((q.admit_per_minute as i32, q.admission_minutes as i32))
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let fail_open = req.queue.as_ref().is_some_and(|q| q.fail_open);
    Ok(NewSale {
        opens_at: req.opens_at,
        queue,
        admission: if fail_open { Admission::FailOpen } else { Admission::Enforced },
    })
}

/// Stores a showtime's sale settings, then mirrors them. The old mirror is dropped before the
/// commit (Redis unreachable: nothing changes, 503), so no hold can be judged by settings older
/// than the committed ones for longer than the mirror takes to rebuild.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn put_sale(state: &AppState, showtime_id: Uuid, req: SaleRequest) -> Result<Sale, ApiError> {
    let mut tx = state.db.begin().await?;
    let (starts_at, _) =
        repo::find_showtime_times(&mut tx, showtime_id).await?.ok_or(ApiError::NotFound("no such showtime"))?;
    let new = parse_sale(&req, starts_at)?;
    let row = repo::upsert_sale(&mut tx, showtime_id, new).await?;
    let keys = state.keys.showtime(showtime_id);
    let mut conn = redis_conn(state).await?;
    store::forget(&mut conn, &keys).await.map_err(redis_error)?;
    tx.commit().await?;
    if let Err(e) = mirror::warm(&state.db, &mut conn, &state.keys, showtime_id).await {
        // The next hold finds no mirror and rebuilds it from what was committed.
        tracing::warn!(error = %e, "sale mirror not written; the next hold rebuilds it");
    }
    tracing::info!(queue = row.admit_per_minute.is_some(), "sale settings saved");
    Ok(Sale::from_row(showtime_id, Some(&row)))
}

/// A showtime's sale settings (no row: on sale now).
pub async fn get_sale(state: &AppState, showtime_id: Uuid) -> Result<Sale, ApiError> {
    let mut conn = state.db.acquire().await?;
    if repo::find_showtime_times(&mut conn, showtime_id).await?.is_none() {
        return Err(ApiError::NotFound("no such showtime"));
    }
    let row = repo::find_sale(&mut conn, showtime_id).await?;
    Ok(Sale::from_row(showtime_id, row.as_ref()))
}

/// Pauses or resumes admission.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn set_paused(state: &AppState, showtime_id: Uuid, paused: bool) -> Result<QueueStats, ApiError> {
    let status = if paused { QueueStatus::Paused } else { QueueStatus::Running };
    let mut tx = state.db.begin().await?;
    if repo::find_showtime_times(&mut tx, showtime_id).await?.is_none() {
        return Err(ApiError::NotFound("no such showtime"));
    }
    repo::set_queue_status(&mut tx, showtime_id, status)
        .await?
        .ok_or_else(|| ApiError::Conflict("this showtime's sale has no waiting room".into()))?;
    let keys = state.keys.showtime(showtime_id);
    let mut conn = redis_conn(state).await?;
    store::forget(&mut conn, &keys).await.map_err(redis_error)?;
    tx.commit().await?;
    mirror::warm(&state.db, &mut conn, &state.keys, showtime_id).await?;
    let _ = store::publish(&mut conn, &keys, if paused { "paused" } else { "resumed" }).await;
    metrics::counter!("seatgate_queue_pauses_total", "action" => if paused { "pause" } else { "resume" }).increment(1);
    tracing::info!(paused, "waiting room admission {}", if paused { "paused" } else { "resumed" });
    drop(conn);
    queue_stats(state, showtime_id).await
}

fn entry(e: store::Entry, sale: Option<&QueueSettings>) -> QueueEntry {
    let state = match e.state {
        EntryState::Waiting => QueueState::Waiting,
        EntryState::Admitted => QueueState::Admitted,
        EntryState::Expired => QueueState::Expired,
    };
    let position = e.rank.map(|r| r + 1);
    let estimated_wait_secs = match (state, position, sale) {
        (QueueState::Waiting, Some(p), Some(q)) if !q.paused => {
            Some((p * 60).div_ceil(q.admit_per_minute.max(1) as u64))
        }
        _ => None,
    };
    QueueEntry {
        state,
        position,
        joined_at: millis(e.joined_at_ms),
        admitted_until: e.admitted_until_ms.map(millis),
        estimated_wait_secs,
    }
}

/// Runs `queue_join.lua`, warming the sale mirror once if it is cold.
async fn run_join(
    state: &AppState,
    user: AuthUser,
    showtime_id: Uuid,
    join: bool,
) -> Result<(JoinOutcome, Option<QueueSettings>), ApiError> {
    let keys = state.keys.showtime(showtime_id);
    let score = store::random_score().map_err(ApiError::Internal)?;
    let mut conn = redis_conn(state).await?;
    let mut outcome = store::join(&mut conn, &keys, user.id, join, score).await.map_err(redis_error)?;
    if outcome == JoinOutcome::Cold {
        mirror::warm(&state.db, &mut conn, &state.keys, showtime_id).await?;
        outcome = store::join(&mut conn, &keys, user.id, join, score).await.map_err(redis_error)?;
    }
    let settings = match outcome {
        JoinOutcome::Created(_) | JoinOutcome::Existing(_) => {
            let raw: Vec<Option<String>> = deadpool_redis::redis::cmd("HMGET")
                .arg(&keys.sale)
                .arg(&["rate", "window_ms", "status", "admission"])
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(e.into()))?;
            match raw.as_slice() {
                [Some(rate), Some(window), Some(status), admission] => Some(QueueSettings {
                    admit_per_minute: rate.parse().unwrap_or(1),
                    admission_minutes: (window.parse::<i64>().unwrap_or(60_000) / 60_000) as i32,
                    paused: status == "paused",
                    fail_open: admission.as_deref() == Some("fail_open"),
                }),
                _ => None,
            }
        }
        _ => None,
    };
    Ok((outcome, settings))
}

/// Joins the waiting room; `true` when this call made the entry.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id, user.id = %user.id))]
pub async fn join_queue(state: &AppState, user: AuthUser, showtime_id: Uuid) -> Result<(bool, QueueEntry), ApiError> {
    let (outcome, settings) = run_join(state, user, showtime_id, true).await?;
    match outcome {
        JoinOutcome::Created(e) => {
            metrics::counter!("seatgate_queue_joined_total").increment(1);
            Ok((true, entry(e, settings.as_ref())))
        }
        JoinOutcome::Existing(e) => Ok((false, entry(e, settings.as_ref()))),
        JoinOutcome::NoQueue => Err(ApiError::Conflict("this showtime's sale has no waiting room".into())),
        JoinOutcome::NotJoined | JoinOutcome::Cold => {
            Err(ApiError::Unavailable(anyhow::anyhow!("sale mirror stayed cold after warming")))
        }
    }
}

/// The caller's entry; 404 if the caller never joined.
pub async fn my_entry(state: &AppState, user: AuthUser, showtime_id: Uuid) -> Result<QueueEntry, ApiError> {
    Ok(entry_snapshot(state, user, showtime_id).await?.entry)
}

/// A user's entry with what a live stream needs to follow it.
#[derive(Clone, Debug)]
pub struct EntrySnapshot {
    pub entry: QueueEntry,
    /// Users admitted so far when the entry was read.
    pub popped: u64,
    pub settings: Option<QueueSettings>,
}

impl EntrySnapshot {
    /// The entry after the admitter has let `popped` users in altogether, computed without
    /// Redis; `None` when the user's own admission came, or the place is unknown (read again).
    pub fn moved_to(&self, popped: u64) -> Option<QueueEntry> {
        let position = self.entry.position?;
        let ahead_admitted = popped.saturating_sub(self.popped);
        if self.entry.state != QueueState::Waiting || ahead_admitted >= position {
            return None;
        }
        let position = position - ahead_admitted;
        let estimated_wait_secs = self
            .settings
            .as_ref()
            .filter(|q| !q.paused)
            .map(|q| (position * 60).div_ceil(q.admit_per_minute.max(1) as u64));
        Some(QueueEntry { position: Some(position), estimated_wait_secs, ..self.entry.clone() })
    }
}

/// [`my_entry`] with the count admitted so far and the queue's settings.
pub async fn entry_snapshot(state: &AppState, user: AuthUser, showtime_id: Uuid) -> Result<EntrySnapshot, ApiError> {
    let (outcome, settings) = run_join(state, user, showtime_id, false).await?;
    match outcome {
        JoinOutcome::Created(e) | JoinOutcome::Existing(e) => {
            Ok(EntrySnapshot { entry: entry(e, settings.as_ref()), popped: e.popped, settings })
        }
        JoinOutcome::NotJoined | JoinOutcome::NoQueue => {
            Err(ApiError::NotFound("you have not joined this waiting room"))
        }
        JoinOutcome::Cold => Err(ApiError::Unavailable(anyhow::anyhow!("sale mirror stayed cold after warming"))),
    }
}

/// The admin's view of a queued sale.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn queue_stats(state: &AppState, showtime_id: Uuid) -> Result<QueueStats, ApiError> {
    let sale = get_sale(state, showtime_id).await?;
    let (Some(opens_at), Some(queue)) = (sale.opens_at, sale.queue) else {
        return Err(ApiError::NotFound("this showtime's sale has no waiting room"));
    };
    let keys = state.keys.showtime(showtime_id);
    let raw = {
        let mut conn = redis_conn(state).await?;
        store::stats(&mut conn, &keys).await.map_err(redis_error)?
    };
    let (sold, last_minute): (i64, i64) = sqlx::query_as(
        r#"select (select count(*) from booked_seats where showtime_id = $1),
                  (select count(*) from bookings where showtime_id = $1 and created_at > now() - interval '60 seconds')"#,
    )
    .bind(showtime_id)
    .fetch_one(&state.db)
    .await?;
    Ok(QueueStats {
        showtime_id,
        opens_at,
        waiting: raw.waiting,
        admitted: raw.admitted,
        expired: raw.expired,
        admitted_total: raw.popped,
        admit_per_minute: queue.admit_per_minute,
        admission_minutes: queue.admission_minutes,
        paused: queue.paused,
        fail_open: queue.fail_open,
        held: raw.seats_held,
        sold,
        bookings_per_second: last_minute as f64 / 60.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(opens_in_hours: i64, queue: Option<(i64, i64)>) -> SaleRequest {
        SaleRequest {
            opens_at: Utc::now() + chrono::Duration::hours(opens_in_hours),
            queue: queue.map(|(admit_per_minute, admission_minutes)| QueueRequest {
                admit_per_minute,
                admission_minutes,
                fail_open: false,
            }),
        }
    }

    #[test]
    fn a_sale_must_open_before_the_showtime_starts() {
        let starts = Utc::now() + chrono::Duration::hours(2);
        assert!(parse_sale(&req(1, None), starts).is_ok());
        let Err(ApiError::Validation(errors)) = parse_sale(&req(3, None), starts) else { panic!("accepted") };
        assert_eq!(errors[0].field, "opens_at");
    }

    #[test]
    fn queue_rates_and_windows_are_bounded() {
        let starts = Utc::now() + chrono::Duration::hours(2);
        let Err(ApiError::Validation(errors)) = parse_sale(&req(1, Some((0, 0))), starts) else { panic!("accepted") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["queue.admit_per_minute", "queue.admission_minutes"]);
        assert!(parse_sale(&req(1, Some((600, 10))), starts).is_ok());
    }

    #[test]
    fn the_estimate_is_the_place_over_the_rate() {
        let e = store::Entry {
            state: EntryState::Waiting,
            joined_at_ms: 0,
            rank: Some(119),
            admitted_until_ms: None,
            opened: true,
            popped: 0,
        };
        let q = QueueSettings { admit_per_minute: 60, admission_minutes: 5, paused: false, fail_open: false };
        assert_eq!(entry(e, Some(&q)).estimated_wait_secs, Some(120));
        assert_eq!(entry(e, Some(&QueueSettings { paused: true, ..q })).estimated_wait_secs, None);
        assert_eq!(entry(e, Some(&q)).position, Some(120));
    }

    #[test]
    fn a_stream_follows_the_place_from_the_admitted_count() {
        let e = store::Entry {
            state: EntryState::Waiting,
            joined_at_ms: 0,
            rank: Some(4),
            admitted_until_ms: None,
            opened: true,
            popped: 10,
        };
        let q = QueueSettings { admit_per_minute: 60, admission_minutes: 5, paused: false, fail_open: false };
        let snap = EntrySnapshot { entry: entry(e, Some(&q)), popped: 10, settings: Some(q) };
        assert_eq!(snap.moved_to(13).and_then(|e| e.position), Some(2));
        assert_eq!(snap.moved_to(13).and_then(|e| e.estimated_wait_secs), Some(2));
        assert!(snap.moved_to(15).is_none(), "the user's own admission: read the entry again");
    }
}
