//! HTTP of the catalog, at the paths of docs/DESIGN.md §6. GETs are public; writes need an admin.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use uuid::Uuid;

use super::model::*;
use super::service;
use crate::auth::{AdminUser, AuthUser};
use crate::error::ApiResult;
use crate::openapi::Problem;
use crate::paging::Page;
use crate::state::AppState;

use actix_web::web::Json;
type Id = web::Path<Uuid>;

// ---- movies ----

/// Lists movies, filtered by title text and genre.
#[utoipa::path(tag = "catalog", params(MovieQuery), responses(
    (status = 200, body = Page<Movie>),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/movies")]
pub async fn list_movies(state: web::Data<AppState>, q: web::Query<MovieQuery>) -> ApiResult<Json<Page<Movie>>> {
    Ok(Json(service::list_movies(&state, q.into_inner()).await?))
}

/// Creates a movie (admin).
#[utoipa::path(tag = "catalog", request_body = MovieInput, security(("bearer" = [])), responses(
    (status = 201, body = Movie),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/movies")]
pub async fn create_movie(
    state: web::Data<AppState>,
    _admin: AdminUser,
    body: Json<MovieInput>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create_movie(&state, body.into_inner()).await?))
}

/// One movie.
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Movie),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/movies/{id}")]
pub async fn get_movie(state: web::Data<AppState>, id: Id) -> ApiResult<Json<Movie>> {
    Ok(Json(service::get_movie(&state, *id).await?))
}

/// Changes the given fields of a movie (admin).
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), request_body = MoviePatch, security(("bearer" = [])),
    responses(
        (status = 200, body = Movie),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[patch("/api/v1/movies/{id}")]
pub async fn update_movie(
    state: web::Data<AppState>,
    _admin: AdminUser,
    id: Id,
    body: Json<MoviePatch>,
) -> ApiResult<Json<Movie>> {
    Ok(Json(service::update_movie(&state, *id, body.into_inner()).await?))
}

/// Deletes a movie without showtimes (admin).
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the movie has showtimes", body = Problem, content_type = "application/problem+json"),
))]
#[delete("/api/v1/movies/{id}")]
pub async fn delete_movie(state: web::Data<AppState>, _admin: AdminUser, id: Id) -> ApiResult<HttpResponse> {
    service::delete_movie(&state, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- theaters ----

/// Lists theaters, optionally of one city.
#[utoipa::path(tag = "catalog", params(TheaterQuery), responses(
    (status = 200, body = Page<Theater>),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/theaters")]
pub async fn list_theaters(state: web::Data<AppState>, q: web::Query<TheaterQuery>) -> ApiResult<Json<Page<Theater>>> {
    Ok(Json(service::list_theaters(&state, q.into_inner()).await?))
}

/// Creates a theater (admin).
#[utoipa::path(tag = "catalog", request_body = TheaterInput, security(("bearer" = [])), responses(
    (status = 201, body = Theater),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/theaters")]
pub async fn create_theater(
    state: web::Data<AppState>,
    _admin: AdminUser,
    body: Json<TheaterInput>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create_theater(&state, body.into_inner()).await?))
}

/// One theater.
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Theater),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/theaters/{id}")]
pub async fn get_theater(state: web::Data<AppState>, id: Id) -> ApiResult<Json<Theater>> {
    Ok(Json(service::get_theater(&state, *id).await?))
}

/// Changes the given fields of a theater (admin).
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), request_body = TheaterPatch, security(("bearer" = [])),
    responses(
        (status = 200, body = Theater),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[patch("/api/v1/theaters/{id}")]
pub async fn update_theater(
    state: web::Data<AppState>,
    _admin: AdminUser,
    id: Id,
    body: Json<TheaterPatch>,
) -> ApiResult<Json<Theater>> {
    Ok(Json(service::update_theater(&state, *id, body.into_inner()).await?))
}

/// Deletes a theater without screens (admin).
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the theater has screens", body = Problem, content_type = "application/problem+json"),
))]
#[delete("/api/v1/theaters/{id}")]
pub async fn delete_theater(state: web::Data<AppState>, _admin: AdminUser, id: Id) -> ApiResult<HttpResponse> {
    service::delete_theater(&state, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- screens ----

/// The screens of a theater.
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path, description = "theater id")), responses(
    (status = 200, body = Vec<Screen>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/theaters/{id}/screens")]
pub async fn list_screens(state: web::Data<AppState>, id: Id) -> ApiResult<Json<Vec<Screen>>> {
    Ok(Json(service::list_screens(&state, *id).await?))
}

/// Creates a screen with a seat layout generated from its rows (admin).
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path, description = "theater id")), request_body = ScreenInput,
    security(("bearer" = [])), responses(
        (status = 201, body = ScreenWithSeats),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "a screen of this name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/theaters/{id}/screens")]
pub async fn create_screen(
    state: web::Data<AppState>,
    _admin: AdminUser,
    id: Id,
    body: Json<ScreenInput>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create_screen(&state, *id, body.into_inner()).await?))
}

/// A screen with its seats.
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), responses(
    (status = 200, body = ScreenWithSeats),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/screens/{id}")]
pub async fn get_screen(state: web::Data<AppState>, id: Id) -> ApiResult<Json<ScreenWithSeats>> {
    Ok(Json(service::get_screen(&state, *id).await?))
}

/// Deletes a screen without showtimes (admin).
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the screen has showtimes", body = Problem, content_type = "application/problem+json"),
))]
#[delete("/api/v1/screens/{id}")]
pub async fn delete_screen(state: web::Data<AppState>, _admin: AdminUser, id: Id) -> ApiResult<HttpResponse> {
    service::delete_screen(&state, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- showtimes ----

/// Lists scheduled showtimes (upcoming unless `include_past`), by movie, theater, city, day.
#[utoipa::path(tag = "catalog", params(ShowtimeQuery), responses(
    (status = 200, body = Page<Showtime>),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes")]
pub async fn list_showtimes(
    state: web::Data<AppState>,
    q: web::Query<ShowtimeQuery>,
) -> ApiResult<Json<Page<Showtime>>> {
    Ok(Json(service::list_showtimes(&state, q.into_inner()).await?))
}

/// Schedules a showtime (admin); 409 when it overlaps another on the same screen.
#[utoipa::path(tag = "catalog", request_body = ShowtimeInput, security(("bearer" = [])), responses(
    (status = 201, body = Showtime),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "overlaps another showtime on the screen", body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/showtimes")]
pub async fn create_showtime(
    state: web::Data<AppState>,
    _admin: AdminUser,
    body: Json<ShowtimeInput>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create_showtime(&state, body.into_inner()).await?))
}

/// One showtime.
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Showtime),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/showtimes/{id}")]
pub async fn get_showtime(state: web::Data<AppState>, id: Id) -> ApiResult<Json<Showtime>> {
    Ok(Json(service::get_showtime(&state, *id).await?))
}

// ---- reviews ----

/// Reviews of a movie, newest first.
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path, description = "movie id"), ReviewQuery), responses(
    (status = 200, body = Page<Review>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/movies/{id}/reviews")]
pub async fn list_reviews(
    state: web::Data<AppState>,
    id: Id,
    q: web::Query<ReviewQuery>,
) -> ApiResult<Json<Page<Review>>> {
    Ok(Json(service::list_reviews(&state, *id, q.into_inner()).await?))
}

/// Reviews a movie; only with a confirmed booking of it, once per user.
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path, description = "movie id")), request_body = ReviewInput,
    security(("bearer" = [])), responses(
        (status = 201, body = Review),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "no confirmed booking of this movie", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already reviewed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/movies/{id}/reviews")]
pub async fn create_review(
    state: web::Data<AppState>,
    user: AuthUser,
    id: Id,
    body: Json<ReviewInput>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create_review(&state, *id, user.id, body.into_inner()).await?))
}

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_movies)
        .service(create_movie)
        .service(get_movie)
        .service(update_movie)
        .service(delete_movie)
        .service(list_reviews)
        .service(create_review)
        .service(list_theaters)
        .service(create_theater)
        .service(get_theater)
        .service(update_theater)
        .service(delete_theater)
        .service(list_screens)
        .service(create_screen)
        .service(get_screen)
        .service(delete_screen)
        .service(list_showtimes)
        .service(create_showtime)
        .service(get_showtime);
}
