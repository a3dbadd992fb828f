//! The background processes: consume loops for payments and notifications, and the sweeper.
//! Used by `seatgate-workers` and by `seatgate all-in-one`. Each loop reconnects by itself
//! after a broker or database outage and stops cleanly on its token: no new deliveries, wait
//! for the ones in flight, close the channel (unacked messages go back to the queue).

pub mod consume;
pub mod notify;
pub mod sweeper;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::ledger::charge::WorkerCtx;
use crate::ledger::gateway::SimulatedGateway;
use crate::state::AppState;

/// Which loops to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Payments,
    Notifications,
    Sweeper,
    All,
}

/// The worker context with the simulated gateway (the only gateway this build has).
pub fn context(state: AppState) -> WorkerCtx {
    let workers = &state.config.workers;
    let gateway =
        Arc::new(SimulatedGateway::new(state.db.clone(), workers.payment_latency, workers.payment_failure_rate));
    WorkerCtx { state, gateway }
}

/// Runs the loops of `role` until `stop` is cancelled.
pub async fn run(role: Role, state: AppState, stop: CancellationToken) -> anyhow::Result<()> {
    let ctx = Arc::new(context(state.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    if matches!(role, Role::Payments | Role::All) {
        tasks.spawn(consume::run_payments(ctx.clone(), stop.clone()));
    }
    if matches!(role, Role::Notifications | Role::All) {
        let notifier: Arc<dyn notify::Notifier> = Arc::new(notify::StoreNotifier::new(state.db.clone()));
        tasks.spawn(consume::run_notifications(state.clone(), notifier, stop.clone()));
    }
    if matches!(role, Role::Sweeper | Role::All) {
        tasks.spawn(sweeper::run(context(state.clone()), stop.clone()));
        tasks.spawn(crate::onsale::admitter::run(state.clone(), stop.clone()));
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) | Err(e) = done.map_err(anyhow::Error::from) {
            tracing::error!(error = ?e, "a worker loop failed");
            stop.cancel();
            result = Err(e);
        }
    }
    result
}
