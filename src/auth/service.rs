//! Rules of accounts: what a valid email, password and name are; register, login, first admin.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::repo::{self, UserRow};
use std::net::IpAddr;

use super::{Role, password};
use crate::error::{ApiError, FieldError, on_constraint};
use crate::state::AppState;

/// Body of `POST /api/v1/auth/register`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "ada@example.com", format = "email", max_length = 254)]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(example = "correct horse battery", min_length = 8, max_length = 128)]
    pub password: String,
    #[schema(
        example = "Ada Lovelace",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
}

/// Body of `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// An account as clients see it (never the hash).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self { id: row.id, email: row.email, name: row.name, role: row.role, created_at: row.created_at }
    }
}

/// Answer of register and login.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuthResponse {
    pub user: User,
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// A normalised email (trimmed, lower-cased), or why it is not one.
pub fn parse_email(raw: &str) -> Result<String, FieldError> {
    let email = raw.trim().to_lowercase();
    let bad = |m: &str| FieldError::new("email", m);
    if email.len() < 3 || email.len() > 254 {
        return Err(bad("must be 3 to 254 characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(bad("must be an email address"));
    };
    let valid = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(bad("must be an email address"));
    }
    Ok(email)
}

/// A password of acceptable length.
pub fn check_password(password: &str) -> Result<(), FieldError> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Err(FieldError::new("password", "must be 8 to 128 characters"));
    }
    Ok(())
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
pub fn parse_name(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    let n = name.chars().count();
    if n == 0 || n > 100 || name.chars().any(char::is_control) {
        return Err(FieldError::new("name", "must be 1 to 100 printable characters"));
    }
    Ok(name.to_owned())
}

fn answer(state: &AppState, user: UserRow) -> Result<AuthResponse, ApiError> {
    let access_token = state.jwt.issue(user.id, user.role)?;
    Ok(AuthResponse {
        user: user.into(),
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.jwt.ttl_secs(),
    })
}

/// Creates a `user` account and signs it in. A taken email is refused before any hashing, so
/// repeated registrations of one email cost no CPU.
#[tracing::instrument(skip_all)]
pub async fn register(state: &AppState, ip: IpAddr, req: RegisterRequest) -> Result<AuthResponse, ApiError> {
    throttle_ip(state, ip).await?;
    let mut errors = Vec::new();
    let email = parse_email(&req.email).map_err(|e| errors.push(e)).ok();
    let name = parse_name(&req.name).map_err(|e| errors.push(e)).ok();
    let _ = check_password(&req.password).map_err(|e| errors.push(e));
    let (Some(email), Some(name), true) = (email, name, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let taken = repo::find_user_by_email(&mut *state.db.acquire().await?, &email).await?.is_some();
    if taken {
        return Err(ApiError::Conflict("an account with this email already exists".into()));
    }
    let hash = state.hashing.hash(req.password).await?;
    let mut conn = state.db.acquire().await?;
    // Two registrations of one new email at once: the unique constraint decides.
    let user = repo::insert_user(&mut conn, &email, &name, &hash, Role::User)
        .await
        .map_err(on_constraint("users_email_key", || {
            ApiError::Conflict("an account with this email already exists".into())
        }))?;
    tracing::info!(user.id = %user.id, "account registered");
    answer(state, user)
}

/// Checks email and password; the same 401 (in about the same time) whether the email is
/// unknown or the password wrong. Every attempt counts against the client IP and against the
/// email as typed (malformed ones included); a malformed email is refused without hashing,
/// since no account can have it.
#[tracing::instrument(skip_all)]
pub async fn login(state: &AppState, ip: IpAddr, req: LoginRequest) -> Result<AuthResponse, ApiError> {
    const REFUSED: ApiError = ApiError::Unauthorized("invalid email or password");
    throttle_ip(state, ip).await?;
    let typed = req.email.trim().to_lowercase();
    throttle(state, &["login", &typed], state.config.auth.login_attempts_per_minute).await?;
    let Ok(email) = parse_email(&req.email) else { return Err(REFUSED) };
    if req.password.len() > 1024 {
        return Err(REFUSED);
    }
    let user = repo::find_user_by_email(&mut *state.db.acquire().await?, &email).await?;
    let ok = state.hashing.verify(req.password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    match user {
        Some(user) if ok => answer(state, user),
        _ => Err(REFUSED),
    }
}

/// At most `SEATGATE_AUTH_ATTEMPTS_PER_IP_PER_MINUTE` logins and registrations per client IP.
async fn throttle_ip(state: &AppState, ip: IpAddr) -> Result<(), ApiError> {
    throttle(state, &["auth-ip", &ip.to_string()], state.config.auth.attempts_per_ip_per_minute).await
}

/// At most `limit` attempts per `parts` (e.g. `login` + email) and minute, across all
/// instances (counted in Redis). If Redis is down, attempts are not throttled rather than
/// refused.
async fn throttle(state: &AppState, parts: &[&str], limit: u32) -> Result<(), ApiError> {
    use deadpool_redis::redis;
    let key = format!("{}:{}:{}", state.keys.prefix(), parts[0], crate::infra::hash::fingerprint(parts));
    let counted: anyhow::Result<(i64, i64)> = async {
        let mut conn = state.redis.get().await?;
        let (count, ttl): (i64, i64) =
            redis::pipe().atomic().incr(&key, 1).cmd("TTL").arg(&key).query_async(&mut conn).await?;
        if ttl < 0 {
            let _: () = redis::cmd("EXPIRE").arg(&key).arg(60).query_async(&mut conn).await?;
        }
        Ok((count, ttl.max(1)))
    }
    .await;
    match counted {
        Ok((count, ttl)) if count > i64::from(limit) => {
            metrics::counter!("seatgate_login_throttled_total", "by" => parts[0].to_owned()).increment(1);
            Err(ApiError::RateLimited { retry_after_secs: ttl as u64 })
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "auth throttle unavailable");
            Ok(())
        }
    }
}

/// The caller's account; a token for an account that no longer exists is refused.
pub async fn me(state: &AppState, id: Uuid) -> Result<User, ApiError> {
    let mut conn = state.db.acquire().await?;
    repo::find_user(&mut conn, id)
        .await?
        .map(User::from)
        .ok_or(ApiError::Unauthorized("the account of this token no longer exists"))
}

/// Whether `ensure_admin` made a new account or promoted one.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminOutcome {
    Created,
    Promoted,
    AlreadyAdmin,
    /// The email belongs to a `user` account and promotion was not allowed: left alone.
    NotPromoted,
}

/// Makes sure an admin account exists for `email`: created with `password` when missing,
/// promoted when it exists as a user (its password is then left as it is). For explicit
/// requests (`seatgate admin create`); start-up uses [`bootstrap_admin`].
pub async fn ensure_admin(db: &PgPool, email: &str, password: &str) -> anyhow::Result<AdminOutcome> {
    bootstrap_admin(db, email, password, true).await
}

/// The admin of `SEATGATE_ADMIN_EMAIL` at start-up: created when missing; an existing `user`
/// account is promoted only with `allow_promotion` (`SEATGATE_ADMIN_PROMOTE`), since whoever
/// registered that email first would otherwise become admin silently. Both cases are logged.
pub async fn bootstrap_admin(
    db: &PgPool,
    email: &str,
    password: &str,
    allow_promotion: bool,
) -> anyhow::Result<AdminOutcome> {
    let email = parse_email(email).map_err(|e| anyhow::anyhow!("admin email: {}", e.message))?;
    check_password(password).map_err(|e| anyhow::anyhow!("admin password: {}", e.message))?;
    let mut conn = db.acquire().await?;
    if let Some(existing) = repo::find_user_by_email(&mut conn, &email).await? {
        if existing.role == Role::Admin {
            return Ok(AdminOutcome::AlreadyAdmin);
        }
        if !allow_promotion {
            tracing::warn!(
                user.id = %existing.id,
                "an account with the admin email exists as a plain user; NOT promoted (set \
                 SEATGATE_ADMIN_PROMOTE=1 or run `seatgate admin create` to promote it)"
            );
            return Ok(AdminOutcome::NotPromoted);
        }
        repo::promote_to_admin(&mut conn, &email).await?;
        tracing::warn!(user.id = %existing.id, "an existing account was promoted to admin");
        return Ok(AdminOutcome::Promoted);
    }
    let hash = password::hash(password.to_owned()).await?;
    match repo::insert_user(&mut conn, &email, "Administrator", &hash, Role::Admin).await {
        Ok(_) => Ok(AdminOutcome::Created),
        // Another instance created it at the same moment.
        Err(e) if crate::error::violated_constraint(&e) == Some("users_email_key") => Ok(AdminOutcome::AlreadyAdmin),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(parse_email("  Ada@Example.COM ").expect("valid"), "ada@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "ada@.com", "a@b@c.d"] {
            assert!(parse_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_need_8_to_128_characters() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"x".repeat(129)).is_err());
        assert!(check_password("ñññññññññ").is_ok());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Ada ").expect("valid"), "Ada");
        assert!(parse_name("   ").is_err());
        assert!(parse_name("a\u{0}b").is_err());
        assert!(parse_name(&"é".repeat(101)).is_err());
    }
}
