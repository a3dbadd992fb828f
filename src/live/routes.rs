//! HTTP of the live seat map.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use uuid::Uuid;

use super::stream::{Session, snapshot_frame};
use crate::auth::AuthUser;
use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiResult};
use crate::openapi::Problem;
use crate::state::AppState;

/// Seat status changes of a showtime as server-sent events: a `snapshot` event first (the seat
/// map without `held_by_me`), then `held`, `released`, `expired` and `sold` events naming the
/// seats, a comment line as heartbeat, and a new `snapshot` whenever changes may have been
/// missed. Every event has an `id`; a client reconnecting with `Last-Event-ID` gets a fresh
/// snapshot (state, not history). See docs/LIVE.md.
#[utoipa::path(tag = "holds", params(("id" = Uuid, Path, description = "showtime id")), responses(
    (status = 200, description = "an endless text/event-stream; event data: Snapshot, then SeatChange",
        body = String, content_type = "text/event-stream"),
    (status = 404, description = "no such showtime", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "this client IP (or user) has SEATGATE_SSE_MAX_PER_IP (SEATGATE_SSE_MAX_PER_USER) streams open already (see Retry-After)",
        body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "this instance serves SEATGATE_SSE_MAX_CONNECTIONS streams already (see Retry-After), or Redis is unavailable",
        body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes/{id}/seats/events")]
pub async fn seat_events(
    state: web::Data<AppState>,
    req: HttpRequest,
    ip: ClientIp,
    user: Option<AuthUser>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let showtime_id = *id;
    let client = state.stream_limits.admit(ip.0, user.map(|u| u.id))?;
    let permit = state.live.admit().map_err(|_| ApiError::AtCapacity { retry_after_secs: 5 })?;
    if req.headers().contains_key("last-event-id") {
        // Ids are not replayed: the resync rule is a fresh snapshot, as for a first connection.
        metrics::counter!("seatgate_sse_resyncs_total", "reason" => "reconnect").increment(1);
    }
    // Subscribe before the snapshot, so no change falls between them (a change seen twice is
    // harmless: events carry states, not deltas).
    let sub = state.live.subscribe(showtime_id);
    state.live.wait_connected(showtime_id, state.redis.timeout()).await;
    let (snapshot, generation) = snapshot_frame(&state, showtime_id).await?;
    let session = Session::new(state.get_ref().clone(), showtime_id, sub, (permit, client), snapshot, generation);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        // nginx and similar proxies: do not buffer this response.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(session.into_stream()))
}

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(seat_events);
}
