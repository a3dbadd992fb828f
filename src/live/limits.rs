//! Per-client caps on open live streams (seat maps and waiting rooms), per instance: at most
//! `SEATGATE_SSE_MAX_PER_IP` streams per client IP and `SEATGATE_SSE_MAX_PER_USER` per
//! signed-in user. Without them one client opened 600 streams and took a share of the
//! instance's `SEATGATE_SSE_MAX_CONNECTIONS` (and of seatgate-lb's connection cap) that was
//! meant for everyone. Past a cap the stream is refused with 429 `rate_limited` and
//! `Retry-After`. A stream's [`ClientPermit`] gives its place back when the stream ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::config::LiveConfig;
use crate::error::ApiError;

/// Seconds a refused client is told to wait.
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug)]
struct Counts<K> {
    open: Mutex<HashMap<K, usize>>,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Self { open: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Copy> Counts<K> {
    fn take(&self, key: K, max: usize) -> bool {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, key: K) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

/// The open streams of each client of this instance.
#[derive(Debug)]
pub struct StreamLimits {
    by_ip: Counts<IpAddr>,
    by_user: Counts<Uuid>,
    max_per_ip: usize,
    max_per_user: usize,
}

/// One stream's place under its client's caps; dropping it frees the place.
#[derive(Debug)]
pub struct ClientPermit {
    limits: Arc<StreamLimits>,
    ip: IpAddr,
    user: Option<Uuid>,
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        self.limits.by_ip.give_back(self.ip);
        if let Some(user) = self.user {
            self.limits.by_user.give_back(user);
        }
    }
}

impl StreamLimits {
    pub fn new(config: &LiveConfig) -> Self {
        Self {
            by_ip: Counts::default(),
            by_user: Counts::default(),
            max_per_ip: config.max_per_ip,
            max_per_user: config.max_per_user,
        }
    }

    /// A place for one more stream of `ip` (and `user`, when signed in), or 429.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, user: Option<Uuid>) -> Result<ClientPermit, ApiError> {
        let refused = |by: &'static str| {
            metrics::counter!("seatgate_sse_client_refused_total", "by" => by).increment(1);
            ApiError::RateLimited { retry_after_secs: RETRY_AFTER_SECS }
        };
        if !self.by_ip.take(ip, self.max_per_ip) {
            return Err(refused("ip"));
        }
        if let Some(user) = user
            && !self.by_user.take(user, self.max_per_user)
        {
            self.by_ip.give_back(ip);
            return Err(refused("user"));
        }
        Ok(ClientPermit { limits: Arc::clone(self), ip, user })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: usize, per_user: usize) -> Arc<StreamLimits> {
        Arc::new(StreamLimits {
            by_ip: Counts::default(),
            by_user: Counts::default(),
            max_per_ip: per_ip,
            max_per_user: per_user,
        })
    }

    #[test]
    fn a_client_ip_gets_its_cap_and_the_place_comes_back_when_a_stream_ends() {
        let l = limits(2, 10);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let a = l.admit(ip, None).expect("first");
        let _b = l.admit(ip, None).expect("second");
        assert!(matches!(l.admit(ip, None), Err(ApiError::RateLimited { .. })));
        assert!(l.admit("192.0.2.2".parse().expect("ip"), None).is_ok(), "other clients are not affected");
        drop(a);
        assert!(l.admit(ip, None).is_ok());
    }

    #[test]
    fn a_user_is_capped_across_ips_and_a_refusal_takes_no_ip_place() {
        let l = limits(1, 1);
        let user = Uuid::now_v7();
        let _a = l.admit("192.0.2.1".parse().expect("ip"), Some(user)).expect("first");
        assert!(l.admit("192.0.2.2".parse().expect("ip"), Some(user)).is_err());
        assert!(l.admit("192.0.2.2".parse().expect("ip"), None).is_ok(), "the refused stream gave its IP place back");
    }
}
