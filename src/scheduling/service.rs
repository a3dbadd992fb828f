//! Rules of moving and cancelling a showtime, across catalog, holds and ledger.

use uuid::Uuid;

use crate::catalog::model::{Showtime, ShowtimePatch};
use crate::catalog::{cache, repo as catalog, service as showtimes};
use crate::error::ApiError;
use crate::holds::service::refresh_meta;
use crate::ledger::cancel::{cancel_sales_of_showtime, settle_cancelled_sales};
use crate::state::AppState;

/// Moves a showtime or changes its prices; the hold scripts learn its new start at once.
pub async fn reschedule(state: &AppState, id: Uuid, patch: ShowtimePatch) -> Result<Showtime, ApiError> {
    let showtime = showtimes::update_showtime(state, id, patch).await?;
    refresh_meta(state, id, showtime.starts_at, false).await;
    Ok(showtime)
}

/// Cancels a showtime, and with it every booking of it (refunded through the payment queue)
/// and every reservation still waiting for payment, in one transaction. Cancelling a cancelled
/// showtime changes nothing and succeeds.
#[tracing::instrument(skip_all, fields(showtime.id = %id))]
pub async fn cancel_showtime(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await?;
    if !catalog::cancel_showtime(&mut tx, id).await? {
        catalog::find_showtime(&mut tx, id).await?.ok_or(ApiError::NotFound("no such showtime"))?;
        return Ok(());
    }
    let sales = cancel_sales_of_showtime(&mut tx, id).await?;
    let starts_at = catalog::find_showtime(&mut tx, id).await?.map(|s| s.starts_at);
    tx.commit().await?;
    cache::invalidate(state).await;
    if let Some(starts_at) = starts_at {
        refresh_meta(state, id, starts_at, true).await;
    }
    settle_cancelled_sales(state, id, &sales).await;
    tracing::info!("showtime cancelled");
    Ok(())
}
