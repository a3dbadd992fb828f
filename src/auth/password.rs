//! argon2id password hashing, off the async executor (one hash costs tens of milliseconds of
//! CPU and would otherwise stall every request on that worker thread).
//!
//! Requests hash through a [`HashLimiter`]: one slot per core, a bounded number of requests
//! waiting for a slot, and a timed wait. Past either bound the request gets 503 with
//! `Retry-After` at once, instead of queueing without bound behind a flood of bogus logins (a
//! flood of ~23 logins/s used to push a real user's login from 0.1 s to 4.2 s).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    tokio::task::spawn_blocking(move || verify_blocking(&password, hash))
        .await
        .context("password verification task failed")
}

/// No hashing slot within the bounds: the request is refused (503, `Retry-After`).
#[derive(Debug, thiserror::Error)]
#[error("password hashing is saturated")]
pub struct Busy;

impl From<Busy> for crate::error::ApiError {
    fn from(_: Busy) -> Self {
        metrics::counter!("seatgate_password_hash_refused_total").increment(1);
        Self::Overloaded { retry_after_secs: 1 }
    }
}

/// Bounded, timed access to password hashing for request handlers.
#[derive(Debug)]
pub struct HashLimiter {
    slots: Arc<Semaphore>,
    size: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

/// Decrements the waiting count when a waiter leaves, however it leaves.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashLimiter {
    /// `slots` hashes at once, at most `max_waiting` requests waiting at most `wait` each.
    pub fn new(slots: usize, max_waiting: usize, wait: Duration) -> Self {
        let size = slots.max(1);
        Self { slots: Arc::new(Semaphore::new(size)), size, waiting: AtomicUsize::new(0), max_waiting, wait }
    }

    /// One slot per core, bounds from the configuration.
    pub fn from_config(auth: &crate::config::AuthConfig) -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()), auth.hash_queue, auth.hash_wait)
    }

    /// Slots in all.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A hashing slot: at once if one is free, else after waiting in the bounded queue.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, Busy> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy),
        }
    }

    /// [`hash`] within the limits.
    pub async fn hash(&self, password: String) -> Result<String, crate::error::ApiError> {
        let _permit = self.acquire().await?;
        let hashed = tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| anyhow::anyhow!("password hashing task failed: {e}"))??;
        Ok(hashed)
    }

    /// [`verify`] within the limits.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, crate::error::ApiError> {
        let _permit = self.acquire().await?;
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&password, hash))
            .await
            .map_err(|e| anyhow::anyhow!("password verification task failed: {e}"))?;
        Ok(ok)
    }
}

fn verify_blocking(password: &str, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
    let ok = Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok();
    ok && known
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

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_a_timed_wait_gives_up() {
        // Arrange: one slot, taken; room for one waiter.
        let limiter = HashLimiter::new(1, 1, Duration::from_millis(50));
        let _taken = limiter.acquire().await.expect("free slot");
        // Act: the first waiter waits out its time; while it waits, a second is refused at once.
        let (first, second) = tokio::join!(limiter.acquire(), async {
            tokio::task::yield_now().await;
            let start = std::time::Instant::now();
            (limiter.acquire().await.is_err(), start.elapsed())
        });
        // Assert
        assert!(first.is_err(), "the waiter gives up after its wait");
        assert!(second.0 && second.1 < Duration::from_millis(40), "the queue was full: refused at once");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_that_frees_up_in_time() {
        let limiter = HashLimiter::new(1, 4, Duration::from_secs(5));
        let taken = limiter.acquire().await.expect("free slot");
        let (waiter, ()) = tokio::join!(limiter.acquire(), async move {
            tokio::task::yield_now().await;
            drop(taken);
        });
        assert!(waiter.is_ok());
    }
}
