//! Scenarios: TOML files in `chaos/scenarios/`, one per fault family. A scenario fixes the
//! cluster, the workload and the nemesis; the command line may override its seed and duration.
//!
//! ```toml
//! description = "SIGKILL a random node, restart it 4 s later"
//! seed = 1
//! duration_s = 40           # the CI-sized run; --duration makes it longer
//! [cluster]
//! nodes = 3
//! [workload]
//! rate = 120
//! [nemesis]
//! faults = [{ kind = "kill", down_s = 4 }]
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterSpec;
use crate::nemesis::NemesisSpec;
use crate::workload::{WorkloadSpec, EXPIRES_S};

/// Longest run: the checkers' model has no expiry, so no binding may expire during a run.
pub const DURATION_S_MAX: f64 = EXPIRES_S as f64 / 2.0;

/// One scenario file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The file's stem; set when loaded.
    #[serde(skip)]
    pub name: String,
    /// What it does, in one sentence.
    pub description: String,
    /// The default seed.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Seconds of load with faults (the CI-sized default).
    pub duration_s: f64,
    /// Seconds of load after the last heal before the probes.
    #[serde(default = "default_settle_s")]
    pub settle_s: f64,
    /// The deployment.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// The load.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// The faults.
    pub nemesis: NemesisSpec,
    /// Defects this scenario shows today that belong to another change: their anomalies are
    /// reported as known and do not fail the run; any other anomaly still does.
    #[serde(default)]
    pub known_defects: Vec<KnownDefect>,
}

/// A defect a scenario is known to show, matched by checker and text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownDefect {
    /// The checker that reports it.
    pub checker: String,
    /// Text every anomaly of the defect contains.
    pub matches: String,
    /// What it is and where it is tracked.
    pub reason: String,
}

impl KnownDefect {
    /// Whether `anomaly`, reported by `checker`, is this defect.
    pub fn covers(&self, checker: &str, anomaly: &str) -> bool {
        self.checker == checker && anomaly.contains(&self.matches)
    }
}

fn default_seed() -> u64 {
    1
}

fn default_settle_s() -> f64 {
    4.0
}

impl Scenario {
    /// Reads and checks one file.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        let mut scenario: Scenario =
            toml::from_str(&text).with_context(|| format!("in scenario {}", path.display()))?;
        scenario.name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or("scenario")
            .to_owned();
        scenario
            .validate()
            .with_context(|| format!("in scenario {}", path.display()))?;
        Ok(scenario)
    }

    /// Checks every bound.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.cluster.validate()?;
        self.workload.validate()?;
        anyhow::ensure!(
            self.duration_s > 0.0 && self.duration_s <= DURATION_S_MAX,
            "duration_s must be in (0, {DURATION_S_MAX}]"
        );
        anyhow::ensure!(!self.nemesis.faults.is_empty(), "nemesis.faults is empty");
        if let Some(fault) = self.nemesis.faults.iter().find(|f| f.needs_two_sites()) {
            anyhow::ensure!(
                self.cluster.sites == 2,
                "a {} fault needs [cluster] sites = 2",
                fault.kind()
            );
        }
        Ok(())
    }
}

/// The scenario files of `dir`, sorted by name.
pub fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list scenarios in {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// A scenario by name (a file in `dir`) or by path.
pub fn find(dir: &Path, name: &str) -> anyhow::Result<Scenario> {
    let path = Path::new(name);
    if path.extension().is_some_and(|ext| ext == "toml") && path.exists() {
        return Scenario::load(path);
    }
    let candidate = dir.join(format!("{name}.toml"));
    anyhow::ensure!(
        candidate.exists(),
        "no scenario {name:?} in {} (roster-chaos list shows them)",
        dir.display()
    );
    Scenario::load(&candidate)
}

/// Parses `30`, `30s`, `500ms`, `2m`, `1h` into seconds.
pub fn parse_duration_s(text: &str) -> anyhow::Result<f64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(position) => text.split_at(position),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration (e.g. 30s, 2m, 1h)"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => anyhow::bail!("unknown duration unit {other:?} (ms, s, m, h)"),
    };
    anyhow::ensure!(value > 0.0, "a duration must be positive");
    Ok(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let paths = list(&dir).expect("the directory lists");
        assert!(paths.len() >= 10, "{paths:?}");
        for path in paths {
            let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(!scenario.description.is_empty());
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_s("30").ok(), Some(30.0));
        assert_eq!(parse_duration_s("2m").ok(), Some(120.0));
        assert_eq!(parse_duration_s("500ms").ok(), Some(0.5));
        assert!(parse_duration_s("3 parsecs").is_err());
        assert!(parse_duration_s("-1s").is_err());
    }
}
