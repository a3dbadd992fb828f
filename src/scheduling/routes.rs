//! HTTP of changes to a scheduled showtime (admin): moving it and cancelling it.

use actix_web::web::Json;
use actix_web::{HttpResponse, delete, patch, web};
use uuid::Uuid;

use super::service;
use crate::auth::AdminUser;
use crate::catalog::model::{Showtime, ShowtimePatch};
use crate::error::ApiResult;
use crate::openapi::Problem;
use crate::state::AppState;

type Id = web::Path<Uuid>;

/// Moves a showtime or changes its prices (admin).
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), request_body = ShowtimePatch, security(("bearer" = [])),
    responses(
        (status = 200, body = Showtime),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[patch("/api/v1/showtimes/{id}")]
pub async fn update_showtime(
    state: web::Data<AppState>,
    _admin: AdminUser,
    id: Id,
    body: Json<ShowtimePatch>,
) -> ApiResult<Json<Showtime>> {
    Ok(Json(service::reschedule(&state, *id, body.into_inner()).await?))
}

/// Cancels a showtime (admin): its confirmed bookings are cancelled and refunded through the
/// payment queue, and checkouts still waiting for payment are cancelled uncharged.
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[delete("/api/v1/showtimes/{id}")]
pub async fn cancel_showtime(state: web::Data<AppState>, _admin: AdminUser, id: Id) -> ApiResult<HttpResponse> {
    service::cancel_showtime(&state, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(update_showtime).service(cancel_showtime);
}
