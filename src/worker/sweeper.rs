//! The sweeper: on an interval, drop expired holds from Redis, expire reservations whose
//! payment did not complete by their deadline, and publish again payment tasks that were lost
//! (a payment still `initiated`, or a refund still owed, long after its last change). Safe with
//! several sweepers at once: rows are taken with `for update skip locked` and every change is
//! guarded by the expected state. It also relays booking events a broker outage left in the
//! outbox.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::checkout::service::publish_task;
use crate::domain::{PaymentStatus, ReservationStatus};
use crate::holds::store;
use crate::messaging::messages::{BookingEvent, BookingEventKind, PaymentAction, PaymentTask};
use crate::messaging::outbox;
use crate::payments::repo::{self, ReservationRow};
use crate::payments::service::booking_event;
use crate::state::AppState;

/// Rows handled per query, so one pass never holds many locks.
const BATCH: i64 = 100;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub holds_dropped: u64,
    pub reservations_expired: u64,
    pub payments_republished: u64,
    pub refunds_republished: u64,
    pub idempotency_keys_deleted: u64,
    pub events_relayed: u64,
}

/// Runs passes every `SEATGATE_SWEEP_INTERVAL_SECS` until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(state.config.workers.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                let pass = sweep_once(&state).await;
                if pass != Sweep::default() {
                    tracing::info!(?pass, "sweep pass");
                }
            }
        }
    }
}

/// One pass; each part logs its own failure and the others still run.
pub async fn sweep_once(state: &AppState) -> Sweep {
    let mut pass = Sweep::default();
    match crate::holds::service::sweep_expired_holds(state).await {
        Ok(n) => pass.holds_dropped = n,
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "sweeping holds failed"),
    }
    match expire_reservations(state).await {
        Ok(n) => pass.reservations_expired = n,
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "expiring reservations failed"),
    }
    match republish_stuck(state).await {
        Ok((charges, refunds)) => {
            pass.payments_republished = charges;
            pass.refunds_republished = refunds;
        }
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "republishing payments failed"),
    }
    match outbox::relay(state).await {
        Ok(n) => pass.events_relayed = n,
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "relaying booking events failed"),
    }
    // Stored answers of `Idempotency-Key` requests are kept for a day.
    let deleted = sqlx::query("delete from idempotency_keys where created_at < now() - interval '24 hours'")
        .execute(&state.db)
        .await;
    match deleted {
        Ok(done) => pass.idempotency_keys_deleted = done.rows_affected(),
        Err(e) => tracing::warn!(error = %e, "deleting old idempotency keys failed"),
    }
    pass
}

/// Reservations past their deadline with no successful payment end `expired`.
pub async fn expire_reservations(state: &AppState) -> anyhow::Result<u64> {
    let mut tx = state.db.begin().await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        r#"select id from reservations where status = 'payment_pending' and deadline < now()
            order by deadline limit $1 for update skip locked"#,
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let reason = "payment not completed before the deadline";
    let mut expired: Vec<(ReservationRow, BookingEvent)> = Vec::new();
    for id in ids {
        if repo::move_reservation(
            &mut tx,
            id,
            ReservationStatus::PaymentPending,
            ReservationStatus::Expired,
            Some(reason),
        )
        .await?
        {
            repo::fail_unpaid_payments(&mut tx, id, reason).await?;
            if let Some(r) = repo::find_reservation(&mut tx, id).await? {
                let event = booking_event(&r, BookingEventKind::Expired, None, None, Some(reason.to_owned()));
                outbox::stage(&mut tx, &event).await?;
                expired.push((r, event));
            }
        }
    }
    tx.commit().await?;
    for (r, event) in &expired {
        if let Ok(mut conn) = state.redis.get().await {
            let keys = state.keys.showtime(r.showtime_id);
            let _ = store::release(&mut conn, &keys, r.hold_id, &r.user_id.to_string(), true).await;
            state.seat_status.invalidate(r.showtime_id);
        }
        outbox::deliver(state, event).await;
    }
    if !expired.is_empty() {
        metrics::counter!("seatgate_reservations_expired_total").increment(expired.len() as u64);
    }
    Ok(expired.len() as u64)
}

/// Payment tasks that were lost (never published, or dropped) are published again.
pub async fn republish_stuck(state: &AppState) -> anyhow::Result<(u64, u64)> {
    let threshold = state.config.workers.stuck_payment_after;
    let charges = stuck(state, threshold, PaymentStatus::Initiated, ReservationStatus::PaymentPending).await?;
    let refunds = stuck(state, threshold, PaymentStatus::Succeeded, ReservationStatus::Cancelled).await?;
    for (payment_id, reservation_id) in &charges {
        publish_task(state, &PaymentTask::new(PaymentAction::Charge, *payment_id, *reservation_id))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for (payment_id, reservation_id) in &refunds {
        publish_task(state, &PaymentTask::new(PaymentAction::Refund, *payment_id, *reservation_id))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok((charges.len() as u64, refunds.len() as u64))
}

/// Payments in `payment` state for reservations in `reservation` state, unchanged for
/// `threshold`; their `updated_at` is touched so the next pass leaves them alone a while.
async fn stuck(
    state: &AppState,
    threshold: Duration,
    payment: PaymentStatus,
    reservation: ReservationStatus,
) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    let mut tx = state.db.begin().await?;
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        r#"select p.id, p.reservation_id from payments p join reservations r on r.id = p.reservation_id
            where p.status = $1 and r.status = $2 and p.updated_at < now() - make_interval(secs => $3)
            order by p.updated_at limit $4 for update of p skip locked"#,
    )
    .bind(payment)
    .bind(reservation)
    .bind(threshold.as_secs_f64())
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    sqlx::query("update payments set updated_at = now() where id = any($1)").bind(&ids).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}
