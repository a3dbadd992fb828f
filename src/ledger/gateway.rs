//! The payment gateway, behind a trait. The simulated one (docs/DESIGN.md §6) answers by token:
//! `tok_ok` succeeds, `tok_declined` is declined, `tok_error` always fails transiently, and
//! `tok_flaky_N` fails transiently N times and then succeeds. It is idempotent by payment id,
//! like a real gateway honouring an idempotency key: charging the same payment twice returns the
//! first charge; a refunded or voided payment id is never charged again. Its ledger is a table,
//! so all worker processes share it, and each call is one statement, as one call to a remote
//! gateway would be.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use uuid::Uuid;

/// A charge request. `Debug` never prints the token.
#[derive(Clone)]
pub struct Charge<'a> {
    /// Idempotency key at the gateway.
    pub payment_id: Uuid,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub token: &'a str,
}

impl std::fmt::Debug for Charge<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charge")
            .field("payment_id", &self.payment_id)
            .field("amount_minor", &self.amount_minor)
            .field("currency", &self.currency)
            .field("token", &"***")
            .finish()
    }
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
    /// The gateway never charged this payment id: nothing to give back, and the id is void, so
    /// a charge arriving later with it is declined.
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
    /// id that was never charged (the answer says which it was; the id is void from then on).
    /// A refunded or voided payment id is never charged.
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

/// How the simulated gateway treats a token.
fn rule(token: &str) -> (&'static str, i32) {
    match token {
        "tok_ok" => ("ok", 0),
        "tok_error" => ("error", 0),
        other => match other.strip_prefix("tok_flaky_").and_then(|n| n.parse::<i32>().ok()) {
            Some(n) => ("flaky", n),
            None => ("declined", 0),
        },
    }
}

/// One statement per charge, as one call to a remote gateway: it records the payment id (the
/// idempotency key) and decides, so a repeat returns the first decision. `pending` means a
/// transient failure was served (`tok_error`, or `tok_flaky_N` before its N-th call).
const CHARGE: &str = r#"
insert into gateway_charges as g (payment_id, status, amount_minor, currency, reference, failures)
values ($1,
        case $5 when 'ok' then 'charged' when 'declined' then 'declined'
                when 'flaky' then case when $6 <= 0 then 'charged' else 'pending' end
                else 'pending' end,
        $2, $3, $4,
        case when $5 = 'error' or ($5 = 'flaky' and $6 > 0) then 1 else 0 end)
on conflict (payment_id) do update set
    failures = g.failures + case when g.status = 'pending' and ($5 = 'error' or ($5 = 'flaky' and g.failures < $6))
                                 then 1 else 0 end,
    status = case when g.status <> 'pending' then g.status
                  when $5 = 'ok' or ($5 = 'flaky' and g.failures >= $6) then 'charged'
                  when $5 = 'declined' then 'declined'
                  else 'pending' end
returning status"#;

/// One statement per refund: a charged payment id is refunded; one never charged is voided
/// (a later charge with it is refused), as a real gateway cancels a payment intent.
const REFUND: &str = r#"
insert into gateway_charges as g (payment_id, status, amount_minor, currency, reference, refunded_at)
values ($1, 'voided', 0, 'XXX', '', now())
on conflict (payment_id) do update set
    status = case g.status when 'charged' then 'refunded' when 'refunded' then 'refunded'
                           when 'declined' then 'declined' else 'voided' end,
    refunded_at = case when g.status = 'charged' then now() else g.refunded_at end
returning status, (select h.status from gateway_charges h where h.payment_id = $1)"#;

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, c: Charge<'_>) -> Result<ChargeResult, Transient> {
        tokio::time::sleep(self.latency).await;
        self.injected_failure()?;
        let reference = format!("sim_{}", c.payment_id.simple());
        let (kind, n) = rule(c.token);
        let status: String = sqlx::query_scalar(CHARGE)
            .bind(c.payment_id)
            .bind(c.amount_minor)
            .bind(c.currency)
            .bind(&reference)
            .bind(kind)
            .bind(n)
            .fetch_one(&self.db)
            .await
            .map_err(transient)?;
        match status.as_str() {
            "charged" => Ok(ChargeResult::Charged { reference }),
            "pending" => Err(Transient("simulated gateway error".into())),
            "refunded" | "voided" => Ok(ChargeResult::Declined { reason: "the payment was refunded or voided".into() }),
            _ => Ok(ChargeResult::Declined { reason: "card declined".into() }),
        }
    }

    async fn refund(&self, payment_id: Uuid) -> Result<Refund, Transient> {
        tokio::time::sleep(self.latency).await;
        self.injected_failure()?;
        // `before` is the row as this statement found it (the sub-select sees the old version).
        let (after, before): (String, Option<String>) =
            sqlx::query_as(REFUND).bind(payment_id).fetch_one(&self.db).await.map_err(transient)?;
        Ok(if after == "refunded" && matches!(before.as_deref(), Some("charged" | "refunded")) {
            Refund::Refunded
        } else {
            Refund::NothingCharged
        })
    }
}
