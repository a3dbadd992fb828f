//! HTTP for accounts: register, login, me.

use actix_web::{HttpResponse, get, post, web};

use super::AuthUser;
use super::service::{self, AuthResponse, LoginRequest, RegisterRequest, User};
use crate::client_ip::ClientIp;
use crate::error::ApiResult;
use crate::openapi::Problem;
use crate::state::AppState;

/// Creates an account (role `user`) and returns a token for it.
#[utoipa::path(tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, body = AuthResponse),
    (status = 409, description = "email already registered", body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "too many attempts from this client IP (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "password hashing saturated (see Retry-After)", body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/auth/register")]
pub async fn register(
    state: web::Data<AppState>,
    ip: ClientIp,
    body: web::Json<RegisterRequest>,
) -> ApiResult<HttpResponse> {
    let answer = service::register(&state, ip.0, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(answer))
}

/// Exchanges email and password for a token.
#[utoipa::path(tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = AuthResponse),
    (status = 401, description = "wrong email or password", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "too many attempts for this email or from this client IP (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "password hashing saturated (see Retry-After)", body = Problem, content_type = "application/problem+json"),
))]
#[post("/api/v1/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    ip: ClientIp,
    body: web::Json<LoginRequest>,
) -> ApiResult<web::Json<AuthResponse>> {
    Ok(web::Json(service::login(&state, ip.0, body.into_inner()).await?))
}

/// The caller's account.
#[utoipa::path(tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
#[get("/api/v1/me")]
pub async fn me(state: web::Data<AppState>, user: AuthUser) -> ApiResult<web::Json<User>> {
    Ok(web::Json(service::me(&state, user.id).await?))
}

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(register).service(login).service(me).service(super::roles::set_role);
}
