//! Abuse limits: no single client can take a sale down. Bounded password hashing (503 with
//! `Retry-After` past a timed wait), the auth throttle per client IP (malformed and unknown
//! emails included), duplicate registrations refused before hashing, live streams capped per
//! client IP and per user, and no silent promotion of an existing account to admin.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, show, test_config};

async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> crate::helpers::Res {
    let req = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("X-Forwarded-For", ip)
        .json(&json!({"email": email, "password": password}));
    crate::helpers::Res(req.send().await.expect("sent"))
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_login_that_finds_no_hashing_slot_in_time_gets_503_with_retry_after(db: PgPool) {
    // Arrange: every hashing slot is taken (as by a flood of bogus logins); waits are short.
    let mut config = test_config();
    config.auth.hash_wait = Duration::from_millis(100);
    let app = TestApp::spawn_with(db, config).await;
    app.register("ada@example.com", "the-right-password", "Ada").await.assert_status(201);
    let mut taken = Vec::new();
    for _ in 0..app.state.hashing.size() {
        taken.push(app.state.hashing.acquire().await.expect("a free slot"));
    }
    // Act
    let started = std::time::Instant::now();
    let res = app.login("ada@example.com", "the-right-password").await;
    // Assert: refused after the wait, not queued without bound.
    assert_eq!(res.header("retry-after").as_deref(), Some("1"));
    assert_eq!(res.problem(503).await.code, "overloaded");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(taken);
    app.login("ada@example.com", "the-right-password").await.assert_status(200);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_full_hashing_queue_refuses_at_once(db: PgPool) {
    let mut config = test_config();
    config.auth.hash_queue = 0;
    config.auth.hash_wait = Duration::from_secs(30);
    let app = TestApp::spawn_with(db, config).await;
    let mut taken = Vec::new();
    for _ in 0..app.state.hashing.size() {
        taken.push(app.state.hashing.acquire().await.expect("a free slot"));
    }
    let started = std::time::Instant::now();
    let res = app.register("new@example.com", "long-enough-password", "New").await;
    assert_eq!(res.problem(503).await.code, "overloaded");
    assert!(started.elapsed() < Duration::from_secs(5), "no wait with a full queue");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn registering_a_taken_email_is_refused_before_any_hashing(db: PgPool) {
    // Arrange: the email exists; then every hashing slot is taken and nobody may wait.
    let mut config = test_config();
    config.auth.hash_queue = 0;
    let app = TestApp::spawn_with(db, config).await;
    app.register("taken@example.com", "long-enough-password", "First").await.assert_status(201);
    let mut taken = Vec::new();
    for _ in 0..app.state.hashing.size() {
        taken.push(app.state.hashing.acquire().await.expect("a free slot"));
    }
    // Act
    let res = app.register("Taken@Example.com", "another-password", "Second").await;
    // Assert: 409, not the 503 a hash would have needed.
    assert_eq!(res.problem(409).await.code, "conflict");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn auth_attempts_are_throttled_per_client_ip_also_for_malformed_and_unknown_emails(db: PgPool) {
    // Arrange
    let mut config = test_config();
    config.auth.attempts_per_ip_per_minute = 4;
    let app = TestApp::spawn_with(db, config).await;
    let flooder = "203.0.113.9";
    // Act: ever-new unknown emails and malformed ones, all from one client.
    for i in 0..2 {
        login_from(&app, flooder, &format!("nobody{i}@example.com"), "whatever-pass").await.problem(401).await;
        login_from(&app, flooder, &format!("not-an-email-{i}"), "whatever-pass").await.problem(401).await;
    }
    let refused = login_from(&app, flooder, "fresh@example.com", "whatever-pass").await;
    // Assert: the fifth attempt is throttled; another client is not.
    assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| (1..=60).contains(&n))));
    assert_eq!(refused.problem(429).await.code, "rate_limited");
    login_from(&app, "198.51.100.4", "fresh@example.com", "whatever-pass").await.problem(401).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_malformed_email_is_throttled_as_typed(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let limit = app.state.config.auth.login_attempts_per_minute;
    for _ in 0..limit {
        app.login("  NOT-AN-EMAIL ", "whatever-pass").await.problem(401).await;
    }
    assert_eq!(app.login("not-an-email", "whatever-pass").await.problem(429).await.code, "rate_limited");
}

async fn stream(app: &TestApp, showtime: &str, ip: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .get(app.url(&format!("/api/v1/showtimes/{showtime}/seats/events")))
        .header("X-Forwarded-For", ip)
        .timeout(Duration::from_secs(3600));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("sent")
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn live_streams_are_capped_per_client_ip_and_per_user(db: PgPool) {
    // Arrange
    let mut config = test_config();
    config.live.max_per_ip = 2;
    config.live.max_per_user = 1;
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, 1).await;
    let user = app.new_user().await;
    // Act + Assert: per IP
    let a = stream(&app, &show.id, "203.0.113.1", None).await;
    let b = stream(&app, &show.id, "203.0.113.1", None).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let third = crate::helpers::Res(stream(&app, &show.id, "203.0.113.1", None).await);
    assert_eq!(third.header("retry-after").as_deref(), Some("5"));
    assert_eq!(third.problem(429).await.code, "rate_limited");
    assert_eq!(stream(&app, &show.id, "203.0.113.2", None).await.status(), 200, "other clients are served");
    // Per user, whatever the IP.
    let mine = stream(&app, &show.id, "198.51.100.1", Some(&user.token)).await;
    assert_eq!(mine.status(), 200);
    let again = crate::helpers::Res(stream(&app, &show.id, "198.51.100.2", Some(&user.token)).await);
    assert_eq!(again.problem(429).await.code, "rate_limited");
    // A closed stream gives its place back (noticed at the next write: the first snapshot is
    // out, so the next heartbeat or change; a hold makes a change at once).
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let alice = app.new_user().await;
        let seat = &show.seats[0];
        let hold = app
            .post(&format!("/api/v1/showtimes/{}/holds", show.id), Some(&alice.token), &json!({"seat_ids": [seat]}))
            .await;
        if hold.status().as_u16() == 201 {
            let id: serde_json::Value = hold.json().await;
            app.delete(&format!("/api/v1/holds/{}", id["hold_id"].as_str().expect("id")), Some(&alice.token))
                .await
                .assert_status(204);
        }
        if stream(&app, &show.id, "203.0.113.1", None).await.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the closed stream's place never came back");
    }
    drop(b);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn start_up_promotes_an_existing_account_to_admin_only_when_told_to(db: PgPool) {
    use seatgate::auth::service::{AdminOutcome, bootstrap_admin};
    // Arrange: someone registered the admin email first.
    let app = TestApp::spawn(db).await;
    let squatter = app.register("boss@example.com", "squatter-password", "Squatter").await.json_status(201).await;
    // Act + Assert
    let outcome = bootstrap_admin(&app.state.db, "boss@example.com", "configured-password", false).await.expect("ok");
    assert_eq!(outcome, AdminOutcome::NotPromoted);
    let token = squatter["access_token"].as_str().expect("token");
    assert_eq!(app.get("/api/v1/me", Some(token)).await.json_status(200).await["role"], "user");
    let outcome = bootstrap_admin(&app.state.db, "boss@example.com", "configured-password", true).await.expect("ok");
    assert_eq!(outcome, AdminOutcome::Promoted);
    assert_eq!(app.get("/api/v1/me", Some(token)).await.json_status(200).await["role"], "admin");
}
