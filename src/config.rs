//! Typed configuration from `SEATGATE_*` environment variables.
//!
//! Every setting has a default that works against the local services of docs/DESIGN.md §8; a
//! value that does not parse stops start-up with an error naming the variable. Tests build
//! `Config` values directly and never touch the process environment. README.md's settings table
//! lists every variable read here (tests/api/docs.rs checks that the two agree).

use std::env::VarError;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

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

/// Signed tickets (see docs/TICKETS.md).
#[derive(Clone, Debug)]
pub struct TicketConfig {
    /// `SEATGATE_TICKET_SIGNING_KEY`: the Ed25519 seed (32 bytes as 64 hex digits or base64)
    /// that signs tickets; random (with a warning) when unset.
    pub signing_seed: SecretKey,
    /// True when the seed was generated because none was configured.
    pub signing_key_generated: bool,
    /// `SEATGATE_TICKET_KEY_ID`: the key id written into tickets; derived from the public key
    /// when unset.
    pub key_id: Option<String>,
    /// `SEATGATE_TICKET_VERIFY_KEYS`: more public keys whose tickets are accepted (rotation),
    /// comma-separated `kid:key`, each key 32 bytes as hex or base64.
    pub verify_keys: Vec<(String, [u8; 32])>,
}

/// 32 bytes of key material whose `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The key itself; keep it out of logs.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// 32 bytes written as 64 hex digits or as base64 (standard or URL-safe, padded or not).
pub fn decode_key32(raw: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let raw = raw.trim();
    let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(raw).ok()?
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(raw).ok())?
    };
    bytes.try_into().ok()
}

/// A key id: 1 to 32 of `[A-Za-z0-9_-]` (it travels inside the ticket, between dots).
pub fn valid_key_id(kid: &str) -> bool {
    (1..=32).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn ticket_config(env: &dyn Env) -> anyhow::Result<TicketConfig> {
    let (signing_seed, signing_key_generated) = match opt(env, "SEATGATE_TICKET_SIGNING_KEY")? {
        Some(raw) => (
            SecretKey(decode_key32(&raw).context(
                "invalid value for SEATGATE_TICKET_SIGNING_KEY: expected a 32-byte Ed25519 seed as 64 hex digits or base64",
            )?),
            false,
        ),
        None => {
            use rand::Rng;
            (SecretKey(rand::rng().random()), true)
        }
    };
    let key_id = opt(env, "SEATGATE_TICKET_KEY_ID")?.map(|k| k.trim().to_owned());
    if let Some(kid) = &key_id
        && !valid_key_id(kid)
    {
        bail!("invalid value for SEATGATE_TICKET_KEY_ID: use 1-32 of [A-Za-z0-9_-]");
    }
    let mut verify_keys = Vec::new();
    for entry in opt(env, "SEATGATE_TICKET_VERIFY_KEYS")?.unwrap_or_default().split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let bad = || format!("invalid value for SEATGATE_TICKET_VERIFY_KEYS: {entry:?} is not `kid:public-key`");
        let (kid, key) = entry.split_once(':').with_context(bad)?;
        let key = decode_key32(key).with_context(bad)?;
        if !valid_key_id(kid) || ed25519_dalek::VerifyingKey::from_bytes(&key).is_err() {
            bail!(bad());
        }
        verify_keys.push((kid.to_owned(), key));
    }
    Ok(TicketConfig { signing_seed, signing_key_generated, key_id, verify_keys })
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

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where environment values come from: the process environment, or a map in tests.
pub trait Env {
    fn get(&self, key: &str) -> Result<String, VarError>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Result<String, VarError> {
        std::env::var(key)
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn get(&self, key: &str) -> Result<String, VarError> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned()).ok_or(VarError::NotPresent)
    }
}

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
            prefetch: positive(env, "SEATGATE_AMQP_PREFETCH", 16)?,
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

/// A boolean setting: 1/true/yes/on or 0/false/no/off; unset is false.
fn flag(env: &dyn Env, key: &str) -> anyhow::Result<bool> {
    match opt(env, key)?.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => bail!("invalid value for {key}: expected 1 or 0 (true or false), got {v:?}"),
    }
}

fn opt(env: &dyn Env, key: &str) -> anyhow::Result<Option<String>> {
    match env.get(key) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(VarError::NotPresent) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {key}")),
    }
}

/// The value of `key` parsed as `T`, or `default` when unset.
fn var_or<T>(env: &dyn Env, key: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match opt(env, key)? {
        Some(raw) => raw.trim().parse().with_context(|| format!("invalid value for {key}: {raw:?}")),
        None => Ok(default),
    }
}

/// Like [`var_or`] for numbers that must be above zero.
fn positive<T>(env: &dyn Env, key: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr + PartialOrd + Default,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let value = var_or(env, key, default)?;
    if value <= T::default() {
        bail!("invalid value for {key}: must be greater than 0");
    }
    Ok(value)
}

/// A socket address, or `None` for `off`.
fn listen_or_off(env: &dyn Env, key: &str, default: SocketAddr) -> anyhow::Result<Option<SocketAddr>> {
    match opt(env, key)? {
        Some(raw) if raw.trim().eq_ignore_ascii_case("off") => Ok(None),
        Some(raw) => {
            raw.trim().parse().map(Some).with_context(|| format!("invalid value for {key}: {raw:?} (host:port or off)"))
        }
        None => Ok(Some(default)),
    }
}

fn url_var(env: &dyn Env, key: &str, default: &str, schemes: &[&str]) -> anyhow::Result<Secret> {
    let url = opt(env, key)?.unwrap_or_else(|| default.to_owned());
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some(s) if schemes.contains(&s) => Ok(Secret::new(url)),
        _ => bail!("invalid value for {key}: expected a URL starting with {}://", schemes.join("://, ")),
    }
}

fn cluster_nodes(env: &dyn Env) -> anyhow::Result<Vec<Secret>> {
    let key = "SEATGATE_REDIS_CLUSTER_NODES";
    let Some(list) = opt(env, key)? else { return Ok(Vec::new()) };
    let nodes: Vec<&str> = list.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    for node in &nodes {
        let ok = ["redis://", "rediss://"].iter().any(|s| node.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
        if !ok {
            bail!("invalid value for {key}: expected comma-separated redis://host:port URLs");
        }
    }
    Ok(nodes.into_iter().map(Secret::new).collect())
}

fn key_prefix(env: &dyn Env) -> anyhow::Result<String> {
    let prefix = var_or(env, "SEATGATE_REDIS_KEY_PREFIX", "sg".to_owned())?;
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
        && !prefix.ends_with(':');
    if !ok {
        bail!("invalid value for SEATGATE_REDIS_KEY_PREFIX: use 1-64 of [A-Za-z0-9_-:], not ending in ':'");
    }
    Ok(prefix)
}

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_local_services() {
        let config = Config::from_source(&[]).expect("defaults are valid");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(config.holds.ttl, Duration::from_secs(300));
        assert_eq!(config.holds.max_seats_per_user, 10);
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.live.max_connections, 10_000);
        assert_eq!(config.live.heartbeat, Duration::from_secs(15));
        assert!(config.auth.jwt_secret_generated);
        assert!(config.auth.admin.is_none());
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let err = Config::from_source(&[("SEATGATE_HOLD_TTL_SECS", "soon")]).expect_err("not a number");
        assert!(format!("{err:#}").contains("SEATGATE_HOLD_TTL_SECS"), "{err:#}");

        let err = Config::from_source(&[("SEATGATE_LOG_FORMAT", "xml")]).expect_err("unknown format");
        assert!(format!("{err:#}").contains("SEATGATE_LOG_FORMAT"), "{err:#}");

        let err = Config::from_source(&[("SEATGATE_LISTEN", "localhost")]).expect_err("no port");
        assert!(format!("{err:#}").contains("SEATGATE_LISTEN"), "{err:#}");

        let err = Config::from_source(&[("SEATGATE_REDIS_URL", "http://x")]).expect_err("wrong scheme");
        assert!(format!("{err:#}").contains("SEATGATE_REDIS_URL"), "{err:#}");

        let err = Config::from_source(&[("SEATGATE_HOLD_TTL_SECS", "0")]).expect_err("zero");
        assert!(format!("{err:#}").contains("SEATGATE_HOLD_TTL_SECS"), "{err:#}");
    }

    #[test]
    fn the_workers_metrics_listener_defaults_to_loopback_and_can_be_turned_off() {
        let default = Config::from_source(&[]).expect("defaults are valid");
        assert_eq!(default.workers.metrics_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9100))));
        let off = Config::from_source(&[("SEATGATE_WORKERS_METRICS_LISTEN", "off")]).expect("off is valid");
        assert_eq!(off.workers.metrics_listen, None);
        let err = Config::from_source(&[("SEATGATE_WORKERS_METRICS_LISTEN", "9100")]).expect_err("no host");
        assert!(format!("{err:#}").contains("SEATGATE_WORKERS_METRICS_LISTEN"), "{err:#}");
    }

    #[test]
    fn cluster_nodes_select_cluster_mode_and_a_bad_node_names_the_variable() {
        let single = Config::from_source(&[]).expect("defaults are valid");
        assert!(single.redis.cluster_nodes.is_empty());
        let nodes = "redis://127.0.0.1:7000, redis://127.0.0.1:7001,,rediss://10.0.0.3:7002";
        let cluster = Config::from_source(&[("SEATGATE_REDIS_CLUSTER_NODES", nodes)]).expect("valid");
        let seeds: Vec<&str> = cluster.redis.cluster_nodes.iter().map(Secret::expose).collect();
        assert_eq!(seeds, ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001", "rediss://10.0.0.3:7002"]);
        for bad in ["127.0.0.1:7000", "redis://127.0.0.1:7000,http://x", "redis://"] {
            let err = Config::from_source(&[("SEATGATE_REDIS_CLUSTER_NODES", bad)]).expect_err("refused");
            assert!(format!("{err:#}").contains("SEATGATE_REDIS_CLUSTER_NODES"), "{bad}: {err:#}");
        }
    }

    #[test]
    fn a_short_jwt_secret_is_refused() {
        let err = Config::from_source(&[("SEATGATE_JWT_SECRET", "short")]).expect_err("too short");
        assert!(format!("{err:#}").contains("SEATGATE_JWT_SECRET"));
    }

    #[test]
    fn an_admin_needs_both_email_and_password() {
        let err = Config::from_source(&[("SEATGATE_ADMIN_EMAIL", "a@b.c")]).expect_err("no password");
        assert!(format!("{err:#}").contains("SEATGATE_ADMIN_PASSWORD"));
        let ok = Config::from_source(&[("SEATGATE_ADMIN_EMAIL", "a@b.c"), ("SEATGATE_ADMIN_PASSWORD", "pw")])
            .expect("both set");
        assert_eq!(ok.auth.admin.expect("admin").email, "a@b.c");
    }

    #[test]
    fn ticket_keys_are_read_as_hex_or_base64_and_a_bad_one_names_its_variable() {
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let verify = format!("old:{public}, older:11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        let config = Config::from_source(&[
            ("SEATGATE_TICKET_SIGNING_KEY", seed),
            ("SEATGATE_TICKET_KEY_ID", "2026-12"),
            ("SEATGATE_TICKET_VERIFY_KEYS", verify.as_str()),
        ])
        .expect("valid");
        assert!(!config.tickets.signing_key_generated);
        assert_eq!(hex::encode(config.tickets.signing_seed.expose()), seed);
        assert_eq!(config.tickets.key_id.as_deref(), Some("2026-12"));
        assert_eq!(config.tickets.verify_keys.len(), 2);
        assert_eq!(config.tickets.verify_keys[0].1, config.tickets.verify_keys[1].1);
        assert!(!format!("{config:?}").contains(seed));

        for (key, value) in [
            ("SEATGATE_TICKET_SIGNING_KEY", "too-short"),
            ("SEATGATE_TICKET_KEY_ID", "has.a.dot"),
            ("SEATGATE_TICKET_VERIFY_KEYS", "nokid"),
        ] {
            let err = Config::from_source(&[(key, value)]).expect_err("refused");
            assert!(format!("{err:#}").contains(key), "{err:#}");
        }
        assert!(Config::from_source(&[]).expect("defaults").tickets.signing_key_generated);
    }

    #[test]
    fn the_compose_files_placeholder_secrets_are_refused_outside_demo_mode() {
        let err = Config::from_source(&[("SEATGATE_JWT_SECRET", PLACEHOLDER_JWT_SECRET)]).expect_err("placeholder");
        assert!(format!("{err:#}").contains("SEATGATE_JWT_SECRET"), "{err:#}");
        let admin = [("SEATGATE_ADMIN_EMAIL", "a@b.cd"), ("SEATGATE_ADMIN_PASSWORD", "admin-password")];
        let err = Config::from_source(&admin).expect_err("placeholder password");
        assert!(format!("{err:#}").contains("SEATGATE_ADMIN_PASSWORD"), "{err:#}");
        let demo = [
            ("SEATGATE_JWT_SECRET", PLACEHOLDER_JWT_SECRET),
            ("SEATGATE_ADMIN_EMAIL", "a@b.cd"),
            ("SEATGATE_ADMIN_PASSWORD", "admin-password"),
            ("SEATGATE_DEMO", "1"),
        ];
        assert!(Config::from_source(&demo).expect("demo mode accepts them").demo);
        let err = Config::from_source(&[("SEATGATE_DEMO", "maybe")]).expect_err("not a flag");
        assert!(format!("{err:#}").contains("SEATGATE_DEMO"), "{err:#}");
    }

    #[test]
    fn promotion_of_an_existing_account_is_off_unless_asked_for() {
        assert!(!Config::from_source(&[]).expect("defaults").auth.admin_promote);
        assert!(Config::from_source(&[("SEATGATE_ADMIN_PROMOTE", "true")]).expect("flag").auth.admin_promote);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config =
            Config::from_source(&[("SEATGATE_JWT_SECRET", "0123456789abcdef0123456789abcdef-x")]).expect("valid");
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}
