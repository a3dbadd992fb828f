//! The transactional outbox, the one way any RabbitMQ message leaves seatgate (docs/DESIGN.md §5;
//! invariant 6, nothing lost). [`stage`] writes a message inside the caller's
//! transaction, so it exists if and only if the state change that causes it committed;
//! [`deliver`] publishes it with confirms right after the commit and deletes the row; [`relay`]
//! (run by the sweeper) publishes whatever a broker outage or a crash left behind. Delivery is
//! at least once: consumers are idempotent (notifications by message id, payment tasks by the
//! payment's guarded state). Publishing never fails a request: a message that could not go out
//! now goes out later.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::messages::{BookingEvent, PaymentAction, PaymentTask};
use super::publisher::publish_json;
use super::topology::{CHARGE_KEY, REFUND_KEY};
use crate::messaging::amqp::Amqp;

/// Rows relayed per sweeper pass.
const BATCH: i64 = 100;

/// Left to [`deliver`] this long before the sweeper publishes a message itself.
pub const RELAY_AFTER: Duration = Duration::from_secs(5);

/// A message written to the outbox, to publish once its transaction committed.
#[derive(Clone, Debug)]
pub struct Staged {
    pub message_id: Uuid,
    pub routing_key: String,
    /// `(showtime_id, reservation_id)` of a booking event: whose live stream to tell once the
    /// transaction committed.
    pub reservation: Option<(Uuid, Uuid)>,
    payload: Value,
}

impl Staged {
    /// A message read back from the outbox by the relay; a booking event names its reservation.
    fn relayed(message_id: Uuid, routing_key: String, payload: Value) -> Self {
        let id = |field: &str| payload.get(field).and_then(Value::as_str).and_then(|s| s.parse::<Uuid>().ok());
        let reservation =
            if routing_key.starts_with("booking.") { id("showtime_id").zip(id("reservation_id")) } else { None };
        Self { message_id, routing_key, reservation, payload }
    }
    /// What the message is about, for the metric of failed publishes.
    fn queue(&self) -> &'static str {
        if self.routing_key.starts_with("payment.") { "payments" } else { "notifications" }
    }
}

/// Anything that goes through the outbox.
pub trait Message: Serialize {
    fn message_id(&self) -> Uuid;
    fn routing_key(&self) -> String;
    /// `(showtime_id, reservation_id)` when the message reports a reservation's new status.
    fn reservation(&self) -> Option<(Uuid, Uuid)> {
        None
    }
}

impl Message for BookingEvent {
    fn message_id(&self) -> Uuid {
        self.message_id
    }
    fn routing_key(&self) -> String {
        format!("booking.{}", self.kind.as_str())
    }
    fn reservation(&self) -> Option<(Uuid, Uuid)> {
        Some((self.showtime_id, self.reservation_id))
    }
}

impl Message for PaymentTask {
    fn message_id(&self) -> Uuid {
        self.message_id
    }
    fn routing_key(&self) -> String {
        match self.action {
            PaymentAction::Charge => CHARGE_KEY,
            PaymentAction::Refund => REFUND_KEY,
        }
        .to_owned()
    }
}

/// The statement that stages a message: `$1` message id, `$2` routing key, `$3` JSON payload.
pub const STAGE: &str =
    "insert into outbox (message_id, routing_key, payload) values ($1, $2, $3) on conflict do nothing";

/// Writes `message` into the outbox, inside the caller's transaction.
#[tracing::instrument(skip_all, fields(message.id = %message.message_id()))]
pub async fn stage(conn: &mut PgConnection, message: &impl Message) -> Result<Staged, sqlx::Error> {
    let payload = serde_json::to_value(message).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let staged = Staged {
        message_id: message.message_id(),
        routing_key: message.routing_key(),
        reservation: message.reservation(),
        payload,
    };
    sqlx::query(STAGE)
        .bind(staged.message_id)
        .bind(&staged.routing_key)
        .bind(Json(&staged.payload))
        .execute(conn)
        .await?;
    Ok(staged)
}

/// Publishes staged messages (after their commit) and deletes their rows. What fails stays in
/// the outbox for [`relay`]; nothing is returned to the caller, whose change has committed.
pub async fn deliver(db: &sqlx::PgPool, amqp: &Amqp, messages: &[Staged]) {
    if messages.is_empty() {
        return;
    }
    let mut sent = Vec::with_capacity(messages.len());
    match amqp.channel().await {
        Ok(channel) => {
            for m in messages {
                match publish_json(&channel, &amqp.names().exchange, &m.routing_key, m.message_id, 1, &m.payload).await
                {
                    Ok(()) => sent.push(m.message_id),
                    Err(e) => {
                        not_published(m, &e);
                        break;
                    }
                }
            }
        }
        Err(e) => not_published(&messages[0], &e),
    }
    let unsent: Vec<Uuid> = messages.iter().map(|m| m.message_id).filter(|id| !sent.contains(id)).collect();
    if !sent.is_empty()
        && let Err(e) = sqlx::query("delete from outbox where message_id = any($1)").bind(&sent).execute(db).await
    {
        // The sweeper publishes them again; consumers drop the duplicates.
        tracing::warn!(error = %e, "cannot delete published outbox rows");
    }
    if !unsent.is_empty() {
        let _ = sqlx::query("update outbox set attempts = attempts + 1 where message_id = any($1)")
            .bind(&unsent)
            .execute(db)
            .await;
    }
}

fn not_published(m: &Staged, e: &anyhow::Error) {
    metrics::counter!("seatgate_queue_publish_failures_total", "queue" => m.queue()).increment(1);
    tracing::warn!(error = %format!("{e:#}"), message.id = %m.message_id, routing_key = %m.routing_key,
        "message not published yet; the sweeper will relay it");
}

/// Publishes messages older than [`RELAY_AFTER`]; returns those that went out (the caller tells
/// whoever else a booking event concerns, e.g. the reservation's live streams). Safe with several
/// sweepers: rows are taken with `for update skip locked`.
pub async fn relay(db: &sqlx::PgPool, amqp: &Amqp) -> anyhow::Result<Vec<Staged>> {
    let mut tx = db.begin().await?;
    let rows: Vec<(Uuid, String, Json<Value>)> = sqlx::query_as(
        r#"select message_id, routing_key, payload from outbox
            where created_at < now() - make_interval(secs => $1)
            order by created_at limit $2 for update skip locked"#,
    )
    .bind(RELAY_AFTER.as_secs_f64())
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut sent = Vec::with_capacity(rows.len());
    let mut failure = None;
    match amqp.channel().await {
        Ok(channel) => {
            for (message_id, key, Json(payload)) in rows {
                match publish_json(&channel, &amqp.names().exchange, &key, message_id, 1, &payload).await {
                    Ok(()) => sent.push(Staged::relayed(message_id, key, payload)),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        Err(e) => failure = Some(e),
    }
    let ids: Vec<Uuid> = sent.iter().map(|m| m.message_id).collect();
    sqlx::query("delete from outbox where message_id = any($1)").bind(&ids).execute(&mut *tx).await?;
    tx.commit().await?;
    match failure {
        Some(e) if sent.is_empty() => Err(e.context("relay outbox messages")),
        Some(e) => {
            tracing::warn!(error = %format!("{e:#}"), sent = sent.len(), "relayed some outbox messages, then failed");
            Ok(sent)
        }
        None => Ok(sent),
    }
}
