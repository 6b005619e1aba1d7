//! `roster load` as the benchmark drives it: REGISTERs only, open loop, one process per target
//! node with its own slice of the users, each writing a JSON report read back as
//! [`Measured`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use roster_benches::driving::{measured_from_report, Measured};

/// The UDP port the first slice sends from; slice N from the port N above (see [`start`]).
pub const LOCAL_PORT_BASE: u16 = 25_100;

/// Time a load gets beyond its duration for stragglers, `--verify` and its report.
const GRACE: Duration = Duration::from_secs(120);

/// One `roster load` process's work.
#[derive(Clone, Debug)]
pub struct Slice {
    /// The node it sends to.
    pub target: SocketAddr,
    /// The first user's number.
    pub first_user: u64,
    /// Users.
    pub users: u64,
    /// REGISTER/s.
    pub rate: u32,
}

/// Slices of `users` users from `first_user` at `rate` REGISTER/s, spread evenly over
/// `targets`.
pub fn spread(targets: &[SocketAddr], first_user: u64, users: u64, rate: u32) -> Vec<Slice> {
    let parts = targets.len().max(1) as u64;
    targets
        .iter()
        .enumerate()
        .map(|(index, target)| {
            let index = index as u64;
            let from = users * index / parts;
            let to = users * (index + 1) / parts;
            Slice {
                target: *target,
                first_user: first_user + from,
                users: to - from,
                rate: u32::try_from(
                    u64::from(rate) * (index + 1) / parts - u64::from(rate) * index / parts,
                )
                .unwrap_or(u32::MAX),
            }
        })
        .collect()
}

/// Running `roster load` processes.
pub struct Running {
    children: Vec<(Child, PathBuf)>,
    deadline: Instant,
    verified: Option<Verified>,
}

/// What `--verify` found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Verified {
    /// AORs queried.
    pub aors: u64,
    /// Acknowledged bindings expected.
    pub bindings: u64,
    /// Acknowledged bindings missing (or expiring early): lost.
    pub missing: u64,
    /// AORs whose query failed: not checked.
    pub unverified: u64,
}

/// Starts one `roster load` per slice for `duration`, its files in `dir` named `name-N`;
/// `verify` adds `--verify` (every acknowledged binding queried at the end).
pub fn start(
    roster: &Path,
    dir: &Path,
    name: &str,
    slices: &[Slice],
    duration: Duration,
    verify: bool,
) -> anyhow::Result<Running> {
    let mut children = Vec::new();
    for (index, slice) in slices.iter().enumerate() {
        let json = dir.join(format!("{name}-{index}.json"));
        let _ = std::fs::remove_file(&json);
        let out = std::fs::File::create(dir.join(format!("{name}-{index}.out")))?;
        let mut command = Command::new(roster);
        command
            .arg("load")
            .arg(slice.target.to_string())
            .args(["--domain", "example.com"])
            .args(["--users", &slice.users.to_string()])
            .args(["--first-user", &slice.first_user.to_string()])
            // Each slice sends from its own fixed port, so its contacts stay the same from run
            // to run: a new port each run would add a binding per AOR each time, and the
            // registrar refuses the 9th (403).
            .args([
                "--local-port",
                &(LOCAL_PORT_BASE + index as u16).to_string(),
            ])
            .args(["--mix", "register=1"])
            .args(["--rate", &slice.rate.to_string()])
            .args(["--duration", &format!("{}ms", duration.as_millis())])
            .args(["--max-outstanding", "10000"])
            .args(["--drain", "10s"])
            .arg("--json")
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if verify {
            command.arg("--verify");
        }
        roster_benches::driving::die_with_parent(&mut command);
        let child = command.spawn().context("cannot start roster load")?;
        children.push((child, json));
    }
    Ok(Running {
        children,
        deadline: Instant::now() + duration + GRACE,
        verified: None,
    })
}

impl Running {
    /// Waits for every process (killing those past the deadline) and merges their reports:
    /// rates add up, the p99 is the largest, failures add up. A process without a report
    /// counts as one failure. With `--verify`, also what it found, summed.
    pub fn finish(mut self) -> anyhow::Result<(Measured, Option<Verified>)> {
        let mut merged = Measured::default();
        let mut weighted_p50 = 0.0;
        for (mut child, json) in std::mem::take(&mut self.children) {
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() >= self.deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let Ok(text) = std::fs::read_to_string(&json) else {
                merged.failed += 1;
                continue;
            };
            let report: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("bad JSON in {}", json.display()))?;
            let one = measured_from_report(&report);
            let verify = &report["verify"];
            if !verify.is_null() {
                let count = |key: &str| verify[key].as_u64().unwrap_or(0);
                let checked = self.verified.get_or_insert_with(Verified::default);
                checked.aors += count("aors_checked");
                checked.bindings += count("bindings_expected");
                checked.missing += count("missing") + count("expires_early");
                checked.unverified += count("unverified");
            }
            merged.achieved_per_s += one.achieved_per_s;
            merged.p99_ms = merged.p99_ms.max(one.p99_ms);
            weighted_p50 += one.p50_ms * one.registered as f64;
            merged.registered += one.registered;
            merged.failed += one.failed;
        }
        if merged.registered > 0 {
            merged.p50_ms = weighted_p50 / merged.registered as f64;
        }
        Ok((merged, self.verified))
    }
}

/// Runs the slices for `duration` and returns what they measured.
pub fn run(
    roster: &Path,
    dir: &Path,
    name: &str,
    slices: &[Slice],
    duration: Duration,
) -> anyhow::Result<Measured> {
    Ok(start(roster, dir, name, slices, duration, false)?
        .finish()?
        .0)
}

/// Whether a step is clean: nothing failed and the 99th percentile under `p99_max_ms`.
pub fn clean(measured: &Measured, p99_max_ms: f64) -> bool {
    measured.failed == 0 && measured.registered > 0 && measured.p99_ms <= p99_max_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_users_and_rate_exactly() {
        let targets: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        let slices = spread(&targets, 5000, 5000, 2000);
        assert_eq!(slices.iter().map(|slice| slice.users).sum::<u64>(), 5000);
        assert_eq!(slices.iter().map(|slice| slice.rate).sum::<u32>(), 2000);
        assert_eq!(slices[0].first_user, 5000);
        assert_eq!(slices[2].first_user + slices[2].users, 10000);
    }
}
