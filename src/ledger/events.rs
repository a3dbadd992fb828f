//! What the ledger tells the world: booking events and payment tasks, both staged in the outbox
//! with the state change that causes them, and the ticket codes printed on bookings.
//!
//! After the commit, [`deliver`] is the one way they leave: it tells the live streams of each
//! reservation a booking event reports (a Redis PUBLISH on the reservation's channel, under its
//! showtime's hash tag; `GET /api/v1/reservations/{id}/events` listens), then hands everything
//! to the outbox for RabbitMQ.

use rand::Rng;
use uuid::Uuid;

use super::repo::ReservationRow;
use crate::messaging::messages::{BookingEvent, BookingEventKind, SCHEMA_VERSION};
use crate::messaging::outbox::{self, Staged};
use crate::state::AppState;

/// Delivers messages staged by a committed transaction: the push to the reservations' live
/// streams and the outbox's publish to RabbitMQ, side by side (the push waits for no publisher
/// confirm). Never fails: a lost push is caught by the stream's re-read at the reservation's
/// deadline (or on reconnect), a lost publish by the outbox relay.
pub async fn deliver(state: &AppState, staged: &[Staged]) {
    tokio::join!(announce(state, staged), outbox::deliver(&state.db, &state.amqp, staged));
}

/// PUBLISHes the new status of every reservation a staged booking event reports (also for
/// events the outbox relay delivered late: their commit's own push was lost with a crash). On a
/// Redis Cluster it is SPUBLISH (sharded pub/sub, one command per channel: each channel has its
/// own slot), which the live hub's sharded subscription receives.
pub async fn announce(state: &AppState, staged: &[Staged]) {
    let channels: Vec<(String, &str)> = staged
        .iter()
        .filter_map(|m| {
            let (_, reservation_id) = m.reservation?;
            let kind = m.routing_key.strip_prefix("booking.").unwrap_or(&m.routing_key);
            Some((state.keys.reservation_events(reservation_id), kind))
        })
        .collect();
    if channels.is_empty() {
        return;
    }
    let failed = |e: &dyn std::fmt::Display| {
        metrics::counter!("seatgate_reservation_push_failures_total").increment(channels.len() as u64);
        tracing::warn!(error = %e, "cannot tell reservation streams; they re-read at the deadline");
    };
    let mut conn = match state.redis.get().await {
        Ok(conn) => conn,
        Err(e) => return failed(&e),
    };
    let result = if conn.is_cluster() {
        let mut result = Ok(());
        for (channel, kind) in &channels {
            result = redis::cmd("SPUBLISH").arg(channel).arg(*kind).query_async::<()>(&mut conn).await;
            if result.is_err() {
                break;
            }
        }
        result
    } else {
        let mut pipe = redis::pipe();
        for (channel, kind) in &channels {
            pipe.cmd("PUBLISH").arg(channel).arg(*kind).ignore();
        }
        pipe.query_async::<()>(&mut conn).await
    };
    if let Err(e) = result {
        failed(&e);
    }
}

/// A booking event about `r`, to stage in the outbox with the state change it reports.
pub fn booking_event(
    r: &ReservationRow,
    kind: BookingEventKind,
    booking_id: Option<Uuid>,
    ticket_code: Option<String>,
    reason: Option<String>,
) -> BookingEvent {
    BookingEvent {
        schema_version: SCHEMA_VERSION,
        message_id: Uuid::now_v7(),
        kind,
        user_id: r.user_id,
        reservation_id: r.id,
        showtime_id: r.showtime_id,
        booking_id,
        ticket_code,
        reason,
        at: chrono::Utc::now(),
    }
}

/// A ticket code like `SG-7K3M-Q9TX` (no 0/O or 1/I to misread at the door).
pub fn ticket_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let mut pick = || ALPHABET[rng.random_range(0..ALPHABET.len())] as char;
    let a: String = (0..4).map(|_| pick()).collect();
    let b: String = (0..4).map(|_| pick()).collect();
    format!("SG-{a}-{b}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_codes_are_readable_and_distinct() {
        let code = ticket_code();
        assert_eq!(code.len(), 12);
        assert!(code.starts_with("SG-"));
        assert!(!code.contains('O') && !code.contains('0') && !code.contains('I') && !code.contains('1'));
        let codes: std::collections::HashSet<_> = (0..1000).map(|_| ticket_code()).collect();
        assert!(codes.len() > 990);
    }
}
