//! Every SQL statement of the ledger: reservations, payments, bookings, refunds. Each state
//! change is a guarded `update ... where status = <expected>` that reports whether it won, so
//! two processes can never both move one row (docs/DESIGN.md §9). Functions take
//! `&mut PgConnection`, so the caller owns the transaction. The statements of the booking
//! transaction are public constants, so the benchmark's pgbench script is built from exactly
//! what the worker runs ([`BOOKING_TRANSACTION`]).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::domain::{BookingStatus, PaymentStatus, ReservationStatus};

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

/// A row of `payments`. `Debug` never prints the payment token.
#[derive(Clone, FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub reservation_id: Uuid,
    pub status: PaymentStatus,
    pub amount_minor: i64,
    pub currency: String,
    /// The client's card token; cleared once the gateway has answered the charge.
    pub payment_token: Option<String>,
    pub gateway_ref: Option<String>,
    pub failure_reason: Option<String>,
    pub deliveries: i32,
}

impl std::fmt::Debug for PaymentRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentRow")
            .field("id", &self.id)
            .field("reservation_id", &self.reservation_id)
            .field("status", &self.status)
            .field("amount_minor", &self.amount_minor)
            .field("currency", &self.currency)
            .field("payment_token", &self.payment_token.as_ref().map(|_| "***"))
            .field("gateway_ref", &self.gateway_ref)
            .finish_non_exhaustive()
    }
}

const RESERVATION_COLUMNS: &str =
    "id, user_id, showtime_id, hold_id, status, amount_minor, currency, deadline, failure_reason, created_at";
const PAYMENT_COLUMNS: &str =
    "id, reservation_id, status, amount_minor, currency, payment_token, gateway_ref, failure_reason, deliveries";

// ---- reservations ----

/// What checkout writes: a reservation of a hold, with its priced seats.
#[derive(Clone, Debug)]
pub struct NewReservation<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub showtime_id: Uuid,
    pub hold_id: Uuid,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub deadline: DateTime<Utc>,
    /// (seat, category, price in minor units)
    pub seats: &'a [(Uuid, String, i64)],
}

/// Checkout's one statement (one statement is one transaction: one round trip, one commit,
/// no transaction left open while the API waits for CPU). It share-locks the showtime, so a
/// concurrent cancellation waits for it (and then cancels its reservation too), and writes
/// only while the showtime is scheduled, has not started, and still has the prices and currency
/// the amount was computed from: the reservation, its priced seats, the first payment attempt,
/// the payment task in the outbox (the message is part of its transaction) and the stored answer
/// of the Idempotency-Key. It fails with `reservations_hold_id_key` when the hold is already
/// checked out. The row says what the showtime was, and whether it wrote.
pub const CHECKOUT: &str = r#"with st as (
             select status, starts_at, prices, currency from showtimes where id = $3 for share
           ), ok as (
             select 1 from st where status = 'scheduled' and starts_at > now() and prices = $8 and currency = $6
           ), r as (
             insert into reservations (id, user_id, showtime_id, hold_id, status, amount_minor, currency, deadline)
             select $1, $2, $3, $4, 'payment_pending', $5, $6, $7 from ok
             returning id
           ), s as (
             insert into reservation_seats (reservation_id, seat_id, category, price_minor)
             select r.id, t.seat_id, t.category, t.price
               from r, unnest($9::uuid[], $10::text[], $11::bigint[]) as t(seat_id, category, price)
           ), p as (
             insert into payments (id, reservation_id, attempt, status, amount_minor, currency, payment_token, idempotency_key)
             select $12, r.id, 1, 'initiated', $5, $6, $13, $14 from r
           ), o as (
             insert into outbox (message_id, routing_key, payload) select $15, $16, $17 from r
           ), a as (
             update idempotency_keys set response_status = 202, response_body = $18
              where user_id = $2 and key = $14 and exists (select 1 from r)
           )
           select st.status, st.starts_at, st.prices, st.currency, exists (select 1 from r) as written from st"#;

/// Everything checkout writes, for [`record_checkout`].
#[derive(Debug)]
pub struct Checkout<'a> {
    pub reservation: &'a NewReservation<'a>,
    /// The showtime's prices the seats were priced from; nothing is written if they changed.
    pub prices: &'a std::collections::BTreeMap<String, i64>,
    pub payment_id: Uuid,
    pub payment_token: &'a str,
    pub idempotency_key: &'a str,
    /// The payment task, staged in the outbox by the same statement.
    pub task: &'a crate::messaging::outbox::Staged,
    /// The answer stored under the Idempotency-Key.
    pub answer: &'a serde_json::Value,
}

/// What [`record_checkout`] found.
#[derive(Debug)]
pub enum CheckoutWritten {
    Written,
    NoShowtime,
    /// Nothing written: the showtime as it is now (cancelled, started, or other prices).
    Refused(crate::catalog::repo::ShowtimeForSale),
}

#[derive(FromRow)]
struct CheckoutRow {
    #[sqlx(flatten)]
    showtime: crate::catalog::repo::ShowtimeForSale,
    written: bool,
}

#[tracing::instrument(skip_all, fields(reservation.id = %c.reservation.id))]
pub async fn record_checkout(conn: &mut PgConnection, c: &Checkout<'_>) -> Result<CheckoutWritten, sqlx::Error> {
    let r = c.reservation;
    let seats: Vec<Uuid> = r.seats.iter().map(|p| p.0).collect();
    let categories: Vec<&str> = r.seats.iter().map(|p| p.1.as_str()).collect();
    let prices: Vec<i64> = r.seats.iter().map(|p| p.2).collect();
    let row: Option<CheckoutRow> = sqlx::query_as(CHECKOUT)
        .bind(r.id)
        .bind(r.user_id)
        .bind(r.showtime_id)
        .bind(r.hold_id)
        .bind(r.amount_minor)
        .bind(r.currency)
        .bind(r.deadline)
        .bind(sqlx::types::Json(c.prices))
        .bind(&seats)
        .bind(&categories)
        .bind(&prices)
        .bind(c.payment_id)
        .bind(c.payment_token)
        .bind(c.idempotency_key)
        .bind(c.task.message_id)
        .bind(&c.task.routing_key)
        .bind(sqlx::types::Json(c.task.payload()))
        .bind(c.answer)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        None => CheckoutWritten::NoShowtime,
        Some(row) if row.written => CheckoutWritten::Written,
        Some(row) => CheckoutWritten::Refused(row.showtime),
    })
}

#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn find_reservation(conn: &mut PgConnection, id: Uuid) -> Result<Option<ReservationRow>, sqlx::Error> {
    sqlx::query_as::<_, ReservationRow>(sqlx::AssertSqlSafe(format!(
        "select {RESERVATION_COLUMNS} from reservations where id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The reservation of a hold, if it was checked out.
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

/// Seat ids of a reservation in layout order, with when its showtime ends (how long the sold
/// set is worth keeping), in one statement: what the payment worker needs to claim and sell.
#[tracing::instrument(skip_all, fields(reservation.id = %r.id))]
pub async fn seats_to_sell(
    conn: &mut PgConnection,
    r: &ReservationRow,
) -> Result<(Vec<Uuid>, DateTime<Utc>), sqlx::Error> {
    sqlx::query_as(
        r#"select coalesce(array(select rs.seat_id from reservation_seats rs join seats s on s.id = rs.seat_id
                                  where rs.reservation_id = $1 order by s.row_index, s.number), '{}'),
                  (select ends_at from showtimes where id = $2)"#,
    )
    .bind(r.id)
    .bind(r.showtime_id)
    .fetch_one(conn)
    .await
}

/// The guarded move of a reservation: `$1` id, `$2` from, `$3` to, `$4` reason (or null).
pub const MOVE_RESERVATION: &str = r#"update reservations set status = $3, failure_reason = coalesce($4, failure_reason), updated_at = now()
            where id = $1 and status = $2"#;

/// Moves a reservation from `from` to `to`; `false` when it was not in `from`.
#[tracing::instrument(skip_all, fields(reservation.id = %id, ?from, ?to))]
pub async fn move_reservation(
    conn: &mut PgConnection,
    id: Uuid,
    from: ReservationStatus,
    to: ReservationStatus,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(MOVE_RESERVATION).bind(id).bind(from).bind(to).bind(reason).execute(conn).await?;
    Ok(done.rows_affected() == 1)
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

/// Pending reservations past their deadline, locked for the caller's transaction (other
/// sweepers skip them).
pub async fn lock_overdue_reservations(conn: &mut PgConnection, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"select id from reservations where status = 'payment_pending' and deadline < now()
            order by deadline limit $1 for update skip locked"#,
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Pending reservations of a showtime, locked for the caller's transaction.
pub async fn lock_pending_of_showtime(conn: &mut PgConnection, showtime_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select id from reservations where showtime_id = $1 and status = 'payment_pending' for update")
        .bind(showtime_id)
        .fetch_all(conn)
        .await
}

// ---- payments ----

#[tracing::instrument(skip_all, fields(payment.id = %id))]
pub async fn find_payment(conn: &mut PgConnection, id: Uuid) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as::<_, PaymentRow>(sqlx::AssertSqlSafe(format!(
        "select {PAYMENT_COLUMNS} from payments where id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The latest payment of a reservation.
#[tracing::instrument(skip_all, fields(reservation.id = %reservation_id))]
pub async fn payment_of(conn: &mut PgConnection, reservation_id: Uuid) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as::<_, PaymentRow>(sqlx::AssertSqlSafe(format!(
        "select {PAYMENT_COLUMNS} from payments where reservation_id = $1 order by attempt desc limit 1"
    )))
    .bind(reservation_id)
    .fetch_optional(conn)
    .await
}

/// The charge's guard: `initiated` (or `charging`, a redelivery) becomes `charging` while its
/// reservation is still `payment_pending`, and the delivery is counted. Only a winner may call
/// the gateway's charge; `false` means the payment or its reservation moved on.
pub const BEGIN_CHARGE: &str = r#"update payments p set status = 'charging', deliveries = deliveries + 1, updated_at = now()
            from reservations r
           where p.id = $1 and p.status in ('initiated', 'charging')
             and r.id = p.reservation_id and r.status = 'payment_pending'"#;

#[tracing::instrument(skip_all, fields(payment.id = %id))]
pub async fn begin_charge(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(BEGIN_CHARGE).bind(id).execute(conn).await?.rows_affected() == 1)
}

/// The booking statement: the charged payment `succeeded`, its token forgotten.
pub const SUCCEED_PAYMENT: &str = r#"update payments set status = 'succeeded', gateway_ref = $2, payment_token = null, updated_at = now()
            where id = $1 and status = 'charging'"#;

/// `charging` -> `succeeded` (the booking's transaction); `false` when someone else moved it.
#[tracing::instrument(skip_all, fields(payment.id = %id))]
pub async fn succeed_payment(conn: &mut PgConnection, id: Uuid, gateway_ref: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(SUCCEED_PAYMENT).bind(id).bind(gateway_ref).execute(conn).await?.rows_affected() == 1)
}

/// `charging` -> `failed` after the gateway declined (no money moved).
#[tracing::instrument(skip_all, fields(payment.id = %id))]
pub async fn decline_payment(conn: &mut PgConnection, id: Uuid, reason: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"update payments set status = 'failed', failure_reason = $2, payment_token = null, updated_at = now()
            where id = $1 and status = 'charging'"#,
    )
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Fails the payment still `initiated` of a reservation that will not be paid (expired, or its
/// showtime cancelled): nobody ever charged it, and from now on nobody can (the charge's guard
/// needs `initiated`). A payment already `charging` is left to its worker or the reconciler.
#[tracing::instrument(skip_all, fields(reservation.id = %reservation_id))]
pub async fn fail_uncharged_payments(
    conn: &mut PgConnection,
    reservation_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"update payments set status = 'failed', failure_reason = $2, payment_token = null, updated_at = now()
            where reservation_id = $1 and status = 'initiated'"#,
    )
    .bind(reservation_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// The refund's guard: the payment moves from one of `from` to `refunding`. Only the winner may
/// call the gateway's refund; `false` means someone else settled or is settling it.
#[tracing::instrument(skip_all, fields(payment.id = %id, ?from))]
pub async fn begin_refund(
    conn: &mut PgConnection,
    id: Uuid,
    from: &[PaymentStatus],
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"update payments set status = 'refunding', failure_reason = $3, payment_token = null, updated_at = now()
            where id = $1 and status = any($2)"#,
    )
    .bind(id)
    .bind(from)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// After the gateway answered a refund: `refunding` -> `refunded` when money went back, or ->
/// `failed` when the gateway had charged nothing.
#[tracing::instrument(skip_all, fields(payment.id = %id, money_returned))]
pub async fn finish_refund(conn: &mut PgConnection, id: Uuid, money_returned: bool) -> Result<bool, sqlx::Error> {
    let to = if money_returned { PaymentStatus::Refunded } else { PaymentStatus::Failed };
    let done =
        sqlx::query("update payments set status = $2, updated_at = now() where id = $1 and status = 'refunding'")
            .bind(id)
            .bind(to)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// The reconciler's work list: payments that may hold money without a ticket and that nobody
/// has touched for `idle_secs`: `refunding` (a refund interrupted between its guard and its
/// record) and `charging` of a reservation that will never be confirmed (expired, cancelled or
/// failed) or is past its deadline. Locked for the caller's transaction.
pub async fn lock_unsettled_payments(
    conn: &mut PgConnection,
    idle_secs: f64,
    limit: i64,
) -> Result<Vec<(Uuid, PaymentStatus, ReservationStatus)>, sqlx::Error> {
    sqlx::query_as(
        r#"select p.id, p.status, r.status from payments p join reservations r on r.id = p.reservation_id
            where p.status in ('charging', 'refunding') and p.updated_at < now() - make_interval(secs => $1)
              and (p.status = 'refunding' or r.status <> 'payment_pending' or r.deadline < now())
            order by p.updated_at limit $2 for update of p skip locked"#,
    )
    .bind(idle_secs)
    .bind(limit)
    .fetch_all(conn)
    .await
}

// ---- bookings ----

/// The booking statement: the booking of a confirmed reservation, with its ticket code.
pub const INSERT_BOOKING: &str = r#"insert into bookings (id, reservation_id, user_id, showtime_id, ticket_code, amount_minor, currency)
           values ($1, $2, $3, $4, $5, $6, $7)"#;
/// The booking statement: the guard against double booking. Fails with `booked_seats_pkey`
/// when any seat is already sold.
pub const INSERT_BOOKED_SEATS: &str = r#"insert into booked_seats (showtime_id, seat_id, booking_id)
           select $1, seat_id, $2 from unnest($3::uuid[]) as t(seat_id)"#;

/// The statements of the payment worker's booking transaction, in the order it runs them
/// (`finalise` in `charge.rs`), with the outbox row of its booking event last.
pub const BOOKING_TRANSACTION: [&str; 5] =
    [SUCCEED_PAYMENT, MOVE_RESERVATION, INSERT_BOOKING, INSERT_BOOKED_SEATS, crate::messaging::outbox::STAGE];

#[tracing::instrument(skip_all, fields(reservation.id = %r.id))]
pub async fn insert_booking(
    conn: &mut PgConnection,
    r: &ReservationRow,
    booking_id: Uuid,
    ticket_code: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_BOOKING)
        .bind(booking_id)
        .bind(r.id)
        .bind(r.user_id)
        .bind(r.showtime_id)
        .bind(ticket_code)
        .bind(r.amount_minor)
        .bind(&r.currency)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(booking.id = %booking_id, seats = seats.len()))]
pub async fn insert_booked_seats(
    conn: &mut PgConnection,
    showtime_id: Uuid,
    booking_id: Uuid,
    seats: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_BOOKED_SEATS).bind(showtime_id).bind(booking_id).bind(seats).execute(conn).await?;
    Ok(())
}

/// A booking with what cancelling it needs to know, locked for the caller's transaction.
#[derive(Debug, FromRow)]
pub struct CancellableBooking {
    pub reservation_id: Uuid,
    pub showtime_id: Uuid,
    pub status: BookingStatus,
    pub starts_at: DateTime<Utc>,
}

pub async fn lock_booking_of_user(
    conn: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
) -> Result<Option<CancellableBooking>, sqlx::Error> {
    sqlx::query_as(
        r#"select b.reservation_id, b.showtime_id, b.status, s.starts_at
             from bookings b join showtimes s on s.id = b.showtime_id
            where b.id = $1 and b.user_id = $2 for update of b"#,
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Whether the booking's ticket was checked in at the door (`checkins`, written by `tickets/`).
pub async fn booking_checked_in(conn: &mut PgConnection, booking_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from checkins where booking_id = $1)")
        .bind(booking_id)
        .fetch_one(conn)
        .await
}

/// `confirmed` -> `cancelled` for the given bookings; frees their `booked_seats`. Returns the
/// (booking, reservation) pairs that moved and the seats freed.
pub async fn cancel_bookings(
    conn: &mut PgConnection,
    booking_ids: &[Uuid],
) -> Result<(Vec<(Uuid, Uuid)>, Vec<Uuid>), sqlx::Error> {
    let moved: Vec<(Uuid, Uuid)> = sqlx::query_as(
        r#"update bookings set status = 'cancelled', cancelled_at = now()
            where id = any($1) and status = 'confirmed' returning id, reservation_id"#,
    )
    .bind(booking_ids)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = moved.iter().map(|m| m.0).collect();
    let seats = sqlx::query_scalar("delete from booked_seats where booking_id = any($1) returning seat_id")
        .bind(&ids)
        .fetch_all(conn)
        .await?;
    Ok((moved, seats))
}

/// Confirmed bookings of a showtime.
pub async fn confirmed_bookings_of_showtime(
    conn: &mut PgConnection,
    showtime_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select id from bookings where showtime_id = $1 and status = 'confirmed'")
        .bind(showtime_id)
        .fetch_all(conn)
        .await
}

/// Sold seats of a showtime (`booked_seats`), the truth behind Redis' sold set.
pub async fn booked_seats_of(conn: &mut PgConnection, showtime_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select seat_id from booked_seats where showtime_id = $1")
        .bind(showtime_id)
        .fetch_all(conn)
        .await
}

/// Showtimes not yet over whose bookings changed in the last `secs` (booked or cancelled):
/// those whose sold set in Redis may lag behind `booked_seats`.
pub async fn showtimes_with_recent_bookings(conn: &mut PgConnection, secs: f64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"select distinct b.showtime_id from bookings b join showtimes s on s.id = b.showtime_id
            where s.ends_at > now() - interval '1 day'
              and (b.created_at > now() - make_interval(secs => $1)
                   or b.cancelled_at > now() - make_interval(secs => $1))"#,
    )
    .bind(secs)
    .fetch_all(conn)
    .await
}

/// When a showtime ends (how long its sold set is worth keeping).
pub async fn showtime_ends_at(conn: &mut PgConnection, showtime_id: Uuid) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("select ends_at from showtimes where id = $1").bind(showtime_id).fetch_one(conn).await
}
