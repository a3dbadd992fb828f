//! The admin listener.

use crate::support::{TestLb, TestUpstream, dead_url};

#[tokio::test]
async fn metrics_count_requests_by_upstream_and_class_retries_and_health() {
    // Arrange
    let up = TestUpstream::start("a").await;
    let dead = dead_url().await;
    let lb = TestLb::start(&[up.url(), dead.clone()], &[("HEALTH_INTERVAL_MS", "0"), ("FAIL_THRESHOLD", "1000")]).await;

    // Act
    for _ in 0..4 {
        assert_eq!(lb.get("/whoami").await.status, 200);
    }

    // Assert
    let text = lb.metrics().await;
    let up_label = format!("upstream=\"{}\"", up.addr);
    assert!(text.contains(&format!("seatgate_lb_requests_total{{{up_label},class=\"2xx\"}} 4")), "{text}");
    assert!(text.contains("seatgate_lb_retries_total 2"), "{text}");
    let dead_host = dead.trim_start_matches("http://");
    assert!(
        text.contains(&format!("seatgate_lb_upstream_connect_failures_total{{upstream=\"{dead_host}\"}} 2")),
        "{text}"
    );
    assert!(text.contains(&format!("seatgate_lb_upstream_healthy{{{up_label}}} 1")), "{text}");
    assert!(text.contains("seatgate_lb_rate_limited_total 0"), "{text}");
    assert!(text.contains("seatgate_lb_in_flight 0"), "{text}");
    assert!(text.contains("# TYPE seatgate_lb_requests_total counter"), "{text}");
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn the_admin_health_endpoint_reports_the_rotation() {
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[]).await;

    assert_eq!(lb.live_upstreams().await, 1);
    let res = crate::support::request(
        lb.admin,
        http::Request::get("/nope").body(http_body_util::Full::<bytes::Bytes>::default()).expect("req"),
    )
    .await;
    res.problem(404, "not_found");
    lb.handle.shutdown().await;
}
