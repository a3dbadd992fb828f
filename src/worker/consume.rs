//! Consume loops. A delivery is acked only after its work is durable; a transient failure goes
//! to a retry queue with back-off and an attempt count; a task that keeps failing, or a body
//! that cannot be decoded, goes to the dead-letter queue. Nothing is requeued in a hot loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::notify::Notifier;
use crate::ledger::charge::{PaymentError, WorkerCtx, handle_payment};
use crate::messaging::messages::{BookingEvent, PaymentTask};
use crate::messaging::publisher::{ATTEMPT_HEADER, publish_json};
use crate::state::AppState;

/// Wait before reconnecting after the broker went away.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Consumes the `payments` queue until `stop`.
pub async fn run_payments(ctx: Arc<WorkerCtx>, stop: CancellationToken) -> anyhow::Result<()> {
    let queue = ctx.state.amqp.names().payments.clone();
    let state = ctx.state.clone();
    consume(&state, &queue, stop, move |delivery| {
        let ctx = ctx.clone();
        async move { on_payment(&ctx, delivery).await }
    })
    .await
}

/// Consumes the `notifications` queue until `stop`.
pub async fn run_notifications(
    state: AppState,
    notifier: Arc<dyn Notifier>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let queue = state.amqp.names().notifications.clone();
    consume(&state, &queue, stop, move |delivery| {
        let notifier = notifier.clone();
        async move { on_notification(notifier.as_ref(), delivery).await }
    })
    .await
}

/// The reconnecting consume loop: handlers run concurrently up to the prefetch count.
async fn consume<F, Fut>(state: &AppState, queue: &str, stop: CancellationToken, handler: F) -> anyhow::Result<()>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tracker = TaskTracker::new();
    while !stop.is_cancelled() {
        let session = async {
            let connection = state.amqp.connect().await?;
            let channel = state.amqp.open_channel(&connection).await?;
            channel.basic_qos(state.config.amqp.prefetch, BasicQosOptions::default()).await?;
            let mut consumer = channel
                .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
                .await?;
            tracing::info!(queue, "consuming");
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    next = consumer.next() => match next {
                        Some(Ok(delivery)) => { tracker.spawn(handler(delivery)); }
                        Some(Err(e)) => return Err(anyhow::Error::new(e).context("consumer failed")),
                        None => return Err(anyhow::anyhow!("the broker closed the consumer")),
                    },
                }
            }
            // Stop: no new deliveries, finish those in flight, then close.
            tracker.close();
            tracker.wait().await;
            let _ = channel.close(200, "worker stopping".into()).await;
            let _ = connection.close(200, "worker stopping".into()).await;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = session {
            tracing::warn!(queue, error = %format!("{e:#}"), "consumer lost its connection; reconnecting");
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// How many times a task was attempted, from its header (1 when absent).
pub(crate) fn attempt_of(delivery: &Delivery) -> u32 {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongUInt(n) => Some(n),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            AMQPValue::ShortUInt(n) => Some(u32::from(n)),
            _ => None,
        })
        .unwrap_or(1)
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        // The channel is gone: the broker redelivers, and the handlers are idempotent.
        tracing::warn!(error = %e, "ack failed");
    }
}

async fn on_payment(ctx: &WorkerCtx, delivery: Delivery) {
    let attempt = attempt_of(&delivery);
    let names = ctx.state.amqp.names().clone();
    let task: PaymentTask = match serde_json::from_slice(&delivery.data) {
        Ok(task) => task,
        Err(e) => {
            tracing::error!(error = %e, "undecodable payment task: dead-lettering it");
            let raw: serde_json::Value = serde_json::from_slice(&delivery.data)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&delivery.data).into_owned()));
            forward(ctx, &delivery, &names.payments_dead, uuid::Uuid::now_v7(), attempt, &raw).await;
            return;
        }
    };
    let span = tracing::info_span!("payment task", payment.id = %task.payment_id, attempt);
    let _enter = span.enter();
    match handle_payment(ctx, &task).await {
        Ok(outcome) => {
            metrics::counter!("seatgate_payments_total", "outcome" => outcome.label()).increment(1);
            tracing::info!(outcome = ?outcome, "payment task done");
            ack(&delivery).await;
        }
        Err(e @ PaymentError::Transient(_)) if attempt < ctx.state.config.workers.payment_max_attempts => {
            let (delay, queue) = names.retry_queue(attempt).clone();
            tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "payment task failed; retrying later");
            metrics::counter!("seatgate_payments_total", "outcome" => "retried").increment(1);
            forward(ctx, &delivery, &queue, task.message_id, attempt + 1, &task).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "payment task failed for good: dead-lettering it");
            metrics::counter!("seatgate_payments_total", "outcome" => "dead_lettered").increment(1);
            forward(ctx, &delivery, &names.payments_dead, task.message_id, attempt, &task).await;
        }
    }
}

/// Publishes the task to `queue` (via the default exchange) and acks the delivery; if the
/// publish fails, the delivery goes back to its queue for another try.
async fn forward<T: serde::Serialize>(
    ctx: &WorkerCtx,
    delivery: &Delivery,
    queue: &str,
    id: uuid::Uuid,
    attempt: u32,
    body: &T,
) {
    let published = async {
        let channel = ctx.state.amqp.channel().await?;
        publish_json(&channel, "", queue, id, attempt, body).await
    }
    .await;
    match published {
        Ok(()) => ack(delivery).await,
        Err(e) => {
            metrics::counter!("seatgate_queue_publish_failures_total", "queue" => "payments").increment(1);
            tracing::warn!(error = %e, queue, "cannot forward the task; returning it to its queue");
            tokio::time::sleep(RECONNECT_DELAY).await;
            let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
        }
    }
}

async fn on_notification(notifier: &dyn Notifier, delivery: Delivery) {
    let event: BookingEvent = match serde_json::from_slice(&delivery.data) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "undecodable booking event: dropping it");
            ack(&delivery).await;
            return;
        }
    };
    match notifier.notify(&event).await {
        Ok(()) => {
            metrics::counter!("seatgate_notifications_total", "kind" => event.kind.as_str()).increment(1);
            ack(&delivery).await
        }
        Err(e) => {
            tracing::warn!(error = %e, "notification failed; it will be redelivered");
            tokio::time::sleep(RECONNECT_DELAY).await;
            let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
        }
    }
}
