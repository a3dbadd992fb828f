//! From hold to booking: checkout, the payment worker, refunds, cancellation, the sweeper, and
//! the exactly-once and no-double-booking guarantees under redelivery, crashes and Redis loss.

use std::time::{Duration, Instant};

use reqwest::Method;
use seatgate::ledger::charge::{Outcome, handle_payment};
use seatgate::ledger::gateway::Charge;
use seatgate::messaging::messages::{PaymentAction, PaymentTask};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Res, Show, TestApp, TestUser, hold, show, test_config};

pub(crate) async fn checkout(app: &TestApp, user: &TestUser, hold_id: &str, key: &str, token: &str) -> Res {
    let res = app
        .client
        .post(app.url(&format!("/api/v1/holds/{hold_id}/checkout")))
        .bearer_auth(&user.token)
        .header("Idempotency-Key", key)
        .json(&json!({ "payment_token": token }))
        .send()
        .await
        .expect("sent");
    Res(res)
}

/// Polls the reservation until its status is `want` (10 s at most).
pub(crate) async fn wait_for(app: &TestApp, user: &TestUser, reservation: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body =
            app.get(&format!("/api/v1/reservations/{reservation}"), Some(&user.token)).await.json_status(200).await;
        if body["status"] == want {
            return body;
        }
        assert!(Instant::now() < deadline, "reservation stayed {}: {body}", body["status"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn seat_status(app: &TestApp, show: &Show, i: usize) -> String {
    let map = app.get(&format!("/api/v1/showtimes/{}/seats", show.id), None).await.json_status(200).await;
    map["seats"][i]["status"].as_str().expect("status").to_owned()
}

async fn scalar(db: &PgPool, sql: &'static str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql).bind(id).fetch_one(db).await.expect("query")
}

/// Publishes a payment task once more, as a broker's redelivery or a relay's duplicate would.
async fn publish_again(app: &TestApp, task: &PaymentTask) {
    let channel = app.state.amqp.channel().await.expect("channel");
    let key = seatgate::messaging::outbox::Message::routing_key(task);
    seatgate::messaging::publisher::publish_json(
        &channel,
        &app.state.amqp.names().exchange,
        &key,
        task.message_id,
        1,
        task,
    )
    .await
    .expect("published again");
}

fn uuid(v: &Value) -> Uuid {
    v.as_str().expect("a uuid string").parse().expect("uuid")
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_paid_checkout_becomes_a_confirmed_booking_with_a_ticket_code(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    app.start_workers();
    let show = show(&app, 4).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0, 1]).await;
    // Act
    let accepted = checkout(&app, &alice, &hold_id, "key-1", "tok_ok").await.json_status(202).await;
    // Assert
    assert_eq!((accepted["status"].as_str(), accepted["amount"].as_i64()), (Some("payment_pending"), Some(2000)));
    let reservation = wait_for(&app, &alice, accepted["reservation_id"].as_str().expect("id"), "confirmed").await;
    assert_eq!(reservation["payment_status"], "succeeded");
    let booking_path = format!("/api/v1/bookings/{}", reservation["booking_id"].as_str().expect("booking id"));
    let booking = app.get(&booking_path, Some(&alice.token)).await.json_status(200).await;
    assert!(booking["ticket_code"].as_str().is_some_and(|c| c.starts_with("SG-")));
    assert_eq!(booking["seat_ids"], json!([show.seats[0], show.seats[1]]));
    assert_eq!(
        (seat_status(&app, &show, 0).await, seat_status(&app, &show, 2).await),
        ("sold".into(), "available".into())
    );
    let mine = app.get("/api/v1/bookings", Some(&alice.token)).await.json_status(200).await;
    assert_eq!(mine["total"], 1);
    // Nobody else sees it.
    let bob = app.new_user().await;
    app.get(&booking_path, Some(&bob.token)).await.problem(404).await;
    let reservation_path = format!("/api/v1/reservations/{}", accepted["reservation_id"].as_str().expect("id"));
    app.get(&reservation_path, Some(&bob.token)).await.problem(404).await;
    assert_eq!(app.get("/api/v1/bookings", Some(&bob.token)).await.json_status(200).await["total"], 0);
    // A sold seat cannot be held.
    let path = format!("/api/v1/showtimes/{}/holds", show.id);
    app.post(&path, Some(&bob.token), &json!({"seat_ids": [show.seats[0]]})).await.problem(409).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_declined_payment_fails_the_reservation_and_frees_the_seats(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.start_workers();
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_declined").await.json_status(202).await;
    let reservation = wait_for(&app, &alice, accepted["reservation_id"].as_str().expect("id"), "failed").await;
    assert!(reservation["failure_reason"].as_str().is_some_and(|r| r.contains("declined")), "{reservation}");
    assert_eq!(reservation["payment_status"], "failed");
    assert_eq!(seat_status(&app, &show, 0).await, "available");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_transient_gateway_error_is_retried_until_it_succeeds(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.start_workers();
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_flaky_2").await.json_status(202).await;
    wait_for(&app, &alice, accepted["reservation_id"].as_str().expect("id"), "confirmed").await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_task_that_keeps_failing_is_dead_lettered_after_the_max_attempts(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.start_workers();
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_error").await.json_status(202).await;
    let dead = app.state.amqp.names().payments_dead.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    // The sweeper drains `payments.dead` into `dead_letters`: count both.
    let dead_lettered = || async {
        let recorded: i64 =
            sqlx::query_scalar("select count(*) from dead_letters").fetch_one(&db).await.expect("count");
        i64::from(app.queue_len(&dead).await) + recorded
    };
    while dead_lettered().await == 0 {
        assert!(Instant::now() < deadline, "nothing was dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reservation = uuid(&accepted["reservation_id"]);
    // Three deliveries (max attempts), nothing charged, the reservation still waits for its
    // deadline (the sweeper settles it).
    assert_eq!(scalar(&db, "select deliveries::bigint from payments where reservation_id = $1", reservation).await, 3);
    let charged = scalar(&db, "select count(*) from gateway_charges g join payments p on p.id = g.payment_id where p.reservation_id = $1 and g.status = 'charged'", reservation).await;
    assert_eq!(charged, 0);
    assert_eq!(dead_lettered().await, 1);
    seatgate::worker::sweeper::record_dead_letters(&app.state).await.expect("recorded");
    let recorded: (Uuid, i32) = sqlx::query_as("select payment_id, attempts from dead_letters")
        .fetch_one(&db)
        .await
        .expect("the dead letter is recorded");
    assert_eq!(recorded.1, 3);
    assert_eq!(app.queue_len(&dead).await, 0);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn cancelling_a_booking_frees_the_seats_and_refunds_the_payment(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.start_workers();
    let show = show(&app, 2).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    let reservation_id = accepted["reservation_id"].as_str().expect("id").to_owned();
    let reservation = wait_for(&app, &alice, &reservation_id, "confirmed").await;
    let cancel = format!("/api/v1/bookings/{}/cancel", reservation["booking_id"].as_str().expect("id"));
    // Someone else cannot cancel it.
    app.call(Method::POST, &cancel, Some(&bob.token), None).await.problem(404).await;
    // Act
    let answer = app.call(Method::POST, &cancel, Some(&alice.token), None).await.json_status(202).await;
    // Assert
    assert_eq!(answer["status"], "cancelled");
    assert_eq!(seat_status(&app, &show, 0).await, "available");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = wait_for(&app, &alice, &reservation_id, "cancelled").await;
        if r["payment_status"] == "refunded" {
            break;
        }
        assert!(Instant::now() < deadline, "never refunded: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.call(Method::POST, &cancel, Some(&alice.token), None).await.problem(409).await;
    // The seat can be sold again.
    let hold_id = hold(&app, &bob, &show, &[0]).await;
    let accepted = checkout(&app, &bob, &hold_id, "k", "tok_ok").await.json_status(202).await;
    wait_for(&app, &bob, accepted["reservation_id"].as_str().expect("id"), "confirmed").await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn checkout_with_the_same_key_returns_the_same_answer_and_one_reservation(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let first = checkout(&app, &alice, &hold_id, "same-key", "tok_ok").await.json_status(202).await;
    let again = checkout(&app, &alice, &hold_id, "same-key", "tok_ok").await.json_status(202).await;
    assert_eq!(first, again);
    let count: i64 = sqlx::query_scalar("select count(*) from reservations").fetch_one(&db).await.expect("count");
    assert_eq!(count, 1);
    // The same key with another body is refused; another key for the same hold is a conflict.
    let other_body = checkout(&app, &alice, &hold_id, "same-key", "tok_declined").await.problem(422).await;
    assert_eq!(other_body.errors[0].field, "Idempotency-Key");
    checkout(&app, &alice, &hold_id, "other-key", "tok_ok").await.problem(409).await;
    // The hold is checked out: it cannot be released any more.
    app.delete(&format!("/api/v1/holds/{hold_id}"), Some(&alice.token)).await.problem(409).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn checkout_needs_a_key_the_owner_and_a_live_hold(db: PgPool) {
    let mut config = test_config();
    config.holds.ttl = Duration::from_secs(1);
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, 2).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let path = format!("/api/v1/holds/{hold_id}/checkout");
    let no_key = app.post(&path, Some(&alice.token), &json!({"payment_token": "tok_ok"})).await;
    assert_eq!(no_key.problem(422).await.errors[0].field, "Idempotency-Key");
    checkout(&app, &bob, &hold_id, "k", "tok_ok").await.problem(404).await;
    checkout(&app, &alice, &Uuid::now_v7().to_string(), "k", "tok_ok").await.problem(404).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.get(&format!("/api/v1/holds/{hold_id}"), Some(&alice.token)).await;
        if res.status() == 410 {
            break;
        }
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let problem = checkout(&app, &alice, &hold_id, "k2", "tok_ok").await.problem(410).await;
    assert_eq!(problem.code, "hold_expired");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_task_delivered_twice_charges_once_and_books_once(db: PgPool) {
    // Arrange: a checkout whose task is queued, then the same task published again by hand.
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0, 1]).await;
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    let reservation = uuid(&accepted["reservation_id"]);
    let payment: Uuid = sqlx::query_scalar("select id from payments where reservation_id = $1")
        .bind(reservation)
        .fetch_one(&db)
        .await
        .expect("payment");
    let task = PaymentTask::new(PaymentAction::Charge, payment, reservation);
    publish_again(&app, &task).await;
    assert_eq!(app.queue_len(&app.state.amqp.names().payments.clone()).await, 2);
    // Act
    app.start_workers();
    wait_for(&app, &alice, &reservation.to_string(), "confirmed").await;
    let queue = app.state.amqp.names().payments.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.queue_len(&queue).await > 0 {
        assert!(Instant::now() < deadline, "queue never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Assert
    assert_eq!(scalar(&db, "select count(*) from gateway_charges where payment_id = $1", payment).await, 1);
    assert_eq!(scalar(&db, "select count(*) from bookings where reservation_id = $1", reservation).await, 1);
    let booked = scalar(
        &db,
        "select count(*) from booked_seats b join bookings k on k.id = b.booking_id where k.reservation_id = $1",
        reservation,
    )
    .await;
    assert_eq!(booked, 2);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_worker_that_died_between_charge_and_commit_books_once_on_redelivery(db: PgPool) {
    // Arrange: the first worker charged, then died before its transaction committed.
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    let reservation = uuid(&accepted["reservation_id"]);
    let (payment, amount): (Uuid, i64) =
        sqlx::query_as("select id, amount_minor from payments where reservation_id = $1")
            .bind(reservation)
            .fetch_one(&db)
            .await
            .expect("payment");
    let ctx = seatgate::worker::context(app.state.clone());
    ctx.gateway
        .charge(Charge { payment_id: payment, amount_minor: amount, currency: "EUR", token: "tok_ok" })
        .await
        .expect("charged");
    // Act: the redelivered task, twice for good measure.
    let task = PaymentTask::new(PaymentAction::Charge, payment, reservation);
    let first = handle_payment(&ctx, &task).await.expect("handled");
    let second = handle_payment(&ctx, &task).await.expect("handled");
    // Assert
    assert!(matches!(first, Outcome::Confirmed { .. }), "{first:?}");
    assert!(matches!(second, Outcome::Skipped(_)), "{second:?}");
    assert_eq!(
        scalar(&db, "select count(*) from gateway_charges where payment_id = $1 and status = 'charged'", payment).await,
        1
    );
    assert_eq!(scalar(&db, "select count(*) from bookings where reservation_id = $1", reservation).await, 1);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn when_redis_loses_every_key_two_buyers_of_one_seat_end_with_one_booking_and_one_refund(db: PgPool) {
    // Arrange: alice holds and checks out A1; Redis loses the showtime; bob holds A1 too.
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 2).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let alice_hold = hold(&app, &alice, &show, &[0]).await;
    let alice_res =
        uuid(&checkout(&app, &alice, &alice_hold, "k", "tok_ok").await.json_status(202).await["reservation_id"]);
    let wipe = || async {
        let keys = app.state.keys.showtime(show.id.parse().expect("uuid"));
        let mut conn = app.state.redis.get().await.expect("redis");
        let _: () = deadpool_redis::redis::cmd("DEL")
            .arg(&keys.holds)
            .arg(&keys.expiry)
            .arg(&keys.info)
            .arg(&keys.users)
            .arg(&keys.sold)
            .arg(&keys.meta)
            .query_async(&mut conn)
            .await
            .expect("del");
    };
    wipe().await;
    let bob_hold = hold(&app, &bob, &show, &[0]).await;
    let bob_res = uuid(&checkout(&app, &bob, &bob_hold, "k", "tok_ok").await.json_status(202).await["reservation_id"]);
    // Act: bob's payment is processed first; then Redis loses everything again, so alice's
    // claim finds the seat free and only PostgreSQL's primary key stands in the way.
    let ctx = seatgate::worker::context(app.state.clone());
    let payment_of = |r: Uuid| {
        let db = db.clone();
        async move {
            let id: Uuid = sqlx::query_scalar("select id from payments where reservation_id = $1")
                .bind(r)
                .fetch_one(&db)
                .await
                .expect("payment");
            PaymentTask::new(PaymentAction::Charge, id, r)
        }
    };
    let bob_outcome = handle_payment(&ctx, &payment_of(bob_res).await).await.expect("bob");
    wipe().await;
    let alice_outcome = handle_payment(&ctx, &payment_of(alice_res).await).await.expect("alice");
    // Assert
    assert!(matches!(bob_outcome, Outcome::Confirmed { .. }), "{bob_outcome:?}");
    assert!(matches!(alice_outcome, Outcome::RefundedAfterCharge { .. }), "{alice_outcome:?}");
    let seat: Uuid = show.seats[0].parse().expect("uuid");
    assert_eq!(scalar(&db, "select count(*) from booked_seats where seat_id = $1", seat).await, 1);
    let alice_view = wait_for(&app, &alice, &alice_res.to_string(), "failed").await;
    assert_eq!(alice_view["payment_status"], "refunded");
    assert!(alice_view["failure_reason"].as_str().is_some_and(|r| r.contains("already sold")), "{alice_view}");
    let refunded = scalar(&db, "select count(*) from gateway_charges g join payments p on p.id = g.payment_id where p.reservation_id = $1 and g.status = 'refunded'", alice_res).await;
    assert_eq!(refunded, 1);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_late_payment_for_seats_someone_else_holds_is_refunded_not_booked(db: PgPool) {
    // Alice checks out, Redis forgets her hold, bob holds the seat: her claim loses.
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 2).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let alice_hold = hold(&app, &alice, &show, &[0]).await;
    let alice_res =
        uuid(&checkout(&app, &alice, &alice_hold, "k", "tok_ok").await.json_status(202).await["reservation_id"]);
    let keys = app.state.keys.showtime(show.id.parse().expect("uuid"));
    let mut conn = app.state.redis.get().await.expect("redis");
    let _: () = deadpool_redis::redis::cmd("DEL")
        .arg(&keys.holds)
        .arg(&keys.info)
        .arg(&keys.expiry)
        .arg(&keys.users)
        .query_async(&mut conn)
        .await
        .expect("del");
    hold(&app, &bob, &show, &[0]).await;
    app.start_workers();
    let view = wait_for(&app, &alice, &alice_res.to_string(), "failed").await;
    assert_eq!(view["payment_status"], "refunded");
    assert!(view["failure_reason"].as_str().is_some_and(|r| r.contains("taken by someone else")), "{view}");
    assert_eq!(seat_status(&app, &show, 0).await, "held", "bob keeps his hold");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_sweeper_expires_an_abandoned_checkout(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    let reservation = uuid(&accepted["reservation_id"]);
    // The task is lost and the deadline passes.
    app.purge(&app.state.amqp.names().payments.clone()).await;
    sqlx::query("update reservations set deadline = now() - interval '1 second' where id = $1")
        .bind(reservation)
        .execute(&db)
        .await
        .expect("moved the deadline");
    let pass = seatgate::worker::sweeper::sweep_once(&app.state).await;
    assert_eq!(pass.reservations_expired, 1);
    let view = wait_for(&app, &alice, &reservation.to_string(), "expired").await;
    assert_eq!(view["payment_status"], "failed");
    assert_eq!(seat_status(&app, &show, 0).await, "available");
    // A second sweeper pass (or a second sweeper) changes nothing.
    assert_eq!(seatgate::worker::sweeper::sweep_once(&app.state).await.reservations_expired, 0);
    // Day-old idempotency answers are cleaned up; fresh ones stay.
    sqlx::query("update idempotency_keys set created_at = now() - interval '25 hours'")
        .execute(&db)
        .await
        .expect("aged");
    assert_eq!(seatgate::worker::sweeper::sweep_once(&app.state).await.idempotency_keys_deleted, 1);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_checkout_while_the_broker_is_down_is_accepted_and_its_payment_is_relayed_once_the_broker_is_back(
    db: PgPool,
) {
    // Arrange: one instance that cannot reach RabbitMQ, one that can (same names and keys).
    let config = test_config();
    let mut cut_off = config.clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    cut_off.amqp.url = seatgate::config::Secret::new(format!("amqp://guest:guest@127.0.0.1:{closed}/%2f"));
    let app = TestApp::spawn_with(db.clone(), cut_off).await;
    let healthy = TestApp::spawn_with(db.clone(), config).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    // Act: the checkout is accepted; its payment task waits in the outbox.
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    let reservation = uuid(&accepted["reservation_id"]);
    let staged: i64 = sqlx::query_scalar("select count(*) from outbox where routing_key = 'payment.charge'")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(staged, 1, "the payment task is staged with the reservation");
    sqlx::query("update outbox set created_at = now() - interval '1 minute'").execute(&db).await.expect("aged");
    let pass = seatgate::worker::sweeper::sweep_once(&healthy.state).await;
    // Assert: relayed once, then paid and booked.
    assert_eq!(pass.messages_relayed, 1);
    healthy.start_workers();
    wait_for(&healthy, &alice, &reservation.to_string(), "confirmed").await;
    // The booking event's row goes once its publish is confirmed, just after the commit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = sqlx::query_scalar("select count(*) from outbox").fetch_one(&db).await.expect("count");
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} outbox rows were never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_gateway_failing_a_third_of_the_time_still_books_every_paid_checkout_once(db: PgPool) {
    // Arrange: injected transient failures, generous attempts.
    let mut config = test_config();
    config.workers.payment_failure_rate = 0.3;
    config.workers.payment_max_attempts = 12;
    config.workers.payment_retry_base = Duration::from_millis(20);
    let app = TestApp::spawn_with(db.clone(), config).await;
    app.start_workers();
    let show = show(&app, 8).await;
    // Act: eight buyers, one seat each.
    let mut reservations = Vec::new();
    for i in 0..8 {
        let user = app.new_user().await;
        let hold_id = hold(&app, &user, &show, &[i]).await;
        let accepted = checkout(&app, &user, &hold_id, "k", "tok_ok").await.json_status(202).await;
        reservations.push((user, accepted["reservation_id"].as_str().expect("id").to_owned()));
    }
    // Assert: all confirmed, each charged once.
    for (user, reservation) in &reservations {
        wait_for(&app, user, reservation, "confirmed").await;
    }
    let charged: i64 = sqlx::query_scalar("select count(*) from gateway_charges where status = 'charged'")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(charged, 8);
    assert!(seatgate::invariants::check(&app.state, 30).await.expect("checked").violations.is_empty());
}

/// Alice holds seat A1 and checks out with `tok_ok`; the reservation's id.
pub(crate) async fn checked_out(app: &TestApp) -> (TestUser, Uuid) {
    let show = show(app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(app, &alice, &show, &[0]).await;
    let accepted = checkout(app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    (alice, uuid(&accepted["reservation_id"]))
}

/// The reservation's deadline passes and the sweeper expires it.
pub(crate) async fn expire(app: &TestApp, reservation: Uuid) {
    sqlx::query("update reservations set deadline = now() - interval '1 second' where id = $1")
        .bind(reservation)
        .execute(&app.state.db)
        .await
        .expect("moved the deadline");
    assert_eq!(seatgate::ledger::reconcile::expire_overdue(&app.state).await.expect("swept"), 1);
}

/// A gateway that, while it charges, lets the reservation's deadline pass and the sweeper run:
/// the race of a slow charge against `expire_reservations`.
struct SweptWhileCharging {
    inner: seatgate::ledger::gateway::SimulatedGateway,
    state: seatgate::state::AppState,
}

#[async_trait::async_trait]
impl seatgate::ledger::gateway::PaymentGateway for SweptWhileCharging {
    async fn charge(
        &self,
        charge: Charge<'_>,
    ) -> Result<seatgate::ledger::gateway::ChargeResult, seatgate::ledger::gateway::Transient> {
        let result = self.inner.charge(charge).await;
        sqlx::query("update reservations set deadline = now() - interval '1 second' where status = 'payment_pending'")
            .execute(&self.state.db)
            .await
            .expect("moved the deadline");
        let expired = seatgate::ledger::reconcile::expire_overdue(&self.state).await.expect("swept");
        assert_eq!(expired, 1, "the sweeper expired the reservation mid-charge");
        result
    }

    async fn refund(
        &self,
        payment_id: Uuid,
    ) -> Result<seatgate::ledger::gateway::Refund, seatgate::ledger::gateway::Transient> {
        self.inner.refund(payment_id).await
    }
}

pub(crate) async fn payment_task(db: &PgPool, reservation: Uuid) -> PaymentTask {
    let id: Uuid = sqlx::query_scalar("select id from payments where reservation_id = $1")
        .bind(reservation)
        .fetch_one(db)
        .await
        .expect("payment");
    PaymentTask::new(PaymentAction::Charge, id, reservation)
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_charge_that_completes_after_the_sweeper_expired_the_reservation_is_refunded(db: PgPool) {
    // Arrange: a checkout whose charge is slow enough for the deadline to pass mid-charge.
    let app = TestApp::spawn(db.clone()).await;
    let (alice, reservation) = checked_out(&app).await;
    let gateway = SweptWhileCharging {
        inner: seatgate::ledger::gateway::SimulatedGateway::new(db.clone(), Duration::ZERO, 0.0),
        state: app.state.clone(),
    };
    let ctx = seatgate::ledger::charge::WorkerCtx { state: app.state.clone(), gateway: std::sync::Arc::new(gateway) };
    let task = payment_task(&db, reservation).await;
    // Act
    let outcome = handle_payment(&ctx, &task).await.expect("handled");
    let again = handle_payment(&seatgate::worker::context(app.state.clone()), &task).await.expect("redelivered");
    // Assert: the money went back, once, and the reservation says why.
    assert!(matches!(outcome, Outcome::RefundedAfterCharge { .. }), "{outcome:?}");
    assert!(matches!(again, Outcome::Skipped(_)), "{again:?}");
    let view = wait_for(&app, &alice, &reservation.to_string(), "expired").await;
    assert_eq!(view["payment_status"], "refunded");
    assert!(view["failure_reason"].as_str().is_some_and(|r| r.contains("expired while the payment")), "{view}");
    assert_eq!(
        scalar(
            &db,
            "select count(*) from gateway_charges where payment_id = $1 and status = 'refunded'",
            task.payment_id
        )
        .await,
        1
    );
    assert_eq!(scalar(&db, "select count(*) from bookings where reservation_id = $1", reservation).await, 0);
    let report = seatgate::invariants::check(&app.state, 30).await.expect("checked");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_worker_that_charged_and_died_before_the_deadline_passed_is_refunded_on_redelivery(db: PgPool) {
    // Arrange: a worker charged and died; the sweeper then expired the reservation.
    let app = TestApp::spawn(db.clone()).await;
    let (alice, reservation) = checked_out(&app).await;
    let task = payment_task(&db, reservation).await;
    let ctx = seatgate::worker::context(app.state.clone());
    let mut conn = db.acquire().await.expect("connection");
    assert!(seatgate::ledger::repo::begin_charge(&mut conn, task.payment_id).await.expect("guard"), "won the guard");
    ctx.gateway
        .charge(Charge { payment_id: task.payment_id, amount_minor: 1200, currency: "EUR", token: "tok_ok" })
        .await
        .expect("charged");
    expire(&app, reservation).await;
    // Act: the task comes back.
    let outcome = handle_payment(&ctx, &task).await.expect("handled");
    // Assert
    assert!(matches!(outcome, Outcome::RefundedAfterCharge { .. }), "{outcome:?}");
    let view = wait_for(&app, &alice, &reservation.to_string(), "expired").await;
    assert_eq!(view["payment_status"], "refunded");
    let report = seatgate::invariants::check(&app.state, 30).await.expect("checked");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_expired_reservation_that_was_never_charged_is_not_refunded(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (alice, reservation) = checked_out(&app).await;
    expire(&app, reservation).await;
    let outcome =
        handle_payment(&seatgate::worker::context(app.state.clone()), &payment_task(&db, reservation).await).await;
    assert!(matches!(outcome, Ok(Outcome::Skipped(_))), "{outcome:?}");
    let view = wait_for(&app, &alice, &reservation.to_string(), "expired").await;
    assert_eq!(view["payment_status"], "failed");
    assert_eq!(
        scalar(
            &db,
            "select count(*) from gateway_charges where payment_id = $1",
            payment_task(&db, reservation).await.payment_id
        )
        .await,
        0
    );
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_key_whose_first_request_died_unanswered_is_taken_over_by_a_retry(db: PgPool) {
    // Arrange: the key was claimed by a request that never answered (its instance died).
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let hash = seatgate::infra::hash::fingerprint(&["checkout", &hold_id, "tok_ok"]);
    sqlx::query("insert into idempotency_keys (user_id, key, request_hash) values ($1, 'k', $2)")
        .bind(alice.id)
        .bind(&hash)
        .execute(&db)
        .await
        .expect("claimed");
    // Act / Assert: while the claim is young the retry is told to wait...
    let busy = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.problem(409).await;
    assert!(busy.detail.contains("in progress"), "{busy:?}");
    // ...and once it is older than any request runs, the retry does the work.
    sqlx::query("update idempotency_keys set created_at = now() - interval '1 minute' where user_id = $1")
        .bind(alice.id)
        .execute(&db)
        .await
        .expect("aged");
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    let replayed = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    assert_eq!(accepted, replayed);
    assert_eq!(scalar(&db, "select count(*) from reservations where user_id = $1", alice.id).await, 1);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_booking_event_that_could_not_be_published_is_relayed_by_the_sweeper_once_the_broker_is_back(db: PgPool) {
    // Arrange: a paid checkout, handled by a worker that cannot reach RabbitMQ.
    let app = TestApp::spawn(db.clone()).await;
    let (_alice, reservation) = checked_out(&app).await;
    let mut config = (*app.state.config).clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    config.amqp.url = seatgate::config::Secret::new(format!("amqp://guest:guest@127.0.0.1:{closed}/%2f"));
    let cut_off = seatgate::state::AppState::new(config, db.clone(), app.state.redis.clone());
    // Act
    let outcome = handle_payment(&seatgate::worker::context(cut_off), &payment_task(&db, reservation).await)
        .await
        .expect("handled");
    // Assert: booked, and the event waits in the outbox instead of being dropped.
    assert!(matches!(outcome, Outcome::Confirmed { .. }), "{outcome:?}");
    let staged: i64 = sqlx::query_scalar("select count(*) from outbox").fetch_one(&db).await.expect("count");
    assert_eq!(staged, 1);
    // The broker is reachable again: the sweeper relays it and the notification worker stores it.
    sqlx::query("update outbox set created_at = now() - interval '1 minute'").execute(&db).await.expect("aged");
    assert_eq!(seatgate::worker::sweeper::sweep_once(&app.state).await.messages_relayed, 1);
    app.start_workers();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = scalar(
            &db,
            "select count(*) from notifications where reservation_id = $1 and kind = 'confirmed'",
            reservation,
        )
        .await;
        if stored == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the relayed event never reached the notification worker");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: i64 = sqlx::query_scalar("select count(*) from outbox").fetch_one(&db).await.expect("count");
    assert_eq!(left, 0);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn cancelling_a_showtime_refunds_its_bookings_and_cancels_checkouts_still_unpaid(db: PgPool) {
    // Arrange: bob's checkout waits for payment (its task is lost); alice's booking is confirmed.
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 2).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let bob_hold = hold(&app, &bob, &show, &[1]).await;
    let bob_res = uuid(&checkout(&app, &bob, &bob_hold, "k", "tok_ok").await.json_status(202).await["reservation_id"]);
    app.purge(&app.state.amqp.names().payments.clone()).await;
    app.start_workers();
    let alice_hold = hold(&app, &alice, &show, &[0]).await;
    let alice_res =
        uuid(&checkout(&app, &alice, &alice_hold, "k", "tok_ok").await.json_status(202).await["reservation_id"]);
    let confirmed = wait_for(&app, &alice, &alice_res.to_string(), "confirmed").await;
    // Act
    app.call(Method::DELETE, &format!("/api/v1/showtimes/{}", show.id), Some(&app.admin_token), None)
        .await
        .assert_status(204);
    // Assert: alice's booking is cancelled and her money comes back; her seat is free.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = wait_for(&app, &alice, &alice_res.to_string(), "cancelled").await;
        if r["payment_status"] == "refunded" {
            assert_eq!(r["failure_reason"], "the showtime was cancelled");
            break;
        }
        assert!(Instant::now() < deadline, "never refunded: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let booking = app
        .get(&format!("/api/v1/bookings/{}", confirmed["booking_id"].as_str().expect("id")), Some(&alice.token))
        .await
        .json_status(200)
        .await;
    assert_eq!(booking["status"], "cancelled");
    assert_eq!(scalar(&db, "select count(*) from booked_seats where booking_id = $1", uuid(&booking["id"])).await, 0);
    // Bob's unpaid checkout is cancelled, never charged, even when its task turns up later.
    let view = wait_for(&app, &bob, &bob_res.to_string(), "cancelled").await;
    assert_eq!(view["payment_status"], "failed");
    let late = handle_payment(&seatgate::worker::context(app.state.clone()), &payment_task(&db, bob_res).await).await;
    assert!(matches!(late, Ok(Outcome::Skipped(_))), "{late:?}");
    let bob_payment = payment_task(&db, bob_res).await.payment_id;
    assert_eq!(scalar(&db, "select count(*) from gateway_charges where payment_id = $1", bob_payment).await, 0);
    let report = seatgate::invariants::check(&app.state, 30).await.expect("checked");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    // Cancelling it again changes nothing.
    app.call(Method::DELETE, &format!("/api/v1/showtimes/{}", show.id), Some(&app.admin_token), None)
        .await
        .assert_status(204);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn messages_committed_at_once_are_all_published_and_their_outbox_rows_deleted(db: PgPool) {
    // Arrange: 40 booking events, each committed by its own transaction, as 40 concurrent
    // bookings of one process would be.
    let app = TestApp::spawn(db.clone()).await;
    let (_alice, reservation) = checked_out(&app).await;
    let mut conn = db.acquire().await.expect("conn");
    let row = seatgate::ledger::repo::find_reservation(&mut conn, reservation).await.expect("read").expect("exists");
    drop(conn);
    let mut staged = Vec::new();
    for _ in 0..40 {
        let event = seatgate::ledger::events::booking_event(
            &row,
            seatgate::messaging::messages::BookingEventKind::Confirmed,
            None,
            None,
            None,
        );
        let mut tx = db.begin().await.expect("tx");
        staged.push(seatgate::messaging::outbox::stage(&mut tx, &event).await.expect("staged"));
        tx.commit().await.expect("committed");
    }
    let notifications = app.state.amqp.names().notifications.clone();
    let before = app.queue_len(&notifications).await;
    // Act: the 40 commits hand their messages to the courier at the same time.
    let deliveries = staged
        .iter()
        .map(|m| seatgate::messaging::outbox::deliver(&app.state.db, &app.state.amqp, std::slice::from_ref(m)));
    futures_util::future::join_all(deliveries).await;
    // Assert: each returned once its message was confirmed and its row deleted.
    let left: i64 = sqlx::query_scalar("select count(*) from outbox where routing_key like 'booking.%'")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(left, 0, "every published row is deleted");
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.queue_len(&notifications).await < before + 40 {
        assert!(Instant::now() < deadline, "not every message reached the notifications queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.queue_len(&notifications).await, before + 40, "each message once");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_reservation_shows_its_seats_in_layout_order_its_latest_payment_and_its_booking(db: PgPool) {
    // Arrange: seats held out of layout order.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 4).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[3, 1]).await;
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    let path = format!("/api/v1/reservations/{}", accepted["reservation_id"].as_str().expect("id"));
    // Act: read before the payment worker runs, then after.
    let pending = app.get(&path, Some(&alice.token)).await.json_status(200).await;
    app.start_workers();
    let confirmed = wait_for(&app, &alice, accepted["reservation_id"].as_str().expect("id"), "confirmed").await;
    // Assert
    assert_eq!(pending["seat_ids"], json!([show.seats[1], show.seats[3]]));
    assert_eq!((pending["payment_status"].as_str(), pending["booking_id"].as_str()), (Some("initiated"), None));
    assert_eq!((pending["amount"].as_i64(), pending["currency"].as_str()), (Some(2000), Some("EUR")));
    assert_eq!(confirmed["seat_ids"], pending["seat_ids"]);
    assert_eq!(confirmed["payment_status"], "succeeded");
    assert!(confirmed["booking_id"].as_str().is_some(), "{confirmed}");
    let bob = app.new_user().await;
    app.get(&path, Some(&bob.token)).await.problem(404).await;
}
