//! SQL of reviews.

use super::*;

/// True when the user has a confirmed booking of some showtime of the movie.
#[tracing::instrument(skip_all, fields(user.id = %user_id, movie.id = %movie_id))]
pub async fn has_confirmed_booking(
    conn: &mut PgConnection,
    user_id: Uuid,
    movie_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        r#"select exists (select 1 from bookings b join showtimes s on s.id = b.showtime_id
                           where b.user_id = $1 and s.movie_id = $2 and b.status = 'confirmed')"#,
    )
    .bind(user_id)
    .bind(movie_id)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(skip_all, fields(user.id = %user_id, movie.id = %movie_id))]
pub async fn insert_review(
    conn: &mut PgConnection,
    movie_id: Uuid,
    user_id: Uuid,
    rating: i16,
    comment: &str,
) -> Result<Review, sqlx::Error> {
    sqlx::query_as::<_, Review>(
        r#"with r as (insert into reviews (id, movie_id, user_id, rating, comment) values ($1, $2, $3, $4, $5)
                      returning id, movie_id, user_id, rating, comment, created_at)
           select r.*, u.name as user_name from r join users u on u.id = r.user_id"#,
    )
    .bind(Uuid::now_v7())
    .bind(movie_id)
    .bind(user_id)
    .bind(rating)
    .bind(comment)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(skip_all, fields(movie.id = %movie_id))]
pub async fn list_reviews(
    conn: &mut PgConnection,
    movie_id: Uuid,
    paging: Paging,
) -> Result<(Vec<Review>, i64), sqlx::Error> {
    let total: i64 = sqlx::query_scalar("select count(*) from reviews where movie_id = $1")
        .bind(movie_id)
        .fetch_one(&mut *conn)
        .await?;
    let items = sqlx::query_as::<_, Review>(
        r#"select r.id, r.movie_id, r.user_id, u.name as user_name, r.rating, r.comment, r.created_at
             from reviews r join users u on u.id = r.user_id
            where r.movie_id = $1 order by r.created_at desc, r.id limit $2 offset $3"#,
    )
    .bind(movie_id)
    .bind(paging.limit())
    .bind(paging.offset())
    .fetch_all(conn)
    .await?;
    Ok((items, total))
}
