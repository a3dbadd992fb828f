//! The one way money goes back (invariant 8; docs/DESIGN.md §9). Three steps, each
//! safe to repeat: win the guard (`... set status = 'refunding' where status in (...)`, committed
//! on its own), call the gateway's refund with the payment id as idempotency key, then record
//! the outcome with the reservation's reason and a booking event. Only the winner of the guard
//! calls the gateway, so no booking can stand on refunded money; a crash between the steps leaves
//! `refunding`, which the reconciler ([`super::reconcile`]) finishes by calling the gateway
//! again (a repeat refund is harmless).

use uuid::Uuid;

use super::charge::{Outcome, PaymentError, WorkerCtx};
use super::events::booking_event;
use super::gateway::Refund;
use super::repo::{self, ReservationRow};
use crate::domain::{PaymentStatus, ReservationStatus};
use crate::holds::store;
use crate::messaging::messages::BookingEventKind;
use crate::messaging::outbox;

/// Why money goes back, which decides what the reservation and the customer are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Charged, but the booking could not be made (seats lost, reservation expired or
    /// cancelled meanwhile): the reservation fails with the reason (or keeps `expired` /
    /// `cancelled` and says why), and its hold goes.
    NotBooked,
    /// A cancelled booking: the reservation is already `cancelled`.
    Cancelled,
}

/// Wins the refund guard from one of `from`, then refunds and records. `Skipped` when another
/// process holds or held the guard.
pub async fn refund(
    ctx: &WorkerCtx,
    payment_id: Uuid,
    r: &ReservationRow,
    from: &[PaymentStatus],
    case: Case,
    reason: &str,
) -> Result<Outcome, PaymentError> {
    {
        let mut conn = ctx.state.db.acquire().await?;
        if !repo::begin_refund(&mut conn, payment_id, from, reason).await? {
            return Ok(Outcome::Skipped("another process settles this payment"));
        }
    }
    tracing::info!(payment.id = %payment_id, reason, "refund guard won");
    complete(ctx, payment_id, r, case, reason).await
}

/// Calls the gateway for a payment in `refunding` and records the outcome: the second half of
/// [`refund`], and what the reconciler runs for a refund that was interrupted.
pub async fn complete(
    ctx: &WorkerCtx,
    payment_id: Uuid,
    r: &ReservationRow,
    case: Case,
    reason: &str,
) -> Result<Outcome, PaymentError> {
    let money_returned = ctx.gateway.refund(payment_id).await? == Refund::Refunded;
    let mut tx = ctx.state.db.begin().await?;
    if !repo::finish_refund(&mut tx, payment_id, money_returned).await? {
        return Ok(Outcome::Skipped("refund already recorded"));
    }
    let event = match case {
        Case::NotBooked => {
            if !repo::move_reservation(
                &mut tx,
                r.id,
                ReservationStatus::PaymentPending,
                ReservationStatus::Failed,
                Some(reason),
            )
            .await?
            {
                // Already expired or cancelled: keep that status, but say why the money went back.
                repo::explain_reservation(&mut tx, r.id, reason).await?;
            }
            booking_event(r, BookingEventKind::Failed, None, None, Some(reason.to_owned()))
        }
        Case::Cancelled => booking_event(r, BookingEventKind::Cancelled, None, None, Some(reason.to_owned())),
    };
    let staged = outbox::stage(&mut tx, &event).await?;
    tx.commit().await?;
    if case == Case::NotBooked {
        release_hold(ctx, r).await;
    }
    super::events::deliver(&ctx.state, &[staged]).await;
    tracing::warn!(payment.id = %payment_id, money_returned, reason, "payment refunded");
    Ok(if !money_returned {
        Outcome::Skipped("nothing had been charged")
    } else if case == Case::Cancelled {
        Outcome::Refunded
    } else {
        Outcome::RefundedAfterCharge { reason: reason.to_owned() }
    })
}

/// Drops whatever the hold still owns in Redis (best effort: it expires anyway).
pub async fn release_hold(ctx: &WorkerCtx, r: &ReservationRow) {
    let result = async {
        let mut conn = ctx.state.redis.get().await?;
        let keys = ctx.state.keys.showtime(r.showtime_id);
        store::release(&mut conn, &ctx.state.keys, &keys, r.hold_id, &r.user_id.to_string(), true).await
    }
    .await;
    ctx.state.seat_status.invalidate(r.showtime_id);
    if let Err(e) = result {
        tracing::warn!(error = %e, hold.id = %r.hold_id, "cannot release the hold; it will expire");
    }
}
