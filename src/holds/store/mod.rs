//! The Lua scripts' typed face. Each script is embedded at build time, loaded once per process,
//! and run with EVALSHA; `invoke_async` falls back to SCRIPT LOAD on NOSCRIPT, so a Redis
//! restart or `SCRIPT FLUSH` needs no handling here. Raw replies become enums right after the
//! call; nothing stringly-typed leaves this module.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, bail};
use deadpool_redis::redis::{self, Script, Value};
use uuid::Uuid;

use crate::infra::redis::{Keys, ShowtimeKeys};

/// One script in the two forms it runs in: seat changes PUBLISHed (one Redis: the live seat
/// map's pattern subscription hears every showtime), or SPUBLISHed (a Redis Cluster: sharded
/// pub/sub, the showtime's events stay on the shard of its slot). The form is the first line,
/// `local SEAT_PUBLISH = ...`, read by `publish` in `lua/_prelude.lua`.
pub(crate) struct Lua {
    pub(super) plain: Script,
    pub(super) sharded: Script,
}

impl Lua {
    pub(crate) fn new(body: &str) -> Self {
        Self {
            plain: Script::new(&format!("local SEAT_PUBLISH = 'PUBLISH'\n{body}")),
            sharded: Script::new(&format!("local SEAT_PUBLISH = 'SPUBLISH'\n{body}")),
        }
    }
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        static $name: LazyLock<Lua> = LazyLock::new(|| {
            Lua::new(concat!(include_str!("../../../lua/_prelude.lua"), include_str!(concat!("../../../lua/", $file))))
        });
    };
}

/// hold.lua runs the on-sale admission gate first (`lua/_admission.lua`, invariant 9).
static HOLD: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        include_str!("../../../lua/_prelude.lua"),
        include_str!("../../../lua/_admission.lua"),
        include_str!("../../../lua/hold.lua")
    ))
});
script!(RELEASE, "release.lua");
script!(EXTEND, "extend.lua");
script!(CLAIM, "claim.lua");
script!(SELL, "sell.lua");
script!(UNSELL, "unsell.lua");
script!(SWEEP, "sweep.lua");
script!(SEATMAP, "seatmap.lua");
script!(REOPEN, "reopen.lua");
script!(RESYNC_SOLD, "resync_sold.lua");
mod best;
mod lua;

pub use best::{BestOutcome, BestRequest, ScanLayout, hold_best, set_layout};
use lua::{ids, uuids};
pub(crate) use lua::{int, run, split, text};

/// Holds dropped per script call at most, so one call never blocks Redis for long.
pub const PURGE_LIMIT: usize = 500;

/// A handle to the shared Redis connection.
pub type Conn = crate::infra::redis::Conn;

/// Result of `hold.lua`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    Held {
        expires_at_ms: i64,
    },
    /// Exactly the seats that are sold or held by someone else.
    Unavailable(Vec<Uuid>),
    /// The user already holds this many seats of the showtime.
    OverLimit {
        held: u32,
    },
    Closed(Closed),
    /// The sale opens at this time (Unix ms); nothing was written.
    SaleNotOpen {
        opens_at_ms: i64,
    },
    /// The sale has a waiting room and the user holds no live admission; nothing was written.
    NotAdmitted,
    /// Cached showtime data missing in Redis: warm it from PostgreSQL and try again.
    Cold,
}

/// Why a showtime takes no more holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    Started,
    Cancelled,
}

/// Result of `release.lua`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released,
    NotFound,
    /// A checkout or payment is running for it.
    Locked,
    /// Its data is gone (expired and swept) but its index still names this user.
    Expired,
}

/// Result of `extend.lua`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtendOutcome {
    Extended { expires_at_ms: i64, seats: Vec<Uuid> },
    NotFound,
    Expired,
}

/// Result of `claim.lua`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// Seats sold or held by another live hold.
    Lost(Vec<Uuid>),
}

/// Result of `seatmap.lua`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeatStatus {
    Cold,
    Map { sold: Vec<Uuid>, held: Vec<HeldSeat> },
}

/// A seat in a live hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldSeat {
    pub seat_id: Uuid,
    pub user_id: String,
    pub hold_id: Uuid,
}

/// What `hold` needs besides the seats.
#[derive(Clone, Copy, Debug)]
pub struct HoldParams {
    pub showtime_id: Uuid,
    /// Made by [`Keys::new_hold_id`], so that its index lands in the showtime's slot.
    pub hold_id: Uuid,
    pub user_id: Uuid,
    pub ttl: Duration,
    pub max_lifetime: Duration,
    pub max_seats_per_user: u32,
}

/// How long a hold's index outlives the longest hold: long enough to answer "expired" rather
/// than "no such hold" to its owner.
const INDEX_GRACE: Duration = Duration::from_secs(60);

/// Holds `seats` (distinct, all of the showtime's layout) for `p.user_id`, all or none, and
/// indexes the hold by its id, in one script run: one round trip, nothing half-written.
#[tracing::instrument(skip_all, fields(hold.id = %p.hold_id, seats = seats.len()))]
pub async fn hold(
    conn: &mut Conn,
    keys: &Keys,
    k: &ShowtimeKeys,
    p: HoldParams,
    seats: &[Uuid],
) -> anyhow::Result<HoldOutcome> {
    let mut args = vec![
        p.hold_id.to_string(),
        p.user_id.to_string(),
        p.ttl.as_millis().to_string(),
        p.max_lifetime.as_millis().to_string(),
        p.max_seats_per_user.to_string(),
        PURGE_LIMIT.to_string(),
        k.events.clone(),
        format!("{}:{}", p.showtime_id, p.user_id),
        (p.max_lifetime + INDEX_GRACE).as_millis().to_string(),
    ];
    args.extend(ids(seats));
    let index = keys.hold_index(p.hold_id);
    let keys = [&*k.holds, &*k.expiry, &*k.info, &*k.users, &*k.sold, &*k.meta, &*k.sale, &*k.adm, &*index];
    let (status, rest) = split(run("hold", &HOLD, conn, &keys, &args).await?)?;
    Ok(match status.as_str() {
        "ok" => HoldOutcome::Held { expires_at_ms: int(rest.first().context("expiry")?)? },
        "unavailable" => HoldOutcome::Unavailable(uuids(&rest)?),
        "limit" => HoldOutcome::OverLimit { held: int(rest.first().context("count")?)?.try_into()? },
        "closed" if rest.first().map(text).transpose()?.as_deref() == Some("started") => {
            HoldOutcome::Closed(Closed::Started)
        }
        "closed" => HoldOutcome::Closed(Closed::Cancelled),
        "sale_not_open" => HoldOutcome::SaleNotOpen { opens_at_ms: int(rest.first().context("opens_at")?)? },
        "not_admitted" => HoldOutcome::NotAdmitted,
        "cold" => HoldOutcome::Cold,
        other => bail!("hold.lua answered {other:?}"),
    })
}

/// The owner gives a hold back; `force` also releases one in checkout (payment workers). One
/// command: the script checks the owner and reads the index itself, so no [`indexed`] is needed
/// first when the showtime is known.
#[tracing::instrument(skip_all, fields(hold.id = %hold_id))]
pub async fn release(
    conn: &mut Conn,
    keys: &Keys,
    k: &ShowtimeKeys,
    hold_id: Uuid,
    user_id: &str,
    force: bool,
) -> anyhow::Result<ReleaseOutcome> {
    let args = [hold_id.to_string(), user_id.to_owned(), k.events.clone(), if force { "1" } else { "0" }.to_owned()];
    let index = keys.hold_index(hold_id);
    let keys = [&*k.holds, &*k.expiry, &*k.info, &*k.users, &*index];
    let (status, _) = split(run("release", &RELEASE, conn, &keys, &args).await?)?;
    Ok(match status.as_str() {
        "ok" => ReleaseOutcome::Released,
        "not_found" => ReleaseOutcome::NotFound,
        "locked" => ReleaseOutcome::Locked,
        "expired" => ReleaseOutcome::Expired,
        other => bail!("release.lua answered {other:?}"),
    })
}

/// Extends a live hold once, by `extension` from now, capped by its maximum lifetime.
#[tracing::instrument(skip_all, fields(hold.id = %hold_id))]
pub async fn extend(
    conn: &mut Conn,
    k: &ShowtimeKeys,
    hold_id: Uuid,
    user_id: Uuid,
    extension: Duration,
) -> anyhow::Result<ExtendOutcome> {
    let args = [hold_id.to_string(), user_id.to_string(), extension.as_millis().to_string()];
    let (status, rest) = split(run("extend", &EXTEND, conn, &[&*k.holds, &*k.expiry, &*k.info], &args).await?)?;
    Ok(match status.as_str() {
        "ok" => ExtendOutcome::Extended {
            expires_at_ms: int(rest.first().context("expiry")?)?,
            seats: uuids(rest.get(1..).unwrap_or_default())?,
        },
        "not_found" => ExtendOutcome::NotFound,
        "expired" => ExtendOutcome::Expired,
        other => bail!("extend.lua answered {other:?}"),
    })
}

/// A payment worker claims the seats of `hold_id` (fencing) for `ttl`.
#[tracing::instrument(skip_all, fields(hold.id = %hold_id))]
pub async fn claim(
    conn: &mut Conn,
    k: &ShowtimeKeys,
    hold_id: Uuid,
    user_id: Uuid,
    seats: &[Uuid],
    ttl: Duration,
) -> anyhow::Result<ClaimOutcome> {
    let mut args = vec![hold_id.to_string(), user_id.to_string(), ttl.as_millis().to_string()];
    args.extend(ids(seats));
    let keys = [&*k.holds, &*k.expiry, &*k.info, &*k.users, &*k.sold];
    let (status, rest) = split(run("claim", &CLAIM, conn, &keys, &args).await?)?;
    Ok(match status.as_str() {
        "ok" => ClaimOutcome::Claimed,
        "lost" => ClaimOutcome::Lost(uuids(&rest)?),
        other => bail!("claim.lua answered {other:?}"),
    })
}

/// Marks seats sold and drops the hold (after the booking committed).
#[tracing::instrument(skip_all, fields(hold.id = %hold_id))]
pub async fn sell(
    conn: &mut Conn,
    k: &ShowtimeKeys,
    keys: &Keys,
    hold_id: Uuid,
    seats: &[Uuid],
    sold_ttl: Duration,
) -> anyhow::Result<()> {
    let mut args = vec![hold_id.to_string(), k.events.clone(), sold_ttl.as_millis().max(1).to_string()];
    args.extend(ids(seats));
    let index = keys.hold_index(hold_id);
    let keys = [&*k.holds, &*k.expiry, &*k.info, &*k.users, &*k.sold, &*index];
    run("sell", &SELL, conn, &keys, &args).await?;
    Ok(())
}

/// Seats of a cancelled booking are free again.
#[tracing::instrument(skip_all)]
pub async fn unsell(conn: &mut Conn, k: &ShowtimeKeys, seats: &[Uuid], sold_ttl: Duration) -> anyhow::Result<()> {
    let mut args = vec![k.events.clone(), sold_ttl.as_millis().max(1).to_string()];
    args.extend(ids(seats));
    run("unsell", &UNSELL, conn, &[&*k.sold, &*k.full], &args).await?;
    Ok(())
}

/// A checkout that failed after [`extend`] hands the hold back to its owner (`held` again).
#[tracing::instrument(skip_all, fields(hold.id = %hold_id))]
pub async fn reopen(conn: &mut Conn, k: &ShowtimeKeys, hold_id: Uuid, user_id: Uuid) -> anyhow::Result<bool> {
    let args = [hold_id.to_string(), user_id.to_string()];
    let (status, _) = split(run("reopen", &REOPEN, conn, &[&*k.info], &args).await?)?;
    Ok(status == "ok")
}

/// The showtime and owner a hold id was indexed with, if the index still exists.
#[tracing::instrument(skip_all, fields(hold.id = %hold_id))]
pub async fn indexed(conn: &mut Conn, keys: &Keys, hold_id: Uuid) -> anyhow::Result<Option<(Uuid, Uuid)>> {
    let entry: Option<String> =
        redis::cmd("GET").arg(keys.hold_index(hold_id)).query_async(conn).await.context("read the hold index")?;
    Ok(entry.as_deref().and_then(|e| e.split_once(':')).and_then(|(s, u)| Some((s.parse().ok()?, u.parse().ok()?))))
}

/// The JSON a hold's info field holds in Redis (see `lua/_prelude.lua`).
#[derive(Debug, serde::Deserialize)]
struct HoldInfo {
    u: String,
    e: i64,
    st: String,
    #[serde(default)]
    s: Vec<Uuid>,
}

/// A hold as stored, read with Redis' clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldView {
    Live {
        user_id: String,
        seats: Vec<Uuid>,
        expires_at_ms: i64,
        checked_out: bool,
    },
    /// Its data is gone or its time is up.
    Expired,
}

/// Reads one hold of a showtime and Redis' clock in one round trip.
#[tracing::instrument(skip_all, fields(hold.id = %hold_id))]
pub async fn hold_view(conn: &mut Conn, k: &ShowtimeKeys, hold_id: Uuid) -> anyhow::Result<HoldView> {
    let (raw, (secs, micros)): (Option<String>, (i64, i64)) = redis::pipe()
        .hget(&k.info, hold_id.to_string())
        .cmd("TIME")
        .query_async(conn)
        .await
        .context("read the hold")?;
    let Some(raw) = raw else { return Ok(HoldView::Expired) };
    let info: HoldInfo = serde_json::from_str(&raw).context("decode the hold's info")?;
    if info.e <= secs * 1000 + micros / 1000 {
        return Ok(HoldView::Expired);
    }
    Ok(HoldView::Live { user_id: info.u, seats: info.s, expires_at_ms: info.e, checked_out: info.st != "held" })
}

/// The seats a showtime's sold set shows sold; `None` while it is cold (not built).
#[tracing::instrument(skip_all)]
pub async fn sold_seats(conn: &mut Conn, k: &ShowtimeKeys) -> anyhow::Result<Option<std::collections::HashSet<Uuid>>> {
    let members: Vec<String> = redis::cmd("SMEMBERS").arg(&k.sold).query_async(conn).await.context("read sold set")?;
    if !members.iter().any(|m| m == "_") {
        return Ok(None);
    }
    Ok(Some(members.iter().filter_map(|m| m.parse().ok()).collect()))
}

/// Corrects a warm sold set: `add` become sold, `free` are no longer (see `lua/resync_sold.lua`).
#[tracing::instrument(skip_all, fields(add = add.len(), free = free.len()))]
pub async fn correct_sold(conn: &mut Conn, k: &ShowtimeKeys, add: &[Uuid], free: &[Uuid]) -> anyhow::Result<()> {
    let mut args = vec![k.events.clone(), add.len().to_string()];
    args.extend(ids(add));
    args.extend(ids(free));
    run("resync_sold", &RESYNC_SOLD, conn, &[&*k.sold, &*k.full], &args).await?;
    Ok(())
}

/// Drops expired holds of one showtime: (dropped, remaining).
#[tracing::instrument(skip_all)]
pub async fn sweep(conn: &mut Conn, k: &ShowtimeKeys) -> anyhow::Result<(u64, u64)> {
    let args = [PURGE_LIMIT.to_string(), k.events.clone()];
    let reply = run("sweep", &SWEEP, conn, &[&*k.holds, &*k.expiry, &*k.info, &*k.users], &args).await?;
    let Value::Array(items) = reply else { bail!("unexpected sweep reply {reply:?}") };
    let dropped = int(items.first().context("dropped")?)?;
    let remaining = int(items.get(1).context("remaining")?)?;
    Ok((dropped.try_into()?, remaining.try_into()?))
}

/// Sold and live-held seats of one showtime.
#[tracing::instrument(skip_all)]
pub async fn seat_status(conn: &mut Conn, k: &ShowtimeKeys) -> anyhow::Result<SeatStatus> {
    let (status, rest) = split(run("seatmap", &SEATMAP, conn, &[&*k.holds, &*k.info, &*k.sold], &[]).await?)?;
    match status.as_str() {
        "cold" => Ok(SeatStatus::Cold),
        "ok" => {
            let (Some(Value::Array(sold)), Some(Value::Array(held))) = (rest.first(), rest.get(1)) else {
                // Lua turns an empty table into an empty array; anything else is a bug.
                bail!("unexpected seatmap reply {rest:?}");
            };
            let held = held
                .chunks(3)
                .map(|c| {
                    Ok(HeldSeat {
                        seat_id: text(&c[0])?.parse()?,
                        user_id: text(&c[1])?,
                        hold_id: text(&c[2])?.parse()?,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            Ok(SeatStatus::Map { sold: uuids(sold)?, held })
        }
        other => bail!("seatmap.lua answered {other:?}"),
    }
}

/// What the scripts need to know of a showtime, cached from PostgreSQL.
#[derive(Clone, Copy, Debug)]
pub struct ShowtimeMeta {
    pub starts_at_ms: i64,
    pub cancelled: bool,
}

/// How long cached showtime meta lives before it is re-read from PostgreSQL.
pub const META_TTL: Duration = Duration::from_secs(3600);

/// Writes the showtime meta (after a showtime was created, moved or cancelled).
pub async fn set_meta(conn: &mut Conn, k: &ShowtimeKeys, meta: ShowtimeMeta) -> anyhow::Result<()> {
    let status = if meta.cancelled { "cancelled" } else { "scheduled" };
    let _: () = redis::pipe()
        .atomic()
        .hset_multiple(&k.meta, &[("starts_at", meta.starts_at_ms.to_string()), ("status", status.to_owned())])
        .ignore()
        .pexpire(&k.meta, META_TTL.as_millis() as i64)
        .ignore()
        .query_async(conn)
        .await
        .context("write showtime meta")?;
    Ok(())
}

/// Rebuilds the cached meta and sold set of a showtime from PostgreSQL's answers.
#[tracing::instrument(skip_all, fields(sold = sold.len()))]
pub async fn warm(
    conn: &mut Conn,
    k: &ShowtimeKeys,
    meta: ShowtimeMeta,
    sold: &[Uuid],
    sold_ttl: Duration,
) -> anyhow::Result<()> {
    set_meta(conn, k, meta).await?;
    let mut members: Vec<String> = ids(sold).collect();
    members.push("_".to_owned());
    let _: () = redis::pipe()
        .atomic()
        .sadd(&k.sold, members)
        .ignore()
        .pexpire(&k.sold, sold_ttl.as_millis().max(1) as i64)
        .ignore()
        // best.lua's sold-out rows were found in the set being rebuilt.
        .del(&k.full)
        .ignore()
        .query_async(conn)
        .await
        .context("rebuild sold set")?;
    Ok(())
}
