//! SQL of the catalog. Each function takes the connection so the caller owns the transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, FromRow, PgConnection};
use uuid::Uuid;

use super::layout::SeatSpec;
use super::model::{
    Movie, NewMovie, NewShowtime, NewTheater, Review, Screen, Seat, Showtime, ShowtimeFilter, ShowtimeStatus, Theater,
};
use crate::paging::Paging;

mod reviews;
mod showtimes;
pub use reviews::*;
pub use showtimes::*;

const MOVIE_COLUMNS: &str =
    "id, title, description, genres, duration_minutes, age_rating, release_date, created_at, updated_at";

#[tracing::instrument(skip_all)]
pub async fn insert_movie(conn: &mut PgConnection, m: &NewMovie) -> Result<Movie, sqlx::Error> {
    sqlx::query_as::<_, Movie>(AssertSqlSafe(format!(
        r#"insert into movies (id, title, description, genres, duration_minutes, age_rating, release_date)
           values ($1, $2, $3, $4, $5, $6, $7) returning {MOVIE_COLUMNS}"#
    )))
    .bind(Uuid::now_v7())
    .bind(&m.title)
    .bind(&m.description)
    .bind(&m.genres)
    .bind(m.duration_minutes)
    .bind(&m.age_rating)
    .bind(m.release_date)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(skip_all, fields(movie.id = %id))]
pub async fn find_movie(conn: &mut PgConnection, id: Uuid) -> Result<Option<Movie>, sqlx::Error> {
    sqlx::query_as::<_, Movie>(AssertSqlSafe(format!("select {MOVIE_COLUMNS} from movies where id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(skip_all, fields(movie.id = %id))]
pub async fn update_movie(conn: &mut PgConnection, id: Uuid, m: &NewMovie) -> Result<Option<Movie>, sqlx::Error> {
    sqlx::query_as::<_, Movie>(AssertSqlSafe(format!(
        r#"update movies set title = $2, description = $3, genres = $4, duration_minutes = $5,
               age_rating = $6, release_date = $7, updated_at = now()
           where id = $1 returning {MOVIE_COLUMNS}"#
    )))
    .bind(id)
    .bind(&m.title)
    .bind(&m.description)
    .bind(&m.genres)
    .bind(m.duration_minutes)
    .bind(&m.age_rating)
    .bind(m.release_date)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(skip_all, fields(movie.id = %id))]
pub async fn delete_movie(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("delete from movies where id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

/// `%` and `_` in user input match themselves in `ilike`.
fn like_pattern(q: &str) -> String {
    let escaped = q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

#[tracing::instrument(skip_all)]
pub async fn list_movies(
    conn: &mut PgConnection,
    q: Option<&str>,
    genre: Option<&str>,
    paging: Paging,
) -> Result<(Vec<Movie>, i64), sqlx::Error> {
    const FILTER: &str = "($1::text is null or title ilike $1) and ($2::text is null or genres @> array[$2::text])";
    let pattern = q.map(like_pattern);
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!("select count(*) from movies where {FILTER}")))
        .bind(&pattern)
        .bind(genre)
        .fetch_one(&mut *conn)
        .await?;
    let items = sqlx::query_as::<_, Movie>(AssertSqlSafe(format!(
        "select {MOVIE_COLUMNS} from movies where {FILTER} order by lower(title), id limit $3 offset $4"
    )))
    .bind(&pattern)
    .bind(genre)
    .bind(paging.limit())
    .bind(paging.offset())
    .fetch_all(conn)
    .await?;
    Ok((items, total))
}

// ---- theaters ----

const THEATER_COLUMNS: &str = "id, name, city, address, created_at, updated_at";

#[tracing::instrument(skip_all)]
pub async fn insert_theater(conn: &mut PgConnection, t: &NewTheater) -> Result<Theater, sqlx::Error> {
    sqlx::query_as::<_, Theater>(AssertSqlSafe(format!(
        "insert into theaters (id, name, city, address) values ($1, $2, $3, $4) returning {THEATER_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(&t.name)
    .bind(&t.city)
    .bind(&t.address)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(skip_all, fields(theater.id = %id))]
pub async fn find_theater(conn: &mut PgConnection, id: Uuid) -> Result<Option<Theater>, sqlx::Error> {
    sqlx::query_as::<_, Theater>(AssertSqlSafe(format!("select {THEATER_COLUMNS} from theaters where id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(skip_all, fields(theater.id = %id))]
pub async fn update_theater(conn: &mut PgConnection, id: Uuid, t: &NewTheater) -> Result<Option<Theater>, sqlx::Error> {
    sqlx::query_as::<_, Theater>(AssertSqlSafe(format!(
        "update theaters set name = $2, city = $3, address = $4, updated_at = now() where id = $1 returning {THEATER_COLUMNS}"
    )))
    .bind(id)
    .bind(&t.name)
    .bind(&t.city)
    .bind(&t.address)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(skip_all, fields(theater.id = %id))]
pub async fn delete_theater(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("delete from theaters where id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

#[tracing::instrument(skip_all)]
pub async fn list_theaters(
    conn: &mut PgConnection,
    city: Option<&str>,
    paging: Paging,
) -> Result<(Vec<Theater>, i64), sqlx::Error> {
    const FILTER: &str = "($1::text is null or lower(city) = lower($1))";
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!("select count(*) from theaters where {FILTER}")))
        .bind(city)
        .fetch_one(&mut *conn)
        .await?;
    let items = sqlx::query_as::<_, Theater>(AssertSqlSafe(format!(
        "select {THEATER_COLUMNS} from theaters where {FILTER} order by lower(city), lower(name), id limit $2 offset $3"
    )))
    .bind(city)
    .bind(paging.limit())
    .bind(paging.offset())
    .fetch_all(conn)
    .await?;
    Ok((items, total))
}

// ---- screens and seats ----

const SCREEN_SELECT: &str = r#"select sc.id, sc.theater_id, sc.name, sc.created_at,
       (select count(*) from seats s where s.screen_id = sc.id) as capacity,
       coalesce((select array_agg(distinct s.category order by s.category) from seats s where s.screen_id = sc.id),
                '{}') as categories
  from screens sc"#;

#[tracing::instrument(skip_all, fields(theater.id = %theater_id))]
pub async fn insert_screen(conn: &mut PgConnection, theater_id: Uuid, name: &str) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("insert into screens (id, theater_id, name) values ($1, $2, $3) returning id")
        .bind(Uuid::now_v7())
        .bind(theater_id)
        .bind(name)
        .fetch_one(conn)
        .await
}

/// Stores a whole layout in one statement.
#[tracing::instrument(skip_all, fields(screen.id = %screen_id, seats = seats.len()))]
pub async fn insert_seats(conn: &mut PgConnection, screen_id: Uuid, seats: &[SeatSpec]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = seats.iter().map(|_| Uuid::now_v7()).collect();
    let rows: Vec<&str> = seats.iter().map(|s| s.row_label.as_str()).collect();
    let numbers: Vec<i32> = seats.iter().map(|s| s.number).collect();
    let categories: Vec<&str> = seats.iter().map(|s| s.category.as_str()).collect();
    let indexes: Vec<i32> = seats.iter().map(|s| s.row_index).collect();
    sqlx::query(
        r#"insert into seats (id, screen_id, row_label, number, category, row_index)
           select id, $2, row_label, number, category, row_index
             from unnest($1::uuid[], $3::text[], $4::int[], $5::text[], $6::int[])
                  as t(id, row_label, number, category, row_index)"#,
    )
    .bind(&ids)
    .bind(screen_id)
    .bind(&rows)
    .bind(&numbers)
    .bind(&categories)
    .bind(&indexes)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(screen.id = %id))]
pub async fn find_screen(conn: &mut PgConnection, id: Uuid) -> Result<Option<Screen>, sqlx::Error> {
    sqlx::query_as::<_, Screen>(AssertSqlSafe(format!("{SCREEN_SELECT} where sc.id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(skip_all, fields(theater.id = %theater_id))]
pub async fn list_screens(conn: &mut PgConnection, theater_id: Uuid) -> Result<Vec<Screen>, sqlx::Error> {
    sqlx::query_as::<_, Screen>(AssertSqlSafe(format!(
        "{SCREEN_SELECT} where sc.theater_id = $1 order by sc.name, sc.id"
    )))
    .bind(theater_id)
    .fetch_all(conn)
    .await
}

/// Seats of a screen in display order (row, then number).
#[tracing::instrument(skip_all, fields(screen.id = %screen_id))]
pub async fn screen_seats(conn: &mut PgConnection, screen_id: Uuid) -> Result<Vec<Seat>, sqlx::Error> {
    sqlx::query_as::<_, Seat>(
        r#"select id, row_label as row, number, category from seats
            where screen_id = $1 order by row_index, number"#,
    )
    .bind(screen_id)
    .fetch_all(conn)
    .await
}

#[tracing::instrument(skip_all, fields(screen.id = %id))]
pub async fn delete_screen(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("delete from screens where id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}
