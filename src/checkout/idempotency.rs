//! `Idempotency-Key` handling: the first request with a key claims it; the answer is stored in
//! the same transaction as the work; a retry with the same key and request replays the answer;
//! the same key with another request is refused.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::ApiError;

/// What claiming a key found.
#[derive(Debug)]
pub enum Claim {
    /// First use: do the work.
    New,
    /// Done before: answer this again.
    Replay { status: u16, body: Value },
}

/// Checks a raw header value.
pub fn parse_key(raw: Option<&str>) -> Result<String, ApiError> {
    let key = raw.map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "send a header Idempotency-Key of 1 to 200 printable characters",
        ));
    }
    Ok(key.to_owned())
}

/// Fingerprint of a request.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// Claims `key` for this user and request.
pub async fn claim(db: &PgPool, user_id: Uuid, key: &str, request_hash: &str) -> Result<Claim, ApiError> {
    let inserted = sqlx::query(
        "insert into idempotency_keys (user_id, key, request_hash) values ($1, $2, $3) on conflict do nothing",
    )
    .bind(user_id)
    .bind(key)
    .bind(request_hash)
    .execute(db)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::New);
    }
    let (hash, status, body): (String, Option<i16>, Option<Value>) = sqlx::query_as(
        "select request_hash, response_status, response_body from idempotency_keys where user_id = $1 and key = $2",
    )
    .bind(user_id)
    .bind(key)
    .fetch_one(db)
    .await?;
    if hash != request_hash {
        return Err(ApiError::invalid("Idempotency-Key", "this key was used for a different request"));
    }
    match (status, body) {
        (Some(status), Some(body)) => Ok(Claim::Replay { status: status as u16, body }),
        _ => Err(ApiError::Conflict("a request with this Idempotency-Key is still in progress".into())),
    }
}

/// Stores the answer, inside the caller's transaction.
pub async fn save(
    conn: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    status: u16,
    body: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("update idempotency_keys set response_status = $3, response_body = $4 where user_id = $1 and key = $2")
        .bind(user_id)
        .bind(key)
        .bind(status as i16)
        .bind(body)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives the key back after a failure, so the client may retry with it.
pub async fn forget(db: &PgPool, user_id: Uuid, key: &str) {
    let result =
        sqlx::query("delete from idempotency_keys where user_id = $1 and key = $2 and response_status is null")
            .bind(user_id)
            .bind(key)
            .execute(db)
            .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot release an idempotency key");
    }
}
