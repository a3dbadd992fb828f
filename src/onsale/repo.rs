//! PostgreSQL side of sale settings: the `showtime_sales` row of a showtime (none = on sale
//! now, no queue). Functions take `&mut PgConnection` so the caller owns the transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

pub use crate::domain::{Admission, QueueStatus};
pub use crate::holds::gate::{SaleRow, find_sale};

/// What `upsert_sale` writes.
#[derive(Clone, Copy, Debug)]
pub struct NewSale {
    pub opens_at: DateTime<Utc>,
    /// (admit_per_minute, admission_minutes), or none for a sale without a waiting room.
    pub queue: Option<(i32, i32)>,
    pub admission: Admission,
}

/// Creates or replaces the sale settings; a queue keeps its paused/running status.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn upsert_sale(conn: &mut PgConnection, showtime_id: Uuid, sale: NewSale) -> sqlx::Result<SaleRow> {
    let (rate, window) = sale.queue.unzip();
    sqlx::query_as::<_, SaleRow>(
        r#"insert into showtime_sales (showtime_id, opens_at, admit_per_minute, admission_minutes, queue_status, admission)
           values ($1, $2, $3, $4, case when $3::integer is null then null else 'running'::sale_queue_status end, $5)
           on conflict (showtime_id) do update set
               opens_at = excluded.opens_at,
               admit_per_minute = excluded.admit_per_minute,
               admission_minutes = excluded.admission_minutes,
               queue_status = case when excluded.admit_per_minute is null then null
                                   else coalesce(showtime_sales.queue_status, 'running') end,
               admission = excluded.admission,
               updated_at = now()
           returning showtime_id, opens_at, admit_per_minute, admission_minutes, queue_status, admission, updated_at"#,
    )
    .bind(showtime_id)
    .bind(sale.opens_at)
    .bind(rate)
    .bind(window)
    .bind(sale.admission)
    .fetch_one(conn)
    .await
}

/// Pauses or resumes a queue; `None` when the showtime has no queued sale.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn set_queue_status(
    conn: &mut PgConnection,
    showtime_id: Uuid,
    status: QueueStatus,
) -> sqlx::Result<Option<SaleRow>> {
    sqlx::query_as::<_, SaleRow>(
        r#"update showtime_sales set queue_status = $2, updated_at = now()
            where showtime_id = $1 and queue_status is not null
           returning showtime_id, opens_at, admit_per_minute, admission_minutes, queue_status, admission, updated_at"#,
    )
    .bind(showtime_id)
    .bind(status)
    .fetch_optional(conn)
    .await
}

/// Sales with a waiting room whose showtime has not ended: what the admitter re-learns after
/// Redis lost its index.
#[tracing::instrument(skip_all)]
pub async fn queued_sales(conn: &mut PgConnection) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        r#"select s.showtime_id from showtime_sales s join showtimes t on t.id = s.showtime_id
            where s.queue_status is not null and t.status = 'scheduled' and t.starts_at > now()"#,
    )
    .fetch_all(conn)
    .await
}

/// The showtime's start and end, and whether it is cancelled; `None` if it does not exist.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn find_showtime_times(
    conn: &mut PgConnection,
    showtime_id: Uuid,
) -> sqlx::Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    sqlx::query_as("select starts_at, ends_at from showtimes where id = $1")
        .bind(showtime_id)
        .fetch_optional(conn)
        .await
}
