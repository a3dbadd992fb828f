//! Round-robin and least-connections.

use std::sync::atomic::Ordering;

use crate::support::{TestLb, TestUpstream, eventually};

#[tokio::test]
async fn round_robin_spreads_requests_evenly() {
    // Arrange
    let ups = [TestUpstream::start("a").await, TestUpstream::start("b").await, TestUpstream::start("c").await];
    let lb = TestLb::start(&ups.iter().map(TestUpstream::url).collect::<Vec<_>>(), &[]).await;

    // Act
    for _ in 0..30 {
        let res = lb.get("/whoami").await;
        assert_eq!(res.status, 200);
    }

    // Assert
    let hits: Vec<usize> = ups.iter().map(TestUpstream::hits).collect();
    assert_eq!(hits, [10, 10, 10]);
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn least_connections_sends_new_requests_to_the_idle_upstream() {
    // Arrange: one request parked on one upstream.
    let ups = [TestUpstream::start("a").await, TestUpstream::start("b").await];
    let lb = TestLb::start(&ups.iter().map(TestUpstream::url).collect::<Vec<_>>(), &[("STRATEGY", "least_conn")]).await;
    let addr = lb.addr;
    let slow = tokio::spawn(async move {
        crate::support::request(addr, http::Request::get("/hold").body(http_body_util::Full::default()).expect("req"))
            .await
    });
    let busy = eventually("the slow request reaches an upstream", || async {
        ups.iter().position(|u| u.state.held.load(Ordering::SeqCst) == 1)
    })
    .await;
    let idle = 1 - busy;

    // Act
    let mut served_by = Vec::new();
    for _ in 0..6 {
        served_by.push(lb.get("/whoami").await.body);
    }

    // Assert
    assert!(served_by.iter().all(|name| *name == ups[idle].name), "{served_by:?}");
    ups[busy].state.release();
    let slow = slow.await.expect("slow request task");
    assert_eq!(slow.status, 200);
    assert_eq!(slow.body, ups[busy].name);
    lb.handle.shutdown().await;
}

#[tokio::test]
async fn worker_threads_share_one_port_and_one_rotation() {
    // Arrange: the binary's mode, one runtime and one SO_REUSEPORT listener per worker thread.
    let ups = [TestUpstream::start("a").await, TestUpstream::start("b").await];
    let lb = TestLb::start(&ups.iter().map(TestUpstream::url).collect::<Vec<_>>(), &[("WORKER_THREADS", "2")]).await;

    // Act: each request on its own connection, so both listeners get some.
    for _ in 0..20 {
        assert_eq!(lb.get("/whoami").await.status, 200);
    }

    // Assert
    assert_eq!(ups.iter().map(TestUpstream::hits).collect::<Vec<_>>(), [10, 10]);
    assert_eq!(lb.handle.shutdown().await, seatgate_lb::Drain::Complete);
}
