//! Request and response types of the catalog, and their conversion into checked values.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use super::layout::RowSpec;
use crate::paging::PageQuery;

// ---- movies ----

/// Body of `POST /api/v1/movies`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovieInput {
    #[schema(example = "The Grand Budapest Hotel")]
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Lower-cased, at most 10.
    #[serde(default)]
    #[schema(example = json!(["comedy", "drama"]))]
    pub genres: Vec<String>,
    #[schema(example = 99, minimum = 1, maximum = 1000)]
    pub duration_minutes: i32,
    #[schema(example = "R")]
    pub age_rating: Option<String>,
    pub release_date: Option<NaiveDate>,
}

/// Body of `PATCH /api/v1/movies/{id}`: only the fields given change.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoviePatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub genres: Option<Vec<String>>,
    pub duration_minutes: Option<i32>,
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
    pub q: Option<String>,
    /// One genre.
    pub genre: Option<String>,
    /// 1-based page number (default 1).
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    pub per_page: Option<u32>,
}

// ---- theaters ----

/// Body of `POST /api/v1/theaters`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TheaterInput {
    #[schema(example = "Odeon Leicester Square")]
    pub name: String,
    #[schema(example = "London")]
    pub city: String,
    #[serde(default)]
    pub address: String,
}

/// Body of `PATCH /api/v1/theaters/{id}`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TheaterPatch {
    pub name: Option<String>,
    pub city: Option<String>,
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
    pub city: Option<String>,
    /// 1-based page number (default 1).
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    pub per_page: Option<u32>,
}

// ---- screens and seats ----

/// Body of `POST /api/v1/theaters/{id}/screens`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreenInput {
    #[schema(example = "Screen 1")]
    pub name: String,
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
    /// Price in minor units for every seat category of the screen.
    #[schema(example = json!({"standard": 1200, "premium": 1800}))]
    pub prices: BTreeMap<String, i64>,
    #[schema(example = "EUR")]
    pub currency: String,
}

/// Body of `PATCH /api/v1/showtimes/{id}`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShowtimePatch {
    pub starts_at: Option<DateTime<Utc>>,
    pub prices: Option<BTreeMap<String, i64>>,
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
    pub city: Option<String>,
    /// Day of the start, `YYYY-MM-DD` in UTC.
    pub date: Option<NaiveDate>,
    /// Also list showtimes that have ended (default false).
    pub include_past: Option<bool>,
    /// 1-based page number (default 1).
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    pub per_page: Option<u32>,
}

// ---- reviews ----

/// Body of `POST /api/v1/movies/{id}/reviews`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    #[schema(minimum = 1, maximum = 5)]
    pub rating: i16,
    #[serde(default)]
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
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
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
