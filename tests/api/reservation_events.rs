//! The outcome of a checkout, pushed: `GET /api/v1/reservations/{id}/events` sends the
//! reservation's current view, then one event when its status changes, then ends; owners only;
//! a change that lands right after the stream's first read is not missed.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::StreamExt;
use seatgate::auth::{AuthUser, Role};
use seatgate::ledger::charge::{Outcome, handle_payment};
use seatgate::messaging::messages::{PaymentAction, PaymentTask};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::bookings::checkout;
use crate::helpers::{TestApp, TestUser, hold, show};

/// How long any expected frame may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// One SSE event (heartbeats are skipped by the readers).
#[derive(Debug)]
struct Event {
    name: String,
    data: Value,
}

/// Splits complete frames off `buf`; returns the events among them.
fn take_events(buf: &mut String) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let raw: String = buf.drain(..end + 2).collect();
        let name = raw.lines().find_map(|l| l.strip_prefix("event: ")).map(str::to_owned);
        let data = raw.lines().find_map(|l| l.strip_prefix("data: "));
        if let (Some(name), Some(data)) = (name, data) {
            events.push(Event { name, data: serde_json::from_str(data).expect("JSON data") });
        }
    }
    events
}

/// Every event of a session's stream until it ends (it must end within the deadline).
async fn read_to_end<S, B, E>(stream: S) -> Vec<Event>
where
    S: futures_util::Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::fmt::Debug,
{
    let mut stream = std::pin::pin!(stream);
    let (mut buf, mut events) = (String::new(), Vec::new());
    loop {
        let chunk = tokio::time::timeout(DEADLINE, stream.next()).await.expect("the stream ends within the deadline");
        match chunk {
            Some(bytes) => {
                buf.push_str(std::str::from_utf8(bytes.expect("the stream reads").as_ref()).expect("UTF-8"));
                events.extend(take_events(&mut buf));
            }
            None => return events,
        }
    }
}

/// Every event of a response until it ends (it must end within the deadline).
async fn read_response_to_end(mut res: reqwest::Response) -> Vec<Event> {
    let (mut buf, mut events) = (String::new(), Vec::new());
    loop {
        let chunk = tokio::time::timeout(DEADLINE, res.chunk()).await.expect("the stream ends within the deadline");
        match chunk.expect("the stream reads") {
            Some(bytes) => {
                buf.push_str(std::str::from_utf8(&bytes).expect("UTF-8"));
                events.extend(take_events(&mut buf));
            }
            None => return events,
        }
    }
}

async fn open(app: &TestApp, user: &TestUser, reservation: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/v1/reservations/{reservation}/events")))
        .bearer_auth(&user.token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("request sent")
}

/// `user` holds seat 0 of a new show and checks out with `token`; the reservation id.
async fn checked_out(app: &TestApp, user: &TestUser, token: &str) -> String {
    let show = show(app, 2).await;
    let hold_id = hold(app, user, &show, &[0]).await;
    let accepted = checkout(app, user, &hold_id, "k", token).await.json_status(202).await;
    accepted["reservation_id"].as_str().expect("reservation id").to_owned()
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_first_event_is_the_reservation_as_get_shows_it(db: PgPool) {
    // Arrange: no workers, so the reservation stays payment_pending.
    let app = TestApp::spawn(db).await;
    let alice = app.new_user().await;
    let reservation = checked_out(&app, &alice, "tok_ok").await;
    let view = app.get(&format!("/api/v1/reservations/{reservation}"), Some(&alice.token)).await.json_status(200).await;
    // Act
    let mut res = open(&app, &alice, &reservation).await;
    let mut buf = String::new();
    let first = loop {
        let chunk = tokio::time::timeout(DEADLINE, res.chunk()).await.expect("a frame").expect("reads");
        buf.push_str(std::str::from_utf8(&chunk.expect("still open")).expect("UTF-8"));
        if let Some(event) = take_events(&mut buf).into_iter().next() {
            break event;
        }
    };
    // Assert
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(first.name, "reservation");
    assert_eq!(first.data, view, "the same JSON as GET /api/v1/reservations/{{id}}");
    assert_eq!(first.data["status"], "payment_pending");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_paid_checkout_streams_confirmed_with_the_booking_id_and_ends(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let alice = app.new_user().await;
    let reservation = checked_out(&app, &alice, "tok_ok").await;
    let res = open(&app, &alice, &reservation).await;
    assert_eq!(res.status(), 200);
    // Act: the worker settles the payment while the stream is open.
    app.start_workers();
    let events = read_response_to_end(res).await;
    // Assert
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["reservation", "confirmed"], "{events:?}");
    let confirmed = &events[1].data;
    assert_eq!(confirmed["status"], "confirmed");
    let booking_id = confirmed["booking_id"].as_str().expect("a booking id");
    app.get(&format!("/api/v1/bookings/{booking_id}"), Some(&alice.token)).await.json_status(200).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_declined_checkout_streams_failed_with_its_reason(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let alice = app.new_user().await;
    let reservation = checked_out(&app, &alice, "tok_declined").await;
    let res = open(&app, &alice, &reservation).await;
    // Act
    app.start_workers();
    let events = read_response_to_end(res).await;
    // Assert
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["reservation", "failed"], "{events:?}");
    assert_eq!(events[1].data["status"], "failed");
    assert!(events[1].data["failure_reason"].as_str().is_some_and(|r| r.contains("declined")), "{events:?}");
    assert!(events[1].data["booking_id"].is_null());
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_settled_reservation_streams_its_view_and_ends(db: PgPool) {
    // Arrange: confirmed before the stream opens.
    let app = TestApp::spawn(db).await;
    app.start_workers();
    let alice = app.new_user().await;
    let reservation = checked_out(&app, &alice, "tok_ok").await;
    crate::bookings::wait_for(&app, &alice, &reservation, "confirmed").await;
    // Act
    let events = read_response_to_end(open(&app, &alice, &reservation).await).await;
    // Assert
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].name.as_str(), &events[0].data["status"]), ("reservation", &Value::from("confirmed")));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn someone_elses_reservation_stream_is_a_404_like_its_get(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let (alice, mallory) = (app.new_user().await, app.new_user().await);
    let reservation = checked_out(&app, &alice, "tok_ok").await;
    // Act
    let theirs = open(&app, &mallory, &reservation).await;
    let unknown = open(&app, &mallory, &Uuid::now_v7().to_string()).await;
    let anonymous =
        app.client.get(app.url(&format!("/api/v1/reservations/{reservation}/events"))).send().await.expect("sent");
    // Assert
    assert_eq!(theirs.status(), 404);
    assert_eq!(theirs.headers()["content-type"], "application/problem+json");
    assert_eq!(unknown.status(), 404);
    assert_eq!(anonymous.status(), 401);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_change_that_lands_right_after_the_first_read_still_reaches_the_stream(db: PgPool) {
    // Arrange: the stream has read the reservation (payment_pending); before it starts, the
    // payment is charged and the booking committed and published.
    let app = TestApp::spawn(db.clone()).await;
    let alice = app.new_user().await;
    let reservation: Uuid = checked_out(&app, &alice, "tok_ok").await.parse().expect("uuid");
    let payment: Uuid = sqlx::query_scalar("select id from payments where reservation_id = $1")
        .bind(reservation)
        .fetch_one(&db)
        .await
        .expect("payment");
    let ctx = seatgate::worker::context(app.state.clone());
    let task = PaymentTask::new(PaymentAction::Charge, payment, reservation);
    let user = AuthUser { id: alice.id, role: Role::User };
    let permit = (
        app.state.live.admit().expect("a stream slot"),
        app.state.stream_limits.admit(IpAddr::V4(Ipv4Addr::LOCALHOST), Some(alice.id)).expect("under the caps"),
    );
    let settle = async {
        let outcome = handle_payment(&ctx, &task).await.expect("handled");
        assert!(matches!(outcome, Outcome::Confirmed { .. }), "{outcome:?}");
    };
    // Act
    let session = seatgate::ledger::stream::open_with(&app.state, user, reservation, permit, settle)
        .await
        .expect("the stream opens");
    let events = read_to_end(session.into_stream()).await;
    // Assert: the first view is the one read before the change, and the change follows.
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["reservation", "confirmed"], "{events:?}");
    assert_eq!(events[0].data["status"], "payment_pending");
    assert!(events[1].data["booking_id"].is_string());
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_change_whose_push_was_lost_reaches_the_stream_when_the_sweeper_relays_its_event(db: PgPool) {
    // Arrange: a stream open on a pending reservation; then a worker's commit confirms it and
    // the process dies before delivering anything (no push, no publish: the event waits in the
    // outbox).
    let app = TestApp::spawn(db.clone()).await;
    let alice = app.new_user().await;
    let reservation = checked_out(&app, &alice, "tok_ok").await;
    let mut res = open(&app, &alice, &reservation).await;
    let mut buf = String::new();
    let first = loop {
        let chunk = tokio::time::timeout(DEADLINE, res.chunk()).await.expect("a frame").expect("reads");
        buf.push_str(std::str::from_utf8(&chunk.expect("still open")).expect("UTF-8"));
        if let Some(event) = take_events(&mut buf).into_iter().next() {
            break event;
        }
    };
    assert_eq!(first.data["status"], "payment_pending");
    let id: Uuid = reservation.parse().expect("uuid");
    let mut tx = db.begin().await.expect("tx");
    sqlx::query("update reservations set status = 'confirmed' where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("confirmed");
    let row = seatgate::ledger::repo::find_reservation(&mut tx, id).await.expect("read").expect("exists");
    let event = seatgate::ledger::events::booking_event(
        &row,
        seatgate::messaging::messages::BookingEventKind::Confirmed,
        None,
        None,
        None,
    );
    seatgate::messaging::outbox::stage(&mut tx, &event).await.expect("staged");
    sqlx::query("update outbox set created_at = now() - interval '1 minute'").execute(&mut *tx).await.expect("aged");
    tx.commit().await.expect("committed");
    // Act
    let pass = seatgate::worker::sweeper::sweep_once(&app.state).await;
    // Assert: the relay told the stream, which re-read the row and ended.
    assert!(pass.messages_relayed >= 1, "{pass:?}");
    let mut rest = take_events(&mut buf);
    rest.extend(read_response_to_end(res).await);
    let names: Vec<&str> = rest.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["confirmed"], "{rest:?}");
}
