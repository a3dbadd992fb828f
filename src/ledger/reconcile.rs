//! The ledger's half of the sweeper: what is overdue and how to settle it, so that nothing
//! stays pending forever (invariant 6) and no charge is kept without a ticket (invariant 8),
//! whatever crashed or was dead-lettered on the way. Safe with several sweepers at once: rows
//! are taken with `for update skip locked` and every change is guarded by the expected state.

use std::collections::HashSet;

use uuid::Uuid;

use super::charge::{PaymentError, WorkerCtx, late_reason};
use super::events::booking_event;
use super::refund::{self, Case};
use super::repo::{self, ReservationRow};
use crate::domain::{PaymentStatus, ReservationStatus};
use crate::holds::store;
use crate::messaging::messages::BookingEventKind;
use crate::messaging::outbox;
use crate::state::AppState;

/// Rows handled per query, so one pass never holds many locks.
const BATCH: i64 = 100;

/// Why an unpaid reservation expired.
pub const EXPIRED: &str = "payment not completed before the deadline";

/// Reservations past their deadline with no successful payment end `expired`; their payments
/// that no worker had begun to charge end `failed`. A payment already `charging` is left to its
/// worker, or to [`settle_payments`] once it is idle.
pub async fn expire_overdue(state: &AppState) -> anyhow::Result<u64> {
    let mut tx = state.db.begin().await?;
    let ids = repo::lock_overdue_reservations(&mut tx, BATCH).await?;
    let mut expired: Vec<ReservationRow> = Vec::new();
    let mut staged = Vec::new();
    for id in ids {
        if repo::move_reservation(
            &mut tx,
            id,
            ReservationStatus::PaymentPending,
            ReservationStatus::Expired,
            Some(EXPIRED),
        )
        .await?
        {
            repo::fail_uncharged_payments(&mut tx, id, EXPIRED).await?;
            if let Some(r) = repo::find_reservation(&mut tx, id).await? {
                let event = booking_event(&r, BookingEventKind::Expired, None, None, Some(EXPIRED.to_owned()));
                staged.push(outbox::stage(&mut tx, &event).await?);
                expired.push(r);
            }
        }
    }
    tx.commit().await?;
    if let Ok(mut conn) = state.redis.get().await {
        for r in &expired {
            let _ = store::release(
                &mut conn,
                &state.keys,
                &state.keys.showtime(r.showtime_id),
                r.hold_id,
                &r.user_id.to_string(),
                true,
            )
            .await;
            state.seat_status.invalidate(r.showtime_id);
        }
    }
    super::events::deliver(state, &staged).await;
    if !expired.is_empty() {
        metrics::counter!("seatgate_reservations_expired_total").increment(expired.len() as u64);
    }
    Ok(expired.len() as u64)
}

/// The reconciler: payments left `charging` by a worker that died or whose task was
/// dead-lettered (once their reservation stopped waiting), and refunds interrupted in
/// `refunding`, idle for `idle_secs`, are settled by asking the gateway: what was charged is
/// refunded, what was not is voided. Returns how many it settled.
pub async fn settle_payments(ctx: &WorkerCtx, idle_secs: f64) -> Result<u64, PaymentError> {
    let rows = {
        let mut tx = ctx.state.db.begin().await?;
        let rows = repo::lock_unsettled_payments(&mut tx, idle_secs, BATCH).await?;
        // Touch them, so that a concurrent sweeper's next pass leaves them to this one.
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        sqlx::query("update payments set updated_at = now() where id = any($1)").bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        rows
    };
    let mut settled = 0;
    for (payment_id, status, _) in rows {
        let (payment, r) = super::charge::load(ctx, payment_id).await?;
        let reason = match (r.status, &r.failure_reason) {
            (ReservationStatus::PaymentPending | ReservationStatus::Expired, _) => {
                late_reason(ReservationStatus::Expired)
            }
            (ReservationStatus::Cancelled, _) => late_reason(ReservationStatus::Cancelled),
            (_, Some(reason)) => reason.as_str(),
            (_, None) => "the payment could not be completed",
        }
        .to_owned();
        let outcome = if status == PaymentStatus::Refunding {
            // A booking's payment (it has a gateway reference) was a cancellation's refund.
            let case = if payment.gateway_ref.is_some() { Case::Cancelled } else { Case::NotBooked };
            refund::complete(ctx, payment_id, &r, case, payment.failure_reason.as_deref().unwrap_or(&reason)).await?
        } else {
            refund::refund(ctx, payment_id, &r, &[PaymentStatus::Charging], Case::NotBooked, &reason).await?
        };
        tracing::warn!(payment.id = %payment_id, ?outcome, "reconciler settled a payment");
        metrics::counter!("seatgate_payments_reconciled_total", "outcome" => outcome.label()).increment(1);
        settled += 1;
    }
    Ok(settled)
}

/// How far back a booking change makes its showtime's sold set worth re-checking.
const SOLD_RECHECK_SECS: f64 = 15.0 * 60.0;

/// The sold set in Redis converges to `booked_seats` (it is a cache of it): for every showtime
/// whose bookings changed lately, seats booked but not shown sold are added and seats shown sold
/// but no longer booked (a cancellation that raced the worker's `sell`, or a warm that raced an
/// `unsell`) are freed. Redis is read before PostgreSQL, so a seat sold in Redis and booked
/// meanwhile is never freed. Returns the number of seats corrected.
pub async fn resync_sold(state: &AppState) -> anyhow::Result<u64> {
    let showtimes = {
        let mut conn = state.db.acquire().await?;
        repo::showtimes_with_recent_bookings(&mut conn, SOLD_RECHECK_SECS).await?
    };
    let mut corrected = 0;
    let mut redis = state.redis.get().await?;
    for showtime_id in showtimes {
        let keys = state.keys.showtime(showtime_id);
        let Some(cached) = store::sold_seats(&mut redis, &keys).await? else { continue };
        let truth: HashSet<Uuid> = {
            let mut conn = state.db.acquire().await?;
            repo::booked_seats_of(&mut conn, showtime_id).await?.into_iter().collect()
        };
        let add: Vec<Uuid> = truth.difference(&cached).copied().collect();
        let free: Vec<Uuid> = cached.difference(&truth).copied().collect();
        if add.is_empty() && free.is_empty() {
            continue;
        }
        store::correct_sold(&mut redis, &keys, &add, &free).await?;
        state.seat_status.invalidate(showtime_id);
        tracing::warn!(showtime.id = %showtime_id, added = add.len(), freed = free.len(), "sold set corrected from booked_seats");
        corrected += (add.len() + free.len()) as u64;
    }
    Ok(corrected)
}
