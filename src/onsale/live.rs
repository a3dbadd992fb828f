//! Live place in line: `GET /api/v1/showtimes/{id}/queue/me/events`, server-sent events for one
//! signed-in user. One Redis pub/sub subscription per process (`PSUBSCRIBE
//! <prefix>:{st:*}:q:events`) receives the admitter's `opened`, `admitted`, `paused` and
//! `resumed` events and fans them out per showtime. A stream reads its user's entry once; on
//! each `admitted` event it computes the new place from the event's `popped` count (admissions
//! only pop the head of the line, see `lua/queue_join.lua`), so 100,000 waiting users cost no
//! Redis reads per admission. It reads the entry again only when the place cannot be computed:
//! at opening, on pause or resume, when its own admission comes, after missed events, and when
//! an admission runs out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::service::{self, EntrySnapshot, QueueEntry, QueueState};
use crate::auth::AuthUser;
use crate::infra::redis::{Keys, RedisPool};
use crate::live::hub::{Permit, frame};
use crate::live::limits::ClientPermit;
use crate::state::AppState;

/// What the admitter publishes (`lua/queue_admit.lua`, `store::publish`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum QueueEvent {
    Opened {
        popped: u64,
    },
    Admitted {
        popped: u64,
    },
    Paused,
    Resumed,
    /// Not published: the subscription was re-established and events may have been missed.
    #[serde(skip)]
    Resync,
}

/// The per-process subscription to queue events.
#[derive(Clone)]
pub struct QueueHub {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    redis: RedisPool,
    channels: Mutex<HashMap<Uuid, broadcast::Sender<QueueEvent>>>,
    started: AtomicBool,
    stop: CancellationToken,
}

impl std::fmt::Debug for QueueHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueHub").finish_non_exhaustive()
    }
}

/// A stream's receiver for one showtime; the last one dropped forgets the showtime.
pub struct QueueSubscription {
    rx: broadcast::Receiver<QueueEvent>,
    hub: QueueHub,
    showtime_id: Uuid,
}

impl Drop for QueueSubscription {
    fn drop(&mut self) {
        if let Ok(mut channels) = self.hub.inner.channels.lock()
            && channels.get(&self.showtime_id).is_some_and(|tx| tx.receiver_count() <= 1)
        {
            channels.remove(&self.showtime_id);
        }
    }
}

impl QueueHub {
    /// A hub that subscribes on first use and stops with `stop`.
    pub fn new(keys: Keys, redis: RedisPool, stop: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner { keys, redis, channels: Mutex::default(), started: AtomicBool::new(false), stop }),
        }
    }

    /// Starts receiving the queue events of one showtime.
    pub fn subscribe(&self, showtime_id: Uuid) -> QueueSubscription {
        if !self.inner.started.swap(true, Ordering::SeqCst) {
            let inner = Arc::clone(&self.inner);
            match self.inner.redis.runtime() {
                Some(runtime) => {
                    runtime.spawn(listen(inner));
                }
                None => {
                    tokio::spawn(listen(inner));
                }
            }
        }
        let rx = match self.inner.channels.lock() {
            Ok(mut channels) => channels.entry(showtime_id).or_insert_with(|| broadcast::channel(64).0).subscribe(),
            Err(_) => broadcast::channel(1).1,
        };
        QueueSubscription { rx, hub: self.clone(), showtime_id }
    }
}

async fn listen(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(100);
    let pattern = inner.keys.queue_events_pattern();
    while !inner.stop.is_cancelled() {
        let connect = async {
            let (mut sink, stream) = inner.redis.client().get_async_pubsub().await?.split();
            sink.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        match tokio::time::timeout(inner.redis.timeout(), connect).await {
            Ok(Ok((_sink, mut stream))) => {
                backoff = Duration::from_millis(100);
                inner.broadcast_all(QueueEvent::Resync);
                loop {
                    tokio::select! {
                        _ = inner.stop.cancelled() => return,
                        msg = stream.next() => match msg {
                            Some(msg) => inner.dispatch(&msg),
                            None => break,
                        },
                    }
                }
                tracing::warn!("queue events subscription lost, reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot subscribe to queue events, retrying"),
            Err(_) => tracing::warn!("subscribing to queue events timed out, retrying"),
        }
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

impl Inner {
    fn broadcast_all(&self, event: QueueEvent) {
        if let Ok(channels) = self.channels.lock() {
            for tx in channels.values() {
                let _ = tx.send(event);
            }
        }
    }

    fn dispatch(&self, msg: &redis::Msg) {
        let Some(showtime_id) = self.keys.showtime_of_queue_events(msg.get_channel_name()) else { return };
        let Ok(channels) = self.channels.lock() else { return };
        let Some(tx) = channels.get(&showtime_id) else { return };
        match serde_json::from_slice::<QueueEvent>(msg.get_payload_bytes()) {
            Ok(event) => {
                let _ = tx.send(event);
            }
            Err(e) => tracing::warn!(error = %e, showtime.id = %showtime_id, "undecodable queue event ignored"),
        }
    }
}

/// One user's stream of `entry` events.
pub struct QueueSession {
    state: AppState,
    user: AuthUser,
    showtime_id: Uuid,
    sub: QueueSubscription,
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
    /// Opens a stream: subscribes first, then reads the entry, so no admission falls between.
    pub async fn open(
        state: AppState,
        user: AuthUser,
        showtime_id: Uuid,
        permits: (Permit, ClientPermit),
    ) -> Result<Self, crate::error::ApiError> {
        let sub = state.queue_hub.subscribe(showtime_id);
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
                    Ok(QueueEvent::Admitted { popped }) => {
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
                    Ok(QueueEvent::Opened { .. } | QueueEvent::Paused | QueueEvent::Resumed | QueueEvent::Resync)
                    | Err(RecvError::Lagged(_)) => {
                        if let Some(frame) = self.reread().await? {
                            return Some(frame);
                        }
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admitters_events_decode() {
        let admitted: QueueEvent =
            serde_json::from_str(r#"{"type":"admitted","count":3,"popped":12,"until_ms":1,"at":2}"#).expect("decodes");
        assert_eq!(admitted, QueueEvent::Admitted { popped: 12 });
        assert_eq!(serde_json::from_str::<QueueEvent>(r#"{"type":"paused"}"#).expect("decodes"), QueueEvent::Paused);
    }

    #[test]
    fn only_queue_channels_of_the_own_prefix_name_a_showtime() {
        let keys = Keys::new("sg");
        let id = Uuid::now_v7();
        assert_eq!(keys.showtime_of_queue_events(&keys.showtime(id).queue.events), Some(id));
        assert_eq!(keys.showtime_of_queue_events(&keys.showtime(id).events), None);
        assert_eq!(Keys::new("sg2").showtime_of_queue_events(&keys.showtime(id).queue.events), None);
    }
}
