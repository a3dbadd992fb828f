//! Status enums of reservations, payments and bookings: explicit states, no boolean flags.
//! Every change of state is a guarded `update ... where status = <expected>` in the repos.

use serde::{Deserialize, Serialize};

/// Where a reservation (one checkout of one hold) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "reservation_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    PaymentPending,
    Confirmed,
    Failed,
    Expired,
    Cancelled,
}

/// Where a payment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "payment_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Written by checkout; no worker has begun to charge it.
    Initiated,
    /// A worker won the right to charge it (money may be on its way).
    Charging,
    Succeeded,
    Failed,
    /// Someone won the right to refund it; the gateway's answer is not recorded yet.
    Refunding,
    Refunded,
}

/// Where a booking is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "booking_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Confirmed,
    Cancelled,
}

/// `sale_queue_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[sqlx(type_name = "sale_queue_status", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum QueueStatus {
    Running,
    Paused,
}

/// `sale_admission`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[sqlx(type_name = "sale_admission", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    /// Only admitted users may hold.
    Enforced,
    /// Every signed-in user may hold: the escape hatch for a waiting room in trouble.
    FailOpen,
}
