//! Typed settings for seatgate-lb, read once at start-up.
//!
//! Every setting is a `SEATGATE_LB_*` environment variable with a default that works on a laptop
//! (docs/DESIGN.md §7). `SEATGATE_LB_CONFIG` may name a TOML file whose keys are the same names without
//! the prefix, in lower case (`upstreams = ["http://127.0.0.1:8080"]`, `strategy = "least_conn"`);
//! an environment variable always overrides the file. Both go through one parser, so a bad value
//! stops start-up with a message naming the variable (or the file key) that holds it.
//!
//! Tests build a [`Config`] from a map with [`Config::from_lookup`] and never call `set_var`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::select::Strategy;

/// Prefix shared by every setting.
const PREFIX: &str = "SEATGATE_LB_";

/// Every setting the lb understands, without the prefix. A config-file key outside this list is
/// an error, so a typo cannot silently fall back to a default.
const KEYS: &[&str] = &[
    "LISTEN",
    "UPSTREAMS",
    "ADMIN_LISTEN",
    "STRATEGY",
    "HEALTH_PATH",
    "HEALTH_INTERVAL_MS",
    "HEALTH_TIMEOUT_MS",
    "FAIL_THRESHOLD",
    "EJECT_COOLDOWN_MS",
    "PANIC_ROUTING",
    "RATE_LIMIT_RPS",
    "RATE_LIMIT_BURST",
    "ROUTE_LIMITS",
    "CONNECT_TIMEOUT_MS",
    "REQUEST_TIMEOUT_MS",
    "CLIENT_HEADER_TIMEOUT_MS",
    "SHUTDOWN_TIMEOUT_MS",
    "MAX_BODY_BYTES",
    "MAX_CONNECTIONS",
    "MAX_IDLE_PER_UPSTREAM",
    "MAX_ATTEMPTS",
    "TRUSTED_PROXIES",
    "WORKER_THREADS",
];

/// The whole configuration of one lb process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect (`SEATGATE_LB_LISTEN`, 127.0.0.1:8000).
    pub listen: SocketAddr,
    /// Where `/metrics` and `/health` are served (`SEATGATE_LB_ADMIN_LISTEN`, 127.0.0.1:9090);
    /// `off` disables the admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// The upstreams, in configuration order (`SEATGATE_LB_UPSTREAMS`, required).
    pub upstreams: Vec<UpstreamUrl>,
    /// How an upstream is chosen (`SEATGATE_LB_STRATEGY`, round_robin).
    pub strategy: Strategy,
    /// Active and passive health checking.
    pub health: HealthConfig,
    /// Per-client-IP token bucket.
    pub rate_limit: RateLimitConfig,
    /// Per-route, per-client-IP token buckets (`SEATGATE_LB_ROUTE_LIMITS`, none): a comma-
    /// separated list of `<path prefix>=<rps>[:<burst>]`, checked besides `rate_limit`.
    pub route_limits: Vec<RouteLimit>,
    /// Time to open a TCP connection to an upstream (`SEATGATE_LB_CONNECT_TIMEOUT_MS`, 1000).
    pub connect_timeout: Duration,
    /// Time from sending a request to receiving the upstream's response headers
    /// (`SEATGATE_LB_REQUEST_TIMEOUT_MS`, 30000). It does not bound the response body, so a
    /// long server-sent-events stream is not cut.
    pub request_timeout: Duration,
    /// Time a client has to send a complete request head (`SEATGATE_LB_CLIENT_HEADER_TIMEOUT_MS`,
    /// 30000): the slow-loris guard.
    pub client_header_timeout: Duration,
    /// How long a graceful shutdown waits for in-flight requests (`SEATGATE_LB_SHUTDOWN_TIMEOUT_MS`,
    /// 10000) before it cuts the remaining connections.
    pub shutdown_timeout: Duration,
    /// Largest accepted request body (`SEATGATE_LB_MAX_BODY_BYTES`, 1 MiB); larger gets 413.
    pub max_body_bytes: u64,
    /// Cap on concurrent client connections (`SEATGATE_LB_MAX_CONNECTIONS`, 10000); at the cap
    /// the lb stops accepting until one closes.
    pub max_connections: usize,
    /// Idle keep-alive connections kept per upstream (`SEATGATE_LB_MAX_IDLE_PER_UPSTREAM`, 256).
    pub max_idle_per_upstream: usize,
    /// Upstreams tried for one request, first try included (`SEATGATE_LB_MAX_ATTEMPTS`, 3).
    pub max_attempts: usize,
    /// Peers whose `X-Forwarded-*` headers are believed (`SEATGATE_LB_TRUSTED_PROXIES`, none):
    /// comma-separated IPs or CIDR blocks.
    pub trusted_proxies: Vec<IpNet>,
    /// Proxy worker threads (`SEATGATE_LB_WORKER_THREADS`; the binary uses one per core when
    /// unset). Each runs a single-threaded runtime with its own `SO_REUSEPORT` listener. `None`
    /// in the library means: serve on the caller's runtime.
    pub worker_threads: Option<usize>,
}

/// Active checks probe every upstream; passive ejection reacts to failed connections at once.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Path probed with GET (`SEATGATE_LB_HEALTH_PATH`, /health/ready); a 2xx answer is healthy.
    pub path: String,
    /// Time between probes (`SEATGATE_LB_HEALTH_INTERVAL_MS`, 1000); 0 turns active checks off.
    pub interval: Duration,
    /// Time a probe may take (`SEATGATE_LB_HEALTH_TIMEOUT_MS`, 1000).
    pub timeout: Duration,
    /// Consecutive connection failures that eject an upstream (`SEATGATE_LB_FAIL_THRESHOLD`, 3).
    pub fail_threshold: u32,
    /// How long a passively ejected upstream stays out (`SEATGATE_LB_EJECT_COOLDOWN_MS`, 5000).
    pub eject_cooldown: Duration,
    /// Panic routing (`SEATGATE_LB_PANIC_ROUTING`, true): when the active checks have taken every
    /// upstream out, send requests to those whose last probe still got an HTTP answer (and that
    /// are neither draining nor passively ejected), so they answer for themselves. Off: the lb
    /// answers 503 as soon as no upstream is healthy.
    pub panic_routing: bool,
}

/// Token bucket per client IP.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Sustained requests per second per client IP (`SEATGATE_LB_RATE_LIMIT_RPS`, 0 = off).
    pub rps: f64,
    /// Bucket size (`SEATGATE_LB_RATE_LIMIT_BURST`, defaults to the rate, at least 1).
    pub burst: f64,
}

/// A path prefix with its own token bucket per client IP.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteLimit {
    /// Matched against the start of the request path.
    pub prefix: String,
    /// Sustained requests per second per client IP on this route.
    pub rps: f64,
    /// Bucket size (defaults to the rate, at least 1).
    pub burst: f64,
}

impl FromStr for RouteLimit {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> anyhow::Result<Self> {
        let (prefix, rate) =
            raw.trim().split_once('=').with_context(|| format!("`{raw}`: expected <prefix>=<rps>[:<burst>]"))?;
        let prefix = prefix.trim();
        if !prefix.starts_with('/') {
            bail!("`{raw}`: the prefix must start with /");
        }
        let (rps, burst) = match rate.split_once(':') {
            Some((rps, burst)) => (parse_non_negative(rps.trim())?, Some(parse_non_negative(burst.trim())?)),
            None => (parse_non_negative(rate.trim())?, None),
        };
        if rps <= 0.0 {
            bail!("`{raw}`: the rate must be above 0");
        }
        let burst = burst.unwrap_or(rps).max(1.0);
        Ok(Self { prefix: prefix.to_owned(), rps, burst })
    }
}

impl RateLimitConfig {
    /// Whether the limiter is on at all.
    pub fn enabled(&self) -> bool {
        self.rps > 0.0
    }
}

/// An upstream base URL, parsed once: `http://host:port[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// Host name or IP literal, as given (an IPv6 literal without brackets).
    pub host: String,
    /// TCP port (80 when the URL has none).
    pub port: u16,
    /// `host:port` as written in `Host` headers and metric labels.
    pub authority: String,
    /// Path prefix prepended to every proxied path, without a trailing slash ("" for none).
    pub path_prefix: String,
}

impl FromStr for UpstreamUrl {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = raw.trim().parse().with_context(|| format!("`{raw}` is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("`{raw}`: scheme {other} is not supported (plain http upstreams only)"),
            None => bail!("`{raw}` has no scheme (expected http://host:port)"),
        }
        let authority = uri.authority().with_context(|| format!("`{raw}` has no host"))?;
        if authority.as_str().contains('@') {
            bail!("`{raw}`: credentials in upstream URLs are not supported");
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(80);
        if uri.query().is_some() {
            bail!("`{raw}`: an upstream URL cannot carry a query");
        }
        let path_prefix = uri.path().trim_end_matches('/').to_owned();
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Self { host, port, authority, path_prefix })
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path_prefix)
    }
}

/// An IP network (`10.0.0.0/8`, `::1/128`, or a bare address meaning one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies inside this network. An IPv4-mapped IPv6 peer matches IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> anyhow::Result<Self> {
        let raw = raw.trim();
        let (addr, prefix) = match raw.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (raw, None),
        };
        let addr: IpAddr = addr.parse().with_context(|| format!("`{raw}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .with_context(|| format!("`{raw}` has a bad prefix length"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// Where a raw setting came from, so an error can point at it.
enum Origin {
    Env,
    File(String),
}

/// Raw string settings from the environment and the optional file, env first.
struct Source<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: HashMap<String, String>,
    file_path: String,
}

impl Source<'_> {
    fn raw(&self, key: &str) -> Option<(String, Origin)> {
        let var = format!("{PREFIX}{key}");
        if let Some(v) = (self.env)(&var) {
            return Some((v, Origin::Env));
        }
        self.file.get(key).map(|v| (v.clone(), Origin::File(self.file_path.clone())))
    }

    /// Parses `key` with `parse`, or returns `default` when it is set nowhere. The error names the
    /// variable and, for file values, the file and key.
    fn get<T>(&self, key: &str, default: T, parse: impl FnOnce(&str) -> anyhow::Result<T>) -> anyhow::Result<T> {
        match self.raw(key) {
            None => Ok(default),
            Some((raw, origin)) => parse(raw.trim()).with_context(|| match origin {
                Origin::Env => format!("invalid value for {PREFIX}{key}: `{raw}`"),
                Origin::File(path) => {
                    format!("invalid value for {PREFIX}{key} (key `{}` in {path}): `{raw}`", key.to_ascii_lowercase())
                }
            }),
        }
    }

    fn parsed<T>(&self, key: &str, default: T) -> anyhow::Result<T>
    where
        T: FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.get(key, default, |raw| raw.parse::<T>().map_err(anyhow::Error::from))
    }

    fn millis(&self, key: &str, default_ms: u64) -> anyhow::Result<Duration> {
        self.parsed::<u64>(key, default_ms).map(Duration::from_millis)
    }
}

impl Config {
    /// Reads the process environment, overlaid on the file named by `SEATGATE_LB_CONFIG` if set.
    pub fn from_env() -> anyhow::Result<Self> {
        // A variable that is set but not valid UTF-8 must not be mistaken for "unset".
        for (key, value) in std::env::vars_os() {
            if let Some(key) = key.to_str()
                && key.starts_with(PREFIX)
                && value.to_str().is_none()
            {
                bail!("invalid value for {key}: not valid UTF-8");
            }
        }
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Builds the configuration from any variable lookup (the environment, or a map in tests).
    /// `SEATGATE_LB_CONFIG`, if the lookup has it, names a TOML file read underneath.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let (file, file_path) = match env("SEATGATE_LB_CONFIG") {
            Some(path) if !path.trim().is_empty() => {
                (read_file(Path::new(path.trim())).context("invalid value for SEATGATE_LB_CONFIG")?, path)
            }
            _ => (HashMap::new(), String::new()),
        };
        let src = Source { env: &env, file, file_path };

        let upstreams = src.get("UPSTREAMS", Vec::new(), parse_upstreams)?;
        if upstreams.is_empty() {
            bail!("{PREFIX}UPSTREAMS is required: a comma-separated list of http://host:port base URLs");
        }
        let admin_listen = src.get("ADMIN_LISTEN", Some(SocketAddr::from(([127, 0, 0, 1], 9090))), |raw| {
            if raw.eq_ignore_ascii_case("off") || raw.is_empty() {
                Ok(None)
            } else {
                Ok(Some(raw.parse::<SocketAddr>()?))
            }
        })?;
        let health_path = src.get("HEALTH_PATH", "/health/ready".to_owned(), |raw| {
            if !raw.starts_with('/') {
                bail!("must start with /");
            }
            raw.parse::<http::uri::PathAndQuery>()?;
            Ok(raw.to_owned())
        })?;
        let rps = src.get("RATE_LIMIT_RPS", 0.0, parse_non_negative)?;
        let burst = src.get("RATE_LIMIT_BURST", rps.max(1.0), |raw| {
            let burst = parse_non_negative(raw)?;
            if burst < 1.0 {
                bail!("must be at least 1");
            }
            Ok(burst)
        })?;
        let route_limits = src.get("ROUTE_LIMITS", Vec::new(), |raw| {
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(RouteLimit::from_str).collect()
        })?;
        let trusted_proxies = src.get("TRUSTED_PROXIES", Vec::new(), |raw| {
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(IpNet::from_str).collect()
        })?;
        let worker_threads = src.get("WORKER_THREADS", None, |raw| Ok(Some(positive::<usize>(raw)?)))?;

        Ok(Self {
            listen: src.parsed("LISTEN", SocketAddr::from(([127, 0, 0, 1], 8000)))?,
            admin_listen,
            upstreams,
            strategy: src.parsed("STRATEGY", Strategy::RoundRobin)?,
            health: HealthConfig {
                path: health_path,
                interval: src.millis("HEALTH_INTERVAL_MS", 1000)?,
                timeout: src.get("HEALTH_TIMEOUT_MS", Duration::from_secs(1), positive_ms)?,
                fail_threshold: src.get("FAIL_THRESHOLD", 3, positive::<u32>)?,
                eject_cooldown: src.millis("EJECT_COOLDOWN_MS", 5000)?,
                panic_routing: src.get("PANIC_ROUTING", true, parse_bool)?,
            },
            rate_limit: RateLimitConfig { rps, burst },
            route_limits,
            connect_timeout: src.get("CONNECT_TIMEOUT_MS", Duration::from_secs(1), positive_ms)?,
            request_timeout: src.get("REQUEST_TIMEOUT_MS", Duration::from_secs(30), positive_ms)?,
            client_header_timeout: src.get("CLIENT_HEADER_TIMEOUT_MS", Duration::from_secs(30), positive_ms)?,
            shutdown_timeout: src.millis("SHUTDOWN_TIMEOUT_MS", 10_000)?,
            max_body_bytes: src.parsed("MAX_BODY_BYTES", 1024 * 1024)?,
            max_connections: src.get("MAX_CONNECTIONS", 10_000, positive::<usize>)?,
            max_idle_per_upstream: src.get("MAX_IDLE_PER_UPSTREAM", 256, positive::<usize>)?,
            max_attempts: src.get("MAX_ATTEMPTS", 3, positive::<usize>)?,
            trusted_proxies,
            worker_threads,
        })
    }
}

fn parse_upstreams(raw: &str) -> anyhow::Result<Vec<UpstreamUrl>> {
    let list: Vec<UpstreamUrl> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(UpstreamUrl::from_str)
        .collect::<anyhow::Result<_>>()?;
    for (i, a) in list.iter().enumerate() {
        if list[..i].contains(a) {
            bail!("{a} is listed twice");
        }
    }
    Ok(list)
}

fn parse_bool(raw: &str) -> anyhow::Result<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => bail!("expected true or false"),
    }
}

fn parse_non_negative(raw: &str) -> anyhow::Result<f64> {
    let v: f64 = raw.parse()?;
    if !v.is_finite() || v < 0.0 {
        bail!("must be a finite number >= 0");
    }
    Ok(v)
}

fn positive<T>(raw: &str) -> anyhow::Result<T>
where
    T: FromStr + PartialEq + Default,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let v: T = raw.parse()?;
    if v == T::default() {
        bail!("must be greater than 0");
    }
    Ok(v)
}

fn positive_ms(raw: &str) -> anyhow::Result<Duration> {
    positive::<u64>(raw).map(Duration::from_millis)
}

/// Reads a TOML file into `KEY -> raw string` so file values share the env parser.
fn read_file(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = text.parse().with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut out = HashMap::new();
    for (key, value) in table {
        let upper = key.to_ascii_uppercase();
        if !KEYS.contains(&upper.as_str()) {
            bail!(
                "{}: unknown key `{key}` (expected one of: {})",
                path.display(),
                KEYS.join(", ").to_ascii_lowercase()
            );
        }
        let raw = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s),
                    other => bail!("{}: key `{key}` must list strings, found a {}", path.display(), other.type_str()),
                })
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(","),
            other => bail!("{}: key `{key}` has an unsupported {} value", path.display(), other.type_str()),
        };
        out.insert(upper, raw);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = config(&[("SEATGATE_LB_UPSTREAMS", "http://127.0.0.1:8081, http://127.0.0.1:8082/")])
            .expect("valid config");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.admin_listen.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9090"));
        assert_eq!(c.strategy, Strategy::RoundRobin);
        assert_eq!(c.health.path, "/health/ready");
        assert_eq!(c.health.interval, Duration::from_secs(1));
        assert!(c.health.panic_routing, "panic routing is on by default");
        assert!(!c.rate_limit.enabled());
        assert!(c.route_limits.is_empty());
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.upstreams[1].authority, "127.0.0.1:8082");
        assert_eq!(c.upstreams[1].path_prefix, "");
    }

    #[test]
    fn missing_upstreams_stop_start_up_naming_the_variable() {
        let err = config(&[]).expect_err("upstreams are required");
        assert!(format!("{err:#}").contains("SEATGATE_LB_UPSTREAMS"), "{err:#}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (key, value) in [
            ("SEATGATE_LB_STRATEGY", "random"),
            ("SEATGATE_LB_HEALTH_INTERVAL_MS", "soon"),
            ("SEATGATE_LB_RATE_LIMIT_RPS", "-1"),
            ("SEATGATE_LB_LISTEN", "localhost"),
            ("SEATGATE_LB_UPSTREAMS", "https://x:1"),
            ("SEATGATE_LB_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("SEATGATE_LB_MAX_CONNECTIONS", "0"),
            ("SEATGATE_LB_PANIC_ROUTING", "sometimes"),
            ("SEATGATE_LB_ROUTE_LIMITS", "/api/v1/auth/"),
            ("SEATGATE_LB_ROUTE_LIMITS", "api=5"),
            ("SEATGATE_LB_ROUTE_LIMITS", "/x=0"),
        ] {
            let mut vars = vec![(key, value)];
            if key != "SEATGATE_LB_UPSTREAMS" {
                vars.push(("SEATGATE_LB_UPSTREAMS", "http://127.0.0.1:1"));
            }
            let err = config(&vars).expect_err("bad value must be rejected");
            assert!(format!("{err:#}").contains(key), "{key}: {err:#}");
        }
    }

    #[test]
    fn env_overrides_the_config_file() {
        let dir = std::env::temp_dir().join(format!("seatgate-lb-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("lb.toml");
        std::fs::write(
            &path,
            "upstreams = [\"http://10.0.0.1:8080\", \"http://10.0.0.2:8080/api/\"]\nstrategy = \"least_conn\"\nrate_limit_rps = 5\nlisten = \"127.0.0.1:7000\"\npanic_routing = false\n",
        )
        .expect("write config");
        let path_str = path.to_string_lossy().into_owned();
        let c = config(&[("SEATGATE_LB_CONFIG", &path_str), ("SEATGATE_LB_LISTEN", "127.0.0.1:7001")])
            .expect("valid config");
        assert_eq!(c.listen.to_string(), "127.0.0.1:7001", "env wins over the file");
        assert_eq!(c.strategy, Strategy::LeastConn);
        assert!((c.rate_limit.rps - 5.0).abs() < f64::EPSILON);
        assert_eq!(c.upstreams[1].path_prefix, "/api");
        assert!(!c.health.panic_routing, "a TOML boolean is read");
        let c = config(&[("SEATGATE_LB_CONFIG", &path_str), ("SEATGATE_LB_PANIC_ROUTING", "true")]).expect("valid");
        assert!(c.health.panic_routing, "env wins over the file");

        std::fs::write(&path, "upstreams = \"http://10.0.0.1:8080\"\nstrategy = \"fastest\"\n").expect("write config");
        let err = config(&[("SEATGATE_LB_CONFIG", &path_str)]).expect_err("bad file value");
        let msg = format!("{err:#}");
        assert!(msg.contains("SEATGATE_LB_STRATEGY") && msg.contains("lb.toml"), "{msg}");

        std::fs::write(&path, "upstream = \"http://10.0.0.1:8080\"\n").expect("write config");
        let err = config(&[("SEATGATE_LB_CONFIG", &path_str)]).expect_err("unknown key");
        assert!(format!("{err:#}").contains("unknown key `upstream`"), "{err:#}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn cidr_blocks_match_their_members() {
        let net: IpNet = "10.1.0.0/16".parse().expect("cidr");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        let one: IpNet = "::1".parse().expect("ip");
        assert!(one.contains("::1".parse().expect("ip")));
        let all: IpNet = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("::ffff:192.0.2.1".parse().expect("ip")));
    }
}
