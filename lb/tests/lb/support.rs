//! Test fixtures: small real upstreams on port 0, an lb in front of them, a raw HTTP/1 client,
//! and polling with deadlines instead of sleeps.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, channel::Channel};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use seatgate_lb::{Config, Lb, LbHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long any poll waits before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a test upstream has seen, and the switches a test flips.
#[derive(Default)]
pub struct UpstreamState {
    /// Proxied requests (health probes excluded).
    pub hits: AtomicUsize,
    /// POST requests.
    pub posts: AtomicUsize,
    /// Requests parked in `/hold`.
    pub held: AtomicUsize,
    /// Health probes answered.
    pub probes: AtomicUsize,
    /// `/health/ready` answers 503 `{"status":"unavailable"}` (a shared dependency is down).
    pub unhealthy: AtomicBool,
    /// `/health/ready` answers 503 `{"status":"draining"}` (graceful shutdown); wins over
    /// `unhealthy`.
    pub draining: AtomicBool,
    /// Whether `/sse` has sent its second event.
    pub sse_second_sent: AtomicBool,
    release: watch::Sender<bool>,
}

impl UpstreamState {
    /// Lets every `/hold` and the second `/sse` event go.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

/// A hyper upstream that answers with its name.
///
/// - `GET /whoami` -> its name; `GET /health/ready` -> 200, or 503 when `unhealthy` or
///   `draining`, with the API's JSON body
/// - `/echo` -> JSON of the method and request headers it received, plus hop-by-hop response
///   headers the lb must strip
/// - `/hold` -> waits for [`UpstreamState::release`], then its name
/// - `/sse` -> `text/event-stream`: one event, waits for release, a second event, end
/// - `POST /upload` -> the body length it read
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub name: String,
    pub state: Arc<UpstreamState>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl TestUpstream {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a test upstream");
        Self::serve(listener, name, Arc::new(UpstreamState { release: watch::channel(false).0, ..Default::default() }))
    }

    /// Starts again on the same address with the same counters (a recovered instance).
    pub async fn restart(&self) -> Self {
        let listener = TcpListener::bind(self.addr).await.expect("rebind the upstream's port");
        Self::serve(listener, &self.name, Arc::clone(&self.state))
    }

    fn serve(listener: TcpListener, name: &str, state: Arc<UpstreamState>) -> Self {
        let addr = listener.local_addr().expect("bound address");
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (name_s, st, stop_c, tasks_c) = (name.to_owned(), Arc::clone(&state), stop.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    () = stop_c.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let (name, state, stop) = (name_s.clone(), Arc::clone(&st), stop_c.clone());
                tasks_c.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (name, state) = (name.clone(), Arc::clone(&state));
                        async move { Ok::<_, Infallible>(respond(req, &name, &state).await) }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        // Killing the upstream drops every connection at once, like a crash.
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        Self { addr, name: name.to_owned(), state, stop, tasks }
    }

    /// Base URL for the lb configuration.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every open connection; returns once the port is closed.
    pub async fn kill(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn respond(req: Request<Incoming>, name: &str, state: &Arc<UpstreamState>) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    if path == "/health/ready" {
        state.probes.fetch_add(1, Ordering::SeqCst);
        let (status, body) = if state.draining.load(Ordering::SeqCst) {
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#)
        } else if state.unhealthy.load(Ordering::SeqCst) {
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"unavailable"}"#)
        } else {
            (StatusCode::OK, r#"{"status":"ready"}"#)
        };
        let mut res = text(status, body);
        res.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("value"));
        return res;
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    if req.method() == http::Method::POST {
        state.posts.fetch_add(1, Ordering::SeqCst);
    }
    match path.as_str() {
        "/echo" => {
            let headers: HashMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("<binary>").to_owned()))
                .collect();
            let body = serde_json::json!({ "method": req.method().as_str(), "headers": headers, "instance": name });
            let mut res = text(StatusCode::OK, &body.to_string());
            let h = res.headers_mut();
            h.insert("x-upstream-hop", "secret".parse().expect("value"));
            h.insert(header::CONNECTION, "x-upstream-hop".parse().expect("value"));
            h.insert("keep-alive", "timeout=30".parse().expect("value"));
            h.insert("proxy-authenticate", "Basic".parse().expect("value"));
            res
        }
        "/hold" => {
            state.held.fetch_add(1, Ordering::SeqCst);
            let mut rx = state.release.subscribe();
            let _ = rx.wait_for(|released| *released).await;
            text(StatusCode::OK, name)
        }
        "/sse" => {
            let (mut tx, body) = Channel::<Bytes, Infallible>::new(1);
            let mut rx = state.release.subscribe();
            let state = Arc::clone(state);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"data: one\n\n")).await;
                let _ = rx.wait_for(|released| *released).await;
                state.sse_second_sent.store(true, Ordering::SeqCst);
                let _ = tx.send_data(Bytes::from_static(b"data: two\n\n")).await;
            });
            let mut res = Response::new(body.boxed());
            res.headers_mut().insert(header::CONTENT_TYPE, "text/event-stream".parse().expect("value"));
            res.headers_mut().insert(header::CACHE_CONTROL, "no-cache".parse().expect("value"));
            res
        }
        "/upload" => {
            let len = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            text(StatusCode::OK, &len.to_string())
        }
        _ => text(StatusCode::OK, name),
    }
}

fn text(status: StatusCode, body: &str) -> Response<TestBody> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_owned())).boxed());
    *res.status_mut() = status;
    res
}

/// A raw TCP upstream that reads a request, counts it, and closes the connection without a
/// byte of response (a crash after receipt). Health probes get a proper 200.
pub struct Dropper {
    pub addr: SocketAddr,
    pub received: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Dropper {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the dropper");
        let addr = listener.local_addr().expect("bound address");
        let received = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (count, stop_c) = (Arc::clone(&received), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = tokio::select! {
                    () = stop_c.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read the head and whatever body came with it.
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    if buf.starts_with(b"GET /health") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                });
            }
        });
        Self { addr, received, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for Dropper {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An address where nothing listens: connecting is refused.
pub async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}")
}

/// A running lb for one test.
pub struct TestLb {
    pub handle: LbHandle,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl TestLb {
    /// Starts an lb on port 0 in front of `upstreams`, with fast health checks; `settings` adds
    /// or overrides `SEATGATE_LB_*` values.
    pub async fn start(upstreams: &[String], settings: &[(&str, &str)]) -> Self {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("SEATGATE_LB_LISTEN".into(), "127.0.0.1:0".into()),
            ("SEATGATE_LB_ADMIN_LISTEN".into(), "127.0.0.1:0".into()),
            ("SEATGATE_LB_UPSTREAMS".into(), upstreams.join(",")),
            ("SEATGATE_LB_HEALTH_INTERVAL_MS".into(), "50".into()),
            ("SEATGATE_LB_EJECT_COOLDOWN_MS".into(), "200".into()),
            ("SEATGATE_LB_SHUTDOWN_TIMEOUT_MS".into(), "2000".into()),
        ]);
        for (k, v) in settings {
            vars.insert(format!("SEATGATE_LB_{k}"), (*v).to_owned());
        }
        let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("a valid test configuration");
        let handle = Lb::bind(config).await.expect("the lb starts");
        let addr = handle.local_addr();
        let admin = handle.admin_addr().expect("admin listener on");
        Self { handle, addr, admin }
    }

    /// `GET path` through the lb.
    pub async fn get(&self, path: &str) -> TestResponse {
        request(self.addr, Request::get(path).body(Full::new(Bytes::new())).expect("request")).await
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        let res = request(self.admin, Request::get("/metrics").body(Full::new(Bytes::new())).expect("request")).await;
        assert_eq!(res.status, StatusCode::OK);
        res.body
    }

    /// The value of one metric series line, e.g. `seatgate_lb_retries_total`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Number of upstreams in the rotation, per the admin `/health`.
    pub async fn live_upstreams(&self) -> u64 {
        let res = request(self.admin, Request::get("/health").body(Full::new(Bytes::new())).expect("request")).await;
        let v: serde_json::Value = serde_json::from_str(&res.body).expect("health JSON");
        v["live_upstreams"].as_u64().expect("live_upstreams")
    }
}

/// A fully read response.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestResponse {
    /// Asserts a problem+json response with `status` and `code`, and returns the document.
    pub fn problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.headers.get(header::CONTENT_TYPE).expect("content type"), "application/problem+json");
        let doc: serde_json::Value = serde_json::from_str(&self.body).expect("problem JSON");
        assert_eq!(doc["type"], "about:blank");
        assert_eq!(doc["status"], status);
        assert_eq!(doc["code"], code, "{doc}");
        assert!(doc["title"].is_string() && doc["detail"].is_string(), "{doc}");
        doc
    }
}

/// Sends one request on a fresh connection and returns the head with the body still streaming.
pub async fn send<B>(addr: SocketAddr, mut req: Request<B>) -> hyper::Result<Response<Incoming>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect to the lb");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    if !req.headers().contains_key(header::HOST) {
        req.headers_mut().insert(header::HOST, "seatgate.test".parse().expect("host"));
    }
    sender.send_request(req).await
}

/// Sends one request and reads the whole response.
pub async fn request<B>(addr: SocketAddr, req: Request<B>) -> TestResponse
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let res = send(addr, req).await.expect("a response from the lb");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("the whole body").to_bytes();
    TestResponse { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}
