//! SQL of showtimes.

use super::*;

#[derive(FromRow)]
struct ShowtimeRow {
    id: Uuid,
    movie_id: Uuid,
    movie_title: String,
    screen_id: Uuid,
    screen_name: String,
    theater_id: Uuid,
    theater_name: String,
    city: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    prices: Json<BTreeMap<String, i64>>,
    currency: String,
    status: ShowtimeStatus,
    created_at: DateTime<Utc>,
}

impl From<ShowtimeRow> for Showtime {
    fn from(r: ShowtimeRow) -> Self {
        Self {
            id: r.id,
            movie_id: r.movie_id,
            movie_title: r.movie_title,
            screen_id: r.screen_id,
            screen_name: r.screen_name,
            theater_id: r.theater_id,
            theater_name: r.theater_name,
            city: r.city,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            prices: r.prices.0,
            currency: r.currency,
            status: r.status,
            created_at: r.created_at,
        }
    }
}

const SHOWTIME_SELECT: &str = r#"select s.id, s.movie_id, m.title as movie_title, s.screen_id, sc.name as screen_name,
       sc.theater_id, t.name as theater_name, t.city, s.starts_at, s.ends_at, s.prices, s.currency,
       s.status, s.created_at
  from showtimes s
  join movies m on m.id = s.movie_id
  join screens sc on sc.id = s.screen_id
  join theaters t on t.id = sc.theater_id"#;

#[tracing::instrument(skip_all, fields(showtime.id = %id))]
pub async fn find_showtime(conn: &mut PgConnection, id: Uuid) -> Result<Option<Showtime>, sqlx::Error> {
    let row = sqlx::query_as::<_, ShowtimeRow>(AssertSqlSafe(format!("{SHOWTIME_SELECT} where s.id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Showtime::from))
}

#[tracing::instrument(skip_all)]
pub async fn insert_showtime(conn: &mut PgConnection, s: &NewShowtime) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        r#"insert into showtimes (id, movie_id, screen_id, starts_at, ends_at, prices, currency)
           values ($1, $2, $3, $4, $5, $6, $7) returning id"#,
    )
    .bind(Uuid::now_v7())
    .bind(s.movie_id)
    .bind(s.screen_id)
    .bind(s.starts_at)
    .bind(s.ends_at)
    .bind(Json(&s.prices))
    .bind(&s.currency)
    .fetch_one(conn)
    .await
}

/// Updates a scheduled showtime; `false` when it does not exist or was cancelled.
#[tracing::instrument(skip_all, fields(showtime.id = %id))]
pub async fn update_showtime(conn: &mut PgConnection, id: Uuid, s: &NewShowtime) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"update showtimes set starts_at = $2, ends_at = $3, prices = $4, currency = $5, updated_at = now()
            where id = $1 and status = 'scheduled'"#,
    )
    .bind(id)
    .bind(s.starts_at)
    .bind(s.ends_at)
    .bind(Json(&s.prices))
    .bind(&s.currency)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a showtime from scheduled to cancelled; `false` when it was not scheduled.
#[tracing::instrument(skip_all, fields(showtime.id = %id))]
pub async fn cancel_showtime(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update showtimes set status = 'cancelled', updated_at = now() where id = $1 and status = 'scheduled'",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[tracing::instrument(skip_all)]
pub async fn list_showtimes(
    conn: &mut PgConnection,
    f: &ShowtimeFilter,
    paging: Paging,
) -> Result<(Vec<Showtime>, i64), sqlx::Error> {
    const FILTER: &str = r#"s.status = 'scheduled'
        and ($1::uuid is null or s.movie_id = $1)
        and ($2::uuid is null or sc.theater_id = $2)
        and ($3::text is null or lower(t.city) = lower($3))
        and ($4::date is null or (s.starts_at at time zone 'UTC')::date = $4)
        and ($5::bool or s.ends_at > now())"#;
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        r#"select count(*) from showtimes s join screens sc on sc.id = s.screen_id
             join theaters t on t.id = sc.theater_id where {FILTER}"#
    )))
    .bind(f.movie_id)
    .bind(f.theater_id)
    .bind(&f.city)
    .bind(f.date)
    .bind(f.include_past)
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query_as::<_, ShowtimeRow>(AssertSqlSafe(format!(
        "{SHOWTIME_SELECT} where {FILTER} order by s.starts_at, s.id limit $6 offset $7"
    )))
    .bind(f.movie_id)
    .bind(f.theater_id)
    .bind(&f.city)
    .bind(f.date)
    .bind(f.include_past)
    .bind(paging.limit())
    .bind(paging.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows.into_iter().map(Showtime::from).collect(), total))
}

/// Showtimes that are scheduled and start after `after` (the sweeper's list of showtimes that
/// may have holds).
pub async fn showtimes_starting_after(conn: &mut PgConnection, after: DateTime<Utc>) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select id from showtimes where status = 'scheduled' and starts_at > $1")
        .bind(after)
        .fetch_all(conn)
        .await
}

/// What checkout needs of a showtime, as its statement (`ledger::repo::CHECKOUT`) reads it under
/// a share lock, so that a concurrent cancellation waits for it (and then cancels its
/// reservation too).
#[derive(Debug, FromRow)]
pub struct ShowtimeForSale {
    pub starts_at: DateTime<Utc>,
    pub status: ShowtimeStatus,
    pub prices: Json<BTreeMap<String, i64>>,
    pub currency: String,
}
