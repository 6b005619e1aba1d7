//! `roster-chaos`: the chaos suite. It starts a real Roster pool (`roster init`, one `roster
//! start` process per node on its own loopback address), runs a recorded workload against it
//! while a nemesis kills, pauses, cuts off, delays and starves nodes, then proves from the
//! history that nothing acknowledged was lost and no rule was broken.
//!
//! ```text
//! roster-chaos list
//! roster-chaos run node-kill                      # one scenario, its own seed and duration
//! roster-chaos run --all                          # every scenario, CI-sized
//! roster-chaos run random --seed 7 --duration 30m # the long run
//! ```
//!
//! Modules: `scenario` (the TOML files), `cluster` (topology, `roster init`, processes),
//! `faults` (iptables, relay, disk), `nemesis` (which fault, when, on whom), `workload`
//! (roster-load's client, the history), `monitor` (status sampling), `check` (one module per
//! invariant), `runner` (one run), `report` and `svg` (what it writes), `cleanup` (undoing
//! everything, also on Ctrl-C and panic).
//!
//! **Architecture Invariant**: everything the suite starts or changes outside itself is
//! registered in `cleanup` before it exists, and undone on every way out.
//! **Architecture Invariant**: the checkers (`check`) are pure functions of the recorded run;
//! only `cluster`, `faults`, `monitor`, `workload::drive_node` and `runner` do I/O.

mod check;
mod cleanup;
mod cluster;
mod faults;
mod history;
mod monitor;
mod nemesis;
mod report;
mod runner;
mod scenario;
mod svg;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::report::RunReport;
use crate::runner::RunOptions;

/// Roster's chaos suite: real processes killed, paused and cut off, with checked histories.
#[derive(Parser)]
#[command(name = "roster-chaos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the scenarios.
    List {
        /// The scenario directory [default: chaos/scenarios].
        #[arg(long, value_name = "DIR")]
        scenarios: Option<PathBuf>,
    },
    /// Run one scenario, or every one with --all; exit 1 on any anomaly.
    Run {
        /// A scenario name (a file of the scenario directory) or a path to a TOML file.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        scenario: Option<String>,
        /// Run every scenario of the directory, one after the other.
        #[arg(long)]
        all: bool,
        /// The seed of every random choice (targets, workload) [default: the scenario's].
        #[arg(long)]
        seed: Option<u64>,
        /// Load with faults for this long (30s, 5m, 1h) [default: the scenario's].
        #[arg(long, value_name = "DURATION")]
        duration: Option<String>,
        /// The roster binary [default: next to this one, or $ROSTER_BIN].
        #[arg(long, value_name = "FILE")]
        roster: Option<PathBuf>,
        /// The scenario directory [default: chaos/scenarios].
        #[arg(long, value_name = "DIR")]
        scenarios: Option<PathBuf>,
        /// Where the reports go (OUT/<scenario>/report.md, .json, timeline.svg, history).
        #[arg(long, value_name = "DIR", default_value = "target/chaos")]
        out: PathBuf,
        /// Keep the nodes' data directories and certificates.
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a run's log is often a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    cleanup::install_panic_hook();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("roster-chaos: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(execute(cli));
    cleanup::run_all();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("roster-chaos: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; `Ok(false)` when a run failed its checks.
async fn execute(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::List { scenarios } => {
            let dir = scenario_dir(scenarios);
            for path in scenario::list(&dir)? {
                let scenario = scenario::Scenario::load(&path)?;
                println!(
                    "{:<20} {:>4} s  {}",
                    scenario.name, scenario.duration_s, scenario.description
                );
            }
            Ok(true)
        }
        Command::Run {
            scenario,
            all,
            seed,
            duration,
            roster,
            scenarios,
            out,
            keep,
        } => {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            anyhow::ensure!(
                root,
                "the chaos suite needs root (iptables, tmpfs mounts); run it with sudo"
            );
            let dir = scenario_dir(scenarios);
            let chosen = match (&scenario, all) {
                (Some(name), _) => vec![scenario::find(&dir, name)?],
                (None, _) => scenario::list(&dir)?
                    .iter()
                    .map(|path| scenario::Scenario::load(path))
                    .collect::<anyhow::Result<_>>()?,
            };
            let duration_s = duration
                .as_deref()
                .map(scenario::parse_duration_s)
                .transpose()?;
            let explicit_roster = roster.is_some();
            let roster = roster_binary(roster)?;
            let interrupt = CancellationToken::new();
            tokio::spawn(watch_signals(interrupt.clone()));
            let mut reports = Vec::new();
            let mut errors = Vec::new();
            for scenario in chosen {
                if interrupt.is_cancelled() {
                    break;
                }
                let seed = seed.unwrap_or(scenario.seed);
                let duration_s = duration_s.unwrap_or(scenario.duration_s);
                anyhow::ensure!(
                    duration_s <= scenario::DURATION_S_MAX,
                    "--duration must be at most {} s",
                    scenario::DURATION_S_MAX
                );
                let mut replay = format!(
                    "roster-chaos run {} --seed {seed} --duration {duration_s}s",
                    scenario.name
                );
                if explicit_roster {
                    replay.push_str(&format!(" --roster {}", roster.display()));
                }
                let options = RunOptions {
                    seed,
                    duration_s,
                    roster: roster.clone(),
                    out: out.clone(),
                    keep,
                    replay: replay.clone(),
                };
                eprintln!(
                    "roster-chaos: {} (seed {seed}, {duration_s} s): {}",
                    scenario.name, scenario.description
                );
                match runner::run(&scenario, &options, interrupt.clone()).await {
                    Ok(report) => {
                        print_summary(&report, &out);
                        reports.push(report);
                    }
                    Err(error) => {
                        eprintln!("roster-chaos: {} could not run: {error:#}", scenario.name);
                        errors.push((scenario.name.clone(), replay, format!("{error:#}")));
                    }
                }
            }
            finish(&reports, &errors, &out)
        }
    }
}

/// Writes the suite summary, prints every failure with its replay command.
fn finish(
    reports: &[RunReport],
    errors: &[(String, String, String)],
    out: &Path,
) -> anyhow::Result<bool> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("suite.md"), report::suite_markdown(reports))?;
    std::fs::write(
        out.join("suite.json"),
        serde_json::to_string_pretty(reports)? + "\n",
    )?;
    let failed: Vec<&RunReport> = reports.iter().filter(|r| !r.passed).collect();
    println!("\n{}", report::suite_markdown(reports));
    for report in &failed {
        println!(
            "FAILED {} (seed {}): {} anomalies, {} acknowledged lost; replay with:\n  {}",
            report.scenario, report.seed, report.anomalies, report.lost_acknowledged, report.replay
        );
    }
    for (name, replay, error) in errors {
        println!("FAILED {name}: {error}\n  replay with: {replay}");
    }
    // The plain closing line CI reads.
    println!(
        "chaos: {} passed, {} failed",
        reports.len() - failed.len(),
        failed.len() + errors.len()
    );
    Ok(failed.is_empty() && errors.is_empty())
}

fn print_summary(report: &RunReport, out: &Path) {
    eprintln!(
        "roster-chaos: {} {}: {} faults, {} operations, {} acknowledged lost, {} anomalies, recovery p50 {:.2} s max {:.2} s; {}",
        report.scenario,
        if report.passed { "passed" } else { "FAILED" },
        report.faults.len(),
        report.operations,
        report.lost_acknowledged,
        report.anomalies,
        report.recovery_p50_s,
        report.recovery_max_s,
        out.join(&report.scenario).join("report.md").display()
    );
}

/// First SIGINT or SIGTERM: heal, stop and report; the second: undo everything and exit.
async fn watch_signals(interrupt: CancellationToken) {
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        if round == 0 {
            eprintln!("roster-chaos: interrupted: healing, stopping the nodes and writing the report (again to quit at once)");
            interrupt.cancel();
        } else {
            cleanup::run_all();
            std::process::exit(130);
        }
    }
}

fn scenario_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let local = PathBuf::from("chaos/scenarios");
        if local.is_dir() {
            local
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
        }
    })
}

fn roster_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given.or_else(|| std::env::var_os("ROSTER_BIN").map(PathBuf::from)) {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find this executable")?
            .with_file_name("roster"),
    };
    anyhow::ensure!(
        path.is_file(),
        "no roster binary at {} (cargo build -p roster, or --roster FILE)",
        path.display()
    );
    Ok(path)
}
