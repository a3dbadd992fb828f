//! The pgbench script of `booking`: the payment worker's booking transaction (`finalise` in
//! `src/ledger/charge.rs`) made of the very statements the worker runs,
//! [`BOOKING_TRANSACTION`] of `src/ledger/repo.rs`, each `$N` replaced by a pgbench expression
//! of one fixture slot, bound as the worker binds it. A change to the worker's SQL is a change
//! to the benchmark; a change to its parameters fails here, at start-up and in the tests.

use anyhow::{Context, bail};
use seatgate::domain::ReservationStatus;
use seatgate::ledger::events::booking_event;
use seatgate::ledger::repo::{BOOKING_TRANSACTION, ReservationRow};
use seatgate::messaging::messages::BookingEventKind;
use seatgate::messaging::outbox::Message;
use serde::Serialize;
use uuid::Uuid;

use super::PGBENCH_SEATS;

/// Price of one pgbench seat, in minor units.
pub(super) const SEAT_PRICE: u64 = 1200;

/// `('<prefix><kind>' || lpad(to_hex(<n>), 23, '0'))::uuid`: the id of kind `kind` (one hex
/// digit) of slot `n`, a SQL expression.
pub(super) fn slot_id(prefix: &str, kind: char, n: &str) -> String {
    format!("('{prefix}{kind}' || lpad(to_hex({n}), 23, '0'))::uuid")
}

/// The script: one booking transaction on slot `:n` of the run `prefix`, whose fixtures belong
/// to `user`. Fails when a statement's placeholders are not the parameters the worker binds.
pub(super) fn script_text(prefix: &str, user: Uuid) -> anyhow::Result<String> {
    let n = ":n::bigint";
    let payment = slot_id(prefix, '2', n);
    let reservation = slot_id(prefix, '1', n);
    let booking = slot_id(prefix, '3', n);
    let showtime = slot_id(prefix, '4', ":k::bigint");
    let message = slot_id(prefix, '7', n);
    let seat = slot_id(prefix, '5', "t.s");
    let ticket = format!("'PG-{prefix}-' || {n}");
    let (routing_key, payload) = booking_payload(user, &[&reservation, &showtime, &booking, &message], &ticket)?;
    let seats =
        format!("array(select {seat} from generate_series(:s0::bigint, :s0::bigint + {}) as t(s))", PGBENCH_SEATS - 1);
    // In the order of BOOKING_TRANSACTION, each with the parameters of its repo function.
    let params: [Vec<String>; 5] = [
        // succeed_payment(id, gateway_ref): the simulated gateway's reference is `sim_<id>`.
        vec![payment.clone(), format!("'sim_' || replace(({payment})::text, '-', '')")],
        // move_reservation(id, payment_pending, confirmed, no reason)
        vec![
            reservation.clone(),
            "'payment_pending'::reservation_status".into(),
            "'confirmed'::reservation_status".into(),
            "null::text".into(),
        ],
        // insert_booking(booking id, reservation, user, showtime, ticket code, amount, currency)
        vec![
            booking.clone(),
            reservation,
            format!("'{user}'::uuid"),
            showtime.clone(),
            ticket,
            (SEAT_PRICE * PGBENCH_SEATS).to_string(),
            "'EUR'".into(),
        ],
        // insert_booked_seats(showtime, booking, seats)
        vec![showtime, booking, seats],
        // outbox::stage(message id, routing key, payload) of the booking event
        vec![message, format!("'{routing_key}'"), payload],
    ];
    let mut text = String::from(
        "-- seatgate-bench `booking`: the payment worker's booking transaction (`finalise` in\n\
         -- src/ledger/charge.rs, BOOKING_TRANSACTION of src/ledger/repo.rs) on one fixture slot.\n\
         \\set i :i + 1\n\
         \\set n :base + :client_id * :stride + :i - 1\n\
         \\set k :n / :per_showtime\n",
    );
    text.push_str(&format!("\\set s0 (:n % :per_showtime) * {PGBENCH_SEATS}\nbegin;\n"));
    for (i, (sql, params)) in BOOKING_TRANSACTION.iter().zip(&params).enumerate() {
        let bound = bind(sql, params).with_context(|| format!("statement {} of BOOKING_TRANSACTION", i + 1))?;
        text.push_str(&bound);
        text.push_str(";\n");
    }
    text.push_str("commit;\n");
    Ok(text)
}

/// `sql` with every `$N` replaced by `params[N - 1]` in parentheses, from the highest `N` down
/// so that `$1` never eats the start of `$10`. Fails unless the placeholders are exactly `$1`
/// to `$<params.len()>`.
pub(super) fn bind(sql: &str, params: &[String]) -> anyhow::Result<String> {
    let mut found: Vec<usize> = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            found.push(rest[..digits].parse().context("a placeholder number")?);
        }
    }
    found.sort_unstable();
    found.dedup();
    if found != (1..=params.len()).collect::<Vec<_>>() {
        bail!("the statement has placeholders {found:?} but {} parameters are bound: {sql}", params.len());
    }
    let mut out = sql.to_owned();
    for (i, param) in params.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), &format!("({param})"));
    }
    Ok(out)
}

/// Stand-ins, in the serialised event, for the ids of the slot (reservation, showtime,
/// booking, message), and for its ticket code.
const STAND_INS: [Uuid; 4] = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3), Uuid::from_u128(4)];
const TICKET_STAND_IN: &str = "SG-TICK-ET00";

/// The worker's booking event (`booking_event` of `src/ledger/events.rs`) as JSON, with
/// [`STAND_INS`] for the slot's ids; a space after each key's colon, because pgbench reads
/// `:name` as a variable even inside a string literal (`"reason":null` would be `:null`).
fn event_template(user: Uuid) -> anyhow::Result<(String, String)> {
    let [reservation, showtime, booking, message] = STAND_INS;
    let now = chrono::Utc::now();
    let r = ReservationRow {
        id: reservation,
        user_id: user,
        showtime_id: showtime,
        hold_id: Uuid::nil(),
        status: ReservationStatus::PaymentPending,
        amount_minor: i64::try_from(SEAT_PRICE * PGBENCH_SEATS)?,
        currency: "EUR".into(),
        deadline: now,
        failure_reason: None,
        created_at: now,
    };
    let mut event = booking_event(&r, BookingEventKind::Confirmed, Some(booking), Some(TICKET_STAND_IN.into()), None);
    event.message_id = message;
    let mut json = Vec::new();
    event.serialize(&mut serde_json::Serializer::with_formatter(&mut json, SpacedColons))?;
    Ok((event.routing_key(), String::from_utf8(json)?))
}

/// The routing key of the booking event and its payload as a SQL expression: the template of
/// [`event_template`] with the stand-ins replaced by the slot's `ids` and `ticket` expressions.
fn booking_payload(user: Uuid, ids: &[&String; 4], ticket: &str) -> anyhow::Result<(String, String)> {
    let (routing_key, json) = event_template(user)?;
    let mut literal = json.replace('\'', "''");
    for (stand_in, id) in STAND_INS.iter().zip(ids) {
        literal = literal.replace(&format!("\"{stand_in}\""), &format!("\"' || ({id})::text || '\""));
    }
    literal = literal.replace(&format!("\"{TICKET_STAND_IN}\""), &format!("\"' || {ticket} || '\""));
    Ok((routing_key, format!("('{literal}')::jsonb")))
}

/// serde_json's compact output, but `"key": value`.
struct SpacedColons;

impl serde_json::ser::Formatter for SpacedColons {
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use seatgate::messaging::messages::BookingEvent;

    use super::*;

    /// The variables the script sets or is given (`--define`), and pgbench's own `client_id`.
    const VARIABLES: [&str; 8] = ["i", "n", "k", "s0", "base", "client_id", "stride", "per_showtime"];

    /// The pgbench variables a script refers to, read as pgbench reads them: a `:` followed by
    /// a letter or `_` starts a name, `::` is skipped.
    fn variables(script: &str) -> Vec<String> {
        let bytes = script.as_bytes();
        let (mut names, mut i) = (Vec::new(), 0);
        while i < bytes.len() {
            if bytes[i] != b':' {
                i += 1;
                continue;
            }
            if bytes.get(i + 1) == Some(&b':') {
                while bytes.get(i) == Some(&b':') {
                    i += 1;
                }
                continue;
            }
            let len = bytes[i + 1..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
            if bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
                names.push(script[i + 1..i + 1 + len].to_owned());
            }
            i += 1 + len;
        }
        names
    }

    #[test]
    fn binding_replaces_the_highest_placeholder_first_so_one_never_eats_ten() {
        // Arrange
        let sql = "select $1, $10, $2, $3, $4, $5, $6, $7, $8, $9, $1";
        let params: Vec<String> = (1..=10).map(|i| format!("p{i}")).collect();

        // Act
        let bound = bind(sql, &params).expect("binds");

        // Assert
        assert_eq!(bound, "select (p1), (p10), (p2), (p3), (p4), (p5), (p6), (p7), (p8), (p9), (p1)");
    }

    #[test]
    fn binding_refuses_a_statement_whose_placeholders_are_not_the_parameters() {
        // Arrange
        let two: Vec<String> = vec!["a".into(), "b".into()];

        // Act
        let too_few = bind("select $1, $2, $3", &two);
        let too_many = bind("select $1", &two);
        let a_gap = bind("select $1, $3", &two);

        // Assert
        assert!(too_few.is_err() && too_many.is_err() && a_gap.is_err());
        assert_eq!(bind("select $1::uuid[], $2, $$x$$", &two).expect("binds"), "select (a)::uuid[], (b), $$x$$");
    }

    #[test]
    fn the_script_runs_every_statement_of_the_workers_booking_transaction_with_all_placeholders_bound() {
        // Arrange
        let user = Uuid::now_v7();

        // Act
        let script = script_text("0123abcd", user).expect("a script");

        // Assert
        for sql in BOOKING_TRANSACTION {
            let before_first_placeholder = &sql[..sql.find('$').expect("a placeholder")];
            assert!(script.contains(before_first_placeholder), "missing from the script: {sql}");
        }
        let placeholder = script.as_bytes().windows(2).any(|w| w[0] == b'$' && w[1].is_ascii_digit());
        assert!(!placeholder, "a placeholder is left:\n{script}");
        assert!(script.starts_with("--") && script.contains("\nbegin;\n") && script.ends_with(";\ncommit;\n"));
    }

    #[test]
    fn the_script_refers_to_no_pgbench_variable_but_its_own() {
        // Arrange
        let script = script_text("0123abcd", Uuid::now_v7()).expect("a script");

        // Act
        let names = variables(&script);

        // Assert
        assert!(names.contains(&"n".to_owned()) && names.contains(&"s0".to_owned()));
        let unknown: Vec<&String> = names.iter().filter(|n| !VARIABLES.contains(&n.as_str())).collect();
        assert!(unknown.is_empty(), "pgbench would read these as variables: {unknown:?}");
    }

    #[test]
    fn the_outbox_payload_is_the_workers_booking_event_with_the_slots_ids() {
        // Arrange
        let user = Uuid::now_v7();

        // Act
        let (routing_key, template) = event_template(user).expect("an event");
        let (_, payload) =
            booking_payload(user, &[&"R".into(), &"S".into(), &"B".into(), &"M".into()], "T").expect("a payload");

        // Assert
        let event: BookingEvent = serde_json::from_str(&template).expect("a BookingEvent");
        assert_eq!((routing_key.as_str(), event.user_id, event.message_id), ("booking.confirmed", user, STAND_INS[3]));
        assert_eq!(event.booking_id, Some(STAND_INS[2]));
        assert!(payload.starts_with("('{\"") && payload.ends_with("}')::jsonb"));
        for part in ["\"' || (R)::text || '\"", "\"' || (M)::text || '\"", "\"' || T || '\""] {
            assert!(payload.contains(part), "{part} not in {payload}");
        }
        assert!(!STAND_INS.iter().any(|s| payload.contains(&s.to_string())));
    }
}
