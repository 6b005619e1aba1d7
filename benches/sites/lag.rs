//! Replication lag as the benchmark sees it, two ways:
//! - [`Sampler`]: a thread asking one node's `GET /api/v1/backup` every [`SAMPLE_EVERY`]; each
//!   answer gives, per direction, the age of the oldest entry any copy lacks (the RPO exposure
//!   at that moment). Percentiles and the maximum are over those samples.
//! - [`delays`]: every node's `roster_backup_replication_delay_seconds` histogram (per shipped
//!   entry, proposal to the partner's acknowledgement), summed per shipping pool.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http;

/// How often the sampler asks.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// One answer of `/api/v1/backup`, per direction.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Since the sampler started.
    pub at: Duration,
    /// `source→copy` and its lag (largest of its streams), seconds, and streams not steady.
    pub directions: Vec<(String, f64, u64)>,
}

/// A thread sampling the backup status of one node until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    errors: Arc<Mutex<u64>>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl Sampler {
    /// Starts sampling `http`'s `/api/v1/backup` (with the admin `token`), keeping the
    /// directions from `source_pool`: a node sees its own pool's streams first hand, and the
    /// partner's only when the partner answers (not while the link is cut).
    pub fn start(http: SocketAddr, token: &str, source_pool: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(0));
        let started = Instant::now();
        let thread = {
            let (stop, samples, errors, token) = (
                stop.clone(),
                samples.clone(),
                errors.clone(),
                token.to_string(),
            );
            let source = format!("{source_pool}→");
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let next = Instant::now() + SAMPLE_EVERY;
                    match sample(http, &token, started) {
                        Ok(mut sample) => {
                            sample
                                .directions
                                .retain(|(name, _, _)| name.starts_with(&source));
                            samples
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(sample)
                        }
                        Err(_) => *errors.lock().unwrap_or_else(|e| e.into_inner()) += 1,
                    }
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
        };
        Sampler {
            stop,
            samples,
            errors,
            thread: Some(thread),
            started,
        }
    }

    /// Time since the sampler started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the thread; the samples and the number of failed requests.
    pub fn stop(mut self) -> (Vec<Sample>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let errors = *self.errors.lock().unwrap_or_else(|e| e.into_inner());
        (self.samples(), errors)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sample(http: SocketAddr, token: &str, started: Instant) -> anyhow::Result<Sample> {
    let body = http::get(http, "/api/v1/backup", Some(token))?;
    let at = started.elapsed();
    let status: serde_json::Value = serde_json::from_str(&body)?;
    let directions = status["directions"]
        .as_array()
        .map(|directions| {
            directions
                .iter()
                .map(|direction| {
                    let name = format!(
                        "{}→{}",
                        direction["source"]["name"].as_str().unwrap_or("?"),
                        direction["copy"]["name"].as_str().unwrap_or("?")
                    );
                    let unsteady = direction["behind"].as_u64().unwrap_or(0)
                        + direction["stopped"].as_u64().unwrap_or(0);
                    (
                        name,
                        direction["lag_seconds_max"].as_f64().unwrap_or(f64::NAN),
                        unsteady,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Sample { at, directions })
}

/// Samplers of both pools' directions, each from a node of its source pool.
pub struct Samplers(pub [Sampler; 2]);

impl Samplers {
    /// Samples pool `a`'s directions at `a_http`, `b`'s at `b_http`.
    pub fn start(a: (&str, SocketAddr), b: (&str, SocketAddr), token: &str) -> Samplers {
        Samplers([
            Sampler::start(a.1, token, a.0),
            Sampler::start(b.1, token, b.0),
        ])
    }

    /// Time since the first sampler started.
    pub fn elapsed(&self) -> Duration {
        self.0[0].elapsed()
    }

    /// Per direction, how long after `after` its first sample with a lag under `bound`
    /// seconds came (none yet: `None`).
    pub fn first_under(&self, after: Duration, bound: f64) -> Vec<(String, Option<Duration>)> {
        let offset = self.offset();
        let mut firsts = Vec::new();
        for (index, sampler) in self.0.iter().enumerate() {
            let shift = if index == 0 { Duration::ZERO } else { offset };
            let samples = sampler.samples();
            let names: std::collections::BTreeSet<String> = samples
                .iter()
                .flat_map(|sample| sample.directions.iter().map(|(name, _, _)| name.clone()))
                .collect();
            for name in names {
                let at = samples
                    .iter()
                    .filter(|sample| sample.at + shift > after)
                    .find(|sample| {
                        sample
                            .directions
                            .iter()
                            .any(|(other, lag, _)| *other == name && *lag < bound)
                    })
                    .map(|sample| sample.at + shift - after);
                firsts.push((name, at));
            }
        }
        firsts
    }

    /// How much later the second sampler started than the first.
    fn offset(&self) -> Duration {
        self.0[1]
            .started
            .saturating_duration_since(self.0[0].started)
    }

    /// Stops both; all their samples (times from the first's start) and failed requests.
    pub fn stop(self) -> (Vec<Sample>, u64) {
        let offset = self.offset();
        let [a, b] = self.0;
        let (mut samples, a_errors) = a.stop();
        let (b_samples, b_errors) = b.stop();
        samples.extend(b_samples.into_iter().map(|mut sample| {
            sample.at += offset;
            sample
        }));
        (samples, a_errors + b_errors)
    }
}

/// Percentiles of a set of values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    /// Values.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`.
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.retain(|value| value.is_finite());
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let index = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len().max(1));
            values.get(index - 1).copied().unwrap_or(0.0)
        };
        Spread {
            count: values.len(),
            p50: rank(0.5),
            p99: rank(0.99),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// Per direction, the spread of the sampled lags taken within `window`.
pub fn sampled_lag(
    samples: &[Sample],
    window: std::ops::Range<Duration>,
) -> BTreeMap<String, Spread> {
    let mut by_direction: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for sample in samples.iter().filter(|sample| window.contains(&sample.at)) {
        for (name, lag, _) in &sample.directions {
            by_direction.entry(name.clone()).or_default().push(*lag);
        }
    }
    by_direction
        .into_iter()
        .map(|(name, lags)| (name, Spread::of(lags)))
        .collect()
}

/// The replication delay histogram of a set of nodes, summed: (upper bound s, cumulative).
#[derive(Clone, Debug, Default)]
pub struct Delays {
    /// Cumulative counts by upper bound, ascending (the last bound is +Inf).
    pub buckets: Vec<(f64, u64)>,
}

impl Delays {
    /// Entries counted.
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, count)| *count)
    }

    /// The smallest bucket bound under which at least `q` of the entries fall: an upper bound
    /// of the `q` quantile.
    pub fn quantile_bound(&self, q: f64) -> f64 {
        let wanted = (q * self.count() as f64).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= wanted.max(1))
            .map_or(f64::INFINITY, |(bound, _)| *bound)
    }

    /// The share of entries over `bound` seconds (a bucket bound).
    pub fn share_over(&self, bound: f64) -> f64 {
        let under = self
            .buckets
            .iter()
            .find(|(le, _)| (*le - bound).abs() < 1e-9)
            .map_or(0, |(_, cumulative)| *cumulative);
        if self.count() == 0 {
            0.0
        } else {
            1.0 - under as f64 / self.count() as f64
        }
    }
}

/// The replication delay histograms of `nodes`, summed.
pub fn delays(nodes: &[SocketAddr]) -> anyhow::Result<Delays> {
    let mut sums: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for node in nodes {
        let text = http::get(*node, "/metrics", None)?;
        for (bound, count) in parse_buckets(&text, "roster_backup_replication_delay_seconds") {
            let entry = sums.entry(bound.to_bits()).or_insert((bound, 0));
            entry.1 += count;
        }
    }
    let mut buckets: Vec<(f64, u64)> = sums.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(Delays { buckets })
}

/// `metric_bucket{le="X"} N` lines of a Prometheus text page.
fn parse_buckets(text: &str, metric: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{metric}_bucket{{");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = line.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
            Some((bound, count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_read_and_bounded() {
        let text = "# TYPE x histogram\n\
            roster_backup_replication_delay_seconds_bucket{le=\"0.1\"} 90\n\
            roster_backup_replication_delay_seconds_bucket{le=\"1\"} 99\n\
            roster_backup_replication_delay_seconds_bucket{le=\"2\"} 100\n\
            roster_backup_replication_delay_seconds_bucket{le=\"+Inf\"} 100\n\
            roster_backup_replication_delay_seconds_sum 12.5\n";
        let buckets = parse_buckets(text, "roster_backup_replication_delay_seconds");
        assert_eq!(buckets.len(), 4);
        let delays = Delays { buckets };
        assert_eq!(delays.quantile_bound(0.5), 0.1);
        assert_eq!(delays.quantile_bound(0.99), 1.0);
        assert_eq!(delays.quantile_bound(1.0), 2.0);
        assert!((delays.share_over(1.0) - 0.01).abs() < 1e-9);
    }

    #[test]
    fn spread_uses_nearest_rank() {
        let spread = Spread::of((1..=100).map(f64::from).collect());
        assert_eq!((spread.p50, spread.p99, spread.max), (50.0, 99.0, 100.0));
        assert_eq!(Spread::of(Vec::new()).count, 0);
    }
}
