//! One RabbitMQ connection per process, opened lazily and reopened after it drops.
//!
//! Callers ask for a channel each time they need one; a broker restart therefore costs the
//! requests made while it is down (they see an error, the API answers 503), never a process
//! restart.

use std::time::Duration;

use anyhow::Context;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::topology::{self, Names};
use crate::config::AmqpConfig;

/// How long to wait for the broker before giving up on one attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A shared, self-healing AMQP connection with one channel.
pub struct Amqp {
    config: AmqpConfig,
    names: Names,
    live: Mutex<Option<Live>>,
    /// The runtime the connection's I/O tasks run on: the process' main runtime, not the
    /// per-thread runtime of whichever actix worker first needed a channel (those stop before
    /// the process does, and would take the connection's I/O loop with them).
    runtime: Option<tokio::runtime::Handle>,
    /// Committed outbox messages waiting for their publish (`outbox::deliver`).
    courier: super::outbox::Courier,
}

struct Live {
    connection: Connection,
    channel: Channel,
}

impl std::fmt::Debug for Amqp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Amqp").field("namespace", &self.config.namespace).finish_non_exhaustive()
    }
}

impl Amqp {
    /// No connection is opened until first use.
    pub fn new(config: AmqpConfig, names: Names) -> Self {
        Self {
            config,
            names,
            live: Mutex::new(None),
            runtime: tokio::runtime::Handle::try_current().ok(),
            courier: super::outbox::Courier::default(),
        }
    }

    /// Exchange and queue names of this deployment.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The process' queue of committed outbox messages to publish.
    pub(crate) fn courier(&self) -> &super::outbox::Courier {
        &self.courier
    }

    /// Runs `task` on the process' main runtime (see `runtime`), or on the caller's.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        match &self.runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &AmqpConfig {
        &self.config
    }

    /// A connected channel in confirm mode with the topology declared, reconnecting first if
    /// the last one dropped. Publishers share it.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let mut live = self.live.lock().await;
        if let Some(l) = live.as_ref()
            && l.connection.status().connected()
            && l.channel.status().connected()
        {
            return Ok(l.channel.clone());
        }
        let connection = match live.take() {
            Some(l) if l.connection.status().connected() => l.connection,
            _ => self.connect().await?,
        };
        let channel = self.open_channel(&connection).await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.context("enable publisher confirms")?;
        *live = Some(Live { connection, channel: channel.clone() });
        Ok(channel)
    }

    /// A new channel on `connection` with the topology declared.
    pub async fn open_channel(&self, connection: &Connection) -> anyhow::Result<Channel> {
        let channel = connection.create_channel().await.context("cannot open an AMQP channel")?;
        topology::declare(&channel, &self.names).await?;
        Ok(channel)
    }

    /// A new connection (workers use one per consumer loop).
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let url = self.config.url.expose().to_owned();
        let connect = async move {
            let props = ConnectionProperties::default().with_connection_name("seatgate".into());
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&url, props))
                .await
                .context("timed out connecting to RabbitMQ")?
                .context("cannot connect to RabbitMQ (SEATGATE_AMQP_URL)")
        };
        match &self.runtime {
            Some(runtime) => runtime.spawn(connect).await.context("AMQP connect task failed")?,
            None => connect.await,
        }
    }

    /// True when a channel can be had now (connecting if needed).
    pub async fn is_ready(&self) -> bool {
        self.channel().await.is_ok()
    }

    /// Closes the connection, if any (shutdown).
    pub async fn close(&self) {
        if let Some(l) = self.live.lock().await.take() {
            let closing = l.connection.close(200, "shutting down".into());
            if tokio::time::timeout(Duration::from_secs(2), closing).await.is_err() {
                tracing::warn!("RabbitMQ did not confirm the connection close in time");
            }
        }
    }
}
