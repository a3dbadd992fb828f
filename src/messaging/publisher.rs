//! Publishing with publisher confirms: a publish returns only once the broker has taken
//! responsibility for the message (persistent, routed), or fails.

use anyhow::{Context, bail};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use serde::Serialize;
use uuid::Uuid;

/// Header carrying how many times a task was attempted.
pub const ATTEMPT_HEADER: &str = "x-attempt";
/// Header carrying the request id that caused the message.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Publishes `body` as persistent JSON and waits for the broker's confirm.
#[tracing::instrument(skip_all, fields(exchange, routing_key, message.id = %message_id))]
pub async fn publish_json<T: Serialize>(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    message_id: Uuid,
    attempt: u32,
    body: &T,
) -> anyhow::Result<()> {
    confirmed(send_json(channel, exchange, routing_key, message_id, attempt, body).await?).await
}

/// Sends `body` as persistent JSON and returns without waiting for the broker's confirm, so a
/// batch of messages is sent before the first confirm is awaited (the broker confirms them
/// together); hand the result to [`confirmed`].
pub async fn send_json<T: Serialize>(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    message_id: Uuid,
    attempt: u32,
    body: &T,
) -> anyhow::Result<PublisherConfirm> {
    let payload = serde_json::to_vec(body).context("encode message")?;
    let mut headers = FieldTable::default();
    headers.insert(ShortString::from(ATTEMPT_HEADER), AMQPValue::LongUInt(attempt));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(message_id.to_string().into())
        .with_headers(headers);
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
            &payload,
            props,
        )
        .await
        .context("publish")
}

/// Waits for the broker's confirm of a sent message: `Ok` once it took responsibility for it
/// (persistent, routed).
pub async fn confirmed(confirm: PublisherConfirm) -> anyhow::Result<()> {
    let confirm = confirm.await.context("publisher confirm")?;
    if confirm.is_nack() {
        bail!("the broker refused the message");
    }
    if let Some(returned) = confirm.take_message() {
        bail!("the message was not routed to any queue (reply {})", returned.reply_code);
    }
    Ok(())
}
