//! Set-up through the API: the catalog of a run and its showtimes (users: `api::register_users`).

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::CATEGORY;
use crate::api::{self, Api, TargetArgs};

/// Seat categories of a screen with `--categories N`, front rows first, and their prices.
const CATEGORIES: [(&str, i64); 3] = [("premium", 4500), ("standard", 2500), ("economy", 1200)];

/// The categories of a screen of `n` (1-3) bands: one is [`CATEGORY`] at 1200, as before.
pub(super) fn categories(n: u32) -> Vec<(&'static str, i64)> {
    match n {
        0 | 1 => vec![(CATEGORY, 1200)],
        n => CATEGORIES[..(n as usize).min(CATEGORIES.len())].to_vec(),
    }
}

/// Admin login, a movie, a theater, a screen whose rows fall, front to back, into as many equal
/// bands as `categories` has (the last takes the rest); returns the admin token, the movie and
/// screen ids and the screen's seat ids in layout order.
pub(super) async fn catalog(
    api: &Api,
    target: &TargetArgs,
    run_id: &str,
    rows: u32,
    per_row: u32,
    categories: &[(&'static str, i64)],
) -> anyhow::Result<Catalog> {
    api.ready().await?;
    let admin = api.login(&target.admin_email, &target.admin_password).await?;
    let movie = json!({"title": format!("Bench {run_id}"), "duration_minutes": 120, "genres": ["drama"]});
    let (movie_id, _) = api.create(&admin, "/api/v1/movies", &movie).await.context("create the movie")?;
    let theater = json!({"name": format!("Bench Theater {run_id}"), "city": "Benchville", "address": "Loop 1"});
    let (theater_id, _) = api.create(&admin, "/api/v1/theaters", &theater).await.context("create the theater")?;
    let band = rows.div_ceil(categories.len().max(1) as u32).max(1);
    let row_list: Vec<Value> = (1..=rows)
        .map(|r| {
            let (category, _) = categories[(((r - 1) / band) as usize).min(categories.len() - 1)];
            json!({"label": format!("R{r}"), "seats": per_row, "category": category})
        })
        .collect();
    let screen = json!({"name": format!("Bench Screen {run_id}"), "rows": row_list});
    let (screen_id, _) = api
        .create(&admin, &format!("/api/v1/theaters/{theater_id}/screens"), &screen)
        .await
        .context("create the screen")?;
    let screen = api
        .call(Method::GET, &format!("/api/v1/screens/{screen_id}"), None, None, StatusCode::OK)
        .await
        .context("read the screen's seats")?;
    let seat_ids = api::screen_seat_ids(&screen, (rows * per_row) as usize)?;
    Ok(Catalog { admin, movie_id, screen_id, seat_ids, categories: categories.to_vec() })
}

pub(super) struct Catalog {
    pub(super) admin: String,
    pub(super) movie_id: Uuid,
    pub(super) screen_id: Uuid,
    pub(super) seat_ids: Vec<Uuid>,
    pub(super) categories: Vec<(&'static str, i64)>,
}

/// A showtime on the screen, `offset_hours` after this time tomorrow (two hours long).
pub(super) async fn showtime(api: &Api, c: &Catalog, offset_hours: i64) -> anyhow::Result<Uuid> {
    let starts = chrono::Utc::now() + chrono::Duration::days(1) + chrono::Duration::hours(offset_hours);
    let body = json!({
        "movie_id": c.movie_id,
        "screen_id": c.screen_id,
        "starts_at": starts.format("%Y-%m-%dT%H:%M:00Z").to_string(),
        "prices": c.categories.iter().map(|(name, price)| ((*name).to_owned(), json!(price))).collect::<serde_json::Map<_, _>>(),
        "currency": "EUR",
    });
    let (id, _) = api.create(&c.admin, "/api/v1/showtimes", &body).await.context("create a showtime")?;
    Ok(id)
}

pub(super) fn run_id() -> String {
    Uuid::new_v4().simple().to_string()[..8].to_owned()
}
