//! `Idempotency-Key` handling: the first request with a key claims it; the answer is stored in
//! the same transaction as the work; a retry with the same key and request replays the answer;
//! the same key with another request is refused. A claim that never got an answer (its instance
//! died, or the client hung up and actix dropped the handler mid-way) is taken over by a retry
//! after [`IN_PROGRESS_TIMEOUT`], so a key is never stuck "in progress".

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::ApiError;

/// How long a claimed key with no answer is taken to be still at work. Longer than any checkout
/// runs (its Redis and PostgreSQL waits are bounded by 2 s timeouts); a takeover of a request
/// that is in fact still running is safe anyway: the reservation's unique hold id lets only one
/// of them write.
pub const IN_PROGRESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

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

/// Claims `key` for this user and request, in one statement: it inserts the claim, or finds the
/// existing one (locked, so it cannot vanish between looking and reading) and takes it over if
/// it was left unanswered for [`IN_PROGRESS_TIMEOUT`]. `claimed` is true when this request now
/// owns the key (a claim stamped with this transaction's `now()`).
///
/// The claim's commit does not wait for its WAL flush (`synchronous_commit` off for this one
/// statement's transaction, set in its `from`): the claim only has to be seen by concurrent
/// requests, which it is at commit. A crash can lose it only together with everything committed
/// after it, since the checkout's own (flushed) commit comes later in the WAL and flushes the
/// claim with it; so a lost claim means a checkout that never happened, and a retry starts anew.
const CLAIM: &str = r#"
insert into idempotency_keys as k (user_id, key, request_hash)
select $1, $2, $3 from (select set_config('synchronous_commit', 'off', true)) as no_flush_wait
on conflict (user_id, key) do update set created_at =
    case when k.response_status is null and k.request_hash = excluded.request_hash
              and k.created_at < now() - make_interval(secs => $4)
         then now() else k.created_at end
returning request_hash, response_status, response_body, created_at = now() as claimed"#;

/// Claims `key` for this user and request.
pub async fn claim(db: &PgPool, user_id: Uuid, key: &str, request_hash: &str) -> Result<Claim, ApiError> {
    let (hash, status, body, claimed): (String, Option<i16>, Option<Value>, bool) = sqlx::query_as(CLAIM)
        .bind(user_id)
        .bind(key)
        .bind(request_hash)
        .bind(IN_PROGRESS_TIMEOUT.as_secs_f64())
        .fetch_one(db)
        .await?;
    if hash != request_hash {
        return Err(ApiError::invalid("Idempotency-Key", "this key was used for a different request"));
    }
    if let (Some(status), Some(body)) = (status, body) {
        return Ok(Claim::Replay { status: status as u16, body });
    }
    if claimed {
        return Ok(Claim::New);
    }
    Err(ApiError::Conflict("a request with this Idempotency-Key is still in progress; retry shortly".into()))
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
