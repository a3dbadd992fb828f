//! The ledger's guarantees where money and tickets can part: a refund only after its guard is
//! won, every charge ending booked or refunded (also when its task was dead-lettered), no 500
//! from a checkout retry, a sold set that converges to `booked_seats`, and holds that are never
//! stranded by a failed checkout or a half-written grant. Each test holds its interleaving open
//! by hand (a gateway that acts at one chosen point, a trigger, a key set up to fail), so each
//! failed on the code before its fix.

use std::sync::Arc;
use std::time::Duration;

use seatgate::ledger::charge::{Outcome, WorkerCtx, handle_payment};
use seatgate::ledger::gateway::{Charge, ChargeResult, PaymentGateway, Refund, SimulatedGateway, Transient};
use seatgate::messaging::messages::PaymentTask;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::bookings::{checked_out, checkout, expire, payment_task};
use crate::helpers::{TestApp, hold, show};

async fn scalar(db: &PgPool, sql: &'static str, id: Uuid) -> String {
    sqlx::query_scalar(sql).bind(id).fetch_one(db).await.expect("query")
}

async fn violations(app: &TestApp) -> Vec<seatgate::invariants::Violation> {
    seatgate::invariants::check(&app.state, 30).await.expect("checked").violations
}

/// A gateway whose refund, before it reaches the gateway, lets another delivery of the same task
/// run to its end after the seats were freed: the interleaving in which a refund made before its
/// guard leaves a confirmed booking on refunded money.
struct AnotherDeliveryDuringRefund {
    inner: Arc<SimulatedGateway>,
    state: seatgate::state::AppState,
    task: PaymentTask,
    /// The competing hold (its showtime, id and owner), released just before the other delivery.
    competitor: (Uuid, Uuid, Uuid),
}

#[async_trait::async_trait]
impl PaymentGateway for AnotherDeliveryDuringRefund {
    async fn charge(&self, charge: Charge<'_>) -> Result<ChargeResult, Transient> {
        self.inner.charge(charge).await
    }

    async fn refund(&self, payment_id: Uuid) -> Result<Refund, Transient> {
        let (showtime, hold_id, owner) = self.competitor;
        let mut conn = self.state.redis.get().await.expect("redis");
        let keys = self.state.keys.showtime(showtime);
        seatgate::holds::store::release(&mut conn, &self.state.keys, &keys, hold_id, &owner.to_string(), false)
            .await
            .expect("the competitor released");
        let other = WorkerCtx { state: self.state.clone(), gateway: self.inner.clone() };
        let outcome = handle_payment(&other, &self.task).await.expect("the other delivery");
        tracing::info!(?outcome, "the other delivery ended");
        self.inner.refund(payment_id).await
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_refund_wins_its_guard_before_the_gateway_so_no_booking_stands_on_refunded_money(db: PgPool) {
    // Arrange: alice checked out A1, but her hold lost it (released) and bob holds A1 now.
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 1).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let alice_hold: Uuid = hold(&app, &alice, &show, &[0]).await.parse().expect("uuid");
    let accepted = checkout(&app, &alice, &alice_hold.to_string(), "k", "tok_ok").await.json_status(202).await;
    let reservation: Uuid = accepted["reservation_id"].as_str().expect("id").parse().expect("uuid");
    let showtime: Uuid = show.id.parse().expect("uuid");
    let mut conn = app.state.redis.get().await.expect("redis");
    let keys = app.state.keys.showtime(showtime);
    seatgate::holds::store::release(&mut conn, &app.state.keys, &keys, alice_hold, &alice.id.to_string(), true)
        .await
        .expect("alice's hold lost its seats");
    let bob_hold: Uuid = hold(&app, &bob, &show, &[0]).await.parse().expect("uuid");
    let task = payment_task(&db, reservation).await;
    let gateway = AnotherDeliveryDuringRefund {
        inner: Arc::new(SimulatedGateway::new(db.clone(), Duration::ZERO, 0.0)),
        state: app.state.clone(),
        task: task.clone(),
        competitor: (showtime, bob_hold, bob.id),
    };
    let ctx = WorkerCtx { state: app.state.clone(), gateway: Arc::new(gateway) };
    // Act: this delivery charges, loses its claim to bob and refunds; meanwhile bob lets go and
    // another delivery of the same task runs.
    let outcome = handle_payment(&ctx, &task).await.expect("handled");
    // Assert: refunded and not booked; the other delivery backed off.
    assert!(matches!(outcome, Outcome::RefundedAfterCharge { .. }), "{outcome:?}");
    let bookings: i64 =
        sqlx::query_scalar("select count(*) from bookings where reservation_id = $1 and status = 'confirmed'")
            .bind(reservation)
            .fetch_one(&db)
            .await
            .expect("count");
    assert_eq!(bookings, 0, "no booking may stand on a refunded charge");
    assert_eq!(
        scalar(&db, "select status from gateway_charges where payment_id = $1", task.payment_id).await,
        "refunded"
    );
    assert_eq!(scalar(&db, "select status::text from payments where id = $1", task.payment_id).await, "refunded");
    assert_eq!(violations(&app).await, vec![]);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_charge_whose_task_died_with_redis_down_is_refunded_by_the_reconciler(db: PgPool) {
    // Arrange: a worker whose Redis is unreachable charges, then cannot claim the seats; its
    // task fails until it is dead-lettered, and the reservation's deadline passes.
    let app = TestApp::spawn(db.clone()).await;
    let (_alice, reservation) = checked_out(&app).await;
    let mut config = (*app.state.config).clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let down = format!("redis://127.0.0.1:{closed}");
    config.redis.url = seatgate::config::Secret::new(&down);
    if !config.redis.cluster_nodes.is_empty() {
        // A cluster whose every seed is unreachable.
        config.redis.cluster_nodes = vec![seatgate::config::Secret::new(&down)];
    }
    config.redis.timeout = Duration::from_millis(200);
    let redis_down = seatgate::infra::redis::pool(&config.redis).expect("pool");
    let cut_off = seatgate::state::AppState::new(config, db.clone(), redis_down);
    let task = payment_task(&db, reservation).await;
    for _ in 0..3 {
        let failed = handle_payment(&seatgate::worker::context(cut_off.clone()), &task).await;
        assert!(failed.is_err_and(|e| e.is_transient()), "the claim cannot reach Redis");
    }
    assert_eq!(
        scalar(&db, "select status from gateway_charges where payment_id = $1", task.payment_id).await,
        "charged"
    );
    expire(&app, reservation).await;
    sqlx::query("update payments set updated_at = now() - interval '1 hour' where id = $1")
        .bind(task.payment_id)
        .execute(&db)
        .await
        .expect("idle for an hour");
    // Act
    seatgate::worker::sweeper::sweep_once(&app.state).await;
    // Assert: the money went back and the books say so.
    assert_eq!(
        scalar(&db, "select status from gateway_charges where payment_id = $1", task.payment_id).await,
        "refunded"
    );
    assert_eq!(scalar(&db, "select status::text from payments where id = $1", task.payment_id).await, "refunded");
    assert_eq!(scalar(&db, "select status::text from reservations where id = $1", reservation).await, "expired");
    assert_eq!(violations(&app).await, vec![]);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_checkout_retry_whose_first_claim_vanishes_meanwhile_is_never_a_500(db: PgPool) {
    // Arrange: the key is claimed by a first request still running; a trigger makes that claim
    // vanish (the first request failed and gave its key back) right after the retry's insert.
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 1).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let hash = seatgate::infra::hash::fingerprint(&["checkout", &hold_id, "tok_ok"]);
    sqlx::query("insert into idempotency_keys (user_id, key, request_hash) values ($1, 'k', $2)")
        .bind(alice.id)
        .bind(&hash)
        .execute(&db)
        .await
        .expect("claimed");
    for sql in [
        r#"create function vanish_claims() returns trigger language plpgsql as $$
           begin delete from idempotency_keys where response_status is null; return null; end $$"#,
        "create trigger vanish after insert on idempotency_keys for each statement execute function vanish_claims()",
    ] {
        sqlx::query(sql).execute(&db).await.expect("trigger");
    }
    // Act
    let res = checkout(&app, &alice, &hold_id, "k", "tok_ok").await;
    // Assert: a client error to retry, never a 500; the retry then goes through.
    assert_ne!(res.status().as_u16(), 500);
    let problem = res.problem(409).await;
    assert!(problem.detail.contains("in progress"), "{problem:?}");
    sqlx::query("drop trigger vanish on idempotency_keys").execute(&db).await.expect("dropped");
    checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_seat_left_sold_in_redis_by_a_cancellation_racing_the_sale_is_freed_by_the_sweeper(db: PgPool) {
    // Arrange: alice's booking of A1 is cancelled, and the worker's late `sell` marks A1 sold
    // again after the cancellation freed it (the race of cancel against sell.lua).
    let app = TestApp::spawn(db.clone()).await;
    app.start_workers();
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    let view =
        crate::bookings::wait_for(&app, &alice, accepted["reservation_id"].as_str().expect("id"), "confirmed").await;
    let booking = view["booking_id"].as_str().expect("booking").to_owned();
    app.post(&format!("/api/v1/bookings/{booking}/cancel"), Some(&alice.token), &json!({})).await.assert_status(202);
    let showtime: Uuid = show.id.parse().expect("uuid");
    let mut conn = app.state.redis.get().await.expect("redis");
    let _: () = deadpool_redis::redis::cmd("SADD")
        .arg(&app.state.keys.showtime(showtime).sold)
        .arg(&show.seats[0])
        .query_async(&mut conn)
        .await
        .expect("the late sell");
    let bob = app.new_user().await;
    let res = app
        .post(
            &format!("/api/v1/showtimes/{}/holds", show.id),
            Some(&bob.token),
            &json!({ "seat_ids": [show.seats[0]] }),
        )
        .await;
    assert_eq!(res.status().as_u16(), 409, "the drift: a free seat is refused");
    // Act
    seatgate::worker::sweeper::sweep_once(&app.state).await;
    // Assert: the seat is free again in Redis, as in booked_seats.
    hold(&app, &bob, &show, &[0]).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_checkout_that_fails_after_extending_the_hold_gives_it_back_to_its_owner(db: PgPool) {
    // Arrange: the showtime started after the hold (Redis' cached start is still the old one).
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 1).await;
    let alice = app.new_user().await;
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    sqlx::query("update showtimes set starts_at = now() - interval '1 minute' where id = $1")
        .bind(show.id.parse::<Uuid>().expect("uuid"))
        .execute(&db)
        .await
        .expect("started");
    // Act
    checkout(&app, &alice, &hold_id, "k", "tok_ok").await.problem(409).await;
    // Assert: the hold is hers to see and to release.
    let seen = app.get(&format!("/api/v1/holds/{hold_id}"), Some(&alice.token)).await.json_status(200).await;
    assert_eq!(seen["status"], "held");
    app.delete(&format!("/api/v1/holds/{hold_id}"), Some(&alice.token)).await.assert_status(204);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_checkout_is_priced_at_the_showtimes_prices_even_when_the_cached_showtime_is_older(db: PgPool) {
    // Arrange: the showtime is cached with its prices, which then double in PostgreSQL behind
    // the cache's back (as a price change made through another instance would look here).
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 2).await;
    let alice = app.new_user().await;
    let cached = app.get(&format!("/api/v1/showtimes/{}", show.id), None).await.json_status(200).await;
    let hold_id = hold(&app, &alice, &show, &[0, 1]).await;
    let old: i64 =
        cached["prices"].as_object().expect("prices").values().filter_map(Value::as_i64).max().expect("a price");
    sqlx::query(
        "update showtimes set prices = (select jsonb_object_agg(key, value::bigint * 2) from jsonb_each_text(prices)) where id = $1",
    )
    .bind(show.id.parse::<Uuid>().expect("uuid"))
    .execute(&db)
    .await
    .expect("prices doubled");
    // Act
    let accepted = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    // Assert: the answer, the reservation, its seats and its payment all carry the new prices.
    assert_eq!(accepted["amount"].as_i64(), Some(2 * 2 * old));
    let reservation = accepted["reservation_id"].as_str().expect("id").parse::<Uuid>().expect("uuid");
    let (amount, seats, paid): (i64, i64, i64) = sqlx::query_as(
        "select r.amount_minor, (select sum(price_minor)::bigint from reservation_seats where reservation_id = r.id),
                (select amount_minor from payments where reservation_id = r.id)
           from reservations r where r.id = $1",
    )
    .bind(reservation)
    .fetch_one(&db)
    .await
    .expect("reservation");
    assert_eq!((amount, seats, paid), (4 * old, 4 * old, 4 * old));
    // The stored answer is the one given.
    let again = checkout(&app, &alice, &hold_id, "k", "tok_ok").await.json_status(202).await;
    assert_eq!(again, accepted);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_hold_is_granted_and_indexed_in_one_step_so_no_seats_are_held_without_a_hold_id(db: PgPool) {
    // Arrange: the side keys that a grant used to write after the script are unwritable.
    let app = TestApp::spawn(db.clone()).await;
    let show = show(&app, 1).await;
    let alice = app.new_user().await;
    let mut conn = app.state.redis.get().await.expect("redis");
    let _: () = deadpool_redis::redis::cmd("SET")
        .arg(format!("{}:active-showtimes", app.state.keys.prefix()))
        .arg("not a set")
        .query_async(&mut conn)
        .await
        .expect("poisoned");
    // Act
    let hold_id = hold(&app, &alice, &show, &[0]).await;
    // Assert: granted, and addressable by its id.
    let seen = app.get(&format!("/api/v1/holds/{hold_id}"), Some(&alice.token)).await.json_status(200).await;
    assert_eq!(seen["seat_ids"], json!([show.seats[0]]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_refunded_or_voided_payment_id_is_never_charged(db: PgPool) {
    let gateway = SimulatedGateway::new(db.clone(), Duration::ZERO, 0.0);
    let charge = |id| Charge { payment_id: id, amount_minor: 1200, currency: "EUR", token: "tok_ok" };
    // Charged, then refunded: a retry of the charge is declined, not charged again.
    let paid = Uuid::now_v7();
    assert!(matches!(gateway.charge(charge(paid)).await.expect("charge"), ChargeResult::Charged { .. }));
    assert_eq!(gateway.refund(paid).await.expect("refund"), Refund::Refunded);
    assert_eq!(gateway.refund(paid).await.expect("refund again"), Refund::Refunded);
    assert!(matches!(gateway.charge(charge(paid)).await.expect("charge"), ChargeResult::Declined { .. }));
    // Refunded before any charge arrived: voided, and a late charge is declined.
    let late = Uuid::now_v7();
    assert_eq!(gateway.refund(late).await.expect("refund"), Refund::NothingCharged);
    assert!(matches!(gateway.charge(charge(late)).await.expect("charge"), ChargeResult::Declined { .. }));
    let charged: i64 = sqlx::query_scalar("select count(*) from gateway_charges where status = 'charged'")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(charged, 0);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_refund_interrupted_after_its_guard_is_finished_by_the_reconciler(db: PgPool) {
    // Arrange: a worker charged (guard won), then a refund won its guard and crashed before it
    // called the gateway.
    let app = TestApp::spawn(db.clone()).await;
    let (_alice, reservation) = checked_out(&app).await;
    let task = payment_task(&db, reservation).await;
    let ctx = seatgate::worker::context(app.state.clone());
    let mut conn = db.acquire().await.expect("connection");
    assert!(seatgate::ledger::repo::begin_charge(&mut conn, task.payment_id).await.expect("guard"));
    ctx.gateway
        .charge(Charge { payment_id: task.payment_id, amount_minor: 1200, currency: "EUR", token: "tok_ok" })
        .await
        .expect("charged");
    let statuses = [seatgate::domain::PaymentStatus::Charging];
    assert!(seatgate::ledger::repo::begin_refund(&mut conn, task.payment_id, &statuses, "test").await.expect("won"));
    sqlx::query("update payments set updated_at = now() - interval '1 hour' where id = $1")
        .bind(task.payment_id)
        .execute(&db)
        .await
        .expect("idle");
    // Act
    let pass = seatgate::worker::sweeper::sweep_once(&app.state).await;
    // Assert
    assert_eq!(pass.payments_settled, 1);
    assert_eq!(
        scalar(&db, "select status from gateway_charges where payment_id = $1", task.payment_id).await,
        "refunded"
    );
    assert_eq!(scalar(&db, "select status::text from payments where id = $1", task.payment_id).await, "refunded");
    assert_eq!(scalar(&db, "select status::text from reservations where id = $1", reservation).await, "failed");
    assert_eq!(violations(&app).await, vec![]);
}
