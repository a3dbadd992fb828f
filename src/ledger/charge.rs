//! What a payment worker does with one task (invariants 4 to 6 and 8). Charge: win the charge's
//! guard (`initiated -> charging` while the reservation is `payment_pending`), charge the gateway
//! (idempotent by payment id), claim the seats in Redis (fencing by hold id), then one PostgreSQL
//! transaction (payment `succeeded`, reservation `confirmed`, booking, `booked_seats`, the booking
//! event staged in the outbox), then seats sold in Redis. A decline fails the reservation and
//! frees the seats; a lost claim, a `booked_seats` conflict or a reservation that expired meanwhile
//! goes through [`super::refund`]. Every step is safe to repeat, so a redelivered task is a no-op
//! or finishes what an earlier delivery began. Free of AMQP: the consume loop maps outcomes to
//! acks, retries and dead letters.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::events::{booking_event, ticket_code};
use super::gateway::{Charge, ChargeResult, PaymentGateway, Transient};
use super::refund::{self, Case, release_hold};
use super::repo::{self, PaymentRow, ReservationRow};
use crate::domain::{PaymentStatus, ReservationStatus};
use crate::error::violated_constraint;
use crate::holds::store::{self, ClaimOutcome};
use crate::messaging::messages::{BookingEventKind, PaymentAction, PaymentTask};
use crate::messaging::outbox;
use crate::state::AppState;

/// How long a worker's claim keeps the seats while it writes the booking.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);

/// What a payment worker needs.
#[derive(Clone)]
pub struct WorkerCtx {
    pub state: AppState,
    pub gateway: Arc<dyn PaymentGateway>,
}

/// How a task ended (all of these are acked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Confirmed {
        booking_id: Uuid,
    },
    Declined,
    /// Charged, then refunded because the booking could not be made.
    RefundedAfterCharge {
        reason: String,
    },
    /// A cancelled booking's money went back.
    Refunded,
    /// Nothing to do: already settled by an earlier delivery, or no longer payable.
    Skipped(&'static str),
}

impl Outcome {
    /// Label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Confirmed { .. } => "confirmed",
            Self::Declined => "declined",
            Self::RefundedAfterCharge { .. } => "refunded_after_charge",
            Self::Refunded => "refunded",
            Self::Skipped(_) => "skipped",
        }
    }
}

/// Why a task could not be handled now.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// Worth retrying later: a service or the gateway is unavailable.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Will never succeed (unknown payment): dead-letter it.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

impl PaymentError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

impl From<sqlx::Error> for PaymentError {
    fn from(e: sqlx::Error) -> Self {
        Self::Transient(anyhow::Error::new(e).context("postgres"))
    }
}

impl From<Transient> for PaymentError {
    fn from(e: Transient) -> Self {
        Self::Transient(e.into())
    }
}

fn transient(e: impl Into<anyhow::Error>) -> PaymentError {
    PaymentError::Transient(e.into())
}

/// Handles one payment task.
#[tracing::instrument(skip_all, fields(payment.id = %task.payment_id, action = ?task.action))]
pub async fn handle_payment(ctx: &WorkerCtx, task: &PaymentTask) -> Result<Outcome, PaymentError> {
    match task.action {
        PaymentAction::Charge => charge(ctx, task.payment_id).await,
        PaymentAction::Refund => refund_cancelled(ctx, task.payment_id).await,
    }
}

/// The payment and its reservation, as stored now.
pub(super) async fn load(ctx: &WorkerCtx, payment_id: Uuid) -> Result<(PaymentRow, ReservationRow), PaymentError> {
    let mut conn = ctx.state.db.acquire().await?;
    let payment = repo::find_payment(&mut conn, payment_id)
        .await?
        .ok_or_else(|| PaymentError::Permanent(anyhow::anyhow!("no payment {payment_id}")))?;
    let reservation = repo::find_reservation(&mut conn, payment.reservation_id)
        .await?
        .ok_or_else(|| PaymentError::Permanent(anyhow::anyhow!("no reservation for payment {payment_id}")))?;
    Ok((payment, reservation))
}

/// Why a charge that landed after its reservation stopped waiting goes back.
pub fn late_reason(status: ReservationStatus) -> &'static str {
    match status {
        ReservationStatus::Cancelled => "the showtime was cancelled while the payment was being charged",
        _ => "the reservation expired while the payment was being charged",
    }
}

async fn charge(ctx: &WorkerCtx, payment_id: Uuid) -> Result<Outcome, PaymentError> {
    let (payment, r) = load(ctx, payment_id).await?;
    match payment.status {
        PaymentStatus::Succeeded if r.status == ReservationStatus::Confirmed => {
            // A redelivery after the commit: make sure Redis agrees that the seats are sold.
            let sale = {
                let mut conn = ctx.state.db.acquire().await?;
                repo::seats_to_sell(&mut conn, &r).await?
            };
            sell(ctx, &r, &sale).await?;
            return Ok(Outcome::Skipped("already confirmed"));
        }
        PaymentStatus::Failed
            if payment.deliveries > 0
                && matches!(r.status, ReservationStatus::Expired | ReservationStatus::Cancelled) =>
        {
            // Failed by a release that had no `charging` state: a worker may have charged it.
            // Asking the gateway costs one refund call; voiding an uncharged id is harmless.
            return refund::refund(
                ctx,
                payment.id,
                &r,
                &[PaymentStatus::Failed],
                Case::NotBooked,
                late_reason(r.status),
            )
            .await;
        }
        PaymentStatus::Initiated | PaymentStatus::Charging => {}
        _ => return Ok(Outcome::Skipped("payment already settled")),
    }
    let won = {
        let mut conn = ctx.state.db.acquire().await?;
        repo::begin_charge(&mut conn, payment.id).await?
    };
    if !won {
        let (payment, r) = load(ctx, payment_id).await?;
        if payment.status == PaymentStatus::Charging {
            // An earlier delivery may have charged it before the reservation stopped waiting.
            return refund::refund(
                ctx,
                payment.id,
                &r,
                &[PaymentStatus::Charging],
                Case::NotBooked,
                late_reason(r.status),
            )
            .await;
        }
        return Ok(Outcome::Skipped("reservation no longer payable"));
    }
    let token = payment.payment_token.as_deref().unwrap_or_default();
    let result = ctx
        .gateway
        .charge(Charge {
            payment_id: payment.id,
            amount_minor: payment.amount_minor,
            currency: &payment.currency,
            token,
        })
        .await?;
    match result {
        ChargeResult::Declined { reason } => decline(ctx, &payment, &r, &reason).await,
        ChargeResult::Charged { reference } => finalise(ctx, &payment, &r, &reference).await,
    }
}

async fn decline(
    ctx: &WorkerCtx,
    payment: &PaymentRow,
    r: &ReservationRow,
    reason: &str,
) -> Result<Outcome, PaymentError> {
    let reason = format!("payment declined: {reason}");
    let mut tx = ctx.state.db.begin().await?;
    if !repo::decline_payment(&mut tx, payment.id, &reason).await? {
        return Ok(Outcome::Skipped("payment already settled"));
    }
    repo::move_reservation(&mut tx, r.id, ReservationStatus::PaymentPending, ReservationStatus::Failed, Some(&reason))
        .await?;
    let event = booking_event(r, BookingEventKind::Failed, None, None, Some(reason));
    let staged = outbox::stage(&mut tx, &event).await?;
    tx.commit().await?;
    release_hold(ctx, r).await;
    super::events::deliver(&ctx.state, &[staged]).await;
    Ok(Outcome::Declined)
}

/// After a successful charge: claim, then book in one transaction, or refund.
async fn finalise(
    ctx: &WorkerCtx,
    payment: &PaymentRow,
    r: &ReservationRow,
    reference: &str,
) -> Result<Outcome, PaymentError> {
    let sale = {
        let mut conn = ctx.state.db.acquire().await?;
        repo::seats_to_sell(&mut conn, r).await?
    };
    let seats = &sale.0;
    let keys = ctx.state.keys.showtime(r.showtime_id);
    let claim = {
        let mut conn = ctx.state.redis.get().await.map_err(transient)?;
        store::claim(&mut conn, &keys, r.hold_id, r.user_id, seats, CLAIM_TTL).await.map_err(transient)?
    };
    let not_booked = |reason: &'static str| async move {
        refund::refund(ctx, payment.id, r, &[PaymentStatus::Charging], Case::NotBooked, reason).await
    };
    if let ClaimOutcome::Lost(lost) = claim {
        tracing::warn!(lost = lost.len(), "the hold no longer owns the seats: refunding");
        return not_booked("the seats were taken by someone else after the hold expired").await;
    }
    let booking_id = Uuid::now_v7();
    let ticket_code = ticket_code();
    let mut tx = ctx.state.db.begin().await?;
    // The payment row first: a concurrent delivery of the same task waits here, then finds
    // `succeeded` and backs off; a refund that won its guard first makes this one lose.
    if !repo::succeed_payment(&mut tx, payment.id, reference).await? {
        tx.rollback().await?;
        return Ok(Outcome::Skipped("another process settles this payment"));
    }
    if !repo::move_reservation(&mut tx, r.id, ReservationStatus::PaymentPending, ReservationStatus::Confirmed, None)
        .await?
    {
        tx.rollback().await?;
        let status = {
            let mut conn = ctx.state.db.acquire().await?;
            repo::find_reservation(&mut conn, r.id).await?.map_or(ReservationStatus::Expired, |r| r.status)
        };
        return not_booked(late_reason(status)).await;
    }
    repo::insert_booking(&mut tx, r, booking_id, &ticket_code).await?;
    if let Err(e) = repo::insert_booked_seats(&mut tx, r.showtime_id, booking_id, seats).await {
        if violated_constraint(&e) == Some("booked_seats_pkey") {
            tx.rollback().await?;
            tracing::warn!("booked_seats refused a seat sold to someone else: refunding");
            return not_booked("a seat was already sold to someone else").await;
        }
        return Err(e.into());
    }
    let event = booking_event(r, BookingEventKind::Confirmed, Some(booking_id), Some(ticket_code), None);
    let staged = outbox::stage(&mut tx, &event).await?;
    tx.commit().await?;
    let latency = (chrono::Utc::now() - r.created_at).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!("seatgate_booking_finalisation_seconds").record(latency);
    tracing::info!(booking.id = %booking_id, reservation.id = %r.id, "booking confirmed");
    sell(ctx, r, &sale).await?;
    super::events::deliver(&ctx.state, &[staged]).await;
    Ok(Outcome::Confirmed { booking_id })
}

/// Seats sold in Redis and the hold gone; idempotent. If it fails, the sold set is rebuilt
/// from `booked_seats` by the sweeper's reconciliation. `sale` is [`repo::seats_to_sell`].
async fn sell(
    ctx: &WorkerCtx,
    r: &ReservationRow,
    (seats, ends_at): &(Vec<Uuid>, chrono::DateTime<chrono::Utc>),
) -> Result<(), PaymentError> {
    let mut conn = ctx.state.redis.get().await.map_err(transient)?;
    let keys = ctx.state.keys.showtime(r.showtime_id);
    store::sell(&mut conn, &keys, &ctx.state.keys, r.hold_id, seats, crate::holds::service::sold_ttl(*ends_at))
        .await
        .map_err(transient)?;
    ctx.state.seat_status.invalidate(r.showtime_id);
    Ok(())
}

/// A refund task of a cancelled booking.
async fn refund_cancelled(ctx: &WorkerCtx, payment_id: Uuid) -> Result<Outcome, PaymentError> {
    let (payment, r) = load(ctx, payment_id).await?;
    if r.status != ReservationStatus::Cancelled {
        return Ok(Outcome::Skipped("no refund owed"));
    }
    let reason = r.failure_reason.clone().unwrap_or_else(|| "booking cancelled by the customer".to_owned());
    match payment.status {
        PaymentStatus::Succeeded => {
            refund::refund(ctx, payment.id, &r, &[PaymentStatus::Succeeded], Case::Cancelled, &reason).await
        }
        // An earlier delivery won the guard and stopped before recording: finish it.
        PaymentStatus::Refunding => refund::complete(ctx, payment.id, &r, Case::Cancelled, &reason).await,
        _ => Ok(Outcome::Skipped("no refund owed")),
    }
}
