//! Extractors for the caller: [`AuthUser`] (any valid token) and [`AdminUser`] (role admin).

use futures_util::future::LocalBoxFuture;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use uuid::Uuid;

use super::Role;
use crate::error::ApiError;
use crate::state::AppState;

/// A caller with a valid access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// A caller whose token carries role `admin`; anyone else gets 403 (401 without a token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

/// Checks the token (signature, algorithm, expiry); no I/O.
fn verify_token(req: &HttpRequest) -> Result<(web::Data<AppState>, AuthUser), ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState is not registered")))?;
    let value = req.headers().get(header::AUTHORIZATION).ok_or(ApiError::Unauthorized("missing bearer token"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let claims = state.jwt.verify(token).map_err(|e| {
        tracing::debug!(error = %e, "token refused");
        ApiError::Unauthorized("invalid or expired token")
    })?;
    let user = AuthUser { id: claims.sub, role: claims.role };
    tracing::Span::current().record("user.id", tracing::field::display(user.id));
    Ok((state.clone(), user))
}

/// A valid token of an account that still exists, with the account's current role.
async fn authenticate(state: web::Data<AppState>, user: AuthUser) -> Result<AuthUser, ApiError> {
    match state.accounts.role_of(&state.db, user.id).await? {
        Some(role) => Ok(AuthUser { id: user.id, role }),
        None => Err(ApiError::Unauthorized("the account of this token no longer exists")),
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verified = verify_token(req);
        Box::pin(async move {
            let (state, user) = verified?;
            authenticate(state, user).await
        })
    }
}

impl FromRequest for AdminUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The token's role decides at once (so the refusal comes before any body error); the
        // account's current role can only take rights away.
        let verified = verify_token(req).and_then(|(state, user)| {
            if user.is_admin() { Ok((state, user)) } else { Err(ApiError::Forbidden("admin role required")) }
        });
        Box::pin(async move {
            let (state, user) = verified?;
            let user = authenticate(state, user).await?;
            if user.is_admin() { Ok(AdminUser(user)) } else { Err(ApiError::Forbidden("admin role required")) }
        })
    }
}
