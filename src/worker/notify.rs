//! Notifications of booking events. The default notifier stores each event once (by message
//! id) and logs it; email or SMS senders implement [`Notifier`] beside it.

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::types::Json;

use crate::messaging::messages::BookingEvent;

/// Delivers a booking event to the customer.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Must be idempotent by `event.message_id`.
    async fn notify(&self, event: &BookingEvent) -> anyhow::Result<()>;
}

/// Writes events to the `notifications` table and the log.
pub struct StoreNotifier {
    db: PgPool,
}

impl StoreNotifier {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Notifier for StoreNotifier {
    async fn notify(&self, event: &BookingEvent) -> anyhow::Result<()> {
        sqlx::query(
            r#"insert into notifications (message_id, kind, user_id, reservation_id, booking_id, payload)
               values ($1, $2, $3, $4, $5, $6) on conflict (message_id) do nothing"#,
        )
        .bind(event.message_id)
        .bind(event.kind.as_str())
        .bind(event.user_id)
        .bind(event.reservation_id)
        .bind(event.booking_id)
        .bind(Json(event))
        .execute(&self.db)
        .await?;
        tracing::info!(
            kind = event.kind.as_str(),
            reservation.id = %event.reservation_id,
            user.id = %event.user_id,
            "booking notification"
        );
        Ok(())
    }
}
