//! The waiting room's Redis side: the sale mirror the admission gate reads, and the typed face
//! of the queue scripts (`lua/queue_*.lua`). Every key carries the showtime's hash tag
//! `{st:<id>}` (`ShowtimeKeys::sale`, `adm`, `queue.*`), so each script runs on one Redis
//! Cluster slot. Raw replies become enums right after the call.
//!
//! Keys of one showtime (besides the hold keys of `lua/_prelude.lua`):
//! - `sale`    hash, the sale settings mirrored from PostgreSQL (see `lua/_admission.lua`)
//! - `adm`     zset, user id by admitted-until ms (read by the gate inside hold.lua)
//! - `q:line`  zset, waiting users by score (the shuffle: `lua/queue_join.lua`)
//! - `q:joined` hash, user id -> "joined_at_ms:score", one entry per user, kept after admission
//! - `q:seq`   counter of joiners after opening
//! - `q:state` hash, the admitter's token bucket and the count admitted so far (`popped`)
//! - `q:lease`, `q:fence`  the admitter's lease and its fencing tokens
//! - `q:events` pub/sub channel: `opened`, `admitted` (with `popped`), `paused`, `resumed`;
//!   sharded (SPUBLISH) on a Redis Cluster, so the events stay on the showtime's shard

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, bail};
use deadpool_redis::redis::{self, Value};
use uuid::Uuid;

pub use crate::holds::gate::{QueueMirror, SALE_TTL, SaleMirror, mirror};
use crate::holds::store::{Conn, Lua, int, run, split, text};
use crate::infra::redis::ShowtimeKeys;

macro_rules! script {
    ($name:ident, $file:literal) => {
        static $name: LazyLock<Lua> = LazyLock::new(|| {
            Lua::new(concat!(include_str!("../../lua/_prelude.lua"), include_str!(concat!("../../lua/", $file))))
        });
    };
}

script!(JOIN, "queue_join.lua");
script!(LEASE, "queue_lease.lua");
script!(ADMIT, "queue_admit.lua");
script!(STATS, "queue_stats.lua");

/// Pre-opening scores are below this (2^52: exact in a double, as Redis scores are).
pub const LATE_BASE: u64 = 1 << 52;

/// Forgets the sale mirror, so the next hold reads the settings from PostgreSQL.
pub async fn forget(conn: &mut Conn, k: &ShowtimeKeys) -> anyhow::Result<()> {
    let _: () = redis::cmd("DEL").arg(&k.sale).query_async(conn).await.context("drop the sale mirror")?;
    Ok(())
}

/// Publishes a queue event (pause, resume) to the waiting users' streams: PUBLISH on one Redis,
/// SPUBLISH (to the node of the showtime's slot) on a Redis Cluster, as `lua/queue_admit.lua`.
pub async fn publish(conn: &mut Conn, k: &ShowtimeKeys, kind: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({ "type": kind }).to_string();
    let command = if conn.is_cluster() { "SPUBLISH" } else { "PUBLISH" };
    let _: () = redis::cmd(command).arg(&k.queue.events).arg(body).query_async(conn).await?;
    Ok(())
}

/// Where a user is, by the scripts' reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    Waiting,
    Admitted,
    Expired,
}

/// A user's queue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub state: EntryState,
    pub joined_at_ms: i64,
    /// 0-based; `None` before opening or when not waiting.
    pub rank: Option<u64>,
    pub admitted_until_ms: Option<i64>,
    pub opened: bool,
    /// Users admitted so far, read atomically with `rank`.
    pub popped: u64,
}

/// Result of `queue_join.lua`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    Created(Entry),
    Existing(Entry),
    NotJoined,
    NoQueue,
    Cold,
}

/// Joins (`join = true`) or reads the caller's entry. `random_score` must be uniform in
/// [0, 2^52) from a cryptographic RNG; it is used only if the user joins before opening.
#[tracing::instrument(skip_all, fields(user.id = %user_id))]
pub async fn join(
    conn: &mut Conn,
    k: &ShowtimeKeys,
    user_id: Uuid,
    join: bool,
    random_score: u64,
) -> anyhow::Result<JoinOutcome> {
    let args = [if join { "join" } else { "peek" }.to_owned(), user_id.to_string(), random_score.to_string()];
    let keys = [&*k.sale, &*k.queue.line, &*k.queue.joined, &*k.adm, &*k.queue.seq, &*k.queue.state];
    let (status, rest) = split(run("queue_join", &JOIN, conn, &keys, &args).await?)?;
    let entry = |rest: &[Value]| -> anyhow::Result<Entry> {
        let state = match text(rest.first().context("state")?)?.as_str() {
            "waiting" => EntryState::Waiting,
            "admitted" => EntryState::Admitted,
            "expired" => EntryState::Expired,
            other => bail!("queue_join.lua state {other:?}"),
        };
        let rank = int(rest.get(2).context("rank")?)?;
        let until = int(rest.get(3).context("until")?)?;
        Ok(Entry {
            state,
            joined_at_ms: int(rest.get(1).context("joined_at")?)?,
            rank: u64::try_from(rank).ok(),
            admitted_until_ms: (until >= 0).then_some(until),
            opened: int(rest.get(4).context("opened")?)? == 1,
            popped: int(rest.get(5).context("popped")?)?.max(0) as u64,
        })
    };
    Ok(match status.as_str() {
        "created" => JoinOutcome::Created(entry(&rest)?),
        "existing" => JoinOutcome::Existing(entry(&rest)?),
        "not_joined" => JoinOutcome::NotJoined,
        "no_queue" => JoinOutcome::NoQueue,
        "cold" => JoinOutcome::Cold,
        other => bail!("queue_join.lua answered {other:?}"),
    })
}

/// A random pre-opening score from the operating system's RNG: uniform in [0, 2^52).
pub fn random_score() -> anyhow::Result<u64> {
    use rand::TryRngCore;
    let raw = rand::rngs::OsRng.try_next_u64().map_err(|e| anyhow::anyhow!("OS random number generator: {e}"))?;
    Ok(raw >> 12)
}

/// Result of `queue_lease.lua`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// This process admits for the showtime, with this fencing token.
    Held(String),
    Taken,
}

/// Takes or renews the admitter lease of a showtime for `ttl`.
pub async fn lease(conn: &mut Conn, k: &ShowtimeKeys, owner: &str, ttl: Duration) -> anyhow::Result<LeaseOutcome> {
    let args = [owner.to_owned(), ttl.as_millis().max(1).to_string(), "acquire".to_owned()];
    let (status, rest) = split(run("queue_lease", &LEASE, conn, &[&*k.queue.lease, &*k.queue.fence], &args).await?)?;
    Ok(match status.as_str() {
        "ok" => LeaseOutcome::Held(text(rest.first().context("token")?)?),
        "taken" => LeaseOutcome::Taken,
        other => bail!("queue_lease.lua answered {other:?}"),
    })
}

/// Gives the lease back (at shutdown), if this owner holds it.
pub async fn release_lease(conn: &mut Conn, k: &ShowtimeKeys, owner: &str) -> anyhow::Result<()> {
    let args = [owner.to_owned(), "1".to_owned(), "release".to_owned()];
    run("queue_lease", &LEASE, conn, &[&*k.queue.lease, &*k.queue.fence], &args).await?;
    Ok(())
}

/// Result of `queue_admit.lua`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmitOutcome {
    Step {
        admitted: u64,
        newly_expired: u64,
        waiting: u64,
        popped: u64,
        paused: bool,
    },
    /// The token is not the lease's: another admitter took over.
    Fenced,
    NoQueue,
    Cold,
}

/// One admission step under fencing token `token`.
pub async fn admit(
    conn: &mut Conn,
    k: &ShowtimeKeys,
    token: &str,
    burst: Duration,
    max_batch: u32,
) -> anyhow::Result<AdmitOutcome> {
    let args = [token.to_owned(), k.queue.events.clone(), burst.as_millis().to_string(), max_batch.to_string()];
    let keys = [&*k.sale, &*k.queue.line, &*k.adm, &*k.queue.state, &*k.queue.lease];
    let (status, rest) = split(run("queue_admit", &ADMIT, conn, &keys, &args).await?)?;
    let n = |i: usize| -> anyhow::Result<u64> { Ok(int(rest.get(i).context("count")?)?.try_into()?) };
    Ok(match status.as_str() {
        "ok" => AdmitOutcome::Step {
            admitted: n(0)?,
            newly_expired: n(1)?,
            waiting: n(2)?,
            popped: n(3)?,
            paused: n(4)? == 1,
        },
        "fenced" => AdmitOutcome::Fenced,
        "no_queue" => AdmitOutcome::NoQueue,
        "cold" => AdmitOutcome::Cold,
        other => bail!("queue_admit.lua answered {other:?}"),
    })
}

/// Counts of a waiting room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawStats {
    pub waiting: u64,
    pub admitted: u64,
    pub expired: u64,
    pub seats_held: u64,
    pub popped: u64,
}

/// The counts, in one script call.
pub async fn stats(conn: &mut Conn, k: &ShowtimeKeys) -> anyhow::Result<RawStats> {
    let keys = [&*k.queue.line, &*k.adm, &*k.holds, &*k.sold, &*k.queue.state];
    let reply = run("queue_stats", &STATS, conn, &keys, &[]).await?;
    let Value::Array(items) = reply else { bail!("unexpected queue_stats reply {reply:?}") };
    let n = |i: usize| -> anyhow::Result<u64> { Ok(int(items.get(i).context("count")?)?.max(0).try_into()?) };
    Ok(RawStats { waiting: n(0)?, admitted: n(1)?, expired: n(2)?, seats_held: n(3)?, popped: n(5)? })
}

/// Everything a waiting room recorded: what the invariant checker and the queue bench read.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// Every entry: (user, joined_at_ms, score).
    pub joined: Vec<(Uuid, i64, u64)>,
    /// Admitted users: (user, admitted_until_ms).
    pub admitted: Vec<(Uuid, i64)>,
    /// Users still waiting: (user, score).
    pub waiting: Vec<(Uuid, u64)>,
}

type RawRecords = (Vec<(String, String)>, Vec<(String, f64)>, Vec<(String, f64)>);

/// Reads the whole waiting room (O(n): for checks and benchmarks, not for requests).
pub async fn entries(conn: &mut Conn, k: &ShowtimeKeys) -> anyhow::Result<Records> {
    let (joined, admitted, waiting): RawRecords = redis::pipe()
        .hgetall(&k.queue.joined)
        .zrange_withscores(&k.adm, 0, -1)
        .zrange_withscores(&k.queue.line, 0, -1)
        .query_async(conn)
        .await
        .context("read the waiting room")?;
    let joined = joined
        .into_iter()
        .filter_map(|(user, entry)| {
            let (at, score) = entry.split_once(':')?;
            Some((user.parse().ok()?, at.parse().ok()?, score.parse().ok()?))
        })
        .collect();
    let admitted = admitted.into_iter().filter_map(|(u, s)| Some((u.parse().ok()?, s as i64))).collect();
    let waiting = waiting.into_iter().filter_map(|(u, s)| Some((u.parse().ok()?, s as u64))).collect();
    Ok(Records { joined, admitted, waiting })
}
