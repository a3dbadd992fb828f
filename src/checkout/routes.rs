//! HTTP of checkout, reservations and bookings. Owners only: anyone else gets 404.

use actix_web::web::Json;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use uuid::Uuid;

use super::service::{self, Booking, CancelAccepted, CheckoutAccepted, CheckoutRequest, Reservation};
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::openapi::Problem;
use crate::paging::{Page, PageQuery};
use crate::state::AppState;

/// Checks out a hold: extends it to cover payment, records the reservation and queues the
/// payment. Repeat with the same `Idempotency-Key` to get the same answer.
#[utoipa::path(tag = "bookings", params(("id" = Uuid, Path, description = "hold id"),
        ("Idempotency-Key" = String, Header, description = "unique per checkout attempt", pattern = "^[!-~]{1,200}$")),
    request_body = CheckoutRequest, security(("bearer" = [])), responses(
        (status = 202, body = CheckoutAccepted),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such hold, or not the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already checked out, showtime started or cancelled, or the same key is in progress",
            body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "the hold has expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "no Idempotency-Key, or the key was used for another request", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "payment queue unavailable; retry with the same key", body = Problem,
            content_type = "application/problem+json"),
))]
#[post("/api/v1/holds/{id}/checkout")]
pub async fn checkout_hold(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    req: HttpRequest,
    body: Json<CheckoutRequest>,
) -> ApiResult<HttpResponse> {
    let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok());
    let (status, answer) = service::checkout(&state, user, *id, key, body.into_inner()).await?;
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::ACCEPTED);
    Ok(HttpResponse::build(status).json(answer))
}

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
    Ok(Json(service::get_reservation(&state, user, *id).await?))
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
    Ok(Json(service::list_bookings(&state, user, q.into_inner()).await?))
}

/// One of the caller's bookings, with its ticket code.
#[utoipa::path(tag = "bookings", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Booking),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/bookings/{id}")]
pub async fn get_booking(state: web::Data<AppState>, user: AuthUser, id: web::Path<Uuid>) -> ApiResult<Json<Booking>> {
    Ok(Json(service::get_booking(&state, user, *id).await?))
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
    Ok(HttpResponse::Accepted().json(service::cancel_booking(&state, user, *id).await?))
}

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(checkout_hold)
        .service(get_reservation)
        .service(list_bookings)
        .service(get_booking)
        .service(cancel_booking);
}
