//! The transactional outbox of booking events (docs/DESIGN.md §2 invariant 6, "nothing lost", for
//! notifications). [`stage`] writes an event inside the caller's transaction, so it exists if
//! and only if the state change it reports committed; [`deliver`] publishes it right after the
//! commit and deletes the row; [`relay`] (run by the sweeper) publishes whatever a broker
//! outage or a crash left behind. Delivery is at least once: the notification consumer drops
//! duplicates by message id.

use std::time::Duration;

use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::messages::BookingEvent;
use super::publisher::publish_json;
use crate::state::AppState;

/// Rows relayed per sweeper pass.
const BATCH: i64 = 100;

/// Left to [`deliver`] this long before the sweeper publishes an event itself.
pub const RELAY_AFTER: Duration = Duration::from_secs(5);

/// The routing key of a booking event.
pub fn routing_key(event: &BookingEvent) -> String {
    format!("booking.{}", event.kind.as_str())
}

/// Writes `event` into the outbox, inside the caller's transaction.
#[tracing::instrument(skip_all, fields(message.id = %event.message_id))]
pub async fn stage(conn: &mut PgConnection, event: &BookingEvent) -> Result<(), sqlx::Error> {
    sqlx::query("insert into outbox (message_id, routing_key, payload) values ($1, $2, $3) on conflict do nothing")
        .bind(event.message_id)
        .bind(routing_key(event))
        .bind(Json(event))
        .execute(conn)
        .await?;
    Ok(())
}

/// Publishes a staged event and deletes its row. On failure the row stays for [`relay`].
pub async fn deliver(state: &AppState, event: &BookingEvent) {
    match publish(state, event.message_id, &routing_key(event), event).await {
        Ok(()) => forget(state, event.message_id).await,
        Err(e) => {
            metrics::counter!("seatgate_queue_publish_failures_total", "queue" => "notifications").increment(1);
            tracing::warn!(error = %format!("{e:#}"), message.id = %event.message_id, "booking event not published yet; the sweeper will retry");
            note_failure(state, event.message_id).await;
        }
    }
}

/// Publishes events older than [`RELAY_AFTER`]; returns how many went out. Safe with several
/// sweepers: rows are taken with `for update skip locked`.
pub async fn relay(state: &AppState) -> anyhow::Result<u64> {
    let mut tx = state.db.begin().await?;
    let rows: Vec<(Uuid, String, Json<serde_json::Value>)> = sqlx::query_as(
        r#"select message_id, routing_key, payload from outbox
            where created_at < now() - make_interval(secs => $1)
            order by created_at limit $2 for update skip locked"#,
    )
    .bind(RELAY_AFTER.as_secs_f64())
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut sent = Vec::with_capacity(rows.len());
    let mut failure = None;
    for (message_id, key, Json(payload)) in rows {
        match publish(state, message_id, &key, &payload).await {
            Ok(()) => sent.push(message_id),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    sqlx::query("delete from outbox where message_id = any($1)").bind(&sent).execute(&mut *tx).await?;
    tx.commit().await?;
    match failure {
        Some(e) if sent.is_empty() => Err(e.context("relay booking events")),
        Some(e) => {
            tracing::warn!(error = %format!("{e:#}"), sent = sent.len(), "relayed some booking events, then failed");
            Ok(sent.len() as u64)
        }
        None => Ok(sent.len() as u64),
    }
}

async fn publish<T: serde::Serialize>(state: &AppState, message_id: Uuid, key: &str, body: &T) -> anyhow::Result<()> {
    let channel = state.amqp.channel().await?;
    publish_json(&channel, &state.amqp.names().exchange, key, message_id, 1, body).await
}

async fn forget(state: &AppState, message_id: Uuid) {
    if let Err(e) = sqlx::query("delete from outbox where message_id = $1").bind(message_id).execute(&state.db).await {
        // The sweeper publishes it again; the consumer drops the duplicate.
        tracing::warn!(error = %e, message.id = %message_id, "cannot delete a published outbox row");
    }
}

async fn note_failure(state: &AppState, message_id: Uuid) {
    let _ = sqlx::query("update outbox set attempts = attempts + 1 where message_id = $1")
        .bind(message_id)
        .execute(&state.db)
        .await;
}
