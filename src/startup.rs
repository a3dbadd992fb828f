//! Building and running the API server: connect, migrate, bootstrap the first admin, bind,
//! serve until the stop token is cancelled.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Config;
use crate::error::{self, json_config, path_config, query_config};
use crate::openapi::ApiDoc;
use crate::state::AppState;
use crate::telemetry::{self, RequestSpan};
use crate::{auth, catalog, checkout, holds, infra, live, onsale, ops, tickets};

/// A bound, not yet running, API server.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    /// Connects to every service, applies migrations, creates the configured admin, binds.
    pub async fn build(config: Config, stop: CancellationToken) -> anyhow::Result<Self> {
        let state = connect(config).await?;
        Self::with_state(state, stop)
    }

    /// Binds the listener for already built state (tests use port 0).
    pub fn with_state(state: AppState, stop: CancellationToken) -> anyhow::Result<Self> {
        let http = state.config.http.clone();
        // Install the recorder before the first request so nothing counted is lost.
        ops::metrics_handle();
        // Event streams never end by themselves: end them when the server stops.
        state.live.stop_with(stop.clone());
        let listener = TcpListener::bind(http.listen)?;
        let port = listener.local_addr()?.port();
        let data = web::Data::new(state.clone());
        let openapi = ApiDoc::openapi();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(ops::record_request))
                .wrap(from_fn(telemetry::echo_request_id))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(data.clone())
                .app_data(json_config(http.body_limit_bytes))
                .app_data(path_config())
                .app_data(query_config())
                .configure(routes)
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi.clone()))
                .route("/docs", web::get().to(docs_redirect))
                .default_service(web::to(no_route))
        })
        .workers(http.workers)
        .shutdown_signal(stop.cancelled_owned())
        .shutdown_timeout(http.shutdown_timeout.as_secs())
        .listen(listener)?
        .run();
        Ok(Self { port, server, state })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests reach the pools through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the stop token is cancelled and in-flight requests are done.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

async fn no_route(req: actix_web::HttpRequest) -> Result<HttpResponse, error::ApiError> {
    Err(error::no_route(&crate::openapi::ROUTES, &req))
}

async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header(("Location", "/docs/")).finish()
}

/// Every route of the API, for the server and for in-process tests.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // The router tries resources in this order, one regex per dynamic path until one matches:
    // the on-sale hot path (holds) goes first, ahead of the catalog's dozen dynamic paths, which
    // cost it about 5 % of its CPU when it came third (docs/SCALING.md). No two patterns of the
    // API overlap, so the order changes nothing else.
    holds::routes::routes(cfg);
    auth::routes::routes(cfg);
    catalog::routes::routes(cfg);
    live::routes::routes(cfg);
    onsale::routes::routes(cfg);
    checkout::routes::routes(cfg);
    crate::ledger::routes::routes(cfg);
    crate::scheduling::routes::routes(cfg);
    tickets::routes::routes(cfg);
    ops::routes(cfg);
    crate::web::routes(cfg);
}

/// Connects the pools, migrates, and makes sure the configured admin exists.
pub async fn connect(config: Config) -> anyhow::Result<AppState> {
    if config.auth.jwt_secret_generated {
        tracing::warn!(
            "SEATGATE_JWT_SECRET is not set: using a random secret; tokens die with this process \
             and other instances will not accept them"
        );
    }
    if config.tickets.signing_key_generated {
        tracing::warn!(
            "SEATGATE_TICKET_SIGNING_KEY is not set: using a random key; tickets signed now fail \
             verification after a restart and on other instances"
        );
    }
    let db = infra::db::connect(&config.database).await?;
    infra::db::migrate(&db).await?;
    let redis = infra::redis::pool(&config.redis)?;
    let state = AppState::new(config, db, redis);
    if state.config.demo {
        tracing::warn!("SEATGATE_DEMO is on: placeholder secrets are accepted; never run a real sale like this");
    }
    if let Some(admin) = &state.config.auth.admin {
        let promote = state.config.auth.admin_promote;
        let outcome = auth::service::bootstrap_admin(&state.db, &admin.email, admin.password.expose(), promote).await?;
        tracing::info!(?outcome, "admin account from SEATGATE_ADMIN_EMAIL checked");
    }
    Ok(state)
}

/// A token cancelled on SIGTERM or SIGINT, after `/health/ready` reported 503 for the grace
/// period so a load balancer stops routing here first.
pub fn shutdown_on_signal(state: Option<AppState>, grace: std::time::Duration) -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested, draining");
        if let Some(state) = state {
            state.start_draining();
        }
        tokio::time::sleep(grace).await;
        token.cancel();
    });
    stop
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
