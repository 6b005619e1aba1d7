//! The report of a run ([`RunReport`]: JSON and Markdown, plus the SVG timeline of
//! [`crate::svg`]) and of a suite ([`suite_markdown`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::check::liveness::{percentile_and_max, FaultLiveness};
use crate::check::CheckerResult;
use crate::history::{Op, OpOutcome, Phase};
use crate::nemesis::FaultRecord;
use crate::runner::{Recorded, RunOptions};
use crate::scenario::Scenario;
use crate::workload::SchedulerCounters;

/// One second of the load.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Bucket {
    /// Its start, seconds from the run's start.
    pub t: u64,
    /// Operations answered with success.
    pub ok: u64,
    /// Refused (`4xx`).
    pub fail: u64,
    /// Unknown (timeout, `5xx`).
    pub unknown: u64,
    /// Median latency of the successful ones, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// Outcomes of one kind of operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// Success.
    pub ok: u64,
    /// Refused.
    pub fail: u64,
    /// Unknown.
    pub unknown: u64,
}

/// A fault with how the load fared.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultReport {
    /// What was injected.
    #[serde(flatten)]
    pub fault: FaultRecord,
    /// Liveness during it.
    pub liveness: FaultLiveness,
}

/// Everything about one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    /// The scenario's name.
    pub scenario: String,
    /// Its description.
    pub description: String,
    /// The seed.
    pub seed: u64,
    /// Seconds of load with faults asked for.
    pub duration_s: f64,
    /// Seconds the whole run took.
    pub elapsed_s: f64,
    /// The command that replays it.
    pub replay: String,
    /// Nodes.
    pub nodes: usize,
    /// Routing groups.
    pub groups: u32,
    /// Faults injected, with liveness.
    pub faults: Vec<FaultReport>,
    /// Operations recorded (all phases).
    pub operations: u64,
    /// Of the load, by kind.
    pub load_outcomes: BTreeMap<String, Outcomes>,
    /// Writes acknowledged (`2xx` to register or unregister), all phases.
    pub acknowledged_writes: u64,
    /// Acknowledged bindings missing from the final reads (must be 0).
    pub lost_acknowledged: u64,
    /// Anomalies over all checkers (must be 0, known defects aside).
    pub anomalies: u64,
    /// Of those, anomalies of the scenario's known defects.
    pub known_anomalies: u64,
    /// The scenario's known defects.
    pub known_defects: Vec<crate::scenario::KnownDefect>,
    /// Recovery time over the faults, median, seconds.
    pub recovery_p50_s: f64,
    /// Recovery time over the faults, largest, seconds.
    pub recovery_max_s: f64,
    /// The checkers.
    pub checkers: Vec<CheckerResult>,
    /// The workload's counters.
    pub scheduler: SchedulerCounters,
    /// Interrupted by Ctrl-C.
    pub interrupted: bool,
    /// No anomaly and not interrupted.
    pub passed: bool,
    /// The load per second.
    pub timeline: Vec<Bucket>,
}

/// Builds the report from what a run recorded.
pub fn build(
    scenario: &Scenario,
    options: &RunOptions,
    recorded: Recorded,
    elapsed: Duration,
) -> RunReport {
    let Recorded {
        deployment,
        ops,
        faults,
        mut checkers,
        liveness,
        counters,
        interrupted,
    } = recorded;
    for checker in &mut checkers {
        checker.classify_known(|name, detail| {
            scenario
                .known_defects
                .iter()
                .any(|defect| defect.covers(name, detail))
        });
    }
    let known_anomalies = checkers.iter().map(|c| c.known).sum();
    let unexpected: u64 = checkers.iter().map(|c| c.unexpected()).sum();
    let mut load_outcomes: BTreeMap<String, Outcomes> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.phase == Phase::Load) {
        let entry = load_outcomes
            .entry(op.kind.as_str().to_owned())
            .or_default();
        match op.outcome {
            OpOutcome::Ok => entry.ok += 1,
            OpOutcome::Fail => entry.fail += 1,
            OpOutcome::Unknown => entry.unknown += 1,
        }
    }
    let acknowledged_writes = ops
        .iter()
        .filter(|op| op.kind.is_write() && op.outcome == OpOutcome::Ok)
        .count() as u64;
    let lost_acknowledged = checkers
        .iter()
        .find(|c| c.checker == "durability")
        .and_then(|c| c.figures.get("missing"))
        .copied()
        .unwrap_or(0.0) as u64;
    let anomalies = checkers.iter().map(|c| c.anomalies).sum();
    let recoveries: Vec<f64> = liveness.iter().filter_map(|l| l.recovery_s).collect();
    let (recovery_p50_s, recovery_max_s) = percentile_and_max(&recoveries);
    let faults = faults
        .into_iter()
        .zip(liveness)
        .map(|(fault, liveness)| FaultReport { fault, liveness })
        .collect();
    RunReport {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        seed: options.seed,
        duration_s: options.duration_s,
        elapsed_s: elapsed.as_secs_f64(),
        replay: options.replay.clone(),
        nodes: deployment.nodes.len(),
        groups: deployment.pools.first().map_or(0, |pool| pool.groups),
        faults,
        operations: ops.len() as u64,
        load_outcomes,
        acknowledged_writes,
        lost_acknowledged,
        anomalies,
        known_anomalies,
        known_defects: scenario.known_defects.clone(),
        recovery_p50_s,
        recovery_max_s,
        checkers,
        scheduler: counters,
        interrupted,
        passed: unexpected == 0 && !interrupted,
        timeline: timeline(&ops),
    }
}

/// Per-second buckets of the load's operations, by completion time.
pub fn timeline(ops: &[Op]) -> Vec<Bucket> {
    let mut buckets: BTreeMap<u64, (Bucket, Vec<f64>)> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.phase == Phase::Load) {
        let second = op.complete.as_secs();
        let (bucket, latencies) = buckets.entry(second).or_default();
        bucket.t = second;
        match op.outcome {
            OpOutcome::Ok => {
                bucket.ok += 1;
                latencies.push(op.latency().as_secs_f64() * 1_000.0);
            }
            OpOutcome::Fail => bucket.fail += 1,
            OpOutcome::Unknown => bucket.unknown += 1,
        }
    }
    buckets
        .into_values()
        .map(|(mut bucket, mut latencies)| {
            latencies.sort_by(f64::total_cmp);
            let at = |q: f64| {
                latencies
                    .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                    .copied()
                    .unwrap_or(0.0)
            };
            bucket.p50_ms = at(0.5);
            bucket.p99_ms = at(0.99);
            bucket
        })
        .collect()
}

/// Writes `report.json`, `report.md` and `timeline.svg` into `dir`.
pub fn write(report: &RunReport, dir: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join("report.json"), json + "\n")
        .with_context(|| format!("cannot write {}", dir.display()))?;
    std::fs::write(dir.join("report.md"), markdown(report))?;
    std::fs::write(dir.join("timeline.svg"), crate::svg::timeline(report))?;
    Ok(())
}

/// The report as Markdown.
pub fn markdown(report: &RunReport) -> String {
    let mut text = String::new();
    let verdict = if report.passed {
        "PASSED"
    } else if report.interrupted {
        "INTERRUPTED"
    } else {
        "FAILED"
    };
    let _ = writeln!(text, "# Chaos run `{}`: {verdict}\n", report.scenario);
    let _ = writeln!(text, "{}\n", report.description);
    let _ = writeln!(text, "Replay: `{}`\n", report.replay);
    let _ = writeln!(
        text,
        "{} nodes, {} routing groups, seed {}, {:.0} s of faults ({:.0} s in all).\n",
        report.nodes, report.groups, report.seed, report.duration_s, report.elapsed_s
    );
    let _ = writeln!(text, "| faults | operations | acknowledged writes | acknowledged lost | anomalies | recovery p50 s | recovery max s |");
    let _ = writeln!(text, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let _ = writeln!(
        text,
        "| {} | {} | {} | {} | {} | {:.2} | {:.2} |\n",
        report.faults.len(),
        report.operations,
        report.acknowledged_writes,
        report.lost_acknowledged,
        report.anomalies,
        report.recovery_p50_s,
        report.recovery_max_s
    );
    if !report.known_defects.is_empty() {
        let _ = writeln!(
            text,
            "Known defects ({} of the anomalies; they do not fail the run):\n",
            report.known_anomalies
        );
        for defect in &report.known_defects {
            let _ = writeln!(
                text,
                "- {} (checker {}, \"{}\")",
                defect.reason, defect.checker, defect.matches
            );
        }
        let _ = writeln!(text);
    }
    let _ = writeln!(text, "![timeline](timeline.svg)\n");
    let _ = writeln!(text, "## Checkers\n");
    let _ = writeln!(
        text,
        "| checker | checked | anomalies | of which known | inconclusive |"
    );
    let _ = writeln!(text, "| --- | --- | ---: | ---: | ---: |");
    for checker in &report.checkers {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} |",
            checker.checker,
            checker.checked,
            checker.anomalies,
            checker.known,
            checker.inconclusive
        );
    }
    for checker in report.checkers.iter().filter(|c| !c.details.is_empty()) {
        let _ = writeln!(text, "\n### {}\n", checker.checker);
        for detail in &checker.details {
            let _ = writeln!(text, "- {}", detail.replace('\n', " / "));
        }
    }
    let _ = writeln!(text, "\n## Load\n");
    let _ = writeln!(text, "| operation | ok | refused | unknown |");
    let _ = writeln!(text, "| --- | ---: | ---: | ---: |");
    for (kind, outcomes) in &report.load_outcomes {
        let _ = writeln!(
            text,
            "| {kind} | {} | {} | {} |",
            outcomes.ok, outcomes.fail, outcomes.unknown
        );
    }
    let _ = writeln!(
        text,
        "\nArrivals dropped (no idle client): {}; directed operations given up: {}.",
        report.scheduler.dropped, report.scheduler.directed_given_up
    );
    let _ = writeln!(text, "\n## Faults\n");
    let _ = writeln!(
        text,
        "| # | kind | start s | heal s | recovery s | after heal s | ok during | what |"
    );
    let _ = writeln!(
        text,
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for fault in &report.faults {
        let seconds = |value: Option<f64>| value.map_or("never".to_owned(), |v| format!("{v:.2}"));
        let share = if fault.liveness.operations == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.0} %",
                100.0 * fault.liveness.ok as f64 / fault.liveness.operations as f64
            )
        };
        let _ = writeln!(
            text,
            "| {} | {} | {:.1} | {:.1} | {} | {} | {share} | {} |",
            fault.fault.id,
            fault.fault.kind,
            fault.fault.start_s,
            fault.fault.heal_s,
            seconds(fault.liveness.recovery_s),
            seconds(fault.liveness.after_heal_s),
            fault.fault.description
        );
    }
    text
}

/// The suite's summary table, one row per run.
pub fn suite_markdown(reports: &[RunReport]) -> String {
    let mut text = String::from("# Chaos suite\n\n");
    let _ = writeln!(text, "| scenario | seed | verdict | faults | operations | acknowledged writes | acknowledged lost | anomalies (known) | recovery p50 s | recovery max s |");
    let _ = writeln!(
        text,
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for report in reports {
        let _ = writeln!(
            text,
            "| [{}]({}/report.md) | {} | {} | {} | {} | {} | {} | {} ({}) | {:.2} | {:.2} |",
            report.scenario,
            report.scenario,
            report.seed,
            if report.passed { "pass" } else { "FAIL" },
            report.faults.len(),
            report.operations,
            report.acknowledged_writes,
            report.lost_acknowledged,
            report.anomalies,
            report.known_anomalies,
            report.recovery_p50_s,
            report.recovery_max_s
        );
    }
    let faults: usize = reports.iter().map(|r| r.faults.len()).sum();
    let operations: u64 = reports.iter().map(|r| r.operations).sum();
    let anomalies: u64 = reports.iter().map(|r| r.anomalies).sum();
    let lost: u64 = reports.iter().map(|r| r.lost_acknowledged).sum();
    let _ = writeln!(
        text,
        "\nIn all: {faults} faults, {operations} operations, {lost} acknowledged lost, {anomalies} anomalies."
    );
    text
}
