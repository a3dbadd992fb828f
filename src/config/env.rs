//! Reading `SEATGATE_*` variables: the source (the process, or a list in tests), and the typed
//! readers whose errors name the variable.

use std::env::VarError;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{Context, bail};

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

/// A boolean setting: 1/true/yes/on or 0/false/no/off; unset is false.
pub(super) fn flag(env: &dyn Env, key: &str) -> anyhow::Result<bool> {
    match opt(env, key)?.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => bail!("invalid value for {key}: expected 1 or 0 (true or false), got {v:?}"),
    }
}

pub(super) fn opt(env: &dyn Env, key: &str) -> anyhow::Result<Option<String>> {
    match env.get(key) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(VarError::NotPresent) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {key}")),
    }
}

/// The value of `key` parsed as `T`, or `default` when unset.
pub(super) fn var_or<T>(env: &dyn Env, key: &str, default: T) -> anyhow::Result<T>
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
pub(super) fn positive<T>(env: &dyn Env, key: &str, default: T) -> anyhow::Result<T>
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
pub(super) fn listen_or_off(env: &dyn Env, key: &str, default: SocketAddr) -> anyhow::Result<Option<SocketAddr>> {
    match opt(env, key)? {
        Some(raw) if raw.trim().eq_ignore_ascii_case("off") => Ok(None),
        Some(raw) => {
            raw.trim().parse().map(Some).with_context(|| format!("invalid value for {key}: {raw:?} (host:port or off)"))
        }
        None => Ok(Some(default)),
    }
}

pub(super) fn url_var(env: &dyn Env, key: &str, default: &str, schemes: &[&str]) -> anyhow::Result<Secret> {
    let url = opt(env, key)?.unwrap_or_else(|| default.to_owned());
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some(s) if schemes.contains(&s) => Ok(Secret::new(url)),
        _ => bail!("invalid value for {key}: expected a URL starting with {}://", schemes.join("://, ")),
    }
}

pub(super) fn key_prefix(env: &dyn Env) -> anyhow::Result<String> {
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

pub(super) fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// `SEATGATE_REDIS_CLUSTER_NODES`: seed nodes of a Redis Cluster (empty: one Redis).
pub(super) fn cluster_nodes(env: &dyn Env) -> anyhow::Result<Vec<Secret>> {
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
