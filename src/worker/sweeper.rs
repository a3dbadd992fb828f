//! The sweeper: on an interval, drop expired holds from Redis, expire reservations whose payment
//! did not complete by their deadline, settle payments that may hold money without a ticket (the
//! reconciler), bring the sold sets back in line with `booked_seats`, relay what a broker outage
//! left in the outbox, and record what landed in `payments.dead`. Safe with several sweepers at
//! once: rows are taken with `for update skip locked` and every change is guarded by the expected
//! state.

use lapin::options::{BasicAckOptions, BasicGetOptions};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::ledger::charge::WorkerCtx;
use crate::ledger::reconcile;
use crate::messaging::outbox;
use crate::state::AppState;

/// Dead letters recorded per pass at most.
const DEAD_LETTER_BATCH: usize = 100;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub holds_dropped: u64,
    pub reservations_expired: u64,
    pub payments_settled: u64,
    pub sold_seats_corrected: u64,
    pub messages_relayed: u64,
    pub dead_letters: u64,
    pub idempotency_keys_deleted: u64,
}

/// Runs passes every `SEATGATE_SWEEP_INTERVAL_SECS` until `stop`.
pub async fn run(ctx: WorkerCtx, stop: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(ctx.state.config.workers.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                let pass = sweep_with(&ctx).await;
                if pass != Sweep::default() {
                    tracing::info!(?pass, "sweep pass");
                }
            }
        }
    }
}

/// One pass with the simulated gateway.
pub async fn sweep_once(state: &AppState) -> Sweep {
    sweep_with(&super::context(state.clone())).await
}

/// One pass; each part logs its own failure and the others still run.
pub async fn sweep_with(ctx: &WorkerCtx) -> Sweep {
    let state = &ctx.state;
    let mut pass = Sweep::default();
    fn logged<T: Default>(what: &str, result: anyhow::Result<T>) -> T {
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "{what} failed");
            T::default()
        })
    }
    pass.holds_dropped = logged("sweeping holds", crate::holds::service::sweep_expired_holds(state).await);
    pass.reservations_expired = logged("expiring reservations", reconcile::expire_overdue(state).await);
    let idle = state.config.workers.stuck_payment_after.as_secs_f64();
    pass.payments_settled =
        logged("settling payments", reconcile::settle_payments(ctx, idle).await.map_err(anyhow::Error::from));
    pass.sold_seats_corrected = logged("reconciling sold seats", reconcile::resync_sold(state).await);
    let relayed = logged("relaying the outbox", outbox::relay(&state.db, &state.amqp).await);
    crate::ledger::events::announce(state, &relayed).await;
    pass.messages_relayed = relayed.len() as u64;
    pass.dead_letters = logged("recording dead letters", record_dead_letters(state).await);
    // Stored answers of `Idempotency-Key` requests are kept for a day.
    pass.idempotency_keys_deleted = logged(
        "deleting old idempotency keys",
        sqlx::query("delete from idempotency_keys where created_at < now() - interval '24 hours'")
            .execute(&state.db)
            .await
            .map(|done| done.rows_affected())
            .map_err(anyhow::Error::from),
    );
    pass
}

/// Drains `payments.dead` into the `dead_letters` table (acked only after the insert), with the
/// metric `seatgate_payments_dead_lettered_total` to alert on.
pub async fn record_dead_letters(state: &AppState) -> anyhow::Result<u64> {
    let queue = state.amqp.names().payments_dead.clone();
    let channel = state.amqp.channel().await?;
    let mut recorded = 0;
    while recorded < DEAD_LETTER_BATCH as u64 {
        let Some(message) = channel.basic_get(queue.as_str().into(), BasicGetOptions::default()).await? else {
            break;
        };
        let delivery = message.delivery;
        let payload: serde_json::Value = serde_json::from_slice(&delivery.data)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&delivery.data).into_owned()));
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .and_then(|id| id.as_str().parse::<Uuid>().ok())
            .unwrap_or_else(Uuid::now_v7);
        let payment_id = payload.get("payment_id").and_then(|v| v.as_str()).and_then(|s| s.parse::<Uuid>().ok());
        let attempts = super::consume::attempt_of(&delivery);
        sqlx::query(
            r#"insert into dead_letters (message_id, queue, payment_id, attempts, payload)
               values ($1, $2, $3, $4, $5) on conflict do nothing"#,
        )
        .bind(message_id)
        .bind(&queue)
        .bind(payment_id)
        .bind(attempts as i32)
        .bind(&payload)
        .execute(&state.db)
        .await?;
        delivery.ack(BasicAckOptions::default()).await?;
        metrics::counter!("seatgate_payments_dead_lettered_total").increment(1);
        tracing::error!(message.id = %message_id, payment.id = ?payment_id, attempts,
            "a payment task was dead-lettered; its payment is settled by the reconciler");
        recorded += 1;
    }
    Ok(recorded)
}
