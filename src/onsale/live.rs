//! Live place in line: `GET /api/v1/showtimes/{id}/queue/me/events`, server-sent events for one
//! signed-in user. The admitter's `opened`, `admitted`, `paused` and `resumed` events reach the
//! process through the live hub's subscription (`crate::live::hub`: a pattern subscription on
//! one Redis, SSUBSCRIBE to each watched showtime's `q:events` channel on a Redis Cluster), which
//! decodes each once and fans it out per showtime. A stream reads its user's entry once; on
//! each `admitted` event it computes the new place from the event's `popped` count (admissions
//! only pop the head of the line, see `lua/queue_join.lua`), so 100,000 waiting users cost no
//! Redis reads per admission. It reads the entry again only when the place cannot be computed:
//! at opening, on pause or resume, when its own admission comes, after missed events (a
//! resubscription or a lagging stream), and when an admission runs out.

use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::service::{self, EntrySnapshot, QueueEntry, QueueState};
use crate::auth::AuthUser;
pub use crate::live::hub::QueueEvent;
use crate::live::hub::{Permit, Subscription, Update, frame};
use crate::live::limits::ClientPermit;
use crate::state::AppState;

/// One user's stream of `entry` events.
pub struct QueueSession {
    state: AppState,
    user: AuthUser,
    showtime_id: Uuid,
    sub: Subscription,
    snapshot: EntrySnapshot,
    heartbeat: tokio::time::Interval,
    stop: CancellationToken,
    first: Option<Bytes>,
    done: bool,
    _permits: (Permit, ClientPermit),
}

fn entry_frame(state: &AppState, entry: &QueueEntry) -> Bytes {
    frame(state.live.next_id(), "entry", entry)
}

impl QueueSession {
    /// Opens a stream: subscribes first (and waits, at most the Redis timeout, until the
    /// subscription is live), then reads the entry, so no admission falls between.
    pub async fn open(
        state: AppState,
        user: AuthUser,
        showtime_id: Uuid,
        permits: (Permit, ClientPermit),
    ) -> Result<Self, crate::error::ApiError> {
        let sub = state.live.subscribe_queue(showtime_id);
        state.live.wait_queue_connected(showtime_id, state.redis.timeout()).await;
        let snapshot = service::entry_snapshot(&state, user, showtime_id).await?;
        let mut first = format!("retry: {}\n", crate::live::stream::RETRY_MS).into_bytes();
        first.extend_from_slice(&entry_frame(&state, &snapshot.entry));
        let period = state.live.config().heartbeat;
        Ok(Self {
            heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + period, period),
            stop: state.live.stop_token(),
            state,
            user,
            showtime_id,
            sub,
            snapshot,
            first: Some(Bytes::from(first)),
            done: false,
            _permits: permits,
        })
    }

    /// When the current admission runs out, if the user is admitted.
    fn admission_ends_in(&self) -> Option<Duration> {
        let until = self.snapshot.entry.admitted_until.filter(|_| self.snapshot.entry.state == QueueState::Admitted)?;
        Some((until - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(50))
    }

    /// Reads the entry again; `Some(frame)` when it changed, `Some(None)` when it did not, and
    /// `None` to end the stream (Redis trouble: the client reconnects after `retry`).
    async fn reread(&mut self) -> Option<Option<Bytes>> {
        match service::entry_snapshot(&self.state, self.user, self.showtime_id).await {
            Ok(snapshot) => {
                let changed =
                    serde_json::to_value(&snapshot.entry).ok() != serde_json::to_value(&self.snapshot.entry).ok();
                self.snapshot = snapshot;
                if self.snapshot.entry.state == QueueState::Expired {
                    self.done = true;
                }
                Some(changed.then(|| entry_frame(&self.state, &self.snapshot.entry)))
            }
            Err(e) => {
                tracing::warn!(error = %e, showtime.id = %self.showtime_id, "queue stream cannot read the entry; ending it");
                None
            }
        }
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.done {
            return None;
        }
        loop {
            let expiry = self.admission_ends_in();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return None,
                event = self.sub.rx.recv() => match event {
                    Ok(Update::Queue(QueueEvent::Admitted { popped })) => {
                        if self.snapshot.entry.state != QueueState::Waiting {
                            continue;
                        }
                        match self.snapshot.moved_to(popped) {
                            Some(entry) => {
                                let changed = entry.position != self.snapshot.entry.position;
                                self.snapshot.entry = entry;
                                self.snapshot.popped = popped;
                                if changed {
                                    return Some(entry_frame(&self.state, &self.snapshot.entry));
                                }
                            }
                            None => {
                                if let Some(frame) = self.reread().await? {
                                    return Some(frame);
                                }
                            }
                        }
                    }
                    Ok(Update::Queue(QueueEvent::Opened { .. } | QueueEvent::Paused | QueueEvent::Resumed)
                    | Update::Resync(_))
                    | Err(RecvError::Lagged(_)) => {
                        if let Some(frame) = self.reread().await? {
                            return Some(frame);
                        }
                    }
                    Ok(Update::Event(_) | Update::Changed) => {}
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(expiry.unwrap_or(Duration::from_secs(3600))), if expiry.is_some() => {
                    if let Some(frame) = self.reread().await? {
                        return Some(frame);
                    }
                }
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
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
