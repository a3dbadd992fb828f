//! Sale settings, PostgreSQL to Redis: the one way the admission gate's `sale` key is (re)built.
//! The hold path calls [`warm`] when hold.lua answers `cold` (a Redis restart, or the mirror's
//! short TTL ran out), so the gate never guesses: a showtime without settings is mirrored as
//! "open since 0, no queue", and a missing key is never read as that.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::repo::{self, Admission, QueueStatus, SaleRow};
use super::store::{self, QueueMirror, SaleMirror};
use crate::error::ApiError;
use crate::holds::service::redis_error;
use crate::holds::store::Conn;
use crate::infra::redis::Keys;

/// The mirror of a settings row (or of none) for a showtime ending at `ends_at`.
pub fn mirror_of(row: Option<&SaleRow>, ends_at: DateTime<Utc>) -> SaleMirror {
    let ends_at_ms = ends_at.timestamp_millis();
    let Some(row) = row else { return SaleMirror::open_now(ends_at_ms) };
    let queue = match (row.admit_per_minute, row.admission_minutes, row.queue_status) {
        (Some(rate), Some(minutes), Some(status)) => Some(QueueMirror {
            admit_per_minute: rate.max(1) as u32,
            window: std::time::Duration::from_secs(minutes.max(1) as u64 * 60),
            paused: status == QueueStatus::Paused,
        }),
        _ => None,
    };
    SaleMirror { opens_at_ms: row.opens_at.timestamp_millis(), queue, admission: row.admission, ends_at_ms }
}

/// Reads the showtime's sale settings from PostgreSQL and writes their mirror. `NotFound` for a
/// showtime that does not exist.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn warm(db: &PgPool, conn: &mut Conn, keys: &Keys, showtime_id: Uuid) -> Result<SaleMirror, ApiError> {
    let mut pg = db.acquire().await?;
    let (_, ends_at) =
        repo::find_showtime_times(&mut pg, showtime_id).await?.ok_or(ApiError::NotFound("no such showtime"))?;
    let row = repo::find_sale(&mut pg, showtime_id).await?;
    drop(pg);
    let sale = mirror_of(row.as_ref(), ends_at);
    store::mirror(conn, &keys.showtime(showtime_id), &keys.queued_showtimes(), showtime_id, &sale)
        .await
        .map_err(redis_error)?;
    tracing::debug!(queue = sale.queue.is_some(), "sale settings mirrored from PostgreSQL");
    Ok(sale)
}

/// True when a queued sale lets every signed-in user hold.
pub fn fail_open(sale: &SaleMirror) -> bool {
    sale.queue.is_some() && sale.admission == Admission::FailOpen
}
