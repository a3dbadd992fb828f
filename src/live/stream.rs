//! One client's event stream: the first snapshot, then the showtime's changes as they come,
//! heartbeats in between, a fresh snapshot whenever changes may have been missed, and the end
//! of the stream when the server shuts down.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::hub::{Permit, Subscription, Update, frame};
use super::limits::ClientPermit;
use crate::error::ApiError;
use crate::holds::service::{self, SeatMap, SeatState};
use crate::state::AppState;

/// How long a client waits before reconnecting after the stream ends (the SSE `retry:` field).
pub const RETRY_MS: u64 = 2000;

/// Snapshots go out in parts of at most this size. The HTTP layer copies each part into the
/// connection's write buffer, which keeps its largest size for the connection's life: one
/// 120 KB snapshot of a 1000-seat showtime kept every idle stream at 150 KiB of memory.
const CHUNK: usize = 8 * 1024;

/// A frame cut into parts of at most [`CHUNK`] bytes (no copy).
fn chunks(frame: Bytes) -> VecDeque<Bytes> {
    (0..frame.len()).step_by(CHUNK).map(|start| frame.slice(start..(start + CHUNK).min(frame.len()))).collect()
}

/// Snapshots tried before a stream that needs one gives up (100 ms, 200 ms, ... apart).
const RESYNC_ATTEMPTS: u32 = 5;

/// One seat of a snapshot: the seat map's seat without `held_by_me` (streams are anonymous).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveSeat {
    pub id: Uuid,
    pub row: String,
    pub number: i32,
    pub category: String,
    /// Price in minor units of the showtime's currency.
    pub price: i64,
    pub status: SeatState,
}

/// The `data:` of a `snapshot` event: every seat with its status right now.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Snapshot {
    /// Always `snapshot`.
    pub r#type: String,
    pub showtime_id: Uuid,
    pub currency: String,
    pub seats: Vec<LiveSeat>,
}

impl From<SeatMap> for Snapshot {
    fn from(map: SeatMap) -> Self {
        let seats = map
            .seats
            .into_iter()
            .map(|s| LiveSeat {
                id: s.id,
                row: s.row,
                number: s.number,
                category: s.category,
                price: s.price,
                status: s.status,
            })
            .collect();
        Self { r#type: "snapshot".into(), showtime_id: map.showtime_id, currency: map.currency, seats }
    }
}

/// A `snapshot` frame of the showtime as it is now, and the subscription generation it is
/// current for. Called once the stream is subscribed, it takes a seat status read that began
/// after this call (never an older cached one, whose changes the subscription did not see);
/// streams opening together share that read.
pub async fn snapshot_frame(state: &AppState, showtime_id: Uuid) -> Result<(Bytes, u64), ApiError> {
    let generation = state.live.generation();
    let map = service::seat_map_since(state, showtime_id, std::time::Instant::now()).await?;
    Ok((frame(state.live.next_id(), "snapshot", &Snapshot::from(map)), generation))
}

/// Why a stream sends a snapshot after its first one (the `reason` label of
/// `seatgate_sse_resyncs_total`).
#[derive(Clone, Copy, Debug)]
enum Resync {
    Lagged,
    Resubscribed,
}

/// Everything one stream needs between two frames.
pub struct Session {
    state: AppState,
    showtime_id: Uuid,
    sub: Subscription,
    generation: u64,
    heartbeat: Interval,
    stop: CancellationToken,
    /// Parts of a snapshot still to send (see [`CHUNK`]).
    pending: VecDeque<Bytes>,
    resync: Option<Resync>,
    _permit: (Permit, ClientPermit),
}

impl Session {
    /// A stream that starts with `snapshot` (taken at `generation`, after `sub` was made).
    pub fn new(
        state: AppState,
        showtime_id: Uuid,
        sub: Subscription,
        permit: (Permit, ClientPermit),
        snapshot: Bytes,
        generation: u64,
    ) -> Self {
        let period = state.live.config().heartbeat;
        let stop = state.live.stop_token();
        let mut first = format!("retry: {RETRY_MS}\n").into_bytes();
        first.extend_from_slice(&snapshot);
        Self {
            heartbeat: tokio::time::interval_at(Instant::now() + period, period),
            state,
            showtime_id,
            sub,
            generation,
            stop,
            pending: chunks(Bytes::from(first)),
            resync: None,
            _permit: permit,
        }
    }

    /// The next frame to send; `None` ends the stream.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(part) = self.pending.pop_front() {
            return Some(part);
        }
        loop {
            if let Some(reason) = self.resync.take() {
                metrics::counter!("seatgate_sse_resyncs_total", "reason" => format!("{reason:?}").to_lowercase())
                    .increment(1);
                return self.resync_snapshot().await;
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return None,
                update = self.sub.rx.recv() => match update {
                    Ok(Update::Event(frame)) => return Some(frame),
                    Ok(Update::Resync(generation)) if generation > self.generation => self.resync = Some(Resync::Resubscribed),
                    Ok(Update::Resync(_) | Update::Changed | Update::Queue(_)) => {}
                    Err(RecvError::Lagged(_)) => self.resync = Some(Resync::Lagged),
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
            }
        }
    }

    /// A fresh snapshot, retried briefly (right after Redis comes back the shared connection
    /// may still be reconnecting); `None` ends the stream, and the client reconnects after
    /// `retry` and gets a snapshot or an error status.
    async fn resync_snapshot(&mut self) -> Option<Bytes> {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=RESYNC_ATTEMPTS {
            match snapshot_frame(&self.state, self.showtime_id).await {
                Ok((frame, generation)) => {
                    self.generation = generation;
                    self.pending = chunks(frame);
                    return self.pending.pop_front();
                }
                Err(e) if attempt == RESYNC_ATTEMPTS => {
                    tracing::warn!(error = %e, showtime.id = %self.showtime_id, "resync snapshot failed; ending the stream");
                }
                Err(_) => {
                    tokio::select! {
                        _ = self.stop.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay *= 2;
                }
            }
        }
        None
    }

    /// The session as a response body.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        futures_util::stream::unfold(self, |mut session| async move {
            let frame = session.next_frame().await?;
            Some((Ok(frame), session))
        })
    }
}
