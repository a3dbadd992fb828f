//! The shared state of every request handler, built once per process outside
//! `HttpServer::new` and registered once as `web::Data`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;

use crate::auth::jwt::JwtKeys;
use crate::config::Config;
use crate::infra::redis::Keys;
use crate::messaging::amqp::Amqp;

/// Cheap to clone: everything inside is a handle.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: crate::infra::redis::RedisPool,
    pub keys: Keys,
    pub amqp: Arc<Amqp>,
    pub jwt: Arc<JwtKeys>,
    pub config: Arc<Config>,
    /// Which accounts exist and their roles, cached briefly for the extractors.
    pub accounts: Arc<crate::auth::accounts::AccountCache>,
    /// Showtime layouts, immutable once created, cached in process for the hold path.
    pub layouts: Arc<crate::holds::layout::LayoutCache>,
    /// The showtime of every recent hold this process made, so releasing it is one command.
    pub hold_showtimes: Arc<crate::holds::owners::HoldShowtimes>,
    /// Seat status per showtime, reused for `SEATGATE_SEATMAP_CACHE_MS` by the seat map.
    pub seat_status: Arc<crate::holds::snapshot::SeatStatusCache>,
    /// The pub/sub subscription and fan-out shared by every event stream (seat maps,
    /// reservations, waiting rooms).
    pub live: crate::live::LiveHub,
    /// The key that signs tickets and the keys whose tickets the door accepts.
    pub tickets: Arc<crate::ledger::ticket::TicketKeys>,
    /// Per-client caps on open live streams (seat maps and waiting rooms).
    pub stream_limits: Arc<crate::live::limits::StreamLimits>,
    /// Bounded access to password hashing for register and login.
    pub hashing: Arc<crate::auth::password::HashLimiter>,
    draining: Arc<AtomicBool>,
}

impl AppState {
    /// Builds the state from connected pools (no I/O here).
    pub fn new(config: Config, db: PgPool, redis: crate::infra::redis::RedisPool) -> Self {
        let keys = Keys::new(config.redis.key_prefix.clone());
        let names = crate::messaging::topology::Names::new(
            &config.amqp.namespace,
            config.workers.payment_retry_base,
            config.amqp.queue_expires,
        );
        let amqp = Arc::new(Amqp::new(config.amqp.clone(), names));
        let jwt = Arc::new(JwtKeys::new(&config.auth));
        let live = crate::live::LiveHub::new(keys.clone(), redis.clone(), config.live.clone());
        Self {
            db,
            redis,
            keys,
            amqp,
            jwt,
            accounts: Arc::new(crate::auth::accounts::AccountCache::new(config.auth.account_cache)),
            layouts: Arc::default(),
            hold_showtimes: Arc::default(),
            seat_status: Arc::new(crate::holds::snapshot::SeatStatusCache::new(config.holds.seatmap_cache)),
            live,
            tickets: Arc::new(crate::ledger::ticket::TicketKeys::new(&config.tickets)),
            stream_limits: Arc::new(crate::live::limits::StreamLimits::new(&config.live)),
            hashing: Arc::new(crate::auth::password::HashLimiter::from_config(&config.auth)),
            config: Arc::new(config),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on `/health/ready` answers 503 so load balancers stop routing here.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("keys", &self.keys).finish_non_exhaustive()
    }
}
