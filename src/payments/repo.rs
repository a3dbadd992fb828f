//! SQL of reservations, payments and bookings. Each state change is guarded by the expected
//! current state and reports whether it won, so two workers can never both move one row.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::domain::{PaymentStatus, ReservationStatus};

/// A row of `reservations`.
#[derive(Clone, Debug, FromRow)]
pub struct ReservationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub showtime_id: Uuid,
    pub hold_id: Uuid,
    pub status: ReservationStatus,
    pub amount_minor: i64,
    pub currency: String,
    pub deadline: DateTime<Utc>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A row of `payments`.
#[derive(Clone, Debug, FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub reservation_id: Uuid,
    pub status: PaymentStatus,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_token: String,
    pub gateway_ref: Option<String>,
}

const RESERVATION_COLUMNS: &str =
    "id, user_id, showtime_id, hold_id, status, amount_minor, currency, deadline, failure_reason, created_at";

#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn find_reservation(conn: &mut PgConnection, id: Uuid) -> Result<Option<ReservationRow>, sqlx::Error> {
    sqlx::query_as::<_, ReservationRow>(sqlx::AssertSqlSafe(format!(
        "select {RESERVATION_COLUMNS} from reservations where id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(skip_all, fields(hold.id = %hold_id))]
pub async fn find_reservation_by_hold(
    conn: &mut PgConnection,
    hold_id: Uuid,
) -> Result<Option<ReservationRow>, sqlx::Error> {
    sqlx::query_as::<_, ReservationRow>(sqlx::AssertSqlSafe(format!(
        "select {RESERVATION_COLUMNS} from reservations where hold_id = $1"
    )))
    .bind(hold_id)
    .fetch_optional(conn)
    .await
}

/// Seat ids of a reservation, in layout order.
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn reservation_seats(conn: &mut PgConnection, id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"select rs.seat_id from reservation_seats rs join seats s on s.id = rs.seat_id
            where rs.reservation_id = $1 order by s.row_index, s.number"#,
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

#[tracing::instrument(skip_all, fields(payment.id = %id))]
pub async fn find_payment(conn: &mut PgConnection, id: Uuid) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as::<_, PaymentRow>(
        r#"select id, reservation_id, status, amount_minor, currency, payment_token, gateway_ref
             from payments where id = $1"#,
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The latest payment of a reservation.
#[tracing::instrument(skip_all, fields(reservation.id = %reservation_id))]
pub async fn payment_of(conn: &mut PgConnection, reservation_id: Uuid) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as::<_, PaymentRow>(
        r#"select id, reservation_id, status, amount_minor, currency, payment_token, gateway_ref
             from payments where reservation_id = $1 order by attempt desc limit 1"#,
    )
    .bind(reservation_id)
    .fetch_optional(conn)
    .await
}

/// Counts a delivery of the payment's task to a worker.
pub async fn count_delivery(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("update payments set deliveries = deliveries + 1, updated_at = now() where id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a charged payment that could not become a booking `refunded`, from `initiated` or
/// from `failed` (the sweeper fails unpaid payments at the reservation's deadline, possibly
/// while the gateway was charging); `false` when it had already moved elsewhere.
#[tracing::instrument(skip_all, fields(payment.id = %id))]
pub async fn refund_unsettled_payment(conn: &mut PgConnection, id: Uuid, reason: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"update payments set status = 'refunded', failure_reason = $2, updated_at = now()
            where id = $1 and status in ('initiated', 'failed')"#,
    )
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Fails the payment still `initiated` of a reservation that will not be paid (expired, or its
/// showtime cancelled). A worker charging it at this moment then loses its guard and refunds.
#[tracing::instrument(skip_all, fields(reservation.id = %reservation_id))]
pub async fn fail_unpaid_payments(
    conn: &mut PgConnection,
    reservation_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"update payments set status = 'failed', failure_reason = $2, updated_at = now()
            where reservation_id = $1 and status = 'initiated'"#,
    )
    .bind(reservation_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records why a reservation that keeps its status (say `expired`) had its money returned.
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn explain_reservation(conn: &mut PgConnection, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query("update reservations set failure_reason = $2, updated_at = now() where id = $1")
        .bind(id)
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves a payment from `from` to `to`; `false` when it was not in `from`.
#[tracing::instrument(skip_all, fields(payment.id = %id, ?from, ?to))]
pub async fn move_payment(
    conn: &mut PgConnection,
    id: Uuid,
    from: PaymentStatus,
    to: PaymentStatus,
    gateway_ref: Option<&str>,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"update payments set status = $3, gateway_ref = coalesce($4, gateway_ref),
                  failure_reason = coalesce($5, failure_reason), updated_at = now()
            where id = $1 and status = $2"#,
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(gateway_ref)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a reservation from `from` to `to`; `false` when it was not in `from`.
#[tracing::instrument(skip_all, fields(reservation.id = %id, ?from, ?to))]
pub async fn move_reservation(
    conn: &mut PgConnection,
    id: Uuid,
    from: ReservationStatus,
    to: ReservationStatus,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"update reservations set status = $3, failure_reason = coalesce($4, failure_reason), updated_at = now()
            where id = $1 and status = $2"#,
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A booking of a confirmed reservation, with its ticket code.
#[tracing::instrument(skip_all, fields(reservation.id = %r.id))]
pub async fn insert_booking(
    conn: &mut PgConnection,
    r: &ReservationRow,
    ticket_code: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        r#"insert into bookings (id, reservation_id, user_id, showtime_id, ticket_code, amount_minor, currency)
           values ($1, $2, $3, $4, $5, $6, $7) returning id"#,
    )
    .bind(Uuid::now_v7())
    .bind(r.id)
    .bind(r.user_id)
    .bind(r.showtime_id)
    .bind(ticket_code)
    .bind(r.amount_minor)
    .bind(&r.currency)
    .fetch_one(conn)
    .await
}

/// The guard: fails with `booked_seats_pkey` when any seat is already sold.
#[tracing::instrument(skip_all, fields(booking.id = %booking_id, seats = seats.len()))]
pub async fn insert_booked_seats(
    conn: &mut PgConnection,
    showtime_id: Uuid,
    booking_id: Uuid,
    seats: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"insert into booked_seats (showtime_id, seat_id, booking_id)
           select $1, seat_id, $2 from unnest($3::uuid[]) as t(seat_id)"#,
    )
    .bind(showtime_id)
    .bind(booking_id)
    .bind(seats)
    .execute(conn)
    .await?;
    Ok(())
}
