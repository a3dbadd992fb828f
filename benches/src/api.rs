//! What every scenario shares: the target flags, the load shape flags, and a small HTTP client
//! for set-up calls that checks every status and fails with the body in the message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

/// Where the API is and how to become its admin.
#[derive(Clone, Debug, clap::Args)]
pub struct TargetArgs {
    /// Base URL of the API (loopback only).
    #[arg(long, env = "SEATGATE_BENCH_API", default_value = "http://127.0.0.1:8090")]
    pub api: String,
    /// Admin account used for set-up (the one the API creates at start-up).
    #[arg(long, env = "SEATGATE_ADMIN_EMAIL", default_value = "admin@seatgate.local")]
    pub admin_email: String,
    #[arg(long, env = "SEATGATE_ADMIN_PASSWORD", default_value = "admin-password", hide_env_values = true)]
    pub admin_password: String,
}

/// How much load, for how long.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// Virtual users: concurrent tasks, each with its own account.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub users: u32,
    /// Length of one measured phase, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_secs: u64,
    /// Rounds; each round runs the API phase, then the raw phase.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Unmeasured warm-up of each side before the first round, in seconds (0: none).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
}

/// Timeout of one request during a measured phase: bounds the phase, and a hold that slow
/// is worth reporting as an error anyway.
pub const LOAD_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one set-up request (registration hashes a password: slow under load).
const SETUP_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Parses `raw` and refuses anything but a loopback host.
pub fn loopback_url(flag: &str, raw: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw).with_context(|| format!("{flag}: not a URL: {raw:?}"))?;
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let unix_socket = matches!(url.scheme(), "unix" | "redis+unix");
    let loopback =
        unix_socket || host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("{flag}: {raw:?} is not on this machine; seatgate-bench only targets 127.0.0.1");
    }
    Ok(url)
}

/// The HTTP client of a run: one connection pool shared by every virtual user.
pub fn client(users: u32) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .timeout(LOAD_REQUEST_TIMEOUT)
        .pool_max_idle_per_host(users as usize)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("build the HTTP client")
}

/// Set-up calls against the API.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    base: String,
}

/// A registered user with a real token.
#[derive(Clone, Debug)]
pub struct User {
    pub token: String,
}

impl Api {
    pub fn new(client: reqwest::Client, base: &Url) -> Self {
        Self { client, base: base.as_str().trim_end_matches('/').to_owned() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and returns the JSON body when the status is `expected`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        expected: StatusCode,
    ) -> anyhow::Result<Value> {
        let mut req = self.client.request(method.clone(), self.url(path)).timeout(SETUP_REQUEST_TIMEOUT);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.with_context(|| format!("{method} {path}: no answer from {}", self.base))?;
        let status = res.status();
        let text = res.text().await.with_context(|| format!("{method} {path}: reading the body"))?;
        if status != expected {
            bail!("{method} {path}: expected {expected}, got {status}: {}", truncate(&text, 500));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: body is not JSON"))
    }

    /// Checks `/health/ready` so a missing server fails with a clear message first.
    pub async fn ready(&self) -> anyhow::Result<()> {
        self.call(Method::GET, "/health/ready", None, None, StatusCode::OK)
            .await
            .context("the API is not ready (start it with scripts/bench.sh, or pass --api)")?;
        Ok(())
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let body = json!({"email": email, "password": password});
        let res = self
            .call(Method::POST, "/api/v1/auth/login", None, Some(&body), StatusCode::OK)
            .await
            .context("admin login (check --admin-email / --admin-password)")?;
        token(&res)
    }

    /// Registers a fresh account with a unique email.
    pub async fn register(&self, run_id: &str, n: u32) -> anyhow::Result<User> {
        let email = format!("bench-{run_id}-{n}-{}@example.com", Uuid::new_v4().simple());
        let body = json!({"email": email, "password": "bench-password", "name": format!("Bench User {n}")});
        let res = self.call(Method::POST, "/api/v1/auth/register", None, Some(&body), StatusCode::CREATED).await?;
        Ok(User { token: token(&res)? })
    }

    /// POSTs as admin and returns the created resource's `id`.
    pub async fn create(&self, admin: &str, path: &str, body: &Value) -> anyhow::Result<(Uuid, Value)> {
        let res = self.call(Method::POST, path, Some(admin), Some(body), StatusCode::CREATED).await?;
        let id = res["id"].as_str().with_context(|| format!("POST {path}: no id in the answer"))?;
        Ok((id.parse().with_context(|| format!("POST {path}: id is not a UUID"))?, res))
    }
}

fn token(body: &Value) -> anyhow::Result<String> {
    Ok(body["access_token"].as_str().context("no access_token in the answer")?.to_owned())
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Registers `n` accounts, `concurrency` at a time, with progress on stderr.
pub async fn register_users(api: &Api, run_id: &str, n: u32, concurrency: u32) -> anyhow::Result<Vec<User>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency as usize));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (api, run_id, limit) = (api.clone(), run_id.to_owned(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            api.register(&run_id, i).await.with_context(|| format!("register user {i}"))
        });
    }
    let started = Instant::now();
    let mut users = Vec::with_capacity(n as usize);
    while let Some(joined) = tasks.join_next().await {
        users.push(joined.context("a registration task panicked")??);
        if users.len() % 500 == 0 && users.len() < n as usize {
            eprintln!("  {} of {n} users registered ({:.0} s)", users.len(), started.elapsed().as_secs_f64());
        }
    }
    Ok(users)
}

/// The seat ids of a `GET /api/v1/screens/{id}` answer, in layout order; fails unless there
/// are `expected` of them.
pub fn screen_seat_ids(screen: &Value, expected: usize) -> anyhow::Result<Vec<Uuid>> {
    let seat_ids = screen["seats"]
        .as_array()
        .context("GET /api/v1/screens/{id}: no seats array")?
        .iter()
        .map(|s| s["id"].as_str().and_then(|id| id.parse().ok()).context("a seat without a UUID id"))
        .collect::<anyhow::Result<Vec<Uuid>>>()?;
    if seat_ids.len() != expected {
        bail!("the screen has {} seats, expected {expected}", seat_ids.len());
    }
    Ok(seat_ids)
}

/// What kind of transport error a request met, for the error counts.
pub fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    }
}

/// An error and its causes on one line (reqwest's `Display` names only the outermost).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `code` of a problem+json body, or `-`.
pub fn problem_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(loopback_url("--api", "http://127.0.0.1:8090").is_ok());
        assert!(loopback_url("--api", "http://localhost:8090").is_ok());
        assert!(loopback_url("--redis-url", "redis://127.0.0.1:6379").is_ok());
        assert!(loopback_url("--api", "http://10.0.0.1:8090").is_err());
        assert!(loopback_url("--api", "http://example.com").is_err());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
