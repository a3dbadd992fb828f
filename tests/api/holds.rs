//! Holds and the seat map over HTTP: every status code of docs/DESIGN.md §6 "Holds".

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{RedisProxy, TestApp, TestUser, book_seat, test_config};

/// A showtime with its seat ids by name ("A1", ...).
struct Show {
    id: String,
    seats: Vec<(String, String)>,
}

impl Show {
    fn seat(&self, name: &str) -> String {
        self.seats.iter().find(|(n, _)| n == name).map(|(_, id)| id.clone()).expect("a seat of the layout")
    }
    fn seats(&self, names: &[&str]) -> Vec<String> {
        names.iter().map(|n| self.seat(n)).collect()
    }
}

async fn show(app: &TestApp, rows: &[(&str, u32, &str)]) -> Show {
    let showtime = app.seed_showtime(rows, 24).await;
    let screen = app.get(&format!("/api/v1/screens/{}", showtime["screen_id"].as_str().expect("id")), None).await;
    let screen = screen.json_status(200).await;
    let seats = screen["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| {
            (format!("{}{}", s["row"].as_str().unwrap_or(""), s["number"]), s["id"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    Show { id: showtime["id"].as_str().expect("id").to_owned(), seats }
}

async fn hold(app: &TestApp, user: &TestUser, show: &Show, names: &[&str]) -> crate::helpers::Res {
    app.post(
        &format!("/api/v1/showtimes/{}/holds", show.id),
        Some(&user.token),
        &json!({"seat_ids": show.seats(names)}),
    )
    .await
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn holding_free_seats_returns_201_and_the_owner_sees_the_hold(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, &[("A", 4, "standard")]).await;
    let alice = app.new_user().await;
    // Act
    let body = hold(&app, &alice, &show, &["A1", "A2"]).await.json_status(201).await;
    // Assert
    assert_eq!(body["showtime_id"], show.id.as_str());
    assert_eq!(body["seat_ids"], json!(show.seats(&["A1", "A2"])));
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("expiry")).expect("rfc3339");
    let left = expires.to_utc() - chrono::Utc::now();
    assert!(left > chrono::Duration::seconds(290) && left <= chrono::Duration::seconds(301), "{left}");
    let fetched =
        app.get(&format!("/api/v1/holds/{}", body["hold_id"].as_str().expect("id")), Some(&alice.token)).await;
    let fetched = fetched.json_status(200).await;
    assert_eq!((fetched["status"].as_str(), &fetched["seat_ids"]), (Some("held"), &body["seat_ids"]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn holding_a_taken_seat_returns_409_naming_exactly_it(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, &[("A", 4, "standard")]).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    hold(&app, &alice, &show, &["A1", "A2"]).await.assert_status(201);
    let res = hold(&app, &bob, &show, &["A2", "A3"]).await;
    let body = res.json_status(409).await;
    assert_eq!(body["code"], "seats_unavailable");
    assert_eq!(body["unavailable_seat_ids"], json!([show.seat("A2")]));
    // All or nothing: A3 was not taken.
    hold(&app, &bob, &show, &["A3"]).await.assert_status(201);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn bad_seat_lists_are_422(db: PgPool) {
    let mut config = test_config();
    config.holds.max_seats_per_user = 3;
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, &[("A", 6, "standard")]).await;
    let other = self::show(&app, &[("B", 2, "standard")]).await;
    let alice = app.new_user().await;
    let path = format!("/api/v1/showtimes/{}/holds", show.id);
    let cases = [
        json!({"seat_ids": []}),
        json!({"seat_ids": [show.seat("A1"), show.seat("A1")]}),
        json!({"seat_ids": [other.seat("B1")]}),
        json!({"seat_ids": [Uuid::now_v7()]}),
        json!({"seat_ids": show.seats(&["A1", "A2", "A3", "A4"])}),
        json!({"seat_ids": ["not-a-uuid"]}),
        json!({"seats": [show.seat("A1")]}),
    ];
    for body in cases {
        let problem = app.post(&path, Some(&alice.token), &body).await.problem(422).await;
        assert_eq!(problem.code, "validation_failed", "{body}");
    }
    // The limit counts seats already held.
    hold(&app, &alice, &show, &["A1", "A2"]).await.assert_status(201);
    let problem = hold(&app, &alice, &show, &["A3", "A4"]).await.problem(422).await;
    assert!(problem.errors[0].message.contains("already hold 2"), "{problem:?}");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_unknown_showtime_is_404_and_no_token_is_401(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let alice = app.new_user().await;
    let body = json!({"seat_ids": [Uuid::now_v7()]});
    let path = format!("/api/v1/showtimes/{}/holds", Uuid::now_v7());
    app.post(&path, Some(&alice.token), &body).await.problem(404).await;
    app.post(&path, None, &body).await.problem(401).await;
    app.get(&format!("/api/v1/showtimes/{}/seats", Uuid::now_v7()), None).await.problem(404).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_cancelled_showtime_cannot_be_held(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, &[("A", 4, "standard")]).await;
    let alice = app.new_user().await;
    hold(&app, &alice, &show, &["A1"]).await.assert_status(201); // warms the cache first
    app.delete(&format!("/api/v1/showtimes/{}", show.id), Some(&app.admin_token.clone())).await.assert_status(204);
    let problem = hold(&app, &alice, &show, &["A2"]).await.problem(409).await;
    assert_eq!(problem.code, "conflict");
    assert!(problem.detail.contains("cancelled"));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_showtime_that_started_cannot_be_held(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, &[("A", 4, "standard")]).await;
    sqlx::query("update showtimes set starts_at = now() - interval '5 minutes', ends_at = now() + interval '1 hour' where id = $1")
        .bind(show.id.parse::<Uuid>().expect("uuid"))
        .execute(&db)
        .await
        .expect("moved into the past");
    let problem = hold(&app, &app.new_user().await, &show, &["A1"]).await.problem(409).await;
    assert!(problem.detail.contains("started"), "{problem:?}");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn someone_elses_hold_is_404_to_see_and_to_release(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, &[("A", 4, "standard")]).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let body = hold(&app, &alice, &show, &["A1"]).await.json_status(201).await;
    let path = format!("/api/v1/holds/{}", body["hold_id"].as_str().expect("id"));
    app.get(&path, Some(&bob.token)).await.problem(404).await;
    app.delete(&path, Some(&bob.token)).await.problem(404).await;
    app.get(&path, None).await.problem(401).await;
    app.get(&format!("/api/v1/holds/{}", Uuid::now_v7()), Some(&alice.token)).await.problem(404).await;
    // Still alice's.
    app.get(&path, Some(&alice.token)).await.assert_status(200);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn releasing_a_hold_frees_its_seats_at_once(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, &[("A", 4, "standard")]).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let body = hold(&app, &alice, &show, &["A1", "A2"]).await.json_status(201).await;
    let path = format!("/api/v1/holds/{}", body["hold_id"].as_str().expect("id"));
    app.delete(&path, Some(&alice.token)).await.assert_status(204);
    app.get(&path, Some(&alice.token)).await.problem(404).await;
    hold(&app, &bob, &show, &["A1", "A2"]).await.assert_status(201);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_expired_hold_is_410_and_its_seats_are_free(db: PgPool) {
    let mut config = test_config();
    config.holds.ttl = Duration::from_secs(1);
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, &[("A", 2, "standard")]).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let body = hold(&app, &alice, &show, &["A1"]).await.json_status(201).await;
    let path = format!("/api/v1/holds/{}", body["hold_id"].as_str().expect("id"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.get(&path, Some(&alice.token)).await;
        if res.status() == 410 {
            assert_eq!(res.problem(410).await.code, "hold_expired");
            break;
        }
        res.assert_status(200);
        assert!(Instant::now() < deadline, "the hold never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hold(&app, &bob, &show, &["A1"]).await.assert_status(201);
    // Swept now: still 410 for its owner, 404 for anyone else.
    app.get(&path, Some(&alice.token)).await.problem(410).await;
    app.delete(&path, Some(&alice.token)).await.problem(410).await;
    app.get(&path, Some(&bob.token)).await.problem(404).await;
}

fn statuses(map: &Value) -> Vec<(String, String, bool)> {
    map["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| {
            (
                format!("{}{}", s["row"].as_str().unwrap_or(""), s["number"]),
                s["status"].as_str().unwrap_or("").to_owned(),
                s["held_by_me"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Rows A (3 standard seats) and B (1 vip); A1 booked by bob in PostgreSQL before Redis knows
/// anything, A2 held by alice. Returns the show, alice and bob.
async fn a1_sold_a2_held(app: &TestApp, db: &PgPool) -> (Show, TestUser, TestUser) {
    let show = show(app, &[("A", 3, "standard"), ("B", 1, "vip")]).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    book_seat(db, bob.id, &show.id, Some(&show.seat("A1"))).await;
    hold(app, &alice, &show, &["A2"]).await.assert_status(201);
    (show, alice, bob)
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_seat_map_shows_available_held_and_sold_with_prices(db: PgPool) {
    // Arrange: A1 sold, A2 held by alice.
    let app = TestApp::spawn(db.clone()).await;
    let (show, alice, _bob) = a1_sold_a2_held(&app, &db).await;
    // Act
    let path = format!("/api/v1/showtimes/{}/seats", show.id);
    let for_alice = app.get(&path, Some(&alice.token)).await.json_status(200).await;
    let anonymous = app.get(&path, None).await.json_status(200).await;
    // Assert
    let s = |n: &str, st: &str, mine: bool| (n.to_owned(), st.to_owned(), mine);
    assert_eq!(
        statuses(&for_alice),
        [s("A1", "sold", false), s("A2", "held", true), s("A3", "available", false), s("B1", "available", false)]
    );
    assert_eq!(statuses(&anonymous)[1], s("A2", "held", false));
    assert_eq!((for_alice["currency"].as_str(), for_alice["seats"][3]["price"].as_i64()), (Some("EUR"), Some(1000)));
    // The sold seat cannot be held.
    let res = hold(&app, &alice, &show, &["A1"]).await.json_status(409).await;
    assert_eq!(res["unavailable_seat_ids"], json!([show.seat("A1")]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn availability_counts_free_held_and_sold_seats_per_category(db: PgPool) {
    // Arrange: A1 sold, A2 held by alice.
    let app = TestApp::spawn(db.clone()).await;
    let (show, _alice, bob) = a1_sold_a2_held(&app, &db).await;
    let path = format!("/api/v1/showtimes/{}/availability", show.id);
    // Act: no token needed, as for the seat map.
    let counts = app.get(&path, None).await.json_status(200).await;
    // Assert: the same statuses as the seat map, counted; prices as the seat map shows them.
    let map = app.get(&format!("/api/v1/showtimes/{}/seats", show.id), None).await.json_status(200).await;
    let price = |i: usize| map["seats"][i]["price"].clone();
    assert_eq!(
        counts,
        json!({
            "showtime_id": show.id, "currency": "EUR",
            "available": 2, "held": 1, "sold": 1, "sold_out": false,
            "categories": [
                {"category": "standard", "price": price(0), "available": 1, "held": 1, "sold": 1},
                {"category": "vip", "price": price(3), "available": 1, "held": 0, "sold": 0},
            ],
        })
    );
    // With every seat sold the showtime is sold out.
    let one = self::show(&app, &[("A", 1, "standard")]).await;
    book_seat(&db, bob.id, &one.id, Some(&one.seat("A1"))).await;
    let sold = app.get(&format!("/api/v1/showtimes/{}/availability", one.id), None).await.json_status(200).await;
    assert_eq!((sold["sold"].as_u64(), sold["sold_out"].as_bool()), (Some(1), Some(true)));
    app.get(&format!("/api/v1/showtimes/{}/availability", Uuid::now_v7()), None).await.problem(404).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_sold_cache_is_rebuilt_from_postgres_when_redis_lost_it(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, &[("A", 2, "standard")]).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let path = format!("/api/v1/showtimes/{}/seats", show.id);
    assert_eq!(statuses(&app.get(&path, None).await.json_status(200).await)[0].1, "available");
    // A booking lands while Redis loses the showtime's keys.
    book_seat(&db, bob.id, &show.id, Some(&show.seat("A1"))).await;
    let keys = app.state.keys.showtime(show.id.parse().expect("uuid"));
    let mut conn = app.state.redis.get().await.expect("redis");
    let _: () = deadpool_redis::redis::cmd("DEL")
        .arg(&keys.sold)
        .arg(&keys.meta)
        .arg(&keys.holds)
        .query_async(&mut conn)
        .await
        .expect("del");
    // The booking bypassed the API, so this instance's seat-map cache learns of it only when its
    // snapshot ages out (SEATGATE_SEATMAP_CACHE_MS); the rebuilt sold set must show it then.
    let deadline = Instant::now() + Duration::from_secs(5);
    while statuses(&app.get(&path, None).await.json_status(200).await)[0].1 != "sold" {
        assert!(Instant::now() < deadline, "the rebuilt seat map never showed A1 sold");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hold(&app, &alice, &show, &["A1"]).await.assert_status(409);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_sweeper_drops_expired_holds(db: PgPool) {
    let mut config = test_config();
    config.holds.ttl = Duration::from_secs(1);
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, &[("A", 2, "standard")]).await;
    let alice = app.new_user().await;
    hold(&app, &alice, &show, &["A1", "A2"]).await.assert_status(201);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut swept = 0;
    while swept == 0 {
        assert!(Instant::now() < deadline, "nothing was swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
        swept = seatgate::holds::service::sweep_expired_holds(&app.state).await.expect("sweep");
    }
    assert_eq!(swept, 1);
    let map = app.get(&format!("/api/v1/showtimes/{}/seats", show.id), None).await.json_status(200).await;
    assert!(statuses(&map).iter().all(|(_, s, _)| s == "available"));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_hold_is_released_through_another_instance_than_the_one_that_made_it(db: PgPool) {
    // Arrange: two API instances on the same database, Redis prefix and AMQP names, as behind
    // seatgate-lb; the second one never saw the hold being made.
    let config = test_config();
    let maker = TestApp::spawn_with(db.clone(), config.clone()).await;
    let other = TestApp::spawn_with(db, config).await;
    let show = show(&maker, &[("A", 2, "standard")]).await;
    let (alice, bob) = (maker.new_user().await, maker.new_user().await);
    let body = hold(&maker, &alice, &show, &["A1"]).await.json_status(201).await;
    let path = format!("/api/v1/holds/{}", body["hold_id"].as_str().expect("id"));

    // Act and assert: someone else's hold and an unknown id are 404 on either instance.
    other.delete(&path, Some(&bob.token)).await.problem(404).await;
    maker.delete(&path, Some(&bob.token)).await.problem(404).await;
    let unknown = format!("/api/v1/holds/{}", Uuid::now_v7());
    other.delete(&unknown, Some(&alice.token)).await.problem(404).await;
    maker.delete(&unknown, Some(&alice.token)).await.problem(404).await;
    // The owner releases it through the other instance; it is gone for both.
    other.delete(&path, Some(&alice.token)).await.assert_status(204);
    maker.delete(&path, Some(&alice.token)).await.problem(404).await;
    other.delete(&path, Some(&alice.token)).await.problem(404).await;
    hold(&other, &bob, &show, &["A1"]).await.assert_status(201);
}

/// The commands Redis ran for keys under `prefix` while `act` ran, as MONITOR shows them (name
/// and first key), without the ones scripts ran inside (`[0 lua]`).
async fn commands_on<F: std::future::Future<Output = ()>>(app: &TestApp, act: F) -> Vec<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let url = app.state.config.redis.url.expose();
    let addr = url.trim_start_matches("redis://").split('/').next().expect("host:port").to_owned();
    let prefix = app.state.config.redis.key_prefix.clone();
    let mut monitor = tokio::net::TcpStream::connect(&addr).await.expect("connect to Redis");
    monitor.write_all(b"MONITOR\r\n").await.expect("send MONITOR");
    let mut lines = BufReader::new(monitor).lines();
    assert_eq!(lines.next_line().await.expect("read").as_deref(), Some("+OK"));
    act.await;
    // A marker through another connection: every command of `act` was fed to MONITOR before it.
    let marker = format!("{prefix}-end-of-act");
    let mut conn = app.state.redis.get().await.expect("redis");
    let _: String = deadpool_redis::redis::cmd("ECHO").arg(&marker).query_async(&mut conn).await.expect("ECHO");
    let mut seen = Vec::new();
    let deadline = Duration::from_secs(10);
    while let Some(line) = tokio::time::timeout(deadline, lines.next_line()).await.expect("MONITOR").expect("read") {
        if line.contains(&marker) {
            break;
        }
        if line.contains(&prefix) && !line.contains(" lua]") {
            let words: Vec<&str> = line.split("] ").nth(1).unwrap_or("").split(' ').take(4).collect();
            seen.push(words.join(" ").to_lowercase());
        }
    }
    seen
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_hold_and_its_release_are_one_redis_command_each(db: PgPool) {
    let config = test_config();
    if !config.redis.cluster_nodes.is_empty() {
        // MONITOR shows one node's commands; the count is the same against one Redis.
        return;
    }
    // Arrange: the showtime's cache is warm (its first hold warms it).
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, &[("A", 2, "standard")]).await;
    let alice = app.new_user().await;
    let first = hold(&app, &alice, &show, &["A2"]).await.json_status(201).await;
    let first = format!("/api/v1/holds/{}", first["hold_id"].as_str().expect("id"));
    app.delete(&first, Some(&alice.token)).await.assert_status(204);

    // Act
    let mut path = String::new();
    let on_hold = commands_on(&app, async {
        let body = hold(&app, &alice, &show, &["A1"]).await.json_status(201).await;
        path = format!("/api/v1/holds/{}", body["hold_id"].as_str().expect("id"));
    })
    .await;
    let on_release = commands_on(&app, async { app.delete(&path, Some(&alice.token)).await.assert_status(204) }).await;

    // Assert
    assert_eq!(on_hold.len(), 1, "{on_hold:?}");
    assert!(on_hold[0].starts_with("\"evalsha\""), "{on_hold:?}");
    assert_eq!(on_release.len(), 1, "{on_release:?}");
    assert!(on_release[0].starts_with("\"evalsha\""), "{on_release:?}");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_hold_granted_while_its_answer_was_lost_is_released_in_the_background(db: PgPool) {
    // Arrange: the API reaches Redis through a proxy that can hold Redis' replies back; the
    // showtime is warm and its scripts loaded (a first hold, released).
    let proxy = RedisProxy::start().await;
    let mut config = proxy.config(Duration::from_millis(300));
    let app = TestApp::spawn_with(db, config.clone()).await;
    let show = show(&app, &[("A", 2, "standard")]).await;
    let alice = app.new_user().await;
    let first = hold(&app, &alice, &show, &["A1"]).await.json_status(201).await;
    app.delete(&format!("/api/v1/holds/{}", first["hold_id"].as_str().expect("id")), Some(&alice.token))
        .await
        .assert_status(204);
    config.redis.url = seatgate::config::Secret::new("redis://127.0.0.1:6379".to_owned());
    let direct = seatgate::infra::redis::pool(&config.redis).expect("a pool past the proxy");
    let holds_key = app.state.keys.showtime(show.id.parse().expect("uuid")).holds;
    let held = || async {
        let mut conn = direct.get().await.expect("redis connection");
        let n: u64 = deadpool_redis::redis::cmd("HLEN").arg(&holds_key).query_async(&mut conn).await.expect("hlen");
        n
    };
    // Act: the hold script runs in Redis, but its answer is held back past the API's timeout.
    proxy.stall(true);
    hold(&app, &alice, &show, &["A1", "A2"]).await.problem(503).await;
    assert_eq!(held().await, 2, "the script ran: both seats are held by a hold nobody was told of");
    proxy.stall(false);
    // Assert: the API releases that hold by itself, long before its TTL, and alice may hold again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while held().await > 0 {
        assert!(Instant::now() < deadline, "the lost hold was never released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hold(&app, &alice, &show, &["A1", "A2"]).await.assert_status(201);
}
