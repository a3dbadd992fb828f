//! Set-up shared by the `queue` and `flood` scenarios: one showtime on a new screen, and
//! accounts copied straight into PostgreSQL.

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::AsyncWriteExt;
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

/// Inserts plain `user` accounts with these ids (no usable password) in one `\copy`.
pub async fn copy_users(psql: &str, database_url: &str, ids: &[Uuid]) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(psql)
        .arg(database_url)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            r"\copy users (id, email, name, password_hash) from stdin with csv",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("run {psql}"))?;
    let mut stdin = child.stdin.take().context("psql stdin")?;
    let mut csv = String::with_capacity(ids.len() * 100);
    for id in ids {
        csv.push_str(&format!("{id},bench-{id}@example.com,Bench,$argon2id$v=19$m=19456,t=2,p=1$none$none\n"));
    }
    stdin.write_all(csv.as_bytes()).await?;
    drop(stdin);
    let status = child.wait().await?;
    if !status.success() {
        bail!("{psql} \\copy users failed ({status})");
    }
    Ok(())
}
