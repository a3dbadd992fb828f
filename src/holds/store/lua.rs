//! The plumbing every script call shares: EVALSHA with its keys and arguments (and the script
//! duration metric), and the reading of raw replies.

use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use deadpool_redis::redis::Value;
use uuid::Uuid;

use super::{Conn, Lua};
use crate::infra::slots::slot_of;

pub(crate) async fn run(
    name: &'static str,
    lua: &Lua,
    conn: &mut Conn,
    keys: &[&str],
    args: &[String],
) -> anyhow::Result<Value> {
    // Every script's keys share one Redis Cluster slot (the showtime's hash tag, or a hold index
    // in the showtime's slot); a script that broke this would fail with CROSSSLOT on a cluster
    // only, so the debug builds (every test) check it against one Redis too.
    debug_assert!(
        keys.windows(2).all(|w| slot_of(w[0].as_bytes()) == slot_of(w[1].as_bytes())),
        "script {name} called with keys in several cluster slots: {keys:?}"
    );
    let script = if conn.is_cluster() { &lua.sharded } else { &lua.plain };
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(*key);
    }
    for arg in args {
        invocation.arg(arg.as_str());
    }
    let start = Instant::now();
    let result = invocation.invoke_async::<Value>(conn).await;
    metrics::histogram!("seatgate_redis_script_duration_seconds", "script" => name)
        .record(start.elapsed().as_secs_f64());
    result.with_context(|| format!("redis script {name}"))
}

/// Splits a reply `{"status", rest...}`.
pub(crate) fn split(reply: Value) -> anyhow::Result<(String, Vec<Value>)> {
    let Value::Array(mut items) = reply else { bail!("unexpected script reply {reply:?}") };
    if items.is_empty() {
        bail!("empty script reply");
    }
    let head = items.remove(0);
    Ok((text(&head)?, items))
}

pub(crate) fn text(v: &Value) -> anyhow::Result<String> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        other => bail!("expected a string, got {other:?}"),
    }
}

pub(crate) fn int(v: &Value) -> anyhow::Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => text(other)?.parse().map_err(|e| anyhow!("expected an integer: {e}")),
    }
}

pub(super) fn uuids(values: &[Value]) -> anyhow::Result<Vec<Uuid>> {
    values.iter().map(|v| Ok(text(v)?.parse()?)).collect()
}

pub(super) fn ids(seats: &[Uuid]) -> impl Iterator<Item = String> + '_ {
    seats.iter().map(Uuid::to_string)
}
