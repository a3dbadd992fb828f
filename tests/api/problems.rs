//! Malformed input always gets a 4xx problem+json, never a 500.

use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn malformed_json_is_400(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header(CONTENT_TYPE, "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("sent");
    assert_eq!(crate::helpers::Res(res).problem(400).await.code, "bad_request");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_body_that_is_not_json_is_415(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header(CONTENT_TYPE, "text/plain")
        .body("email=a&password=b")
        .send()
        .await
        .expect("sent");
    assert_eq!(crate::helpers::Res(res).problem(415).await.code, "unsupported_media_type");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_field_of_the_wrong_type_is_422_naming_it(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app.admin_post("/api/v1/movies", &json!({"title": "Alien", "duration_minutes": "long"})).await;
    let problem = res.problem(422).await;
    assert_eq!(problem.code, "validation_failed");
    assert!(!problem.errors.is_empty());
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_unknown_field_is_422_naming_it(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res =
        app.admin_post("/api/v1/movies", &json!({"title": "Alien", "duration_minutes": 117, "colour": "red"})).await;
    let problem = res.problem(422).await;
    assert_eq!(problem.errors[0].field, "colour");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_path_id_that_is_not_a_uuid_is_404(db: PgPool) {
    let app = TestApp::spawn(db).await;
    assert_eq!(app.get("/api/v1/movies/not-a-uuid", None).await.problem(404).await.code, "not_found");
    app.delete("/api/v1/showtimes/123", Some(&app.admin_token.clone())).await.problem(404).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_bad_query_parameter_is_422(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.get("/api/v1/movies?page=abc", None).await.problem(422).await;
    app.get("/api/v1/movies?per_page=1000", None).await.problem(422).await;
    app.get("/api/v1/showtimes?date=tomorrow", None).await.problem(422).await;
    app.get("/api/v1/showtimes?movie_id=42", None).await.problem(422).await;
    // Found by schemathesis: a NUL byte in a filter once reached PostgreSQL and came back a 500.
    app.get("/api/v1/showtimes?city=a%00b", None).await.problem(422).await;
    app.get("/api/v1/movies?q=%00", None).await.problem(422).await;
    app.get("/api/v1/theaters?city=%15", None).await.problem(422).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_oversized_body_is_413(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let huge = "x".repeat(200 * 1024);
    let res =
        app.admin_post("/api/v1/movies", &json!({"title": "Big", "duration_minutes": 90, "description": huge})).await;
    assert_eq!(res.problem(413).await.code, "payload_too_large");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_unknown_route_is_a_problem_404(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.get("/api/v1/nothing-here", None).await.problem(404).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_method_a_path_does_not_take_is_405_naming_those_it_does(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app.call(reqwest::Method::PUT, "/api/v1/movies", None, Some(&json!({}))).await;
    assert_eq!(res.header("allow").as_deref(), Some("GET, POST"));
    assert_eq!(res.problem(405).await.code, "method_not_allowed");
    let res = app.call(reqwest::Method::from_bytes(b"TRACE").expect("method"), "/health/live", None, None).await;
    res.problem(405).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_connection_postgres_terminates_is_a_503_not_a_500(db: PgPool) {
    // Arrange: what a restart does to an open connection (SQLSTATE 57P01).
    let mut conn = db.acquire().await.expect("connection");
    // Act
    let err = sqlx::query("select pg_terminate_backend(pg_backend_pid())")
        .execute(&mut *conn)
        .await
        .expect_err("the server ends its own connection");
    // Assert
    let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57P01"), "{err:?}");
    assert!(seatgate::error::postgres_unavailable(&err), "{err:?}");
    let api = seatgate::error::ApiError::from(err);
    assert_eq!(actix_web::ResponseError::status_code(&api), actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
}
