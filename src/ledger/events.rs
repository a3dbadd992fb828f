//! What the ledger tells the world: booking events and payment tasks, both staged in the outbox
//! with the state change that causes them, and the ticket codes printed on bookings.

use rand::Rng;
use uuid::Uuid;

use super::repo::ReservationRow;
use crate::messaging::messages::{BookingEvent, BookingEventKind, SCHEMA_VERSION};

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
