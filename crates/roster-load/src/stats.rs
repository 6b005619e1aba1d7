//! Latency statistics: [`Stats`] keeps one HDR histogram per (operation, outcome) and a
//! window for the live progress line; [`Row`] and [`LatencySummary`] are what reports show.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::op::Operation;

/// Largest latency recorded exactly, in microseconds: one hour. Longer ones (a backlog behind
/// a dead target in a very long run) are recorded as one hour.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// Significant decimal digits of every histogram: 0.1 % relative error, a few hundred KiB.
const HISTOGRAM_DIGITS: u8 = 3;

/// How an operation ended, as statistics are keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutcomeKey {
    /// A final status code.
    Status(u16),
    /// Timer F (or B) fired.
    Timeout,
    /// The connection closed under it.
    TransportError,
}

impl fmt::Display for OutcomeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutcomeKey::Status(status) => write!(f, "{status}"),
            OutcomeKey::Timeout => f.write_str("timeout"),
            OutcomeKey::TransportError => f.write_str("transport-error"),
        }
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// How many operations.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// One line of the final table: an operation and an outcome (`all` for the operation's total).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    /// The operation.
    pub operation: Operation,
    /// `all`, a status code, `timeout` or `transport-error`.
    pub outcome: String,
    /// Its latencies, from each request's intended send time.
    #[serde(flatten)]
    pub latency: LatencySummary,
}

/// What the progress line shows for the time since the last [`Stats::take_window`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    /// Operations completed.
    pub completed: u64,
    /// Of which failed.
    pub errors: u64,
    /// Their 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// Every latency of a run.
pub struct Stats {
    by_outcome: BTreeMap<(Operation, OutcomeKey), Histogram<u64>>,
    by_operation: BTreeMap<Operation, Histogram<u64>>,
    window: Histogram<u64>,
    window_errors: u64,
    completed: u64,
    errors: u64,
}

impl Stats {
    /// No operations yet.
    pub fn new() -> Stats {
        Stats {
            by_outcome: BTreeMap::new(),
            by_operation: BTreeMap::new(),
            window: new_histogram(),
            window_errors: 0,
            completed: 0,
            errors: 0,
        }
    }

    /// Records one finished operation and its latency from the intended send time.
    pub fn record(&mut self, operation: Operation, outcome: OutcomeKey, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let micros = micros.clamp(1, LATENCY_US_MAX);
        for histogram in [
            self.by_outcome
                .entry((operation, outcome))
                .or_insert_with(new_histogram),
            self.by_operation
                .entry(operation)
                .or_insert_with(new_histogram),
            &mut self.window,
        ] {
            histogram.saturating_record(micros);
        }
        self.completed += 1;
        let success = matches!(outcome, OutcomeKey::Status(status) if operation.is_success(status));
        if !success {
            self.errors += 1;
            self.window_errors += 1;
        }
    }

    /// Operations completed.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Operations that failed (error status, timeout, transport error).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// How many operations of `operation` ended with `outcome`.
    pub fn count(&self, operation: Operation, outcome: OutcomeKey) -> u64 {
        self.by_outcome
            .get(&(operation, outcome))
            .map_or(0, Histogram::len)
    }

    /// The window since the last call, and a new window.
    pub fn take_window(&mut self) -> Window {
        let window = Window {
            completed: self.window.len(),
            errors: self.window_errors,
            p99_ms: millis(self.window.value_at_quantile(0.99)),
        };
        self.window.reset();
        self.window_errors = 0;
        window
    }

    /// Per operation: its total row, then one row per outcome.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (operation, histogram) in &self.by_operation {
            rows.push(Row {
                operation: *operation,
                outcome: "all".to_owned(),
                latency: summarize(histogram),
            });
            for ((_, outcome), histogram) in self
                .by_outcome
                .range((*operation, OutcomeKey::Status(0))..)
                .take_while(|((op, _), _)| op == operation)
            {
                rows.push(Row {
                    operation: *operation,
                    outcome: outcome.to_string(),
                    latency: summarize(histogram),
                });
            }
        }
        rows
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the crate's preconditions (low >= 1,
    // high >= 2 * low, digits <= 5), so this never fails.
    match Histogram::new_with_bounds(1, LATENCY_US_MAX, HISTOGRAM_DIGITS) {
        Ok(histogram) => histogram,
        Err(error) => unreachable!("constant histogram bounds are valid: {error:?}"),
    }
}

fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    LatencySummary {
        count: histogram.len(),
        p50_ms: millis(histogram.value_at_quantile(0.50)),
        p90_ms: millis(histogram.value_at_quantile(0.90)),
        p99_ms: millis(histogram.value_at_quantile(0.99)),
        p999_ms: millis(histogram.value_at_quantile(0.999)),
        max_ms: millis(histogram.max()),
    }
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_by_operation_and_outcome_with_percentiles() {
        let mut stats = Stats::new();
        for ms in 1..=1000u64 {
            stats.record(
                Operation::Register,
                OutcomeKey::Status(200),
                Duration::from_millis(ms),
            );
        }
        stats.record(
            Operation::Register,
            OutcomeKey::Timeout,
            Duration::from_secs(32),
        );
        stats.record(
            Operation::Lookup,
            OutcomeKey::Status(302),
            Duration::from_millis(2),
        );
        stats.record(
            Operation::Lookup,
            OutcomeKey::Status(404),
            Duration::from_millis(2),
        );
        let rows = stats.rows();
        let names: Vec<(String, String, u64)> = rows
            .iter()
            .map(|r| (r.operation.to_string(), r.outcome.clone(), r.latency.count))
            .collect();
        let expected = [
            ("register", "all", 1001),
            ("register", "200", 1000),
            ("register", "timeout", 1),
            ("lookup", "all", 2),
            ("lookup", "302", 1),
            ("lookup", "404", 1),
        ];
        let expected: Vec<(String, String, u64)> = expected
            .iter()
            .map(|(o, c, n)| (o.to_string(), c.to_string(), *n))
            .collect();
        assert_eq!(names, expected);
        let ok = &rows[1].latency;
        // 0.1 % relative precision.
        assert!((ok.p50_ms - 500.0).abs() <= 0.5, "{ok:?}");
        assert!((ok.p99_ms - 990.0).abs() <= 1.0, "{ok:?}");
        assert!(
            (rows[0].latency.max_ms - 32_000.0).abs() <= 32.0,
            "{:?}",
            rows[0]
        );
        // The timeout and the 404 are errors; 302 is a lookup's success.
        assert_eq!((stats.completed(), stats.errors()), (1003, 2));
        assert_eq!(stats.count(Operation::Lookup, OutcomeKey::Status(302)), 1);
        let window = stats.take_window();
        assert_eq!((window.completed, window.errors), (1003, 2));
        assert_eq!(stats.take_window(), Window::default());
    }
}
