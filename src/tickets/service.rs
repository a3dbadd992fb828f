//! Rules of the door (docs/DESIGN.md §6): which input is a ticket, when it lets someone in, and
//! how offline scans are settled. A ticket is let in at most once, ever: whatever the scanners
//! read first, the guarded insert of `repo::insert_checkin` decides, so of two gates scanning
//! one ticket at once exactly one says "welcome" and the other says when and where it was used.
//! Bad input at the door is a 422 `invalid_ticket`, never a 500.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::repo::{self, DoorBooking, Source};
use crate::auth::AuthUser;
use crate::domain::BookingStatus;
use crate::error::{ApiError, FieldError};
use crate::ledger::ticket::{self as sign, PublicKey};
use crate::state::AppState;

/// Longest gate name.
pub const MAX_GATE_LEN: usize = 64;
/// Scans per batch upload at most.
pub const MAX_BATCH: usize = 500;
/// Longest scanner nonce.
pub const MAX_NONCE_LEN: usize = 128;
/// Longest ticket a scan may send (a signed ticket of the largest booking fits many times over).
pub const MAX_TICKET_LEN: usize = 6144;

/// Body of `POST /api/v1/checkins`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    /// The signed ticket (the QR code's content) or the ticket code typed in.
    #[schema(example = "SG-7K3M-Q9TX", max_length = 6144)]
    pub ticket: String,
    /// Where the scan happens, e.g. `north-1`.
    #[schema(example = "north-1", max_length = 64)]
    pub gate: Option<String>,
    /// When given, a ticket of any other showtime is refused (`invalid_ticket`).
    pub showtime_id: Option<Uuid>,
}

/// A ticket let in.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkin {
    pub booking_id: Uuid,
    pub showtime_id: Uuid,
    pub seat_ids: Vec<Uuid>,
    pub checked_in_at: DateTime<Utc>,
    pub gate: Option<String>,
}

/// Body of `POST /api/v1/checkins/batch`: scans a scanner made while offline.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[schema(min_items = 1, max_items = 500)]
    pub scans: Vec<OfflineScan>,
}

/// One offline scan.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfflineScan {
    /// The signed ticket or the ticket code.
    #[schema(max_length = 6144)]
    pub ticket: String,
    /// The scanner's clock at the scan; a time after the upload counts as the upload's time.
    pub scanned_at: DateTime<Utc>,
    #[schema(example = "north-1", max_length = 64)]
    pub gate: Option<String>,
    /// Unique per scan (a UUID); a scan uploaded again with the same nonce counts once.
    #[schema(min_length = 1, max_length = 128)]
    pub nonce: String,
}

/// What became of one offline scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScanOutcome {
    /// This scan let the ticket in.
    CheckedIn,
    /// The ticket had been let in before (`checked_in_at` and `gate` say when and where).
    AlreadyCheckedIn,
    /// The booking is cancelled.
    TicketCancelled,
    /// Forged, garbled, unknown, or for another showtime.
    InvalidTicket,
}

/// The answer for one offline scan.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScanResult {
    pub nonce: String,
    pub outcome: ScanOutcome,
    pub booking_id: Option<Uuid>,
    /// With `checked_in` and `already_checked_in`: when the ticket was let in.
    pub checked_in_at: Option<DateTime<Utc>>,
    pub gate: Option<String>,
    /// Why, with `invalid_ticket`.
    pub detail: Option<String>,
    /// True when this nonce had been uploaded before and this is that first answer again.
    #[serde(default)]
    pub replayed: bool,
}

/// Answer of a batch upload, one result per scan in the order sent.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResult {
    pub results: Vec<ScanResult>,
}

/// What a scanner needs to check a showtime's tickets offline.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckinBundle {
    pub showtime_id: Uuid,
    pub generated_at: DateTime<Utc>,
    /// Every key whose signed tickets are valid, the current signing key first.
    pub keys: Vec<PublicKey>,
    /// Bookings of the showtime that were cancelled: refuse their tickets.
    pub revoked: Vec<Uuid>,
    /// Bookings of the showtime already let in (as of `generated_at`).
    pub checked_in: Vec<Uuid>,
}

fn invalid(detail: &str) -> ApiError {
    ApiError::InvalidTicket(detail.to_owned())
}

/// The booking a ticket names: a signed ticket is verified first (forged or garbled input never
/// reaches the database), a code is looked up as typed.
pub async fn resolve_ticket(state: &AppState, raw: &str) -> Result<DoorBooking, ApiError> {
    let raw = raw.trim();
    let mut conn = state.db.acquire().await?;
    if raw.starts_with(sign::PREFIX) && raw.contains('.') {
        let claims = state.tickets.verify(raw).map_err(|e| ApiError::InvalidTicket(e.to_string()))?;
        let booking =
            repo::find_booking(&mut conn, claims.booking_id).await?.ok_or_else(|| invalid("unknown ticket"))?;
        // Signed by a key of ours yet not matching the booking: another deployment's ticket.
        if booking.showtime_id != claims.showtime_id || booking.seat_ids != claims.seat_ids {
            return Err(invalid("unknown ticket"));
        }
        return Ok(booking);
    }
    let plausible_code = (1..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !plausible_code {
        return Err(invalid("not a ticket: expected a signed ticket or a ticket code"));
    }
    repo::find_booking_by_code(&mut conn, raw).await?.ok_or_else(|| invalid("unknown ticket"))
}

fn check_gate(gate: Option<&str>, field: &str) -> Result<Option<String>, FieldError> {
    let Some(gate) = gate.map(str::trim) else { return Ok(None) };
    if gate.is_empty() || gate.chars().count() > MAX_GATE_LEN || gate.chars().any(char::is_control) {
        return Err(FieldError::new(field, format!("1 to {MAX_GATE_LEN} characters, no control characters")));
    }
    Ok(Some(gate.to_owned()))
}

/// Lets a ticket in, once (online scan at a gate).
pub async fn check_in(state: &AppState, door: AuthUser, req: CheckinRequest) -> Result<Checkin, ApiError> {
    check_in_with(state, door, req, async {}).await
}

/// [`check_in`], awaiting `before_claim` between reading the booking and the guarded insert.
/// Tests pass a barrier here so two scans both get past every read before either writes: the
/// insert alone must decide.
#[tracing::instrument(skip_all, fields(user.id = %door.id, booking.id = tracing::field::Empty))]
pub async fn check_in_with(
    state: &AppState,
    door: AuthUser,
    req: CheckinRequest,
    before_claim: impl Future<Output = ()>,
) -> Result<Checkin, ApiError> {
    let gate = check_gate(req.gate.as_deref(), "gate").map_err(|e| ApiError::Validation(vec![e]))?;
    let booking = match resolve_ticket(state, &req.ticket).await {
        Ok(booking) => booking,
        Err(e) => {
            metrics::counter!("seatgate_checkins_total", "outcome" => "invalid_ticket", "source" => "online")
                .increment(1);
            return Err(e);
        }
    };
    tracing::Span::current().record("booking.id", tracing::field::display(booking.id));
    if req.showtime_id.is_some_and(|s| s != booking.showtime_id) {
        return Err(invalid("this ticket is for another showtime"));
    }
    if booking.status == BookingStatus::Cancelled {
        metrics::counter!("seatgate_checkins_total", "outcome" => "ticket_cancelled", "source" => "online")
            .increment(1);
        return Err(ApiError::TicketCancelled);
    }
    before_claim.await;
    let mut conn = state.db.acquire().await?;
    match repo::insert_checkin(&mut conn, &booking, Utc::now(), gate.as_deref(), Source::Online, door.id).await? {
        Some(row) => {
            metrics::counter!("seatgate_checkins_total", "outcome" => "checked_in", "source" => "online").increment(1);
            tracing::info!(booking.id = %booking.id, gate = ?row.gate, "ticket checked in");
            Ok(Checkin {
                booking_id: booking.id,
                showtime_id: booking.showtime_id,
                seat_ids: booking.seat_ids,
                checked_in_at: row.checked_in_at,
                gate: row.gate,
            })
        }
        None => match repo::find_checkin(&mut conn, booking.id).await? {
            Some(first) => {
                metrics::counter!("seatgate_checkins_total", "outcome" => "already_checked_in", "source" => "online")
                    .increment(1);
                Err(ApiError::AlreadyCheckedIn { checked_in_at: first.checked_in_at, gate: first.gate })
            }
            // Not checked in, and no longer confirmed: cancelled while the scan ran.
            None => {
                metrics::counter!("seatgate_checkins_total", "outcome" => "ticket_cancelled", "source" => "online")
                    .increment(1);
                Err(ApiError::TicketCancelled)
            }
        },
    }
}

/// Checks a batch's shape before anything is recorded: 422 naming each bad field.
fn check_batch(req: &BatchRequest) -> Result<Vec<Option<String>>, ApiError> {
    if req.scans.is_empty() || req.scans.len() > MAX_BATCH {
        return Err(ApiError::invalid("scans", format!("send 1 to {MAX_BATCH} scans per batch")));
    }
    let mut errors = Vec::new();
    let mut gates = Vec::with_capacity(req.scans.len());
    for (i, scan) in req.scans.iter().enumerate() {
        let nonce = &scan.nonce;
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(FieldError::new(
                format!("scans[{i}].nonce"),
                format!("1 to {MAX_NONCE_LEN} printable ASCII characters"),
            ));
        }
        if scan.ticket.len() > MAX_TICKET_LEN {
            errors.push(FieldError::new(format!("scans[{i}].ticket"), format!("at most {MAX_TICKET_LEN} characters")));
        }
        match check_gate(scan.gate.as_deref(), &format!("scans[{i}].gate")) {
            Ok(gate) => gates.push(gate),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(gates) } else { Err(ApiError::Validation(errors)) }
}

/// Settles scans made offline, in the order sent. Each nonce counts once: its first answer is
/// stored with it, in the same transaction as the check-in it made, and given back for a repeat.
#[tracing::instrument(skip_all, fields(user.id = %door.id, scans = req.scans.len()))]
pub async fn check_in_batch(state: &AppState, door: AuthUser, req: BatchRequest) -> Result<BatchResult, ApiError> {
    let gates = check_batch(&req)?;
    let mut results = Vec::with_capacity(req.scans.len());
    for (scan, gate) in req.scans.into_iter().zip(gates) {
        results.push(settle_scan(state, door, scan, gate).await?);
    }
    Ok(BatchResult { results })
}

async fn settle_scan(
    state: &AppState,
    door: AuthUser,
    scan: OfflineScan,
    gate: Option<String>,
) -> Result<ScanResult, ApiError> {
    let mut tx = state.db.begin().await?;
    if !repo::claim_nonce(&mut tx, &scan.nonce, door.id).await? {
        tx.rollback().await?;
        let mut conn = state.db.acquire().await?;
        let stored = repo::nonce_result(&mut conn, &scan.nonce).await?;
        let mut result: ScanResult = stored
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("nonce {} has no stored result", scan.nonce)))?;
        result.replayed = true;
        return Ok(result);
    }
    let result = |outcome, booking_id, checked: Option<repo::CheckinRow>, detail: Option<String>| ScanResult {
        nonce: scan.nonce.clone(),
        outcome,
        booking_id,
        checked_in_at: checked.as_ref().map(|c| c.checked_in_at),
        gate: checked.and_then(|c| c.gate),
        detail,
        replayed: false,
    };
    let answer = match resolve_ticket(state, &scan.ticket).await {
        Err(ApiError::InvalidTicket(detail)) => result(ScanOutcome::InvalidTicket, None, None, Some(detail)),
        Err(other) => return Err(other),
        Ok(booking) if booking.status == BookingStatus::Cancelled => {
            result(ScanOutcome::TicketCancelled, Some(booking.id), None, None)
        }
        Ok(booking) => {
            let at = scan.scanned_at.min(Utc::now());
            match repo::insert_checkin(&mut tx, &booking, at, gate.as_deref(), Source::Offline, door.id).await? {
                Some(row) => result(ScanOutcome::CheckedIn, Some(booking.id), Some(row), None),
                None => match repo::find_checkin(&mut tx, booking.id).await? {
                    Some(first) => result(ScanOutcome::AlreadyCheckedIn, Some(booking.id), Some(first), None),
                    // Cancelled while the batch was being settled.
                    None => result(ScanOutcome::TicketCancelled, Some(booking.id), None, None),
                },
            }
        }
    };
    let stored = serde_json::to_value(&answer).map_err(anyhow::Error::from)?;
    repo::save_nonce_result(&mut tx, &scan.nonce, &stored).await?;
    tx.commit().await?;
    let outcome = match answer.outcome {
        ScanOutcome::CheckedIn => "checked_in",
        ScanOutcome::AlreadyCheckedIn => "already_checked_in",
        ScanOutcome::TicketCancelled => "ticket_cancelled",
        ScanOutcome::InvalidTicket => "invalid_ticket",
    };
    metrics::counter!("seatgate_checkins_total", "outcome" => outcome, "source" => "offline").increment(1);
    Ok(answer)
}

/// The check-in bundle of a showtime: public keys, revoked and already-admitted bookings.
#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
pub async fn bundle(state: &AppState, showtime_id: Uuid) -> Result<CheckinBundle, ApiError> {
    let mut conn = state.db.acquire().await?;
    if !repo::showtime_exists(&mut conn, showtime_id).await? {
        return Err(ApiError::NotFound("no such showtime"));
    }
    let generated_at = Utc::now();
    Ok(CheckinBundle {
        showtime_id,
        generated_at,
        keys: state.tickets.public_keys(),
        revoked: repo::cancelled_bookings(&mut conn, showtime_id).await?,
        checked_in: repo::checked_in_bookings(&mut conn, showtime_id).await?,
    })
}

/// The QR code (SVG) of a signed ticket.
pub fn qr_svg(signed: &str) -> Result<String, ApiError> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(signed.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot encode the ticket as a QR code: {e}")))?;
    Ok(code
        .render()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_is_trimmed_and_bounded() {
        assert_eq!(check_gate(Some("  north-1 "), "gate"), Ok(Some("north-1".to_owned())));
        assert_eq!(check_gate(None, "gate"), Ok(None));
        assert!(check_gate(Some(""), "gate").is_err());
        assert!(check_gate(Some("a\u{0}b"), "gate").is_err());
        assert!(check_gate(Some(&"g".repeat(65)), "gate").is_err());
    }

    #[test]
    fn a_qr_code_of_a_long_ticket_is_an_svg() {
        let svg = qr_svg(&"SGT1.k.".repeat(60)).expect("encodes");
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{}", &svg[..80]);
    }
}
