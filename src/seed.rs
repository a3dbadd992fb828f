//! `seatgate seed-demo`: a small demo catalog (movies, two theaters with ~150-seat screens in
//! three categories, showtimes over the next week) and a demo user. Running it again adds only
//! what is missing: fixed ids for the catalog, and the overlap constraint for showtimes.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::auth::{Role, password, repo as users};
use crate::catalog::layout::{self, RowSpec};
use crate::catalog::repo;

/// The demo user's credentials, printed by the README's first command.
pub const DEMO_EMAIL: &str = "demo@seatgate.local";
pub const DEMO_PASSWORD: &str = "demo-password";

/// What a seeding run added.
#[derive(Debug, Default)]
pub struct SeedSummary {
    pub movies: u64,
    pub theaters: u64,
    pub screens: u64,
    pub showtimes: u64,
    pub demo_user_created: bool,
}

const MOVIES: [(u128, &str, &str, i32, &[&str]); 4] = [
    (
        0x5ea7_0000_0000_7000_8000_0000_0000_0101,
        "The Last Projectionist",
        "A night-shift projectionist keeps a closing cinema alive for one more week.",
        112,
        &["drama"],
    ),
    (
        0x5ea7_0000_0000_7000_8000_0000_0000_0102,
        "Orbit of Glass",
        "Two engineers race to repair a failing station before the sun comes up.",
        128,
        &["sci-fi", "thriller"],
    ),
    (
        0x5ea7_0000_0000_7000_8000_0000_0000_0103,
        "Paper Lanterns",
        "A family reunion goes sideways during the lantern festival.",
        97,
        &["comedy", "family"],
    ),
    (
        0x5ea7_0000_0000_7000_8000_0000_0000_0104,
        "Midnight Ledger",
        "An auditor finds one number that should not be there.",
        121,
        &["crime", "thriller"],
    ),
];

const THEATERS: [(u128, &str, &str, &str); 2] = [
    (0x5ea7_0000_0000_7000_8000_0000_0000_0201, "Seatgate Central", "Berlin", "Alexanderplatz 1"),
    (0x5ea7_0000_0000_7000_8000_0000_0000_0202, "Seatgate Riverside", "Hamburg", "Hafenstrasse 7"),
];

/// Two screens per theater: (theater index, id, name).
const SCREENS: [(usize, u128, &str); 4] = [
    (0, 0x5ea7_0000_0000_7000_8000_0000_0000_0301, "Screen 1"),
    (0, 0x5ea7_0000_0000_7000_8000_0000_0000_0302, "Screen 2"),
    (1, 0x5ea7_0000_0000_7000_8000_0000_0000_0303, "Screen 1"),
    (1, 0x5ea7_0000_0000_7000_8000_0000_0000_0304, "Screen 2"),
];

/// 10 rows of 15: A-E standard, F-I premium, J vip (150 seats).
fn demo_rows() -> Vec<RowSpec> {
    ('A'..='J')
        .map(|label| RowSpec {
            label: label.to_string(),
            seats: 15,
            category: match label {
                'A'..='E' => "standard",
                'F'..='I' => "premium",
                _ => "vip",
            }
            .to_owned(),
        })
        .collect()
}

/// Loads the demo data; safe to run any number of times.
pub async fn seed_demo(db: &PgPool) -> anyhow::Result<SeedSummary> {
    let mut summary = SeedSummary::default();
    let mut tx = db.begin().await?;
    // One seeding at a time, even from several processes.
    sqlx::query("select pg_advisory_xact_lock(7361626)").execute(&mut *tx).await?;
    for (id, title, description, duration, genres) in MOVIES {
        let genres: Vec<String> = genres.iter().map(|g| (*g).to_owned()).collect();
        summary.movies += sqlx::query(
            r#"insert into movies (id, title, description, genres, duration_minutes, age_rating)
               values ($1, $2, $3, $4, $5, '12') on conflict (id) do nothing"#,
        )
        .bind(Uuid::from_u128(id))
        .bind(title)
        .bind(description)
        .bind(&genres)
        .bind(duration)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    for (id, name, city, address) in THEATERS {
        summary.theaters += sqlx::query(
            "insert into theaters (id, name, city, address) values ($1, $2, $3, $4) on conflict (id) do nothing",
        )
        .bind(Uuid::from_u128(id))
        .bind(name)
        .bind(city)
        .bind(address)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    let seats = layout::generate(&demo_rows()).map_err(|e| anyhow::anyhow!("demo layout: {e:?}"))?;
    for (theater, id, name) in SCREENS {
        let added =
            sqlx::query("insert into screens (id, theater_id, name) values ($1, $2, $3) on conflict (id) do nothing")
                .bind(Uuid::from_u128(id))
                .bind(Uuid::from_u128(THEATERS[theater].0))
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if added == 1 {
            repo::insert_seats(&mut tx, Uuid::from_u128(id), &seats).await?;
            summary.screens += 1;
        }
    }
    // Showtimes for today and the next 6 days at 14:00, 17:30 and 21:00 UTC, movies rotating.
    let prices: BTreeMap<&str, i64> = BTreeMap::from([("standard", 1200), ("premium", 1600), ("vip", 2400)]);
    let slots = [(14, 0), (17, 30), (21, 0)];
    let today = Utc::now().date_naive();
    for day in 0..7 {
        let date = today + Duration::days(day);
        for (s, (_, screen_id, _)) in SCREENS.iter().enumerate() {
            for (k, (h, m)) in slots.iter().enumerate() {
                let starts_at = date.and_time(NaiveTime::from_hms_opt(*h, *m, 0).unwrap_or_default()).and_utc();
                if starts_at <= Utc::now() + Duration::minutes(30) {
                    continue;
                }
                let (movie_id, _, _, duration, _) = MOVIES[(s + k + day as usize) % MOVIES.len()];
                summary.showtimes += sqlx::query(
                    r#"insert into showtimes (id, movie_id, screen_id, starts_at, ends_at, prices, currency)
                       values ($1, $2, $3, $4, $5, $6, 'EUR') on conflict do nothing"#,
                )
                .bind(Uuid::now_v7())
                .bind(Uuid::from_u128(movie_id))
                .bind(Uuid::from_u128(*screen_id))
                .bind(starts_at)
                .bind(starts_at + Duration::minutes(i64::from(duration)))
                .bind(Json(&prices))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
    }
    if users::find_user_by_email(&mut tx, DEMO_EMAIL).await?.is_none() {
        let hash = password::hash(DEMO_PASSWORD.to_owned()).await?;
        users::insert_user(&mut tx, DEMO_EMAIL, "Demo User", &hash, Role::User).await?;
        summary.demo_user_created = true;
    }
    tx.commit().await?;
    Ok(summary)
}
