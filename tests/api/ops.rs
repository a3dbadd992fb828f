//! Health, readiness, metrics, OpenAPI and request ids.

use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{TestApp, test_config};

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn liveness_is_200(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.get("/health/live", None).await.json_status(200).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn readiness_is_200_when_every_service_is_up(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let body = app.get("/health/ready", None).await.json_status(200).await;
    for service in ["postgres", "redis", "rabbitmq"] {
        assert_eq!(body["checks"][service]["status"], "up", "{service}: {body}");
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn readiness_is_503_naming_the_service_that_is_down(db: PgPool) {
    // Arrange: Redis and RabbitMQ pointed at a port nobody listens on.
    let mut config = test_config();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    config.redis.url = seatgate::config::Secret::new(format!("redis://127.0.0.1:{closed}"));
    config.redis.timeout = std::time::Duration::from_millis(300);
    config.amqp.url = seatgate::config::Secret::new(format!("amqp://guest:guest@127.0.0.1:{closed}/%2f"));
    let app = TestApp::spawn_with(db, config).await;
    // Act
    let body = app.get("/health/ready", None).await.json_status(503).await;
    // Assert
    assert_eq!(body["checks"]["postgres"]["status"], "up");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert_eq!(body["checks"]["rabbitmq"]["status"], "down");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn readiness_is_503_while_draining(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.state.start_draining();
    let body = app.get("/health/ready", None).await.json_status(503).await;
    assert_eq!(body["status"], "draining");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn catalog_reads_still_work_when_redis_is_down(db: PgPool) {
    let mut config = test_config();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    config.redis.url = seatgate::config::Secret::new(format!("redis://127.0.0.1:{closed}"));
    config.redis.timeout = std::time::Duration::from_millis(300);
    let app = TestApp::spawn_with(db, config).await;
    app.create_movie("Cache-less", 90).await;
    let page = app.get("/api/v1/movies", None).await.json_status(200).await;
    assert_eq!(page["total"], 1);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn metrics_are_prometheus_text_with_request_counts(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.get("/api/v1/movies", None).await.assert_status(200);
    let res = app.get("/metrics", None).await;
    assert!(res.header("content-type").unwrap_or_default().starts_with("text/plain"));
    let text = res.0.text().await.expect("body");
    assert!(text.contains("seatgate_http_requests_total"), "{text}");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_openapi_document_lists_the_api(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let doc: Value = app.get("/openapi.json", None).await.json_status(200).await;
    for path in ["/api/v1/auth/register", "/api/v1/movies/{id}", "/api/v1/showtimes", "/api/v1/theaters/{id}/screens"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    let docs = app.get("/docs/", None).await;
    docs.assert_status(200);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_request_id_is_echoed_or_generated(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app.client.get(app.url("/health/live")).header("x-request-id", "abc-123").send().await.expect("sent");
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app.get("/health/live", None).await;
    assert!(res.header("x-request-id").is_some_and(|id| id.len() >= 16));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_request_that_finds_every_redis_slot_taken_is_shed_with_503_and_retry_after(db: PgPool) {
    // Arrange: one Redis slot for the whole process, and it is taken.
    let mut config = test_config();
    config.redis.max_in_flight = 1;
    config.redis.queue_timeout = std::time::Duration::from_millis(100);
    config.holds.seatmap_cache = std::time::Duration::ZERO;
    let app = TestApp::spawn_with(db, config).await;
    let show = app.seed_showtime(&[("A", 2, "standard")], 24).await;
    let path = format!("/api/v1/showtimes/{}/seats", show["id"].as_str().expect("id"));
    let taken = app.state.redis.get().await.expect("the only slot");
    // Act
    let started = std::time::Instant::now();
    let res = app.get(&path, None).await;
    // Assert: refused quickly, without waiting for Redis' reply timeout, and told when to retry.
    assert_eq!(res.header("retry-after").as_deref(), Some("1"));
    assert_eq!(res.problem(503).await.code, "service_unavailable");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    drop(taken);
    app.get(&path, None).await.json_status(200).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_workers_metrics_listener_serves_what_the_payment_worker_records(db: PgPool) {
    // Arrange: one paid checkout, booked by the payment worker.
    let app = TestApp::spawn(db).await;
    app.start_workers();
    let show = crate::helpers::show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = crate::helpers::hold(&app, &alice, &show, &[0]).await;
    let accepted = app
        .client
        .post(app.url(&format!("/api/v1/holds/{hold_id}/checkout")))
        .bearer_auth(&alice.token)
        .header("Idempotency-Key", "metrics-1")
        .json(&serde_json::json!({ "payment_token": "tok_ok" }))
        .send()
        .await
        .expect("sent");
    let reservation = crate::helpers::Res(accepted).json_status(202).await["reservation_id"]
        .as_str()
        .expect("reservation id")
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r =
            app.get(&format!("/api/v1/reservations/{reservation}"), Some(&alice.token)).await.json_status(200).await;
        if r["status"] == "confirmed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "reservation stayed {}", r["status"]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let listener =
        seatgate::metrics_listener::MetricsListener::bind("127.0.0.1:0".parse().expect("addr"), stop.clone())
            .expect("binds");
    let base = format!("http://127.0.0.1:{}", listener.port());
    let server = tokio::spawn(listener.run_until_stopped());
    // Act
    let res = app.client.get(format!("{base}/metrics")).send().await.expect("scraped");
    let live = app.client.get(format!("{base}/health/live")).send().await.expect("probed");
    // Assert
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/plain"));
    let text = res.text().await.expect("body");
    assert!(text.contains(r#"seatgate_payments_total{outcome="confirmed"}"#), "{text}");
    assert!(text.contains("seatgate_booking_finalisation_seconds"), "{text}");
    assert_eq!(live.status(), 200);
    stop.cancel();
    server.await.expect("joined").expect("stopped cleanly");
}
