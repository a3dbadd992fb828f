//! Active health checks: every interval, `GET <health path>` on each upstream over a fresh
//! connection (so the probe also proves the upstream still accepts connections). A 2xx answer
//! within the timeout is healthy; anything else takes the upstream out of the rotation until a
//! later probe succeeds. The probe also tells apart an upstream that answered (any HTTP status:
//! it can still answer requests itself, which panic routing relies on) from one that could not
//! be reached, timed out, or answered 503 with `"status":"draining"` (the API's graceful
//! shutdown: it is leaving and must get no new requests). The same loop ends passive-ejection
//! cool-downs by refreshing the snapshot, so it runs (without probing) even when active checks
//! are off.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::body::ReqBody;
use crate::config::HealthConfig;
use crate::pool;
use crate::upstream::{Backend, Upstreams, Verdict};

/// Bytes of a 503 probe answer read to look for `"status":"draining"`; the API's is ~200.
const MAX_PROBE_BODY: usize = 16 * 1024;

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
                if upstreams.set_verdict(&backend, &verdict) {
                    match &verdict {
                        Verdict::Healthy => tracing::info!(upstream = %backend.url, "upstream passed its health check"),
                        Verdict::Unhealthy(reason) => tracing::warn!(
                            upstream = %backend.url,
                            reason = %reason,
                            "upstream failed its health check but still answers"
                        ),
                        Verdict::Unreachable(reason) => tracing::warn!(
                            upstream = %backend.url,
                            reason = %reason,
                            "upstream failed its health check and is unreachable"
                        ),
                    }
                }
            }
        }
        upstreams.refresh();
    }
}

/// One probe: connect, `GET path`, expect 2xx, all within `timeout`.
async fn probe(backend: &Backend, path: &str, connect_timeout: Duration, timeout: Duration) -> Verdict {
    let attempt = async {
        let mut sender =
            pool::connect(&backend.url, connect_timeout).await.map_err(|e| Verdict::Unreachable(e.to_string()))?;
        let uri: Uri = format!("{}{}", backend.url.path_prefix, path)
            .parse()
            .map_err(|e| Verdict::Unreachable(format!("bad path: {e}")))?;
        let mut req = Request::new(ReqBody::Empty);
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(header::HOST, backend.host_header.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("seatgate-lb-health"));
        let res = sender.send_request(req).await.map_err(|e| Verdict::Unreachable(e.to_string()))?;
        Ok(match res.status() {
            s if s.is_success() => Verdict::Healthy,
            StatusCode::SERVICE_UNAVAILABLE => {
                let body = Limited::new(res.into_body(), MAX_PROBE_BODY)
                    .collect()
                    .await
                    .map_err(|e| Verdict::Unreachable(format!("503 answer broke off: {e}")))?
                    .to_bytes();
                if says_draining(&body) {
                    Verdict::Unreachable("503 draining".to_owned())
                } else {
                    Verdict::Unhealthy("503 not ready".to_owned())
                }
            }
            s => Verdict::Unhealthy(format!("status {s}")),
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(verdict) | Err(verdict)) => verdict,
        Err(_) => Verdict::Unreachable(format!("no answer within {timeout:?}")),
    }
}

/// Whether a readiness body is the API's graceful-shutdown answer: a JSON object whose `status`
/// is `"draining"`.
fn says_draining(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["status"] == "draining")
}

#[cfg(test)]
mod tests {
    use super::says_draining;

    #[test]
    fn only_a_json_status_of_draining_means_draining() {
        assert!(says_draining(br#"{"status":"draining","checks":{"postgres":{"status":"up"}}}"#));
        assert!(says_draining(br#"{ "status" : "draining" }"#));
        assert!(!says_draining(br#"{"status":"unavailable","checks":{"redis":{"status":"down"}}}"#));
        assert!(!says_draining(br#"{"checks":{"status":"draining"}}"#), "only the top-level status counts");
        assert!(!says_draining(b"draining"));
        assert!(!says_draining(b""));
    }
}
