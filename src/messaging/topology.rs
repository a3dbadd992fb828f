//! Exchanges and queues, declared idempotently by the API, the workers and the tests.
//!
//! ```text
//! exchange seatgate (topic, durable)
//!   payment.*  -> payments (quorum)            charge and refund tasks
//!   booking.*  -> notifications (quorum)       booking events
//! payments.retry.<ms>  (TTL queues, dead-letter back to seatgate with key payment.retry)
//! payments.dead        (tasks that failed max attempts, or could not be decoded)
//! ```

use std::time::Duration;

use anyhow::Context;
use lapin::Channel;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};

/// The names of one deployment (suffixed by the namespace in tests).
#[derive(Clone, Debug)]
pub struct Names {
    pub exchange: String,
    pub payments: String,
    pub payments_dead: String,
    pub notifications: String,
    /// Retry queues, shortest delay first.
    pub retries: Vec<(Duration, String)>,
    /// Throw-away topology: classic queues deleted after this long unused, auto-delete exchange.
    pub expires: Option<Duration>,
}

/// Routing keys.
pub const CHARGE_KEY: &str = "payment.charge";
pub const REFUND_KEY: &str = "payment.refund";
pub const RETRY_KEY: &str = "payment.retry";

impl Names {
    /// Names for a namespace (empty in production) and the first retry delay.
    pub fn new(namespace: &str, retry_base: Duration, expires: Option<Duration>) -> Self {
        let name = |base: &str| if namespace.is_empty() { base.to_owned() } else { format!("{base}.{namespace}") };
        let retries = [1, 5, 25]
            .into_iter()
            .map(|factor| {
                let delay = retry_base * factor;
                (delay, name(&format!("payments.retry.{}ms", delay.as_millis())))
            })
            .collect();
        Self {
            exchange: name("seatgate"),
            payments: name("payments"),
            payments_dead: name("payments.dead"),
            notifications: name("notifications"),
            retries,
            expires,
        }
    }

    /// The retry queue for a task that has failed `attempt` times.
    pub fn retry_queue(&self, attempt: u32) -> &(Duration, String) {
        let i = (attempt.saturating_sub(1) as usize).min(self.retries.len() - 1);
        &self.retries[i]
    }
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in pairs {
        table.insert(ShortString::from(*k), v.clone());
    }
    table
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Declares everything; safe to call any number of times from any process.
pub async fn declare(channel: &Channel, names: &Names) -> anyhow::Result<()> {
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    let mut quorum = match names.expires {
        None => args(&[("x-queue-type", text("quorum"))]),
        Some(_) => FieldTable::default(),
    };
    if let Some(expires) = names.expires {
        quorum.insert("x-expires".into(), AMQPValue::LongLongInt(expires.as_millis() as i64));
    }
    channel
        .exchange_declare(
            names.exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                auto_delete: names.expires.is_some(),
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .context("declare exchange")?;
    for (queue, key) in [(&names.payments, "payment.*"), (&names.notifications, "booking.*")] {
        channel.queue_declare(queue.as_str().into(), durable, quorum.clone()).await.context("declare queue")?;
        channel
            .queue_bind(
                queue.as_str().into(),
                names.exchange.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("bind queue")?;
    }
    channel.queue_declare(names.payments_dead.as_str().into(), durable, quorum.clone()).await.context("declare DLQ")?;
    for (delay, queue) in &names.retries {
        let mut retry_args = args(&[
            ("x-message-ttl", AMQPValue::LongLongInt(delay.as_millis() as i64)),
            ("x-dead-letter-exchange", text(&names.exchange)),
            ("x-dead-letter-routing-key", text(RETRY_KEY)),
        ]);
        if let Some(expires) = names.expires {
            retry_args.insert("x-expires".into(), AMQPValue::LongLongInt(expires.as_millis() as i64));
        }
        channel.queue_declare(queue.as_str().into(), durable, retry_args).await.context("declare retry queue")?;
    }
    Ok(())
}
