//! The invariant checker (`seatgate check-invariants`): reads PostgreSQL and Redis after a sale
//! has settled and reports every breach of the invariants (docs/DESIGN.md §2). The
//! fault suite runs it after each fault; anyone can run it against a live deployment. It only
//! reads.

use std::collections::{HashMap, HashSet};

use deadpool_redis::redis;
use serde::Serialize;
use uuid::Uuid;

use crate::state::AppState;

/// One breach, with enough detail to find the rows.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// What the checker saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub showtimes: usize,
    pub booked_seats: i64,
    pub bookings: i64,
    pub payments_succeeded: i64,
    pub payments_refunded: i64,
    pub violations: Vec<Violation>,
}

impl Report {
    fn breach(&mut self, invariant: &'static str, detail: String) {
        self.violations.push(Violation { invariant, detail });
    }
}

/// Checks every invariant; `slack_secs` is how late past its deadline a pending reservation
/// may still be (one sweeper interval plus processing).
pub async fn check(state: &AppState, slack_secs: i64) -> anyhow::Result<Report> {
    let db = &state.db;
    let mut report = Report {
        booked_seats: sqlx::query_scalar("select count(*) from booked_seats").fetch_one(db).await?,
        bookings: sqlx::query_scalar("select count(*) from bookings where status = 'confirmed'").fetch_one(db).await?,
        payments_succeeded: sqlx::query_scalar("select count(*) from payments where status = 'succeeded'")
            .fetch_one(db)
            .await?,
        payments_refunded: sqlx::query_scalar("select count(*) from payments where status = 'refunded'")
            .fetch_one(db)
            .await?,
        ..Report::default()
    };

    // 1. No seat sold twice: two confirmed reservations never share a seat of a showtime.
    let doubles: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
        r#"select r.showtime_id, rs.seat_id, count(*) from reservations r
             join reservation_seats rs on rs.reservation_id = r.id
            where r.status = 'confirmed' group by 1, 2 having count(*) > 1"#,
    )
    .fetch_all(db)
    .await?;
    for (showtime, seat, n) in doubles {
        report.breach(
            "no_double_booking",
            format!("seat {seat} of showtime {showtime} is in {n} confirmed reservations"),
        );
    }
    // Every confirmed booking owns its seats in booked_seats.
    let unguarded: Vec<(Uuid,)> = sqlx::query_as(
        r#"select b.id from bookings b where b.status = 'confirmed'
              and (select count(*) from booked_seats s where s.booking_id = b.id)
                  <> (select count(*) from reservation_seats rs where rs.reservation_id = b.reservation_id)"#,
    )
    .fetch_all(db)
    .await?;
    for (booking,) in unguarded {
        report.breach("no_double_booking", format!("booking {booking} does not hold all its seats in booked_seats"));
    }

    // 2. Money: a succeeded payment has exactly one booking; a charge at the gateway ends as a
    // succeeded payment (booked) or a refund.
    let unbooked: Vec<(Uuid, i64)> = sqlx::query_as(
        r#"select p.id, (select count(*) from bookings b where b.reservation_id = p.reservation_id)
             from payments p where p.status = 'succeeded'
              and (select count(*) from bookings b where b.reservation_id = p.reservation_id) <> 1"#,
    )
    .fetch_all(db)
    .await?;
    for (payment, n) in unbooked {
        report.breach("payment_has_booking_or_refund", format!("succeeded payment {payment} has {n} bookings"));
    }
    // Invariant 8: every charge ends booked or refunded. A charge whose reservation's deadline
    // passed more than the slack ago needs a confirmed booking (or one cancelled within the
    // slack, its refund on the way).
    let stray: Vec<(Uuid, String)> = sqlx::query_as(
        r#"select g.payment_id, coalesce(p.status::text, 'missing') from gateway_charges g
             left join payments p on p.id = g.payment_id
             left join reservations r on r.id = p.reservation_id
            where g.status = 'charged'
              and (r.id is null or r.deadline < now() - make_interval(secs => $1))
              and not exists (select 1 from bookings b where b.reservation_id = r.id
                               and (b.status = 'confirmed' or b.cancelled_at > now() - make_interval(secs => $1)))"#,
    )
    .bind(slack_secs as f64)
    .fetch_all(db)
    .await?;
    for (payment, status) in stray {
        report.breach(
            "payment_has_booking_or_refund",
            format!("payment {payment} was charged but is {status}, with no booking and no refund"),
        );
    }
    // A charge is never marked as a state that holds no money.
    let mislabelled: Vec<(Uuid, String)> = sqlx::query_as(
        r#"select g.payment_id, p.status::text from gateway_charges g join payments p on p.id = g.payment_id
            where g.status = 'charged' and p.status in ('initiated', 'failed', 'refunded')"#,
    )
    .fetch_all(db)
    .await?;
    for (payment, status) in mislabelled {
        report.breach(
            "payment_has_booking_or_refund",
            format!("payment {payment} was charged but is {status}, not refunded"),
        );
    }
    // ...and no ticket stands on refunded money.
    let refunded_but_booked: Vec<(Uuid, Uuid)> = sqlx::query_as(
        r#"select b.id, p.id from bookings b join payments p on p.reservation_id = b.reservation_id
             left join gateway_charges g on g.payment_id = p.id
            where b.status = 'confirmed' and (p.status = 'refunded' or g.status = 'refunded')"#,
    )
    .fetch_all(db)
    .await?;
    for (booking, payment) in refunded_but_booked {
        report.breach(
            "no_booking_on_refunded_money",
            format!("booking {booking} is confirmed but its payment {payment} was refunded"),
        );
    }
    let unrefunded: Vec<(Uuid,)> = sqlx::query_as(
        r#"select p.id from payments p left join gateway_charges g on g.payment_id = p.id
            where p.status = 'refunded' and g.status is distinct from 'refunded'"#,
    )
    .fetch_all(db)
    .await?;
    for (payment,) in unrefunded {
        report.breach(
            "payment_has_booking_or_refund",
            format!("payment {payment} says refunded but the gateway did not refund it"),
        );
    }

    // 3. Nothing pending forever.
    let stale: Vec<(Uuid,)> = sqlx::query_as(
        r#"select id from reservations where status = 'payment_pending'
              and deadline < now() - make_interval(secs => $1)"#,
    )
    .bind(slack_secs as f64)
    .fetch_all(db)
    .await?;
    for (reservation,) in stale {
        report.breach(
            "no_pending_past_deadline",
            format!("reservation {reservation} is still payment_pending past its deadline"),
        );
    }

    // Booking events are not lost: the sweeper relays what a broker outage left in the outbox.
    let undelivered: i64 =
        sqlx::query_scalar("select count(*) from outbox where created_at < now() - make_interval(secs => $1)")
            .bind(slack_secs as f64)
            .fetch_one(db)
            .await?;
    if undelivered > 0 {
        report.breach(
            "booking_events_delivered",
            format!("{undelivered} booking events are still in the outbox {slack_secs} s after they were written"),
        );
    }

    // 9. Fair on-sales: no hold of a user the waiting room did not admit.
    report.violations.extend(crate::onsale::check::check_fair_onsales(state).await?);

    // 4 and 5. Redis agrees with PostgreSQL for every showtime with bookings or live keys.
    let showtimes: Vec<Uuid> = sqlx::query_scalar(
        "select id from showtimes where ends_at > now() - interval '1 day' and status = 'scheduled'",
    )
    .fetch_all(db)
    .await?;
    report.showtimes = showtimes.len();
    let mut conn = state.redis.get().await?;
    for showtime in showtimes {
        let keys = state.keys.showtime(showtime);
        let sold_rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
            r#"select bs.seat_id, r.hold_id from booked_seats bs join bookings b on b.id = bs.booking_id
                 join reservations r on r.id = b.reservation_id where bs.showtime_id = $1"#,
        )
        .bind(showtime)
        .fetch_all(db)
        .await?;
        let sold_by: HashMap<Uuid, Uuid> = sold_rows.into_iter().collect();
        // Seats whose booking changed within the slack may still be on their way to Redis.
        let settling: HashSet<Uuid> = sqlx::query_scalar(
            r#"select rs.seat_id from bookings b join reservation_seats rs on rs.reservation_id = b.reservation_id
                where b.showtime_id = $1
                  and (b.created_at > now() - make_interval(secs => $2)
                       or b.cancelled_at > now() - make_interval(secs => $2))"#,
        )
        .bind(showtime)
        .bind(slack_secs as f64)
        .fetch_all(db)
        .await?
        .into_iter()
        .collect();
        let (sold, holds, now): (HashSet<String>, HashMap<String, String>, (i64, i64)) =
            redis::pipe().smembers(&keys.sold).hgetall(&keys.holds).cmd("TIME").query_async(&mut conn).await?;
        let now_ms = now.0 * 1000 + now.1 / 1000;
        for (seat, owner) in &holds {
            let Some((hold, expires)) = owner.split_once(':') else { continue };
            let live = expires.parse::<i64>().is_ok_and(|e| e > now_ms);
            let (Ok(seat), Ok(hold)) = (seat.parse::<Uuid>(), hold.parse::<Uuid>()) else { continue };
            if live && sold_by.get(&seat).is_some_and(|buyer| *buyer != hold) {
                report.breach(
                    "no_hold_on_seat_sold_to_another",
                    format!("showtime {showtime}: seat {seat} is held by {hold} but sold to another hold"),
                );
            }
        }
        if sold.contains("_") {
            let cached: HashSet<Uuid> = sold.iter().filter_map(|s| s.parse().ok()).collect();
            let truth: HashSet<Uuid> = sold_by.keys().copied().collect();
            for seat in truth.difference(&cached).filter(|s| !settling.contains(s)) {
                report.breach(
                    "seat_map_sold_equals_booked_seats",
                    format!("showtime {showtime}: seat {seat} is booked but not sold in Redis"),
                );
            }
            for seat in cached.difference(&truth).filter(|s| !settling.contains(s)) {
                report.breach(
                    "seat_map_sold_equals_booked_seats",
                    format!("showtime {showtime}: seat {seat} is sold in Redis but not booked"),
                );
            }
        }
    }
    Ok(report)
}
