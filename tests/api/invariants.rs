//! The invariant checker finds nothing after a clean sale and names each breach it is shown.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::TestApp;

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_checker_passes_a_clean_sale_and_names_each_breach(db: PgPool) {
    // Arrange: one confirmed booking of seat A1.
    let app = TestApp::spawn(db.clone()).await;
    app.start_workers();
    let show = app.seed_showtime(&[("A", 3, "standard")], 24).await;
    let screen = app.get(&format!("/api/v1/screens/{}", show["screen_id"].as_str().expect("id")), None).await;
    let seats: Vec<String> = screen.json_status(200).await["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or("").to_owned())
        .collect();
    let alice = app.new_user().await;
    let holds = format!("/api/v1/showtimes/{}/holds", show["id"].as_str().expect("id"));
    let hold = app.post(&holds, Some(&alice.token), &json!({"seat_ids": [seats[0]]})).await.json_status(201).await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/holds/{}/checkout", hold["hold_id"].as_str().expect("id"))))
        .bearer_auth(&alice.token)
        .header("Idempotency-Key", "k")
        .json(&json!({"payment_token": "tok_ok"}))
        .send()
        .await
        .expect("sent");
    let reservation = res.json::<Value>().await.expect("json")["reservation_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r =
            app.get(&format!("/api/v1/reservations/{reservation}"), Some(&alice.token)).await.json_status(200).await;
        if r["status"] == "confirmed" {
            break;
        }
        assert!(Instant::now() < deadline, "never confirmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Act + Assert: clean.
    let report = seatgate::invariants::check(&app.state, 30).await.expect("checked");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!((report.bookings, report.booked_seats, report.payments_succeeded), (1, 1, 1));

    // Breaches, one of each kind.
    let keys = app.state.keys.showtime(show["id"].as_str().expect("id").parse().expect("uuid"));
    let mut conn = app.state.redis.get().await.expect("redis");
    let _: () =
        deadpool_redis::redis::cmd("SREM").arg(&keys.sold).arg(&seats[0]).query_async(&mut conn).await.expect("srem");
    let _: () =
        deadpool_redis::redis::cmd("SADD").arg(&keys.sold).arg(&seats[1]).query_async(&mut conn).await.expect("sadd");
    let _: () = deadpool_redis::redis::cmd("HSET")
        .arg(&keys.holds)
        .arg(&seats[0])
        .arg(format!("{}:{}", uuid::Uuid::now_v7(), chrono::Utc::now().timestamp_millis() + 600_000))
        .query_async(&mut conn)
        .await
        .expect("hset");
    sqlx::query("update reservations set status = 'payment_pending', deadline = now() - interval '1 hour'")
        .execute(&db)
        .await
        .expect("stale");
    sqlx::query("update payments set status = 'failed'").execute(&db).await.expect("failed");
    let report = seatgate::invariants::check(&app.state, 30).await.expect("checked");
    let mut kinds: Vec<&str> = report.violations.iter().map(|v| v.invariant).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "no_hold_on_seat_sold_to_another",
            "no_pending_past_deadline",
            "payment_has_booking_or_refund",
            "seat_map_sold_equals_booked_seats"
        ],
        "{:?}",
        report.violations
    );
}
