//! Per-client-IP token buckets (`SEATGATE_LB_RATE_LIMIT_RPS`, `SEATGATE_LB_RATE_LIMIT_BURST`).
//!
//! Each client key holds up to `burst` tokens, refilled at `rps` per second; a request spends
//! one or is refused with 429 and a `Retry-After` of the seconds until a token is back. The map
//! is split into shards, each behind its own short-held mutex, so two cores rarely meet on the
//! same lock. IPv6 clients are keyed by their /64: one host usually owns a whole /64, and keying
//! by full address would let it mint fresh buckets (and grow the map) at will. Buckets that have
//! refilled completely carry no information and are swept periodically, which bounds memory by
//! the clients active in the last sweep period.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{RateLimitConfig, RouteLimit};

const SHARDS: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// The limiter shared by every connection.
pub struct RateLimiter {
    rps: f64,
    burst: f64,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl RateLimiter {
    /// A limiter for `config`, which must be enabled (`rps > 0`).
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            rps: config.rps,
            burst: config.burst.max(1.0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Spends a token for `ip`. `Err` carries the whole seconds to wait before the next token.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let key = client_key(ip);
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = map.entry(key).or_insert(Bucket { tokens: self.burst, refilled_at: now });
        let elapsed = now.saturating_duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rps).min(self.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rps;
            Err((wait.ceil() as u64).max(1))
        }
    }

    /// Forgets buckets that would be full by now: they behave exactly like a new one.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    fn sweep_at(&self, now: Instant) {
        let refill = Duration::from_secs_f64((self.burst / self.rps).min(86_400.0));
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|_, b| now.saturating_duration_since(b.refilled_at) < refill);
        }
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()).sum()
    }
}

/// Per-route limits (`SEATGATE_LB_ROUTE_LIMITS`): a path prefix with its own token bucket per
/// client IP, checked besides the global one. The longest matching prefix wins, so
/// `/api/v1/auth/` can be tight (password hashing is expensive) while the rest stays open.
pub struct RouteLimits {
    /// Longest prefix first.
    routes: Vec<(String, RateLimiter)>,
}

impl RouteLimits {
    pub fn new(limits: &[RouteLimit]) -> Self {
        let mut routes: Vec<(String, RateLimiter)> = limits
            .iter()
            .map(|l| (l.prefix.clone(), RateLimiter::new(RateLimitConfig { rps: l.rps, burst: l.burst })))
            .collect();
        routes.sort_by_key(|route| std::cmp::Reverse(route.0.len()));
        Self { routes }
    }

    /// Whether any route is limited.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Spends a token of the route `path` falls under, if any: `Err` is the seconds to wait.
    pub fn check(&self, path: &str, ip: IpAddr) -> Result<(), u64> {
        match self.routes.iter().find(|(prefix, _)| path.starts_with(prefix.as_str())) {
            Some((_, limiter)) => limiter.check(ip),
            None => Ok(()),
        }
    }

    /// Forgets refilled buckets of every route.
    pub fn sweep(&self) {
        for (_, limiter) in &self.routes {
            limiter.sweep();
        }
    }
}

/// IPv4 (and IPv4-mapped IPv6) by address, other IPv6 by /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: f64, burst: f64) -> RateLimiter {
        RateLimiter::new(RateLimitConfig { rps, burst })
    }

    #[test]
    fn a_burst_is_allowed_then_refused_until_tokens_refill() {
        let l = limiter(2.0, 3.0);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at(ip, t0), Ok(()));
        }
        assert_eq!(l.check_at(ip, t0), Err(1));
        assert_eq!(l.check_at(ip, t0 + Duration::from_millis(500)), Ok(()));
    }

    #[test]
    fn clients_have_separate_buckets_but_a_slash_64_shares_one() {
        let l = limiter(1.0, 1.0);
        let t0 = Instant::now();
        assert!(l.check_at("192.0.2.1".parse().expect("ip"), t0).is_ok());
        assert!(l.check_at("192.0.2.2".parse().expect("ip"), t0).is_ok());
        assert!(l.check_at("2001:db8::1".parse().expect("ip"), t0).is_ok());
        assert!(l.check_at("2001:db8::2".parse().expect("ip"), t0).is_err());
    }

    #[test]
    fn retry_after_reflects_a_slow_rate() {
        let l = limiter(0.25, 1.0);
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        let t0 = Instant::now();
        assert!(l.check_at(ip, t0).is_ok());
        assert_eq!(l.check_at(ip, t0), Err(4));
    }

    #[test]
    fn a_route_limit_applies_to_its_prefix_only_and_the_longest_prefix_wins() {
        let routes = RouteLimits::new(&[
            RouteLimit { prefix: "/api/v1/auth/".into(), rps: 1.0, burst: 1.0 },
            RouteLimit { prefix: "/api/v1/auth/login".into(), rps: 1.0, burst: 2.0 },
        ]);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(routes.check("/api/v1/auth/register", ip).is_ok());
        assert!(routes.check("/api/v1/auth/register", ip).is_err());
        assert!(routes.check("/api/v1/auth/login", ip).is_ok(), "its own, larger bucket");
        assert!(routes.check("/api/v1/auth/login", ip).is_ok());
        assert!(routes.check("/api/v1/auth/login", ip).is_err());
        for _ in 0..10 {
            assert!(routes.check("/api/v1/showtimes", ip).is_ok(), "other paths are not limited");
        }
    }

    #[test]
    fn sweeping_forgets_only_refilled_buckets() {
        let l = limiter(10.0, 10.0);
        let t0 = Instant::now();
        assert!(l.check_at("192.0.2.1".parse().expect("ip"), t0).is_ok());
        assert!(l.check_at("192.0.2.2".parse().expect("ip"), t0 + Duration::from_millis(900)).is_ok());
        l.sweep_at(t0 + Duration::from_millis(1500));
        assert_eq!(l.tracked(), 1);
    }
}
