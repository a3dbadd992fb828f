//! Issuing and checking access tokens.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Role;
use crate::config::AuthConfig;
use crate::infra::recent::Recent;

/// The claims of a seatgate access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    pub role: Role,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

/// Verified tokens kept per generation (see [`Recent`]).
const VERIFIED_PER_GENERATION: usize = 20_000;

/// Keys and rules for tokens; built once per process.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    header: Header,
    validation: Validation,
    ttl: Duration,
    /// Claims of tokens already verified, by the exact token text: the same bytes carry the same
    /// signature, so only the expiry needs checking again. Saves the base64, HMAC and JSON work
    /// on every request of a buyer who sends the same token again and again.
    verified: Recent<String, Claims>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// Why a token was refused (all of them answer 401; the reason goes to the log).
#[derive(Debug, thiserror::Error)]
#[error("invalid token: {0}")]
pub struct TokenError(#[from] jsonwebtoken::errors::Error);

impl JwtKeys {
    pub fn new(config: &AuthConfig) -> Self {
        let secret = config.jwt_secret.expose().as_bytes();
        let algorithm = Algorithm::HS256;
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        validation.leeway = 5;
        validation.validate_nbf = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            header: Header::new(algorithm),
            validation,
            ttl: config.token_ttl,
            verified: Recent::new(VERIFIED_PER_GENERATION),
        }
    }

    /// Token lifetime in seconds (the `expires_in` of the auth answers).
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// A signed token for this user.
    pub fn issue(&self, user_id: Uuid, role: Role) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims { sub: user_id, role, iat: now, exp: now + self.ttl.as_secs() as i64 };
        Ok(encode(&self.header, &claims, &self.encoding)?)
    }

    /// Checks signature, algorithm, expiry, and that it was not issued in the future.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let leeway = self.validation.leeway as i64;
        if let Some(claims) = self.verified.get(token) {
            // As `decode` judges expiry; the issue time was checked when it was first seen.
            if claims.exp < now - leeway {
                return Err(TokenError(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into()));
            }
            return Ok(claims);
        }
        let claims = decode::<Claims>(token.as_bytes(), &self.decoding, &self.validation)?.claims;
        if claims.iat > now + leeway {
            return Err(TokenError(jsonwebtoken::errors::ErrorKind::ImmatureSignature.into()));
        }
        self.verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&AuthConfig {
            jwt_secret: Secret::new(secret),
            jwt_secret_generated: false,
            token_ttl: Duration::from_secs(60),
            admin: None,
            account_cache: Duration::ZERO,
            login_attempts_per_minute: 10,
            attempts_per_ip_per_minute: 60,
            hash_queue: 32,
            hash_wait: Duration::from_secs(2),
            admin_promote: false,
        })
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn a_verified_token_is_refused_once_it_expires_even_from_the_cache() {
        let keys = keys("test-secret-test-secret-test-secret-0123");
        let token = keys.issue(Uuid::now_v7(), Role::User).expect("signs");
        keys.verify(&token).expect("valid, and now remembered");
        let past = chrono::Utc::now().timestamp() - 60;
        if let Some(claims) = keys.verified.get(token.as_str()) {
            keys.verified.insert(token.clone(), Claims { exp: past, ..claims });
        }
        assert!(keys.verify(&token).is_err(), "an expired token is refused");
        assert!(keys.verify("not-a-token").is_err(), "an unknown token is decoded, and refused");
    }

    #[test]
    fn a_token_round_trips() {
        let keys = keys("a-secret-that-is-long-enough-for-hs256");
        let id = Uuid::now_v7();
        let claims = keys.verify(&keys.issue(id, Role::Admin).expect("signs")).expect("valid");
        assert_eq!((claims.sub, claims.role), (id, Role::Admin));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = keys("one-secret-that-is-long-enough-for-hs256").issue(Uuid::now_v7(), Role::User).expect("signs");
        assert!(keys("another-secret-that-is-long-enough-hs256").verify(&token).is_err());
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let keys = keys("a-secret-that-is-long-enough-for-hs256");
        let now = chrono::Utc::now().timestamp();
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = serde_json::json!({"sub": Uuid::now_v7(), "role": "admin", "iat": now, "exp": now + 60});
        let token = format!("{header}.{}.", b64(claims.to_string().as_bytes()));
        assert!(keys.verify(&token).is_err());
    }

    #[test]
    fn a_token_of_another_hmac_alg_is_refused() {
        let keys = keys("a-secret-that-is-long-enough-for-hs256");
        let now = chrono::Utc::now().timestamp();
        let claims = Claims { sub: Uuid::now_v7(), role: Role::User, iat: now, exp: now + 60 };
        let token = encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"a-secret-that-is-long-enough-for-hs256"),
        )
        .expect("signs");
        assert!(keys.verify(&token).is_err());
    }
}
