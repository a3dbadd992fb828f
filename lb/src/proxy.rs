//! The request path: rate limit, size limit, header rewrite, choose an upstream, send, relay.
//!
//! Retry policy — what is sent again, and when:
//! - Any method, body or not, is retried on another upstream when it provably never left the lb:
//!   the TCP connect was refused, reset or timed out, or hyper handed the request back because a
//!   pooled connection turned out to be closed before a byte was written.
//! - `GET` and `HEAD` without a body (idempotent, and rebuildable from their head) are also
//!   retried when the connection fails after sending but before any response arrived (typically
//!   a keep-alive connection the upstream closed at the same moment).
//! - Nothing else is retried: a `POST` (or any request with a body) that an upstream may have
//!   received gets 502 if that upstream fails, never a replay. A request that timed out waiting
//!   for response headers gets 504 and is not retried either (the upstream may still be working
//!   on it, and a slow upstream should not get twice the load).
//! - At most `SEATGATE_LB_MAX_ATTEMPTS` upstreams are tried (3), each one once.
//!
//! Which upstreams are candidates: the live ones (passing active checks, not passively ejected).
//! When there are none and panic routing is on, the reachable ones: their readiness probe got an
//! HTTP answer (a 503 because a dependency all instances share is down, typically), so they can
//! still answer each request themselves, serving what does not need the missing dependency and
//! giving their own precise 503 for the rest. With no candidate at all the lb answers
//! 503 `service_unavailable` with `Retry-After: 1`.
//!
//! The request timeout bounds the wait for response headers only; the body then streams for as
//! long as the upstream sends it, so server-sent events are not cut.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use smallvec::SmallVec;

use crate::body::{BodyTooLarge, Lease, ReqBody, RespBody};
use crate::config::{Config, IpNet};
use crate::headers::{self, X_REQUEST_ID};
use crate::pool::{self, Sender};
use crate::ratelimit::{RateLimiter, RouteLimits};
use crate::select::Selector;
use crate::stats::{LbError, Stats};
use crate::upstream::{Backend, InFlight, Upstreams};

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) selector: Selector,
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    pub(crate) routes: Arc<RouteLimits>,
    pub(crate) stats: Arc<Stats>,
    trusted_proxies: Vec<IpNet>,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_body_bytes: u64,
    max_attempts: usize,
    panic_routing: bool,
}

/// How one attempt on one upstream ended.
enum Attempt {
    /// Response headers arrived on this connection.
    Answered(Response<Incoming>, Sender),
    /// Nothing was written: connect refused, reset or timed out, or a fresh connection closed
    /// before the request went out. The request is handed back intact.
    NotSent(Request<ReqBody>),
    /// The request was (or may have been) written, then the connection failed before a response.
    AfterSend(hyper::Error),
    /// No response headers within the request timeout.
    TimedOut,
}

impl Proxy {
    /// Builds the request path from the configuration and the shared upstream set.
    pub fn new(
        config: &Config,
        upstreams: Arc<Upstreams>,
        limiter: Option<Arc<RateLimiter>>,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            upstreams,
            selector: Selector::new(config.strategy),
            limiter,
            routes: Arc::new(RouteLimits::new(&config.route_limits)),
            stats,
            trusted_proxies: config.trusted_proxies.clone(),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
            max_attempts: config.max_attempts,
            panic_routing: config.health.panic_routing,
        }
    }

    /// Proxies one client request from `peer`. Never fails: every problem becomes a response.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<RespBody> {
        let request_id = headers::request_id(req.headers());

        if self.limiter.is_some() || !self.routes.is_empty() {
            let client = headers::client_ip(peer.ip(), req.headers(), &self.trusted_proxies);
            let global = self.limiter.as_ref().map_or(Ok(()), |l| l.check(client));
            if let Err(retry_after) = global.and_then(|()| self.routes.check(req.uri().path(), client)) {
                self.stats.rate_limited.increment(1);
                let mut res = self.problem(
                    LbError::RateLimited,
                    &format!("rate limit exceeded; retry in {retry_after} s"),
                    &request_id,
                );
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return res;
            }
        }

        if req.method() == Method::CONNECT {
            // A tunnel is not a request an API instance can answer; refuse it here.
            let mut res = problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "CONNECT is not supported");
            res.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
            return res;
        }
        if content_length(req.headers()).is_some_and(|len| len > self.max_body_bytes) {
            return self.too_large(&request_id);
        }

        let (mut parts, body) = req.into_parts();
        let body = if body.is_end_stream() { ReqBody::Empty } else { ReqBody::limited(body, self.max_body_bytes) };
        let bodyless = matches!(body, ReqBody::Empty);

        headers::strip_hop_by_hop(&mut parts.headers);
        // hyper already answered any `Expect: 100-continue` to the client when it read the body.
        parts.headers.remove(header::EXPECT);
        headers::set_forwarded(&mut parts.headers, peer.ip(), &self.trusted_proxies);
        parts.headers.insert(X_REQUEST_ID.clone(), request_id.clone());
        // Keep-alive to upstreams needs HTTP/1.1 whatever the client spoke.
        parts.version = Version::HTTP_11;
        let host_missing = !parts.headers.contains_key(header::HOST);
        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));

        // Only bodyless GET/HEAD may be sent twice; keep what is needed to rebuild them.
        let replay = (bodyless && matches!(parts.method, Method::GET | Method::HEAD))
            .then(|| (parts.method.clone(), parts.headers.clone()));

        let mut req = Request::from_parts(parts, body);
        let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
        let mut failed_after_send = false;
        while tried.len() < self.max_attempts {
            let backend = {
                let rotation = self.upstreams.rotation();
                self.selector.pick(rotation.targets(), &tried)
            };
            let Some(backend) = backend else { break };
            if !tried.is_empty() {
                self.stats.retries.increment(1);
            }
            tried.push(backend.index);
            prepare_for(&mut req, &backend, &path, host_missing);

            let in_flight = InFlight::new(&backend);
            match self.send(&backend, req).await {
                Attempt::Answered(response, sender) => {
                    self.upstreams.record_success(&backend);
                    return self.relay(response, backend, sender, in_flight, &request_id);
                }
                Attempt::NotSent(unsent) => {
                    self.upstreams.record_connect_failure(&backend);
                    req = unsent;
                }
                Attempt::AfterSend(e) => {
                    if is_body_too_large(&e) {
                        return self.too_large(&request_id);
                    }
                    tracing::warn!(upstream = %backend.url, error = %e, "upstream failed before responding");
                    let connection_broke = e.is_closed() || e.is_incomplete_message() || e.is_canceled();
                    match &replay {
                        Some((method, headers)) if connection_broke => {
                            self.upstreams.record_connect_failure(&backend);
                            req = rebuild(method, headers, &path);
                            failed_after_send = true;
                        }
                        _ => {
                            return self.problem(
                                LbError::BadGateway,
                                "the upstream failed while handling the request",
                                &request_id,
                            );
                        }
                    }
                }
                Attempt::TimedOut => {
                    tracing::warn!(
                        upstream = %backend.url,
                        timeout_ms = self.request_timeout.as_millis(),
                        "upstream did not answer in time"
                    );
                    return self.problem(LbError::GatewayTimeout, "the upstream did not answer in time", &request_id);
                }
            }
        }

        if tried.is_empty() {
            let detail = if self.panic_routing {
                "no upstream is healthy or reachable"
            } else {
                "no healthy upstream is available"
            };
            let mut res = self.problem(LbError::ServiceUnavailable, detail, &request_id);
            // Health checks run about every second: that is when the answer may change.
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
        let detail =
            if failed_after_send { "the upstreams failed before responding" } else { "no upstream could be reached" };
        self.problem(LbError::BadGateway, detail, &request_id)
    }

    /// Sends `req` to `backend` on an idle pooled connection or a new one. A pooled connection
    /// found dead before anything was written is discarded and the next one tried, on the same
    /// upstream: that is staleness, not a failure of the upstream.
    async fn send(&self, backend: &Backend, mut req: Request<ReqBody>) -> Attempt {
        loop {
            let (mut sender, reused) = match backend.pool().take() {
                Some(sender) => (sender, true),
                None => match pool::connect(&backend.url, self.connect_timeout).await {
                    Ok(sender) => (sender, false),
                    Err(e) => {
                        tracing::warn!(upstream = %backend.url, error = %e, "cannot connect to upstream");
                        return Attempt::NotSent(req);
                    }
                },
            };
            match tokio::time::timeout(self.request_timeout, sender.try_send_request(req)).await {
                Ok(Ok(response)) => return Attempt::Answered(response, sender),
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    Some(unsent) => {
                        tracing::warn!(upstream = %backend.url, error = %e.error(), "new upstream connection closed before use");
                        return Attempt::NotSent(unsent);
                    }
                    None => return Attempt::AfterSend(e.into_error()),
                },
                Err(_elapsed) => return Attempt::TimedOut,
            }
        }
    }

    /// Hands the upstream's response to the client: hop-by-hop headers dropped, body streamed.
    fn relay(
        &self,
        response: Response<Incoming>,
        backend: Arc<Backend>,
        sender: Sender,
        in_flight: InFlight,
        request_id: &HeaderValue,
    ) -> Response<RespBody> {
        let (mut parts, body) = response.into_parts();
        backend.stats.response(parts.status);
        headers::strip_hop_by_hop(&mut parts.headers);
        if !parts.headers.contains_key(&X_REQUEST_ID) {
            parts.headers.insert(X_REQUEST_ID.clone(), request_id.clone());
        }
        let lease = Lease { backend, sender, _in_flight: in_flight };
        Response::from_parts(parts, RespBody::upstream(body, lease))
    }

    fn too_large(&self, request_id: &HeaderValue) -> Response<RespBody> {
        self.problem(
            LbError::PayloadTooLarge,
            &format!("the request body is larger than {} bytes", self.max_body_bytes),
            request_id,
        )
    }

    fn problem(&self, error: LbError, detail: &str, request_id: &HeaderValue) -> Response<RespBody> {
        self.stats.error(error);
        let mut res = problem(error.status(), error.code(), detail);
        res.headers_mut().insert(X_REQUEST_ID.clone(), request_id.clone());
        res
    }
}

/// An RFC 9457 problem document, the error shape of the whole seatgate API.
pub fn problem(status: StatusCode, code: &str, detail: &str) -> Response<RespBody> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    let mut res = Response::new(RespBody::full(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    res
}

/// Points the request at `backend`: its path prefix, and its authority as `Host` if the client
/// sent none.
fn prepare_for(req: &mut Request<ReqBody>, backend: &Backend, path: &PathAndQuery, host_missing: bool) {
    let prefix = &backend.url.path_prefix;
    if !prefix.is_empty() {
        if let Ok(uri) = format!("{prefix}{path}").parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    } else if req.uri().scheme().is_some() || req.uri().path_and_query() != Some(path) {
        // Absolute-form from the client, or a rebuilt request: send origin-form.
        *req.uri_mut() = Uri::from(path.clone());
    }
    if host_missing {
        req.headers_mut().insert(header::HOST, backend.host_header.clone());
    }
}

/// A bodyless GET/HEAD again, for a retry after a send failure. The path is set by
/// [`prepare_for`] before it is sent.
fn rebuild(method: &Method, headers: &HeaderMap, path: &PathAndQuery) -> Request<ReqBody> {
    let mut req = Request::new(ReqBody::Empty);
    *req.uri_mut() = Uri::from(path.clone());
    *req.method_mut() = method.clone();
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers.clone();
    req
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn is_body_too_large(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<BodyTooLarge>() {
            return true;
        }
        source = e.source();
    }
    false
}
