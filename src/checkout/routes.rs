//! HTTP of checkout. Owners only: anyone else's hold is a 404.

use actix_web::web::Json;
use actix_web::{HttpRequest, HttpResponse, post, web};
use uuid::Uuid;

use super::service::{self, CheckoutAccepted, CheckoutRequest};
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::openapi::Problem;
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
        (status = 503, description = "a backing service is unavailable; retry with the same key", body = Problem,
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

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(checkout_hold);
}
