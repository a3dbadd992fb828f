//! The admission gate's data in Redis: the sale settings of a showtime, mirrored from
//! PostgreSQL (`showtime_sales`) under the showtime's hash tag, which `lua/_admission.lua` reads
//! inside every hold script (invariant 9; docs/DESIGN.md §6). It lives with the holds because the
//! hold scripts read it: a cold showtime is warmed with its sale mirror, so the gate never
//! guesses. A showtime without settings is mirrored as "open since 0, no queue", and a missing
//! key is never read as that. The on-sale capability (`onsale/`) writes the settings and calls
//! [`warm`] after each change.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::service::redis_error;
use super::store::Conn;
use crate::domain::{Admission, QueueStatus};
use crate::error::ApiError;
use crate::infra::redis::{Keys, ShowtimeKeys};

/// How long the sale mirror lives before the next hold re-reads it from PostgreSQL. Short, so a
/// mirror write lost to a Redis hiccup after the PostgreSQL commit heals within minutes.
pub const SALE_TTL: Duration = Duration::from_secs(600);

/// One `showtime_sales` row.
#[derive(Clone, Debug, FromRow)]
pub struct SaleRow {
    pub showtime_id: Uuid,
    pub opens_at: DateTime<Utc>,
    pub admit_per_minute: Option<i32>,
    pub admission_minutes: Option<i32>,
    pub queue_status: Option<QueueStatus>,
    pub admission: Admission,
    pub updated_at: DateTime<Utc>,
}

/// The sale settings of a showtime, if it has any.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn find_sale(conn: &mut PgConnection, showtime_id: Uuid) -> sqlx::Result<Option<SaleRow>> {
    sqlx::query_as::<_, SaleRow>(
        r#"select showtime_id, opens_at, admit_per_minute, admission_minutes, queue_status, admission, updated_at
             from showtime_sales where showtime_id = $1"#,
    )
    .bind(showtime_id)
    .fetch_optional(conn)
    .await
}

/// The sale settings as the scripts see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaleMirror {
    /// 0 for a showtime without settings (on sale now).
    pub opens_at_ms: i64,
    pub queue: Option<QueueMirror>,
    pub admission: Admission,
    pub ends_at_ms: i64,
}

/// A waiting room's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueMirror {
    pub admit_per_minute: u32,
    pub window: Duration,
    pub paused: bool,
}

impl SaleMirror {
    /// A showtime without sale settings: on sale now, no queue.
    pub fn open_now(ends_at_ms: i64) -> Self {
        Self { opens_at_ms: 0, queue: None, admission: Admission::Enforced, ends_at_ms }
    }
}

/// Writes the sale mirror (replacing the old one at once) and keeps the admitter's index of
/// queued showtimes in step.
#[tracing::instrument(skip_all)]
pub async fn mirror(
    conn: &mut Conn,
    k: &ShowtimeKeys,
    queued_index: &str,
    showtime_id: Uuid,
    sale: &SaleMirror,
) -> anyhow::Result<()> {
    let mut fields = vec![
        ("opens_at", sale.opens_at_ms.to_string()),
        ("queue", if sale.queue.is_some() { "1" } else { "0" }.to_owned()),
        (
            "admission",
            match sale.admission {
                Admission::Enforced => "enforced",
                Admission::FailOpen => "fail_open",
            }
            .to_owned(),
        ),
        ("ends_at", sale.ends_at_ms.to_string()),
    ];
    if let Some(q) = sale.queue {
        fields.push(("rate", q.admit_per_minute.to_string()));
        fields.push(("window_ms", q.window.as_millis().to_string()));
        fields.push(("status", if q.paused { "paused" } else { "running" }.to_owned()));
    }
    // The mirror lives in the showtime's slot, the index is one global set (on a cluster, on
    // another node): two round trips, never one transaction across slots. The mirror is written
    // first, so the admitter never finds an indexed showtime without its queue settings; if the
    // second step is lost, the admitter relearns the index from PostgreSQL (`onsale::admitter`).
    let _: () = redis::pipe()
        .atomic()
        .del(&k.sale)
        .ignore()
        .hset_multiple(&k.sale, &fields)
        .ignore()
        .pexpire(&k.sale, SALE_TTL.as_millis() as i64)
        .ignore()
        .query_async(conn)
        .await
        .context("write the sale mirror")?;
    let index = if sale.queue.is_some() { "SADD" } else { "SREM" };
    let _: () = redis::cmd(index)
        .arg(queued_index)
        .arg(showtime_id.to_string())
        .query_async(conn)
        .await
        .context("update the index of queued showtimes")?;
    Ok(())
}

/// The showtime's start and end; `None` if it does not exist.
async fn showtime_times(
    conn: &mut PgConnection,
    showtime_id: Uuid,
) -> sqlx::Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    sqlx::query_as("select starts_at, ends_at from showtimes where id = $1")
        .bind(showtime_id)
        .fetch_optional(conn)
        .await
}

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
    let (_, ends_at) = showtime_times(&mut pg, showtime_id).await?.ok_or(ApiError::NotFound("no such showtime"))?;
    let row = find_sale(&mut pg, showtime_id).await?;
    drop(pg);
    let sale = mirror_of(row.as_ref(), ends_at);
    mirror(conn, &keys.showtime(showtime_id), &keys.queued_showtimes(), showtime_id, &sale)
        .await
        .map_err(redis_error)?;
    tracing::debug!(queue = sale.queue.is_some(), "sale settings mirrored from PostgreSQL");
    Ok(sale)
}

/// True when a queued sale lets every signed-in user hold.
pub fn fail_open(sale: &SaleMirror) -> bool {
    sale.queue.is_some() && sale.admission == Admission::FailOpen
}
