//! Active health checks and passive ejection.

use std::sync::atomic::Ordering;

use crate::support::{TestLb, TestUpstream, dead_url, eventually};

#[tokio::test]
async fn a_killed_upstream_is_ejected_and_requests_keep_succeeding() {
    // Arrange
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let lb = TestLb::start(&[a.url(), b.url()], &[]).await;
    for _ in 0..4 {
        assert_eq!(lb.get("/whoami").await.status, 200);
    }

    // Act
    a.kill().await;

    // Assert: no request fails, even before the health check notices.
    for i in 0..20 {
        let res = lb.get("/whoami").await;
        assert_eq!(res.status, 200, "request {i}: {res:?}");
        assert_eq!(res.body, "b");
    }
    eventually("the dead upstream leaves the rotation", || async { (lb.live_upstreams().await == 1).then_some(()) })
        .await;
    let series = format!("seatgate_lb_upstream_healthy{{upstream=\"{}\"}}", a.addr);
    assert_eq!(lb.metric(&series).await, Some(0.0));
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_recovered_upstream_returns_to_the_rotation() {
    // Arrange: a is dead and out of the rotation.
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let lb = TestLb::start(&[a.url(), b.url()], &[]).await;
    a.kill().await;
    eventually("a leaves the rotation", || async { (lb.live_upstreams().await == 1).then_some(()) }).await;

    // Act
    let a_again = a.restart().await;

    // Assert
    eventually("a serves requests again", || async { (lb.get("/whoami").await.body == "a").then_some(()) }).await;
    assert_eq!(lb.live_upstreams().await, 2);
    drop(a_again);
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn an_upstream_failing_its_health_check_leaves_the_rotation_until_it_passes() {
    // Arrange
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let lb = TestLb::start(&[a.url(), b.url()], &[]).await;

    // Act
    a.state.unhealthy.store(true, Ordering::SeqCst);
    eventually("a is taken out", || async { (lb.live_upstreams().await == 1).then_some(()) }).await;

    // Assert
    let before = a.hits();
    for _ in 0..10 {
        assert_eq!(lb.get("/whoami").await.body, "b");
    }
    assert_eq!(a.hits(), before, "an unhealthy upstream gets no traffic");
    a.state.unhealthy.store(false, Ordering::SeqCst);
    eventually("a is back", || async { (lb.live_upstreams().await == 2).then_some(()) }).await;
    assert!(a.state.probes.load(Ordering::SeqCst) >= 2);
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn with_every_upstream_down_the_lb_answers_503_problem_json_with_retry_after() {
    // Arrange: one upstream killed, one where nothing ever listened.
    let a = TestUpstream::start("a").await;
    let lb = TestLb::start(&[a.url(), dead_url().await], &[]).await;
    a.kill().await;
    eventually("both leave the rotation", || async { (lb.live_upstreams().await == 0).then_some(()) }).await;

    // Act
    let res = lb.get("/whoami").await;

    // Assert: nothing answers, so there is nothing for panic routing to fall back to.
    let doc = res.problem(503, "service_unavailable");
    assert_eq!(doc["title"], "Service Unavailable");
    assert_eq!(doc["detail"], "no upstream is healthy or reachable");
    assert_eq!(res.headers["retry-after"], "1");
    assert_eq!(lb.metric("seatgate_lb_panic_mode").await, Some(0.0));
    assert_eq!(lb.metric("seatgate_lb_errors_total{code=\"service_unavailable\"}").await, Some(1.0));
    lb.handle.shutdown().await;
}
