//! Forwarding headers, request ids and hop-by-hop stripping.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::{TestLb, TestUpstream, request};

fn echo(headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get("/echo");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::default()).expect("req")
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_stripped_both_ways() {
    // Arrange
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[]).await;

    // Act: a client that forges its origin and sends hop-by-hop headers.
    let res = request(
        lb.addr,
        echo(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "6.6.6.6"),
            ("connection", "keep-alive, x-client-hop"),
            ("x-client-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ]),
    )
    .await;

    // Assert: what the upstream saw
    assert_eq!(res.status, 200);
    let seen: serde_json::Value = serde_json::from_str(&res.body).expect("echo JSON");
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "the client's own claim is not trusted");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(h.get("x-real-ip").is_none());
    for hop in ["x-client-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(h.get(hop).is_none(), "{hop} reached the upstream: {h}");
    }
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["host"], "seatgate.test", "the client's Host is kept");
    let id = h["x-request-id"].as_str().expect("a request id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    // ...and what the client got back
    assert_eq!(res.headers["x-request-id"], id);
    for hop in ["x-upstream-hop", "keep-alive", "proxy-authenticate"] {
        assert!(!res.headers.contains_key(hop), "{hop} reached the client: {:?}", res.headers);
    }
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn a_sane_request_id_is_kept_and_a_malformed_one_replaced() {
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[]).await;

    let kept = request(lb.addr, echo(&[("x-request-id", "checkout-42.retry_1")])).await;
    let replaced = request(lb.addr, echo(&[("x-request-id", "<script>alert(1)</script>")])).await;

    let seen: serde_json::Value = serde_json::from_str(&kept.body).expect("echo JSON");
    assert_eq!(seen["headers"]["x-request-id"], "checkout-42.retry_1");
    assert_eq!(kept.headers["x-request-id"], "checkout-42.retry_1");
    let seen: serde_json::Value = serde_json::from_str(&replaced.body).expect("echo JSON");
    let id = seen["headers"]["x-request-id"].as_str().expect("id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_chain_is_extended() {
    let up = TestUpstream::start("a").await;
    let lb = TestLb::start(&[up.url()], &[("TRUSTED_PROXIES", "127.0.0.0/8")]).await;

    let res = request(lb.addr, echo(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")])).await;

    let seen: serde_json::Value = serde_json::from_str(&res.body).expect("echo JSON");
    assert_eq!(seen["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    lb.handle.shutdown().await;
}
