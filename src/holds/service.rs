//! Rules of holds: which seat sets are acceptable, what each script outcome means for the
//! client, how a cold Redis is warmed from PostgreSQL, and who may see a hold (its owner only;
//! anyone else gets the same 404 as for a hold that does not exist).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::snapshot::Snapshot;
use super::store::{self, Closed, Conn, HoldOutcome, HoldParams, HoldView, ReleaseOutcome, SeatStatus, ShowtimeMeta};
use crate::auth::AuthUser;
use crate::error::{ApiError, FieldError};
use crate::infra::redis::ShowtimeKeys;
use crate::state::AppState;

/// Body of `POST /api/v1/showtimes/{id}/holds`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// Seats of the showtime's screen, distinct, at most the per-user limit.
    #[schema(min_items = 1)]
    pub seat_ids: Vec<Uuid>,
}

/// Where a hold is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// Held by its owner, who may release it or check it out.
    Held,
    /// Checked out: payment is under way and the hold was extended to cover it.
    Checkout,
}

/// A hold as its owner sees it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hold {
    pub hold_id: Uuid,
    pub showtime_id: Uuid,
    pub seat_ids: Vec<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub status: HoldStatus,
}

/// Status of one seat in the seat map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeatState {
    Available,
    Held,
    Sold,
}

/// One seat of the seat map.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MapSeat {
    pub id: Uuid,
    pub row: String,
    pub number: i32,
    pub category: String,
    /// Price in minor units of the showtime's currency.
    pub price: i64,
    pub status: SeatState,
    /// True when the caller holds this seat.
    pub held_by_me: bool,
}

/// `GET /api/v1/showtimes/{id}/seats`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeatMap {
    pub showtime_id: Uuid,
    pub currency: String,
    pub seats: Vec<MapSeat>,
}

/// Seat counts of one category in `GET /api/v1/showtimes/{id}/availability`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CategoryAvailability {
    pub category: String,
    /// Price in minor units of the showtime's currency.
    pub price: i64,
    pub available: u32,
    pub held: u32,
    pub sold: u32,
}

/// `GET /api/v1/showtimes/{id}/availability`: how many seats are free, held and sold, in all
/// and per category (in layout order), without the seats themselves. A 20,000-seat seat map is
/// megabytes; this answer is the same for every caller and a few hundred bytes.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Availability {
    pub showtime_id: Uuid,
    pub currency: String,
    pub available: u32,
    pub held: u32,
    pub sold: u32,
    /// True when every seat is sold: held seats may still come back, sold ones do not.
    pub sold_out: bool,
    pub categories: Vec<CategoryAvailability>,
}

/// Waits before each try to release a hold whose grant may have been lost.
const LOST_HOLD_RETRIES: [Duration; 4] =
    [Duration::from_millis(500), Duration::from_secs(2), Duration::from_secs(5), Duration::from_secs(10)];

/// A hold script that failed after it was sent (a reply timeout, a dropped connection) may have
/// run: its seats would then stay held for a whole TTL by a hold whose id nobody knows (the
/// caller got a 503 and will try again, over the per-user limit if it was counted). So the hold
/// id is released in the background, a few times over some seconds until an answer comes:
/// `release.lua` checks the owner, and a hold that never was is `not_found`, a no-op. Commands
/// of one process go over one multiplexed connection (per node), in order, so a release sent
/// after the script cannot overtake it. Returns the error as the caller maps it (`redis_error`).
pub(crate) fn lost_answer(state: &AppState, p: &HoldParams, e: anyhow::Error) -> ApiError {
    let (state, showtime_id, hold_id, user_id) = (state.clone(), p.showtime_id, p.hold_id, p.user_id.to_string());
    tokio::spawn(async move {
        let keys = state.keys.showtime(showtime_id);
        for wait in LOST_HOLD_RETRIES {
            tokio::time::sleep(wait).await;
            let Ok(mut conn) = redis_conn(&state).await else { continue };
            match store::release(&mut conn, &state.keys, &keys, hold_id, &user_id, false).await {
                Ok(ReleaseOutcome::Released) => {
                    metrics::counter!("seatgate_lost_holds_released_total").increment(1);
                    tracing::info!(hold.id = %hold_id, "released a hold whose grant did not reach its caller");
                    state.seat_status.invalidate(showtime_id);
                    return;
                }
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(hold.id = %hold_id, error = %e, "releasing a possibly lost hold failed; retrying")
                }
            }
        }
        tracing::warn!(hold.id = %hold_id, "a possibly lost hold could not be released; it expires with its TTL");
    });
    redis_error(e)
}

/// A Redis failure: unreachable (or, on a cluster, a slot moving or without a master) is 503,
/// anything else 500.
pub fn redis_error(e: anyhow::Error) -> ApiError {
    let unreachable = e.chain().any(|cause| {
        cause.downcast_ref::<redis::RedisError>().is_some_and(crate::infra::redis::is_unavailable)
            || cause.downcast_ref::<crate::infra::redis::RedisUnavailable>().is_some()
    });
    if unreachable { ApiError::Unavailable(e) } else { ApiError::Internal(e) }
}

/// A pooled Redis connection, or 503.
pub async fn redis_conn(state: &AppState) -> Result<Conn, ApiError> {
    state.redis.get().await.map_err(|e| ApiError::Unavailable(anyhow::Error::new(e).context("redis pool")))
}

pub(crate) fn millis_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Checks the requested seats against the layout and the per-user limit.
fn check_seats(seat_ids: &[Uuid], layout: &super::layout::Layout, max: u32) -> Result<(), ApiError> {
    if seat_ids.is_empty() {
        return Err(ApiError::invalid("seat_ids", "name at least one seat"));
    }
    if seat_ids.len() > max as usize {
        return Err(ApiError::invalid("seat_ids", format!("at most {max} seats per showtime")));
    }
    let mut seen = HashSet::new();
    let duplicates: Vec<String> = seat_ids.iter().filter(|id| !seen.insert(**id)).map(Uuid::to_string).collect();
    if !duplicates.is_empty() {
        return Err(ApiError::invalid("seat_ids", format!("seats named twice: {}", duplicates.join(", "))));
    }
    let unknown: Vec<String> = seat_ids.iter().filter(|id| layout.seat(**id).is_none()).map(Uuid::to_string).collect();
    if !unknown.is_empty() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "seat_ids",
            format!("not seats of this showtime: {}", unknown.join(", ")),
        )]));
    }
    Ok(())
}

/// Holds seats for the caller: all of them or none.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id, user.id = %user.id))]
pub async fn create_hold(
    state: &AppState,
    user: AuthUser,
    showtime_id: Uuid,
    req: HoldRequest,
) -> Result<Hold, ApiError> {
    let holds = &state.config.holds;
    let layout = state.layouts.get(&state.db, showtime_id).await?;
    if let Err(e) = check_seats(&req.seat_ids, &layout, holds.max_seats_per_user) {
        metrics::counter!("seatgate_holds_refused_total", "reason" => "invalid").increment(1);
        return Err(e);
    }
    let keys = state.keys.showtime(showtime_id);
    let params = HoldParams {
        showtime_id,
        hold_id: state.keys.new_hold_id(showtime_id),
        user_id: user.id,
        ttl: holds.ttl,
        max_lifetime: holds.max_lifetime,
        max_seats_per_user: holds.max_seats_per_user,
    };
    let mut conn = redis_conn(state).await?;
    let lost = |e| lost_answer(state, &params, e);
    let mut outcome = store::hold(&mut conn, &state.keys, &keys, params, &req.seat_ids).await.map_err(lost)?;
    if outcome == HoldOutcome::Cold {
        warm(state, &mut conn, showtime_id, &keys).await?;
        outcome = store::hold(&mut conn, &state.keys, &keys, params, &req.seat_ids).await.map_err(lost)?;
    }
    // Granted or refused, this instance's seat map of the showtime is now out of date (a
    // refusal means it showed a taken seat as free).
    state.seat_status.invalidate(showtime_id);
    let refused =
        |reason: &'static str| metrics::counter!("seatgate_holds_refused_total", "reason" => reason).increment(1);
    match outcome {
        HoldOutcome::Held { expires_at_ms } => {
            metrics::counter!("seatgate_holds_granted_total").increment(1);
            metrics::counter!("seatgate_seats_held_total").increment(req.seat_ids.len() as u64);
            tracing::debug!(hold.id = %params.hold_id, "seats held");
            state.hold_showtimes.remember(params.hold_id, showtime_id);
            Ok(Hold {
                hold_id: params.hold_id,
                showtime_id,
                seat_ids: req.seat_ids,
                expires_at: millis_to_time(expires_at_ms),
                status: HoldStatus::Held,
            })
        }
        HoldOutcome::Unavailable(seats) => {
            refused("unavailable");
            Err(ApiError::SeatsUnavailable(seats))
        }
        HoldOutcome::OverLimit { held } => {
            refused("limit");
            Err(ApiError::invalid(
                "seat_ids",
                format!(
                    "you may hold at most {} seats of this showtime and already hold {held}",
                    holds.max_seats_per_user
                ),
            ))
        }
        HoldOutcome::Closed(Closed::Started) => {
            refused("closed");
            Err(ApiError::Conflict("the showtime has already started".into()))
        }
        HoldOutcome::Closed(Closed::Cancelled) => {
            refused("closed");
            Err(ApiError::Conflict("the showtime is cancelled".into()))
        }
        HoldOutcome::SaleNotOpen { opens_at_ms } => {
            refused("sale_not_open");
            Err(ApiError::SaleNotOpen { opens_at: millis_to_time(opens_at_ms) })
        }
        HoldOutcome::NotAdmitted => {
            refused("not_admitted");
            Err(ApiError::NotAdmitted)
        }
        HoldOutcome::Cold => Err(ApiError::Unavailable(anyhow::anyhow!("showtime cache stayed cold after warming"))),
    }
}

/// Loads a showtime's meta and sold seats from PostgreSQL into Redis.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn warm(state: &AppState, conn: &mut Conn, showtime_id: Uuid, keys: &ShowtimeKeys) -> Result<(), ApiError> {
    let row: Option<(DateTime<Utc>, DateTime<Utc>, crate::catalog::model::ShowtimeStatus)> =
        sqlx::query_as("select starts_at, ends_at, status from showtimes where id = $1")
            .bind(showtime_id)
            .fetch_optional(&state.db)
            .await?;
    let Some((starts_at, ends_at, status)) = row else {
        return Err(ApiError::NotFound("no such showtime"));
    };
    let sold: Vec<Uuid> = sqlx::query_scalar("select seat_id from booked_seats where showtime_id = $1")
        .bind(showtime_id)
        .fetch_all(&state.db)
        .await?;
    let meta = ShowtimeMeta {
        starts_at_ms: starts_at.timestamp_millis(),
        cancelled: status == crate::catalog::model::ShowtimeStatus::Cancelled,
    };
    store::warm(conn, keys, meta, &sold, sold_ttl(ends_at)).await.map_err(redis_error)?;
    super::gate::warm(&state.db, conn, &state.keys, showtime_id).await?;
    tracing::info!(sold = sold.len(), "showtime cache warmed from PostgreSQL");
    Ok(())
}

/// How long a showtime's sold set is kept: until a day after it ends.
pub fn sold_ttl(ends_at: DateTime<Utc>) -> Duration {
    let left = (ends_at + chrono::Duration::days(1) - Utc::now()).num_milliseconds();
    Duration::from_millis(left.max(60_000) as u64)
}

/// Tells the scripts that a showtime moved or was cancelled. Best effort: the cached meta
/// expires within an hour, and checkout re-checks the showtime in PostgreSQL.
pub async fn refresh_meta(state: &AppState, showtime_id: Uuid, starts_at: DateTime<Utc>, cancelled: bool) {
    let result = async {
        let mut conn = state.redis.get().await?;
        let meta = ShowtimeMeta { starts_at_ms: starts_at.timestamp_millis(), cancelled };
        store::set_meta(&mut conn, &state.keys.showtime(showtime_id), meta).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, showtime.id = %showtime_id, "cannot refresh the showtime's cached meta");
    }
}

/// The showtime of a hold, from the index written when it was granted, if the hold is the
/// caller's. The index outlives the hold's data, which tells "expired" from "never existed".
pub async fn showtime_of(state: &AppState, conn: &mut Conn, hold_id: Uuid, user: AuthUser) -> Result<Uuid, ApiError> {
    match store::indexed(conn, &state.keys, hold_id).await.map_err(redis_error)? {
        Some((showtime, owner)) if owner == user.id => Ok(showtime),
        _ => Err(NOT_FOUND),
    }
}

const NOT_FOUND: ApiError = ApiError::NotFound("no such hold");

/// A hold of the caller's; someone else's is a 404 like a missing one.
#[tracing::instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id))]
pub async fn get_hold(state: &AppState, user: AuthUser, hold_id: Uuid) -> Result<Hold, ApiError> {
    let mut conn = redis_conn(state).await?;
    let showtime_id = showtime_of(state, &mut conn, hold_id, user).await?;
    let keys = state.keys.showtime(showtime_id);
    match store::hold_view(&mut conn, &keys, hold_id).await.map_err(redis_error)? {
        // The index still names the caller: the hold expired (and was perhaps swept).
        HoldView::Expired => Err(ApiError::HoldExpired),
        HoldView::Live { user_id, .. } if user_id != user.id.to_string() => Err(NOT_FOUND),
        HoldView::Live { seats, expires_at_ms, checked_out, .. } => Ok(Hold {
            hold_id,
            showtime_id,
            seat_ids: seats,
            expires_at: millis_to_time(expires_at_ms),
            status: if checked_out { HoldStatus::Checkout } else { HoldStatus::Held },
        }),
    }
}

/// Gives a hold back; its seats are free at once. A hold this instance made is one Redis command
/// (its showtime is remembered, and `release.lua` checks the owner); any other id is looked up
/// in the hold index first, which also turns an unknown id into a 404 before any script runs.
#[tracing::instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id))]
pub async fn release_hold(state: &AppState, user: AuthUser, hold_id: Uuid) -> Result<(), ApiError> {
    let mut conn = redis_conn(state).await?;
    let showtime_id = match state.hold_showtimes.get(hold_id) {
        Some(showtime_id) => showtime_id,
        None => showtime_of(state, &mut conn, hold_id, user).await?,
    };
    let keys = state.keys.showtime(showtime_id);
    let outcome = store::release(&mut conn, &state.keys, &keys, hold_id, &user.id.to_string(), false)
        .await
        .map_err(redis_error)?;
    state.seat_status.invalidate(showtime_id);
    match outcome {
        ReleaseOutcome::Released => {
            state.hold_showtimes.forget(hold_id);
            metrics::counter!("seatgate_holds_released_total").increment(1);
            Ok(())
        }
        // The index names the caller, so the hold existed: it expired and was swept.
        ReleaseOutcome::Expired => Err(ApiError::HoldExpired),
        // No such hold (released or sold since), or someone else's.
        ReleaseOutcome::NotFound => Err(NOT_FOUND),
        ReleaseOutcome::Locked => Err(ApiError::Conflict("the hold is checked out; payment is under way".into())),
    }
}

/// The seat map: layout and prices from the catalog, status from Redis in one round trip.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn seat_map(state: &AppState, user: Option<AuthUser>, showtime_id: Uuid) -> Result<SeatMap, ApiError> {
    let (snapshot, layout) = seat_snapshot(state, showtime_id, None).await?;
    Ok(snapshot.render(&layout, user.map(|u| u.id.to_string()).as_deref()))
}

/// The seat map as JSON, the way `GET /api/v1/showtimes/{id}/seats` sends it: callers who hold
/// nothing in the showtime share one rendering per snapshot.
pub async fn seat_map_json(
    state: &AppState,
    user: Option<AuthUser>,
    showtime_id: Uuid,
) -> Result<actix_web::web::Bytes, ApiError> {
    let (snapshot, layout) = seat_snapshot(state, showtime_id, None).await?;
    snapshot.render_json(&layout, user.map(|u| u.id.to_string()).as_deref())
}

/// The seat counts of a showtime, as `GET /api/v1/showtimes/{id}/availability` sends them:
/// from the same snapshot as the seat map, one rendering per snapshot for everyone.
pub async fn availability_json(state: &AppState, showtime_id: Uuid) -> Result<actix_web::web::Bytes, ApiError> {
    let (snapshot, layout) = seat_snapshot(state, showtime_id, None).await?;
    snapshot.availability_json(&layout)
}

/// The showtime's current seat status (at most `SEATGATE_SEATMAP_CACHE_MS` old, never older
/// than this instance's last change to it, and read no earlier than `since`) and its layout.
pub async fn seat_snapshot(
    state: &AppState,
    showtime_id: Uuid,
    since: Option<std::time::Instant>,
) -> Result<(std::sync::Arc<Snapshot>, std::sync::Arc<super::layout::Layout>), ApiError> {
    let snapshot = state
        .seat_status
        .get_since(showtime_id, since, || async {
            let showtime = crate::catalog::service::get_showtime(state, showtime_id).await?;
            let keys = state.keys.showtime(showtime_id);
            let mut conn = redis_conn(state).await?;
            let mut status = store::seat_status(&mut conn, &keys).await.map_err(redis_error)?;
            if status == SeatStatus::Cold {
                warm(state, &mut conn, showtime_id, &keys).await?;
                status = store::seat_status(&mut conn, &keys).await.map_err(redis_error)?;
            }
            let SeatStatus::Map { sold, held } = status else {
                return Err(ApiError::Unavailable(anyhow::anyhow!("showtime cache stayed cold after warming")));
            };
            let held: HashMap<Uuid, String> = held.into_iter().map(|h| (h.seat_id, h.user_id)).collect();
            Ok(Snapshot::new(showtime, sold.into_iter().collect(), held))
        })
        .await?;
    let layout = state.layouts.get(&state.db, showtime_id).await?;
    Ok((snapshot, layout))
}

/// The sweeper's Redis half: drops expired holds of every showtime that can still have holds
/// (those on sale, and those that started less than a hold's lifetime ago). Returns the number
/// of holds dropped. Safe with several sweepers: each script run is atomic. Expired holds are
/// free the moment they expire anyway (every hold.lua purges first): this pass publishes their
/// `expired` events and keeps the keys small.
pub async fn sweep_expired_holds(state: &AppState) -> anyhow::Result<u64> {
    use futures_util::StreamExt;
    let since = Utc::now() - chrono::Duration::from_std(state.config.holds.max_lifetime)?;
    let showtimes = {
        let mut conn = state.db.acquire().await?;
        crate::catalog::repo::showtimes_starting_after(&mut conn, since).await?
    };
    let results: Vec<anyhow::Result<u64>> = futures_util::stream::iter(showtimes)
        .map(|showtime_id| async move {
            let mut conn = state.redis.get().await?;
            let (dropped, _) = store::sweep(&mut conn, &state.keys.showtime(showtime_id)).await?;
            if dropped > 0 {
                state.seat_status.invalidate(showtime_id);
            }
            Ok(dropped)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut dropped_total = 0;
    for result in results {
        dropped_total += result?;
    }
    if dropped_total > 0 {
        metrics::counter!("seatgate_holds_expired_total").increment(dropped_total);
        tracing::info!(holds = dropped_total, "expired holds swept");
    }
    Ok(dropped_total)
}
