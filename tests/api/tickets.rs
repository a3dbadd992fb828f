//! Tickets and the door (docs/DESIGN.md §6): signed tickets that verify offline, their QR codes,
//! the door role, check-in exactly once (also for two scans in flight at once), refusals that
//! are never a 500, the offline bundle and the batch upload of offline scans.

use std::sync::Arc;

use reqwest::Method;
use seatgate::auth::{AuthUser, Role};
use seatgate::config::{SecretKey, TicketConfig};
use seatgate::error::ApiError;
use seatgate::ledger::ticket::{self as sign, TicketKeys};
use seatgate::tickets::service::{self, CheckinRequest};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Show, TestApp, TestUser, show, test_config};

/// A confirmed booking of `seats` (positions in `show`) for `user`, straight in PostgreSQL as
/// the payment worker writes it; the booking as its owner reads it.
async fn booked(app: &TestApp, user: &TestUser, show: &Show, seats: &[usize]) -> Value {
    let showtime: Uuid = show.id.parse().expect("uuid");
    let (reservation, booking) = (Uuid::now_v7(), Uuid::now_v7());
    let code = {
        let hex = Uuid::new_v4().simple().to_string().to_uppercase();
        format!("SG-{}-{}", &hex[..4], &hex[4..8])
    };
    let db = &app.state.db;
    sqlx::query(
        r#"insert into reservations (id, user_id, showtime_id, hold_id, status, amount_minor, currency, deadline)
           values ($1, $2, $3, $4, 'confirmed', $5, 'EUR', now())"#,
    )
    .bind(reservation)
    .bind(user.id)
    .bind(showtime)
    .bind(Uuid::now_v7())
    .bind(1000 * seats.len() as i64)
    .execute(db)
    .await
    .expect("reservation");
    sqlx::query(
        r#"insert into bookings (id, reservation_id, user_id, showtime_id, ticket_code, amount_minor, currency)
           values ($1, $2, $3, $4, $5, $6, 'EUR')"#,
    )
    .bind(booking)
    .bind(reservation)
    .bind(user.id)
    .bind(showtime)
    .bind(&code)
    .bind(1000 * seats.len() as i64)
    .execute(db)
    .await
    .expect("booking");
    for i in seats {
        let seat: Uuid = show.seats[*i].parse().expect("uuid");
        sqlx::query("insert into reservation_seats (reservation_id, seat_id, category, price_minor) values ($1, $2, 'standard', 1000)")
            .bind(reservation)
            .bind(seat)
            .execute(db)
            .await
            .expect("reservation seat");
        sqlx::query("insert into booked_seats (showtime_id, seat_id, booking_id) values ($1, $2, $3)")
            .bind(showtime)
            .bind(seat)
            .bind(booking)
            .execute(db)
            .await
            .expect("booked seat");
    }
    app.get(&format!("/api/v1/bookings/{booking}"), Some(&user.token)).await.json_status(200).await
}

/// A registered user whom the admin made door staff.
async fn door_user(app: &TestApp) -> TestUser {
    let user = app.new_user().await;
    let body = json!({"role": "door"});
    let res = app
        .call(Method::PUT, &format!("/api/v1/users/{}/role", user.id), Some(app.admin_token.as_str()), Some(&body))
        .await;
    assert_eq!(res.json_status(200).await["role"], "door");
    user
}

async fn scan(app: &TestApp, door: &TestUser, ticket: &str, gate: Option<&str>) -> crate::helpers::Res {
    app.post("/api/v1/checkins", Some(&door.token), &json!({"ticket": ticket, "gate": gate})).await
}

fn signed(booking: &Value) -> String {
    booking["ticket"]["signed"].as_str().expect("signed ticket").to_owned()
}

fn id(v: &Value) -> Uuid {
    v.as_str().expect("id").parse().expect("uuid")
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_booking_carries_a_signed_ticket_that_verifies_offline_with_the_bundle_keys(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, 4).await;
    let user = app.new_user().await;
    let booking = booked(&app, &user, &show, &[1, 2]).await;
    let door = door_user(&app).await;
    // Act
    let bundle = app
        .get(&format!("/api/v1/showtimes/{}/checkin-bundle", show.id), Some(&door.token))
        .await
        .json_status(200)
        .await;
    // Assert: the bundle's keys alone verify the ticket, and it says what was booked.
    assert_eq!(booking["ticket"]["code"], booking["ticket_code"]);
    let keys: Vec<(String, ed25519_dalek::VerifyingKey)> = bundle["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(k["public_key"].as_str().expect("key"))
                .expect("base64url");
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes.try_into().expect("32 bytes")).expect("a key");
            (k["kid"].as_str().expect("kid").to_owned(), key)
        })
        .collect();
    let claims = sign::verify_with(&keys, &signed(&booking)).expect("verifies offline");
    assert_eq!(claims.booking_id, id(&booking["id"]));
    assert_eq!(claims.showtime_id, show.id.parse::<Uuid>().expect("uuid"));
    assert_eq!(claims.seat_ids, [show.seats[1].parse::<Uuid>().expect("uuid"), show.seats[2].parse().expect("uuid")]);
    assert_eq!(bundle["revoked"], json!([]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_ticket_svg_is_the_qr_code_and_only_for_the_owner(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    let (owner, other) = (app.new_user().await, app.new_user().await);
    let booking = booked(&app, &owner, &show, &[0]).await;
    let path = format!("/api/v1/bookings/{}/ticket.svg", booking["id"].as_str().expect("id"));
    // Act
    let res = app.get(&path, Some(&owner.token)).await;
    // Assert
    res.assert_status(200);
    assert_eq!(res.header("content-type").as_deref(), Some("image/svg+xml"));
    let svg = res.0.text().await.expect("body");
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    assert_eq!(app.get(&path, Some(&other.token)).await.problem(404).await.code, "not_found");
    app.get(&path, None).await.problem(401).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn only_an_admin_grants_roles_and_a_new_door_role_counts_at_once(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    let user = app.new_user().await;
    let booking = booked(&app, &user, &show, &[0]).await;
    let staff = app.new_user().await;
    let path = format!("/api/v1/users/{}/role", staff.id);
    let door = json!({"role": "door"});
    // Act + Assert: a plain user may neither grant roles nor scan.
    let refused = app.call(Method::PUT, &path, Some(&user.token), Some(&door)).await.problem(403).await;
    assert_eq!(refused.code, "forbidden");
    assert_eq!(scan(&app, &staff, &signed(&booking), None).await.problem(403).await.code, "forbidden");
    // The admin grants `door`; the same token works at the door from the next request on.
    let granted =
        app.call(Method::PUT, &path, Some(app.admin_token.as_str()), Some(&door)).await.json_status(200).await;
    assert_eq!((granted["id"].as_str(), granted["role"].as_str()), (Some(staff.id.to_string().as_str()), Some("door")));
    scan(&app, &staff, &signed(&booking), Some("north-1")).await.json_status(201).await;
    // Door staff grant nothing; bad roles, unknown users and the admin's own role are refused.
    let admin = json!({"role": "admin"});
    app.call(Method::PUT, &format!("/api/v1/users/{}/role", user.id), Some(&staff.token), Some(&admin))
        .await
        .problem(403)
        .await;
    let bad = json!({"role": "superuser"});
    app.call(Method::PUT, &path, Some(app.admin_token.as_str()), Some(&bad)).await.problem(422).await;
    let nobody = format!("/api/v1/users/{}/role", Uuid::now_v7());
    app.call(Method::PUT, &nobody, Some(app.admin_token.as_str()), Some(&door)).await.problem(404).await;
    let me: Value = app.get("/api/v1/me", Some(app.admin_token.as_str())).await.json_status(200).await;
    let own = format!("/api/v1/users/{}/role", me["id"].as_str().expect("id"));
    app.call(Method::PUT, &own, Some(app.admin_token.as_str()), Some(&door)).await.problem(409).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_ticket_checks_in_once_and_a_second_scan_says_when_and_where_the_first_was(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, 3).await;
    let user = app.new_user().await;
    let booking = booked(&app, &user, &show, &[0, 1]).await;
    let door = door_user(&app).await;
    // Act: the QR code at one gate, then the code typed (lower case) at another.
    let first = scan(&app, &door, &signed(&booking), Some("north-1")).await.json_status(201).await;
    let code = booking["ticket_code"].as_str().expect("code").to_lowercase();
    let res = app.post("/api/v1/checkins", Some(&door.token), &json!({"ticket": code, "gate": "south-2"})).await;
    // Assert
    assert_eq!(first["booking_id"], booking["id"]);
    assert_eq!(first["showtime_id"], json!(show.id));
    assert_eq!(first["seat_ids"], json!([show.seats[0], show.seats[1]]));
    assert_eq!(first["gate"], "north-1");
    let status = res.status().as_u16();
    let second: Value = res.json().await;
    assert_eq!(status, 409);
    assert_eq!(second["code"], "already_checked_in");
    assert_eq!(second["gate"], "north-1");
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().expect("time")).expect("rfc 3339");
    assert_eq!(at(&second["checked_in_at"]), at(&first["checked_in_at"]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn of_two_scans_in_flight_at_once_exactly_one_lets_the_ticket_in(db: PgPool) {
    // Arrange: both scans read the booking (not yet checked in) and wait at the barrier, so both
    // are past every read before either writes; only the guarded insert can decide.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    let user = app.new_user().await;
    let booking = booked(&app, &user, &show, &[0]).await;
    let door = door_user(&app).await;
    let door = AuthUser { id: door.id, role: Role::Door };
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let gate_scan = |gate: &'static str| {
        let (state, barrier, ticket) = (app.state.clone(), barrier.clone(), signed(&booking));
        tokio::spawn(async move {
            let req = CheckinRequest { ticket, gate: Some(gate.into()), showtime_id: None };
            service::check_in_with(&state, door, req, async move {
                barrier.wait().await;
            })
            .await
        })
    };
    // Act
    let (north, south) = (gate_scan("north-1"), gate_scan("south-2"));
    let results = [north.await.expect("north scan"), south.await.expect("south scan")];
    // Assert
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let loser = results.iter().find_map(|r| r.as_ref().err()).expect("one scan lost");
    let ApiError::AlreadyCheckedIn { checked_in_at, gate } = loser else { panic!("unexpected {loser:?}") };
    assert_eq!((*checked_in_at, gate), (winners[0].checked_in_at, &winners[0].gate));
    let rows: i64 = sqlx::query_scalar("select count(*) from checkins").fetch_one(&app.state.db).await.expect("count");
    assert_eq!(rows, 1);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_booking_cancelled_while_its_scan_runs_is_refused_and_a_used_ticket_cannot_be_cancelled(db: PgPool) {
    // Arrange: two bookings; the scan of the first reads it (confirmed), then its owner cancels it
    // before the scan writes.
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    let user = app.new_user().await;
    let first = booked(&app, &user, &show, &[0]).await;
    let second = booked(&app, &user, &show, &[1]).await;
    let door = door_user(&app).await;
    let door = AuthUser { id: door.id, role: Role::Door };
    let cancel = |booking: &Value| {
        let path = format!("/api/v1/bookings/{}/cancel", booking["id"].as_str().expect("id"));
        let (app, token) = (&app, user.token.clone());
        async move { app.post(&path, Some(&token), &json!({})).await }
    };
    // Act
    let req = CheckinRequest { ticket: signed(&first), gate: Some("north-1".into()), showtime_id: None };
    let raced = service::check_in_with(&app.state, door, req, async { cancel(&first).await.assert_status(202) }).await;
    // Assert: nobody gets in on a cancelled ticket.
    assert!(matches!(raced, Err(ApiError::TicketCancelled)), "{raced:?}");
    let rows: i64 = sqlx::query_scalar("select count(*) from checkins").fetch_one(&app.state.db).await.expect("count");
    assert_eq!(rows, 0);
    // And the other way round: a ticket used at the door can no longer be cancelled (and refunded).
    scan(&app, &door_user(&app).await, &signed(&second), None).await.assert_status(201);
    let refused = cancel(&second).await.problem(409).await;
    assert!(refused.detail.contains("used at the door"), "{refused:?}");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_cancelled_booking_is_refused_at_the_door_and_revoked_in_the_bundle(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, 2).await;
    let user = app.new_user().await;
    let booking = booked(&app, &user, &show, &[0]).await;
    sqlx::query("update bookings set status = 'cancelled', cancelled_at = now() where id = $1")
        .bind(id(&booking["id"]))
        .execute(&app.state.db)
        .await
        .expect("cancelled");
    let door = door_user(&app).await;
    // Act
    let problem = scan(&app, &door, &signed(&booking), None).await.problem(410).await;
    // Assert
    assert_eq!(problem.code, "ticket_cancelled");
    let bundle = app
        .get(&format!("/api/v1/showtimes/{}/checkin-bundle", show.id), Some(&door.token))
        .await
        .json_status(200)
        .await;
    assert_eq!(bundle["revoked"], json!([booking["id"]]));
    assert_eq!(bundle["checked_in"], json!([]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn forged_garbled_unknown_or_misplaced_tickets_are_422_invalid_ticket_never_500(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let (show, other_show) = (show(&app, 2).await, show(&app, 2).await);
    let user = app.new_user().await;
    let booking = booked(&app, &user, &show, &[0]).await;
    let door = door_user(&app).await;
    let good = signed(&booking);
    let mut tampered = good.clone().into_bytes();
    let i = good.rfind('.').expect("dot") - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let stranger = TicketKeys::new(&TicketConfig {
        signing_seed: SecretKey::new([7; 32]),
        signing_key_generated: false,
        key_id: Some(app.state.tickets.kid().to_owned()),
        verify_keys: Vec::new(),
    });
    let forged = stranger.sign(id(&booking["id"]), show.id.parse().expect("uuid"), &[], chrono::Utc::now());
    let unknown_booking =
        app.state.tickets.sign(Uuid::now_v7(), show.id.parse().expect("uuid"), &[], chrono::Utc::now());
    let cases: Vec<Value> = vec![
        json!({"ticket": ""}),
        json!({"ticket": "garbage"}),
        json!({"ticket": "SGT1.x.y.z"}),
        json!({"ticket": "SGT1...."}),
        json!({"ticket": String::from_utf8(tampered).expect("ascii")}),
        json!({"ticket": forged}),
        json!({"ticket": unknown_booking}),
        json!({"ticket": "SG-AAAA-BBBB"}),
        json!({"ticket": "SG-\u{0}-ß"}),
        json!({"ticket": "x".repeat(100_000 / 2)}),
        json!({"ticket": good, "showtime_id": other_show.id}),
    ];
    for body in cases {
        // Act
        let problem = app.post("/api/v1/checkins", Some(&door.token), &body).await.problem(422).await;
        // Assert
        assert_eq!(problem.code, "invalid_ticket", "{}", &body.to_string()[..body.to_string().len().min(120)]);
    }
    // Nothing was let in by any of them; the good ticket still is.
    scan(&app, &door, &good, None).await.json_status(201).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_ticket_of_a_rotated_out_key_checks_in_while_that_key_is_listed_for_verification(db: PgPool) {
    // Arrange: last month's key signed the ticket; this server signs with a new key and lists
    // the old public key in SEATGATE_TICKET_VERIFY_KEYS.
    let old = TicketKeys::new(&TicketConfig {
        signing_seed: SecretKey::new([3; 32]),
        signing_key_generated: false,
        key_id: Some("2026-11".into()),
        verify_keys: Vec::new(),
    });
    let mut config = test_config();
    config.tickets.key_id = Some("2026-12".into());
    config.tickets.verify_keys = vec![("2026-11".into(), old.verifying_keys()[0].1.to_bytes())];
    let app = TestApp::spawn_with(db, config).await;
    let show = show(&app, 2).await;
    let user = app.new_user().await;
    let booking = booked(&app, &user, &show, &[1]).await;
    let seat: Uuid = show.seats[1].parse().expect("uuid");
    let created = chrono::DateTime::parse_from_rfc3339(booking["created_at"].as_str().expect("time")).expect("time");
    let old_ticket = old.sign(id(&booking["id"]), show.id.parse().expect("uuid"), &[seat], created.into());
    let door = door_user(&app).await;
    // Act
    let checked = scan(&app, &door, &old_ticket, None).await.json_status(201).await;
    // Assert: accepted, new tickets carry the new key id, the bundle lists both keys.
    assert_eq!(checked["booking_id"], booking["id"]);
    assert!(signed(&booking).starts_with("SGT1.2026-12."));
    let bundle = app
        .get(&format!("/api/v1/showtimes/{}/checkin-bundle", show.id), Some(&door.token))
        .await
        .json_status(200)
        .await;
    let kids: Vec<&str> =
        bundle["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("kid")).collect();
    assert_eq!(kids, ["2026-12", "2026-11"]);
    assert_eq!(bundle["checked_in"], json!([booking["id"]]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_offline_batch_counts_each_nonce_once_and_reports_conflicts_per_scan(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let show = show(&app, 4).await;
    let user = app.new_user().await;
    let (a, b, c) = (
        booked(&app, &user, &show, &[0]).await,
        booked(&app, &user, &show, &[1]).await,
        booked(&app, &user, &show, &[2]).await,
    );
    sqlx::query("update bookings set status = 'cancelled', cancelled_at = now() where id = $1")
        .bind(id(&c["id"]))
        .execute(&app.state.db)
        .await
        .expect("cancelled");
    let door = door_user(&app).await;
    let scanned_at = "2026-11-30T19:30:00Z";
    let batch = json!({"scans": [
        {"ticket": signed(&a), "scanned_at": scanned_at, "gate": "east", "nonce": "n-1"},
        {"ticket": signed(&a), "scanned_at": "2026-11-30T19:31:00Z", "gate": "west", "nonce": "n-2"},
        {"ticket": b["ticket_code"], "scanned_at": scanned_at, "gate": "east", "nonce": "n-3"},
        {"ticket": signed(&c), "scanned_at": scanned_at, "gate": "east", "nonce": "n-4"},
        {"ticket": "not a ticket", "scanned_at": scanned_at, "gate": "east", "nonce": "n-5"},
    ]});
    // Act: the scanner uploads, loses the answer, and uploads the same batch again.
    let first = app.post("/api/v1/checkins/batch", Some(&door.token), &batch).await.json_status(200).await;
    let again = app.post("/api/v1/checkins/batch", Some(&door.token), &batch).await.json_status(200).await;
    // Assert
    let outcomes = |v: &Value| -> Vec<String> {
        v["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["outcome"].as_str().expect("outcome").to_owned())
            .collect()
    };
    let expected = ["checked_in", "already_checked_in", "checked_in", "ticket_cancelled", "invalid_ticket"];
    assert_eq!(outcomes(&first), expected);
    assert_eq!(outcomes(&again), expected, "a repeated nonce gets its first answer");
    assert!(first["results"].as_array().expect("results").iter().all(|r| r["replayed"] == json!(false)));
    assert!(again["results"].as_array().expect("results").iter().all(|r| r["replayed"] == json!(true)));
    let conflict = &first["results"][1];
    assert_eq!((conflict["gate"].as_str(), conflict["booking_id"].clone()), (Some("east"), a["id"].clone()));
    assert_eq!(conflict["checked_in_at"], first["results"][0]["checked_in_at"]);
    let rows: i64 = sqlx::query_scalar("select count(*) from checkins").fetch_one(&app.state.db).await.expect("count");
    assert_eq!(rows, 2);
    // Online, the offline entry counts: when and where it was scanned.
    let online: Value = scan(&app, &door, &signed(&a), Some("north")).await.json().await;
    assert_eq!((online["code"].as_str(), online["gate"].as_str()), (Some("already_checked_in"), Some("east")));
    let at = chrono::DateTime::parse_from_rfc3339(online["checked_in_at"].as_str().expect("time")).expect("time");
    assert_eq!(at, chrono::DateTime::parse_from_rfc3339(scanned_at).expect("time"));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_malformed_batch_is_refused_whole_naming_each_bad_field(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let door = door_user(&app).await;
    let user = app.new_user().await;
    let at = "2026-11-30T19:30:00Z";
    // Act + Assert
    let empty = app.post("/api/v1/checkins/batch", Some(&door.token), &json!({"scans": []})).await.problem(422).await;
    assert_eq!(empty.errors[0].field, "scans");
    let bad = json!({"scans": [
        {"ticket": "x", "scanned_at": at, "gate": "east", "nonce": ""},
        {"ticket": "x", "scanned_at": at, "gate": "", "nonce": "ok"},
        {"ticket": "x".repeat(6145), "scanned_at": at, "nonce": "long"},
    ]});
    let problem = app.post("/api/v1/checkins/batch", Some(&door.token), &bad).await.problem(422).await;
    let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["scans[0].nonce", "scans[1].gate", "scans[2].ticket"]);
    let ok = json!({"scans": [{"ticket": "x", "scanned_at": at, "nonce": "n"}]});
    app.post("/api/v1/checkins/batch", Some(&user.token), &ok).await.problem(403).await;
    let nonces: i64 =
        sqlx::query_scalar("select count(*) from checkin_nonces").fetch_one(&app.state.db).await.expect("count");
    assert_eq!(nonces, 0);
}
