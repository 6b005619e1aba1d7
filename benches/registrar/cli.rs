//! The command line (`Args`, as typed) and the checked `Config` a run follows.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::driver::DriverKind;
use crate::system::{Auth, SystemKind};

/// Roster against Kamailio as a SIP registrar: the highest clean open-loop REGISTER rate,
/// latency, CPU per registration, and memory per binding.
#[derive(Debug, clap::Parser)]
#[command(name = "registrar-bench")]
pub struct Args {
    /// Where results.md, results.json, registrar.svg and the logs go.
    #[arg(long, value_name = "DIR", default_value = "target/registrar-bench")]
    pub out: PathBuf,
    /// The release `roster` binary (`roster demo`, `roster load`).
    #[arg(long, value_name = "FILE", default_value = "target/release/roster")]
    pub roster: PathBuf,
    /// Kamailio configurations and SIPp scenarios.
    #[arg(long, value_name = "DIR", default_value = "benches/registrar")]
    pub assets: PathBuf,
    /// Offered rates stepped through, REGISTER/s, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,250,500,1000,1500,2000,3000,4000,6000,8000,12000,16000,20000,24000,32000"
    )]
    pub rates: Vec<u32>,
    /// Runs of a rate again when unclean before the series stops: on a shared machine one
    /// scheduling stall can push a 10 s step's p99 over the bound.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Seconds of load per step.
    #[arg(long, default_value_t = 10)]
    pub step_seconds: u64,
    /// A step is clean below this 99th percentile, ms (and with no failure).
    #[arg(long, default_value_t = 50.0)]
    pub p99_max_ms: f64,
    /// Systems measured.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kamailio-single,kamailio-dmq,roster"
    )]
    pub systems: Vec<SystemKind>,
    /// Load generators.
    #[arg(long, value_delimiter = ',', default_value = "sipp,roster-load")]
    pub drivers: Vec<DriverKind>,
    /// Rounds: without authentication, with digest.
    #[arg(long, value_delimiter = ',', default_value = "none,digest")]
    pub auth: Vec<Auth>,
    /// Bindings registered (distinct users) in the memory phase.
    #[arg(long, default_value_t = 1_000_000)]
    pub bindings: u64,
    /// REGISTER/s while filling for the memory phase.
    #[arg(long, default_value_t = 1000)]
    pub fill_rate: u32,
    /// Skip the memory phase.
    #[arg(long)]
    pub skip_memory: bool,
    /// Skip the rate steps (memory phase only).
    #[arg(long)]
    pub skip_rates: bool,
    /// UDP worker processes of each Kamailio node (`children`).
    #[arg(long, default_value_t = 4)]
    pub kamailio_children: u32,
    /// Routing groups of Roster's pool (`roster demo --groups`). The pool's three nodes each hold
    /// a replica of every group, so groups beyond a few per node add per-batch work without
    /// spreading anything; the default sizes them for this three-node pool, two leaders per node.
    #[arg(long, default_value_t = 6)]
    pub roster_groups: u32,
    /// For development: rates 250,2000,8000, 3 s steps, 5,000 bindings at most.
    #[arg(long)]
    pub quick: bool,
    /// After each series, one step at twice its highest clean rate: the goodput (registrations
    /// acknowledged per second) under overload, against the clean rate.
    #[arg(long)]
    pub overload: bool,
}

/// What a run does, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// Output directory (created).
    pub out: PathBuf,
    /// The `roster` binary, absolute.
    pub roster: PathBuf,
    /// Kamailio configurations and SIPp scenarios, absolute.
    pub assets: PathBuf,
    /// Ascending offered rates, REGISTER/s.
    pub rates: Vec<u32>,
    /// Load per step.
    pub step: Duration,
    /// The clean-step latency bound, ms.
    pub p99_max_ms: f64,
    /// Extra runs of an unclean rate.
    pub retries: u32,
    /// Systems, drivers and rounds.
    pub systems: Vec<SystemKind>,
    /// Load generators.
    pub drivers: Vec<DriverKind>,
    /// Rounds.
    pub auths: Vec<Auth>,
    /// The memory phase, unless skipped: bindings and fill rate.
    pub memory: Option<(u64, u32)>,
    /// Whether the rate steps run.
    pub rates_enabled: bool,
    /// Kamailio's `children`.
    pub kamailio_children: u32,
    /// Routing groups of Roster's pool.
    pub roster_groups: u32,
    /// Whether each series ends with a step at twice its highest clean rate.
    pub overload: bool,
}

/// Most bindings `roster load` simulates (its users × endpoints limit).
const BINDINGS_MAX: u64 = 1_000_000;

impl Args {
    /// Checks the flags and resolves paths.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let (rates, step_seconds, bindings) = if self.quick {
            (vec![250, 2000, 8000], 3, self.bindings.min(5_000))
        } else {
            (self.rates, self.step_seconds, self.bindings)
        };
        anyhow::ensure!(!rates.is_empty(), "--rates: at least one rate");
        anyhow::ensure!(
            rates.windows(2).all(|pair| pair[0] < pair[1]) && rates[0] > 0,
            "--rates must be positive and ascending"
        );
        anyhow::ensure!(
            (1..=600).contains(&step_seconds),
            "--step-seconds: 1 to 600"
        );
        anyhow::ensure!(
            (1..=BINDINGS_MAX).contains(&bindings),
            "--bindings: 1 to {BINDINGS_MAX}"
        );
        anyhow::ensure!(self.fill_rate > 0, "--fill-rate must be positive");
        anyhow::ensure!(
            (1..=64).contains(&self.kamailio_children),
            "--kamailio-children: 1 to 64"
        );
        anyhow::ensure!(
            (1..=1024).contains(&self.roster_groups),
            "--roster-groups: 1 to 1024"
        );
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        let absolute = |path: PathBuf, what: &str| {
            std::fs::canonicalize(&path)
                .with_context(|| format!("{what} {} not found", path.display()))
        };
        Ok(Config {
            out: absolute(self.out, "--out")?,
            roster: absolute(self.roster, "--roster")?,
            assets: absolute(self.assets, "--assets")?,
            rates,
            step: Duration::from_secs(step_seconds),
            p99_max_ms: self.p99_max_ms,
            retries: self.retries,
            systems: self.systems,
            drivers: self.drivers,
            auths: self.auth,
            memory: (!self.skip_memory).then_some((bindings, self.fill_rate)),
            rates_enabled: !self.skip_rates,
            kamailio_children: self.kamailio_children,
            roster_groups: self.roster_groups,
            overload: self.overload,
        })
    }
}
