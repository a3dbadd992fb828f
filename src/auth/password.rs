//! argon2id password hashing, off the async executor (one hash costs tens of milliseconds of
//! CPU and would otherwise stall every request on that worker thread).

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Hash of a random password, verified against when an email is unknown so that login takes
/// the same time whether or not the account exists.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let random = uuid::Uuid::new_v4().to_string();
    hash_blocking(&random).unwrap_or_default()
});

/// Hashes computed at once, at most. Each takes 19 MiB and a core for tens of milliseconds; a
/// burst of logins at on-sale time queues here instead of exhausting memory and CPU.
static HASHING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let hash = Argon2::default().hash_password(password.as_bytes()).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

/// An argon2id PHC string for `password`, with a fresh random salt.
pub async fn hash(password: String) -> anyhow::Result<String> {
    let _permit = HASHING.acquire().await.context("hashing semaphore closed")?;
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await.context("password hashing task failed")?
}

/// True when `password` matches `hash`. With no hash (unknown user) a dummy hash is checked
/// so the time taken gives nothing away; the answer is then always false.
pub async fn verify(password: String, hash: Option<String>) -> anyhow::Result<bool> {
    let _permit = HASHING.acquire().await.context("hashing semaphore closed")?;
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let ok = Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok();
        ok && known
    })
    .await
    .context("password verification task failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse".into()).await.expect("hashes");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), Some(h.clone())).await.expect("verifies"));
        assert!(!verify("wrong horse".into(), Some(h)).await.expect("verifies"));
        assert!(!verify("anything".into(), None).await.expect("verifies"));
    }
}
