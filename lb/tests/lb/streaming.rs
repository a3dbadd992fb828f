//! Bodies stream both ways; server-sent events are not buffered; the request timeout does not
//! cut a long stream.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, channel::Channel};

use crate::support::{DEADLINE, TestLb, TestUpstream, request, send};

#[tokio::test]
async fn server_sent_events_reach_the_client_before_the_stream_ends() {
    // Arrange: a request timeout far shorter than the stream.
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[("REQUEST_TIMEOUT_MS", "150")]).await;

    // Act
    let res = send(lb.addr, Request::get("/sse").body(Full::<Bytes>::default()).expect("req")).await.expect("response");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let first = tokio::time::timeout(DEADLINE, body.frame()).await.expect("first event in time");
    let first = first.expect("a frame").expect("no error").into_data().expect("data");

    // Assert: the first event arrived while the upstream was still holding the second.
    assert_eq!(&first[..], b"data: one\n\n");
    assert!(!up.state.sse_second_sent.load(Ordering::SeqCst));
    // Deliberately outlive the request timeout: it bounds the wait for headers, not the stream.
    tokio::time::sleep(Duration::from_millis(400)).await;
    up.state.release();
    let rest = tokio::time::timeout(DEADLINE, body.collect()).await.expect("rest in time").expect("clean end");
    assert_eq!(&rest.to_bytes()[..], b"data: two\n\n");
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_request_body_streams_to_the_upstream() {
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[]).await;
    let (mut tx, body) = Channel::<Bytes, std::convert::Infallible>::new(1);
    tokio::spawn(async move {
        for _ in 0..4 {
            let _ = tx.send_data(Bytes::from(vec![b'x'; 1000])).await;
        }
    });

    let res = request(lb.addr, Request::post("/upload").body(body).expect("req")).await;

    assert_eq!(res.status, 200);
    assert_eq!(res.body, "4000");
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_without_reaching_the_upstream() {
    // Arrange
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[("MAX_BODY_BYTES", "64")]).await;

    // Act
    let res =
        request(lb.addr, Request::post("/upload").body(Full::new(Bytes::from(vec![b'x'; 100]))).expect("req")).await;

    // Assert
    res.problem(413, "payload_too_large");
    assert_eq!(up.hits(), 0);
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_gets_413() {
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[("MAX_BODY_BYTES", "64")]).await;
    let (mut tx, body) = Channel::<Bytes, std::convert::Infallible>::new(1);
    tokio::spawn(async move {
        for _ in 0..3 {
            let _ = tx.send_data(Bytes::from(vec![b'x'; 40])).await;
        }
    });

    let res = request(lb.addr, Request::post("/upload").body(body).expect("req")).await;

    res.problem(413, "payload_too_large");
    lb.handle.shutdown().await;
}
