//! Accounts and tokens: registration, login, the authenticated-user extractors, and the first
//! admin. Passwords are argon2id hashes; tokens are JWTs signed with the configured algorithm
//! only (HS256), so `alg: none` and algorithm confusion are refused.

pub mod accounts;
pub mod bulk;
pub mod extract;
pub mod jwt;
pub mod password;
pub mod repo;
pub mod roles;
pub mod routes;
pub mod service;

pub use extract::{AdminUser, AuthUser};

use serde::{Deserialize, Serialize};

/// What an account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "user_role", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    /// Door staff: scans tickets at the entrance (granted by an admin).
    Door,
    Admin,
}
