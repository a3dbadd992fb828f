//! Typed configuration from `SEATGATE_*` environment variables.
//!
//! Every setting has a default that works against the local services of docs/DESIGN.md §8; a
//! value that does not parse stops start-up with an error naming the variable. Tests build
//! `Config` values directly and never touch the process environment. README.md's settings table
//! lists every variable read here (tests/api/docs.rs checks that the two agree).

use std::env::VarError;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

mod env;
mod tickets;

pub use env::{Env, ProcessEnv, Secret};
use env::{cluster_nodes, flag, key_prefix, listen_or_off, opt, positive, random_secret, url_var, var_or};
use tickets::ticket_config;
pub use tickets::{SecretKey, TicketConfig, decode_key32, valid_key_id};

/// All settings of the API server and the workers.
#[derive(Clone, Debug)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub amqp: AmqpConfig,
    pub auth: AuthConfig,
    pub holds: HoldConfig,
    pub workers: WorkerConfig,
    pub live: LiveConfig,
    pub tickets: TicketConfig,
    pub onsale: OnsaleConfig,
    pub log_format: LogFormat,
    /// `SEATGATE_DEMO` (false): accept the placeholder secrets of docker-compose.yml and
    /// scripts/up.sh (with a warning). Off, start-up refuses them.
    pub demo: bool,
}

/// The HTTP listener.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// `SEATGATE_LISTEN`; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// `SEATGATE_HTTP_WORKERS`: actix worker threads (default: one per core).
    pub workers: usize,
    /// `SEATGATE_BODY_LIMIT_BYTES`: larger JSON bodies get 413.
    pub body_limit_bytes: usize,
    /// `SEATGATE_SHUTDOWN_GRACE_MS`: how long `/health/ready` reports 503 before the listener
    /// closes, so a load balancer stops sending traffic first.
    pub shutdown_grace: Duration,
    /// `SEATGATE_SHUTDOWN_TIMEOUT_SECS`: in-flight requests get this long to finish.
    pub shutdown_timeout: Duration,
    /// `SEATGATE_TRUSTED_PROXIES` (127.0.0.0/8,::1): peers whose `X-Forwarded-For` is believed
    /// when deciding a client's IP (per-IP login throttle and stream caps).
    pub trusted_proxies: Vec<crate::client_ip::IpNet>,
}

/// PostgreSQL, the source of truth.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// `SEATGATE_DATABASE_URL`; the database is created if it does not exist.
    pub url: Secret,
    /// `SEATGATE_DATABASE_MAX_CONNECTIONS`
    pub max_connections: u32,
    /// `SEATGATE_DATABASE_ACQUIRE_TIMEOUT_MS`: short, so readiness fails fast.
    pub acquire_timeout: Duration,
}

/// Redis: seat holds, the sold-seat cache and the catalog cache.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `SEATGATE_REDIS_URL`; a `/N` database index is honoured.
    pub url: Secret,
    /// `SEATGATE_REDIS_CLUSTER_NODES`: comma-separated `redis://host:port` seed nodes of a
    /// Redis Cluster; set, it selects cluster mode (and `SEATGATE_REDIS_URL` is not used).
    pub cluster_nodes: Vec<Secret>,
    /// `SEATGATE_REDIS_TIMEOUT_MS`: wait for a connection or a reply at most this long.
    pub timeout: Duration,
    /// `SEATGATE_REDIS_KEY_PREFIX` (default `sg`): first part of every key, so several
    /// deployments (or tests) can share one Redis.
    pub key_prefix: String,
    /// `SEATGATE_REDIS_MAX_IN_FLIGHT` (256): Redis requests this process has outstanding at
    /// most. Past it, requests queue in the process, not in Redis' socket.
    pub max_in_flight: u32,
    /// `SEATGATE_REDIS_QUEUE_TIMEOUT_MS` (1000): how long a request waits for one of those slots
    /// before it is answered 503 with `Retry-After`, without having sent Redis anything.
    pub queue_timeout: Duration,
}

/// RabbitMQ.
#[derive(Clone, Debug)]
pub struct AmqpConfig {
    /// `SEATGATE_AMQP_URL`; the vhost in the URL is honoured.
    pub url: Secret,
    /// `SEATGATE_AMQP_NAMESPACE`: appended to exchange and queue names (empty in production,
    /// unique per test).
    pub namespace: String,
    /// `SEATGATE_AMQP_PREFETCH`: unacknowledged deliveries per consumer.
    pub prefetch: u16,
    /// `SEATGATE_AMQP_QUEUE_EXPIRES_MS`: when set, queues unused this long are deleted by the
    /// broker and queues are classic rather than quorum (tests and throw-away namespaces).
    pub queue_expires: Option<Duration>,
}

/// Accounts and tokens.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `SEATGATE_JWT_SECRET`; random (with a warning) when unset.
    pub jwt_secret: Secret,
    /// True when the secret was generated because none was configured.
    pub jwt_secret_generated: bool,
    /// `SEATGATE_TOKEN_TTL_SECS`: lifetime of an access token.
    pub token_ttl: Duration,
    /// `SEATGATE_ADMIN_EMAIL` and `SEATGATE_ADMIN_PASSWORD`: the first admin, made at start-up.
    pub admin: Option<AdminSeed>,
    /// `SEATGATE_ACCOUNT_CACHE_MS`: how long an instance trusts its knowledge that an account
    /// exists and has a role (0: ask PostgreSQL on every request).
    pub account_cache: Duration,
    /// `SEATGATE_LOGIN_ATTEMPTS_PER_MINUTE`: login attempts per email and minute before 429.
    pub login_attempts_per_minute: u32,
    /// `SEATGATE_AUTH_ATTEMPTS_PER_IP_PER_MINUTE` (60): logins and registrations per client IP
    /// and minute before 429, whatever the email (malformed and unknown ones included).
    pub attempts_per_ip_per_minute: u32,
    /// `SEATGATE_PASSWORD_HASH_QUEUE` (32): requests that may wait for a hashing slot at once;
    /// more get 503 at once.
    pub hash_queue: usize,
    /// `SEATGATE_PASSWORD_HASH_WAIT_MS` (2000): how long a request waits for a hashing slot
    /// before 503 with `Retry-After`.
    pub hash_wait: Duration,
    /// `SEATGATE_ADMIN_PROMOTE` (false): let start-up promote an existing account whose email
    /// is `SEATGATE_ADMIN_EMAIL` to admin. Off, such an account is left alone (and logged).
    pub admin_promote: bool,
}

/// The admin account created (or promoted) at start-up.
#[derive(Clone, Debug)]
pub struct AdminSeed {
    pub email: String,
    pub password: Secret,
}

/// Seat holds.
#[derive(Clone, Debug)]
pub struct HoldConfig {
    /// `SEATGATE_HOLD_TTL_SECS`
    pub ttl: Duration,
    /// `SEATGATE_HOLD_MAX_LIFETIME_SECS`: hard cap on a hold's life, extensions included.
    pub max_lifetime: Duration,
    /// `SEATGATE_MAX_SEATS_PER_USER`: seats one user may hold per showtime.
    pub max_seats_per_user: u32,
    /// `SEATGATE_CHECKOUT_EXTENSION_SECS`: checkout extends the hold to cover payment by this
    /// much (never past the hold's maximum lifetime).
    pub checkout_extension: Duration,
    /// `SEATGATE_SEATMAP_CACHE_MS`: how long an instance reuses a showtime's seat status for
    /// the seat map (0 = read Redis on every request).
    pub seatmap_cache: Duration,
}

/// The live seat map (server-sent events).
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// `SEATGATE_SSE_MAX_CONNECTIONS`: concurrent event streams per instance; more get 503.
    pub max_connections: usize,
    /// `SEATGATE_SSE_HEARTBEAT_MS`: an SSE comment is sent this often so proxies and clients
    /// see the stream is alive.
    pub heartbeat: Duration,
    /// `SEATGATE_SSE_BUFFER`: seat changes queued per showtime for a slow client; one that
    /// falls further behind gets a fresh snapshot instead.
    pub buffer: usize,
    /// `SEATGATE_SSE_COALESCE_MS` (50): a showtime's changes are gathered for this long and
    /// reach each stream as one write, so a burst of changes wakes every stream once, not once
    /// per change, and the fan-out does not queue ahead of API requests once per change. 0
    /// sends each change at once.
    pub coalesce: Duration,
    /// `SEATGATE_SSE_MAX_PER_IP` (32): streams one client IP may hold open on an instance.
    pub max_per_ip: usize,
    /// `SEATGATE_SSE_MAX_PER_USER` (4): streams one signed-in user may hold open on an instance.
    pub max_per_user: usize,
}

/// The waiting room's admitter (`src/onsale/admitter.rs`).
#[derive(Clone, Debug)]
pub struct OnsaleConfig {
    /// `SEATGATE_QUEUE_ADMIT_INTERVAL_MS` (250): time between admission steps.
    pub admit_interval: Duration,
    /// `SEATGATE_QUEUE_LEASE_MS` (3000): the admitter lease of a showtime; another process
    /// takes over this long after the leader stopped renewing it. More than the interval.
    pub lease_ttl: Duration,
    /// `SEATGATE_QUEUE_BURST_MS` (2000): admissions are credited for at most this long between
    /// two steps, so an admitter that was away does not let a crowd in at once.
    pub burst: Duration,
    /// `SEATGATE_QUEUE_MAX_BATCH` (1000): admissions per step and showtime at most.
    pub max_batch: u32,
}

/// Background work.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// `SEATGATE_SWEEP_INTERVAL_SECS`
    pub sweep_interval: Duration,
    /// `SEATGATE_PAYMENT_LATENCY_MS`: latency of the simulated payment gateway.
    pub payment_latency: Duration,
    /// `SEATGATE_PAYMENT_FAILURE_RATE`: share (0 to 1) of simulated gateway calls that fail
    /// transiently whatever the token (fault injection; 0 in production).
    pub payment_failure_rate: f64,
    /// `SEATGATE_PAYMENT_MAX_ATTEMPTS`: deliveries of a payment task before it is dead-lettered.
    pub payment_max_attempts: u32,
    /// `SEATGATE_PAYMENT_RETRY_BASE_MS`: first retry delay; later ones are 5x and 25x.
    pub payment_retry_base: Duration,
    /// `SEATGATE_STUCK_PAYMENT_SECS`: a payment left `charging` (once its reservation stopped
    /// waiting) or `refunding` this long after its last change is settled by the reconciler.
    pub stuck_payment_after: Duration,
    /// `SEATGATE_WORKERS_METRICS_LISTEN` (127.0.0.1:9100; `off` disables it): where
    /// `seatgate-workers` serves `GET /metrics`, so what the workers record is scraped where it
    /// is recorded. `seatgate all-in-one` ignores it: its API's `/metrics` has everything.
    pub metrics_listen: Option<SocketAddr>,
}

/// `SEATGATE_LOG_FORMAT`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(ParseEnumError(format!("expected pretty or json, got {other:?}"))),
        }
    }
}

/// A value outside an enumerated set.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParseEnumError(String);

/// Defaults of docs/DESIGN.md §8.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/seatgate";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Reads any [`Env`]; every error names the variable at fault.
    pub fn from_source(env: &dyn Env) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let http = HttpConfig {
            listen: var_or(env, "SEATGATE_LISTEN", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            workers: positive(env, "SEATGATE_HTTP_WORKERS", cores)?,
            body_limit_bytes: positive(env, "SEATGATE_BODY_LIMIT_BYTES", 64 * 1024)?,
            shutdown_grace: Duration::from_millis(var_or(env, "SEATGATE_SHUTDOWN_GRACE_MS", 0)?),
            shutdown_timeout: Duration::from_secs(var_or(env, "SEATGATE_SHUTDOWN_TIMEOUT_SECS", 10)?),
            trusted_proxies: crate::client_ip::parse_nets(&var_or(
                env,
                "SEATGATE_TRUSTED_PROXIES",
                "127.0.0.0/8,::1".to_owned(),
            )?)
            .context("invalid value for SEATGATE_TRUSTED_PROXIES")?,
        };
        let database = DatabaseConfig {
            url: url_var(env, "SEATGATE_DATABASE_URL", DEFAULT_DATABASE_URL, &["postgres", "postgresql"])?,
            max_connections: positive(env, "SEATGATE_DATABASE_MAX_CONNECTIONS", 20)?,
            acquire_timeout: Duration::from_millis(positive(env, "SEATGATE_DATABASE_ACQUIRE_TIMEOUT_MS", 2000)?),
        };
        let redis = RedisConfig {
            url: url_var(env, "SEATGATE_REDIS_URL", DEFAULT_REDIS_URL, &["redis", "rediss", "redis+unix", "unix"])?,
            cluster_nodes: cluster_nodes(env)?,
            timeout: Duration::from_millis(positive(env, "SEATGATE_REDIS_TIMEOUT_MS", 2000)?),
            key_prefix: key_prefix(env)?,
            max_in_flight: positive(env, "SEATGATE_REDIS_MAX_IN_FLIGHT", 256)?,
            queue_timeout: Duration::from_millis(positive(env, "SEATGATE_REDIS_QUEUE_TIMEOUT_MS", 1000)?),
        };
        let amqp = AmqpConfig {
            url: url_var(env, "SEATGATE_AMQP_URL", DEFAULT_AMQP_URL, &["amqp", "amqps"])?,
            namespace: var_or(env, "SEATGATE_AMQP_NAMESPACE", String::new())?,
            prefetch: positive(env, "SEATGATE_AMQP_PREFETCH", 128)?,
            queue_expires: opt(env, "SEATGATE_AMQP_QUEUE_EXPIRES_MS")?
                .map(|v| v.trim().parse::<u64>().map(Duration::from_millis))
                .transpose()
                .context("invalid value for SEATGATE_AMQP_QUEUE_EXPIRES_MS")?,
        };
        let (jwt_secret, jwt_secret_generated) = match env.get("SEATGATE_JWT_SECRET") {
            Ok(s) if s.len() >= 32 => (Secret::new(s), false),
            Ok(_) => bail!("invalid value for SEATGATE_JWT_SECRET: must be at least 32 characters"),
            Err(VarError::NotPresent) => (Secret::new(random_secret()), true),
            Err(e) => return Err(e).context("cannot read SEATGATE_JWT_SECRET"),
        };
        let admin = match (opt(env, "SEATGATE_ADMIN_EMAIL")?, opt(env, "SEATGATE_ADMIN_PASSWORD")?) {
            (Some(email), Some(password)) => Some(AdminSeed { email, password: Secret::new(password) }),
            (None, None) => None,
            (Some(_), None) => bail!("SEATGATE_ADMIN_PASSWORD must be set when SEATGATE_ADMIN_EMAIL is"),
            (None, Some(_)) => bail!("SEATGATE_ADMIN_EMAIL must be set when SEATGATE_ADMIN_PASSWORD is"),
        };
        let auth = AuthConfig {
            jwt_secret,
            jwt_secret_generated,
            token_ttl: Duration::from_secs(positive(env, "SEATGATE_TOKEN_TTL_SECS", 3600)?),
            admin,
            account_cache: Duration::from_millis(var_or(env, "SEATGATE_ACCOUNT_CACHE_MS", 5000)?),
            login_attempts_per_minute: positive(env, "SEATGATE_LOGIN_ATTEMPTS_PER_MINUTE", 10)?,
            attempts_per_ip_per_minute: positive(env, "SEATGATE_AUTH_ATTEMPTS_PER_IP_PER_MINUTE", 60)?,
            hash_queue: var_or(env, "SEATGATE_PASSWORD_HASH_QUEUE", 32)?,
            hash_wait: Duration::from_millis(positive(env, "SEATGATE_PASSWORD_HASH_WAIT_MS", 2000)?),
            admin_promote: flag(env, "SEATGATE_ADMIN_PROMOTE")?,
        };
        let demo = flag(env, "SEATGATE_DEMO")?;
        refuse_placeholders(&auth, demo)?;
        let holds = HoldConfig {
            ttl: Duration::from_secs(positive(env, "SEATGATE_HOLD_TTL_SECS", 300)?),
            max_lifetime: Duration::from_secs(positive(env, "SEATGATE_HOLD_MAX_LIFETIME_SECS", 900)?),
            max_seats_per_user: positive(env, "SEATGATE_MAX_SEATS_PER_USER", 10)?,
            checkout_extension: Duration::from_secs(positive(env, "SEATGATE_CHECKOUT_EXTENSION_SECS", 180)?),
            seatmap_cache: Duration::from_millis(var_or(env, "SEATGATE_SEATMAP_CACHE_MS", 250)?),
        };
        if holds.max_lifetime < holds.ttl {
            bail!("invalid value for SEATGATE_HOLD_MAX_LIFETIME_SECS: must be at least SEATGATE_HOLD_TTL_SECS");
        }
        let workers = WorkerConfig {
            sweep_interval: Duration::from_secs(positive(env, "SEATGATE_SWEEP_INTERVAL_SECS", 5)?),
            payment_latency: Duration::from_millis(var_or(env, "SEATGATE_PAYMENT_LATENCY_MS", 50)?),
            payment_failure_rate: {
                let rate: f64 = var_or(env, "SEATGATE_PAYMENT_FAILURE_RATE", 0.0)?;
                if !(0.0..=1.0).contains(&rate) {
                    bail!("invalid value for SEATGATE_PAYMENT_FAILURE_RATE: must be between 0 and 1");
                }
                rate
            },
            payment_max_attempts: positive(env, "SEATGATE_PAYMENT_MAX_ATTEMPTS", 5)?,
            payment_retry_base: Duration::from_millis(positive(env, "SEATGATE_PAYMENT_RETRY_BASE_MS", 1000)?),
            stuck_payment_after: Duration::from_secs(positive(env, "SEATGATE_STUCK_PAYMENT_SECS", 30)?),
            metrics_listen: listen_or_off(
                env,
                "SEATGATE_WORKERS_METRICS_LISTEN",
                SocketAddr::from(([127, 0, 0, 1], 9100)),
            )?,
        };
        let live = LiveConfig {
            max_connections: positive(env, "SEATGATE_SSE_MAX_CONNECTIONS", 10_000)?,
            heartbeat: Duration::from_millis(positive(env, "SEATGATE_SSE_HEARTBEAT_MS", 15_000)?),
            buffer: positive(env, "SEATGATE_SSE_BUFFER", 256)?,
            coalesce: Duration::from_millis(var_or(env, "SEATGATE_SSE_COALESCE_MS", 50)?),
            max_per_ip: positive(env, "SEATGATE_SSE_MAX_PER_IP", 32)?,
            max_per_user: positive(env, "SEATGATE_SSE_MAX_PER_USER", 4)?,
        };
        let tickets = ticket_config(env)?;
        let onsale = OnsaleConfig {
            admit_interval: Duration::from_millis(positive(env, "SEATGATE_QUEUE_ADMIT_INTERVAL_MS", 250)?),
            lease_ttl: Duration::from_millis(positive(env, "SEATGATE_QUEUE_LEASE_MS", 3000)?),
            burst: Duration::from_millis(positive(env, "SEATGATE_QUEUE_BURST_MS", 2000)?),
            max_batch: positive(env, "SEATGATE_QUEUE_MAX_BATCH", 1000)?,
        };
        if onsale.lease_ttl <= onsale.admit_interval {
            bail!("invalid value for SEATGATE_QUEUE_LEASE_MS: must be more than SEATGATE_QUEUE_ADMIT_INTERVAL_MS");
        }
        let log_format = var_or(env, "SEATGATE_LOG_FORMAT", LogFormat::Pretty)?;
        Ok(Self { http, database, redis, amqp, auth, holds, workers, live, tickets, onsale, log_format, demo })
    }
}

/// The JWT secret docker-compose.yml falls back to: known to everyone who read the file.
pub const PLACEHOLDER_JWT_SECRET: &str = "change-me-change-me-change-me-change-me";
/// The admin passwords docker-compose.yml and the scripts fall back to.
pub const PLACEHOLDER_ADMIN_PASSWORDS: &[&str] = &["admin-password"];

/// Start-up refuses secrets anyone can read in this repository, unless `SEATGATE_DEMO` says
/// this is a demo: a deployment that kept them would sign tokens with a public key and give
/// admin rights to a public password.
fn refuse_placeholders(auth: &AuthConfig, demo: bool) -> anyhow::Result<()> {
    if demo {
        return Ok(());
    }
    if auth.jwt_secret.expose() == PLACEHOLDER_JWT_SECRET {
        bail!(
            "invalid value for SEATGATE_JWT_SECRET: it is the placeholder of docker-compose.yml; set a secret of \
             your own (or SEATGATE_DEMO=1 for a throw-away demo)"
        );
    }
    if let Some(admin) = &auth.admin
        && PLACEHOLDER_ADMIN_PASSWORDS.contains(&admin.password.expose())
    {
        bail!(
            "invalid value for SEATGATE_ADMIN_PASSWORD: it is a placeholder from this repository; set a password \
             of your own (or SEATGATE_DEMO=1 for a throw-away demo)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
