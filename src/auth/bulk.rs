//! Test and bench accounts in bulk (`seatgate seed-users`): N plain `user` accounts written
//! straight into PostgreSQL with ONE argon2id hash of one password, computed once, so 50,000
//! bench buyers cost one hash instead of 50,000. Every seeded account shares that password (and
//! that salt): this is for load tests and staging, never for real people. Registration
//! (`POST /api/v1/auth/register`, one fresh salt per account) is not touched.
//!
//! Accounts are `<prefix><i>@<domain>` for i in 1..=N. A re-run skips emails that exist (their
//! password is left alone) and adds only the missing ones.

use sqlx::PgPool;
use uuid::Uuid;

use super::{password, service};

/// Rows written per statement.
const BATCH: usize = 5_000;

/// Most accounts one run writes.
pub const MAX_COUNT: u32 = 1_000_000;

/// What to seed.
#[derive(Clone, Debug)]
pub struct SeedUsers {
    pub count: u32,
    pub email_prefix: String,
    pub email_domain: String,
    pub password: String,
    pub name: String,
}

/// What a run did; `ids` are the accounts' ids in email order (1..=count), seeded or existing.
#[derive(Debug, serde::Serialize)]
pub struct Seeded {
    pub created: u64,
    pub existing: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<Uuid>,
}

/// Refuses what registration would refuse: the emails, password and name are checked with the
/// same rules.
pub fn check(req: &SeedUsers) -> anyhow::Result<()> {
    if req.count == 0 || req.count > MAX_COUNT {
        anyhow::bail!("--count must be 1 to {MAX_COUNT}");
    }
    if req.email_prefix.contains('@') {
        anyhow::bail!("--email-prefix must hold no '@'");
    }
    for i in [1, req.count] {
        let email = email(req, i);
        let parsed = service::parse_email(&email).map_err(|e| anyhow::anyhow!("email {email:?}: {}", e.message))?;
        if parsed != email {
            anyhow::bail!("email {email:?}: must be lower case, without spaces");
        }
    }
    service::check_password(&req.password).map_err(|e| anyhow::anyhow!("--password {}", e.message))?;
    service::parse_name(&req.name).map_err(|e| anyhow::anyhow!("--name {}", e.message))?;
    Ok(())
}

/// Email of the `i`-th account.
pub fn email(req: &SeedUsers, i: u32) -> String {
    format!("{}{i}@{}", req.email_prefix, req.email_domain)
}

/// Writes the accounts that do not exist yet, in batches of [`BATCH`] rows per statement;
/// returns the ids of all of them when `with_ids`.
pub async fn seed_users(db: &PgPool, req: &SeedUsers, with_ids: bool) -> anyhow::Result<Seeded> {
    check(req)?;
    let hash = password::hash(req.password.clone()).await?;
    let mut seeded = Seeded { created: 0, existing: 0, ids: Vec::new() };
    let numbers: Vec<u32> = (1..=req.count).collect();
    for chunk in numbers.chunks(BATCH) {
        let emails: Vec<String> = chunk.iter().map(|i| email(req, *i)).collect();
        let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
        let created = sqlx::query(
            "insert into users (id, email, name, password_hash)
             select id, email, $3, $4 from unnest($1::uuid[], $2::text[]) as t(id, email)
             on conflict (email) do nothing",
        )
        .bind(&ids)
        .bind(&emails)
        .bind(&req.name)
        .bind(&hash)
        .execute(db)
        .await?
        .rows_affected();
        seeded.created += created;
        seeded.existing += chunk.len() as u64 - created;
        if with_ids {
            let found: Vec<Uuid> = sqlx::query_scalar(
                "select u.id from unnest($1::text[]) with ordinality as e(email, n)
                   join users u on u.email = e.email order by e.n",
            )
            .bind(&emails)
            .fetch_all(db)
            .await?;
            seeded.ids.extend(found);
        }
    }
    Ok(seeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> SeedUsers {
        SeedUsers {
            count: 3,
            email_prefix: "bench-".into(),
            email_domain: "example.com".into(),
            password: "bench-password".into(),
            name: "Bench User".into(),
        }
    }

    #[test]
    fn emails_are_numbered_from_one_under_the_prefix() {
        assert_eq!(email(&req(), 1), "bench-1@example.com");
        assert!(check(&req()).is_ok());
    }

    #[test]
    fn what_registration_refuses_is_refused_here_too() {
        assert!(check(&SeedUsers { password: "short".into(), ..req() }).is_err());
        assert!(check(&SeedUsers { email_prefix: "Bench-".into(), ..req() }).is_err());
        assert!(check(&SeedUsers { email_prefix: "a@b".into(), ..req() }).is_err());
        assert!(check(&SeedUsers { count: 0, ..req() }).is_err());
        assert!(check(&SeedUsers { email_domain: "nodot".into(), ..req() }).is_err());
    }
}
