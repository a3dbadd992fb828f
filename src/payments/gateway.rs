//! The payment gateway, behind a trait. The simulated one (docs/DESIGN.md §6) answers by token:
//! `tok_ok` succeeds, `tok_declined` is declined, `tok_error` always fails transiently, and
//! `tok_flaky_N` fails transiently N times and then succeeds. It is idempotent by payment id,
//! like a real gateway honouring an idempotency key: charging the same payment twice returns the
//! first charge. Its ledger is a table, so all worker processes share it.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use uuid::Uuid;

/// A charge request.
#[derive(Clone, Debug)]
pub struct Charge<'a> {
    /// Idempotency key at the gateway.
    pub payment_id: Uuid,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub token: &'a str,
}

/// What the gateway answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeResult {
    Charged { reference: String },
    Declined { reason: String },
}

/// What a refund did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refund {
    /// The charge is (now, or already) refunded.
    Refunded,
    /// The gateway never charged this payment id: nothing to give back.
    NothingCharged,
}

/// A failure worth retrying (timeouts, gateway 5xx).
#[derive(Debug, thiserror::Error)]
#[error("payment gateway unavailable: {0}")]
pub struct Transient(pub String);

/// Anything that takes money and gives it back.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Charges once per `payment_id`; repeating returns the first result.
    async fn charge(&self, charge: Charge<'_>) -> Result<ChargeResult, Transient>;
    /// Refunds the charge of `payment_id`; repeating is harmless, and so is refunding a payment
    /// id that was never charged (the answer says which it was).
    async fn refund(&self, payment_id: Uuid) -> Result<Refund, Transient>;
}

/// The simulated gateway.
pub struct SimulatedGateway {
    db: PgPool,
    latency: Duration,
    failure_rate: f64,
}

impl SimulatedGateway {
    /// `failure_rate` (0 to 1) of calls fail transiently whatever the token (fault injection).
    pub fn new(db: PgPool, latency: Duration, failure_rate: f64) -> Self {
        Self { db, latency, failure_rate }
    }

    fn injected_failure(&self) -> Result<(), Transient> {
        use rand::Rng;
        if self.failure_rate > 0.0 && rand::rng().random_bool(self.failure_rate.clamp(0.0, 1.0)) {
            return Err(Transient("injected gateway failure".into()));
        }
        Ok(())
    }
}

fn transient(e: sqlx::Error) -> Transient {
    Transient(format!("gateway ledger: {e}"))
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, c: Charge<'_>) -> Result<ChargeResult, Transient> {
        tokio::time::sleep(self.latency).await;
        self.injected_failure()?;
        let reference = format!("sim_{}", c.payment_id.simple());
        // The ledger row is the gateway's memory of this payment id.
        sqlx::query(
            r#"insert into gateway_charges (payment_id, status, amount_minor, currency, reference)
               values ($1, 'pending', $2, $3, $4) on conflict (payment_id) do nothing"#,
        )
        .bind(c.payment_id)
        .bind(c.amount_minor)
        .bind(c.currency)
        .bind(&reference)
        .execute(&self.db)
        .await
        .map_err(transient)?;
        let (status, failures): (String, i32) =
            sqlx::query_as("select status, failures from gateway_charges where payment_id = $1")
                .bind(c.payment_id)
                .fetch_one(&self.db)
                .await
                .map_err(transient)?;
        match status.as_str() {
            "charged" | "refunded" => return Ok(ChargeResult::Charged { reference }),
            "declined" => return Ok(ChargeResult::Declined { reason: "card declined".into() }),
            _ => {}
        }
        let flaky = c.token.strip_prefix("tok_flaky_").and_then(|n| n.parse::<i32>().ok());
        let decision = match (c.token, flaky) {
            ("tok_ok", _) => "charged",
            ("tok_declined", _) => "declined",
            (_, Some(n)) if failures >= n => "charged",
            ("tok_error", _) | (_, Some(_)) => {
                sqlx::query("update gateway_charges set failures = failures + 1 where payment_id = $1")
                    .bind(c.payment_id)
                    .execute(&self.db)
                    .await
                    .map_err(transient)?;
                return Err(Transient("simulated gateway error".into()));
            }
            _ => "declined",
        };
        sqlx::query("update gateway_charges set status = $2 where payment_id = $1 and status = 'pending'")
            .bind(c.payment_id)
            .bind(decision)
            .execute(&self.db)
            .await
            .map_err(transient)?;
        Ok(if decision == "charged" {
            ChargeResult::Charged { reference }
        } else {
            ChargeResult::Declined { reason: "card declined".into() }
        })
    }

    async fn refund(&self, payment_id: Uuid) -> Result<Refund, Transient> {
        tokio::time::sleep(self.latency).await;
        self.injected_failure()?;
        // One statement, so a charge racing this refund is either refunded or not yet written.
        let status: Option<String> = sqlx::query_scalar(
            r#"with refunded as (
                 update gateway_charges set status = 'refunded', refunded_at = now()
                  where payment_id = $1 and status = 'charged' returning status)
               select status from refunded
               union all
               select status from gateway_charges where payment_id = $1 and status = 'refunded'
               limit 1"#,
        )
        .bind(payment_id)
        .fetch_optional(&self.db)
        .await
        .map_err(transient)?;
        Ok(if status.is_some() { Refund::Refunded } else { Refund::NothingCharged })
    }
}
