//! `TestApp`: a seatgate API on a random port against the test's own database, Redis prefix
//! and AMQP namespace, plus a client with helpers that read like the tests they serve.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use seatgate::config::{AdminSeed, Config, Secret};
use seatgate::startup::Application;
use seatgate::state::AppState;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The JWT secret of every test app (tests forge tokens with it).
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const ADMIN_EMAIL: &str = "admin@seatgate.test";
pub const ADMIN_PASSWORD: &str = "admin-password";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub admin_token: String,
    stop: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The seed nodes of the Redis Cluster the tests run against, if any: set
/// `SEATGATE_TEST_REDIS_CLUSTER_NODES` (as `scripts/test.sh` does after `scripts/redis-cluster.sh
/// up`) to run every test in cluster mode; unset, tests use the one Redis on 6379.
pub fn test_cluster_nodes() -> Vec<Secret> {
    std::env::var("SEATGATE_TEST_REDIS_CLUSTER_NODES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(Secret::new)
        .collect()
}

/// A config for one test: port 0, its own Redis prefix and AMQP namespace; in cluster mode when
/// [`test_cluster_nodes`] names a cluster.
pub fn test_config() -> Config {
    let mut config = Config::from_source(&[("SEATGATE_JWT_SECRET", JWT_SECRET)]).expect("test config is valid");
    config.http.listen = "127.0.0.1:0".parse().expect("valid address");
    config.http.workers = 2;
    config.http.shutdown_timeout = Duration::from_secs(1);
    let id = Uuid::new_v4().simple().to_string();
    config.redis.key_prefix = format!("t{id}");
    config.redis.cluster_nodes = test_cluster_nodes();
    config.amqp.namespace = format!("t{id}");
    config.amqp.queue_expires = Some(Duration::from_secs(300));
    config.auth.account_cache = Duration::ZERO;
    config.workers.payment_latency = Duration::from_millis(5);
    config.workers.payment_retry_base = Duration::from_millis(100);
    config.workers.payment_max_attempts = 3;
    config.auth.admin = Some(AdminSeed { email: ADMIN_EMAIL.into(), password: Secret::new(ADMIN_PASSWORD) });
    config
}

impl TestApp {
    pub async fn spawn(db: PgPool) -> Self {
        Self::spawn_with(db, test_config()).await
    }

    pub async fn spawn_with(db: PgPool, config: Config) -> Self {
        seatgate::telemetry::init_for_tests();
        let redis = seatgate::infra::redis::pool(&config.redis).expect("redis pool");
        let state = AppState::new(config, db, redis);
        let admin = state.config.auth.admin.clone().expect("test config has an admin");
        seatgate::auth::service::ensure_admin(&state.db, &admin.email, admin.password.expose())
            .await
            .expect("admin created");
        let stop = CancellationToken::new();
        let app = Application::with_state(state.clone(), stop.clone()).expect("app binds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut app = Self { address, client, state, admin_token: String::new(), stop };
        let login = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        app.admin_token = login.json::<Value>().await["access_token"].as_str().expect("admin token").to_owned();
        app
    }

    /// Cancels the app's root token, as SIGTERM does after the grace period.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Runs the payment, notification and sweeper loops in this process until the app drops.
    pub fn start_workers(&self) {
        let stop = self.stop.child_token();
        tokio::spawn(seatgate::worker::run(seatgate::worker::Role::All, self.state.clone(), stop));
    }

    /// Messages ready in one of this test's queues.
    pub async fn queue_len(&self, queue: &str) -> u32 {
        let channel = self.state.amqp.channel().await.expect("amqp channel");
        let options = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        channel
            .queue_declare(queue.into(), options, lapin::types::FieldTable::default())
            .await
            .expect("queue exists")
            .message_count()
    }

    /// Drops every message of one of this test's queues (a task "lost" by the broker).
    pub async fn purge(&self, queue: &str) {
        let channel = self.state.amqp.channel().await.expect("amqp channel");
        channel.queue_purge(queue.into(), lapin::options::QueuePurgeOptions::default()).await.expect("purged");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Any request; `token` becomes a bearer header, `body` JSON.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Res {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        Res(req.send().await.expect("request sent"))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Res {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Res {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Res {
        self.call(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Res {
        self.call(Method::DELETE, path, token, None).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Res {
        self.post(path, Some(&self.admin_token.clone()), body).await
    }

    pub async fn register(&self, email: &str, password: &str, name: &str) -> Res {
        self.post("/api/v1/auth/register", None, &json!({"email": email, "password": password, "name": name})).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Res {
        self.post("/api/v1/auth/login", None, &json!({"email": email, "password": password})).await
    }

    /// A new registered user.
    pub async fn new_user(&self) -> TestUser {
        let email = format!("u{}@example.com", Uuid::new_v4().simple());
        let body = self.register(&email, "user-password", "Test User").await.json_status(201).await;
        TestUser {
            id: body["user"]["id"].as_str().expect("user id").parse().expect("uuid"),
            token: body["access_token"].as_str().expect("token").to_owned(),
        }
    }

    pub async fn create_movie(&self, title: &str, duration: i32) -> Value {
        self.admin_post("/api/v1/movies", &json!({"title": title, "duration_minutes": duration, "genres": ["drama"]}))
            .await
            .json_status(201)
            .await
    }

    pub async fn create_theater(&self, name: &str, city: &str) -> Value {
        self.admin_post("/api/v1/theaters", &json!({"name": name, "city": city, "address": "Main St 1"}))
            .await
            .json_status(201)
            .await
    }

    /// A screen of the given rows, e.g. `[("A", 4, "standard")]`.
    pub async fn create_screen(&self, theater_id: &str, rows: &[(&str, u32, &str)]) -> Value {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(label, seats, category)| json!({"label": label, "seats": seats, "category": category}))
            .collect();
        self.admin_post(
            &format!("/api/v1/theaters/{theater_id}/screens"),
            &json!({"name": format!("Screen {}", Uuid::new_v4().simple()), "rows": rows}),
        )
        .await
        .json_status(201)
        .await
    }

    /// Movie, theater, screen and a showtime starting in `hours_ahead` hours.
    pub async fn seed_showtime(&self, rows: &[(&str, u32, &str)], hours_ahead: i64) -> Value {
        let movie = self.create_movie("Seeded Movie", 120).await;
        let theater = self.create_theater("Seeded Theater", "Berlin").await;
        let screen = self.create_screen(theater["id"].as_str().expect("id"), rows).await;
        let mut prices = serde_json::Map::new();
        for (_, _, category) in rows {
            prices.insert((*category).to_owned(), json!(1000));
        }
        self.admin_post(
            "/api/v1/showtimes",
            &json!({
                "movie_id": movie["id"],
                "screen_id": screen["id"],
                "starts_at": in_hours(hours_ahead),
                "prices": prices,
                "currency": "EUR",
            }),
        )
        .await
        .json_status(201)
        .await
    }
}

/// RFC 3339 time `hours` from now, on a whole minute.
pub fn in_hours(hours: i64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::hours(hours);
    t.format("%Y-%m-%dT%H:%M:00Z").to_string()
}

pub struct TestUser {
    pub id: Uuid,
    pub token: String,
}

/// A response with assertions.
pub struct Res(pub reqwest::Response);

/// A problem+json body.
#[derive(Debug, Deserialize)]
pub struct Problem {
    pub status: u16,
    pub code: String,
    pub detail: String,
    pub title: String,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl Res {
    pub fn status(&self) -> StatusCode {
        self.0.status()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.0.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    pub fn assert_status(&self, expected: u16) {
        assert_eq!(self.status().as_u16(), expected, "unexpected status");
    }

    pub async fn json<T: serde::de::DeserializeOwned>(self) -> T {
        self.0.json().await.expect("JSON body")
    }

    /// Asserts the status and returns the JSON body.
    pub async fn json_status(self, expected: u16) -> Value {
        let status = self.status().as_u16();
        let body = self.0.text().await.expect("body");
        assert_eq!(status, expected, "unexpected status, body: {body}");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// Asserts an `application/problem+json` answer with this status.
    pub async fn problem(self, expected: u16) -> Problem {
        let status = self.status().as_u16();
        let content_type = self.header("content-type").unwrap_or_default();
        let body = self.0.text().await.expect("body");
        assert_eq!(status, expected, "unexpected status, body: {body}");
        assert_eq!(content_type, "application/problem+json", "body: {body}");
        let problem: Problem = serde_json::from_str(&body).expect("problem body");
        assert_eq!(problem.status, expected);
        assert!(!problem.title.is_empty() && !problem.detail.is_empty(), "body: {body}");
        assert!(problem.errors.iter().all(|e| !e.message.is_empty()), "body: {body}");
        problem
    }
}

/// A confirmed booking, straight in PostgreSQL (bookings normally come from the payment
/// worker), of one seat or, with `None`, of no particular seat.
pub async fn book_seat(db: &PgPool, user_id: Uuid, showtime: &str, seat: Option<&str>) {
    let showtime: Uuid = showtime.parse().expect("uuid");
    let (reservation, booking) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query(
        r#"insert into reservations (id, user_id, showtime_id, hold_id, status, amount_minor, currency, deadline)
           values ($1, $2, $3, $4, 'confirmed', 1000, 'EUR', now())"#,
    )
    .bind(reservation)
    .bind(user_id)
    .bind(showtime)
    .bind(Uuid::now_v7())
    .execute(db)
    .await
    .expect("reservation");
    sqlx::query(
        r#"insert into bookings (id, reservation_id, user_id, showtime_id, ticket_code, amount_minor, currency)
           values ($1, $2, $3, $4, $5, 1000, 'EUR')"#,
    )
    .bind(booking)
    .bind(reservation)
    .bind(user_id)
    .bind(showtime)
    .bind(Uuid::new_v4().simple().to_string())
    .execute(db)
    .await
    .expect("booking");
    if let Some(seat) = seat {
        sqlx::query("insert into booked_seats (showtime_id, seat_id, booking_id) values ($1, $2, $3)")
            .bind(showtime)
            .bind(seat.parse::<Uuid>().expect("uuid"))
            .bind(booking)
            .execute(db)
            .await
            .expect("booked seat");
    }
}

/// A showtime of one row `A` of `standard` seats, with its seat ids in order.
pub struct Show {
    pub id: String,
    pub seats: Vec<String>,
}

/// A showtime tomorrow on a new screen of `seats` seats in row `A`.
pub async fn show(app: &TestApp, seats: u32) -> Show {
    let showtime = app.seed_showtime(&[("A", seats, "standard")], 24).await;
    let screen = app.get(&format!("/api/v1/screens/{}", showtime["screen_id"].as_str().expect("id")), None).await;
    let screen = screen.json_status(200).await;
    let seats =
        screen["seats"].as_array().expect("seats").iter().map(|s| s["id"].as_str().unwrap_or("").to_owned()).collect();
    Show { id: showtime["id"].as_str().expect("id").to_owned(), seats }
}

/// `user` holds the seats at positions `seats` of `show`; the hold id.
pub async fn hold(app: &TestApp, user: &TestUser, show: &Show, seats: &[usize]) -> String {
    let ids: Vec<&String> = seats.iter().map(|i| &show.seats[*i]).collect();
    let body = app
        .post(&format!("/api/v1/showtimes/{}/holds", show.id), Some(&user.token), &json!({ "seat_ids": ids }))
        .await
        .json_status(201)
        .await;
    body["hold_id"].as_str().expect("hold id").to_owned()
}

/// A TCP proxy to the shared Redis whose connections can all be cut at once, like a Redis
/// restart, and whose replies can be held back (the requests still reach Redis), like a Redis
/// too busy to answer within the client's timeout.
pub struct RedisProxy {
    pub port: u16,
    generation: tokio::sync::watch::Sender<u64>,
    stalled: tokio::sync::watch::Sender<bool>,
}

impl RedisProxy {
    pub async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let (stalled, _) = tokio::sync::watch::channel(false);
        let (cuts, stalls) = (generation.clone(), stalled.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut cut = cuts.subscribe();
                let mut stall = stalls.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:6379").await else { return };
                    let ((mut client_rx, mut client_tx), (mut server_rx, mut server_tx)) =
                        (client.into_split(), server.into_split());
                    let up = tokio::io::copy(&mut client_rx, &mut server_tx);
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
                            while *stall.borrow_and_update() {
                                if stall.changed().await.is_err() {
                                    return;
                                }
                            }
                            if client_tx.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    // Either side closing, or a cut, drops both connections.
                    tokio::select! {
                        _ = up => {}
                        () = down => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, generation, stalled }
    }

    /// The test configuration with a single Redis behind this proxy (also in a cluster run:
    /// what is cut or stalled is one connection) and `timeout` as the reply timeout.
    pub fn config(&self, timeout: Duration) -> Config {
        let mut config = test_config();
        config.redis.cluster_nodes.clear();
        config.redis.url = Secret::new(format!("redis://127.0.0.1:{}", self.port));
        config.redis.timeout = timeout;
        config
    }

    /// Closes every connection made through the proxy so far.
    pub fn cut_all(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Holds Redis' replies back (`true`) or lets them, and those held, through.
    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }
}
