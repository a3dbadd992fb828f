//! Set-up shared by the `queue` and `flood` scenarios: one showtime on a new screen. (Their
//! accounts are seeded in bulk by [`crate::accounts`].)

use serde_json::json;
use uuid::Uuid;

use crate::api::Api;

/// A movie, a theater, a screen of `rows` x `seats` standard seats and a showtime tomorrow.
pub async fn showtime(api: &Api, admin: &str, rows: u32, seats: u32) -> anyhow::Result<Uuid> {
    let tag = Uuid::new_v4().simple().to_string();
    let (movie, _) =
        api.create(admin, "/api/v1/movies", &json!({"title": format!("Bench {tag}"), "duration_minutes": 120})).await?;
    let (theater, _) = api
        .create(
            admin,
            "/api/v1/theaters",
            &json!({"name": format!("Bench {tag}"), "city": "Bench", "address": "1 Bench St"}),
        )
        .await?;
    let labels = (0..rows).map(|i| {
        let (a, b) = (i / 26, i % 26);
        let letter = char::from(b'A' + b as u8);
        if a == 0 { letter.to_string() } else { format!("{}{letter}", char::from(b'A' + (a - 1) as u8)) }
    });
    let rows: Vec<_> = labels.map(|label| json!({"label": label, "seats": seats, "category": "standard"})).collect();
    let (screen, _) = api
        .create(admin, &format!("/api/v1/theaters/{theater}/screens"), &json!({"name": "Bench", "rows": rows}))
        .await?;
    let starts_at = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT%H:00:00Z").to_string();
    let (showtime, _) = api
        .create(
            admin,
            "/api/v1/showtimes",
            &json!({"movie_id": movie, "screen_id": screen, "starts_at": starts_at,
            "prices": {"standard": 1000}, "currency": "EUR"}),
        )
        .await?;
    Ok(showtime)
}
