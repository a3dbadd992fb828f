//! One Redis pub/sub subscription per process, shared by every event stream of the process.
//!
//! A background task PSUBSCRIBEs to `<prefix>:{st:*}:events`, turns each message into an SSE
//! frame once (with the next id of the process-wide sequence) and, if anyone watches that
//! showtime, adds it to the showtime's batch. A batch goes to the showtime's
//! `tokio::sync::broadcast` channel `SEATGATE_SSE_COALESCE_MS` after its first change, as one
//! [`Update::Event`]: each stream then wakes and writes once per batch, not once per change.
//! With 2,000 streams, one wake-up of every stream per change queued ahead of the API requests
//! served by the same workers and made a hold 10-15 times slower (docs/BENCHMARKS.md). The same
//! subscription carries the reservations' channels (`<prefix>:{r:*}:events`, published by the
//! ledger after each commit that settles one): a message there becomes [`Update::Changed`] for
//! the streams of that reservation, if any stream of this process watches it. When the
//! connection drops (or stops answering PING) the task reconnects with back-off and tells every
//! stream to resend a snapshot, since changes published meanwhile were lost.
//!
//! The waiting room's channels (`<prefix>:{st:*}:q:events`, published by the admitter and by
//! pause/resume) ride the same subscription: each message is decoded once into a
//! [`QueueEvent`] and sent as [`Update::Queue`] to the queue streams of that showtime.
//!
//! On a Redis Cluster the scripts SPUBLISH (sharded pub/sub, which has no patterns), so the task
//! keeps one RESP3 cluster connection and SSUBSCRIBEs to the channel of each showtime, waiting
//! room and reservation someone here watches (on the node of its slot), SUNSUBSCRIBEs when the
//! last stream of it ends, and starts over (with a resync) when a node's connection is lost or
//! stops answering PING ([`listener`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::LiveConfig;
use crate::infra::redis::{Keys, RedisPool};

mod listener;
use listener::listen;

/// What the hub sends to the streams of one showtime.
#[derive(Clone, Debug)]
pub enum Update {
    /// One or more seat changes in order, already framed as SSE (shared by every stream).
    Event(Bytes),
    /// The pub/sub connection was (re)established as this generation: changes may have been
    /// missed before it, so streams with an older snapshot must send a new one.
    Resync(u64),
    /// The watched reservation changed status: read it again.
    Changed,
    /// An event of the watched waiting room.
    Queue(QueueEvent),
}

/// What the waiting room's admitter publishes (`lua/queue_admit.lua`, `onsale::store::publish`)
/// on a showtime's `q:events` channel.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum QueueEvent {
    Opened { popped: u64 },
    Admitted { popped: u64 },
    Paused,
    Resumed,
}

/// What a [`Subscription`] listens to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Topic {
    Showtime(Uuid),
    Reservation(Uuid),
    /// The waiting room of a showtime.
    Queue(Uuid),
}

/// The kinds of seat change the scripts publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Held,
    Released,
    Expired,
    Sold,
}

impl ChangeKind {
    /// The SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Sold => "sold",
        }
    }
}

/// The `data:` of a `held`, `released`, `expired` or `sold` event. Hold ids stay private.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeatChange {
    pub r#type: ChangeKind,
    pub showtime_id: Uuid,
    pub seat_ids: Vec<Uuid>,
    /// When the change happened, by Redis' clock.
    pub at: DateTime<Utc>,
}

/// A message as the Lua prelude publishes it.
#[derive(Deserialize)]
struct Published {
    r#type: ChangeKind,
    seat_ids: Vec<Uuid>,
    at: i64,
}

/// An SSE frame: `id`, `event`, one `data` line of JSON.
pub fn frame(id: u64, event: &str, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".to_owned());
    Bytes::from(format!("id: {id}\nevent: {event}\ndata: {json}\n\n"))
}

/// Handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    redis: RedisPool,
    config: LiveConfig,
    channels: Mutex<HashMap<Topic, broadcast::Sender<Update>>>,
    /// Framed changes per showtime not yet sent (see `SEATGATE_SSE_COALESCE_MS`). Locked
    /// before `channels` whenever both are held, and held while a batch is sent, so a
    /// [`Update::Resync`] never overtakes a batch of changes published before it.
    batches: Mutex<HashMap<Uuid, Batch>>,
    /// A first change went into an empty `batches`: the flusher starts a period.
    batched: tokio::sync::Notify,
    /// The latest `snapshot` data of each watched showtime, shared by the streams that send it
    /// (see [`LiveHub::snapshot_data`]).
    snapshots: Mutex<HashMap<Uuid, SharedSnapshot>>,
    seq: AtomicU64,
    connections: AtomicUsize,
    started: AtomicBool,
    /// `Some(generation)` while subscribed, `None` while not.
    connected: watch::Sender<Option<u64>>,
    stop: CancellationToken,
    /// Sharded pub/sub (a Redis Cluster): one subscription per watched showtime.
    sharded: bool,
    /// Sharded: the set of watched showtimes changed (a first stream, or a last one ended).
    changed: tokio::sync::Notify,
    /// Sharded: the showtimes whose channel is subscribed right now.
    subscribed: watch::Sender<HashSet<Topic>>,
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub").field("connections", &self.connections()).finish_non_exhaustive()
    }
}

/// Changes in one batch at most: a fuller batch goes out at once. It bounds what a showtime's
/// channel holds (`SEATGATE_SSE_BUFFER` batches) and keeps "too slow for the buffer" meaning a
/// client that fell behind by that many batches, even when changes come faster than a period.
pub const MAX_BATCH_CHANGES: usize = 64;

/// A showtime's framed changes not yet sent.
#[derive(Default)]
struct Batch {
    frames: Vec<u8>,
    changes: usize,
}

/// A seat status read and the `snapshot` data rendered from it, once, for every stream.
type SharedSnapshot = (Arc<crate::holds::snapshot::Snapshot>, Arc<std::sync::OnceLock<Bytes>>);

/// The instance already serves `SEATGATE_SSE_MAX_CONNECTIONS` streams.
#[derive(Debug, thiserror::Error)]
#[error("too many live seat map connections on this instance")]
pub struct AtCapacity;

/// One admitted stream; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    hub: LiveHub,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let left = self.hub.inner.connections.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!("seatgate_sse_connections").set(left as f64);
    }
}

/// A stream's receiver for one showtime (or reservation); dropping the last one forgets it.
#[derive(Debug)]
pub struct Subscription {
    pub rx: broadcast::Receiver<Update>,
    hub: LiveHub,
    topic: Topic,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut channels) = self.hub.inner.channels.lock() {
            // Our receiver still counts until this function returns.
            if channels.get(&self.topic).is_some_and(|tx| tx.receiver_count() <= 1) {
                channels.remove(&self.topic);
                if let Topic::Showtime(id) = self.topic
                    && let Ok(mut snapshots) = self.hub.inner.snapshots.lock()
                {
                    snapshots.remove(&id);
                }
                if self.hub.inner.sharded {
                    self.hub.inner.changed.notify_one();
                }
            }
        }
    }
}

impl LiveHub {
    /// A hub for this process; nothing connects until the first stream subscribes.
    pub fn new(keys: Keys, redis: RedisPool, config: LiveConfig) -> Self {
        let (connected, _) = watch::channel(None);
        let (subscribed, _) = watch::channel(HashSet::new());
        Self {
            inner: Arc::new(Inner {
                keys,
                sharded: redis.is_cluster(),
                changed: tokio::sync::Notify::new(),
                subscribed,
                redis,
                config,
                channels: Mutex::default(),
                batches: Mutex::default(),
                batched: tokio::sync::Notify::new(),
                snapshots: Mutex::default(),
                seq: AtomicU64::new(0),
                connections: AtomicUsize::new(0),
                started: AtomicBool::new(false),
                connected,
                stop: CancellationToken::new(),
            }),
        }
    }

    /// The settings the hub runs with.
    pub fn config(&self) -> &LiveConfig {
        &self.inner.config
    }

    /// The next id of the process-wide event sequence.
    pub fn next_id(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Streams open right now.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Cancelled when the server shuts down: streams end and the subscription closes.
    pub fn stop_token(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    /// Ends every stream and the subscription once `root` is cancelled, so graceful shutdown
    /// does not wait for streams that never end by themselves.
    pub fn stop_with(&self, root: CancellationToken) {
        let stop = self.inner.stop.clone();
        let task = async move {
            tokio::select! {
                _ = root.cancelled() => stop.cancel(),
                _ = stop.cancelled() => {}
            }
        };
        self.spawn(task);
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        match self.inner.redis.runtime() {
            Some(runtime) => {
                runtime.spawn(task);
            }
            None => {
                tokio::spawn(task);
            }
        }
    }

    /// Takes a connection slot, or refuses when the instance is at its cap.
    pub fn admit(&self) -> Result<Permit, AtCapacity> {
        let max = self.inner.config.max_connections;
        let taken =
            self.inner.connections.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1));
        match taken {
            Ok(n) => {
                metrics::gauge!("seatgate_sse_connections").set((n + 1) as f64);
                Ok(Permit { hub: self.clone() })
            }
            Err(_) => {
                metrics::counter!("seatgate_sse_refused_total").increment(1);
                Err(AtCapacity)
            }
        }
    }

    /// Starts receiving the changes of one showtime (and the subscription, on first use).
    pub fn subscribe(&self, showtime_id: Uuid) -> Subscription {
        self.subscribe_to(Topic::Showtime(showtime_id), self.inner.config.buffer)
    }

    /// Starts receiving [`Update::Changed`] whenever the ledger settles one reservation.
    pub fn subscribe_reservation(&self, reservation_id: Uuid) -> Subscription {
        // A stream re-reads the row on any change, so a few buffered nudges are plenty.
        self.subscribe_to(Topic::Reservation(reservation_id), 4)
    }

    /// Starts receiving [`Update::Queue`] for the waiting room of one showtime.
    pub fn subscribe_queue(&self, showtime_id: Uuid) -> Subscription {
        self.subscribe_to(Topic::Queue(showtime_id), 64)
    }

    fn subscribe_to(&self, topic: Topic, buffer: usize) -> Subscription {
        if !self.inner.started.swap(true, Ordering::SeqCst) {
            self.spawn(listen(self.inner.clone()));
            if !self.inner.config.coalesce.is_zero() {
                self.spawn(flush_batches(self.inner.clone()));
            }
        }
        let rx = match self.inner.channels.lock() {
            Ok(mut channels) => {
                channels.entry(topic).or_insert_with(|| broadcast::channel(buffer.max(1)).0).subscribe()
            }
            // A poisoned map: a receiver that never gets changes; streams still heartbeat.
            Err(_) => broadcast::channel(1).1,
        };
        if self.inner.sharded {
            self.inner.changed.notify_one();
        }
        Subscription { rx, hub: self.clone(), topic }
    }

    /// Waits (at most `timeout`) until the subscription is live (sharded: also the showtime's
    /// channel) and returns its generation; 0 when it is not, so the first successful
    /// connection triggers a resync.
    pub async fn wait_connected(&self, showtime_id: Uuid, timeout: Duration) -> u64 {
        self.wait_for(Topic::Showtime(showtime_id), timeout).await
    }

    /// [`Self::wait_connected`] for a reservation's channel.
    pub async fn wait_reservation_connected(&self, reservation_id: Uuid, timeout: Duration) -> u64 {
        self.wait_for(Topic::Reservation(reservation_id), timeout).await
    }

    /// [`Self::wait_connected`] for a waiting room's channel.
    pub async fn wait_queue_connected(&self, showtime_id: Uuid, timeout: Duration) -> u64 {
        self.wait_for(Topic::Queue(showtime_id), timeout).await
    }

    async fn wait_for(&self, topic: Topic, timeout: Duration) -> u64 {
        let ready = async {
            let mut connected = self.inner.connected.subscribe();
            let generation = connected.wait_for(Option::is_some).await.ok().and_then(|g| *g).unwrap_or(0);
            if self.inner.sharded {
                let mut subscribed = self.inner.subscribed.subscribe();
                let _ = subscribed.wait_for(|s| s.contains(&topic)).await;
            }
            generation
        };
        tokio::time::timeout(timeout, ready).await.unwrap_or(0)
    }

    /// The `snapshot` data (JSON) of a seat status read, rendered once per read and shared by
    /// every stream that sends it: streams opening together get one read (the seat status
    /// cache's), and now one rendering too, instead of a 120 KB copy each for 1,000 seats.
    pub fn snapshot_data(
        &self,
        showtime_id: Uuid,
        read: &Arc<crate::holds::snapshot::Snapshot>,
        render: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let slot = match self.inner.snapshots.lock() {
            Ok(mut snapshots) => {
                let entry = snapshots.entry(showtime_id).or_insert_with(|| (Arc::clone(read), Arc::default()));
                if !Arc::ptr_eq(&entry.0, read) {
                    *entry = (Arc::clone(read), Arc::default());
                }
                Arc::clone(&entry.1)
            }
            Err(_) => Arc::default(),
        };
        slot.get_or_init(render).clone()
    }

    /// The current generation of the subscription (0 while not subscribed).
    pub fn generation(&self) -> u64 {
        self.inner.connected.borrow().unwrap_or(0)
    }
}

impl Inner {
    /// The pub/sub channel of a topic.
    fn channel_of(&self, topic: Topic) -> String {
        match topic {
            Topic::Showtime(id) => self.keys.showtime(id).events,
            Topic::Reservation(id) => self.keys.reservation_events(id),
            Topic::Queue(id) => self.keys.showtime(id).queue.events,
        }
    }

    /// Sends `update` to every stream, after the batches not yet sent.
    fn broadcast_all(&self, update: Update) {
        let Ok(mut batches) = self.batches.lock() else { return };
        let Ok(channels) = self.channels.lock() else { return };
        Self::send_batches(&mut batches, &channels);
        for tx in channels.values() {
            let _ = tx.send(update.clone());
        }
    }

    /// Sends every showtime's batch of changes to its streams.
    fn flush(&self) {
        let Ok(mut batches) = self.batches.lock() else { return };
        let Ok(channels) = self.channels.lock() else { return };
        Self::send_batches(&mut batches, &channels);
    }

    fn send_batches(batches: &mut HashMap<Uuid, Batch>, channels: &HashMap<Topic, broadcast::Sender<Update>>) {
        for (showtime_id, batch) in batches.drain() {
            Self::send_batch(channels, showtime_id, batch);
        }
    }

    fn send_batch(channels: &HashMap<Topic, broadcast::Sender<Update>>, showtime_id: Uuid, batch: Batch) {
        if let Some(tx) = channels.get(&Topic::Showtime(showtime_id)) {
            let _ = tx.send(Update::Event(Bytes::from(batch.frames)));
        }
    }

    /// A framed change for the streams of `showtime_id`: sent at once, or added to its batch.
    fn publish(&self, showtime_id: Uuid, frame: Bytes) {
        if self.config.coalesce.is_zero() {
            if let Ok(channels) = self.channels.lock()
                && let Some(tx) = channels.get(&Topic::Showtime(showtime_id))
            {
                let _ = tx.send(Update::Event(frame));
            }
            return;
        }
        let Ok(mut batches) = self.batches.lock() else { return };
        let first = batches.is_empty();
        let batch = batches.entry(showtime_id).or_default();
        batch.frames.extend_from_slice(&frame);
        batch.changes += 1;
        if batch.changes >= MAX_BATCH_CHANGES
            && let Some(full) = batches.remove(&showtime_id)
            && let Ok(channels) = self.channels.lock()
        {
            Self::send_batch(&channels, showtime_id, full);
        }
        drop(batches);
        if first {
            self.batched.notify_one();
        }
    }

    fn dispatch(&self, msg: &redis::Msg) {
        if let Some(showtime_id) = self.keys.showtime_of_queue_events(msg.get_channel_name()) {
            return self.dispatch_queue(showtime_id, msg);
        }
        if let Some(reservation_id) = self.keys.reservation_of_events(msg.get_channel_name()) {
            if let Ok(channels) = self.channels.lock()
                && let Some(tx) = channels.get(&Topic::Reservation(reservation_id))
            {
                let _ = tx.send(Update::Changed);
            }
            return;
        }
        let Some(showtime_id) = self.keys.showtime_of_events(msg.get_channel_name()) else { return };
        // Nobody here watches this showtime: nothing to frame.
        let watched = self.channels.lock().is_ok_and(|c| c.contains_key(&Topic::Showtime(showtime_id)));
        if !watched {
            return;
        }
        let published: Published = match serde_json::from_slice(msg.get_payload_bytes()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, showtime.id = %showtime_id, "undecodable seat event ignored");
                return;
            }
        };
        let change = SeatChange {
            r#type: published.r#type,
            showtime_id,
            seat_ids: published.seat_ids,
            at: DateTime::from_timestamp_millis(published.at).unwrap_or_else(Utc::now),
        };
        let id = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.publish(showtime_id, frame(id, change.r#type.as_str(), &change));
        metrics::counter!("seatgate_sse_changes_total").increment(1);
    }

    /// A waiting room's event, decoded once for all the queue streams of its showtime.
    fn dispatch_queue(&self, showtime_id: Uuid, msg: &redis::Msg) {
        let Ok(channels) = self.channels.lock() else { return };
        let Some(tx) = channels.get(&Topic::Queue(showtime_id)) else { return };
        match serde_json::from_slice::<QueueEvent>(msg.get_payload_bytes()) {
            Ok(event) => {
                let _ = tx.send(Update::Queue(event));
            }
            Err(e) => tracing::warn!(error = %e, showtime.id = %showtime_id, "undecodable queue event ignored"),
        }
    }
}

/// Sends the batches of changes `SEATGATE_SSE_COALESCE_MS` after the first change of each
/// period, until the hub stops.
async fn flush_batches(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = inner.batched.notified() => {}
        }
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tokio::time::sleep(inner.config.coalesce) => inner.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_an_id_an_event_name_and_one_data_line() {
        let bytes = frame(7, "held", &serde_json::json!({"seat_ids": ["a"]}));
        assert_eq!(&bytes[..], b"id: 7\nevent: held\ndata: {\"seat_ids\":[\"a\"]}\n\n");
    }

    #[test]
    fn only_events_channels_of_the_own_prefix_name_a_showtime() {
        let keys = Keys::new("sg");
        let id = Uuid::now_v7();
        let channel = keys.showtime(id).events;
        assert_eq!(keys.showtime_of_events(&channel), Some(id));
        assert!(channel.starts_with("sg:{st:") && keys.events_pattern() == "sg:{st:*}:events");
        assert_eq!(Keys::new("sg2").showtime_of_events(&channel), None);
        assert_eq!(keys.showtime_of_events(&keys.showtime(id).holds), None);
        assert_eq!(keys.showtime_of_events("sg:{st:not-a-uuid}:events"), None);
    }

    #[test]
    fn reservation_channels_have_the_reservation_as_their_tag_and_name_it() {
        let keys = Keys::new("sg");
        let (showtime, reservation) = (Uuid::now_v7(), Uuid::now_v7());
        let channel = keys.reservation_events(reservation);
        assert_eq!(channel, format!("sg:{{r:{reservation}}}:events"));
        assert_eq!(keys.reservation_of_events(&channel), Some(reservation));
        assert_eq!(keys.showtime_of_events(&channel), None, "not a seat events channel");
        assert_eq!(keys.reservation_of_events(&keys.showtime(showtime).events), None);
        assert_eq!(Keys::new("sg2").reservation_of_events(&channel), None);
        assert_eq!(keys.reservation_of_events("sg:{r:nope}:events"), None);
    }

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
        assert_eq!(keys.showtime_of_events(&keys.showtime(id).queue.events), None, "not a seat events channel");
        assert_eq!(Keys::new("sg2").showtime_of_queue_events(&keys.showtime(id).queue.events), None);
    }

    #[test]
    fn published_messages_decode_with_false_hold_ids() {
        // Expiries publish `hold_id = false` (cjson's nil stand-in); it must still decode.
        let raw = br#"{"type":"expired","seat_ids":["0190e3d2-0000-7000-8000-000000000001"],"hold_id":false,"at":1764612000000}"#;
        let published: Published = serde_json::from_slice(raw).expect("decodes");
        assert_eq!(
            (published.r#type, published.seat_ids.len(), published.at),
            (ChangeKind::Expired, 1, 1_764_612_000_000)
        );
    }
}
