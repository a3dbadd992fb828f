//! Panic routing: when the active checks have taken every upstream out, requests go to the
//! upstreams that still answer (their readiness probe got an HTTP answer), never to one that
//! cannot be reached or is draining.

use std::sync::atomic::Ordering;

use crate::support::{TestLb, TestUpstream, dead_url, eventually};

/// Waits until `seatgate_lb_panic_mode` reads `value`.
async fn panic_mode_is(lb: &TestLb, value: f64) {
    eventually(&format!("seatgate_lb_panic_mode is {value}"), || async {
        (lb.metric("seatgate_lb_panic_mode").await == Some(value)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn when_every_upstream_fails_readiness_requests_still_reach_them_until_one_recovers() {
    // Arrange: both instances answer 503 on /health/ready (a shared dependency is down) but
    // serve other paths; a third upstream refuses connections.
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let dead = dead_url().await;
    a.state.unhealthy.store(true, Ordering::SeqCst);
    b.state.unhealthy.store(true, Ordering::SeqCst);
    let lb = TestLb::start(&[a.url(), b.url(), dead.clone()], &[]).await;

    // Act
    panic_mode_is(&lb, 1.0).await;
    let (a_before, b_before) = (a.hits(), b.hits());
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(lb.get("/whoami").await.status.as_u16());
    }

    // Assert: the upstreams answered for themselves; the unreachable one was never tried.
    assert_eq!(statuses, [200; 10]);
    assert_eq!((a.hits() - a_before, b.hits() - b_before), (5, 5), "round-robin over the reachable upstreams");
    assert_eq!(lb.live_upstreams().await, 0, "panic routing does not put them back in the rotation");
    let dead_host = dead.trim_start_matches("http://");
    let dead_failures = format!("seatgate_lb_upstream_connect_failures_total{{upstream=\"{dead_host}\"}}");
    assert_eq!(lb.metric(&dead_failures).await, Some(0.0));
    assert_eq!(lb.metric("seatgate_lb_retries_total").await, Some(0.0));

    // Act: a recovers.
    a.state.unhealthy.store(false, Ordering::SeqCst);
    panic_mode_is(&lb, 0.0).await;

    // Assert: only the healthy one gets traffic again.
    assert_eq!(lb.live_upstreams().await, 1);
    let b_before = b.hits();
    for _ in 0..6 {
        let res = lb.get("/whoami").await;
        assert_eq!((res.status.as_u16(), res.body.as_str()), (200, "a"));
    }
    assert_eq!(b.hits(), b_before, "an unhealthy upstream gets nothing once one is healthy");
    assert_eq!(lb.metric(&format!("seatgate_lb_upstream_healthy{{upstream=\"{}\"}}", a.addr)).await, Some(1.0));
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_draining_upstream_gets_no_traffic_in_panic_mode() {
    // Arrange: a fails readiness but answers; b answers 503 {"status":"draining"}.
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    a.state.unhealthy.store(true, Ordering::SeqCst);
    b.state.draining.store(true, Ordering::SeqCst);
    let lb = TestLb::start(&[a.url(), b.url()], &[]).await;
    panic_mode_is(&lb, 1.0).await;

    // Act
    let b_before = b.hits();
    let mut served_by = Vec::new();
    for _ in 0..6 {
        served_by.push(lb.get("/whoami").await.body);
    }

    // Assert
    assert!(served_by.iter().all(|name| name == "a"), "{served_by:?}");
    assert_eq!(b.hits(), b_before, "a draining instance is leaving: no new requests");

    // Act: a starts draining too, so nothing is left to route to.
    a.state.draining.store(true, Ordering::SeqCst);
    panic_mode_is(&lb, 0.0).await;

    // Assert
    let res = lb.get("/whoami").await;
    res.problem(503, "service_unavailable");
    assert_eq!(res.headers["retry-after"], "1");
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn with_panic_routing_off_failing_readiness_everywhere_gives_503_no_healthy_upstream() {
    // Arrange
    let a = TestUpstream::start("a").await;
    a.state.unhealthy.store(true, Ordering::SeqCst);
    let lb = TestLb::start(&[a.url()], &[("PANIC_ROUTING", "false")]).await;
    eventually("a leaves the rotation", || async { (lb.live_upstreams().await == 0).then_some(()) }).await;

    // Act
    let res = lb.get("/whoami").await;

    // Assert: the old behaviour, now as 503 with Retry-After.
    let doc = res.problem(503, "service_unavailable");
    assert_eq!(doc["detail"], "no healthy upstream is available");
    assert_eq!(res.headers["retry-after"], "1");
    assert_eq!(a.hits(), 0, "an upstream failing readiness gets nothing");
    assert_eq!(lb.metric("seatgate_lb_panic_mode").await, Some(0.0));
    lb.handle.shutdown().await;
}
