//! Rules of reviews: one per user and movie, only with a confirmed booking of the movie.

use super::*;

pub async fn list_reviews(state: &AppState, movie_id: Uuid, q: ReviewQuery) -> Result<Page<Review>, ApiError> {
    let paging = Paging::try_from(q.paging())?;
    let mut conn = state.db.acquire().await?;
    repo::find_movie(&mut conn, movie_id).await?.ok_or(NO_MOVIE)?;
    let (items, total) = repo::list_reviews(&mut conn, movie_id, paging).await?;
    Ok(Page::new(items, paging, total))
}

/// Only a user with a confirmed booking of the movie may review it, once.
pub async fn create_review(
    state: &AppState,
    movie_id: Uuid,
    user_id: Uuid,
    input: ReviewInput,
) -> Result<Review, ApiError> {
    let mut errors = Errors::default();
    if !(1..=5).contains(&input.rating) {
        errors.push("rating", "must be 1 to 5");
    }
    let comment = errors.check(validate::text("comment", &input.comment, 0, 4000, true));
    errors.finish()?;
    let mut conn = state.db.acquire().await?;
    repo::find_movie(&mut conn, movie_id).await?.ok_or(NO_MOVIE)?;
    if !repo::has_confirmed_booking(&mut conn, user_id, movie_id).await? {
        return Err(ApiError::Forbidden("only viewers with a confirmed booking of this movie may review it"));
    }
    repo::insert_review(&mut conn, movie_id, user_id, input.rating, &comment.unwrap_or_default()).await.map_err(
        on_constraint("reviews_movie_user_key", || ApiError::Conflict("you have already reviewed this movie".into())),
    )
}
