//! Rules of checkout, reservations and bookings.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use super::idempotency::{self, Claim};
use crate::auth::AuthUser;
use crate::catalog::model::ShowtimeStatus;
use crate::domain::{BookingStatus, PaymentStatus, ReservationStatus};
use crate::error::{ApiError, on_constraint};
use crate::holds::service::{redis_conn, redis_error, showtime_of};
use crate::holds::store::{self, ExtendOutcome};
use crate::messaging::messages::{PaymentAction, PaymentTask};
use crate::messaging::publisher::publish_json;
use crate::messaging::topology::{CHARGE_KEY, REFUND_KEY};
use crate::paging::{Page, PageQuery, Paging};
use crate::payments::repo as payments;
use crate::state::AppState;

/// Body of `POST /api/v1/holds/{id}/checkout`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// Token from the payment form. Simulated gateway: `tok_ok`, `tok_declined`, `tok_error`
    /// (fails transiently), `tok_flaky_N` (fails N times, then succeeds).
    #[schema(example = "tok_ok", min_length = 1, max_length = 200, pattern = "^[!-~]+$")]
    pub payment_token: String,
}

/// Answer of a checkout.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckoutAccepted {
    pub reservation_id: Uuid,
    pub status: ReservationStatus,
    /// Total in minor units.
    pub amount: i64,
    pub currency: String,
    pub hold_id: Uuid,
    /// If payment has not completed by then, the reservation expires.
    pub deadline: DateTime<Utc>,
}

/// A reservation as its owner sees it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reservation {
    pub id: Uuid,
    pub showtime_id: Uuid,
    pub status: ReservationStatus,
    pub seat_ids: Vec<Uuid>,
    pub amount: i64,
    pub currency: String,
    pub booking_id: Option<Uuid>,
    pub failure_reason: Option<String>,
    pub payment_status: Option<PaymentStatus>,
    pub deadline: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A booking: the tickets.
#[derive(Clone, Debug, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Booking {
    pub id: Uuid,
    pub reservation_id: Uuid,
    pub showtime_id: Uuid,
    pub status: BookingStatus,
    /// Shown at the door.
    pub ticket_code: String,
    pub seat_ids: Vec<Uuid>,
    pub amount: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The ticket (code and signed form for the door); on `GET /api/v1/bookings/{id}`.
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<crate::tickets::sign::Ticket>,
}

/// Answer of a cancellation.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CancelAccepted {
    pub booking_id: Uuid,
    pub status: BookingStatus,
    /// The refund goes through the payment queue; the payment ends `refunded`.
    pub refund: String,
}

/// After the hold's (extended) expiry, a pending reservation may still be paid this long.
const DEADLINE_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// Checks out a hold: 202 with the reservation, or the stored answer of an earlier request
/// with the same key.
#[tracing::instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id))]
pub async fn checkout(
    state: &AppState,
    user: AuthUser,
    hold_id: Uuid,
    key: Option<&str>,
    req: CheckoutRequest,
) -> Result<(u16, Value), ApiError> {
    let key = idempotency::parse_key(key)?;
    let token = req.payment_token.trim();
    if token.is_empty() || token.len() > 200 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid("payment_token", "must be 1 to 200 printable ASCII characters"));
    }
    let hash = idempotency::fingerprint(&["checkout", &hold_id.to_string(), token]);
    match idempotency::claim(&state.db, user.id, &key, &hash).await? {
        Claim::Replay { status, body } => {
            // The first attempt may have stored its answer but failed to publish: publish again
            // (workers ignore duplicates).
            if let Some(id) = body.get("reservation_id").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
                republish_if_initiated(state, id).await;
            }
            return Ok((status, body));
        }
        Claim::New => {}
    }
    match reserve(state, user, hold_id, &key, token).await {
        Ok(accepted) => {
            let task = PaymentTask::new(PaymentAction::Charge, accepted.1, accepted.0.reservation_id);
            publish_task(state, &task).await?;
            metrics::counter!("seatgate_checkouts_total").increment(1);
            Ok((202, serde_json::to_value(&accepted.0).map_err(anyhow::Error::from)?))
        }
        Err(e) => {
            idempotency::forget(&state.db, user.id, &key).await;
            Err(e)
        }
    }
}

/// Extends the hold and writes reservation, seats, payment and the stored answer in one
/// transaction. Returns the answer and the payment id.
async fn reserve(
    state: &AppState,
    user: AuthUser,
    hold_id: Uuid,
    key: &str,
    token: &str,
) -> Result<(CheckoutAccepted, Uuid), ApiError> {
    let mut conn = redis_conn(state).await?;
    let showtime_id = showtime_of(state, &mut conn, hold_id, user).await?;
    let keys = state.keys.showtime(showtime_id);
    let extension = state.config.holds.checkout_extension;
    let (expires_at_ms, seats) =
        match store::extend(&mut conn, &keys, hold_id, user.id, extension).await.map_err(redis_error)? {
            ExtendOutcome::Extended { expires_at_ms, seats } => (expires_at_ms, seats),
            // The index names the caller, so the hold existed and is gone: it expired.
            ExtendOutcome::NotFound | ExtendOutcome::Expired => return Err(ApiError::HoldExpired),
        };
    drop(conn);
    let layout = state.layouts.get(&state.db, showtime_id).await?;
    let mut tx = state.db.begin().await?;
    let (starts_at, status, prices, currency): (DateTime<Utc>, ShowtimeStatus, Json<BTreeMap<String, i64>>, String) =
        sqlx::query_as("select starts_at, status, prices, currency from showtimes where id = $1 for share")
            .bind(showtime_id)
            .fetch_one(&mut *tx)
            .await?;
    if status == ShowtimeStatus::Cancelled {
        return Err(ApiError::Conflict("the showtime is cancelled".into()));
    }
    if starts_at <= Utc::now() {
        return Err(ApiError::Conflict("the showtime has already started".into()));
    }
    let mut priced = Vec::with_capacity(seats.len());
    for seat in &seats {
        let category = layout
            .seat(*seat)
            .map(|s| s.category.clone())
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("held seat {seat} is not in the showtime's layout")))?;
        let price = *prices
            .0
            .get(&category)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("showtime has no price for category {category}")))?;
        priced.push((*seat, category, price));
    }
    let amount: i64 = priced.iter().map(|(_, _, p)| p).sum();
    let deadline = DateTime::from_timestamp_millis(expires_at_ms).unwrap_or_else(Utc::now) + DEADLINE_GRACE;
    let reservation_id = Uuid::now_v7();
    sqlx::query(
        r#"insert into reservations (id, user_id, showtime_id, hold_id, status, amount_minor, currency, deadline)
           values ($1, $2, $3, $4, 'payment_pending', $5, $6, $7)"#,
    )
    .bind(reservation_id)
    .bind(user.id)
    .bind(showtime_id)
    .bind(hold_id)
    .bind(amount)
    .bind(&currency)
    .bind(deadline)
    .execute(&mut *tx)
    .await
    .map_err(on_constraint("reservations_hold_id_key", || {
        ApiError::Conflict("this hold is already checked out".into())
    }))?;
    insert_reservation_seats(&mut tx, reservation_id, &priced).await?;
    let payment_id = Uuid::now_v7();
    sqlx::query(
        r#"insert into payments (id, reservation_id, attempt, status, amount_minor, currency, payment_token, idempotency_key)
           values ($1, $2, 1, 'initiated', $3, $4, $5, $6)"#,
    )
    .bind(payment_id)
    .bind(reservation_id)
    .bind(amount)
    .bind(&currency)
    .bind(token)
    .bind(key)
    .execute(&mut *tx)
    .await?;
    let accepted = CheckoutAccepted {
        reservation_id,
        status: ReservationStatus::PaymentPending,
        amount,
        currency,
        hold_id,
        deadline,
    };
    let body = serde_json::to_value(&accepted).map_err(anyhow::Error::from)?;
    idempotency::save(&mut tx, user.id, key, 202, &body).await?;
    tx.commit().await?;
    tracing::info!(reservation.id = %reservation_id, payment.id = %payment_id, amount, "checkout accepted");
    Ok((accepted, payment_id))
}

async fn insert_reservation_seats(
    conn: &mut PgConnection,
    reservation_id: Uuid,
    priced: &[(Uuid, String, i64)],
) -> Result<(), sqlx::Error> {
    let seats: Vec<Uuid> = priced.iter().map(|p| p.0).collect();
    let categories: Vec<&str> = priced.iter().map(|p| p.1.as_str()).collect();
    let prices: Vec<i64> = priced.iter().map(|p| p.2).collect();
    sqlx::query(
        r#"insert into reservation_seats (reservation_id, seat_id, category, price_minor)
           select $1, seat_id, category, price from unnest($2::uuid[], $3::text[], $4::bigint[]) as t(seat_id, category, price)"#,
    )
    .bind(reservation_id)
    .bind(&seats)
    .bind(&categories)
    .bind(&prices)
    .execute(conn)
    .await?;
    Ok(())
}

/// Publishes a payment task with confirms; a broker outage is a 503 (the sweeper publishes
/// it again later).
pub async fn publish_task(state: &AppState, task: &PaymentTask) -> Result<(), ApiError> {
    let key = match task.action {
        PaymentAction::Charge => CHARGE_KEY,
        PaymentAction::Refund => REFUND_KEY,
    };
    let result = async {
        let channel = state.amqp.channel().await?;
        publish_json(&channel, &state.amqp.names().exchange, key, task.message_id, 1, task).await
    }
    .await;
    result.map_err(|e| {
        metrics::counter!("seatgate_queue_publish_failures_total", "queue" => "payments").increment(1);
        ApiError::Unavailable(e.context("publish payment task"))
    })
}

async fn republish_if_initiated(state: &AppState, reservation_id: Uuid) {
    let payment = match state.db.acquire().await {
        Ok(mut conn) => payments::payment_of(&mut conn, reservation_id).await.ok().flatten(),
        Err(_) => None,
    };
    if let Some(p) = payment.filter(|p| p.status == PaymentStatus::Initiated) {
        let _ = publish_task(state, &PaymentTask::new(PaymentAction::Charge, p.id, reservation_id)).await;
    }
}

const NO_RESERVATION: ApiError = ApiError::NotFound("no such reservation");
const NO_BOOKING: ApiError = ApiError::NotFound("no such booking");

/// One of the caller's reservations; anyone else's is 404.
pub async fn get_reservation(state: &AppState, user: AuthUser, id: Uuid) -> Result<Reservation, ApiError> {
    let mut conn = state.db.acquire().await?;
    let r = payments::find_reservation(&mut conn, id).await?.filter(|r| r.user_id == user.id).ok_or(NO_RESERVATION)?;
    let seat_ids = payments::reservation_seats(&mut conn, id).await?;
    let booking_id: Option<Uuid> = sqlx::query_scalar("select id from bookings where reservation_id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let payment = payments::payment_of(&mut conn, id).await?;
    Ok(Reservation {
        id: r.id,
        showtime_id: r.showtime_id,
        status: r.status,
        seat_ids,
        amount: r.amount_minor,
        currency: r.currency,
        booking_id,
        failure_reason: r.failure_reason,
        payment_status: payment.map(|p| p.status),
        deadline: r.deadline,
        created_at: r.created_at,
    })
}

const BOOKING_SELECT: &str = r#"select b.id, b.reservation_id, b.showtime_id, b.status, b.ticket_code,
       coalesce(array(select rs.seat_id from reservation_seats rs join seats s on s.id = rs.seat_id
                       where rs.reservation_id = b.reservation_id order by s.row_index, s.number), '{}') as seat_ids,
       b.amount_minor as amount, b.currency, b.created_at, b.cancelled_at
  from bookings b"#;

/// The caller's bookings, newest first.
pub async fn list_bookings(state: &AppState, user: AuthUser, q: PageQuery) -> Result<Page<Booking>, ApiError> {
    let paging = Paging::try_from(q)?;
    let mut conn = state.db.acquire().await?;
    let total: i64 = sqlx::query_scalar("select count(*) from bookings where user_id = $1")
        .bind(user.id)
        .fetch_one(&mut *conn)
        .await?;
    let items = sqlx::query_as::<_, Booking>(sqlx::AssertSqlSafe(format!(
        "{BOOKING_SELECT} where b.user_id = $1 order by b.created_at desc, b.id limit $2 offset $3"
    )))
    .bind(user.id)
    .bind(paging.limit())
    .bind(paging.offset())
    .fetch_all(&mut *conn)
    .await?;
    Ok(Page::new(items, paging, total))
}

/// One of the caller's bookings; anyone else's is 404.
pub async fn get_booking(state: &AppState, user: AuthUser, id: Uuid) -> Result<Booking, ApiError> {
    sqlx::query_as::<_, Booking>(sqlx::AssertSqlSafe(format!("{BOOKING_SELECT} where b.id = $1 and b.user_id = $2")))
        .bind(id)
        .bind(user.id)
        .fetch_optional(&state.db)
        .await?
        .map(|b| Booking {
            ticket: Some(state.tickets.ticket(&b.ticket_code, b.id, b.showtime_id, &b.seat_ids, b.created_at)),
            ..b
        })
        .ok_or(NO_BOOKING)
}

/// Cancels a booking before its showtime starts: seats free again at once, money back through
/// the payment queue.
#[tracing::instrument(skip_all, fields(booking.id = %id, user.id = %user.id))]
pub async fn cancel_booking(state: &AppState, user: AuthUser, id: Uuid) -> Result<CancelAccepted, ApiError> {
    let mut tx = state.db.begin().await?;
    #[derive(FromRow)]
    struct Row {
        reservation_id: Uuid,
        showtime_id: Uuid,
        status: BookingStatus,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    }
    let row: Option<Row> = sqlx::query_as(
        r#"select b.reservation_id, b.showtime_id, b.status, s.starts_at, s.ends_at
             from bookings b join showtimes s on s.id = b.showtime_id
            where b.id = $1 and b.user_id = $2 for update of b"#,
    )
    .bind(id)
    .bind(user.id)
    .fetch_optional(&mut *tx)
    .await?;
    let Row { reservation_id, showtime_id, status, starts_at, ends_at } = row.ok_or(NO_BOOKING)?;
    if status == BookingStatus::Cancelled {
        return Err(ApiError::Conflict("the booking is already cancelled".into()));
    }
    if starts_at <= Utc::now() {
        return Err(ApiError::Conflict("the showtime has started; the booking can no longer be cancelled".into()));
    }
    sqlx::query(
        "update bookings set status = 'cancelled', cancelled_at = now() where id = $1 and status = 'confirmed'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let seats: Vec<Uuid> = sqlx::query_scalar("delete from booked_seats where booking_id = $1 returning seat_id")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    payments::move_reservation(
        &mut tx,
        reservation_id,
        ReservationStatus::Confirmed,
        ReservationStatus::Cancelled,
        Some("cancelled by the customer"),
    )
    .await?;
    let payment = payments::payment_of(&mut tx, reservation_id).await?;
    tx.commit().await?;
    tracing::info!(seats = seats.len(), "booking cancelled");
    // Seats are free again in Redis; if that fails, they stay refused until the sold cache is
    // rebuilt (never the other way round).
    let unsold = async {
        let mut conn = state.redis.get().await?;
        let keys = state.keys.showtime(showtime_id);
        store::unsell(&mut conn, &keys, &seats).await?;
        let _: () = deadpool_redis::redis::cmd("PEXPIRE")
            .arg(&keys.sold)
            .arg(crate::holds::service::sold_ttl(ends_at).as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        anyhow::Ok(())
    }
    .await;
    state.seat_status.invalidate(showtime_id);
    if let Err(e) = unsold {
        tracing::warn!(error = %e, "cannot free the cancelled seats in Redis");
    }
    if let Some(p) = payment.filter(|p| p.status == PaymentStatus::Succeeded) {
        // If this fails, the sweeper publishes the owed refund later.
        let _ = publish_task(state, &PaymentTask::new(PaymentAction::Refund, p.id, reservation_id)).await;
    }
    Ok(CancelAccepted { booking_id: id, status: BookingStatus::Cancelled, refund: "pending".into() })
}

/// What cancelling a showtime did to its sales (see [`cancel_showtime_sales`]).
#[derive(Debug, Default)]
pub struct CancelledSales {
    /// Confirmed bookings now cancelled; their payments are refunded through the queue.
    pub bookings: Vec<(Uuid, Uuid)>,
    /// Reservations still waiting for payment, now cancelled (their payments failed).
    pub pending: Vec<payments::ReservationRow>,
    events: Vec<crate::messaging::messages::BookingEvent>,
}

/// Why a showtime's customers lost their seats.
const SHOWTIME_CANCELLED: &str = "the showtime was cancelled";

/// Inside the transaction that cancels a showtime: every confirmed booking of it is cancelled
/// (its `booked_seats` freed, its reservation `cancelled`), every reservation still waiting for
/// payment is cancelled with its payment `failed`, and each customer's booking event is staged.
/// Refunds go through the payment queue after the commit ([`settle_cancelled_showtime`]).
///
/// A worker charging one of those payments at this moment loses its guarded update and refunds
/// the charge, as for an expired reservation.
pub async fn cancel_showtime_sales(conn: &mut PgConnection, showtime_id: Uuid) -> Result<CancelledSales, sqlx::Error> {
    let mut sales = CancelledSales::default();
    let bookings: Vec<(Uuid, Uuid)> = sqlx::query_as(
        r#"update bookings set status = 'cancelled', cancelled_at = now()
            where showtime_id = $1 and status = 'confirmed' returning id, reservation_id"#,
    )
    .bind(showtime_id)
    .fetch_all(&mut *conn)
    .await?;
    let booking_ids: Vec<Uuid> = bookings.iter().map(|b| b.0).collect();
    sqlx::query("delete from booked_seats where booking_id = any($1)").bind(&booking_ids).execute(&mut *conn).await?;
    for (booking_id, reservation_id) in &bookings {
        let moved = payments::move_reservation(
            conn,
            *reservation_id,
            ReservationStatus::Confirmed,
            ReservationStatus::Cancelled,
            Some(SHOWTIME_CANCELLED),
        )
        .await?;
        if let (true, Some(payment)) = (moved, payments::payment_of(conn, *reservation_id).await?) {
            sales.bookings.push((payment.id, *reservation_id));
        }
        tracing::info!(booking.id = %booking_id, "booking cancelled with its showtime");
    }
    let pending: Vec<Uuid> = sqlx::query_scalar(
        "select id from reservations where showtime_id = $1 and status = 'payment_pending' for update",
    )
    .bind(showtime_id)
    .fetch_all(&mut *conn)
    .await?;
    for id in pending {
        if payments::move_reservation(
            conn,
            id,
            ReservationStatus::PaymentPending,
            ReservationStatus::Cancelled,
            Some(SHOWTIME_CANCELLED),
        )
        .await?
        {
            payments::fail_unpaid_payments(conn, id, SHOWTIME_CANCELLED).await?;
            if let Some(r) = payments::find_reservation(conn, id).await? {
                let event = crate::payments::service::booking_event(
                    &r,
                    crate::messaging::messages::BookingEventKind::Cancelled,
                    None,
                    None,
                    Some(SHOWTIME_CANCELLED.to_owned()),
                );
                crate::messaging::outbox::stage(conn, &event).await?;
                sales.events.push(event);
                sales.pending.push(r);
            }
        }
    }
    Ok(sales)
}

/// After the cancelling transaction committed: refunds queued, events published, holds of the
/// cancelled reservations dropped. A publish that fails is retried by the sweeper (an owed
/// refund, an undelivered event), so nothing here can lose money.
pub async fn settle_cancelled_showtime(state: &AppState, showtime_id: Uuid, sales: &CancelledSales) {
    for (payment_id, reservation_id) in &sales.bookings {
        let _ = publish_task(state, &PaymentTask::new(PaymentAction::Refund, *payment_id, *reservation_id)).await;
    }
    for event in &sales.events {
        crate::messaging::outbox::deliver(state, event).await;
    }
    if let Ok(mut conn) = state.redis.get().await {
        let keys = state.keys.showtime(showtime_id);
        for r in &sales.pending {
            let _ = store::release(&mut conn, &keys, r.hold_id, &r.user_id.to_string(), true).await;
        }
    }
    state.seat_status.invalidate(showtime_id);
    if !sales.bookings.is_empty() || !sales.pending.is_empty() {
        tracing::info!(
            showtime.id = %showtime_id,
            bookings = sales.bookings.len(),
            pending = sales.pending.len(),
            "the cancelled showtime's sales are cancelled; refunds queued"
        );
    }
}
