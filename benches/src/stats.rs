//! Counting and summarising: what one virtual user records, what a phase adds up to, and the
//! median over rounds. Percentiles are nearest-rank on a sorted `Vec`; no histogram crate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Which path a phase measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Through the HTTP API.
    Api,
    /// The same work straight through the library, no HTTP.
    Raw,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Raw => "raw",
        }
    }
}

/// Error examples kept per phase (the counts are complete; the examples are not).
const ERROR_SAMPLES: usize = 5;

/// What one virtual user saw during a phase.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latency of every hold attempt that got an answer, in microseconds.
    pub latencies_us: Vec<u64>,
    pub granted: u64,
    pub conflicts: u64,
    /// Anything else, by kind (e.g. `hold 503 service_unavailable`, `release 410 hold_expired`).
    pub errors: BTreeMap<String, u64>,
    pub samples: Vec<String>,
}

impl Tally {
    pub fn latency(&mut self, d: Duration) {
        self.latencies_us.push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn error(&mut self, kind: impl Into<String>, detail: impl FnOnce() -> String) {
        *self.errors.entry(kind.into()).or_default() += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(detail());
        }
    }
}

/// A phase's totals and figures.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub side: Side,
    pub round: u32,
    pub elapsed_secs: f64,
    pub granted: u64,
    pub conflicts: u64,
    pub errors: u64,
    /// Hold attempts answered granted or conflict, per second.
    pub holds_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Conflicts / (granted + conflicts).
    pub conflict_rate: f64,
    pub error_kinds: BTreeMap<String, u64>,
    #[serde(skip)]
    pub samples: Vec<String>,
}

impl Phase {
    /// Adds up the tallies of every virtual user.
    pub fn from_tallies(side: Side, round: u32, elapsed: Duration, tallies: Vec<Tally>) -> Self {
        let mut latencies = Vec::new();
        let (mut granted, mut conflicts) = (0, 0);
        let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
        let mut samples = Vec::new();
        for t in tallies {
            latencies.extend(t.latencies_us);
            granted += t.granted;
            conflicts += t.conflicts;
            for (kind, n) in t.errors {
                *error_kinds.entry(kind).or_default() += n;
            }
            samples.extend(t.samples.into_iter().take(ERROR_SAMPLES.saturating_sub(samples.len())));
        }
        latencies.sort_unstable();
        let attempts = granted + conflicts;
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        Self {
            side,
            round,
            elapsed_secs: secs,
            granted,
            conflicts,
            errors: error_kinds.values().sum(),
            holds_per_sec: attempts as f64 / secs,
            p50_ms: percentile_ms(&latencies, 50.0),
            p99_ms: percentile_ms(&latencies, 99.0),
            max_ms: latencies.last().map_or(0.0, |us| *us as f64 / 1000.0),
            conflict_rate: if attempts == 0 { 0.0 } else { conflicts as f64 / attempts as f64 },
            error_kinds,
            samples,
        }
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds (0 when empty).
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us[index] as f64 / 1000.0
}

/// Median of a few values (mean of the middle two for an even count; 0 when empty).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

/// One side's figures over all rounds: the median of each figure, errors summed.
#[derive(Clone, Debug, Serialize)]
pub struct SideSummary {
    pub holds_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub conflict_rate: f64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
}

impl SideSummary {
    pub fn of(phases: &[&Phase]) -> Self {
        let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
        for p in phases {
            for (kind, n) in &p.error_kinds {
                *error_kinds.entry(kind.clone()).or_default() += n;
            }
        }
        Self {
            holds_per_sec: median(phases.iter().map(|p| p.holds_per_sec)),
            p50_ms: median(phases.iter().map(|p| p.p50_ms)),
            p99_ms: median(phases.iter().map(|p| p.p99_ms)),
            conflict_rate: median(phases.iter().map(|p| p.conflict_rate)),
            errors: phases.iter().map(|p| p.errors).sum(),
            error_kinds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let us: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&us, 50.0), 50.0);
        assert_eq!(percentile_ms(&us, 99.0), 99.0);
        assert_eq!(percentile_ms(&us, 100.0), 100.0);
        assert_eq!(percentile_ms(&[7000], 99.0), 7.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median([]), 0.0);
    }

    #[test]
    fn a_phase_adds_up_every_user_and_counts_errors_apart() {
        let a = Tally { granted: 3, conflicts: 1, latencies_us: vec![1000, 2000, 3000, 4000], ..Tally::default() };
        let mut b = Tally { granted: 4, latencies_us: vec![5000], ..Tally::default() };
        b.error("hold 500 internal_error", || "boom".into());
        let phase = Phase::from_tallies(Side::Api, 1, Duration::from_secs(2), vec![a, b]);
        assert_eq!((phase.granted, phase.conflicts, phase.errors), (7, 1, 1));
        assert_eq!(phase.holds_per_sec, 4.0);
        assert_eq!(phase.conflict_rate, 0.125);
        assert_eq!(phase.p50_ms, 3.0);
        assert_eq!(phase.samples, ["boom"]);
    }
}
