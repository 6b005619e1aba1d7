//! `registrar-bench`: Roster's three-node pool against Kamailio (one node, and three nodes
//! replicating with DMQ) as a SIP registrar, driven by SIPp and by `roster load`.
//!
//! For each round (no authentication, digest), system and driver it steps the open-loop
//! REGISTER rate up until the first step that is not clean (`series`), recording achieved
//! rate, p50, p99, failures and CPU per 1,000 registrations; then it fills each system with
//! `--bindings` users and measures PSS per binding (`memory`). Results go to `--out` as
//! `results.json`, `results.md` and `registrar.svg` (`report`, `plot`), rewritten after
//! every series so an interrupted run keeps what it measured. `benches/registrar/run`
//! installs Kamailio and SIPp, builds, and runs this.

mod cli;
mod driver;
mod memory;
mod plot;
mod procfs;
mod report;
mod series;
mod system;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser as _;

use crate::report::{Machine, Results, Settings};

fn main() -> ExitCode {
    match run(cli::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("registrar-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: cli::Args) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let started = Instant::now();
    let mut results = Results {
        machine: Machine::probe(),
        settings: Settings {
            step_s: config.step.as_secs(),
            p99_max_ms: config.p99_max_ms,
            rates: config.rates.clone(),
            target: "all load to node 1 of each cluster",
            kamailio_children: config.kamailio_children,
            roster_groups: config.roster_groups,
            retries: config.retries,
        },
        steps: Vec::new(),
        summary: Vec::new(),
        ratios: Vec::new(),
        memory: Vec::new(),
    };
    if config.rates_enabled {
        for &auth in &config.auths {
            for &system in &config.systems {
                for &driver in &config.drivers {
                    eprintln!(
                        "{} / {} / auth {} ({:.0} s so far)",
                        system.name(),
                        driver.name(),
                        auth.name(),
                        started.elapsed().as_secs_f64()
                    );
                    results
                        .steps
                        .extend(series::run(&config, system, driver, auth)?);
                    save(&mut results, &config)?;
                }
            }
        }
    }
    if let Some((bindings, fill_rate)) = config.memory {
        for &system in &config.systems {
            eprintln!(
                "{}: memory with {bindings} bindings at {fill_rate}/s ({:.0} s so far)",
                system.name(),
                started.elapsed().as_secs_f64()
            );
            let record = memory::run(&config, system, bindings, fill_rate)?;
            eprintln!(
                "  {} registered, {} failed, PSS {} → {} KiB, {:.0} bytes per binding",
                record.bindings_registered,
                record.failures,
                record.pss_before_kib,
                record.pss_after_kib,
                record.bytes_per_binding.unwrap_or(f64::NAN)
            );
            results.memory.push(record);
            save(&mut results, &config)?;
        }
    }
    save(&mut results, &config)?;
    println!("{}", results.markdown());
    eprintln!(
        "registrar-bench: done in {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        config.out.display()
    );
    Ok(())
}

/// Writes the tables and the chart as they stand.
fn save(results: &mut Results, config: &cli::Config) -> anyhow::Result<()> {
    results.summarize();
    results.write(&config.out)?;
    plot::draw(
        &results.steps,
        &config.auths,
        config.p99_max_ms,
        &config.out.join("registrar.svg"),
    )
}
