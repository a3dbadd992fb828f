//! A buyer's reservation as server-sent events: `GET /api/v1/reservations/{id}/events`. The
//! outcome of a checkout is pushed, not polled: the ledger PUBLISHes on the reservation's
//! channel after each commit that settles it ([`super::events::deliver`]), the process' one
//! pub/sub subscription ([`crate::live::LiveHub`]) hands that to the reservation's streams, and
//! each stream reads the row once per change. No stream reads PostgreSQL in a loop.
//!
//! A stream subscribes first and reads the row second, so a change that commits between the two
//! is either in the first read or arrives as a message. It sends the `reservation` event (the
//! view of `GET /api/v1/reservations/{id}`), then, while the reservation waits for its payment,
//! heartbeats and one event when the status changes (`confirmed`, `failed`, `expired` or
//! `cancelled`, with the same view as data), and ends. It reads the row again when the pub/sub
//! subscription was re-established (messages may have been missed meanwhile) and once when the
//! reservation's deadline passed (a push lost to a crash between commit and publish).

use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::bookings::{self, Reservation};
use crate::auth::AuthUser;
use crate::domain::ReservationStatus;
use crate::error::ApiError;
use crate::live::hub::{Permit, Subscription, Update, frame};
use crate::live::limits::ClientPermit;
use crate::live::stream::RETRY_MS;
use crate::state::AppState;

/// After the deadline, the reconciler expires a reservation within its sweep; the stream's
/// safety re-read waits this much longer.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// The SSE event name of a reservation in `status`.
pub fn event_name(status: ReservationStatus) -> &'static str {
    match status {
        ReservationStatus::PaymentPending => "payment_pending",
        ReservationStatus::Confirmed => "confirmed",
        ReservationStatus::Failed => "failed",
        ReservationStatus::Expired => "expired",
        ReservationStatus::Cancelled => "cancelled",
    }
}

/// A stream of `user`'s reservation `id` (404 for anyone else's), admitted under the stream
/// caps that `permit` holds.
pub async fn open(
    state: &AppState,
    user: AuthUser,
    id: Uuid,
    permit: (Permit, ClientPermit),
) -> Result<ReservationSession, ApiError> {
    open_with(state, user, id, permit, async {}).await
}

/// [`open`], awaiting `after_first_read` once the first view is read and before the stream
/// starts. Tests settle the reservation there: a change that lands after the first read must
/// still reach the stream.
pub async fn open_with(
    state: &AppState,
    user: AuthUser,
    id: Uuid,
    permit: (Permit, ClientPermit),
    after_first_read: impl Future<Output = ()>,
) -> Result<ReservationSession, ApiError> {
    // Subscribe before reading: whatever commits after the read is published after it, and the
    // subscription is live by then.
    let sub = state.live.subscribe_reservation(id);
    state.live.wait_reservation_connected(id, state.redis.timeout()).await;
    let generation = state.live.generation();
    let view = bookings::get_reservation(state, user, id).await?;
    after_first_read.await;
    Ok(ReservationSession::new(state.clone(), user, sub, permit, view, generation))
}

/// Everything one reservation stream needs between two frames.
pub struct ReservationSession {
    state: AppState,
    user: AuthUser,
    id: Uuid,
    status: ReservationStatus,
    sub: Subscription,
    generation: u64,
    heartbeat: Interval,
    /// When to read the row once more without a message; `None` once done.
    recheck_at: Option<Instant>,
    stop: CancellationToken,
    /// The first frame, until sent.
    first: Option<Bytes>,
    done: bool,
    _permit: (Permit, ClientPermit),
}

impl ReservationSession {
    fn new(
        state: AppState,
        user: AuthUser,
        sub: Subscription,
        permit: (Permit, ClientPermit),
        view: Reservation,
        generation: u64,
    ) -> Self {
        let period = state.live.config().heartbeat;
        let until_deadline = (view.deadline - chrono::Utc::now()).to_std().unwrap_or_default();
        let mut first = format!("retry: {RETRY_MS}\n").into_bytes();
        first.extend_from_slice(&frame(state.live.next_id(), "reservation", &view));
        Self {
            heartbeat: tokio::time::interval_at(Instant::now() + period, period),
            recheck_at: Some(Instant::now() + until_deadline + DEADLINE_GRACE),
            stop: state.live.stop_token(),
            id: view.id,
            status: view.status,
            done: view.status != ReservationStatus::PaymentPending,
            first: Some(Bytes::from(first)),
            state,
            user,
            sub,
            generation,
            _permit: permit,
        }
    }

    /// The next frame to send; `None` ends the stream.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            if self.done {
                return None;
            }
            let recheck = async {
                match self.recheck_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let reread = tokio::select! {
                biased;
                _ = self.stop.cancelled() => return None,
                update = self.sub.rx.recv() => match update {
                    Ok(Update::Changed) => "changed",
                    Ok(Update::Resync(generation)) if generation > self.generation => {
                        self.generation = generation;
                        "resubscribed"
                    }
                    Ok(Update::Resync(_) | Update::Event(_) | Update::Queue(_)) => continue,
                    Err(RecvError::Lagged(_)) => "lagged",
                    Err(RecvError::Closed) => return None,
                },
                () = recheck => {
                    self.recheck_at = None;
                    "deadline"
                }
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
            };
            metrics::counter!("seatgate_reservation_stream_reads_total", "reason" => reread).increment(1);
            match bookings::get_reservation(&self.state, self.user, self.id).await {
                Ok(view) if view.status == self.status => {}
                Ok(view) => {
                    self.status = view.status;
                    self.done = view.status != ReservationStatus::PaymentPending;
                    return Some(frame(self.state.live.next_id(), event_name(view.status), &view));
                }
                Err(e) => {
                    // The client reconnects after `retry` and reads the reservation afresh.
                    tracing::warn!(error = %e, reservation.id = %self.id, "cannot re-read the reservation; ending its stream");
                    return None;
                }
            }
        }
    }

    /// The session as a response body.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        futures_util::stream::unfold(self, |mut session| async move {
            let frame = session.next_frame().await?;
            Some((Ok(frame), session))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_event_name() {
        let names: std::collections::HashSet<_> = [
            ReservationStatus::PaymentPending,
            ReservationStatus::Confirmed,
            ReservationStatus::Failed,
            ReservationStatus::Expired,
            ReservationStatus::Cancelled,
        ]
        .into_iter()
        .map(event_name)
        .collect();
        assert_eq!(names.len(), 5);
        assert!(names.contains("confirmed") && names.contains("failed"));
    }
}
