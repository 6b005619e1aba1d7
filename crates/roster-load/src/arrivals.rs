//! Open-loop arrival times: [`Arrivals`] yields the intended send time of each next
//! operation at a fixed rate, evenly spaced or as a Poisson process.

use std::time::{Duration, Instant};

use rand::Rng;

/// How arrivals are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalProcess {
    /// Exactly 1/rate apart.
    Uniform,
    /// Exponentially distributed gaps of mean 1/rate (a Poisson process).
    Poisson,
}

/// The schedule of arrivals from `start` at `rate_per_s`.
///
/// Times are offsets in seconds from `start` kept as `f64`, so rounding never accumulates
/// into a drift of the achieved rate.
#[derive(Clone, Debug)]
pub struct Arrivals {
    process: ArrivalProcess,
    start: Instant,
    rate_per_s: f64,
    next_offset_s: f64,
}

impl Arrivals {
    /// A schedule whose first arrival is at `start`. `rate_per_s` must be positive and finite.
    pub fn new(process: ArrivalProcess, start: Instant, rate_per_s: f64) -> Arrivals {
        assert!(
            rate_per_s.is_finite() && rate_per_s > 0.0,
            "rate must be positive"
        );
        Arrivals {
            process,
            start,
            rate_per_s,
            next_offset_s: 0.0,
        }
    }

    /// The intended time of the next arrival.
    pub fn peek(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.next_offset_s)
    }

    /// Consumes the next arrival and draws the one after it.
    pub fn advance(&mut self, rng: &mut impl Rng) {
        let gap_s = match self.process {
            ArrivalProcess::Uniform => 1.0 / self.rate_per_s,
            ArrivalProcess::Poisson => {
                // 1 - U is in (0, 1], so its logarithm is finite.
                let uniform: f64 = rng.random();
                -(1.0 - uniform).ln() / self.rate_per_s
            }
        };
        self.next_offset_s += gap_s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn count_in(process: ArrivalProcess, rate: f64, window: Duration) -> usize {
        let start = Instant::now();
        let mut arrivals = Arrivals::new(process, start, rate);
        let mut rng = StdRng::seed_from_u64(7);
        let mut count = 0;
        while arrivals.peek() < start + window {
            count += 1;
            arrivals.advance(&mut rng);
        }
        count
    }

    #[test]
    fn uniform_is_exact_and_poisson_has_the_right_mean() {
        assert_eq!(
            count_in(ArrivalProcess::Uniform, 1000.0, Duration::from_secs(10)),
            10_000
        );
        let poisson = count_in(ArrivalProcess::Poisson, 1000.0, Duration::from_secs(10));
        // Mean 10,000, standard deviation 100: five deviations either side.
        assert!((9_500..=10_500).contains(&poisson), "{poisson}");
        assert_ne!(poisson, 10_000, "Poisson gaps are not all equal");
    }
}
