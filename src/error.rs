//! The one error type at the HTTP boundary, rendered as `application/problem+json` (RFC 9457)
//! with a stable `code`. `Display` is the client-safe text; causes (`Debug`) go to the log only.
//! Extractor failures (bad JSON, wrong content type, bad path or query) are mapped here too, so
//! no client mistake ever turns into a 500.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

/// One field that failed validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `rows[2].seats`.
    pub field: String,
    /// What is wrong with it, in words a client developer can act on.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Every error an HTTP handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("this resource does not support that method")]
    MethodNotAllowed(Vec<String>),
    #[error("{0}")]
    Conflict(String),
    #[error("some seats are not available")]
    SeatsUnavailable(Vec<Uuid>),
    #[error("the hold has expired")]
    HoldExpired,
    /// A forged, garbled or unknown ticket at the door; the text says which, safely.
    #[error("{0}")]
    InvalidTicket(String),
    #[error("the booking of this ticket is cancelled")]
    TicketCancelled,
    #[error("this ticket was already checked in")]
    AlreadyCheckedIn { checked_in_at: chrono::DateTime<chrono::Utc>, gate: Option<String> },
    #[error("the sale of this showtime has not opened yet")]
    SaleNotOpen { opens_at: chrono::DateTime<chrono::Utc> },
    #[error("you have not been admitted from the waiting room of this sale (or your admission ended)")]
    NotAdmitted,
    #[error("too many requests wait for password hashing, try again shortly")]
    Overloaded { retry_after_secs: u64 },
    #[error("too many requests, slow down")]
    RateLimited { retry_after_secs: u64 },
    #[error("this instance serves as many live streams as it may, try again shortly")]
    AtCapacity { retry_after_secs: u64 },
    #[error("a backing service is unavailable, try again shortly")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A single-field validation error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_failed",
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::SeatsUnavailable(_) => "seats_unavailable",
            Self::HoldExpired => "hold_expired",
            Self::InvalidTicket(_) => "invalid_ticket",
            Self::TicketCancelled => "ticket_cancelled",
            Self::AlreadyCheckedIn { .. } => "already_checked_in",
            Self::SaleNotOpen { .. } => "sale_not_open",
            Self::NotAdmitted => "not_admitted",
            Self::Overloaded { .. } => "overloaded",
            Self::RateLimited { .. } => "rate_limited",
            Self::AtCapacity { .. } => "at_capacity",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::InvalidTicket(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::NotAdmitted => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_)
            | Self::SeatsUnavailable(_)
            | Self::AlreadyCheckedIn { .. }
            | Self::SaleNotOpen { .. } => StatusCode::CONFLICT,
            Self::HoldExpired | Self::TicketCancelled => StatusCode::GONE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::AtCapacity { .. } | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Internal(e) => tracing::error!(error = ?e, "request failed"),
            Self::Unavailable(e) => tracing::warn!(error = ?e, "backing service unavailable"),
            _ => {}
        }
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "code": self.code(),
        });
        match self {
            Self::Validation(errors) => body["errors"] = json!(errors),
            Self::SeatsUnavailable(ids) => body["unavailable_seat_ids"] = json!(ids),
            Self::AlreadyCheckedIn { checked_in_at, gate } => {
                body["checked_in_at"] = json!(checked_in_at);
                body["gate"] = json!(gate);
            }
            Self::SaleNotOpen { opens_at } => body["opens_at"] = json!(opens_at),
            _ => {}
        }
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        match self {
            Self::Unauthorized(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::RateLimited { retry_after_secs }
            | Self::AtCapacity { retry_after_secs }
            | Self::Overloaded { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            Self::MethodNotAllowed(methods) => {
                res.insert_header((header::ALLOW, methods.join(", ")));
            }
            _ => {}
        }
        res.body(body.to_string())
    }
}

/// A database error: PostgreSQL out of reach (see [`postgres_unavailable`]) is 503, anything
/// else a 500.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            e if postgres_unavailable(&e) => Self::Unavailable(anyhow::Error::new(e).context("postgres")),
            // Text PostgreSQL cannot store (a NUL byte) that slipped past validation is still
            // the client's mistake.
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("22021" | "22P05")) => {
                Self::invalid("body", "text must not contain NUL characters")
            }
            other => Self::Internal(anyhow::Error::new(other).context("postgres query")),
        }
    }
}

/// Whether a database error means PostgreSQL is (for now) out of reach rather than that the
/// query was wrong: no connection, or the server shutting down, restarting, or refusing
/// connections (SQLSTATE class 08, 57P01-57P03, 53300), or a transaction it chose to abort
/// (serialization failure, deadlock). All are worth retrying, so clients get 503.
pub fn postgres_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01")
        }),
        _ => false,
    }
}

/// The name of the constraint a database error violated, if any.
pub fn violated_constraint(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// Maps a violation of constraint `name` to a client error; any other error goes through
/// `From<sqlx::Error>`.
pub fn on_constraint(name: &str, f: impl FnOnce() -> ApiError) -> impl FnOnce(sqlx::Error) -> ApiError {
    move |e| {
        if violated_constraint(&e) == Some(name) { f() } else { ApiError::from(e) }
    }
}

/// The JSON extractor's settings: size limit and problem+json errors.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).error_handler(move |err, _req| json_error(err, limit).into())
}

fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge(limit)
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::invalid(field_of_serde_error(&e), strip_position(&e))
        }
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {}", strip_position(&e))),
        JsonPayloadError::Payload(e) => ApiError::BadRequest(format!("cannot read the request body: {e}")),
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// serde_json names the field only inside its message ("unknown field `x`", "missing field `x`").
fn field_of_serde_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    msg.split('`').nth(1).filter(|_| msg.contains("field")).unwrap_or("body").to_owned()
}

fn strip_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

/// Path parameters that do not parse (an id that is not a UUID): there is no such resource.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_err: PathError, _req: &HttpRequest| ApiError::NotFound("no such resource").into())
}

/// Query strings that do not parse: 422 naming the problem.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req: &HttpRequest| {
        let message = match &err {
            QueryPayloadError::Deserialize(e) => e.to_string(),
            other => other.to_string(),
        };
        ApiError::invalid("query", message).into()
    })
}

/// Answer for requests no route took: 405 naming the allowed methods when the path exists
/// (`routes` lists each path pattern with its methods), else 404.
pub fn no_route(routes: &[(actix_web::dev::ResourceDef, Vec<String>)], req: &HttpRequest) -> ApiError {
    let path = req.path();
    match routes.iter().find(|(def, _)| def.is_match(path)) {
        Some((_, methods)) => ApiError::MethodNotAllowed(methods.clone()),
        None => ApiError::NotFound("no such resource"),
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
