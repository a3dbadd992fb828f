//! Cancellations in the ledger: one booking by its customer, or every sale of a showtime that
//! is cancelled. Seats are freed in `booked_seats` at once, refund tasks and booking events are
//! staged in the outbox in the same transaction, and Redis is told after the commit (if that
//! fails, the sweeper's reconciliation of the sold set catches up).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::bookings::CancelAccepted;
use super::events::booking_event;
use super::repo::{self, ReservationRow};
use crate::auth::AuthUser;
use crate::domain::{BookingStatus, PaymentStatus, ReservationStatus};
use crate::error::ApiError;
use crate::holds::store;
use crate::messaging::messages::{BookingEventKind, PaymentAction, PaymentTask};
use crate::messaging::outbox::{self, Staged};
use crate::state::AppState;

const NO_BOOKING: ApiError = ApiError::NotFound("no such booking");

/// Cancels a booking before its showtime starts: seats free again at once, and the refund task
/// staged in the outbox in the same transaction (published right after, relayed if the broker
/// is down), so an owed refund is never lost.
#[tracing::instrument(skip_all, fields(booking.id = %id, user.id = %user.id))]
pub async fn cancel_booking(state: &AppState, user: AuthUser, id: Uuid) -> Result<CancelAccepted, ApiError> {
    let mut tx = state.db.begin().await?;
    let booking = repo::lock_booking_of_user(&mut tx, id, user.id).await?.ok_or(NO_BOOKING)?;
    if booking.status == BookingStatus::Cancelled {
        return Err(ApiError::Conflict("the booking is already cancelled".into()));
    }
    if booking.starts_at <= Utc::now() {
        return Err(ApiError::Conflict("the showtime has started; the booking can no longer be cancelled".into()));
    }
    // Under the booking's lock: a check-in in flight holds a share lock on it, so it is either
    // committed (and seen here) or waits for this cancellation and then lets nobody in.
    if repo::booking_checked_in(&mut tx, id).await? {
        return Err(ApiError::Conflict(
            "the ticket was already used at the door; it can no longer be cancelled".into(),
        ));
    }
    let (_, seats) = repo::cancel_bookings(&mut tx, &[id]).await?;
    repo::move_reservation(
        &mut tx,
        booking.reservation_id,
        ReservationStatus::Confirmed,
        ReservationStatus::Cancelled,
        Some("cancelled by the customer"),
    )
    .await?;
    let mut staged = Vec::new();
    if let Some(p) = repo::payment_of(&mut tx, booking.reservation_id).await?
        && p.status == PaymentStatus::Succeeded
    {
        let task = PaymentTask::new(PaymentAction::Refund, p.id, booking.reservation_id);
        staged.push(outbox::stage(&mut tx, &task).await?);
    }
    let ends_at = repo::showtime_ends_at(&mut tx, booking.showtime_id).await?;
    tx.commit().await?;
    tracing::info!(seats = seats.len(), "booking cancelled");
    super::events::deliver(state, &staged).await;
    free_sold_seats(state, booking.showtime_id, &seats, ends_at).await;
    Ok(CancelAccepted { booking_id: id, status: BookingStatus::Cancelled, refund: "pending".into() })
}

/// Seats no longer booked are free again in Redis. If that fails they stay shown sold until the
/// sweeper's reconciliation of the sold set (never the other way round).
pub async fn free_sold_seats(state: &AppState, showtime_id: Uuid, seats: &[Uuid], ends_at: DateTime<Utc>) {
    let result = async {
        let mut conn = state.redis.get().await?;
        let keys = state.keys.showtime(showtime_id);
        store::unsell(&mut conn, &keys, seats, crate::holds::service::sold_ttl(ends_at)).await
    }
    .await;
    state.seat_status.invalidate(showtime_id);
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot free the cancelled seats in Redis; the sweeper will");
    }
}

/// What cancelling a showtime did to its sales (see [`cancel_sales_of_showtime`]).
#[derive(Debug, Default)]
pub struct CancelledSales {
    /// Confirmed bookings now cancelled (their refunds are staged).
    pub bookings: usize,
    /// Reservations still waiting for payment, now cancelled (their uncharged payments failed).
    pub pending: Vec<ReservationRow>,
    /// Seats no longer booked.
    pub seats: Vec<Uuid>,
    /// Refund tasks and booking events, to deliver after the commit.
    pub messages: Vec<Staged>,
}

/// Why a showtime's customers lost their seats.
pub const SHOWTIME_CANCELLED: &str = "the showtime was cancelled";

/// Inside the transaction that cancels a showtime: every confirmed booking of it is cancelled
/// (its `booked_seats` freed, its reservation `cancelled`, its refund task staged), and every
/// reservation still waiting for payment is cancelled with its uncharged payment `failed` and
/// its customer's event staged. A worker charging one of those payments at this moment loses its
/// guarded update and refunds the charge; one already `charging` is settled by its worker or the
/// reconciler.
pub async fn cancel_sales_of_showtime(
    conn: &mut PgConnection,
    showtime_id: Uuid,
) -> Result<CancelledSales, sqlx::Error> {
    let mut sales = CancelledSales::default();
    let booking_ids = repo::confirmed_bookings_of_showtime(conn, showtime_id).await?;
    let (moved, seats) = repo::cancel_bookings(conn, &booking_ids).await?;
    sales.seats = seats;
    for (booking_id, reservation_id) in &moved {
        let cancelled = repo::move_reservation(
            conn,
            *reservation_id,
            ReservationStatus::Confirmed,
            ReservationStatus::Cancelled,
            Some(SHOWTIME_CANCELLED),
        )
        .await?;
        if let (true, Some(payment)) = (cancelled, repo::payment_of(conn, *reservation_id).await?)
            && payment.status == PaymentStatus::Succeeded
        {
            let task = PaymentTask::new(PaymentAction::Refund, payment.id, *reservation_id);
            sales.messages.push(outbox::stage(conn, &task).await?);
        }
        sales.bookings += 1;
        tracing::info!(booking.id = %booking_id, "booking cancelled with its showtime");
    }
    for id in repo::lock_pending_of_showtime(conn, showtime_id).await? {
        if repo::move_reservation(
            conn,
            id,
            ReservationStatus::PaymentPending,
            ReservationStatus::Cancelled,
            Some(SHOWTIME_CANCELLED),
        )
        .await?
        {
            repo::fail_uncharged_payments(conn, id, SHOWTIME_CANCELLED).await?;
            if let Some(r) = repo::find_reservation(conn, id).await? {
                let event =
                    booking_event(&r, BookingEventKind::Cancelled, None, None, Some(SHOWTIME_CANCELLED.to_owned()));
                sales.messages.push(outbox::stage(conn, &event).await?);
                sales.pending.push(r);
            }
        }
    }
    Ok(sales)
}

/// After the cancelling transaction committed: refunds and events published, holds of the
/// cancelled reservations dropped, sold seats freed. A publish that fails is relayed by the
/// sweeper, so nothing here can lose money.
pub async fn settle_cancelled_sales(state: &AppState, showtime_id: Uuid, sales: &CancelledSales) {
    super::events::deliver(state, &sales.messages).await;
    if let Ok(mut conn) = state.redis.get().await {
        let keys = state.keys.showtime(showtime_id);
        for r in &sales.pending {
            let _ = store::release(&mut conn, &state.keys, &keys, r.hold_id, &r.user_id.to_string(), true).await;
        }
    }
    if !sales.seats.is_empty() {
        let ends_at = match state.db.acquire().await {
            Ok(mut conn) => repo::showtime_ends_at(&mut conn, showtime_id).await.unwrap_or_else(|_| Utc::now()),
            Err(_) => Utc::now(),
        };
        free_sold_seats(state, showtime_id, &sales.seats, ends_at).await;
    }
    state.seat_status.invalidate(showtime_id);
    if sales.bookings > 0 || !sales.pending.is_empty() {
        tracing::info!(showtime.id = %showtime_id, bookings = sales.bookings, pending = sales.pending.len(),
            "the cancelled showtime's sales are cancelled; refunds queued");
    }
}
