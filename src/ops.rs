//! Operations endpoints: liveness, readiness (each backing service checked), Prometheus
//! metrics, and the request metrics middleware.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpResponse, get, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use serde_json::json;

use crate::state::AppState;

/// Time allowed for each readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process-wide Prometheus recorder (installed on first use; tests share it).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => {
                // Without an exporter thread nothing drains histogram buckets between scrapes.
                let upkeep = handle.clone();
                std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(Duration::from_secs(5));
                            upkeep.run_upkeep();
                        }
                    })
                    .ok();
                handle
            }
            // A recorder is already installed (another library in the same process): keep a
            // detached one so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// The process is up.
#[utoipa::path(tag = "operations", responses((status = 200, description = "alive")))]
#[get("/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[derive(Serialize)]
struct Check {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn probe<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> Check {
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(Ok(())) => Check { status: "up", error: None },
        Ok(Err(e)) => Check { status: "down", error: Some(format!("{e:#}")) },
        Err(_) => Check { status: "down", error: Some("timed out".into()) },
    }
}

/// Ready for traffic: PostgreSQL, Redis and RabbitMQ reachable and not shutting down.
#[utoipa::path(tag = "operations", responses(
    (status = 200, description = "every dependency is up"),
    (status = 503, description = "a dependency is down or the instance is draining"),
))]
#[get("/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let postgres = probe(async {
        sqlx::query("select 1").execute(&state.db).await?;
        Ok(())
    });
    let redis = probe(async {
        let mut conn = state.redis.get().await?;
        let _: String = deadpool_redis::redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    });
    let rabbitmq = probe(async {
        state.amqp.channel().await?;
        Ok(())
    });
    let (postgres, redis, rabbitmq) = tokio::join!(postgres, redis, rabbitmq);
    let draining = state.is_draining();
    let up = !draining && [&postgres, &redis, &rabbitmq].iter().all(|c| c.status == "up");
    let body = json!({
        "status": if up { "ready" } else if draining { "draining" } else { "unavailable" },
        "checks": { "postgres": postgres, "redis": redis, "rabbitmq": rabbitmq },
    });
    if up { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// Prometheus text format.
#[get("/metrics")]
pub async fn prometheus_metrics() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(metrics_handle().render())
}

/// Middleware: counts requests and records their latency by route pattern and status.
pub async fn record_request(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().to_string();
    let res = next.call(req).await?;
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16().to_string();
    let elapsed = start.elapsed().as_secs_f64();
    metrics::counter!("seatgate_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("seatgate_http_request_duration_seconds", "method" => method, "route" => route).record(elapsed);
    Ok(res)
}

/// Registers the operations routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(live).service(ready).service(prometheus_metrics);
}
