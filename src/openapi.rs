//! The OpenAPI document, generated from the handlers' annotations, served at `/openapi.json`
//! with Swagger UI at `/docs`.

use std::sync::LazyLock;

use actix_web::dev::ResourceDef;
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::FieldError;

/// An `application/problem+json` error (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[schema(example = "about:blank")]
    pub r#type: String,
    #[schema(example = "Conflict")]
    pub title: String,
    #[schema(example = 409)]
    pub status: u16,
    #[schema(example = "some seats are not available")]
    pub detail: String,
    /// Stable machine-readable code: `validation_failed`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `seats_unavailable`, `hold_expired`, `rate_limited`,
    /// `payload_too_large`, `bad_request`, `unsupported_media_type`, `service_unavailable`,
    /// `at_capacity`, `invalid_ticket`, `ticket_cancelled`, `already_checked_in`, `sale_not_open`,
    /// `not_admitted`, `overloaded`.
    #[schema(example = "seats_unavailable")]
    pub code: String,
    /// With `validation_failed`: each field at fault.
    pub errors: Option<Vec<FieldError>>,
    /// With `seats_unavailable`: exactly the seats that could not be held.
    pub unavailable_seat_ids: Option<Vec<uuid::Uuid>>,
    /// With `already_checked_in`: when the ticket was first checked in.
    pub checked_in_at: Option<chrono::DateTime<chrono::Utc>>,
    /// With `already_checked_in`: at which gate (null when none was named).
    pub gate: Option<String>,
    /// With `sale_not_open`: when holds open.
    pub opens_at: Option<chrono::DateTime<chrono::Utc>>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Documents the answers any operation can give besides its own: malformed input (400, 413,
/// 415, 422), a missing or bad token (401 where a token is needed), an unavailable backing
/// service (503).
struct CommonResponses;

fn problem(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    RefOr::T(ResponseBuilder::new().description(description).content("application/problem+json", content).build())
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 5] =
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for op in operations.into_iter().flatten() {
                let mut add = |code: &str, description: &str| {
                    op.responses.responses.entry(code.to_owned()).or_insert_with(|| problem(description));
                };
                add("422", "invalid parameters or body");
                add("503", "a backing service is unavailable; retry");
                add("429", "too many requests");
                if op.request_body.is_some() {
                    add("400", "malformed JSON");
                    add("413", "body too large");
                    add("415", "body is not JSON");
                }
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add("401", "missing, invalid or expired token");
                }
            }
        }
    }
}

/// Every documented path pattern with its methods (for 405 answers).
pub static ROUTES: LazyLock<Vec<(ResourceDef, Vec<String>)>> = LazyLock::new(|| {
    ApiDoc::openapi()
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
            ]
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(m, _)| m.to_owned())
            .collect();
            (ResourceDef::new(path.as_str()), methods)
        })
        .collect()
});

#[derive(OpenApi)]
#[openapi(
    info(title = "seatgate", description = "Ticket-booking API: seat holds, checkout, bookings, catalog."),
    modifiers(&BearerAuth, &CommonResponses),
    paths(
        crate::auth::routes::register,
        crate::auth::routes::login,
        crate::auth::routes::me,
        crate::catalog::routes::list_movies,
        crate::catalog::routes::create_movie,
        crate::catalog::routes::get_movie,
        crate::catalog::routes::update_movie,
        crate::catalog::routes::delete_movie,
        crate::catalog::routes::list_reviews,
        crate::catalog::routes::create_review,
        crate::catalog::routes::list_theaters,
        crate::catalog::routes::create_theater,
        crate::catalog::routes::get_theater,
        crate::catalog::routes::update_theater,
        crate::catalog::routes::delete_theater,
        crate::catalog::routes::list_screens,
        crate::catalog::routes::create_screen,
        crate::catalog::routes::get_screen,
        crate::catalog::routes::delete_screen,
        crate::catalog::routes::list_showtimes,
        crate::catalog::routes::create_showtime,
        crate::catalog::routes::get_showtime,
        crate::scheduling::routes::update_showtime,
        crate::scheduling::routes::cancel_showtime,
        crate::holds::routes::create_hold,
        crate::holds::routes::get_hold,
        crate::holds::routes::release_hold,
        crate::holds::routes::seat_map,
        crate::holds::routes::availability,
        crate::live::routes::seat_events,
        crate::onsale::routes::put_sale,
        crate::onsale::routes::get_sale,
        crate::onsale::routes::join_queue,
        crate::onsale::routes::my_entry,
        crate::onsale::routes::my_entry_events,
        crate::onsale::routes::queue_stats,
        crate::onsale::routes::pause_queue,
        crate::onsale::routes::resume_queue,
        crate::checkout::routes::checkout_hold,
        crate::ledger::routes::get_reservation,
        crate::ledger::routes::reservation_events,
        crate::ledger::routes::list_bookings,
        crate::ledger::routes::get_booking,
        crate::ledger::routes::cancel_booking,
        crate::tickets::routes::ticket_svg,
        crate::tickets::routes::create_checkin,
        crate::tickets::routes::create_checkin_batch,
        crate::tickets::routes::checkin_bundle,
        crate::auth::roles::set_role,
        crate::ops::live,
        crate::ops::ready,
    ),
    components(schemas(Problem, crate::live::stream::Snapshot, crate::live::hub::SeatChange)),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "catalog", description = "Movies, theaters, screens, showtimes, reviews"),
        (name = "holds", description = "Seat holds and the seat map"),
        (name = "bookings", description = "Checkout, reservations and bookings"),
        (name = "tickets", description = "Signed tickets, QR codes and check-in at the door"),
        (name = "onsale", description = "Sale opening times and the virtual waiting room"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;
