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

use super::hub::{Permit, Subscription, Update};
use super::limits::ClientPermit;
use crate::error::ApiError;
use crate::holds::service::{self, SeatMap, SeatState};
use crate::state::AppState;

/// How long a client waits before reconnecting after the stream ends (the SSE `retry:` field).
pub const RETRY_MS: u64 = 2000;

/// Snapshots (and batches of changes larger than this) go out in parts of at most this size,
/// and the stream yields between two parts, so the HTTP layer writes each part to the socket
/// before it copies the next into the connection's write buffer. That buffer keeps its largest size for the connection's life
/// (up to 128 KiB): fed the whole 120 KB snapshot of a 1000-seat showtime at once, it kept
/// every idle stream at 150 KiB of memory, and 8 KiB parts without the yield still at 92 KiB.
const CHUNK: usize = 4 * 1024;

/// `bytes` as parts of at most [`CHUNK`] bytes (no copy).
fn parts(bytes: &Bytes) -> VecDeque<Bytes> {
    (0..bytes.len()).step_by(CHUNK).map(|start| bytes.slice(start..(start + CHUNK).min(bytes.len()))).collect()
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

/// A `snapshot` frame of the showtime as it is now, in parts (see [`CHUNK`]), and the
/// subscription generation it is current for. Called once the stream is subscribed, it takes a
/// seat status read that began after this call (never an older cached one, whose changes the
/// subscription did not see); streams opening together share that read and its JSON, so
/// every part but the first line (`id`, `event`) is shared, never a copy per stream.
pub async fn snapshot_frame(state: &AppState, showtime_id: Uuid) -> Result<(VecDeque<Bytes>, u64), ApiError> {
    let generation = state.live.generation();
    let (read, layout) = service::seat_snapshot(state, showtime_id, Some(std::time::Instant::now())).await?;
    let data = state.live.snapshot_data(showtime_id, &read, || {
        let snapshot = Snapshot::from(read.render(&layout, None));
        Bytes::from(serde_json::to_vec(&snapshot).unwrap_or_else(|_| b"null".to_vec()))
    });
    let mut out = VecDeque::with_capacity(data.len().div_ceil(CHUNK) + 2);
    out.push_back(Bytes::from(format!("id: {}\nevent: snapshot\ndata: ", state.live.next_id())));
    out.extend(parts(&data));
    out.push_back(Bytes::from_static(b"\n\n"));
    Ok((out, generation))
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
    /// Parts of a snapshot (or of a large batch of changes) still to send (see [`CHUNK`]).
    pending: VecDeque<Bytes>,
    /// The last item returned was one of those parts: yield before the next one.
    in_parts: bool,
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
        mut snapshot: VecDeque<Bytes>,
        generation: u64,
    ) -> Self {
        let period = state.live.config().heartbeat;
        let stop = state.live.stop_token();
        snapshot.push_front(Bytes::from(format!("retry: {RETRY_MS}\n")));
        Self {
            heartbeat: tokio::time::interval_at(Instant::now() + period, period),
            state,
            showtime_id,
            sub,
            generation,
            stop,
            pending: snapshot,
            in_parts: false,
            resync: None,
            _permit: permit,
        }
    }

    /// The next bytes to send; `None` ends the stream.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if !self.pending.is_empty() {
                if self.in_parts {
                    // Pending once: the HTTP layer writes what it has before asking again.
                    tokio::task::yield_now().await;
                }
                self.in_parts = true;
                let part = self.pending.pop_front();
                if self.pending.is_empty() {
                    // Idle from here on: give the parts' queue back.
                    self.pending = VecDeque::new();
                }
                return part;
            }
            self.in_parts = false;
            if let Some(reason) = self.resync.take() {
                metrics::counter!("seatgate_sse_resyncs_total", "reason" => format!("{reason:?}").to_lowercase())
                    .increment(1);
                // Boxed: the snapshot's read is a large future, and every idle stream would
                // carry room for it inline.
                if !Box::pin(self.resync_snapshot()).await {
                    return None;
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return None,
                update = self.sub.rx.recv() => match update {
                    Ok(Update::Event(batch)) if batch.len() <= CHUNK => return Some(batch),
                    Ok(Update::Event(batch)) => self.pending = parts(&batch),
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
    /// may still be reconnecting), queued as the parts to send; `false` ends the stream, and the
    /// client reconnects after `retry` and gets a snapshot or an error status.
    async fn resync_snapshot(&mut self) -> bool {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=RESYNC_ATTEMPTS {
            match snapshot_frame(&self.state, self.showtime_id).await {
                Ok((parts, generation)) => {
                    self.generation = generation;
                    self.pending = parts;
                    return true;
                }
                Err(e) if attempt == RESYNC_ATTEMPTS => {
                    tracing::warn!(error = %e, showtime.id = %self.showtime_id, "resync snapshot failed; ending the stream");
                }
                Err(_) => {
                    tokio::select! {
                        _ = self.stop.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay *= 2;
                }
            }
        }
        false
    }

    /// The session as a response body.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        futures_util::stream::unfold(self, |mut session| async move {
            let frame = session.next_frame().await?;
            Some((Ok(frame), session))
        })
    }
}
