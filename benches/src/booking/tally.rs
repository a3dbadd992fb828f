//! What one virtual user records, and the latency figures made of it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::shop::Answer;
use crate::stats::percentile_ms;

/// Error examples kept per phase (the counts are complete; the examples are not).
const ERROR_SAMPLES: usize = 5;

/// What one virtual user saw during a phase (or the whole race).
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Holds granted (201).
    pub(super) holds: u64,
    /// Holds refused with 409 `seats_unavailable`.
    pub(super) conflicts: u64,
    /// Of the hold attempts, those that asked for the best seats together (sellout).
    pub(super) best_available: u64,
    /// Checkouts answered 202.
    pub(super) checkouts: u64,
    /// Checkouts sent again with the same key after a 503, 429 or transport error.
    pub(super) checkout_retries: u64,
    /// Reservations seen `confirmed`.
    pub(super) bookings: u64,
    /// Seats of those reservations.
    pub(super) seats: u64,
    /// `GET /api/v1/reservations/{id}` calls.
    pub(super) polls: u64,
    /// Reservation event streams followed after a checkout (the push).
    pub(super) pushes: u64,
    /// Streams that gave no final status, so the buyer polled instead.
    pub(super) push_fallbacks: u64,
    /// Those failures by kind (`push 503`, `push ended while pending`).
    pub(super) push_failures: BTreeMap<String, u64>,
    /// `GET /api/v1/showtimes/{id}/seats` calls (sellout).
    pub(super) seat_maps: u64,
    /// Reads of the availability counts (best-available buyers of `sellout`).
    pub(super) availability_reads: u64,
    pub(super) hold_us: Vec<u64>,
    pub(super) checkout_us: Vec<u64>,
    /// From the checkout's 202 to the stream event (or poll answer) that said `confirmed`.
    pub(super) confirm_us: Vec<u64>,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) samples: Vec<String>,
    /// The longest `Retry-After` of the error answers since the caller last took it.
    pub(super) retry_after: Option<Duration>,
}

impl Tally {
    pub(super) fn error(&mut self, kind: impl Into<String>, detail: impl FnOnce() -> String) {
        *self.errors.entry(kind.into()).or_default() += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(detail());
        }
    }

    /// Remembers an answer's `Retry-After`.
    pub(super) fn note(&mut self, answer: &Answer) {
        if let Some(wait) = answer.retry_after {
            self.retry_after = Some(self.retry_after.map_or(wait, |w| w.max(wait)));
        }
    }

    pub(super) fn merge(&mut self, other: Tally) {
        self.holds += other.holds;
        self.conflicts += other.conflicts;
        self.best_available += other.best_available;
        self.checkouts += other.checkouts;
        self.checkout_retries += other.checkout_retries;
        self.bookings += other.bookings;
        self.seats += other.seats;
        self.polls += other.polls;
        self.pushes += other.pushes;
        self.push_fallbacks += other.push_fallbacks;
        for (kind, n) in other.push_failures {
            *self.push_failures.entry(kind).or_default() += n;
        }
        self.seat_maps += other.seat_maps;
        self.availability_reads += other.availability_reads;
        self.hold_us.extend(other.hold_us);
        self.checkout_us.extend(other.checkout_us);
        self.confirm_us.extend(other.confirm_us);
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        let room = ERROR_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// p50, p99 and max of microseconds, in milliseconds (sorts in place).
pub(super) fn spread(us: &mut [u64]) -> (f64, f64, f64) {
    us.sort_unstable();
    (percentile_ms(us, 50.0), percentile_ms(us, 99.0), us.last().map_or(0.0, |v| *v as f64 / 1000.0))
}

/// The latency and error figures of a tally, as both scenarios report them (flattened into
/// their JSON).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub hold_p50_ms: f64,
    pub hold_p99_ms: f64,
    pub checkout_p50_ms: f64,
    pub checkout_p99_ms: f64,
    /// From the checkout's 202 to the stream event (or poll) that saw `confirmed`.
    pub confirm_p50_ms: f64,
    pub confirm_p99_ms: f64,
    pub confirm_max_ms: f64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    #[serde(skip)]
    pub samples: Vec<String>,
}

impl Figures {
    /// Takes the latencies (sorted in place), the errors and their examples out of `t`.
    pub(super) fn take(t: &mut Tally) -> Self {
        let (hold_p50_ms, hold_p99_ms, _) = spread(&mut t.hold_us);
        let (checkout_p50_ms, checkout_p99_ms, _) = spread(&mut t.checkout_us);
        let (confirm_p50_ms, confirm_p99_ms, confirm_max_ms) = spread(&mut t.confirm_us);
        let error_kinds = std::mem::take(&mut t.errors);
        Self {
            hold_p50_ms,
            hold_p99_ms,
            checkout_p50_ms,
            checkout_p99_ms,
            confirm_p50_ms,
            confirm_p99_ms,
            confirm_max_ms,
            errors: error_kinds.values().sum(),
            error_kinds,
            samples: std::mem::take(&mut t.samples),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_take_the_tallys_latencies_and_errors_and_sit_at_the_top_of_the_json() {
        // Arrange
        let mut t = Tally { hold_us: vec![3000, 1000, 2000], confirm_us: vec![5000], ..Tally::default() };
        t.error("hold 503 unavailable", || "first".into());
        t.error("hold 503 unavailable", || "second".into());
        #[derive(Serialize)]
        struct Phase {
            round: u32,
            #[serde(flatten)]
            figures: Figures,
        }

        // Act
        let figures = Figures::take(&mut t);
        let json = serde_json::to_value(Phase { round: 1, figures }).expect("serialises");

        // Assert
        assert_eq!((json["hold_p50_ms"].as_f64(), json["confirm_max_ms"].as_f64()), (Some(2.0), Some(5.0)));
        assert_eq!((json["errors"].as_u64(), json["error_kinds"]["hold 503 unavailable"].as_u64()), (Some(2), Some(2)));
        assert!(json.get("samples").is_none() && json.get("figures").is_none());
        assert!(t.errors.is_empty() && t.samples.is_empty());
    }
}
