//! Accounts and tokens.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{JWT_SECRET, TestApp};

fn forge(claims: &Value, secret: &str) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("signs")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn registering_returns_201_with_a_working_token(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    // Act
    let body = app.register("  Ada@Example.com ", "correct horse", "Ada").await.json_status(201).await;
    // Assert
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["user"]["role"], "user");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().expect("expires_in") > 0);
    assert!(body["user"].get("password_hash").is_none());
    let token = body["access_token"].as_str().expect("token");
    let me = app.get("/api/v1/me", Some(token)).await.json_status(200).await;
    assert_eq!(me["id"], body["user"]["id"]);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn registering_an_email_twice_is_a_409_whatever_its_case(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.register("bob@example.com", "password-1", "Bob").await.assert_status(201);
    let problem = app.register("BOB@example.com", "password-2", "Bobby").await.problem(409).await;
    assert_eq!(problem.code, "conflict");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn registering_with_bad_fields_names_each_of_them(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let problem = app.register("not-an-email", "short", " ").await.problem(422).await;
    assert_eq!(problem.code, "validation_failed");
    let mut fields: Vec<_> = problem.errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort();
    assert_eq!(fields, ["email", "name", "password"]);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn login_with_the_right_password_returns_a_token(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.register("carol@example.com", "carols-password", "Carol").await.assert_status(201);
    let body = app.login("Carol@example.com", "carols-password").await.json_status(200).await;
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn login_with_a_wrong_password_or_unknown_email_is_the_same_401(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.register("dave@example.com", "daves-password", "Dave").await.assert_status(201);
    let wrong_password = app.login("dave@example.com", "not-his-password").await.problem(401).await;
    let unknown_email = app.login("nobody@example.com", "daves-password").await.problem(401).await;
    assert_eq!(wrong_password.code, "unauthorized");
    assert_eq!(wrong_password.detail, unknown_email.detail);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn me_without_a_token_is_401(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app.get("/api/v1/me", None).await;
    assert_eq!(res.header("www-authenticate").as_deref(), Some("Bearer"));
    assert_eq!(res.problem(401).await.code, "unauthorized");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_expired_token_is_401(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let user = app.new_user().await;
    let now = chrono::Utc::now().timestamp();
    let token = forge(&json!({"sub": user.id, "role": "user", "iat": now - 7200, "exp": now - 3600}), JWT_SECRET);
    app.get("/api/v1/me", Some(&token)).await.problem(401).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_alg_none_token_is_401(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let user = app.new_user().await;
    let now = chrono::Utc::now().timestamp();
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64(json!({"sub": user.id, "role": "admin", "iat": now, "exp": now + 600}).to_string().as_bytes());
    let token = format!("{header}.{claims}.");
    app.get("/api/v1/me", Some(&token)).await.problem(401).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_tampered_token_is_401(db: PgPool) {
    // Arrange: a real token whose payload is swapped for one claiming admin.
    let app = TestApp::spawn(db).await;
    let user = app.new_user().await;
    let parts: Vec<&str> = user.token.split('.').collect();
    let now = chrono::Utc::now().timestamp();
    let forged = b64(json!({"sub": user.id, "role": "admin", "iat": now, "exp": now + 600}).to_string().as_bytes());
    let token = format!("{}.{}.{}", parts[0], forged, parts[2]);
    // Act + Assert
    app.get("/api/v1/me", Some(&token)).await.problem(401).await;
    let res = app.post("/api/v1/movies", Some(&token), &json!({"title": "x", "duration_minutes": 90})).await;
    res.problem(401).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_token_signed_with_another_secret_is_401(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let now = chrono::Utc::now().timestamp();
    let token = forge(
        &json!({"sub": Uuid::now_v7(), "role": "admin", "iat": now, "exp": now + 600}),
        "some-other-secret-some-other-secret-000",
    );
    app.get("/api/v1/me", Some(&token)).await.problem(401).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_valid_token_of_a_deleted_account_is_401_on_me(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let user = app.new_user().await;
    sqlx::query("delete from users where id = $1").bind(user.id).execute(&db).await.expect("deleted");
    app.get("/api/v1/me", Some(&user.token)).await.problem(401).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_configured_admin_exists_and_can_log_in(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let me = app.get("/api/v1/me", Some(&app.admin_token)).await.json_status(200).await;
    assert_eq!(me["role"], "admin");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn ensure_admin_promotes_an_existing_user_and_is_idempotent(db: PgPool) {
    use seatgate::auth::service::{AdminOutcome, ensure_admin};
    let app = TestApp::spawn(db.clone()).await;
    app.register("erin@example.com", "erins-password", "Erin").await.assert_status(201);
    assert_eq!(ensure_admin(&db, "erin@example.com", "ignored-password").await.expect("ok"), AdminOutcome::Promoted);
    assert_eq!(
        ensure_admin(&db, "erin@example.com", "ignored-password").await.expect("ok"),
        AdminOutcome::AlreadyAdmin
    );
    // The password of a promoted account is left alone.
    let body = app.login("erin@example.com", "erins-password").await.json_status(200).await;
    assert_eq!(body["user"]["role"], "admin");
}
