//! The admin listener (`SEATGATE_LB_ADMIN_LISTEN`): `GET /metrics` (Prometheus text) and
//! `GET /health`. It is a separate socket so it can stay on a private interface, and so metrics
//! scrapes are never rate-limited or counted as proxied traffic.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use crate::body::RespBody;
use crate::proxy::{Proxy, problem};

/// What the admin endpoints read.
pub(crate) struct Admin {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) client_permits: Arc<Semaphore>,
    pub(crate) max_connections: usize,
}

impl Admin {
    pub(crate) async fn handle(&self, req: Request<Incoming>) -> Result<Response<RespBody>, Infallible> {
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        Ok(match req.uri().path() {
            "/metrics" if get => {
                let connections = self.max_connections.saturating_sub(self.client_permits.available_permits());
                for backend in self.proxy.upstreams.all() {
                    backend.stats.in_flight.set(backend.in_flight() as f64);
                }
                let text = self.proxy.stats.render(self.proxy.upstreams.in_flight(), connections);
                let mut res = Response::new(RespBody::full(text));
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                res
            }
            "/health" if get => {
                let rotation = self.proxy.upstreams.rotation();
                let total = self.proxy.upstreams.all().len();
                let body = serde_json::json!({
                    "status": "ok",
                    "live_upstreams": rotation.live.len(),
                    "upstreams": total,
                    "panic_mode": rotation.in_panic(),
                });
                let mut res = Response::new(RespBody::full(body.to_string()));
                res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                res
            }
            "/metrics" | "/health" => problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use GET"),
            _ => problem(StatusCode::NOT_FOUND, "not_found", "the admin listener serves /metrics and /health"),
        })
    }
}
