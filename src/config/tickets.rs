//! Settings of signed tickets: the signing key, its id, and the keys accepted for rotation.

use std::fmt;

use anyhow::{Context, bail};

use super::env::{Env, opt};

/// Signed tickets (see docs/TICKETS.md).
#[derive(Clone, Debug)]
pub struct TicketConfig {
    /// `SEATGATE_TICKET_SIGNING_KEY`: the Ed25519 seed (32 bytes as 64 hex digits or base64)
    /// that signs tickets; random (with a warning) when unset.
    pub signing_seed: SecretKey,
    /// True when the seed was generated because none was configured.
    pub signing_key_generated: bool,
    /// `SEATGATE_TICKET_KEY_ID`: the key id written into tickets; derived from the public key
    /// when unset.
    pub key_id: Option<String>,
    /// `SEATGATE_TICKET_VERIFY_KEYS`: more public keys whose tickets are accepted (rotation),
    /// comma-separated `kid:key`, each key 32 bytes as hex or base64.
    pub verify_keys: Vec<(String, [u8; 32])>,
}

/// 32 bytes of key material whose `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The key itself; keep it out of logs.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// 32 bytes written as 64 hex digits or as base64 (standard or URL-safe, padded or not).
pub fn decode_key32(raw: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let raw = raw.trim();
    let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(raw).ok()?
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(raw).ok())?
    };
    bytes.try_into().ok()
}

/// A key id: 1 to 32 of `[A-Za-z0-9_-]` (it travels inside the ticket, between dots).
pub fn valid_key_id(kid: &str) -> bool {
    (1..=32).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) fn ticket_config(env: &dyn Env) -> anyhow::Result<TicketConfig> {
    let (signing_seed, signing_key_generated) = match opt(env, "SEATGATE_TICKET_SIGNING_KEY")? {
        Some(raw) => (
            SecretKey(decode_key32(&raw).context(
                "invalid value for SEATGATE_TICKET_SIGNING_KEY: expected a 32-byte Ed25519 seed as 64 hex digits or base64",
            )?),
            false,
        ),
        None => {
            use rand::Rng;
            (SecretKey(rand::rng().random()), true)
        }
    };
    let key_id = opt(env, "SEATGATE_TICKET_KEY_ID")?.map(|k| k.trim().to_owned());
    if let Some(kid) = &key_id
        && !valid_key_id(kid)
    {
        bail!("invalid value for SEATGATE_TICKET_KEY_ID: use 1-32 of [A-Za-z0-9_-]");
    }
    let mut verify_keys = Vec::new();
    for entry in opt(env, "SEATGATE_TICKET_VERIFY_KEYS")?.unwrap_or_default().split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let bad = || format!("invalid value for SEATGATE_TICKET_VERIFY_KEYS: {entry:?} is not `kid:public-key`");
        let (kid, key) = entry.split_once(':').with_context(bad)?;
        let key = decode_key32(key).with_context(bad)?;
        if !valid_key_id(kid) || ed25519_dalek::VerifyingKey::from_bytes(&key).is_err() {
            bail!(bad());
        }
        verify_keys.push((kid.to_owned(), key));
    }
    Ok(TicketConfig { signing_seed, signing_key_generated, key_id, verify_keys })
}
