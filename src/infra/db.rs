//! The PostgreSQL pool. The database named in the URL is created when missing, and the
//! embedded migrations bring its schema up to date; tools that only read (the invariant checker)
//! use [`connect_existing`], which never creates anything.

use std::str::FromStr;

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::DatabaseConfig;

/// Connects, creating the database first if it does not exist.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let url = config.url.expose();
    let exists = Postgres::database_exists(url).await.context("cannot reach PostgreSQL (SEATGATE_DATABASE_URL)")?;
    if !exists {
        tracing::info!("database does not exist yet, creating it");
        if let Err(e) = Postgres::create_database(url).await {
            // Another instance may have created it in the meantime.
            if !Postgres::database_exists(url).await.unwrap_or(false) {
                return Err(e).context("cannot create the database");
            }
        }
    }
    let options = PgConnectOptions::from_str(url).context("invalid SEATGATE_DATABASE_URL")?;
    pool_options(config).connect_with(options).await.context("cannot connect to PostgreSQL")
}

/// Connects to a database that must already exist: a missing one is an error naming it, and
/// nothing is created (a checker asked about a database that is not there must not make one).
pub async fn connect_existing(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let url = config.url.expose();
    let options = PgConnectOptions::from_str(url).context("invalid SEATGATE_DATABASE_URL")?;
    let exists = Postgres::database_exists(url).await.context("cannot reach PostgreSQL (SEATGATE_DATABASE_URL)")?;
    if !exists {
        let name = options.get_database().unwrap_or("(default)");
        anyhow::bail!("database {name:?} does not exist (SEATGATE_DATABASE_URL); nothing to check");
    }
    pool_options(config).connect_with(options).await.context("cannot connect to PostgreSQL")
}

/// Pool settings shared by the server and the tests.
pub fn pool_options(config: &DatabaseConfig) -> PgPoolOptions {
    PgPoolOptions::new().max_connections(config.max_connections).acquire_timeout(config.acquire_timeout)
}

/// Applies every pending migration. Safe to run from several processes at once (sqlx takes an
/// advisory lock).
pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    crate::MIGRATOR.run(db).await.context("cannot apply database migrations")
}
