//! Per-client-IP rate limit.

use crate::support::{TestLb, TestUpstream};

#[tokio::test]
async fn the_rate_limit_answers_429_problem_json_with_retry_after() {
    // Arrange: 1 request per second, bursts of 2.
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[("RATE_LIMIT_RPS", "1"), ("RATE_LIMIT_BURST", "2")]).await;

    // Act
    let statuses = [lb.get("/whoami").await.status, lb.get("/whoami").await.status];
    let limited = lb.get("/whoami").await;

    // Assert
    assert_eq!(statuses, [200, 200]);
    let doc = limited.problem(429, "rate_limited");
    assert_eq!(doc["title"], "Too Many Requests");
    let retry_after: u64 =
        limited.headers["retry-after"].to_str().expect("ascii").parse().expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(up.hits(), 2, "a refused request never reaches an upstream");
    assert_eq!(lb.metric("seatgate_lb_rate_limited_total").await, Some(1.0));
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_route_limit_refuses_its_prefix_and_leaves_other_paths_alone() {
    // Arrange: /auth/ at 1 request per second, bursts of 2; no global limit.
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[("ROUTE_LIMITS", "/auth/=1:2")]).await;

    // Act
    let allowed = [lb.get("/auth/login").await.status, lb.get("/auth/register").await.status];
    let limited = lb.get("/auth/login").await;
    let others = gets(&lb, 5).await;

    // Assert
    assert_eq!(allowed, [200, 200]);
    limited.problem(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    assert!(others.iter().all(|s| *s == 200), "paths outside the prefix are not limited: {others:?}");
    lb.handle.shutdown().await;
}

async fn gets(lb: &TestLb, n: usize) -> Vec<http::StatusCode> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(lb.get("/whoami").await.status);
    }
    out
}
