//! On-sales and the waiting room (docs/DESIGN.md §6, invariant 9): sale settings, the admission
//! gate inside hold.lua, joining and places, the shuffled pre-queue, the fenced admitter,
//! pause/resume, fail-open, the live place in line, the admin's view and the checker.
//! Admission steps are driven by calling the admitter directly, so nothing waits on a timer.

use std::time::Duration;

use deadpool_redis::redis;
use reqwest::Method;
use seatgate::onsale::admitter::Admitter;
use seatgate::onsale::store::{self, AdmitOutcome};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Show, TestApp, TestUser, show};

fn at(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs)).to_rfc3339()
}

async fn put_sale(app: &TestApp, show: &Show, body: Value) -> Value {
    let token = app.admin_token.clone();
    app.call(Method::PUT, &format!("/api/v1/showtimes/{}/sale", show.id), Some(&token), Some(&body))
        .await
        .json_status(200)
        .await
}

/// A sale that opened a minute ago with a queue of `rate` admissions per minute.
async fn queued_sale(app: &TestApp, show: &Show, rate: u32) -> Value {
    put_sale(app, show, json!({"opens_at": at(-60), "queue": {"admit_per_minute": rate, "admission_minutes": 10}}))
        .await
}

async fn join(app: &TestApp, show: &Show, user: &TestUser) -> crate::helpers::Res {
    app.post(&format!("/api/v1/showtimes/{}/queue", show.id), Some(&user.token), &json!({})).await
}

async fn me(app: &TestApp, show: &Show, user: &TestUser) -> Value {
    app.get(&format!("/api/v1/showtimes/{}/queue/me", show.id), Some(&user.token)).await.json_status(200).await
}

async fn try_hold(app: &TestApp, show: &Show, user: &TestUser, seat: usize) -> crate::helpers::Res {
    app.post(
        &format!("/api/v1/showtimes/{}/holds", show.id),
        Some(&user.token),
        &json!({"seat_ids": [show.seats[seat]]}),
    )
    .await
}

fn sid(show: &Show) -> Uuid {
    show.id.parse().expect("uuid")
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_showtime_without_sale_settings_is_on_sale_now(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    let sale = app.get(&format!("/api/v1/showtimes/{}/sale", show.id), None).await.json_status(200).await;
    assert_eq!((sale["opens_at"].clone(), sale["queue"].clone()), (Value::Null, Value::Null));
    let alice = app.new_user().await;
    try_hold(&app, &show, &alice, 0).await.assert_status(201);
    let problem = join(&app, &show, &alice).await.problem(409).await;
    assert_eq!(problem.code, "conflict", "no waiting room to join");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_hold_before_the_sale_opens_gets_409_sale_not_open_with_the_opening_time(db: PgPool) {
    // Arrange: a showtime already cached as on sale, then given an opening time in an hour.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let first = crate::helpers::hold(&app, &alice, &show, &[0]).await;
    let opens_at = at(3600);
    put_sale(&app, &show, json!({"opens_at": opens_at, "queue": null})).await;
    // Act
    let res = try_hold(&app, &show, &alice, 1).await;
    // Assert: refused at once (the old mirror was replaced), naming the opening time.
    let body: Value = {
        assert_eq!(res.status().as_u16(), 409);
        res.json().await
    };
    assert_eq!(body["code"], "sale_not_open");
    let said: chrono::DateTime<chrono::Utc> = body["opens_at"].as_str().expect("opens_at").parse().expect("time");
    let wanted: chrono::DateTime<chrono::Utc> = opens_at.parse().expect("time");
    assert!((said - wanted).num_milliseconds().abs() < 1000, "{said} vs {wanted}");
    assert!(!first.is_empty());
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn sale_settings_are_validated_and_for_admins_only(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, 1).await;
    let user = app.new_user().await;
    let path = format!("/api/v1/showtimes/{}/sale", show.id);
    let body = json!({"opens_at": at(0), "queue": null});
    app.call(Method::PUT, &path, Some(&user.token), Some(&body)).await.problem(403).await;
    let token = app.admin_token.clone();
    let late = json!({"opens_at": at(48 * 3600), "queue": {"admit_per_minute": 0, "admission_minutes": 5}});
    let problem = app.call(Method::PUT, &path, Some(&token), Some(&late)).await.problem(422).await;
    let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["opens_at", "queue.admit_per_minute"]);
    let unknown = format!("/api/v1/showtimes/{}/sale", Uuid::now_v7());
    app.call(Method::PUT, &unknown, Some(&token), Some(&body)).await.problem(404).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn with_a_queue_only_an_admitted_user_may_hold(db: PgPool) {
    // Arrange: a queued sale at one admission per minute; alice joins first, bob second.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 4).await;
    queued_sale(&app, &show, 1).await;
    let (alice, bob, carol) = (app.new_user().await, app.new_user().await, app.new_user().await);
    join(&app, &show, &alice).await.assert_status(201);
    join(&app, &show, &bob).await.assert_status(201);
    // Act: one admission step lets the head of the line in, and only her.
    let pass = Admitter::new().step(&app.state).await.expect("admission step");
    // Assert
    assert_eq!(pass.admitted, 1);
    assert_eq!(me(&app, &show, &alice).await["state"], "admitted");
    let bob_entry = me(&app, &show, &bob).await;
    assert_eq!((bob_entry["state"].clone(), bob_entry["position"].clone()), (json!("waiting"), json!(1)));
    try_hold(&app, &show, &alice, 0).await.assert_status(201);
    assert_eq!(try_hold(&app, &show, &bob, 1).await.problem(403).await.code, "not_admitted");
    assert_eq!(try_hold(&app, &show, &carol, 1).await.problem(403).await.code, "not_admitted", "never joined");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_best_available_hold_passes_the_same_gate_as_a_hold_of_named_seats(db: PgPool) {
    // Arrange: a sale that opens in an hour, then a queued one with alice admitted, bob not.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 4).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let best = |user: &TestUser| {
        let token = user.token.clone();
        let path = format!("/api/v1/showtimes/{}/holds", show.id);
        let app = &app;
        async move { app.post(&path, Some(&token), &json!({"best_available": {"count": 2}})).await }
    };
    put_sale(&app, &show, json!({"opens_at": at(3600), "queue": null})).await;
    // Act + Assert: before opening, 409 sale_not_open with the opening time.
    let early = best(&alice).await.problem(409).await;
    assert_eq!(early.code, "sale_not_open");
    queued_sale(&app, &show, 1).await;
    join(&app, &show, &alice).await.assert_status(201);
    join(&app, &show, &bob).await.assert_status(201);
    Admitter::new().step(&app.state).await.expect("admission step");
    // With the queue: only the admitted user gets seats.
    assert_eq!(best(&bob).await.problem(403).await.code, "not_admitted");
    best(&alice).await.assert_status(201);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn joining_twice_returns_the_same_entry(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, 1).await;
    queued_sale(&app, &show, 1).await;
    let alice = app.new_user().await;
    app.get(&format!("/api/v1/showtimes/{}/queue/me", show.id), Some(&alice.token)).await.problem(404).await;
    let first = join(&app, &show, &alice).await.json_status(201).await;
    let again = join(&app, &show, &alice).await.json_status(200).await;
    assert_eq!(first, again);
    assert_eq!(first["position"], 1);
    assert_eq!(first["estimated_wait_secs"], 60);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_pre_queue_has_no_places_until_opening_and_is_shuffled_then_late_joiners_queue_behind(db: PgPool) {
    // Arrange: 40 users join an hour before opening.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 1).await;
    let window = json!({"admit_per_minute": 1, "admission_minutes": 10});
    put_sale(&app, &show, json!({"opens_at": at(3600), "queue": window})).await;
    let mut early = Vec::new();
    for _ in 0..40 {
        let user = app.new_user().await;
        let entry = join(&app, &show, &user).await.json_status(201).await;
        assert_eq!(entry["position"], Value::Null, "no place before opening");
        early.push(user);
    }
    // Act: the sale opens (its opening time moves to the past), and one more user joins.
    put_sale(&app, &show, json!({"opens_at": at(-1), "queue": window})).await;
    let late = app.new_user().await;
    let late_entry = join(&app, &show, &late).await.json_status(201).await;
    // Assert: the early joiners hold places 1..=40 in an order other than their join order,
    // and the late joiner is 41st.
    let mut places = Vec::new();
    for user in &early {
        places.push(me(&app, &show, user).await["position"].as_u64().expect("a place after opening"));
    }
    let mut sorted = places.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=40).collect::<Vec<u64>>());
    assert_ne!(places, sorted, "the pre-queue kept its join order (a 1 in 40! chance for a shuffle)");
    assert_eq!(late_entry["position"], 41);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_admission_that_ran_out_refuses_new_holds_but_keeps_the_old_one(db: PgPool) {
    // Arrange: alice is admitted and holds a seat.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 3).await;
    queued_sale(&app, &show, 1).await;
    let alice = app.new_user().await;
    join(&app, &show, &alice).await.assert_status(201);
    let mut admitter = Admitter::new();
    admitter.step(&app.state).await.expect("step");
    let held = crate::helpers::hold(&app, &alice, &show, &[0]).await;
    // Act: her admission window ends (its end moved to the past, as time would).
    let keys = app.state.keys.showtime(sid(&show));
    let past = chrono::Utc::now().timestamp_millis() - 1;
    let mut conn = app.state.redis.get().await.expect("redis");
    let _: () = redis::cmd("ZADD")
        .arg(&keys.adm)
        .arg(past)
        .arg(alice.id.to_string())
        .query_async(&mut conn)
        .await
        .expect("zadd");
    // Assert
    assert_eq!(me(&app, &show, &alice).await["state"], "expired");
    assert_eq!(try_hold(&app, &show, &alice, 1).await.problem(403).await.code, "not_admitted");
    app.get(&format!("/api/v1/holds/{held}"), Some(&alice.token)).await.assert_status(200);
    let pass = admitter.step(&app.state).await.expect("step");
    assert_eq!(pass.expired, 1, "the admitter counts the admission that ran out");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn one_admitter_admits_per_showtime_and_a_stale_one_is_fenced(db: PgPool) {
    // Arrange: a fast queue with many waiting users; two processes' admitters.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 1).await;
    queued_sale(&app, &show, 600).await;
    for _ in 0..5 {
        join(&app, &show, &app.new_user().await).await.assert_status(201);
    }
    let (mut first, mut second) = (Admitter::new(), Admitter::new());
    // Act
    let led = first.step(&app.state).await.expect("first");
    let followed = second.step(&app.state).await.expect("second");
    // Assert: the first leads, the second only follows.
    assert_eq!((led.led, led.followed), (1, 0));
    assert_eq!((followed.led, followed.followed, followed.admitted), (0, 1, 0));
    // The first's lease runs out (deleted, as expiry would); the second takes over with a new
    // token, and the first's old token admits nobody.
    let keys = app.state.keys.showtime(sid(&show));
    let mut conn = app.state.redis.get().await.expect("redis");
    let old: String =
        redis::cmd("HGET").arg(&keys.queue.lease).arg("token").query_async(&mut conn).await.expect("token");
    let _: () = redis::cmd("DEL").arg(&keys.queue.lease).query_async(&mut conn).await.expect("del");
    assert_eq!(second.step(&app.state).await.expect("takeover").led, 1);
    let stale = store::admit(&mut conn, &keys, &old, Duration::from_secs(2), 100).await.expect("admit");
    assert_eq!(stale, AdmitOutcome::Fenced);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_paused_queue_admits_nobody_until_resumed(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, 1).await;
    queued_sale(&app, &show, 60).await;
    let alice = app.new_user().await;
    join(&app, &show, &alice).await.assert_status(201);
    let stats =
        app.admin_post(&format!("/api/v1/showtimes/{}/queue/pause", show.id), &json!({})).await.json_status(200).await;
    assert_eq!(stats["paused"], true);
    let mut admitter = Admitter::new();
    assert_eq!(admitter.step(&app.state).await.expect("step").admitted, 0);
    assert_eq!(me(&app, &show, &alice).await["estimated_wait_secs"], Value::Null, "no estimate while paused");
    app.admin_post(&format!("/api/v1/showtimes/{}/queue/resume", show.id), &json!({})).await.json_status(200).await;
    assert_eq!(admitter.step(&app.state).await.expect("step").admitted, 1);
    assert_eq!(me(&app, &show, &alice).await["state"], "admitted");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn fail_open_lets_every_signed_in_user_hold(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    queued_sale(&app, &show, 1).await;
    let bob = app.new_user().await;
    assert_eq!(try_hold(&app, &show, &bob, 0).await.problem(403).await.code, "not_admitted");
    let open =
        json!({"opens_at": at(-60), "queue": {"admit_per_minute": 1, "admission_minutes": 10, "fail_open": true}});
    let sale = put_sale(&app, &show, open).await;
    assert_eq!(sale["queue"]["fail_open"], true);
    try_hold(&app, &show, &bob, 0).await.assert_status(201);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_admin_sees_waiting_admitted_and_held_counts(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = show(&app, 3).await;
    queued_sale(&app, &show, 1).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    join(&app, &show, &alice).await.assert_status(201);
    join(&app, &show, &bob).await.assert_status(201);
    Admitter::new().step(&app.state).await.expect("step");
    crate::helpers::hold(&app, &alice, &show, &[0, 1]).await;
    let path = format!("/api/v1/showtimes/{}/queue", show.id);
    app.get(&path, Some(&bob.token)).await.problem(403).await;
    let stats = app.get(&path, Some(&app.admin_token.clone())).await.json_status(200).await;
    assert_eq!(
        (stats["waiting"].clone(), stats["admitted"].clone(), stats["held"].clone(), stats["sold"].clone()),
        (json!(1), json!(1), json!(2), json!(0))
    );
    assert_eq!(stats["admit_per_minute"], 1);
}

/// Reads `entry` events of a queue stream.
struct EntryEvents(reqwest::Response, String);

impl EntryEvents {
    async fn open(app: &TestApp, show: &Show, user: &TestUser) -> Self {
        let res = app
            .client
            .get(app.url(&format!("/api/v1/showtimes/{}/queue/me/events", show.id)))
            .bearer_auth(&user.token)
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .expect("stream opens");
        assert_eq!(res.status(), 200);
        Self(res, String::new())
    }

    async fn next_entry(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            while let Some(end) = self.1.find("\n\n") {
                let raw: String = self.1.drain(..end + 2).collect();
                if let Some(data) = raw.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).expect("JSON");
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.0.chunk()).await.expect("an event in time");
            let bytes = chunk.expect("reads").expect("the stream is open");
            self.1.push_str(std::str::from_utf8(&bytes).expect("UTF-8"));
        }
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_waiting_user_sees_his_place_move_and_his_admission_live(db: PgPool) {
    // Arrange: three in line; bob, third, watches his stream.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 1).await;
    queued_sale(&app, &show, 1).await;
    let (alice, carol, bob) = (app.new_user().await, app.new_user().await, app.new_user().await);
    for user in [&alice, &carol, &bob] {
        join(&app, &show, user).await.assert_status(201);
    }
    let mut events = EntryEvents::open(&app, &show, &bob).await;
    assert_eq!(events.next_entry().await["position"], 3);
    let mut admitter = Admitter::new();
    // Act + Assert: each admission moves him up, the last one lets him in.
    admitter.step(&app.state).await.expect("step");
    assert_eq!(events.next_entry().await["position"], 2);
    app.admin_post(&format!("/api/v1/showtimes/{}/queue/pause", show.id), &json!({})).await.json_status(200).await;
    assert_eq!(events.next_entry().await["estimated_wait_secs"], Value::Null, "paused: no estimate");
    assert_eq!(admitter.step(&app.state).await.expect("paused step").admitted, 0);
    app.admin_post(&format!("/api/v1/showtimes/{}/queue/resume", show.id), &json!({})).await.json_status(200).await;
    assert_eq!(events.next_entry().await["position"], 2);
    admitter.step(&app.state).await.expect("step (fresh after resume: one admission)");
    assert_eq!(events.next_entry().await["position"], 1);
    let keys = app.state.keys.showtime(sid(&show));
    let mut conn = app.state.redis.get().await.expect("redis");
    // The bucket has no credit left for a minute: give it one (as a minute passing would).
    let _: () =
        redis::cmd("HSET").arg(&keys.queue.state).arg("credit").arg("1").query_async(&mut conn).await.expect("credit");
    admitter.step(&app.state).await.expect("step");
    let admitted = events.next_entry().await;
    assert_eq!((admitted["state"].clone(), admitted["position"].clone()), (json!("admitted"), Value::Null));
    assert!(admitted["admitted_until"].is_string());
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_checker_passes_a_fair_sale_and_flags_a_hold_of_a_user_never_admitted(db: PgPool) {
    // Arrange: a fair sale so far.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    queued_sale(&app, &show, 1).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    join(&app, &show, &alice).await.assert_status(201);
    Admitter::new().step(&app.state).await.expect("step");
    crate::helpers::hold(&app, &alice, &show, &[0]).await;
    assert_eq!(seatgate::onsale::check::check_fair_onsales(&app.state).await.expect("check"), []);
    // Act: with fail-open on, bob holds without admission, then fail-open is switched off.
    let window = |fail_open: bool| json!({"admit_per_minute": 1, "admission_minutes": 10, "fail_open": fail_open});
    put_sale(&app, &show, json!({"opens_at": at(-60), "queue": window(true)})).await;
    crate::helpers::hold(&app, &bob, &show, &[1]).await;
    put_sale(&app, &show, json!({"opens_at": at(-60), "queue": window(false)})).await;
    // Assert
    let violations = seatgate::onsale::check::check_fair_onsales(&app.state).await.expect("check");
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].detail.contains(&bob.id.to_string()));
}
