//! What a customer sees of the ledger: their reservations and bookings (owners only; anyone
//! else's is a 404, as for one that does not exist).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::domain::{BookingStatus, PaymentStatus, ReservationStatus};
use crate::error::ApiError;
use crate::paging::{Page, PageQuery, Paging};
use crate::state::AppState;

/// A reservation as its owner sees it.
#[derive(Clone, Debug, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Reservation {
    pub id: Uuid,
    pub showtime_id: Uuid,
    pub status: ReservationStatus,
    pub seat_ids: Vec<Uuid>,
    pub amount: i64,
    pub currency: String,
    pub booking_id: Option<Uuid>,
    pub failure_reason: Option<String>,
    pub payment_status: Option<PaymentStatus>,
    pub deadline: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A booking: the tickets.
#[derive(Clone, Debug, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Booking {
    pub id: Uuid,
    pub reservation_id: Uuid,
    pub showtime_id: Uuid,
    pub status: BookingStatus,
    /// Shown at the door.
    pub ticket_code: String,
    pub seat_ids: Vec<Uuid>,
    pub amount: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The ticket (code and signed form for the door); on `GET /api/v1/bookings/{id}`.
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<super::ticket::Ticket>,
}

/// Answer of a cancellation.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CancelAccepted {
    pub booking_id: Uuid,
    pub status: BookingStatus,
    /// The refund goes through the payment queue; the payment ends `refunded`.
    pub refund: String,
}

const NO_RESERVATION: ApiError = ApiError::NotFound("no such reservation");
const NO_BOOKING: ApiError = ApiError::NotFound("no such booking");

/// A reservation as its owner sees it, in one statement (the stream re-reads it on every change,
/// and clients poll it): the seats in layout order, the booking if any, the latest payment's
/// status. `$1` reservation id, `$2` owner.
pub const RESERVATION_VIEW: &str = r#"select r.id, r.showtime_id, r.status,
       coalesce(array(select rs.seat_id from reservation_seats rs join seats s on s.id = rs.seat_id
                       where rs.reservation_id = r.id order by s.row_index, s.number), '{}') as seat_ids,
       r.amount_minor as amount, r.currency,
       (select b.id from bookings b where b.reservation_id = r.id) as booking_id,
       r.failure_reason,
       (select p.status from payments p where p.reservation_id = r.id order by p.attempt desc limit 1) as payment_status,
       r.deadline, r.created_at
  from reservations r where r.id = $1 and r.user_id = $2"#;

/// One of the caller's reservations; anyone else's is 404.
pub async fn get_reservation(state: &AppState, user: AuthUser, id: Uuid) -> Result<Reservation, ApiError> {
    sqlx::query_as::<_, Reservation>(RESERVATION_VIEW)
        .bind(id)
        .bind(user.id)
        .fetch_optional(&state.db)
        .await?
        .ok_or(NO_RESERVATION)
}

const BOOKING_SELECT: &str = r#"select b.id, b.reservation_id, b.showtime_id, b.status, b.ticket_code,
       coalesce(array(select rs.seat_id from reservation_seats rs join seats s on s.id = rs.seat_id
                       where rs.reservation_id = b.reservation_id order by s.row_index, s.number), '{}') as seat_ids,
       b.amount_minor as amount, b.currency, b.created_at, b.cancelled_at
  from bookings b"#;

/// The caller's bookings, newest first.
pub async fn list_bookings(state: &AppState, user: AuthUser, q: PageQuery) -> Result<Page<Booking>, ApiError> {
    let paging = Paging::try_from(q)?;
    let mut conn = state.db.acquire().await?;
    let total: i64 = sqlx::query_scalar("select count(*) from bookings where user_id = $1")
        .bind(user.id)
        .fetch_one(&mut *conn)
        .await?;
    let items = sqlx::query_as::<_, Booking>(sqlx::AssertSqlSafe(format!(
        "{BOOKING_SELECT} where b.user_id = $1 order by b.created_at desc, b.id limit $2 offset $3"
    )))
    .bind(user.id)
    .bind(paging.limit())
    .bind(paging.offset())
    .fetch_all(&mut *conn)
    .await?;
    Ok(Page::new(items, paging, total))
}

/// One of the caller's bookings; anyone else's is 404.
pub async fn get_booking(state: &AppState, user: AuthUser, id: Uuid) -> Result<Booking, ApiError> {
    sqlx::query_as::<_, Booking>(sqlx::AssertSqlSafe(format!("{BOOKING_SELECT} where b.id = $1 and b.user_id = $2")))
        .bind(id)
        .bind(user.id)
        .fetch_optional(&state.db)
        .await?
        .map(|b| Booking {
            ticket: Some(state.tickets.ticket(&b.ticket_code, b.id, b.showtime_id, &b.seat_ids, b.created_at)),
            ..b
        })
        .ok_or(NO_BOOKING)
}
