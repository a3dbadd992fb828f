//! Best-available holds (docs/DESIGN.md §6): the client asks for `count` seats together and
//! `lua/best.lua` picks and takes them in one run, so two buyers asking at once can never be
//! given the same seats, and nobody races for exact seats read from a seat map that is already
//! out of date. The pick's rules live in the script's header; this module parses the request,
//! keeps the layout in Redis in the form the script scans (rebuilt from PostgreSQL when it is
//! missing, like the sold set), and turns the script's outcome into the same answer as a hold
//! of named seats.

use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;

use super::layout::Layout;
use super::service::{self, Hold, HoldRequest, HoldStatus, redis_conn, redis_error};
use super::store::{self, BestOutcome, BestRequest, Closed, HoldParams, ScanLayout};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// How long the scan layout stays in Redis; it is rebuilt from PostgreSQL when missing.
pub const LAYOUT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Body of `POST /api/v1/showtimes/{id}/holds`: exactly one of `seat_ids` and `best_available`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Seats of the showtime's screen, distinct, at most the per-user limit.
    #[schema(min_items = 1)]
    pub seat_ids: Option<Vec<Uuid>>,
    /// Let the server pick the best block of adjacent free seats instead.
    pub best_available: Option<BestAvailable>,
}

/// `best_available` of a hold: how many seats together, and optionally of which category.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BestAvailable {
    /// Seats wanted next to each other in one row; at most the per-user limit.
    #[schema(minimum = 1, example = 2)]
    pub count: u32,
    /// Only seats of this category (e.g. `premium`); any category when absent.
    #[schema(example = "standard", pattern = "^[a-z][a-z0-9_]{0,31}$")]
    pub category: Option<String>,
}

/// What a hold request asks for, once its body made sense.
#[derive(Debug)]
pub enum HoldChoice {
    Seats(HoldRequest),
    Best(BestAvailable),
}

impl TryFrom<HoldBody> for HoldChoice {
    type Error = ApiError;

    fn try_from(body: HoldBody) -> Result<Self, ApiError> {
        match (body.seat_ids, body.best_available) {
            (Some(seat_ids), None) => Ok(Self::Seats(HoldRequest { seat_ids })),
            (None, Some(best)) => Ok(Self::Best(best)),
            (Some(_), Some(_)) => {
                Err(ApiError::invalid("best_available", "name either seat_ids or best_available, not both"))
            }
            (None, None) => Err(ApiError::invalid("seat_ids", "name the seats (seat_ids) or ask for best_available")),
        }
    }
}

/// Holds a request's seats: named ones through `hold.lua`, best available through `best.lua`.
pub async fn create_hold(
    state: &AppState,
    user: AuthUser,
    showtime_id: Uuid,
    body: HoldBody,
) -> Result<Hold, ApiError> {
    match HoldChoice::try_from(body) {
        Ok(HoldChoice::Seats(req)) => service::create_hold(state, user, showtime_id, req).await,
        Ok(HoldChoice::Best(best)) => create_best_hold(state, user, showtime_id, best).await,
        Err(e) => {
            metrics::counter!("seatgate_holds_refused_total", "reason" => "invalid").increment(1);
            Err(e)
        }
    }
}

/// Checks count and category against the per-user limit and the showtime's layout.
fn check_best(best: &BestAvailable, layout: &Layout, max: u32) -> Result<(), ApiError> {
    if best.count == 0 {
        return Err(ApiError::invalid("best_available.count", "ask for at least one seat"));
    }
    if best.count > max {
        return Err(ApiError::invalid("best_available.count", format!("at most {max} seats per showtime")));
    }
    if let Some(category) = &best.category
        && !layout.seats.iter().any(|s| &s.category == category)
    {
        let mut known: Vec<&str> = layout.seats.iter().map(|s| s.category.as_str()).collect();
        known.sort_unstable();
        known.dedup();
        return Err(ApiError::invalid(
            "best_available.category",
            format!("this showtime has no seats of that category; it has {}", known.join(", ")),
        ));
    }
    Ok(())
}

/// The layout as `best.lua` scans it: rows in display order (the layout's order is by row,
/// then seat number), categories numbered in order of first appearance.
pub fn scan_layout(layout: &Layout) -> ScanLayout {
    let mut scan = ScanLayout::default();
    let mut current: Option<&str> = None;
    for seat in &layout.seats {
        let category = match scan.categories.iter().position(|c| c == &seat.category) {
            Some(i) => i,
            None => {
                scan.categories.push(seat.category.clone());
                scan.categories.len() - 1
            }
        };
        if current != Some(seat.row.as_str()) {
            scan.rows.push(Vec::new());
            current = Some(seat.row.as_str());
        }
        if let Some(row) = scan.rows.last_mut() {
            row.push((seat.id, category));
        }
    }
    scan
}

/// Picks and holds the best block of adjacent free seats for the caller.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id, user.id = %user.id, count = best.count))]
pub async fn create_best_hold(
    state: &AppState,
    user: AuthUser,
    showtime_id: Uuid,
    best: BestAvailable,
) -> Result<Hold, ApiError> {
    let holds = &state.config.holds;
    let layout = state.layouts.get(&state.db, showtime_id).await?;
    if let Err(e) = check_best(&best, &layout, holds.max_seats_per_user) {
        metrics::counter!("seatgate_holds_refused_total", "reason" => "invalid").increment(1);
        return Err(e);
    }
    let keys = state.keys.showtime(showtime_id);
    let params = HoldParams {
        showtime_id,
        hold_id: state.keys.new_hold_id(showtime_id),
        user_id: user.id,
        ttl: holds.ttl,
        max_lifetime: holds.max_lifetime,
        max_seats_per_user: holds.max_seats_per_user,
    };
    let request = BestRequest { count: best.count, category: best.category.as_deref() };
    let mut conn = redis_conn(state).await?;
    let lost = |e| service::lost_answer(state, &params, e);
    let mut outcome = store::hold_best(&mut conn, &state.keys, &keys, params, request).await.map_err(lost)?;
    if outcome == BestOutcome::Cold {
        service::warm(state, &mut conn, showtime_id, &keys).await?;
        store::set_layout(&mut conn, &keys, &scan_layout(&layout), LAYOUT_TTL).await.map_err(redis_error)?;
        tracing::info!(seats = layout.seats.len(), "scan layout written from PostgreSQL");
        outcome = store::hold_best(&mut conn, &state.keys, &keys, params, request).await.map_err(lost)?;
    }
    state.seat_status.invalidate(showtime_id);
    let refused = |reason: &'static str| {
        metrics::counter!("seatgate_holds_refused_total", "reason" => reason).increment(1);
        metrics::counter!("seatgate_best_available_holds_total", "outcome" => reason).increment(1);
    };
    match outcome {
        BestOutcome::Held { expires_at_ms, seats } => {
            metrics::counter!("seatgate_holds_granted_total").increment(1);
            metrics::counter!("seatgate_best_available_holds_total", "outcome" => "held").increment(1);
            metrics::counter!("seatgate_seats_held_total").increment(seats.len() as u64);
            tracing::debug!(hold.id = %params.hold_id, "best seats held");
            state.hold_showtimes.remember(params.hold_id, showtime_id);
            Ok(Hold {
                hold_id: params.hold_id,
                showtime_id,
                seat_ids: seats,
                expires_at: service::millis_to_time(expires_at_ms),
                status: HoldStatus::Held,
            })
        }
        BestOutcome::NoBlock => {
            refused("unavailable");
            Err(ApiError::SeatsUnavailable(Vec::new()))
        }
        BestOutcome::OverLimit { held } => {
            refused("limit");
            Err(ApiError::invalid(
                "best_available.count",
                format!(
                    "you may hold at most {} seats of this showtime and already hold {held}",
                    holds.max_seats_per_user
                ),
            ))
        }
        BestOutcome::Closed(Closed::Started) => {
            refused("closed");
            Err(ApiError::Conflict("the showtime has already started".into()))
        }
        BestOutcome::Closed(Closed::Cancelled) => {
            refused("closed");
            Err(ApiError::Conflict("the showtime is cancelled".into()))
        }
        BestOutcome::SaleNotOpen { opens_at_ms } => {
            refused("sale_not_open");
            Err(ApiError::SaleNotOpen { opens_at: service::millis_to_time(opens_at_ms) })
        }
        BestOutcome::NotAdmitted => {
            refused("not_admitted");
            Err(ApiError::NotAdmitted)
        }
        BestOutcome::Cold => Err(ApiError::Unavailable(anyhow::anyhow!("showtime cache stayed cold after warming"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::Seat;

    fn seat(row: &str, number: i32, category: &str) -> Seat {
        Seat { id: Uuid::now_v7(), row: row.into(), number, category: category.into() }
    }

    #[test]
    fn the_scan_layout_keeps_rows_in_order_and_numbers_categories_by_first_appearance() {
        let seats = vec![seat("A", 1, "standard"), seat("A", 2, "standard"), seat("B", 1, "premium")];
        let ids: Vec<Uuid> = seats.iter().map(|s| s.id).collect();
        let scan = scan_layout(&Layout::new(Uuid::now_v7(), seats));
        assert_eq!(scan.categories, ["standard", "premium"]);
        assert_eq!(scan.rows, vec![vec![(ids[0], 0), (ids[1], 0)], vec![(ids[2], 1)]]);
    }

    #[test]
    fn a_body_names_seats_or_best_available_never_both_nor_neither() {
        let best = || Some(BestAvailable { count: 2, category: None });
        let both = HoldBody { seat_ids: Some(vec![Uuid::now_v7()]), best_available: best() };
        assert!(matches!(HoldChoice::try_from(both), Err(ApiError::Validation(_))));
        let neither = HoldBody { seat_ids: None, best_available: None };
        assert!(matches!(HoldChoice::try_from(neither), Err(ApiError::Validation(_))));
        let one = HoldBody { seat_ids: None, best_available: best() };
        assert!(matches!(HoldChoice::try_from(one), Ok(HoldChoice::Best(_))));
    }
}
