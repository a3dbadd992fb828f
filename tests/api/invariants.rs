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

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_checker_names_money_without_a_ticket_a_ticket_without_money_and_a_drifted_sold_set(db: PgPool) {
    // Arrange: three bookings of A1, A2 and A3, made a while ago.
    let app = TestApp::spawn(db.clone()).await;
    let show = app.seed_showtime(&[("A", 4, "standard")], 24).await;
    let showtime: uuid::Uuid = show["id"].as_str().expect("id").parse().expect("uuid");
    let seats: Vec<String> = app
        .get(&format!("/api/v1/screens/{}", show["screen_id"].as_str().expect("id")), None)
        .await
        .json_status(200)
        .await["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or("").to_owned())
        .collect();
    let alice = app.new_user().await;
    for seat in &seats[..3] {
        crate::helpers::book_seat(&db, alice.id, show["id"].as_str().expect("id"), Some(seat)).await;
    }
    let bookings: Vec<(uuid::Uuid, uuid::Uuid)> =
        sqlx::query_as("select id, reservation_id from bookings order by id").fetch_all(&db).await.expect("bookings");
    for (i, (_, reservation)) in bookings.iter().enumerate() {
        let payment = uuid::Uuid::now_v7();
        let status = ["refunded", "succeeded", "succeeded"][i];
        sqlx::query(
            r#"insert into payments (id, reservation_id, status, amount_minor, currency, payment_token, idempotency_key)
               values ($1, $2, $3::payment_status, 1000, 'EUR', null, 'k')"#,
        )
        .bind(payment)
        .bind(reservation)
        .bind(status)
        .execute(&db)
        .await
        .expect("payment");
        sqlx::query(
            "insert into gateway_charges (payment_id, status, amount_minor, currency, reference) values ($1, $2, 1000, 'EUR', 'r')",
        )
        .bind(payment)
        .bind(if i == 0 { "refunded" } else { "charged" })
        .execute(&db)
        .await
        .expect("charge");
    }
    sqlx::query("update bookings set created_at = now() - interval '1 hour', cancelled_at = null")
        .execute(&db)
        .await
        .expect("aged");
    sqlx::query("update reservations set deadline = now() - interval '1 hour'").execute(&db).await.expect("aged");
    // A2's booking is cancelled an hour ago but its charge was never refunded; Redis still shows
    // A2 sold and A3 (still booked) free.
    sqlx::query(
        r#"with c as (update bookings set status = 'cancelled', cancelled_at = now() - interval '1 hour'
                       where id = $1 returning id)
           delete from booked_seats where booking_id in (select id from c)"#,
    )
    .bind(bookings[1].0)
    .execute(&db)
    .await
    .expect("cancelled");
    let keys = app.state.keys.showtime(showtime);
    let mut conn = app.state.redis.get().await.expect("redis");
    let _: () = deadpool_redis::redis::cmd("SADD")
        .arg(&keys.sold)
        .arg("_")
        .arg(&seats[0])
        .arg(&seats[1])
        .query_async(&mut conn)
        .await
        .expect("sadd");
    // Act
    let report = seatgate::invariants::check(&app.state, 30).await.expect("checked");
    // Assert
    let details: Vec<String> = report.violations.iter().map(|v| format!("{}: {}", v.invariant, v.detail)).collect();
    let has = |kind: &str, needle: &str| details.iter().any(|d| d.starts_with(kind) && d.contains(needle));
    assert!(has("no_booking_on_refunded_money", &bookings[0].0.to_string()), "{details:#?}");
    assert!(has("payment_has_booking_or_refund", "no booking and no refund"), "{details:#?}");
    assert!(
        has("seat_map_sold_equals_booked_seats", &format!("seat {} is sold in Redis but not booked", seats[1])),
        "{details:#?}"
    );
    assert!(
        has("seat_map_sold_equals_booked_seats", &format!("seat {} is booked but not sold", seats[2])),
        "{details:#?}"
    );
}
