//! Graceful shutdown: stop accepting, drain in-flight requests, cut at the deadline.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use seatgate_lb::Drain;
use tokio::net::TcpStream;

use crate::support::{TestLb, TestUpstream, eventually, request};

#[tokio::test]
async fn shutdown_refuses_new_connections_and_lets_in_flight_requests_finish() {
    // Arrange: one request in flight.
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[]).await;
    let addr = lb.addr;
    let in_flight =
        tokio::spawn(
            async move { request(addr, Request::get("/hold").body(Full::<Bytes>::default()).expect("req")).await },
        );
    eventually("the request is in flight", || async { (up.state.held.load(Ordering::SeqCst) == 1).then_some(()) })
        .await;

    // Act
    let shutdown = tokio::spawn(lb.handle.shutdown());
    eventually("the listener is closed", || async { TcpStream::connect(addr).await.is_err().then_some(()) }).await;
    up.state.release();

    // Assert
    let res = in_flight.await.expect("task");
    assert_eq!(res.status, 200);
    assert_eq!(shutdown.await.expect("shutdown task"), Drain::Complete);
}

#[tokio::test]
async fn shutdown_cuts_requests_still_running_at_the_deadline() {
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[("SHUTDOWN_TIMEOUT_MS", "100")]).await;
    let addr = lb.addr;
    let in_flight = tokio::spawn(async move {
        crate::support::send(addr, Request::get("/hold").body(Full::<Bytes>::default()).expect("req")).await
    });
    eventually("the request is in flight", || async { (up.state.held.load(Ordering::SeqCst) == 1).then_some(()) })
        .await;

    assert_eq!(lb.handle.shutdown().await, Drain::Cut);
    assert!(in_flight.await.expect("task").is_err(), "the cut request fails instead of hanging");
}
