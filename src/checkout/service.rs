//! Checkout, the use case that turns a hold into a reservation waiting for payment: it spans
//! the seat holds (the hold is extended to cover payment), the catalog (prices) and the ledger
//! (reservation, payment, and the payment task staged in the outbox, in one transaction).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::idempotency::{self, Claim};
use crate::auth::AuthUser;
use crate::catalog::model::ShowtimeStatus;
use crate::domain::ReservationStatus;
use crate::error::{ApiError, on_constraint};
use crate::holds::service::{redis_conn, redis_error, showtime_of};
use crate::holds::store::{self, ExtendOutcome};
use crate::infra::redis::ShowtimeKeys;
use crate::ledger::repo::{self as ledger, CheckoutWritten, NewReservation};
use crate::messaging::messages::{PaymentAction, PaymentTask};
use crate::messaging::outbox;
use crate::state::AppState;

/// Body of `POST /api/v1/holds/{id}/checkout`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// Token from the payment form. Simulated gateway: `tok_ok`, `tok_declined`, `tok_error`
    /// (fails transiently), `tok_flaky_N` (fails N times, then succeeds).
    #[schema(example = "tok_ok", min_length = 1, max_length = 200, pattern = "^[!-~]+$")]
    pub payment_token: String,
}

/// Answer of a checkout.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckoutAccepted {
    pub reservation_id: Uuid,
    pub status: ReservationStatus,
    /// Total in minor units.
    pub amount: i64,
    pub currency: String,
    pub hold_id: Uuid,
    /// If payment has not completed by then, the reservation expires.
    pub deadline: DateTime<Utc>,
}

/// After the hold's (extended) expiry, a pending reservation may still be paid this long.
const DEADLINE_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// Checks out a hold: 202 with the reservation, or the stored answer of an earlier request
/// with the same key. The payment task goes out through the outbox: a broker outage delays the
/// payment, it never fails the checkout. The 202 waits for the publish, batched by the process'
/// courier with other checkouts' tasks, so an accepted checkout's task is in the queue.
#[tracing::instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id))]
pub async fn checkout(
    state: &AppState,
    user: AuthUser,
    hold_id: Uuid,
    key: Option<&str>,
    req: CheckoutRequest,
) -> Result<(u16, Value), ApiError> {
    let key = idempotency::parse_key(key)?;
    let token = req.payment_token.trim();
    if token.is_empty() || token.len() > 200 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid("payment_token", "must be 1 to 200 printable ASCII characters"));
    }
    let hash = crate::infra::hash::fingerprint(&["checkout", &hold_id.to_string(), token]);
    if let Claim::Replay { status, body } = idempotency::claim(&state.db, user.id, &key, &hash).await? {
        return Ok((status, body));
    }
    match reserve(state, user, hold_id, &key, token).await {
        Ok((accepted, task)) => {
            outbox::deliver(&state.db, &state.amqp, &[task]).await;
            metrics::counter!("seatgate_checkouts_total").increment(1);
            Ok((202, serde_json::to_value(&accepted).map_err(anyhow::Error::from)?))
        }
        Err(e) => {
            idempotency::forget(&state.db, user.id, &key).await;
            Err(e)
        }
    }
}

/// Extends the hold, then writes reservation, seats, payment, payment task and the stored answer
/// in one transaction. If anything fails after the extension, the hold goes back to its owner
/// (`held`), who may release it or try again.
async fn reserve(
    state: &AppState,
    user: AuthUser,
    hold_id: Uuid,
    key: &str,
    token: &str,
) -> Result<(CheckoutAccepted, outbox::Staged), ApiError> {
    let mut conn = redis_conn(state).await?;
    let showtime_id = showtime_of(state, &mut conn, hold_id, user).await?;
    let keys = state.keys.showtime(showtime_id);
    let extension = state.config.holds.checkout_extension;
    let (expires_at_ms, seats) =
        match store::extend(&mut conn, &keys, hold_id, user.id, extension).await.map_err(redis_error)? {
            ExtendOutcome::Extended { expires_at_ms, seats } => (expires_at_ms, seats),
            // The index names the caller, so the hold existed and is gone: it expired.
            ExtendOutcome::NotFound | ExtendOutcome::Expired => return Err(ApiError::HoldExpired),
        };
    let written = record(state, user, showtime_id, hold_id, expires_at_ms, &seats, key, token).await;
    if written.is_err() {
        hand_back(state, &mut conn, &keys, hold_id, user).await;
    }
    written
}

/// After a failed checkout, the hold becomes its owner's again, unless a reservation of it
/// exists (another checkout of it committed) or that cannot be known now (PostgreSQL down): then
/// it stays checked out until it expires, which never strands money, only seats for a while.
async fn hand_back(state: &AppState, conn: &mut store::Conn, keys: &ShowtimeKeys, hold_id: Uuid, user: AuthUser) {
    let checked_out = match state.db.acquire().await {
        Ok(mut db) => ledger::find_reservation_by_hold(&mut db, hold_id).await.map(|r| r.is_some()),
        Err(e) => Err(e),
    };
    match checked_out {
        Ok(false) => match store::reopen(conn, keys, hold_id, user.id).await {
            Ok(_) => tracing::info!("checkout failed: the hold is the customer's again"),
            Err(e) => tracing::warn!(error = %e, "checkout failed and the hold stays checked out until it expires"),
        },
        Ok(true) => {}
        Err(e) => tracing::warn!(error = %e, "checkout failed; the hold stays checked out until it expires"),
    }
}

/// Writes the checkout in one statement (`ledger::repo::CHECKOUT`), priced from the cached
/// showtime; if its prices or currency changed since, the statement writes nothing and says so,
/// and the checkout is priced again from what it read (once: a second change is a 503, retried
/// by the client with the same key).
#[expect(clippy::too_many_arguments, reason = "one call site; every argument is a distinct fact of the checkout")]
async fn record(
    state: &AppState,
    user: AuthUser,
    showtime_id: Uuid,
    hold_id: Uuid,
    expires_at_ms: i64,
    seats: &[Uuid],
    key: &str,
    token: &str,
) -> Result<(CheckoutAccepted, outbox::Staged), ApiError> {
    let layout = state.layouts.get(&state.db, showtime_id).await?;
    let showtime = crate::catalog::service::get_showtime(state, showtime_id).await?;
    let (mut prices, mut currency) = (showtime.prices, showtime.currency);
    let (reservation_id, payment_id) = (Uuid::now_v7(), Uuid::now_v7());
    let task = outbox::prepare(&PaymentTask::new(PaymentAction::Charge, payment_id, reservation_id))?;
    let deadline = DateTime::from_timestamp_millis(expires_at_ms).unwrap_or_else(Utc::now) + DEADLINE_GRACE;
    let mut conn = state.db.acquire().await?;
    for _ in 0..2 {
        let priced = price(&layout, seats, &prices)?;
        let reservation = NewReservation {
            id: reservation_id,
            user_id: user.id,
            showtime_id,
            hold_id,
            amount_minor: priced.iter().map(|(_, _, p)| p).sum(),
            currency: &currency,
            deadline,
            seats: &priced,
        };
        let accepted = CheckoutAccepted {
            reservation_id,
            status: ReservationStatus::PaymentPending,
            amount: reservation.amount_minor,
            currency: currency.clone(),
            hold_id,
            deadline,
        };
        let answer = serde_json::to_value(&accepted).map_err(anyhow::Error::from)?;
        let checkout = ledger::Checkout {
            reservation: &reservation,
            prices: &prices,
            payment_id,
            payment_token: token,
            idempotency_key: key,
            task: &task,
            answer: &answer,
        };
        let written = ledger::record_checkout(&mut conn, &checkout)
            .await
            .map_err(on_constraint("reservations_hold_id_key", || {
                ApiError::Conflict("this hold is already checked out".into())
            }))?;
        let now = match written {
            CheckoutWritten::Written => {
                tracing::info!(reservation.id = %reservation_id, payment.id = %payment_id, amount = accepted.amount, "checkout accepted");
                return Ok((accepted, task));
            }
            CheckoutWritten::NoShowtime => return Err(ApiError::NotFound("no such showtime")),
            CheckoutWritten::Refused(now) => now,
        };
        if now.status == ShowtimeStatus::Cancelled {
            return Err(ApiError::Conflict("the showtime is cancelled".into()));
        }
        if now.prices.0 == prices && now.currency == currency {
            return Err(ApiError::Conflict("the showtime has already started".into()));
        }
        // The cached showtime was older than a change of its prices: price from the row.
        (prices, currency) = (now.prices.0, now.currency);
    }
    Err(ApiError::Unavailable(anyhow::anyhow!("the showtime's prices changed twice during one checkout")))
}

/// Each held seat with its category and its price in `prices`.
fn price(
    layout: &crate::holds::layout::Layout,
    seats: &[Uuid],
    prices: &std::collections::BTreeMap<String, i64>,
) -> Result<Vec<(Uuid, String, i64)>, ApiError> {
    seats
        .iter()
        .map(|seat| {
            let category = layout.seat(*seat).map(|s| s.category.clone()).ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("held seat {seat} is not in the showtime's layout"))
            })?;
            let price = *prices
                .get(&category)
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("showtime has no price for category {category}")))?;
            Ok((*seat, category, price))
        })
        .collect()
}
