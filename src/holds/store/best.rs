//! The typed face of `lua/best.lua`: best-available holds, and the scan layout it reads.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, bail};
use deadpool_redis::redis;
use uuid::Uuid;

use super::lua::{int, run, split, text, uuids};
use super::{Closed, Conn, HoldParams, INDEX_GRACE, Lua, PURGE_LIMIT};
use crate::infra::redis::{Keys, ShowtimeKeys};

/// best.lua runs the same admission gate as hold.lua.
static BEST: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        include_str!("../../../lua/_prelude.lua"),
        include_str!("../../../lua/_admission.lua"),
        include_str!("../../../lua/best.lua")
    ))
});

/// Result of `best.lua`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BestOutcome {
    /// These seats (adjacent, in seat order) were picked and are now held.
    Held {
        expires_at_ms: i64,
        seats: Vec<Uuid>,
    },
    /// No block of that many adjacent free seats (of the category) is left.
    NoBlock,
    /// The sale opens at this time (the admission gate).
    SaleNotOpen {
        opens_at_ms: i64,
    },
    /// A waiting room, and the user is not admitted now (the admission gate).
    NotAdmitted,
    /// The user already holds this many seats of the showtime.
    OverLimit {
        held: u32,
    },
    Closed(Closed),
    /// Cached showtime data or layout missing in Redis: warm both and try again.
    Cold,
}

/// What `best.lua` is asked for.
#[derive(Clone, Copy, Debug)]
pub struct BestRequest<'a> {
    pub count: u32,
    /// Only seats of this category, or any.
    pub category: Option<&'a str>,
}

/// Picks the best block of `req.count` adjacent free seats and holds it for `p.user_id`, in
/// one script run (see `lua/best.lua` for the rules of the pick).
#[tracing::instrument(skip_all, fields(hold.id = %p.hold_id, count = req.count))]
pub async fn hold_best(
    conn: &mut Conn,
    keys: &Keys,
    k: &ShowtimeKeys,
    p: HoldParams,
    req: BestRequest<'_>,
) -> anyhow::Result<BestOutcome> {
    let index = keys.hold_index(p.hold_id);
    let args = [
        p.hold_id.to_string(),
        p.user_id.to_string(),
        p.ttl.as_millis().to_string(),
        p.max_lifetime.as_millis().to_string(),
        p.max_seats_per_user.to_string(),
        PURGE_LIMIT.to_string(),
        k.events.clone(),
        req.count.to_string(),
        req.category.unwrap_or_default().to_owned(),
        format!("{}:{}", p.showtime_id, p.user_id),
        (p.max_lifetime + INDEX_GRACE).as_millis().to_string(),
    ];
    let keys = [
        &*k.holds, &*k.expiry, &*k.info, &*k.users, &*k.sold, &*k.meta, &*k.layout, &*index, &*k.sale, &*k.adm,
        &*k.full,
    ];
    let (status, rest) = split(run("best", &BEST, conn, &keys, &args).await?)?;
    Ok(match status.as_str() {
        "ok" => BestOutcome::Held {
            expires_at_ms: int(rest.first().context("expiry")?)?,
            seats: uuids(rest.get(1..).unwrap_or_default())?,
        },
        "none" => BestOutcome::NoBlock,
        "limit" => BestOutcome::OverLimit { held: int(rest.first().context("count")?)?.try_into()? },
        "closed" if rest.first().map(text).transpose()?.as_deref() == Some("started") => {
            BestOutcome::Closed(Closed::Started)
        }
        "closed" => BestOutcome::Closed(Closed::Cancelled),
        "cold" => BestOutcome::Cold,
        "sale_not_open" => BestOutcome::SaleNotOpen { opens_at_ms: int(rest.first().context("opens_at")?)? },
        "not_admitted" => BestOutcome::NotAdmitted,
        other => bail!("best.lua answered {other:?}"),
    })
}

/// The layout as `best.lua` scans it: rows front to back, each row's seats in number order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanLayout {
    /// Category names; a seat's category is an index into this list.
    pub categories: Vec<String>,
    /// Each row: (seat id, category index) in seat-number order.
    pub rows: Vec<Vec<(Uuid, usize)>>,
}

/// Writes a showtime's layout in the form `best.lua` reads (one hash, a string per row), kept
/// for `ttl`. Layouts never change, so a rewrite by another instance writes the same bytes.
#[tracing::instrument(skip_all, fields(rows = layout.rows.len()))]
pub async fn set_layout(conn: &mut Conn, k: &ShowtimeKeys, layout: &ScanLayout, ttl: Duration) -> anyhow::Result<()> {
    if layout.categories.len() > 255 {
        bail!("a layout of more than 255 categories cannot be scanned");
    }
    let mut fields: Vec<(String, Vec<u8>)> = Vec::with_capacity(layout.rows.len() * 2 + 2);
    for (r, row) in layout.rows.iter().enumerate() {
        let ids: String = row.iter().map(|(id, _)| id.hyphenated().to_string()).collect();
        let cats: Vec<u8> = row.iter().map(|(_, c)| (c + 1) as u8).collect();
        fields.push((format!("s{r}"), ids.into_bytes()));
        fields.push((format!("c{r}"), cats));
    }
    fields.push(("cats".to_owned(), layout.categories.join(",").into_bytes()));
    // `rows` last: the script treats the layout as present only once it is there.
    fields.push(("rows".to_owned(), layout.rows.len().to_string().into_bytes()));
    let _: () = redis::pipe()
        .atomic()
        .del(&k.layout)
        .ignore()
        .hset_multiple(&k.layout, &fields)
        .ignore()
        .pexpire(&k.layout, ttl.as_millis().max(1) as i64)
        .ignore()
        .query_async(conn)
        .await
        .context("write the scan layout")?;
    Ok(())
}
