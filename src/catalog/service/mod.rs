//! Rules of the catalog: input checks, derived values (a showtime's end, a layout's seats),
//! which conflicts are the client's, and cache invalidation after every committed write.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::cache;
use super::layout;
use super::model::*;
use super::repo;
use crate::error::{ApiError, on_constraint};
use crate::paging::{Page, Paging};
use crate::state::AppState;
use crate::validate::{self, Errors};

mod reviews;
mod showtimes;
pub use reviews::*;
pub use showtimes::*;

/// Highest price of one seat, in minor units.
pub const MAX_PRICE_MINOR: i64 = 100_000_000;

impl TryFrom<MovieInput> for NewMovie {
    type Error = ApiError;
    fn try_from(m: MovieInput) -> Result<Self, ApiError> {
        let mut errors = Errors::default();
        let title = errors.check(validate::text("title", &m.title, 1, 200, false));
        let description = errors.check(validate::text("description", &m.description, 0, 5000, true));
        if m.genres.len() > 10 {
            errors.push("genres", "at most 10 genres");
        }
        let mut genres = BTreeSet::new();
        for (i, g) in m.genres.iter().enumerate() {
            if let Some(g) = errors.check(validate::text(&format!("genres[{i}]"), &g.0, 1, 40, false)) {
                genres.insert(g.to_lowercase());
            }
        }
        if !(1..=1000).contains(&m.duration_minutes) {
            errors.push("duration_minutes", "must be 1 to 1000");
        }
        let age_rating = match &m.age_rating {
            Some(r) => errors.check(validate::text("age_rating", r, 1, 20, false)),
            None => None,
        };
        errors.finish()?;
        Ok(Self {
            title: title.unwrap_or_default(),
            description: description.unwrap_or_default(),
            genres: genres.into_iter().collect(),
            duration_minutes: m.duration_minutes,
            age_rating,
            release_date: m.release_date,
        })
    }
}

impl TryFrom<TheaterInput> for NewTheater {
    type Error = ApiError;
    fn try_from(t: TheaterInput) -> Result<Self, ApiError> {
        let mut errors = Errors::default();
        let name = errors.check(validate::text("name", &t.name, 1, 200, false));
        let city = errors.check(validate::text("city", &t.city, 1, 100, false));
        let address = errors.check(validate::text("address", &t.address, 0, 500, false));
        errors.finish()?;
        Ok(Self {
            name: name.unwrap_or_default(),
            city: city.unwrap_or_default(),
            address: address.unwrap_or_default(),
        })
    }
}

/// Checks that `prices` names exactly the seat categories of the screen with sane amounts.
pub fn check_prices(prices: &BTreeMap<String, i64>, categories: &[String], errors: &mut Errors) {
    for category in categories {
        if !prices.contains_key(category) {
            errors.push(format!("prices.{category}"), "the screen has seats of this category: give their price");
        }
    }
    for (category, amount) in prices {
        if !categories.contains(category) {
            errors.push(format!("prices.{category}"), "the screen has no seats of this category");
        } else if !(0..=MAX_PRICE_MINOR).contains(amount) {
            errors.push(format!("prices.{category}"), format!("must be 0 to {MAX_PRICE_MINOR} (minor units)"));
        }
    }
}

/// The end of a showtime starting at `starts_at` for a movie of `duration_minutes`.
pub fn ends_at(starts_at: DateTime<Utc>, duration_minutes: i32) -> DateTime<Utc> {
    starts_at + chrono::Duration::minutes(i64::from(duration_minutes))
}

const NO_MOVIE: ApiError = ApiError::NotFound("no such movie");
const NO_THEATER: ApiError = ApiError::NotFound("no such theater");
const NO_SCREEN: ApiError = ApiError::NotFound("no such screen");
const NO_SHOWTIME: ApiError = ApiError::NotFound("no such showtime");

fn overlap() -> ApiError {
    ApiError::Conflict("the screen already has a showtime at that time".into())
}

// ---- movies ----

pub async fn list_movies(state: &AppState, q: MovieQuery) -> Result<Page<Movie>, ApiError> {
    let paging = Paging::try_from(q.paging())?;
    let text = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let genre = q.genre.as_deref().map(|g| g.trim().to_lowercase()).filter(|s| !s.is_empty());
    check_filter("q", q.q.as_ref(), 200)?;
    check_filter("genre", q.genre.as_ref(), 40)?;
    let name = format!("movies:{}", serde_json::json!([text, genre, paging.page, paging.per_page]));
    cache::cached(state, &name, || async {
        let mut conn = state.db.acquire().await?;
        let (items, total) = repo::list_movies(&mut conn, text.as_deref(), genre.as_deref(), paging).await?;
        Ok(Page::new(items, paging, total))
    })
    .await
}

pub async fn get_movie(state: &AppState, id: Uuid) -> Result<Movie, ApiError> {
    cache::cached(state, &format!("movie:{id}"), || async {
        repo::find_movie(&mut *state.db.acquire().await?, id).await?.ok_or(NO_MOVIE)
    })
    .await
}

pub async fn create_movie(state: &AppState, input: MovieInput) -> Result<Movie, ApiError> {
    let movie = NewMovie::try_from(input)?;
    let created = repo::insert_movie(&mut *state.db.acquire().await?, &movie).await?;
    cache::invalidate(state).await;
    tracing::info!(movie.id = %created.id, "movie created");
    Ok(created)
}

pub async fn update_movie(state: &AppState, id: Uuid, patch: MoviePatch) -> Result<Movie, ApiError> {
    let mut conn = state.db.acquire().await?;
    let current = repo::find_movie(&mut conn, id).await?.ok_or(NO_MOVIE)?;
    let merged = MovieInput {
        title: patch.title.unwrap_or(current.title),
        description: patch.description.unwrap_or(current.description),
        genres: patch.genres.unwrap_or_else(|| current.genres.into_iter().map(Genre).collect()),
        duration_minutes: patch.duration_minutes.unwrap_or(current.duration_minutes),
        age_rating: patch.age_rating.or(current.age_rating),
        release_date: patch.release_date.or(current.release_date),
    };
    let movie = NewMovie::try_from(merged)?;
    let updated = repo::update_movie(&mut conn, id, &movie).await?.ok_or(NO_MOVIE)?;
    cache::invalidate(state).await;
    Ok(updated)
}

pub async fn delete_movie(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    let deleted = repo::delete_movie(&mut *state.db.acquire().await?, id)
        .await
        .map_err(on_constraint("showtimes_movie_id_fkey", || {
            ApiError::Conflict("the movie has showtimes; cancel and keep them, or delete them first".into())
        }))?;
    if !deleted {
        return Err(NO_MOVIE);
    }
    cache::invalidate(state).await;
    Ok(())
}

// ---- theaters ----

/// A text filter of a list: at most `max` characters, no control characters.
fn check_filter(field: &str, value: Option<&String>, max: usize) -> Result<(), ApiError> {
    match value {
        Some(v) if v.chars().count() > max => Err(ApiError::invalid(field, format!("at most {max} characters"))),
        Some(v) if v.chars().any(char::is_control) => {
            Err(ApiError::invalid(field, "must not contain control characters"))
        }
        _ => Ok(()),
    }
}

/// A city filter is at most 100 characters, like a city.
fn check_city(city: Option<&String>) -> Result<(), ApiError> {
    check_filter("city", city, 100)
}

pub async fn list_theaters(state: &AppState, q: TheaterQuery) -> Result<Page<Theater>, ApiError> {
    let paging = Paging::try_from(q.paging())?;
    check_city(q.city.as_ref())?;
    let city = q.city.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let name = format!("theaters:{}", serde_json::json!([city, paging.page, paging.per_page]));
    cache::cached(state, &name, || async {
        let (items, total) = repo::list_theaters(&mut *state.db.acquire().await?, city.as_deref(), paging).await?;
        Ok(Page::new(items, paging, total))
    })
    .await
}

pub async fn get_theater(state: &AppState, id: Uuid) -> Result<Theater, ApiError> {
    repo::find_theater(&mut *state.db.acquire().await?, id).await?.ok_or(NO_THEATER)
}

pub async fn create_theater(state: &AppState, input: TheaterInput) -> Result<Theater, ApiError> {
    let theater = NewTheater::try_from(input)?;
    let created = repo::insert_theater(&mut *state.db.acquire().await?, &theater).await?;
    cache::invalidate(state).await;
    Ok(created)
}

pub async fn update_theater(state: &AppState, id: Uuid, patch: TheaterPatch) -> Result<Theater, ApiError> {
    let mut conn = state.db.acquire().await?;
    let current = repo::find_theater(&mut conn, id).await?.ok_or(NO_THEATER)?;
    let theater = NewTheater::try_from(TheaterInput {
        name: patch.name.unwrap_or(current.name),
        city: patch.city.unwrap_or(current.city),
        address: patch.address.unwrap_or(current.address),
    })?;
    let updated = repo::update_theater(&mut conn, id, &theater).await?.ok_or(NO_THEATER)?;
    cache::invalidate(state).await;
    Ok(updated)
}

pub async fn delete_theater(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    let deleted = repo::delete_theater(&mut *state.db.acquire().await?, id)
        .await
        .map_err(on_constraint("screens_theater_id_fkey", || {
            ApiError::Conflict("the theater has screens; delete them first".into())
        }))?;
    if !deleted {
        return Err(NO_THEATER);
    }
    cache::invalidate(state).await;
    Ok(())
}

// ---- screens ----

pub async fn list_screens(state: &AppState, theater_id: Uuid) -> Result<Vec<Screen>, ApiError> {
    let mut conn = state.db.acquire().await?;
    repo::find_theater(&mut conn, theater_id).await?.ok_or(NO_THEATER)?;
    Ok(repo::list_screens(&mut conn, theater_id).await?)
}

pub async fn create_screen(
    state: &AppState,
    theater_id: Uuid,
    input: ScreenInput,
) -> Result<ScreenWithSeats, ApiError> {
    let mut errors = Errors::default();
    let name = errors.check(validate::text("name", &input.name, 1, 100, false));
    let seats = match layout::generate(&input.rows) {
        Ok(seats) => seats,
        Err(e) => {
            e.into_iter().for_each(|f| errors.push(f.field, f.message));
            Vec::new()
        }
    };
    errors.finish()?;
    let mut tx = state.db.begin().await?;
    repo::find_theater(&mut tx, theater_id).await?.ok_or(NO_THEATER)?;
    let id = repo::insert_screen(&mut tx, theater_id, &name.unwrap_or_default())
        .await
        .map_err(on_constraint("screens_theater_name_key", || {
            ApiError::Conflict("the theater already has a screen of this name".into())
        }))?;
    repo::insert_seats(&mut tx, id, &seats).await?;
    let screen = repo::find_screen(&mut tx, id).await?.ok_or(NO_SCREEN)?;
    let seats = repo::screen_seats(&mut tx, id).await?;
    tx.commit().await?;
    cache::invalidate(state).await;
    tracing::info!(screen.id = %id, seats = seats.len(), "screen created");
    Ok(ScreenWithSeats { screen, seats })
}

/// A screen with its layout; layouts never change, so this is cached.
pub async fn get_screen(state: &AppState, id: Uuid) -> Result<ScreenWithSeats, ApiError> {
    cache::cached(state, &format!("screen:{id}"), || async {
        let mut conn = state.db.acquire().await?;
        let screen = repo::find_screen(&mut conn, id).await?.ok_or(NO_SCREEN)?;
        let seats = repo::screen_seats(&mut conn, id).await?;
        Ok(ScreenWithSeats { screen, seats })
    })
    .await
}

pub async fn delete_screen(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    let deleted = repo::delete_screen(&mut *state.db.acquire().await?, id)
        .await
        .map_err(on_constraint("showtimes_screen_id_fkey", || {
            ApiError::Conflict("the screen has showtimes and cannot be deleted".into())
        }))?;
    if !deleted {
        return Err(NO_SCREEN);
    }
    cache::invalidate(state).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_must_cover_exactly_the_screen_categories() {
        let categories = vec!["premium".to_owned(), "standard".to_owned()];
        let mut errors = Errors::default();
        check_prices(&BTreeMap::from([("standard".into(), 1200), ("premium".into(), 1800)]), &categories, &mut errors);
        assert!(errors.is_empty());

        let mut errors = Errors::default();
        check_prices(&BTreeMap::from([("standard".into(), -1), ("vip".into(), 10)]), &categories, &mut errors);
        let Err(ApiError::Validation(fields)) = errors.finish() else { panic!("expected a validation error") };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["prices.premium", "prices.standard", "prices.vip"]);
    }

    #[test]
    fn a_showtime_ends_after_the_movie() {
        let start = DateTime::parse_from_rfc3339("2030-01-01T20:00:00Z").expect("valid").to_utc();
        assert_eq!(ends_at(start, 135).to_rfc3339(), "2030-01-01T22:15:00+00:00");
    }

    #[test]
    fn movie_input_is_normalised() {
        let movie = NewMovie::try_from(MovieInput {
            title: "  Alien ".into(),
            description: String::new(),
            genres: vec![Genre("Horror".into()), Genre("horror".into()), Genre("Sci-Fi".into())],
            duration_minutes: 117,
            age_rating: None,
            release_date: None,
        })
        .expect("valid");
        assert_eq!(movie.title, "Alien");
        assert_eq!(movie.genres, ["horror", "sci-fi"]);
    }
}
