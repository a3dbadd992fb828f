//! What is retried, and what is never replayed.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::{Dropper, TestLb, TestUpstream, dead_url, request};

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/orders").header("content-type", "application/json").body(Full::new(Bytes::from(body))).expect("req")
}

#[tokio::test]
async fn a_post_is_not_replayed_after_the_upstream_received_it() {
    // Arrange: round-robin over a crashing upstream and a good one; health checks off.
    let dropper = Dropper::start().await;
    let good = TestUpstream::start("good").await;
    let lb = TestLb::start(&[dropper.url(), good.url()], &[("HEALTH_INTERVAL_MS", "0")]).await;

    // Act: one POST lands on each.
    let first = request(lb.addr, post(r#"{"seat":"A1"}"#)).await;
    let second = request(lb.addr, post(r#"{"seat":"A2"}"#)).await;

    // Assert
    let mut statuses = [first.status.as_u16(), second.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 502]);
    let failed = if first.status == 502 { &first } else { &second };
    failed.problem(502, "bad_gateway");
    assert_eq!(dropper.received(), 1, "the crashing upstream saw the POST exactly once");
    assert_eq!(good.state.posts.load(std::sync::atomic::Ordering::SeqCst), 1, "and it was not replayed elsewhere");
    assert_eq!(lb.metric("seatgate_lb_retries_total").await, Some(0.0));
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_get_to_a_refused_upstream_is_retried_on_a_live_one() {
    // Arrange: the first upstream refuses connections; no health checks, no ejection.
    let good = TestUpstream::start("good").await;
    let lb = TestLb::start(&[dead_url().await, good.url()], &[("HEALTH_INTERVAL_MS", "0"), ("FAIL_THRESHOLD", "1000")])
        .await;

    // Act
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(lb.get("/whoami").await.status.as_u16());
    }

    // Assert
    assert_eq!(statuses, [200; 6]);
    assert_eq!(good.hits(), 6);
    assert_eq!(lb.metric("seatgate_lb_retries_total").await, Some(3.0), "every other request hit the dead one first");
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_post_that_could_not_be_sent_goes_to_another_upstream() {
    // Arrange
    let good = TestUpstream::start("good").await;
    let lb = TestLb::start(&[dead_url().await, good.url()], &[("HEALTH_INTERVAL_MS", "0"), ("FAIL_THRESHOLD", "1000")])
        .await;

    // Act
    let a = request(lb.addr, post("{}")).await;
    let b = request(lb.addr, post("{}")).await;

    // Assert: nothing reached the dead upstream, so sending elsewhere is safe for any method.
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    assert_eq!(good.state.posts.load(std::sync::atomic::Ordering::SeqCst), 2);
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_bodyless_get_is_retried_when_the_upstream_drops_it_before_answering() {
    // Arrange
    let dropper = Dropper::start().await;
    let good = TestUpstream::start("good").await;
    let lb = TestLb::start(&[dropper.url(), good.url()], &[("HEALTH_INTERVAL_MS", "0")]).await;

    // Act
    let res = lb.get("/whoami").await;

    // Assert: idempotent and bodyless, so the lb may send it again.
    assert_eq!(res.status, 200);
    assert_eq!(res.body, "good");
    assert_eq!(dropper.received(), 1);
    assert_eq!(lb.metric("seatgate_lb_retries_total").await, Some(1.0));
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn every_upstream_refusing_gives_502_after_trying_each_once() {
    let lb = TestLb::start(&[dead_url().await, dead_url().await], &[("HEALTH_INTERVAL_MS", "0")]).await;

    let res = lb.get("/whoami").await;

    let doc = res.problem(502, "bad_gateway");
    assert_eq!(doc["detail"], "no upstream could be reached");
    assert_eq!(lb.metric("seatgate_lb_retries_total").await, Some(1.0));
    lb.handle.shutdown().await;
}
