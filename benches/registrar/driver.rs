//! The load generators: SIPp (`-r RATE -m N`, response times from `-trace_rtt`) and
//! `roster load` (its JSON report). Each step runs one of them as a child process with a
//! deadline and returns what it measured.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::system::{Algorithm, Auth, Running, SOCKET_BUFFER_BYTES, USERS};
pub use roster_benches::driving::Measured;
use roster_benches::driving::{measured_from_report, run_with_deadline};

/// A load generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriverKind {
    /// SIPp 3.6, one REGISTER per call (behind a challenge with digest).
    Sipp,
    /// `roster load`, REGISTERs only, 10,000 users.
    RosterLoad,
}

impl DriverKind {
    /// The name in tables and on the chart.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Sipp => "sipp",
            DriverKind::RosterLoad => "roster-load",
        }
    }

    /// The digest algorithm Kamailio must challenge with for this driver: SIPp 3.6 answers
    /// only MD5; `roster load` is asked for SHA-256 (from Kamailio and from Roster alike).
    pub fn algorithm(self) -> Algorithm {
        match self {
            DriverKind::Sipp => Algorithm::Md5,
            DriverKind::RosterLoad => Algorithm::Sha256,
        }
    }
}

/// One step's load.
pub struct Step<'a> {
    /// The generator.
    pub driver: DriverKind,
    /// Offered REGISTER/s.
    pub rate: u32,
    /// How long.
    pub duration: Duration,
    /// With digest or not.
    pub auth: Auth,
    /// The system.
    pub running: &'a Running,
    /// A fresh directory for the generator's files.
    pub dir: PathBuf,
    /// `roster` (for `roster load`).
    pub roster: &'a Path,
    /// SIPp scenarios.
    pub assets: &'a Path,
}

/// SIPp's local port (in the benchmark's 5100-5199 range, away from 5060).
const SIPP_PORT: u16 = 5190;

/// `roster load`'s local port (`--local-port`): fixed, so that its contacts stay the same
/// from step to step (see `run_roster_load`).
const ROSTER_LOAD_PORT: u16 = 5191;

/// Time a generator gets beyond the step for its stragglers and its report.
const DRIVER_GRACE: Duration = Duration::from_secs(30);

/// Runs one step to completion (or its deadline).
pub fn run(step: &Step) -> anyhow::Result<Measured> {
    std::fs::create_dir_all(&step.dir)
        .with_context(|| format!("cannot create {}", step.dir.display()))?;
    match step.driver {
        DriverKind::Sipp => run_sipp(step),
        DriverKind::RosterLoad => run_roster_load(step, step.rate, u64::from(USERS), None),
    }
}

/// `roster load` registering `users` distinct users once each at `rate` (the memory phase).
pub fn fill(step: &Step, users: u64) -> anyhow::Result<Measured> {
    std::fs::create_dir_all(&step.dir)
        .with_context(|| format!("cannot create {}", step.dir.display()))?;
    run_roster_load(step, step.rate, users, Some(users))
}

fn run_sipp(step: &Step) -> anyhow::Result<Measured> {
    let calls = u64::from(step.rate) * step.duration.as_secs();
    let scenario = match step.auth {
        Auth::None => "register.xml",
        Auth::Digest => "register_auth.xml",
    };
    let mut command = Command::new("sipp");
    command
        .arg(step.running.target.to_string())
        .args(["-i", "127.0.0.1", "-p", &SIPP_PORT.to_string(), "-nostdin"])
        .arg("-sf")
        .arg(step.assets.join("sipp").join(scenario))
        .arg("-inf")
        .arg(&step.running.users_csv)
        .args(["-r", &step.rate.to_string(), "-m", &calls.to_string()])
        .args(["-l", "40000", "-recv_timeout", "5000"])
        // SIPp's default socket buffers (64 KiB) hold a few milliseconds of responses at
        // these rates: a scheduling pause of SIPp itself dropped them (RcvbufErrors on its
        // port), and SIPp's retransmissions then counted against the system measured.
        .args(["-buff_size", &SOCKET_BUFFER_BYTES.to_string()])
        .args([
            "-timeout",
            &format!("{}s", (step.duration + DRIVER_GRACE).as_secs()),
        ])
        .args(["-trace_rtt", "-rtt_freq", "1000"]);
    let output = step.dir.join("sipp.out");
    run_with_deadline(
        command,
        &step.dir,
        &output,
        step.duration + DRIVER_GRACE * 2,
    )?;
    let text = std::fs::read_to_string(&output)
        .with_context(|| format!("cannot read {}", output.display()))?;
    let registered = sipp_counter(&text, "Successful call").unwrap_or(0);
    let failed = sipp_counter(&text, "Failed call").unwrap_or(0);
    let mut latencies = read_rtt(&step.dir)?;
    latencies.sort_by(f64::total_cmp);
    Ok(Measured {
        achieved_per_s: sipp_call_rate(&text).unwrap_or(0.0),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        registered,
        // Calls never started or still open at the end count as failed.
        failed: failed.max(calls.saturating_sub(registered)),
    })
}

fn run_roster_load(
    step: &Step,
    rate: u32,
    users: u64,
    count: Option<u64>,
) -> anyhow::Result<Measured> {
    let json = step.dir.join("report.json");
    let mut command = Command::new(step.roster);
    command
        .arg("load")
        .arg(step.running.target.to_string())
        .args(["--users", &users.to_string()])
        .args(["--mix", "register=1"])
        // One contact per user across the steps, as with SIPp: with a new port each run,
        // every step would add a binding per AOR (Roster refuses the 9th with `403`).
        .args(["--local-port", &ROSTER_LOAD_PORT.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--max-outstanding", "10000"])
        .args(["--drain", "5s"])
        .arg("--json")
        .arg(&json);
    let mut deadline = step.duration + DRIVER_GRACE;
    match count {
        Some(count) => {
            // Fill: one registration per user; a slow system gets three times the nominal time.
            let nominal = Duration::from_secs(count.div_ceil(u64::from(rate)));
            deadline = nominal * 3 + DRIVER_GRACE;
            command
                .args(["--count", &count.to_string()])
                .args(["--duration", &format!("{}s", (nominal * 3).as_secs())]);
        }
        None => {
            command.args(["--duration", &format!("{}s", step.duration.as_secs())]);
        }
    }
    if let Some(password) = &step.running.password {
        command.args(["--password", password]);
        command.args(["--algorithm", "sha-256"]);
    }
    let output = step.dir.join("roster-load.out");
    run_with_deadline(command, &step.dir, &output, deadline)?;
    let text = match std::fs::read_to_string(&json) {
        Ok(text) => text,
        // No report: nothing was answered (roster load says why in its output).
        Err(_) => {
            return Ok(Measured {
                failed: count.unwrap_or(u64::from(rate) * step.duration.as_secs()),
                ..Measured::default()
            })
        }
    };
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("bad JSON in {}", json.display()))?;
    Ok(measured_from_report(&report))
}

/// The cumulative column of one of SIPp's final statistics lines, e.g. `Successful call`.
fn sipp_counter(text: &str, label: &str) -> Option<u64> {
    sipp_cumulative(text, label)?.trim().parse().ok()
}

fn sipp_call_rate(text: &str) -> Option<f64> {
    sipp_cumulative(text, "Call Rate")?
        .trim()
        .trim_end_matches("cps")
        .trim()
        .parse()
        .ok()
}

/// The last line starting with `label` (SIPp prints its table at the end), third column.
fn sipp_cumulative<'t>(text: &'t str, label: &str) -> Option<&'t str> {
    let line = text
        .lines()
        .rfind(|line| line.trim_start().starts_with(label))?;
    line.split('|').nth(2)
}

/// Every response time SIPp wrote to its `*_rtt.csv` (`date;ms;rtd`), ms.
fn read_rtt(dir: &Path) -> anyhow::Result<Vec<f64>> {
    let mut values = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry.context("cannot list a step directory")?.path();
        if !path.to_string_lossy().ends_with("_rtt.csv") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        values.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| line.split(';').nth(1)?.trim().parse::<f64>().ok()),
        );
        // One line per call: large at high rates, and read now.
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(values)
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipp_final_table_is_read() {
        let text = "  Call Rate    |    0.000 cps   |  997.340 cps   \n\
                    Successful call |   0   |  2990  \n\
                    Failed call     |   0   |  10  \n";
        assert_eq!(sipp_counter(text, "Successful call"), Some(2990));
        assert_eq!(sipp_counter(text, "Failed call"), Some(10));
        assert_eq!(sipp_call_rate(text), Some(997.34));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }

    #[test]
    fn roster_load_rows_merge() {
        let report = serde_json::json!({
            "rate_achieved_per_s": 990.0, "completed": 1000, "errors": 2, "unfinished": 1,
            "operations": [
                {"operation": "register", "outcome": "all", "count": 750, "p50_ms": 1.0, "p99_ms": 4.0},
                {"operation": "register", "outcome": "200", "count": 748, "p50_ms": 1.0, "p99_ms": 9.0},
                {"operation": "refresh", "outcome": "all", "count": 250, "p50_ms": 2.0, "p99_ms": 6.0}
            ]
        });
        let measured = measured_from_report(&report);
        assert_eq!(measured.p99_ms, 6.0);
        assert_eq!(measured.p50_ms, 1.25);
        assert_eq!(measured.failed, 3);
        assert_eq!(measured.registered, 998);
    }
}
