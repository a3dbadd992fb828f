//! Versioned JSON messages. The payment id is the idempotency key of every payment task.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of the message schemas below.
pub const SCHEMA_VERSION: u32 = 1;

/// What a payment worker is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentAction {
    /// Charge, then book (checkout).
    Charge,
    /// Give the money back (a cancelled booking).
    Refund,
}

/// A task on the `payments` queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentTask {
    pub schema_version: u32,
    pub message_id: Uuid,
    pub action: PaymentAction,
    pub payment_id: Uuid,
    pub reservation_id: Uuid,
}

impl PaymentTask {
    pub fn new(action: PaymentAction, payment_id: Uuid, reservation_id: Uuid) -> Self {
        Self { schema_version: SCHEMA_VERSION, message_id: Uuid::now_v7(), action, payment_id, reservation_id }
    }
}

/// What happened to a booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingEventKind {
    Confirmed,
    Failed,
    Expired,
    Cancelled,
}

impl BookingEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An event on the `notifications` queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingEvent {
    pub schema_version: u32,
    pub message_id: Uuid,
    pub kind: BookingEventKind,
    pub user_id: Uuid,
    pub reservation_id: Uuid,
    pub showtime_id: Uuid,
    pub booking_id: Option<Uuid>,
    pub ticket_code: Option<String>,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}
