//! HTTP of on-sales: sale settings, the waiting room, its live stream and the admin's view.

use actix_web::http::header;
use actix_web::web::Json;
use actix_web::{HttpResponse, get, post, put, web};
use uuid::Uuid;

use super::live::QueueSession;
use super::service::{self, QueueEntry, QueueStats, Sale, SaleRequest};
use crate::auth::{AdminUser, AuthUser};
use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiResult};
use crate::openapi::Problem;
use crate::state::AppState;

/// Sets when a showtime's sale opens and whether a waiting room admits buyers at a rate.
/// Replaces earlier settings; a queue keeps its paused/running state.
#[utoipa::path(tag = "onsale", params(("id" = Uuid, Path, description = "showtime id")), request_body = SaleRequest,
    security(("bearer" = [])), responses(
        (status = 200, body = Sale),
        (status = 403, description = "not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such showtime", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "opens_at not before the showtime, or a rate or window out of range", body = Problem, content_type = "application/problem+json"),
))]
#[put("/api/v1/showtimes/{id}/sale")]
pub async fn put_sale(
    state: web::Data<AppState>,
    _admin: AdminUser,
    id: web::Path<Uuid>,
    body: Json<SaleRequest>,
) -> ApiResult<Json<Sale>> {
    Ok(Json(service::put_sale(&state, *id, body.into_inner()).await?))
}

/// A showtime's sale settings; `opens_at` null means on sale now, without a queue.
#[utoipa::path(tag = "onsale", params(("id" = Uuid, Path, description = "showtime id")), responses(
    (status = 200, body = Sale),
    (status = 404, description = "no such showtime", body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes/{id}/sale")]
pub async fn get_sale(state: web::Data<AppState>, id: web::Path<Uuid>) -> ApiResult<Json<Sale>> {
    Ok(Json(service::get_sale(&state, *id).await?))
}

/// Joins the showtime's waiting room: 201 on the first join, 200 with the same entry after.
/// Before the sale opens `position` is null: everyone who joined by then gets a uniformly
/// random place at opening; later joiners queue behind them in order of joining.
#[utoipa::path(tag = "onsale", params(("id" = Uuid, Path, description = "showtime id")), security(("bearer" = [])), responses(
    (status = 201, description = "joined", body = QueueEntry),
    (status = 200, description = "already in this waiting room", body = QueueEntry),
    (status = 404, description = "no such showtime", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the sale has no waiting room", body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/showtimes/{id}/queue")]
pub async fn join_queue(state: web::Data<AppState>, user: AuthUser, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let (created, entry) = service::join_queue(&state, user, *id).await?;
    Ok(if created { HttpResponse::Created().json(entry) } else { HttpResponse::Ok().json(entry) })
}

/// The caller's entry in the waiting room.
#[utoipa::path(tag = "onsale", params(("id" = Uuid, Path, description = "showtime id")), security(("bearer" = [])), responses(
    (status = 200, body = QueueEntry),
    (status = 404, description = "not joined, or no such showtime", body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes/{id}/queue/me")]
pub async fn my_entry(state: web::Data<AppState>, user: AuthUser, id: web::Path<Uuid>) -> ApiResult<Json<QueueEntry>> {
    Ok(Json(service::my_entry(&state, user, *id).await?))
}

/// The caller's entry as server-sent events: an `entry` event (a QueueEntry) now and whenever
/// the place, the state or the estimate changes (admission included), heartbeats in between.
/// The stream ends once the admission has run out. See docs/ONSALE.md.
#[utoipa::path(tag = "onsale", params(("id" = Uuid, Path, description = "showtime id")), security(("bearer" = [])), responses(
    (status = 200, description = "a text/event-stream of `entry` events (QueueEntry)", body = String, content_type = "text/event-stream"),
    (status = 404, description = "not joined, or no such showtime", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "too many streams open for this client IP or user (see Retry-After)", body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes/{id}/queue/me/events")]
pub async fn my_entry_events(
    state: web::Data<AppState>,
    user: AuthUser,
    ip: ClientIp,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let client = state.stream_limits.admit(ip.0, Some(user.id))?;
    let permit = state.live.admit().map_err(|_| ApiError::AtCapacity { retry_after_secs: 5 })?;
    let session = QueueSession::open(state.get_ref().clone(), user, *id, (permit, client)).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(session.into_stream()))
}

/// The waiting room at a glance (admin): waiting, admitted, expired, held, sold, bookings/s.
#[utoipa::path(tag = "onsale", params(("id" = Uuid, Path, description = "showtime id")), security(("bearer" = [])), responses(
    (status = 200, body = QueueStats),
    (status = 403, description = "not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such showtime, or its sale has no waiting room", body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes/{id}/queue")]
pub async fn queue_stats(
    state: web::Data<AppState>,
    _admin: AdminUser,
    id: web::Path<Uuid>,
) -> ApiResult<Json<QueueStats>> {
    Ok(Json(service::queue_stats(&state, *id).await?))
}

/// Stops admitting (admin); waiting users keep their places, admitted ones their admissions.
#[utoipa::path(tag = "onsale", params(("id" = Uuid, Path, description = "showtime id")), security(("bearer" = [])), responses(
    (status = 200, body = QueueStats),
    (status = 403, description = "not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such showtime", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the sale has no waiting room", body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/showtimes/{id}/queue/pause")]
pub async fn pause_queue(
    state: web::Data<AppState>,
    _admin: AdminUser,
    id: web::Path<Uuid>,
) -> ApiResult<Json<QueueStats>> {
    Ok(Json(service::set_paused(&state, *id, true).await?))
}

/// Admits again at the configured rate (admin).
#[utoipa::path(tag = "onsale", params(("id" = Uuid, Path, description = "showtime id")), security(("bearer" = [])), responses(
    (status = 200, body = QueueStats),
    (status = 403, description = "not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such showtime", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the sale has no waiting room", body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/showtimes/{id}/queue/resume")]
pub async fn resume_queue(
    state: web::Data<AppState>,
    _admin: AdminUser,
    id: web::Path<Uuid>,
) -> ApiResult<Json<QueueStats>> {
    Ok(Json(service::set_paused(&state, *id, false).await?))
}

/// Registers this module's routes (the fixed `queue/me` paths before anything generic).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(put_sale)
        .service(get_sale)
        .service(my_entry_events)
        .service(my_entry)
        .service(pause_queue)
        .service(resume_queue)
        .service(join_queue)
        .service(queue_stats);
}
