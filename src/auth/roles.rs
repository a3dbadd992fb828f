//! Granting roles: an admin makes an account door staff, another admin, or a plain user again
//! (`PUT /api/v1/users/{id}/role`). The change counts from the account's next request: the
//! extractors read the current role from PostgreSQL (through a cache of
//! `SEATGATE_ACCOUNT_CACHE_MS`), not the one in the token.

use actix_web::put;
use actix_web::web::{self, Json};
use serde::Deserialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::repo::UserRow;
use super::service::User;
use super::{AdminUser, Role};
use crate::error::{ApiError, ApiResult};
use crate::openapi::Problem;
use crate::state::AppState;

/// Body of `PUT /api/v1/users/{id}/role`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// `user`, `door` (door staff: check-in) or `admin`.
    pub role: Role,
}

/// Gives an account a role (admin only); the account as it now is.
#[utoipa::path(tag = "auth", params(("id" = Uuid, Path, description = "user id")), request_body = RoleRequest,
    security(("bearer" = [])), responses(
        (status = 200, body = User),
        (status = 403, description = "not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "an admin cannot change their own role", body = Problem, content_type = "application/problem+json"),
))]
#[put("/api/v1/users/{id}/role")]
pub async fn set_role(
    state: web::Data<AppState>,
    admin: AdminUser,
    id: web::Path<Uuid>,
    body: Json<RoleRequest>,
) -> ApiResult<Json<User>> {
    Ok(Json(change_role(&state, admin, *id, body.role).await?))
}

/// Sets the role of account `id`. An admin may not change their own (so the last admin cannot
/// lock everyone out by accident).
#[tracing::instrument(skip_all, fields(user.id = %id, role = ?role))]
pub async fn change_role(state: &AppState, admin: AdminUser, id: Uuid, role: Role) -> Result<User, ApiError> {
    if admin.0.id == id {
        return Err(ApiError::Conflict("you cannot change your own role; ask another admin".into()));
    }
    let mut conn = state.db.acquire().await?;
    let row = update_role(&mut conn, id, role).await?.ok_or(ApiError::NotFound("no such user"))?;
    state.accounts.forget(id);
    tracing::info!(by = %admin.0.id, "role changed");
    Ok(User::from(row))
}

#[tracing::instrument(skip_all, fields(user.id = %id))]
async fn update_role(conn: &mut PgConnection, id: Uuid, role: Role) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as::<_, UserRow>(
        r#"update users set role = $2, updated_at = now() where id = $1
           returning id, email, name, password_hash, role, created_at"#,
    )
    .bind(id)
    .bind(role)
    .fetch_optional(conn)
    .await
}
