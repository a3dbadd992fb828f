//! Logging and request spans.
//!
//! `init` sets up `tracing` once per process: compact text for people, JSON for log pipelines.
//! Each request runs in a span carrying a request id, taken from the load balancer's
//! `X-Request-Id` when present (so one id follows a request through lb, API and workers) and
//! echoed in the response. Emails, passwords, tokens and `Authorization` are never logged.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// The header carrying the request id between lb, API and clients.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const DEFAULT_FILTER: &str = "info,sqlx=warn,lapin=warn,actix_server=warn";

/// Where the log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTo {
    /// Services: their log is their output.
    Stdout,
    /// Commands whose output is a report on stdout (`check-invariants`, `seed-users`): a log line
    /// there would corrupt the JSON a script reads.
    Stderr,
}

/// Installs the global subscriber. `RUST_LOG` overrides the default filter. Colours only when
/// the log goes to a terminal: a log file or pipe gets plain text.
pub fn init(service: &'static str, format: LogFormat, to: LogTo) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = match to {
        LogTo::Stdout => std::io::IsTerminal::is_terminal(&std::io::stdout()),
        LogTo::Stderr => std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let writer = match to {
        LogTo::Stdout => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
        LogTo::Stderr => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_target(true).with_ansi(ansi).with_writer(writer);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}

/// For tests: logs go to the test writer when `TEST_LOG` is set, nowhere otherwise.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_span_events(FmtSpan::NONE)
            .try_init();
    }
}

/// Root span of every request: method, route, status, and the request id.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // `root_span!` matches the route, parses the connection info and the trace headers and
        // formats the span's name before it knows whether the span is enabled; under a `warn`
        // filter it never is, and that work was a few percent of a hold's CPU (docs/SCALING.md).
        if !tracing::span_enabled!(tracing::Level::INFO) {
            return Span::none();
        }
        let request_id = request_id_of(request);
        tracing_actix_web::root_span!(request, request.id = %request_id, user.id = tracing::field::Empty)
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// The incoming `X-Request-Id` when it is sane (printable, at most 128 bytes), else a new one.
/// The id is stored in the request's extensions so the response can echo it.
pub fn request_id_of(request: &ServiceRequest) -> String {
    if let Some(RequestId(id)) = request.extensions().get::<RequestId>() {
        return id.clone();
    }
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    id
}

/// The request id of the current request (in the request's extensions).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Middleware body: echoes the request id in the response.
pub async fn echo_request_id(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request_id_of(&req);
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}
