//! What a payment worker does with one task. Charge: charge (idempotent by payment id), claim
//! the seats in Redis (fencing by hold id), then one PostgreSQL transaction (payment succeeded,
//! reservation confirmed, booking, `booked_seats`), then seats sold in Redis and a notification.
//! Each state change stages its booking event in the outbox in the same transaction.
//! A decline fails the reservation and frees the seats; a lost claim or a `booked_seats`
//! conflict after a successful charge is refunded with the reason. Every step is safe to
//! repeat, so a redelivered task is a no-op.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use uuid::Uuid;

use super::gateway::{Charge, ChargeResult, PaymentGateway, Refund, Transient};
use super::repo::{self, PaymentRow, ReservationRow};
use crate::domain::{PaymentStatus, ReservationStatus};
use crate::error::violated_constraint;
use crate::holds::store::{self, ClaimOutcome};
use crate::messaging::messages::{BookingEvent, BookingEventKind, PaymentAction, PaymentTask, SCHEMA_VERSION};
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

async fn load(ctx: &WorkerCtx, payment_id: Uuid) -> Result<(PaymentRow, ReservationRow, Vec<Uuid>), PaymentError> {
    let mut conn = ctx.state.db.acquire().await?;
    let payment = repo::find_payment(&mut conn, payment_id)
        .await?
        .ok_or_else(|| PaymentError::Permanent(anyhow::anyhow!("no payment {payment_id}")))?;
    let reservation = repo::find_reservation(&mut conn, payment.reservation_id)
        .await?
        .ok_or_else(|| PaymentError::Permanent(anyhow::anyhow!("no reservation for payment {payment_id}")))?;
    let seats = repo::reservation_seats(&mut conn, reservation.id).await?;
    Ok((payment, reservation, seats))
}

async fn charge(ctx: &WorkerCtx, payment_id: Uuid) -> Result<Outcome, PaymentError> {
    let (payment, reservation, seats) = load(ctx, payment_id).await?;
    if payment.status == PaymentStatus::Succeeded && reservation.status == ReservationStatus::Confirmed {
        // A redelivery after the commit: make sure Redis agrees that the seats are sold.
        sell(ctx, &reservation, &seats).await?;
        return Ok(Outcome::Skipped("already confirmed"));
    }
    if payment.status == PaymentStatus::Failed
        && matches!(reservation.status, ReservationStatus::Expired | ReservationStatus::Cancelled)
    {
        // The sweeper expired the reservation (or its showtime was cancelled) while this
        // payment was in flight: a worker that died after charging left money at the gateway
        // that nothing here would give back.
        return refund_expired(ctx, &payment, &reservation).await;
    }
    if payment.status != PaymentStatus::Initiated {
        return Ok(Outcome::Skipped("payment already settled"));
    }
    {
        let mut conn = ctx.state.db.acquire().await?;
        repo::count_delivery(&mut conn, payment.id).await?;
        if reservation.status != ReservationStatus::PaymentPending {
            // Expired or cancelled before the charge: never charge it.
            let reason = format!("reservation is {:?} before payment", reservation.status).to_lowercase();
            repo::move_payment(
                &mut conn,
                payment.id,
                PaymentStatus::Initiated,
                PaymentStatus::Failed,
                None,
                Some(&reason),
            )
            .await?;
            return Ok(Outcome::Skipped("reservation no longer payable"));
        }
    }
    let result = ctx
        .gateway
        .charge(Charge {
            payment_id: payment.id,
            amount_minor: payment.amount_minor,
            currency: &payment.currency,
            token: &payment.payment_token,
        })
        .await?;
    match result {
        ChargeResult::Declined { reason } => decline(ctx, &payment, &reservation, &reason).await,
        ChargeResult::Charged { reference } => finalise(ctx, &payment, &reservation, &seats, &reference).await,
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
    if !repo::move_payment(&mut tx, payment.id, PaymentStatus::Initiated, PaymentStatus::Failed, None, Some(&reason))
        .await?
    {
        return Ok(Outcome::Skipped("payment already settled"));
    }
    repo::move_reservation(&mut tx, r.id, ReservationStatus::PaymentPending, ReservationStatus::Failed, Some(&reason))
        .await?;
    let event = booking_event(r, BookingEventKind::Failed, None, None, Some(reason));
    outbox::stage(&mut tx, &event).await?;
    tx.commit().await?;
    release_hold(ctx, r).await;
    outbox::deliver(&ctx.state, &event).await;
    Ok(Outcome::Declined)
}

async fn finalise(
    ctx: &WorkerCtx,
    payment: &PaymentRow,
    r: &ReservationRow,
    seats: &[Uuid],
    reference: &str,
) -> Result<Outcome, PaymentError> {
    let keys = ctx.state.keys.showtime(r.showtime_id);
    let mut conn = ctx.state.redis.get().await.map_err(transient)?;
    if let ClaimOutcome::Lost(lost) =
        store::claim(&mut conn, &keys, r.hold_id, r.user_id, seats, CLAIM_TTL).await.map_err(transient)?
    {
        // The sweeper frees the seats of a reservation it expires: say that, if it did.
        let reason = if payment_now(ctx, payment.id).await? == Some(PaymentStatus::Failed) {
            late_charge_reason(ctx, r.id).await?
        } else {
            "the seats were taken by someone else after the hold expired"
        };
        tracing::warn!(lost = lost.len(), reason, "the hold no longer owns the seats: refunding");
        return refund_after_charge(ctx, payment, r, reason).await;
    }
    drop(conn);
    let ticket_code = ticket_code();
    let mut tx = ctx.state.db.begin().await?;
    // The payment row first: a concurrent delivery of the same task waits here, then sees
    // `succeeded` and backs off, so it can never refund what this one booked.
    if !repo::move_payment(
        &mut tx,
        payment.id,
        PaymentStatus::Initiated,
        PaymentStatus::Succeeded,
        Some(reference),
        None,
    )
    .await?
    {
        tx.rollback().await?;
        // Charged, but the payment moved on meanwhile. Another delivery of this task that booked
        // or refunded it is fine; the sweeper failing it at the reservation's deadline is not:
        // the money must go back.
        if payment_now(ctx, payment.id).await? == Some(PaymentStatus::Failed) {
            tracing::warn!("the reservation expired while the payment was being charged: refunding");
            let reason = late_charge_reason(ctx, r.id).await?;
            return refund_after_charge(ctx, payment, r, reason).await;
        }
        return Ok(Outcome::Skipped("payment already settled"));
    }
    if !repo::move_reservation(&mut tx, r.id, ReservationStatus::PaymentPending, ReservationStatus::Confirmed, None)
        .await?
    {
        tx.rollback().await?;
        return refund_after_charge(ctx, payment, r, "the reservation expired before the payment completed").await;
    }
    let booking_id = repo::insert_booking(&mut tx, r, &ticket_code).await?;
    if let Err(e) = repo::insert_booked_seats(&mut tx, r.showtime_id, booking_id, seats).await {
        if violated_constraint(&e) == Some("booked_seats_pkey") {
            tx.rollback().await?;
            tracing::warn!("booked_seats refused a seat sold to someone else: refunding");
            return refund_after_charge(ctx, payment, r, "a seat was already sold to someone else").await;
        }
        return Err(e.into());
    }
    let event = booking_event(r, BookingEventKind::Confirmed, Some(booking_id), Some(ticket_code), None);
    outbox::stage(&mut tx, &event).await?;
    tx.commit().await?;
    let latency = (chrono::Utc::now() - r.created_at).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!("seatgate_booking_finalisation_seconds").record(latency);
    tracing::info!(booking.id = %booking_id, reservation.id = %r.id, "booking confirmed");
    sell(ctx, r, seats).await?;
    outbox::deliver(&ctx.state, &event).await;
    Ok(Outcome::Confirmed { booking_id })
}

/// Seats sold in Redis and the hold gone; idempotent.
async fn sell(ctx: &WorkerCtx, r: &ReservationRow, seats: &[Uuid]) -> Result<(), PaymentError> {
    let ends_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select ends_at from showtimes where id = $1")
        .bind(r.showtime_id)
        .fetch_one(&ctx.state.db)
        .await?;
    let mut conn = ctx.state.redis.get().await.map_err(transient)?;
    let keys = ctx.state.keys.showtime(r.showtime_id);
    store::sell(&mut conn, &keys, r.hold_id, seats, crate::holds::service::sold_ttl(ends_at))
        .await
        .map_err(transient)?;
    ctx.state.seat_status.invalidate(r.showtime_id);
    let _: Result<(), _> =
        deadpool_redis::redis::cmd("DEL").arg(ctx.state.keys.hold_index(r.hold_id)).query_async(&mut conn).await;
    Ok(())
}

async fn refund_after_charge(
    ctx: &WorkerCtx,
    payment: &PaymentRow,
    r: &ReservationRow,
    reason: &str,
) -> Result<Outcome, PaymentError> {
    ctx.gateway.refund(payment.id).await?;
    let mut tx = ctx.state.db.begin().await?;
    // From `initiated`, or from `failed` when the sweeper expired the reservation meanwhile.
    if !repo::refund_unsettled_payment(&mut tx, payment.id, reason).await? {
        return Ok(Outcome::Skipped("payment already settled"));
    }
    if !repo::move_reservation(
        &mut tx,
        r.id,
        ReservationStatus::PaymentPending,
        ReservationStatus::Failed,
        Some(reason),
    )
    .await?
    {
        // Already expired by the sweeper: keep that status, but say why the money went back.
        repo::explain_reservation(&mut tx, r.id, reason).await?;
    }
    let event = booking_event(r, BookingEventKind::Failed, None, None, Some(reason.to_owned()));
    outbox::stage(&mut tx, &event).await?;
    tx.commit().await?;
    release_hold(ctx, r).await;
    outbox::deliver(&ctx.state, &event).await;
    Ok(Outcome::RefundedAfterCharge { reason: reason.to_owned() })
}

/// The payment's status as stored now.
async fn payment_now(ctx: &WorkerCtx, id: Uuid) -> Result<Option<PaymentStatus>, PaymentError> {
    let mut conn = ctx.state.db.acquire().await?;
    Ok(repo::find_payment(&mut conn, id).await?.map(|p| p.status))
}

/// Why a payment charged after its reservation expired was refunded.
const EXPIRED_WHILE_CHARGING: &str = "the reservation expired while the payment was being charged";
/// Why a payment charged after its showtime was cancelled was refunded.
const CANCELLED_WHILE_CHARGING: &str = "the showtime was cancelled while the payment was being charged";

/// Why a charge that landed after its payment was failed goes back: the sweeper expired the
/// reservation, or the showtime was cancelled.
async fn late_charge_reason(ctx: &WorkerCtx, reservation_id: Uuid) -> Result<&'static str, PaymentError> {
    let mut conn = ctx.state.db.acquire().await?;
    let status = repo::find_reservation(&mut conn, reservation_id).await?.map(|r| r.status);
    Ok(late_reason(status))
}

/// [`late_charge_reason`] for a reservation in `status`.
fn late_reason(status: Option<ReservationStatus>) -> &'static str {
    if status == Some(ReservationStatus::Cancelled) { CANCELLED_WHILE_CHARGING } else { EXPIRED_WHILE_CHARGING }
}

/// A payment the sweeper failed at the reservation's deadline: if the gateway charged it after
/// all (a worker charged, then died or lost the race), refund it and say so.
async fn refund_expired(ctx: &WorkerCtx, payment: &PaymentRow, r: &ReservationRow) -> Result<Outcome, PaymentError> {
    if ctx.gateway.refund(payment.id).await? == Refund::NothingCharged {
        return Ok(Outcome::Skipped("payment already settled"));
    }
    let reason = late_reason(Some(r.status));
    let mut tx = ctx.state.db.begin().await?;
    if !repo::move_payment(&mut tx, payment.id, PaymentStatus::Failed, PaymentStatus::Refunded, None, Some(reason))
        .await?
    {
        return Ok(Outcome::Skipped("payment already settled"));
    }
    repo::explain_reservation(&mut tx, r.id, reason).await?;
    let event = booking_event(r, BookingEventKind::Failed, None, None, Some(reason.to_owned()));
    outbox::stage(&mut tx, &event).await?;
    tx.commit().await?;
    tracing::warn!("a payment charged after its reservation expired was refunded");
    outbox::deliver(&ctx.state, &event).await;
    Ok(Outcome::RefundedAfterCharge { reason: reason.to_owned() })
}

async fn refund_cancelled(ctx: &WorkerCtx, payment_id: Uuid) -> Result<Outcome, PaymentError> {
    let (payment, reservation, _) = load(ctx, payment_id).await?;
    if payment.status != PaymentStatus::Succeeded || reservation.status != ReservationStatus::Cancelled {
        return Ok(Outcome::Skipped("no refund owed"));
    }
    ctx.gateway.refund(payment.id).await?;
    let mut tx = ctx.state.db.begin().await?;
    let reason = reservation.failure_reason.as_deref().unwrap_or("booking cancelled by the customer");
    if !repo::move_payment(&mut tx, payment.id, PaymentStatus::Succeeded, PaymentStatus::Refunded, None, Some(reason))
        .await?
    {
        return Ok(Outcome::Skipped("no refund owed"));
    }
    let event = booking_event(&reservation, BookingEventKind::Cancelled, None, None, Some(reason.to_owned()));
    outbox::stage(&mut tx, &event).await?;
    tx.commit().await?;
    outbox::deliver(&ctx.state, &event).await;
    Ok(Outcome::Refunded)
}

/// Drops whatever the hold still owns in Redis (best effort: it expires anyway).
async fn release_hold(ctx: &WorkerCtx, r: &ReservationRow) {
    let result = async {
        let mut conn = ctx.state.redis.get().await?;
        let keys = ctx.state.keys.showtime(r.showtime_id);
        store::release(&mut conn, &keys, r.hold_id, &r.user_id.to_string(), true).await
    }
    .await;
    ctx.state.seat_status.invalidate(r.showtime_id);
    if let Err(e) = result {
        tracing::warn!(error = %e, hold.id = %r.hold_id, "cannot release the hold; it will expire");
    }
}

/// A booking event about `r`, to stage in the outbox with the state change it reports.
pub fn booking_event(
    r: &ReservationRow,
    kind: BookingEventKind,
    booking_id: Option<Uuid>,
    ticket_code: Option<String>,
    reason: Option<String>,
) -> BookingEvent {
    BookingEvent {
        schema_version: SCHEMA_VERSION,
        message_id: Uuid::now_v7(),
        kind,
        user_id: r.user_id,
        reservation_id: r.id,
        showtime_id: r.showtime_id,
        booking_id,
        ticket_code,
        reason,
        at: chrono::Utc::now(),
    }
}

/// A ticket code like `SG-7K3M-Q9TX` (no 0/O or 1/I to misread at the door).
pub fn ticket_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let mut pick = || ALPHABET[rng.random_range(0..ALPHABET.len())] as char;
    let a: String = (0..4).map(|_| pick()).collect();
    let b: String = (0..4).map(|_| pick()).collect();
    format!("SG-{a}-{b}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_codes_are_readable_and_distinct() {
        let code = ticket_code();
        assert_eq!(code.len(), 12);
        assert!(code.starts_with("SG-"));
        assert!(!code.contains('O') && !code.contains('0') && !code.contains('I') && !code.contains('1'));
        let codes: std::collections::HashSet<_> = (0..1000).map(|_| ticket_code()).collect();
        assert!(codes.len() > 990);
    }
}
