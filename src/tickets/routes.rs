//! HTTP of tickets and the door: the QR code of a booking's ticket (its owner), check-in, the
//! offline bundle and batch upload (door staff or admins).

use actix_web::web::{self, Json};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, get, post};
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use super::service::{self, BatchRequest, BatchResult, Checkin, CheckinBundle, CheckinRequest};
use crate::auth::{AuthUser, Role};
use crate::error::{ApiError, ApiResult};
use crate::openapi::Problem;
use crate::state::AppState;

/// A caller whose account has role `door` or `admin` now; anyone else gets 403.
#[derive(Clone, Copy, Debug)]
pub struct DoorUser(pub AuthUser);

impl FromRequest for DoorUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = AuthUser::from_request(req, payload);
        Box::pin(async move {
            let user = user.await?;
            match user.role {
                Role::Door | Role::Admin => Ok(DoorUser(user)),
                Role::User => Err(ApiError::Forbidden("door or admin role required")),
            }
        })
    }
}

/// The QR code of one of the caller's bookings' signed ticket.
#[utoipa::path(tag = "tickets", params(("id" = Uuid, Path, description = "booking id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "the QR code of `ticket.signed`", content_type = "image/svg+xml", body = String),
        (status = 404, description = "no such booking, or not the caller's", body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/bookings/{id}/ticket.svg")]
pub async fn ticket_svg(state: web::Data<AppState>, user: AuthUser, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let booking = crate::ledger::bookings::get_booking(&state, user, *id).await?;
    let signed = match booking.ticket {
        Some(ticket) => ticket.signed,
        None => state.tickets.sign(booking.id, booking.showtime_id, &booking.seat_ids, booking.created_at),
    };
    let svg = service::qr_svg(&signed)?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "private, max-age=300"))
        .body(svg))
}

/// Lets a ticket in at a gate: exactly once per booking, whatever the number of gates.
#[utoipa::path(tag = "tickets", request_body = CheckinRequest, security(("bearer" = [])), responses(
    (status = 201, body = Checkin),
    (status = 403, description = "not door staff or an admin", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "already checked in (`already_checked_in`, with the first `checked_in_at` and `gate`)",
        body = Problem, content_type = "application/problem+json"),
    (status = 410, description = "the booking is cancelled (`ticket_cancelled`)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "forged, garbled or unknown ticket (`invalid_ticket`), or a bad gate",
        body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/checkins")]
pub async fn create_checkin(
    state: web::Data<AppState>,
    door: DoorUser,
    body: Json<CheckinRequest>,
) -> ApiResult<HttpResponse> {
    let checkin = service::check_in(&state, door.0, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(checkin))
}

/// Uploads scans made offline; each scan's outcome, in order. A nonce counts once.
#[utoipa::path(tag = "tickets", request_body = BatchRequest, security(("bearer" = [])), responses(
    (status = 200, body = BatchResult),
    (status = 403, description = "not door staff or an admin", body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/checkins/batch")]
pub async fn create_checkin_batch(
    state: web::Data<AppState>,
    door: DoorUser,
    body: Json<BatchRequest>,
) -> ApiResult<Json<BatchResult>> {
    Ok(Json(service::check_in_batch(&state, door.0, body.into_inner()).await?))
}

/// What an offline scanner needs for one showtime: public keys and revoked tickets.
#[utoipa::path(tag = "tickets", params(("id" = Uuid, Path, description = "showtime id")), security(("bearer" = [])),
    responses(
        (status = 200, body = CheckinBundle),
        (status = 403, description = "not door staff or an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such showtime", body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes/{id}/checkin-bundle")]
pub async fn checkin_bundle(
    state: web::Data<AppState>,
    _door: DoorUser,
    id: web::Path<Uuid>,
) -> ApiResult<Json<CheckinBundle>> {
    Ok(Json(service::bundle(&state, *id).await?))
}

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // The batch path first: `/checkins/batch` must not be taken for anything else.
    cfg.service(create_checkin_batch).service(create_checkin).service(checkin_bundle).service(ticket_svg);
}
