//! Active health checks: every interval, `GET <health path>` on each upstream over a fresh
//! connection (so the probe also proves the upstream still accepts connections). A 2xx answer
//! within the timeout is healthy; anything else takes the upstream out of the rotation until a
//! later probe succeeds. The same loop ends passive-ejection cool-downs by refreshing the live
//! snapshot, so it runs (without probing) even when active checks are off.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::body::ReqBody;
use crate::config::HealthConfig;
use crate::pool;
use crate::upstream::{Backend, Upstreams};

/// Runs until `stop`: probes (when enabled) and refreshes the live set every tick.
pub(crate) async fn run(
    upstreams: Arc<Upstreams>,
    health: HealthConfig,
    connect_timeout: Duration,
    stop: CancellationToken,
) {
    let probing = !health.interval.is_zero();
    let tick = if probing {
        health.interval
    } else {
        // Only cool-downs to end: check often enough that they end close to on time.
        (health.eject_cooldown / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    };
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if probing {
            let mut probes = JoinSet::new();
            for backend in upstreams.all() {
                let backend = Arc::clone(backend);
                let path = health.path.clone();
                let timeout = health.timeout;
                probes.spawn(async move {
                    let verdict = probe(&backend, &path, connect_timeout, timeout).await;
                    (backend, verdict)
                });
            }
            let results = tokio::select! {
                () = stop.cancelled() => return,
                results = probes.join_all() => results,
            };
            for (backend, verdict) in results {
                let healthy = verdict.is_ok();
                if upstreams.set_healthy(&backend, healthy) {
                    match verdict {
                        Ok(()) => tracing::info!(upstream = %backend.url, "upstream passed its health check"),
                        Err(reason) => {
                            tracing::warn!(upstream = %backend.url, reason = %reason, "upstream failed its health check")
                        }
                    }
                }
            }
        }
        upstreams.refresh();
    }
}

/// One probe: connect, `GET path`, expect 2xx, all within `timeout`.
async fn probe(backend: &Backend, path: &str, connect_timeout: Duration, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut sender = pool::connect(&backend.url, connect_timeout).await.map_err(|e| e.to_string())?;
        let uri: Uri = format!("{}{}", backend.url.path_prefix, path).parse().map_err(|e| format!("bad path: {e}"))?;
        let mut req = Request::new(ReqBody::Empty);
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(header::HOST, backend.host_header.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("seatgate-lb-health"));
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        match res.status() {
            s if s.is_success() => Ok(()),
            StatusCode::SERVICE_UNAVAILABLE => Err("503 not ready".to_owned()),
            s => Err(format!("status {s}")),
        }
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| format!("no answer within {timeout:?}"))?
}
