//! HTTP of holds and the seat map.

use actix_web::web::Json;
use actix_web::{HttpResponse, delete, get, post, web};
use uuid::Uuid;

use super::best::{self, HoldBody};
use super::service::{self, Availability, Hold, SeatMap};
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::openapi::Problem;
use crate::state::AppState;

/// Holds seats of a showtime for the caller, all or none, until `expires_at`: the seats named in
/// `seat_ids`, or the best block of `best_available.count` adjacent free seats, picked by the
/// server (rows nearest the middle first, seats nearest the middle of the row, never stranding
/// a single free seat when another block avoids it).
#[utoipa::path(tag = "holds", params(("id" = Uuid, Path, description = "showtime id")), request_body = HoldBody,
    security(("bearer" = [])), responses(
        (status = 201, body = Hold),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not_admitted: the sale has a waiting room and the caller holds no live admission",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such showtime", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "seats unavailable (named in unavailable_seat_ids; empty when no best-available block is free), sale_not_open (with opens_at), or the showtime started or was cancelled",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "empty, duplicate, unknown or too many seats; both or neither of seat_ids and best_available", body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/showtimes/{id}/holds")]
pub async fn create_hold(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<HoldBody>,
) -> ApiResult<HttpResponse> {
    let hold = best::create_hold(&state, user, *id, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(hold))
}

/// One of the caller's holds.
#[utoipa::path(tag = "holds", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Hold),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such hold, or not the caller's", body = Problem, content_type = "application/problem+json"),
    (status = 410, description = "the hold has expired", body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/holds/{id}")]
pub async fn get_hold(state: web::Data<AppState>, user: AuthUser, id: web::Path<Uuid>) -> ApiResult<Json<Hold>> {
    Ok(Json(service::get_hold(&state, user, *id).await?))
}

/// Releases one of the caller's holds; its seats are free at once.
#[utoipa::path(tag = "holds", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "checked out: payment under way", body = Problem, content_type = "application/problem+json"),
))]
#[delete("/api/v1/holds/{id}")]
pub async fn release_hold(state: web::Data<AppState>, user: AuthUser, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    service::release_hold(&state, user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Every seat of a showtime with its price and status; `held_by_me` needs a token.
#[utoipa::path(tag = "holds", params(("id" = Uuid, Path, description = "showtime id")), responses(
    (status = 200, body = SeatMap),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes/{id}/seats")]
pub async fn seat_map(
    state: web::Data<AppState>,
    user: Option<AuthUser>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let body = service::seat_map_json(&state, user, *id).await?;
    Ok(HttpResponse::Ok().content_type(actix_web::http::header::ContentType::json()).body(body))
}

/// How many seats are free, held and sold, in all and per category: what a buyer needs to
/// know before asking for the best available seats, without the whole seat map.
#[utoipa::path(tag = "holds", params(("id" = Uuid, Path, description = "showtime id")), responses(
    (status = 200, body = Availability),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes/{id}/availability")]
pub async fn availability(state: web::Data<AppState>, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let body = service::availability_json(&state, *id).await?;
    Ok(HttpResponse::Ok().content_type(actix_web::http::header::ContentType::json()).body(body))
}

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_hold).service(get_hold).service(release_hold).service(seat_map).service(availability);
}
