//! Hostile input: a JWT attack set, the authorization matrix of every owner-scoped or admin
//! endpoint, limits on sizes and strings, and login brute force.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use jsonwebtoken::{EncodingKey, Header, encode};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{JWT_SECRET, TestApp, TestUser};

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with any header, signed with HMAC-SHA256 of `secret` whatever the header says.
fn hand_made(header: &Value, claims: &Value, secret: &str) -> String {
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn every_forged_or_broken_token_is_refused(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let user = app.new_user().await;
    let (sub, t) = (user.id, now());
    let good = json!({"sub": sub, "role": "user", "iat": t, "exp": t + 600});
    let attacks: Vec<(&str, String)> = vec![
        ("alg none", format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(good.to_string().as_bytes()))),
        ("HS/RS confusion", hand_made(&json!({"alg": "RS256", "typ": "JWT"}), &good, JWT_SECRET)),
        ("another HMAC alg", {
            let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
            encode(&Header::new(jsonwebtoken::Algorithm::HS512), &good, &key).expect("signs")
        }),
        (
            "expired",
            hand_made(
                &json!({"alg": "HS256"}),
                &json!({"sub": sub, "role": "user", "iat": t - 900, "exp": t - 300}),
                JWT_SECRET,
            ),
        ),
        (
            "not yet valid",
            hand_made(
                &json!({"alg": "HS256"}),
                &json!({"sub": sub, "role": "user", "iat": t, "nbf": t + 3600, "exp": t + 7200}),
                JWT_SECRET,
            ),
        ),
        (
            "issued in the future",
            hand_made(
                &json!({"alg": "HS256"}),
                &json!({"sub": sub, "role": "user", "iat": t + 3600, "exp": t + 7200}),
                JWT_SECRET,
            ),
        ),
        ("wrong signature", hand_made(&json!({"alg": "HS256"}), &good, "not-the-secret-not-the-secret-not-the")),
        (
            "missing sub",
            hand_made(&json!({"alg": "HS256"}), &json!({"role": "user", "iat": t, "exp": t + 600}), JWT_SECRET),
        ),
        (
            "missing role",
            hand_made(&json!({"alg": "HS256"}), &json!({"sub": sub, "iat": t, "exp": t + 600}), JWT_SECRET),
        ),
        (
            "missing exp",
            hand_made(&json!({"alg": "HS256"}), &json!({"sub": sub, "role": "user", "iat": t}), JWT_SECRET),
        ),
        (
            "sub not a uuid",
            hand_made(
                &json!({"alg": "HS256"}),
                &json!({"sub": "admin", "role": "admin", "iat": t, "exp": t + 600}),
                JWT_SECRET,
            ),
        ),
        ("role forged to admin", {
            let parts: Vec<&str> = user.token.split('.').collect();
            let forged = json!({"sub": sub, "role": "admin", "iat": t, "exp": t + 600});
            format!("{}.{}.{}", parts[0], b64(forged.to_string().as_bytes()), parts[2])
        }),
        ("garbage", "not.a.token".to_owned()),
        ("empty", String::new()),
    ];
    // Act + Assert: refused on a user endpoint and on an admin endpoint alike.
    for (name, token) in attacks {
        let me = app.get("/api/v1/me", Some(&token)).await;
        assert_eq!(me.status(), 401, "{name}");
        let write = app.post("/api/v1/movies", Some(&token), &json!({"title": "x", "duration_minutes": 90})).await;
        assert_eq!(write.problem(401).await.code, "unauthorized", "{name}");
    }
    // The genuine token still works.
    app.get("/api/v1/me", Some(&user.token)).await.assert_status(200);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_token_of_a_deleted_or_demoted_account_loses_its_rights(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let user = app.new_user().await;
    let show = app.seed_showtime(&[("A", 2, "standard")], 24).await;
    // A second admin, demoted while holding an admin token.
    app.register("second-admin@example.com", "second-password", "Second").await.assert_status(201);
    seatgate::auth::service::ensure_admin(&db, "second-admin@example.com", "second-password").await.expect("promoted");
    let login = app.login("second-admin@example.com", "second-password").await.json_status(200).await;
    let admin_token = login["access_token"].as_str().expect("token").to_owned();
    app.admin_post("/api/v1/movies", &json!({"title": "ok", "duration_minutes": 90})).await.assert_status(201);
    sqlx::query("update users set role = 'user' where email = 'second-admin@example.com'")
        .execute(&db)
        .await
        .expect("demoted");
    let res = app.post("/api/v1/movies", Some(&admin_token), &json!({"title": "no", "duration_minutes": 90})).await;
    res.problem(403).await;
    // A deleted account: every authenticated endpoint refuses its token.
    sqlx::query("delete from users where id = $1").bind(user.id).execute(&db).await.expect("deleted");
    let hold = json!({"seat_ids": [Uuid::now_v7()]});
    app.post(&format!("/api/v1/showtimes/{}/holds", show["id"].as_str().expect("id")), Some(&user.token), &hold)
        .await
        .problem(401)
        .await;
    app.get("/api/v1/bookings", Some(&user.token)).await.problem(401).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn login_is_throttled_per_email_after_repeated_attempts(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.register("target@example.com", "the-right-password", "Target").await.assert_status(201);
    let limit = app.state.config.auth.login_attempts_per_minute;
    for _ in 0..limit {
        app.login("target@example.com", "a-wrong-guess").await.problem(401).await;
    }
    let res = app.login("target@example.com", "the-right-password").await;
    assert!(res.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| (1..=60).contains(&n))));
    assert_eq!(res.problem(429).await.code, "rate_limited");
    // Other accounts are not affected.
    app.register("bystander@example.com", "bystander-pass", "B").await.assert_status(201);
    app.login("bystander@example.com", "bystander-pass").await.assert_status(200);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn strings_are_bounded_and_unicode_round_trips(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let title = "Amélie 🎬 — 東京物語 ‏עברית";
    let movie = app
        .admin_post("/api/v1/movies", &json!({"title": title, "duration_minutes": 122}))
        .await
        .json_status(201)
        .await;
    assert_eq!(movie["title"], title);
    let long = "x".repeat(201);
    app.admin_post("/api/v1/movies", &json!({"title": long, "duration_minutes": 90})).await.problem(422).await;
    let control = "bad\u{0007}title";
    app.admin_post("/api/v1/movies", &json!({"title": control, "duration_minutes": 90})).await.problem(422).await;
    app.register(&format!("{}@example.com", "a".repeat(300)), "password-ok", "N").await.problem(422).await;
    app.register("ok@example.com", &"p".repeat(10_000), "N").await.problem(422).await;
    app.get("/api/v1/movies?per_page=1000000", None).await.problem(422).await;
    app.get("/api/v1/movies?page=-1", None).await.problem(422).await;
    app.get(&format!("/api/v1/movies?q={}", "q".repeat(500)), None).await.problem(422).await;
    let reviews = format!("/api/v1/movies/{}/reviews", movie["id"].as_str().expect("id"));
    let admin = app.admin_token.clone();
    app.post(&reviews, Some(&admin), &json!({"rating": 99999999999i64})).await.problem(422).await;
}

/// Fixture for the matrix: alice owns a hold, a reservation and a confirmed booking.
struct Fixture {
    alice: TestUser,
    bob: TestUser,
    movie: String,
    theater: String,
    screen: String,
    showtime: String,
    hold: String,
    reservation: String,
    booking: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    app.start_workers();
    let show = app.seed_showtime(&[("A", 4, "standard")], 24).await;
    let screen = app
        .get(&format!("/api/v1/screens/{}", show["screen_id"].as_str().expect("id")), None)
        .await
        .json_status(200)
        .await;
    let seat = |i: usize| screen["seats"][i]["id"].as_str().expect("seat").to_owned();
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let holds = format!("/api/v1/showtimes/{}/holds", show["id"].as_str().expect("id"));
    let paid = app.post(&holds, Some(&alice.token), &json!({"seat_ids": [seat(0)]})).await.json_status(201).await;
    let paid = paid["hold_id"].as_str().expect("hold").to_owned();
    let res = app
        .client
        .post(app.url(&format!("/api/v1/holds/{paid}/checkout")))
        .bearer_auth(&alice.token)
        .header("Idempotency-Key", "fixture")
        .json(&json!({"payment_token": "tok_ok"}))
        .send()
        .await
        .expect("sent");
    let reservation = res.json::<Value>().await.expect("json")["reservation_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    let booking = loop {
        let r =
            app.get(&format!("/api/v1/reservations/{reservation}"), Some(&alice.token)).await.json_status(200).await;
        if let Some(b) = r["booking_id"].as_str() {
            break b.to_owned();
        }
        assert!(Instant::now() < deadline, "booking never confirmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let hold = app.post(&holds, Some(&alice.token), &json!({"seat_ids": [seat(1)]})).await.json_status(201).await;
    Fixture {
        alice,
        bob,
        movie: show["movie_id"].as_str().expect("id").to_owned(),
        theater: show["theater_id"].as_str().expect("id").to_owned(),
        screen: show["screen_id"].as_str().expect("id").to_owned(),
        showtime: show["id"].as_str().expect("id").to_owned(),
        hold: hold["hold_id"].as_str().expect("id").to_owned(),
        reservation,
        booking,
    }
}

/// (method, path, body, anonymous, owner, another user, admin); `None`: not checked.
type MatrixRow = (Method, String, Value, u16, Option<u16>, u16, Option<u16>);

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_authorization_matrix_holds_for_every_endpoint(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let f = fixture(&app).await;
    let admin = app.admin_token.clone();
    let none = json!({});
    let hold_body = json!({"seat_ids": [Uuid::now_v7()]});
    // (method, path, body, anonymous, alice = owner, bob = another user, admin). Writes that
    // would change the fixture are only checked for the callers who must be refused.
    let rows: Vec<MatrixRow> = vec![
        (Method::GET, "/api/v1/me".into(), none.clone(), 401, Some(200), 200, Some(200)),
        (Method::GET, "/api/v1/movies".into(), none.clone(), 200, Some(200), 200, Some(200)),
        (Method::GET, format!("/api/v1/movies/{}", f.movie), none.clone(), 200, Some(200), 200, Some(200)),
        (
            Method::POST,
            "/api/v1/movies".into(),
            json!({"title": "M", "duration_minutes": 90}),
            401,
            Some(403),
            403,
            Some(201),
        ),
        (
            Method::PATCH,
            format!("/api/v1/movies/{}", f.movie),
            json!({"description": "d"}),
            401,
            Some(403),
            403,
            Some(200),
        ),
        (Method::DELETE, format!("/api/v1/movies/{}", f.movie), none.clone(), 401, Some(403), 403, Some(409)),
        (Method::GET, format!("/api/v1/theaters/{}", f.theater), none.clone(), 200, Some(200), 200, Some(200)),
        (
            Method::PATCH,
            format!("/api/v1/theaters/{}", f.theater),
            json!({"address": "a"}),
            401,
            Some(403),
            403,
            Some(200),
        ),
        (Method::DELETE, format!("/api/v1/theaters/{}", f.theater), none.clone(), 401, Some(403), 403, Some(409)),
        (Method::GET, format!("/api/v1/theaters/{}/screens", f.theater), none.clone(), 200, Some(200), 200, Some(200)),
        (
            Method::POST,
            format!("/api/v1/theaters/{}/screens", f.theater),
            json!({"name": "S2", "rows": [{"label": "A", "seats": 1, "category": "standard"}]}),
            401,
            Some(403),
            403,
            Some(201),
        ),
        (Method::GET, format!("/api/v1/screens/{}", f.screen), none.clone(), 200, Some(200), 200, Some(200)),
        (Method::DELETE, format!("/api/v1/screens/{}", f.screen), none.clone(), 401, Some(403), 403, Some(409)),
        (Method::GET, format!("/api/v1/showtimes/{}", f.showtime), none.clone(), 200, Some(200), 200, Some(200)),
        (Method::POST, "/api/v1/showtimes".into(), json!({}), 401, Some(403), 403, Some(422)),
        (Method::PATCH, format!("/api/v1/showtimes/{}", f.showtime), json!({}), 401, Some(403), 403, Some(200)),
        (Method::DELETE, format!("/api/v1/showtimes/{}", f.showtime), none.clone(), 401, Some(403), 403, None),
        (Method::GET, format!("/api/v1/showtimes/{}/seats", f.showtime), none.clone(), 200, Some(200), 200, Some(200)),
        (
            Method::POST,
            format!("/api/v1/showtimes/{}/holds", f.showtime),
            hold_body.clone(),
            401,
            Some(422),
            422,
            Some(422),
        ),
        (Method::GET, format!("/api/v1/holds/{}", f.hold), none.clone(), 401, Some(200), 404, Some(404)),
        (Method::DELETE, format!("/api/v1/holds/{}", f.hold), none.clone(), 401, None, 404, Some(404)),
        (
            Method::POST,
            format!("/api/v1/holds/{}/checkout", f.hold),
            json!({"payment_token": "tok_ok"}),
            401,
            None,
            422,
            Some(422),
        ),
        (Method::GET, format!("/api/v1/reservations/{}", f.reservation), none.clone(), 401, Some(200), 404, Some(404)),
        (Method::GET, "/api/v1/bookings".into(), none.clone(), 401, Some(200), 200, Some(200)),
        (Method::GET, format!("/api/v1/bookings/{}", f.booking), none.clone(), 401, Some(200), 404, Some(404)),
        (Method::POST, format!("/api/v1/bookings/{}/cancel", f.booking), none.clone(), 401, None, 404, Some(404)),
        (Method::GET, format!("/api/v1/movies/{}/reviews", f.movie), none.clone(), 200, Some(200), 200, Some(200)),
        (
            Method::POST,
            format!("/api/v1/movies/{}/reviews", f.movie),
            json!({"rating": 4}),
            401,
            Some(201),
            403,
            Some(403),
        ),
    ];
    // Act + Assert
    for (method, path, body, anonymous, owner, other, as_admin) in rows {
        let callers = [
            ("anonymous", None, Some(anonymous)),
            ("other user", Some(f.bob.token.as_str()), Some(other)),
            ("owner", Some(f.alice.token.as_str()), owner),
            ("admin", Some(admin.as_str()), as_admin),
        ];
        for (who, token, expected) in callers {
            let Some(expected) = expected else { continue };
            let res = app.call(method.clone(), &path, token, Some(&body)).await;
            let status = res.status().as_u16();
            let text = res.0.text().await.unwrap_or_default();
            assert_eq!(status, expected, "{method} {path} as {who}: {text}");
        }
    }
    // Bob's hold of Alice's seat is still refused, and her hold still hers.
    app.get(&format!("/api/v1/holds/{}", f.hold), Some(&f.alice.token)).await.assert_status(200);
}
