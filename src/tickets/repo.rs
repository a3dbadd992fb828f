//! SQL of check-in: the booking a ticket names, the guarded insert that makes entry exactly
//! once (`checkins_pkey`), the nonces of offline scans, and what a showtime's bundle lists.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::domain::BookingStatus;

/// A booking as the door needs it.
#[derive(Clone, Debug, FromRow)]
pub struct DoorBooking {
    pub id: Uuid,
    pub showtime_id: Uuid,
    pub status: BookingStatus,
    pub seat_ids: Vec<Uuid>,
}

const DOOR_BOOKING: &str = r#"select b.id, b.showtime_id, b.status,
       coalesce(array(select rs.seat_id from reservation_seats rs join seats s on s.id = rs.seat_id
                       where rs.reservation_id = b.reservation_id order by s.row_index, s.number), '{}') as seat_ids
  from bookings b"#;

#[tracing::instrument(skip_all, fields(booking.id = %id))]
pub async fn find_booking(conn: &mut PgConnection, id: Uuid) -> Result<Option<DoorBooking>, sqlx::Error> {
    sqlx::query_as::<_, DoorBooking>(sqlx::AssertSqlSafe(format!("{DOOR_BOOKING} where b.id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The booking of a ticket code, as typed (codes are stored upper-case; staff may type lower).
#[tracing::instrument(skip_all)]
pub async fn find_booking_by_code(conn: &mut PgConnection, code: &str) -> Result<Option<DoorBooking>, sqlx::Error> {
    sqlx::query_as::<_, DoorBooking>(sqlx::AssertSqlSafe(format!(
        "{DOOR_BOOKING} where b.ticket_code in ($1, upper($1)) limit 1"
    )))
    .bind(code)
    .fetch_optional(conn)
    .await
}

/// A check-in that was recorded.
#[derive(Clone, Debug, FromRow)]
pub struct CheckinRow {
    pub checked_in_at: DateTime<Utc>,
    pub gate: Option<String>,
}

/// Where a scan came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "checkin_source", rename_all = "lowercase")]
pub enum Source {
    Online,
    Offline,
}

/// The guard: records the booking's entry unless one is recorded already. `Ok(None)` means
/// another scan won; [`find_checkin`] says when and where.
#[tracing::instrument(skip_all, fields(booking.id = %booking.id))]
pub async fn insert_checkin(
    conn: &mut PgConnection,
    booking: &DoorBooking,
    at: DateTime<Utc>,
    gate: Option<&str>,
    source: Source,
    scanned_by: Uuid,
) -> Result<Option<CheckinRow>, sqlx::Error> {
    sqlx::query_as::<_, CheckinRow>(
        // Only a confirmed booking, read under a share lock: a cancellation that runs at the same
        // moment either commits first (then nothing is inserted: see `find_checkin`) or waits
        // for this check-in and then refuses to cancel a used ticket.
        r#"insert into checkins (booking_id, showtime_id, checked_in_at, gate, source, scanned_by)
           select $1, $2, $3, $4, $5, $6 from bookings where id = $1 and status = 'confirmed' for share
           on conflict on constraint checkins_pkey do nothing
           returning checked_in_at, gate"#,
    )
    .bind(booking.id)
    .bind(booking.showtime_id)
    .bind(at)
    .bind(gate)
    .bind(source)
    .bind(scanned_by)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(skip_all, fields(booking.id = %booking_id))]
pub async fn find_checkin(conn: &mut PgConnection, booking_id: Uuid) -> Result<Option<CheckinRow>, sqlx::Error> {
    sqlx::query_as::<_, CheckinRow>("select checked_in_at, gate from checkins where booking_id = $1")
        .bind(booking_id)
        .fetch_optional(conn)
        .await
}

/// Claims an offline scan's nonce; false when it was claimed before (by a committed
/// transaction: a concurrent claim waits for the first to finish).
#[tracing::instrument(skip_all)]
pub async fn claim_nonce(conn: &mut PgConnection, nonce: &str, scanned_by: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "insert into checkin_nonces (nonce, scanned_by) values ($1, $2) on conflict on constraint checkin_nonces_pkey do nothing",
    )
    .bind(nonce)
    .bind(scanned_by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[tracing::instrument(skip_all)]
pub async fn save_nonce_result(conn: &mut PgConnection, nonce: &str, result: &Value) -> Result<(), sqlx::Error> {
    sqlx::query("update checkin_nonces set result = $2 where nonce = $1")
        .bind(nonce)
        .bind(result)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn nonce_result(conn: &mut PgConnection, nonce: &str) -> Result<Option<Value>, sqlx::Error> {
    let row: Option<Option<Value>> = sqlx::query_scalar("select result from checkin_nonces where nonce = $1")
        .bind(nonce)
        .fetch_optional(conn)
        .await?;
    Ok(row.flatten())
}

/// Whether the showtime exists.
pub async fn showtime_exists(conn: &mut PgConnection, showtime_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists(select 1 from showtimes where id = $1)").bind(showtime_id).fetch_one(conn).await
}

/// Cancelled bookings of a showtime: the bundle's revocation list.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn cancelled_bookings(conn: &mut PgConnection, showtime_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select id from bookings where showtime_id = $1 and status = 'cancelled' order by id")
        .bind(showtime_id)
        .fetch_all(conn)
        .await
}

/// Bookings of a showtime already checked in.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn checked_in_bookings(conn: &mut PgConnection, showtime_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select booking_id from checkins where showtime_id = $1 order by booking_id")
        .bind(showtime_id)
        .fetch_all(conn)
        .await
}
