//! Signed tickets: a compact string a door scanner verifies offline with nothing but the public
//! keys of the check-in bundle (docs/DESIGN.md §6, docs/TICKETS.md).
//!
//! ```text
//! SGT1.<kid>.<payload>.<signature>
//! ```
//! `payload` is base64url (no padding) of: version byte 1, booking id (16 bytes), showtime id
//! (16), issued_at (i64 big-endian Unix seconds), seat count (1 byte), the seat ids (16 each).
//! `signature` is base64url of the Ed25519 signature of the ASCII text `SGT1.<kid>.<payload>`,
//! so the key id is signed too. Ed25519 signatures are deterministic: one booking signed with
//! one key always gives the same string (and the same QR code).
//!
//! Nothing here touches I/O; this module sits on the bottom floor so the booking DTO can carry a
//! signed ticket without depending on check-in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::TicketConfig;

/// What every signed ticket starts with (format version 1).
pub const PREFIX: &str = "SGT1";
/// Longest signed ticket accepted: a booking of 255 seats is about 5.9 kB; anything longer is
/// not a ticket, and is refused before any decoding.
pub const MAX_LEN: usize = 6 * 1024;
const VERSION: u8 = 1;

/// A booking's ticket as its owner gets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ticket {
    /// The short code printed on the ticket, to type in at the door.
    #[schema(example = "SG-7K3M-Q9TX")]
    pub code: String,
    /// The signed ticket (what the QR code holds); verifiable offline.
    #[schema(example = "SGT1.k1a2b3c4d.AQGX...Ew.k4b2...Cg")]
    pub signed: String,
}

/// What a ticket says, once its signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketClaims {
    pub booking_id: Uuid,
    pub showtime_id: Uuid,
    pub seat_ids: Vec<Uuid>,
    /// Whole seconds (the payload keeps no more).
    pub issued_at: DateTime<Utc>,
    /// The key that signed it.
    pub kid: String,
}

/// Why a signed ticket was refused. The text is safe to show a client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    #[error("not a signed ticket")]
    Garbled,
    #[error("the ticket is signed with a key this server does not know")]
    UnknownKey,
    #[error("the ticket's signature is not valid")]
    BadSignature,
}

/// A public key as scanners get it in the check-in bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicKey {
    pub kid: String,
    /// Always `Ed25519`.
    #[schema(example = "Ed25519")]
    pub algorithm: String,
    /// The 32-byte public key, base64url without padding.
    #[schema(example = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")]
    pub public_key: String,
}

/// The key that signs new tickets and every key whose tickets are accepted.
pub struct TicketKeys {
    kid: String,
    signing: SigningKey,
    /// The signing key's public half first, then the configured older keys.
    verifying: Vec<(String, VerifyingKey)>,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A key id derived from a public key: `k` and the first 8 hex digits of its SHA-256.
pub fn derived_kid(public: &VerifyingKey) -> String {
    format!("k{}", &hex::encode(Sha256::digest(public.as_bytes()))[..8])
}

impl TicketKeys {
    /// The keys of the configuration (already validated by `Config`).
    pub fn new(config: &TicketConfig) -> Self {
        let signing = SigningKey::from_bytes(config.signing_seed.expose());
        let public = signing.verifying_key();
        let kid = config.key_id.clone().unwrap_or_else(|| derived_kid(&public));
        let mut verifying = vec![(kid.clone(), public)];
        for (old_kid, bytes) in &config.verify_keys {
            // Config checked each is a valid point; an id equal to the signing key's is skipped
            // so the current key always wins.
            if let Ok(key) = VerifyingKey::from_bytes(bytes)
                && old_kid != &kid
            {
                verifying.push((old_kid.clone(), key));
            }
        }
        Self { kid, signing, verifying }
    }

    /// The id of the key that signs new tickets.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs a ticket.
    pub fn sign(&self, booking_id: Uuid, showtime_id: Uuid, seat_ids: &[Uuid], issued_at: DateTime<Utc>) -> String {
        let mut payload = Vec::with_capacity(42 + 16 * seat_ids.len());
        payload.push(VERSION);
        payload.extend_from_slice(booking_id.as_bytes());
        payload.extend_from_slice(showtime_id.as_bytes());
        payload.extend_from_slice(&issued_at.timestamp().to_be_bytes());
        // A booking never has more than the per-user limit of seats; more than 255 would not fit
        // the count byte, and are cut rather than wrap around.
        let seats = &seat_ids[..seat_ids.len().min(255)];
        payload.push(seats.len() as u8);
        for seat in seats {
            payload.extend_from_slice(seat.as_bytes());
        }
        let signed_part = format!("{PREFIX}.{}.{}", self.kid, URL_SAFE_NO_PAD.encode(&payload));
        let signature = self.signing.sign(signed_part.as_bytes());
        format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// A booking's ticket: its code and its signed form, signed as of the booking's creation.
    pub fn ticket(
        &self,
        code: &str,
        booking_id: Uuid,
        showtime_id: Uuid,
        seat_ids: &[Uuid],
        issued_at: DateTime<Utc>,
    ) -> Ticket {
        Ticket { code: code.to_owned(), signed: self.sign(booking_id, showtime_id, seat_ids, issued_at) }
    }

    /// Checks a signed ticket against every accepted key.
    pub fn verify(&self, signed: &str) -> Result<TicketClaims, TicketError> {
        verify_with(&self.verifying, signed)
    }

    /// Every accepted public key, the signing one first (what the check-in bundle carries).
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.verifying
            .iter()
            .map(|(kid, key)| PublicKey {
                kid: kid.clone(),
                algorithm: "Ed25519".to_owned(),
                public_key: URL_SAFE_NO_PAD.encode(key.as_bytes()),
            })
            .collect()
    }

    /// The accepted keys in the form [`verify_with`] takes (what an offline scanner holds).
    pub fn verifying_keys(&self) -> &[(String, VerifyingKey)] {
        &self.verifying
    }
}

/// Verifies a signed ticket with the given keys alone: what a scanner does offline. Never
/// panics, whatever the input.
pub fn verify_with(keys: &[(String, VerifyingKey)], signed: &str) -> Result<TicketClaims, TicketError> {
    if signed.len() > MAX_LEN {
        return Err(TicketError::Garbled);
    }
    let mut parts = signed.split('.');
    let (Some(PREFIX), Some(kid), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TicketError::Garbled);
    };
    let signature: [u8; 64] =
        URL_SAFE_NO_PAD.decode(sig_b64).ok().and_then(|b| b.try_into().ok()).ok_or(TicketError::Garbled)?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| TicketError::Garbled)?;
    let key = keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key).ok_or(TicketError::UnknownKey)?;
    let signed_part = &signed[..PREFIX.len() + 1 + kid.len() + 1 + payload_b64.len()];
    key.verify(signed_part.as_bytes(), &Signature::from_bytes(&signature)).map_err(|_| TicketError::BadSignature)?;
    // Signed by us, so well formed unless a key was misused; still checked, never trusted.
    parse_payload(&payload, kid).ok_or(TicketError::Garbled)
}

fn parse_payload(payload: &[u8], kid: &str) -> Option<TicketClaims> {
    let (&version, rest) = payload.split_first()?;
    if version != VERSION || rest.len() < 41 {
        return None;
    }
    let uuid = |b: &[u8]| Uuid::from_slice(b).ok();
    let booking_id = uuid(&rest[0..16])?;
    let showtime_id = uuid(&rest[16..32])?;
    let issued_at = DateTime::from_timestamp(i64::from_be_bytes(rest[32..40].try_into().ok()?), 0)?;
    let count = usize::from(rest[40]);
    let seats = &rest[41..];
    if seats.len() != 16 * count {
        return None;
    }
    let seat_ids = seats.chunks_exact(16).map(uuid).collect::<Option<Vec<_>>>()?;
    Some(TicketClaims { booking_id, showtime_id, seat_ids, issued_at, kid: kid.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SecretKey, TicketConfig};

    fn config(seed: &str, kid: Option<&str>, verify: &[(&str, &VerifyingKey)]) -> TicketConfig {
        TicketConfig {
            signing_seed: SecretKey::new(hex::decode(seed).expect("hex").try_into().expect("32 bytes")),
            signing_key_generated: false,
            key_id: kid.map(str::to_owned),
            verify_keys: verify.iter().map(|(k, key)| ((*k).to_owned(), key.to_bytes())).collect(),
        }
    }

    const SEED_A: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const SEED_B: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";

    fn claims() -> (Uuid, Uuid, Vec<Uuid>, DateTime<Utc>) {
        let issued = DateTime::from_timestamp(1_798_000_000, 0).expect("time");
        (Uuid::now_v7(), Uuid::now_v7(), vec![Uuid::now_v7(), Uuid::now_v7()], issued)
    }

    #[test]
    fn a_signed_ticket_verifies_and_says_what_was_signed() {
        let keys = TicketKeys::new(&config(SEED_A, Some("door-1"), &[]));
        let (booking, showtime, seats, issued) = claims();
        let signed = keys.sign(booking, showtime, &seats, issued);
        assert!(signed.starts_with("SGT1.door-1."));
        assert_eq!(signed, keys.sign(booking, showtime, &seats, issued), "signing is deterministic");
        let got = keys.verify(&signed).expect("valid");
        assert_eq!(
            got,
            TicketClaims {
                booking_id: booking,
                showtime_id: showtime,
                seat_ids: seats,
                issued_at: issued,
                kid: "door-1".into()
            }
        );
    }

    #[test]
    fn any_changed_character_breaks_the_ticket() {
        let keys = TicketKeys::new(&config(SEED_A, None, &[]));
        let (booking, showtime, seats, issued) = claims();
        let signed = keys.sign(booking, showtime, &seats, issued);
        for i in 0..signed.len() {
            let mut bytes = signed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(bytes).expect("ascii");
            assert!(keys.verify(&forged).is_err(), "changing byte {i} went unnoticed: {forged}");
        }
    }

    #[test]
    fn a_ticket_of_an_older_key_is_accepted_while_that_key_is_configured_for_verification() {
        let old = TicketKeys::new(&config(SEED_A, Some("2026-11"), &[]));
        let (booking, showtime, seats, issued) = claims();
        let ticket = old.sign(booking, showtime, &seats, issued);
        let rotated = TicketKeys::new(&config(SEED_B, Some("2026-12"), &[("2026-11", &old.verifying[0].1)]));
        assert_eq!(rotated.verify(&ticket).expect("still accepted").kid, "2026-11");
        assert!(rotated.sign(booking, showtime, &seats, issued).starts_with("SGT1.2026-12."));
        assert_eq!(rotated.public_keys().iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["2026-12", "2026-11"]);
        let retired = TicketKeys::new(&config(SEED_B, Some("2026-12"), &[]));
        assert_eq!(retired.verify(&ticket), Err(TicketError::UnknownKey));
    }

    #[test]
    fn a_ticket_signed_by_another_key_under_a_known_key_id_is_refused() {
        let ours = TicketKeys::new(&config(SEED_A, Some("k"), &[]));
        let theirs = TicketKeys::new(&config(SEED_B, Some("k"), &[]));
        let (booking, showtime, seats, issued) = claims();
        assert_eq!(ours.verify(&theirs.sign(booking, showtime, &seats, issued)), Err(TicketError::BadSignature));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let keys = TicketKeys::new(&config(SEED_A, Some("k"), &[]));
        let long = "A".repeat(MAX_LEN + 1);
        for input in ["", "SGT1", "SGT1...", "SGT1.k.AAAA.AAAA", "SGT1.k.!!.??", "SG-ABCD-EFGH", "SGT1.k.x.y.z", &long]
        {
            assert!(keys.verify(input).is_err(), "{input:?}");
        }
    }
}
