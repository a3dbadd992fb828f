//! The transactional outbox, the one way any RabbitMQ message leaves seatgate (docs/DESIGN.md §5;
//! invariant 6, nothing lost). [`stage`] writes a message inside the caller's
//! transaction, so it exists if and only if the state change that causes it committed;
//! [`deliver`] gives it to the process' [`Courier`] right after the commit, which publishes it
//! with confirms, batched with other commits' messages, and deletes the row; [`relay`]
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
use super::publisher::{confirmed, send_json};
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
    /// The message's JSON, as its outbox row holds it.
    pub fn payload(&self) -> &Value {
        &self.payload
    }

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

/// `message` as the outbox stores it, for a statement that writes its row itself (checkout's
/// one statement, `ledger::repo::CHECKOUT`); [`stage`] is the usual way.
pub fn prepare(message: &impl Message) -> Result<Staged, sqlx::Error> {
    let payload = serde_json::to_value(message).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok(Staged {
        message_id: message.message_id(),
        routing_key: message.routing_key(),
        reservation: message.reservation(),
        payload,
    })
}

/// Writes `message` into the outbox, inside the caller's transaction.
#[tracing::instrument(skip_all, fields(message.id = %message.message_id()))]
pub async fn stage(conn: &mut PgConnection, message: &impl Message) -> Result<Staged, sqlx::Error> {
    let staged = prepare(message)?;
    sqlx::query(STAGE)
        .bind(staged.message_id)
        .bind(&staged.routing_key)
        .bind(Json(&staged.payload))
        .execute(conn)
        .await?;
    Ok(staged)
}

/// The process' queue of committed messages waiting for their publish: [`deliver`] appends;
/// one task at a time drains it, taking everything waiting as one batch (all of its messages
/// sent, then their confirms awaited together, then their rows deleted in one statement), so
/// concurrent commits share round trips to RabbitMQ and PostgreSQL instead of each paying its own.
#[derive(Debug, Default)]
pub struct Courier {
    batch: std::sync::Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    messages: Vec<Staged>,
    /// Told when the batch holding their messages is done (published, or left to the relay).
    waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// A drain task is running (it takes whatever is appended before it stops).
    draining: bool,
}

/// One drain pass: the messages and who waits for them.
type Batch = (Vec<Staged>, Vec<tokio::sync::oneshot::Sender<()>>);

impl Courier {
    /// Appends `messages`; the receiver is told when they are done, and the bool is true when
    /// the caller must start the drain task.
    fn push(&self, messages: &[Staged]) -> (tokio::sync::oneshot::Receiver<()>, bool) {
        let (done, receiver) = tokio::sync::oneshot::channel();
        let mut pending = self.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.messages.extend_from_slice(messages);
        pending.waiters.push(done);
        (receiver, !std::mem::replace(&mut pending.draining, true))
    }

    /// Everything waiting, or `None` (and the drain task ends) when nothing is.
    fn next_batch(&self) -> Option<Batch> {
        let mut pending = self.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.messages.is_empty() {
            pending.draining = false;
            return None;
        }
        Some((std::mem::take(&mut pending.messages), std::mem::take(&mut pending.waiters)))
    }
}

/// Marks the courier idle if its drain task is dropped before it finished.
struct Draining<'a> {
    courier: &'a Courier,
    finished: bool,
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.courier.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).draining = false;
        }
    }
}

/// Publishes staged messages (after their commit) with confirms and deletes their rows, batched
/// with whatever else this process committed meanwhile; returns once their batch is done. What
/// fails stays in the outbox for [`relay`]; nothing is returned to the caller, whose change has
/// committed.
pub async fn deliver(db: &sqlx::PgPool, amqp: &std::sync::Arc<Amqp>, messages: &[Staged]) {
    if let Some(done) = hand_over(db, amqp, messages) {
        // An error only means the drain task was dropped (shutdown): the relay sends them.
        let _ = done.await;
    }
}

/// Hands staged messages (after their commit) to the process' [`Courier`] and returns at once;
/// the receiver is told when their batch is done. A crash that loses the courier's queue loses
/// nothing: the rows are still in the outbox, and the relay publishes them.
fn hand_over(
    db: &sqlx::PgPool,
    amqp: &std::sync::Arc<Amqp>,
    messages: &[Staged],
) -> Option<tokio::sync::oneshot::Receiver<()>> {
    if messages.is_empty() {
        return None;
    }
    let (done, start) = amqp.courier().push(messages);
    if start {
        let (db, owner) = (db.clone(), amqp.clone());
        amqp.spawn(async move {
            // Dropped mid-batch (the runtime stops): the next hand-over starts a new drain task.
            let mut draining = Draining { courier: owner.courier(), finished: false };
            while let Some((batch, waiters)) = owner.courier().next_batch() {
                deliver_batch(&db, &owner, &batch).await;
                for waiter in waiters {
                    let _ = waiter.send(());
                }
            }
            // `next_batch` found nothing and marked the courier idle itself.
            draining.finished = true;
        });
    }
    Some(done)
}

/// Publishes one batch: every message sent, then the confirms awaited, then the published rows
/// deleted in one statement. The delete needs no flush of its own (`synchronous_commit` off): if
/// a crash loses it, the relay publishes those messages again, and consumers drop duplicates.
async fn deliver_batch(db: &sqlx::PgPool, amqp: &Amqp, messages: &[Staged]) {
    let confirmed_count = match amqp.channel().await {
        Ok(channel) => publish_all(&channel, &amqp.names().exchange, messages).await.0,
        Err(e) => {
            not_published(&messages[0], &e);
            0
        }
    };
    let ids = |part: &[Staged]| part.iter().map(|m| m.message_id).collect::<Vec<Uuid>>();
    let (sent, unsent) = (ids(&messages[..confirmed_count]), ids(&messages[confirmed_count..]));
    if !sent.is_empty()
        && let Err(e) = delete_published(db, &sent).await
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

/// Deletes the rows of published messages, without waiting for the WAL flush: one statement,
/// whose own transaction turns `synchronous_commit` off in its `using` (as the idempotency claim
/// does), instead of begin, set, delete and commit.
async fn delete_published(db: &sqlx::PgPool, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "delete from outbox using (select set_config('synchronous_commit', 'off', true)) as no_flush_wait \
         where message_id = any($1)",
    )
    .bind(ids)
    .execute(db)
    .await
    .map(drop)
}

/// Sends every message, then awaits their confirms in order: returns how many were confirmed
/// (a prefix of `messages`; the rest stays in the outbox for later) and the first failure, which
/// is counted and logged.
async fn publish_all(channel: &lapin::Channel, exchange: &str, messages: &[Staged]) -> (usize, Option<anyhow::Error>) {
    let mut in_flight = Vec::with_capacity(messages.len());
    let mut failure = None;
    for m in messages {
        match send_json(channel, exchange, &m.routing_key, m.message_id, 1, &m.payload).await {
            Ok(confirm) => in_flight.push(confirm),
            Err(e) => {
                failure = Some((m, e));
                break;
            }
        }
    }
    let mut confirmed_count = 0;
    for confirm in in_flight {
        if let Err(e) = confirmed(confirm).await {
            failure = Some((&messages[confirmed_count], e));
            break;
        }
        confirmed_count += 1;
    }
    match failure {
        Some((m, e)) => {
            not_published(m, &e);
            (confirmed_count, Some(e))
        }
        None => (confirmed_count, None),
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
    let mut sent: Vec<Staged> =
        rows.into_iter().map(|(message_id, key, Json(payload))| Staged::relayed(message_id, key, payload)).collect();
    let (confirmed_count, failure) = match amqp.channel().await {
        Ok(channel) => publish_all(&channel, &amqp.names().exchange, &sent).await,
        Err(e) => (0, Some(e)),
    };
    sent.truncate(confirmed_count);
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
