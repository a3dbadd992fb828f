//! The one way the scenarios make bench accounts without an argon2 hash each: written in bulk
//! straight into the API's database by the code of `seatgate seed-users`
//! (`seatgate::auth::bulk`: one precomputed hash of [`PASSWORD`], shared by every account), with
//! access tokens signed with the API's JWT secret, as its login would issue them. The API's
//! settings come from the environment (`scripts/bench.sh` exports them). Registering every
//! account through `POST /api/v1/auth/register` (one hash each on the server: 123 s for 5,000
//! users) stays available behind `--register-through-api` in the scenarios that offer it.

use std::time::Instant;

use anyhow::{Context, bail};
use uuid::Uuid;

use crate::api::User;

/// The password of every seeded bench account (what API registration uses too).
pub const PASSWORD: &str = "bench-password";

/// Seeded accounts: ids and tokens, in the same order.
pub struct Accounts {
    pub ids: Vec<Uuid>,
    pub users: Vec<User>,
}

/// Seeds `count` accounts `bench-<run>-<i>@example.com` into the database at `database_url`
/// (loopback only) and signs a token for each.
pub async fn seed(database_url: &str, run_id: &str, count: u32) -> anyhow::Result<Accounts> {
    crate::api::loopback_url("--database-url", database_url)?;
    let mut config = seatgate::config::Config::from_env().context("read the API's settings from the environment")?;
    if config.auth.jwt_secret_generated {
        bail!(
            "SEATGATE_JWT_SECRET must be the API's to sign the seeded accounts' tokens (run through \
             scripts/bench.sh, which exports it, or pass --register-through-api)"
        );
    }
    config.database.url = seatgate::config::Secret::new(database_url);
    let db = seatgate::infra::db::connect_existing(&config.database).await.context("--database-url")?;
    let req = seatgate::auth::bulk::SeedUsers {
        count,
        email_prefix: format!("bench-{run_id}-"),
        email_domain: "example.com".to_owned(),
        password: PASSWORD.to_owned(),
        name: "Bench User".to_owned(),
    };
    let started = Instant::now();
    let seeded = seatgate::auth::bulk::seed_users(&db, &req, true).await.context("seed the bench accounts")?;
    db.close().await;
    if seeded.ids.len() != count as usize {
        bail!("seeded {} accounts, expected {count}", seeded.ids.len());
    }
    let jwt = seatgate::auth::jwt::JwtKeys::new(&config.auth);
    let users = seeded
        .ids
        .iter()
        .map(|id| Ok(User { token: jwt.issue(*id, seatgate::auth::Role::User)? }))
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!(
        "  {count} accounts seeded in bulk in {:.1} s ({} new), one password hash for all",
        started.elapsed().as_secs_f64(),
        seeded.created
    );
    Ok(Accounts { ids: seeded.ids, users })
}
