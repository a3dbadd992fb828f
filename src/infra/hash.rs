//! A fingerprint of a few strings (SHA-256, hex), shared by the `Idempotency-Key` check and the
//! login throttle's key, so neither capability imports the other.

use sha2::{Digest, Sha256};

/// SHA-256 of `parts`, each followed by a NUL so that `["ab", "c"]` and `["a", "bc"]` differ.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}
