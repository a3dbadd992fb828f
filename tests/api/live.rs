//! The live seat map over HTTP: `GET /api/v1/showtimes/{id}/seats/events` streams a snapshot,
//! then every seat change in order, heartbeats, a fresh snapshot on reconnect or after a lost
//! Redis connection; it is capped per instance and ends when the server stops.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{RedisProxy, Res, TestApp, hold, show, test_config};

/// How long any expected frame may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// One SSE frame: its fields, or only comments (a heartbeat).
#[derive(Debug, Default)]
struct Frame {
    id: Option<u64>,
    event: Option<String>,
    data: Option<Value>,
    comments: Vec<String>,
}

impl Frame {
    fn event(&self) -> &str {
        self.event.as_deref().unwrap_or("")
    }
    fn seat_ids(&self) -> Vec<String> {
        let data = self.data.as_ref().expect("data");
        data["seat_ids"].as_array().expect("seat_ids").iter().map(|s| s.as_str().unwrap_or("").to_owned()).collect()
    }
    fn status_of(&self, seat: &str) -> String {
        let seats = self.data.as_ref().expect("data")["seats"].as_array().expect("seats").clone();
        let seat = seats.iter().find(|s| s["id"] == seat).expect("the seat is in the snapshot");
        seat["status"].as_str().expect("status").to_owned()
    }
}

/// A client of the event stream, reading frames with reqwest's chunked body.
struct Events {
    res: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(app: &TestApp, showtime: &str, last_event_id: Option<u64>) -> Self {
        let res = Self::request(app, showtime, last_event_id).await;
        assert_eq!(res.status(), 200, "the stream opens");
        let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(content_type, "text/event-stream");
        Self { res, buf: String::new() }
    }

    async fn request(app: &TestApp, showtime: &str, last_event_id: Option<u64>) -> reqwest::Response {
        let mut req = app
            .client
            .get(app.url(&format!("/api/v1/showtimes/{showtime}/seats/events")))
            .header("Accept", "text/event-stream")
            // No overall timeout: the body never ends by itself.
            .timeout(Duration::from_secs(3600));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        req.send().await.expect("request sent")
    }

    /// The next frame, heartbeats included; `None` when the stream ended.
    async fn next_frame(&mut self) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                return Some(parse(&raw));
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk()).await.expect("a frame within the deadline");
            match chunk.expect("the stream reads") {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                None => return None,
            }
        }
    }

    /// The next event, heartbeats skipped.
    async fn next_event(&mut self) -> Frame {
        loop {
            let frame = self.next_frame().await.expect("the stream is still open");
            if frame.event.is_some() {
                return frame;
            }
        }
    }
}

fn parse(raw: &str) -> Frame {
    let mut frame = Frame::default();
    for line in raw.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comments.push(comment.trim().to_owned());
        } else if let Some(id) = line.strip_prefix("id: ") {
            frame.id = Some(id.parse().expect("a numeric id"));
        } else if let Some(event) = line.strip_prefix("event: ") {
            frame.event = Some(event.to_owned());
        } else if let Some(data) = line.strip_prefix("data: ") {
            frame.data = Some(serde_json::from_str(data).expect("JSON data"));
        }
    }
    frame
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_stream_starts_with_an_anonymous_snapshot_of_the_seat_map(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, 3).await;
    let alice = app.new_user().await;
    hold(&app, &alice, &show, &[1]).await;
    // Act
    let mut events = Events::open(&app, &show.id, None).await;
    let snapshot = events.next_event().await;
    // Assert
    assert_eq!(snapshot.event(), "snapshot");
    assert!(snapshot.id.is_some(), "every event has an id");
    let data = snapshot.data.as_ref().expect("data");
    assert_eq!((data["showtime_id"].as_str(), data["currency"].as_str()), (Some(show.id.as_str()), Some("EUR")));
    let map = app.get(&format!("/api/v1/showtimes/{}/seats", show.id), None).await.json_status(200).await;
    for seat in map["seats"].as_array().expect("seats") {
        let live = data["seats"].as_array().expect("seats").iter().find(|s| s["id"] == seat["id"]).expect("same seat");
        for field in ["row", "number", "category", "price", "status"] {
            assert_eq!(live[field], seat[field], "{field} of {}", seat["id"]);
        }
        assert!(live.get("held_by_me").is_none(), "the stream is anonymous");
    }
    assert_eq!(
        [snapshot.status_of(&show.seats[0]), snapshot.status_of(&show.seats[1])],
        ["available".to_owned(), "held".to_owned()]
    );
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_hold_and_its_release_arrive_in_order_with_increasing_ids(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, 4).await;
    let alice = app.new_user().await;
    let mut events = Events::open(&app, &show.id, None).await;
    let snapshot = events.next_event().await;
    // Act
    let hold_id = hold(&app, &alice, &show, &[0, 2]).await;
    app.delete(&format!("/api/v1/holds/{hold_id}"), Some(&alice.token)).await.assert_status(204);
    // Assert
    let held = events.next_event().await;
    let released = events.next_event().await;
    assert_eq!((held.event(), released.event()), ("held", "released"));
    let seats = vec![show.seats[0].clone(), show.seats[2].clone()];
    assert_eq!((held.seat_ids(), released.seat_ids()), (seats.clone(), seats));
    assert!(snapshot.id < held.id && held.id < released.id, "{:?} {:?} {:?}", snapshot.id, held.id, released.id);
    let data = held.data.as_ref().expect("data");
    assert_eq!(data["showtime_id"], show.id.as_str());
    assert!(data.get("hold_id").is_none(), "hold ids stay private");
    assert!(chrono::DateTime::parse_from_rfc3339(data["at"].as_str().expect("at")).is_ok());
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_expired_hold_arrives_as_expired_once_the_sweeper_drops_it(db: PgPool) {
    // Arrange
    let mut config = test_config();
    config.holds.ttl = Duration::from_secs(1);
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let mut events = Events::open(&app, &show.id, None).await;
    events.next_event().await;
    let hold_id = hold(&app, &alice, &show, &[1]).await;
    assert_eq!(events.next_event().await.event(), "held");
    let deadline = Instant::now() + DEADLINE;
    while app.get(&format!("/api/v1/holds/{hold_id}"), Some(&alice.token)).await.status() != 410 {
        assert!(Instant::now() < deadline, "the hold never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Act
    let pass = seatgate::worker::sweeper::sweep_once(&app.state).await;
    // Assert
    assert_eq!(pass.holds_dropped, 1);
    let expired = events.next_event().await;
    assert_eq!((expired.event(), expired.seat_ids()), ("expired", vec![show.seats[1].clone()]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_paid_checkout_arrives_as_held_then_sold(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    app.start_workers();
    let show = show(&app, 3).await;
    let alice = app.new_user().await;
    let mut events = Events::open(&app, &show.id, None).await;
    events.next_event().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    // Act
    let res = app
        .client
        .post(app.url(&format!("/api/v1/holds/{hold_id}/checkout")))
        .bearer_auth(&alice.token)
        .header("Idempotency-Key", "live-1")
        .json(&json!({ "payment_token": "tok_ok" }))
        .send()
        .await
        .expect("sent");
    Res(res).json_status(202).await;
    // Assert
    let held = events.next_event().await;
    let sold = events.next_event().await;
    assert_eq!((held.event(), sold.event()), ("held", "sold"));
    assert_eq!(sold.seat_ids(), vec![show.seats[0].clone()]);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_client_reconnecting_with_last_event_id_gets_a_fresh_snapshot(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let mut events = Events::open(&app, &show.id, None).await;
    events.next_event().await;
    hold(&app, &alice, &show, &[0]).await;
    let held = events.next_event().await;
    drop(events);
    hold(&app, &alice, &show, &[1]).await; // missed while disconnected
    // Act
    let mut again = Events::open(&app, &show.id, held.id).await;
    let first = again.next_event().await;
    // Assert
    assert_eq!(first.event(), "snapshot");
    assert!(first.id > held.id, "ids keep increasing");
    assert_eq!(
        [first.status_of(&show.seats[0]), first.status_of(&show.seats[1])],
        ["held".to_owned(), "held".to_owned()]
    );
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_idle_stream_gets_heartbeat_comments(db: PgPool) {
    let mut config = test_config();
    config.live.heartbeat = Duration::from_millis(200);
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, 1).await;
    let mut events = Events::open(&app, &show.id, None).await;
    events.next_event().await;
    let beat = events.next_frame().await.expect("still open");
    assert_eq!((beat.event.as_deref(), beat.comments.as_slice()), (None, ["keep-alive".to_owned()].as_slice()));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn over_the_connection_cap_a_stream_is_refused_with_503_and_retry_after(db: PgPool) {
    // Arrange
    let mut config = test_config();
    config.live.max_connections = 1;
    // The server notices a client that left when it next writes: at the next heartbeat.
    config.live.heartbeat = Duration::from_millis(200);
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, 1).await;
    let mut first = Events::open(&app, &show.id, None).await;
    first.next_event().await;
    // Act
    let refused = Res(Events::request(&app, &show.id, None).await);
    // Assert
    assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()), "Retry-After in seconds");
    assert_eq!(refused.problem(503).await.code, "at_capacity");
    // The slot comes back when the first client leaves.
    drop(first);
    let deadline = Instant::now() + DEADLINE;
    while Events::request(&app, &show.id, None).await.status() != 200 {
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_unknown_showtime_is_a_404_problem(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = Res(Events::request(&app, &uuid::Uuid::now_v7().to_string(), None).await);
    assert_eq!(res.problem(404).await.code, "not_found");
    let res = Res(Events::request(&app, "not-a-uuid", None).await);
    res.problem(404).await;
    assert_eq!(app.state.live.connections(), 0, "refused streams give their slot back");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn stopping_the_server_ends_open_streams(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, 1).await;
    let mut events = Events::open(&app, &show.id, None).await;
    events.next_event().await;
    app.shutdown();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let chunk = tokio::time::timeout_at(deadline, events.res.chunk()).await.expect("the stream ends promptly");
        if chunk.map_or(true, |c| c.is_none()) {
            break;
        }
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn after_the_redis_connection_is_lost_streams_get_a_fresh_snapshot_and_events_again(db: PgPool) {
    // Arrange
    let proxy = RedisProxy::start().await;
    let app = TestApp::spawn_with(db, proxy.config(Duration::from_millis(1000))).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let mut events = Events::open(&app, &show.id, None).await;
    events.next_event().await;
    // Act
    proxy.cut_all();
    // Assert: a new snapshot once resubscribed, and changes flow again.
    let resync = events.next_event().await;
    assert_eq!(resync.event(), "snapshot");
    let deadline = Instant::now() + DEADLINE;
    let hold_id = loop {
        let res = app
            .post(
                &format!("/api/v1/showtimes/{}/holds", show.id),
                Some(&alice.token),
                &json!({"seat_ids": [show.seats[0]]}),
            )
            .await;
        if res.status() == 201 {
            break res.json_status(201).await["hold_id"].as_str().expect("id").to_owned();
        }
        assert!(Instant::now() < deadline, "holds never worked again: {}", res.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!hold_id.is_empty());
    let held = events.next_event().await;
    assert_eq!((held.event(), held.seat_ids()), ("held", vec![show.seats[0].clone()]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_client_too_slow_for_the_buffer_gets_a_snapshot_instead_of_the_missed_events(db: PgPool) {
    // Arrange: a buffer of one change, and a client that does not read for a while.
    let mut config = test_config();
    config.live.buffer = 1;
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, 2).await;
    let mut events = Events::open(&app, &show.id, None).await;
    events.next_event().await;
    // Act: far more changes than the socket buffers hold (about 2 KB a frame, 8 MB in all).
    let channel = app.state.keys.showtime(show.id.parse().expect("uuid")).events;
    let seat_ids: Vec<String> = (0..50).map(|_| show.seats[0].clone()).collect();
    let message = json!({"type": "held", "seat_ids": seat_ids, "hold_id": "x", "at": 0}).to_string();
    let mut conn = app.state.redis.get().await.expect("redis");
    // As the scripts publish: sharded on a cluster.
    let publish = if conn.is_cluster() { "SPUBLISH" } else { "PUBLISH" };
    let mut pipe = redis::pipe();
    for _ in 0..4000 {
        pipe.cmd(publish).arg(&channel).arg(&message).ignore();
    }
    let () = pipe.query_async(&mut conn).await.expect("published");
    // Assert: the stream skips ahead with a snapshot rather than failing or replaying it all.
    let mut changes = 0;
    loop {
        let frame = events.next_event().await;
        if frame.event() == "snapshot" {
            break;
        }
        assert_eq!(frame.event(), "held");
        changes += 1;
        assert!(changes < 4000, "every change was delivered: the client never lagged");
    }
    assert!(changes < 4000);
}

/// A private Redis Cluster (`scripts/redis-cluster.sh`) that a test may freeze; stopped (and
/// thawed first) when dropped, so the shared test cluster is never touched.
struct PrivateCluster {
    dir: std::path::PathBuf,
    nodes: Vec<String>,
    frozen: Vec<String>,
}

impl PrivateCluster {
    fn up() -> Self {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("target").join(format!("redis-cluster-{}", uuid::Uuid::new_v4().simple()));
        let out = std::process::Command::new(root.join("scripts/redis-cluster.sh"))
            .arg("up")
            .arg(&dir)
            .output()
            .expect("scripts/redis-cluster.sh runs");
        assert!(out.status.success(), "the cluster came up: {}", String::from_utf8_lossy(&out.stderr));
        let nodes = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("redis://"))
            .map(str::to_owned)
            .collect();
        Self { dir, nodes, frozen: Vec::new() }
    }

    /// The master that owns `channel`'s slot (the one that takes an SPUBLISH to it).
    async fn owner_of(&self, channel: &str) -> String {
        for node in &self.nodes[..3] {
            let client = redis::Client::open(node.as_str()).expect("url");
            let mut conn = client.get_multiplexed_async_connection().await.expect("node");
            let owns: redis::RedisResult<i64> =
                redis::cmd("SPUBLISH").arg(channel).arg("probe").query_async(&mut conn).await;
            if owns.is_ok() {
                return node.clone();
            }
        }
        panic!("no master owns the slot of {channel}");
    }

    fn pid_of(&self, node: &str) -> String {
        let port = node.rsplit(':').next().expect("port");
        let pidfile = self.dir.join(format!("node-{port}")).join("redis.pid");
        std::fs::read_to_string(pidfile).expect("pid file").trim().to_owned()
    }

    fn signal(pid: &str, signal: &str) {
        let status = std::process::Command::new("kill").arg(signal).arg(pid).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Stops the node's process without closing its connections: a silent node.
    fn freeze(&mut self, node: &str) {
        let pid = self.pid_of(node);
        Self::signal(&pid, "-STOP");
        self.frozen.push(pid);
    }

    fn thaw(&mut self) {
        for pid in self.frozen.drain(..) {
            Self::signal(&pid, "-CONT");
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.thaw();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let _ = std::process::Command::new(root.join("scripts/redis-cluster.sh")).arg("down").arg(&self.dir).status();
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn on_a_cluster_a_silent_node_is_noticed_by_ping_and_streams_get_a_fresh_snapshot(db: PgPool) {
    // A cluster run only (it needs redis-server); the test freezes a node of a cluster of its own.
    if crate::helpers::test_cluster_nodes().is_empty() {
        return;
    }
    // Arrange: PING every 500 ms, answered within 300 ms; the node is frozen for 1.5 s, well
    // past one period and one timeout, and short of the cluster's 2 s node timeout (no failover:
    // nothing but the PING can notice it, no connection closes).
    let mut cluster = PrivateCluster::up();
    let mut config = test_config();
    config.redis.cluster_nodes = cluster.nodes.iter().map(|n| seatgate::config::Secret::new(n.clone())).collect();
    config.redis.timeout = Duration::from_millis(300);
    config.live.heartbeat = Duration::from_millis(500);
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, 2).await;
    let mut events = Events::open(&app, &show.id, None).await;
    assert_eq!(events.next_event().await.event(), "snapshot");
    let generation = app.state.live.generation();
    let channel = app.state.keys.showtime(show.id.parse().expect("uuid")).events;
    let owner = cluster.owner_of(&channel).await;
    // Act
    cluster.freeze(&owner);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.thaw();
    // Assert: the subscription was started over (a newer generation) and the stream resent a
    // snapshot.
    let resync = events.next_event().await;
    assert_eq!(resync.event(), "snapshot");
    assert!(app.state.live.generation() > generation, "the subscription was made again");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_burst_of_changes_arrives_batched_in_order_each_with_its_own_id(db: PgPool) {
    // Arrange: a long coalescing period, so the whole burst falls into batches.
    let mut config = test_config();
    config.live.coalesce = Duration::from_millis(200);
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, 2).await;
    let mut events = Events::open(&app, &show.id, None).await;
    let snapshot = events.next_event().await;
    // Act: more changes than one batch takes (64), published as the scripts publish them.
    let channel = app.state.keys.showtime(show.id.parse().expect("uuid")).events;
    let mut conn = app.state.redis.get().await.expect("redis");
    let publish = if conn.is_cluster() { "SPUBLISH" } else { "PUBLISH" };
    let mut pipe = redis::pipe();
    for at in 1..=100 {
        let kind = if at % 2 == 1 { "held" } else { "released" };
        let message = json!({"type": kind, "seat_ids": [show.seats[0]], "hold_id": "x", "at": at}).to_string();
        pipe.cmd(publish).arg(&channel).arg(message).ignore();
    }
    let () = pipe.query_async(&mut conn).await.expect("published");
    // Assert: every change, in the order published, each its own event with a greater id.
    let mut last_id = snapshot.id.expect("id");
    for at in 1..=100 {
        let frame = events.next_event().await;
        assert_eq!(frame.event(), if at % 2 == 1 { "held" } else { "released" }, "change {at}");
        let sent_at =
            chrono::DateTime::parse_from_rfc3339(frame.data.as_ref().expect("data")["at"].as_str().expect("at"))
                .expect("a time")
                .timestamp_millis();
        assert_eq!(sent_at, at, "changes arrive in the order published");
        let id = frame.id.expect("id");
        assert!(id > last_id, "ids increase: {id} after {last_id}");
        last_id = id;
    }
}
