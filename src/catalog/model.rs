//! Request and response types of the catalog, and their conversion into checked values.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use super::layout::RowSpec;
use crate::paging::PageQuery;
use crate::validate::lenient;

// ---- movies ----

/// A genre name: 1 to 40 characters, stored lower-cased.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, min_length = 1, max_length = 40, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
pub struct Genre(pub String);

/// Body of `POST /api/v1/movies`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovieInput {
    #[schema(
        example = "The Grand Budapest Hotel",
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 5000, pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    pub description: String,
    /// Lower-cased, at most 10.
    #[serde(default)]
    #[schema(example = json!(["comedy", "drama"]), max_items = 10, inline)]
    pub genres: Vec<Genre>,
    #[schema(example = 99, minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "lenient::int")]
    pub duration_minutes: i32,
    #[schema(
        example = "R",
        min_length = 1,
        max_length = 20,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub age_rating: Option<String>,
    pub release_date: Option<NaiveDate>,
}

/// Body of `PATCH /api/v1/movies/{id}`: only the fields given change.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoviePatch {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub title: Option<String>,
    #[schema(max_length = 5000, pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    pub description: Option<String>,
    #[schema(max_items = 10)]
    pub genres: Option<Vec<Genre>>,
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub duration_minutes: Option<i32>,
    #[schema(
        min_length = 1,
        max_length = 20,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub age_rating: Option<String>,
    pub release_date: Option<NaiveDate>,
}

/// A movie.
#[derive(Clone, Debug, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Movie {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub genres: Vec<String>,
    pub duration_minutes: i32,
    pub age_rating: Option<String>,
    pub release_date: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Query of `GET /api/v1/movies`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MovieQuery {
    /// Part of the title, case-insensitive.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// One genre.
    #[param(max_length = 40)]
    pub genre: Option<String>,
    /// 1-based page number (default 1).
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

// ---- theaters ----

/// Body of `POST /api/v1/theaters`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TheaterInput {
    #[schema(
        example = "Odeon Leicester Square",
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[schema(
        example = "London",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub city: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    pub address: String,
}

/// Body of `PATCH /api/v1/theaters/{id}`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TheaterPatch {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub city: Option<String>,
    #[schema(max_length = 500, pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    pub address: Option<String>,
}

/// A theater.
#[derive(Clone, Debug, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Theater {
    pub id: Uuid,
    pub name: String,
    pub city: String,
    pub address: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Query of `GET /api/v1/theaters`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TheaterQuery {
    /// City, case-insensitive.
    #[param(max_length = 100)]
    pub city: Option<String>,
    /// 1-based page number (default 1).
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

// ---- screens and seats ----

/// Body of `POST /api/v1/theaters/{id}/screens`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreenInput {
    #[schema(
        example = "Screen 1",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[schema(min_items = 1, max_items = 200)]
    pub rows: Vec<RowSpec>,
}

/// A screen without its seats.
#[derive(Clone, Debug, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Screen {
    pub id: Uuid,
    pub theater_id: Uuid,
    pub name: String,
    /// Number of seats.
    pub capacity: i64,
    /// Seat categories present, sorted.
    pub categories: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// A seat of a screen.
#[derive(Clone, Debug, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Seat {
    pub id: Uuid,
    #[schema(example = "A")]
    pub row: String,
    #[schema(example = 7)]
    pub number: i32,
    #[schema(example = "standard")]
    pub category: String,
}

/// A screen with its seats in display order.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScreenWithSeats {
    #[serde(flatten)]
    pub screen: Screen,
    pub seats: Vec<Seat>,
}

// ---- showtimes ----

/// Whether a showtime still takes place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "showtime_status", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ShowtimeStatus {
    Scheduled,
    Cancelled,
}

/// Body of `POST /api/v1/showtimes`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShowtimeInput {
    pub movie_id: Uuid,
    pub screen_id: Uuid,
    /// RFC 3339; must be in the future. The end is derived from the movie's duration.
    pub starts_at: DateTime<Utc>,
    /// Price in minor units for every seat category of the screen, 0 to 100000000.
    #[schema(example = json!({"standard": 1200, "premium": 1800}), value_type = BTreeMap<String, u32>)]
    #[serde(deserialize_with = "lenient::int_map")]
    pub prices: BTreeMap<String, i64>,
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// Body of `PATCH /api/v1/showtimes/{id}`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShowtimePatch {
    pub starts_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<BTreeMap<String, u32>>)]
    #[serde(default, deserialize_with = "lenient::opt_int_map")]
    pub prices: Option<BTreeMap<String, i64>>,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
}

/// A showtime with what a listing needs to show it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Showtime {
    pub id: Uuid,
    pub movie_id: Uuid,
    pub movie_title: String,
    pub screen_id: Uuid,
    pub screen_name: String,
    pub theater_id: Uuid,
    pub theater_name: String,
    pub city: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Price in minor units per seat category.
    pub prices: BTreeMap<String, i64>,
    pub currency: String,
    pub status: ShowtimeStatus,
    pub created_at: DateTime<Utc>,
}

/// Query of `GET /api/v1/showtimes`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowtimeQuery {
    pub movie_id: Option<Uuid>,
    pub theater_id: Option<Uuid>,
    /// City, case-insensitive.
    #[param(max_length = 100)]
    pub city: Option<String>,
    /// Day of the start, `YYYY-MM-DD` in UTC.
    pub date: Option<NaiveDate>,
    /// Also list showtimes that have ended (default false).
    pub include_past: Option<bool>,
    /// 1-based page number (default 1).
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

// ---- reviews ----

/// Body of `POST /api/v1/movies/{id}/reviews`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    #[schema(minimum = 1, maximum = 5)]
    #[serde(deserialize_with = "lenient::int")]
    pub rating: i16,
    #[serde(default)]
    #[schema(max_length = 4000, pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    pub comment: String,
}

/// A review of a movie.
#[derive(Clone, Debug, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Review {
    pub id: Uuid,
    pub movie_id: Uuid,
    pub user_id: Uuid,
    pub user_name: String,
    pub rating: i16,
    pub comment: String,
    pub created_at: DateTime<Utc>,
}

/// Query of review lists: paging only.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// 1-based page number (default 1).
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// Paging of every catalog list query.
macro_rules! paged {
    ($($t:ty),*) => {$(
        impl $t {
            /// The paging part of the query.
            pub fn paging(&self) -> PageQuery {
                PageQuery { page: self.page, per_page: self.per_page }
            }
        }
    )*};
}
paged!(MovieQuery, TheaterQuery, ShowtimeQuery, ReviewQuery);

// ---- checked input, as the repo writes it (made by the service's `TryFrom`s) ----

/// A checked movie.
#[derive(Clone, Debug)]
pub struct NewMovie {
    pub title: String,
    pub description: String,
    pub genres: Vec<String>,
    pub duration_minutes: i32,
    pub age_rating: Option<String>,
    pub release_date: Option<NaiveDate>,
}

/// A checked theater.
#[derive(Clone, Debug)]
pub struct NewTheater {
    pub name: String,
    pub city: String,
    pub address: String,
}

/// A checked showtime.
#[derive(Clone, Debug)]
pub struct NewShowtime {
    pub movie_id: Uuid,
    pub screen_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub prices: BTreeMap<String, i64>,
    pub currency: String,
}

/// Filters of the showtime list.
#[derive(Clone, Debug)]
pub struct ShowtimeFilter {
    pub movie_id: Option<Uuid>,
    pub theater_id: Option<Uuid>,
    pub city: Option<String>,
    pub date: Option<NaiveDate>,
    pub include_past: bool,
}
