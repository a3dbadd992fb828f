//! Rules of showtimes: prices per category, the end from the movie's length, overlaps on a screen.

use super::*;

pub async fn list_showtimes(state: &AppState, q: ShowtimeQuery) -> Result<Page<Showtime>, ApiError> {
    let paging = Paging::try_from(q.paging())?;
    check_city(q.city.as_ref())?;
    let filter = ShowtimeFilter {
        movie_id: q.movie_id,
        theater_id: q.theater_id,
        city: q.city.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned),
        date: q.date,
        include_past: q.include_past.unwrap_or(false),
    };
    // Lists that hide ended showtimes change as time passes: key them by the minute too.
    let minute = Utc::now().timestamp() / 60;
    let name = format!(
        "showtimes:{}",
        serde_json::json!([
            filter.movie_id,
            filter.theater_id,
            filter.city,
            filter.date,
            filter.include_past,
            minute,
            paging.page,
            paging.per_page
        ])
    );
    cache::cached(state, &name, || async {
        let (items, total) = repo::list_showtimes(&mut *state.db.acquire().await?, &filter, paging).await?;
        Ok(Page::new(items, paging, total))
    })
    .await
}

pub async fn get_showtime(state: &AppState, id: Uuid) -> Result<Showtime, ApiError> {
    cache::cached(state, &format!("showtime:{id}"), || async {
        repo::find_showtime(&mut *state.db.acquire().await?, id).await?.ok_or(NO_SHOWTIME)
    })
    .await
}

pub async fn create_showtime(state: &AppState, input: ShowtimeInput) -> Result<Showtime, ApiError> {
    let mut conn = state.db.acquire().await?;
    let movie = repo::find_movie(&mut conn, input.movie_id).await?;
    let screen = repo::find_screen(&mut conn, input.screen_id).await?;
    let mut errors = Errors::default();
    if movie.is_none() {
        errors.push("movie_id", "no such movie");
    }
    match &screen {
        Some(screen) => check_prices(&input.prices, &screen.categories, &mut errors),
        None => errors.push("screen_id", "no such screen"),
    }
    if input.starts_at <= Utc::now() {
        errors.push("starts_at", "must be in the future");
    }
    errors.check(validate::currency("currency", &input.currency));
    errors.finish()?;
    let duration = movie.map_or(0, |m| m.duration_minutes);
    let showtime = NewShowtime {
        movie_id: input.movie_id,
        screen_id: input.screen_id,
        starts_at: input.starts_at,
        ends_at: ends_at(input.starts_at, duration),
        prices: input.prices,
        currency: input.currency,
    };
    let id =
        repo::insert_showtime(&mut conn, &showtime).await.map_err(on_constraint("showtimes_no_overlap", overlap))?;
    cache::invalidate(state).await;
    tracing::info!(showtime.id = %id, "showtime created");
    repo::find_showtime(&mut conn, id).await?.ok_or(NO_SHOWTIME)
}

pub async fn update_showtime(state: &AppState, id: Uuid, patch: ShowtimePatch) -> Result<Showtime, ApiError> {
    let mut conn = state.db.acquire().await?;
    let current = repo::find_showtime(&mut conn, id).await?.ok_or(NO_SHOWTIME)?;
    if current.status == ShowtimeStatus::Cancelled {
        return Err(ApiError::Conflict("the showtime is cancelled".into()));
    }
    let screen = repo::find_screen(&mut conn, current.screen_id).await?.ok_or(NO_SCREEN)?;
    let movie = repo::find_movie(&mut conn, current.movie_id).await?.ok_or(NO_MOVIE)?;
    let mut errors = Errors::default();
    let starts_at = patch.starts_at.unwrap_or(current.starts_at);
    if patch.starts_at.is_some_and(|s| s <= Utc::now()) {
        errors.push("starts_at", "must be in the future");
    }
    let prices = patch.prices.unwrap_or(current.prices);
    check_prices(&prices, &screen.categories, &mut errors);
    let currency = patch.currency.unwrap_or(current.currency);
    errors.check(validate::currency("currency", &currency));
    errors.finish()?;
    let showtime = NewShowtime {
        movie_id: current.movie_id,
        screen_id: current.screen_id,
        starts_at,
        ends_at: ends_at(starts_at, movie.duration_minutes),
        prices,
        currency,
    };
    let updated = repo::update_showtime(&mut conn, id, &showtime)
        .await
        .map_err(on_constraint("showtimes_no_overlap", overlap))?;
    if !updated {
        return Err(ApiError::Conflict("the showtime is cancelled".into()));
    }
    cache::invalidate(state).await;
    repo::find_showtime(&mut conn, id).await?.ok_or(NO_SHOWTIME)
}
