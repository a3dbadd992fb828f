//! HTTP of reservations and bookings. Owners only: anyone else gets 404.

use actix_web::http::header;
use actix_web::web::Json;
use actix_web::{HttpResponse, get, post, web};
use uuid::Uuid;

use super::bookings::{self, Booking, CancelAccepted, Reservation};
use crate::auth::AuthUser;
use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiResult};
use crate::openapi::Problem;
use crate::paging::{Page, PageQuery};
use crate::state::AppState;

/// One of the caller's reservations.
#[utoipa::path(tag = "bookings", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Reservation),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/reservations/{id}")]
pub async fn get_reservation(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<Json<Reservation>> {
    Ok(Json(bookings::get_reservation(&state, user, *id).await?))
}

/// One of the caller's reservations as server-sent events, so the buyer learns the outcome of a
/// checkout without polling: a `reservation` event first (the body of
/// `GET /api/v1/reservations/{id}`); while it is `payment_pending`, comment lines as heartbeat
/// and one event named after the new status (`confirmed` with `booking_id`; `failed`,
/// `expired` or `cancelled` with `failure_reason`; the same body as data); then the stream ends.
/// A reservation already settled gets its `reservation` event and the end. See docs/LIVE.md.
#[utoipa::path(tag = "bookings", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, description = "a text/event-stream; event data: Reservation", body = String,
        content_type = "text/event-stream"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "this client IP (or user) has SEATGATE_SSE_MAX_PER_IP (SEATGATE_SSE_MAX_PER_USER) streams open already (see Retry-After)",
        body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "this instance serves SEATGATE_SSE_MAX_CONNECTIONS streams already (see Retry-After)",
        body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/reservations/{id}/events")]
pub async fn reservation_events(
    state: web::Data<AppState>,
    user: AuthUser,
    ip: ClientIp,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let client = state.stream_limits.admit(ip.0, Some(user.id))?;
    let permit = state.live.admit().map_err(|_| ApiError::AtCapacity { retry_after_secs: 5 })?;
    let session = super::stream::open(&state, user, *id, (permit, client)).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(session.into_stream()))
}

/// The caller's bookings, newest first.
#[utoipa::path(tag = "bookings", params(PageQuery), security(("bearer" = [])), responses(
    (status = 200, body = Page<Booking>),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/bookings")]
pub async fn list_bookings(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> ApiResult<Json<Page<Booking>>> {
    Ok(Json(bookings::list_bookings(&state, user, q.into_inner()).await?))
}

/// One of the caller's bookings, with its ticket code.
#[utoipa::path(tag = "bookings", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Booking),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/bookings/{id}")]
pub async fn get_booking(state: web::Data<AppState>, user: AuthUser, id: web::Path<Uuid>) -> ApiResult<Json<Booking>> {
    Ok(Json(bookings::get_booking(&state, user, *id).await?))
}

/// Cancels a booking before the showtime starts; seats free at once, refund queued.
#[utoipa::path(tag = "bookings", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 202, body = CancelAccepted),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "already cancelled, or the showtime started", body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/bookings/{id}/cancel")]
pub async fn cancel_booking(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Accepted().json(super::cancel::cancel_booking(&state, user, *id).await?))
}

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_reservation)
        .service(reservation_events)
        .service(list_bookings)
        .service(get_booking)
        .service(cancel_booking);
}
