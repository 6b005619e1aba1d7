//! `sites-bench`: the two-site figures of Roster, each from a fresh `roster demo` of two paired
//! pools on loopback (`--no-auth`, trusted drivers), driven by `roster load`:
//! - `rpo`: REGISTERs into both pools at once across a delayed WAN; replication lag per
//!   direction (sampled from `/api/v1/backup`, and every shipped entry's delay from the
//!   nodes' histograms).
//! - `cost`: the highest clean REGISTER rate of one pool with pairing (two sites) beside the
//!   same pool alone (one site), interleaved in one run.
//! - `catch-up`: load on both pools, the inter-site link cut (iptables) and healed; how long
//!   after the heal until every direction lags under 1 s.
//! - `loss`: every node of pool a killed (SIGKILL): when b answers a's users (backup
//!   registrar), `roster pool failover a --disaster` until b answers as their owner, b's
//!   capacity with both pools' users beside its own alone, then a's nodes restarted and
//!   `roster pool failback a` with many users' bindings under load, checked by `--verify`.
//!
//! Every scenario prints its figures and writes them to `OUT/NAME.json`. Run as root (the
//! cut uses iptables), with a release build: `cargo build --release --bin roster -p roster`.

mod cut;
mod demo;
mod http;
mod lag;
mod load;
mod loss;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The two-site figures of Roster.
#[derive(Debug, Parser)]
#[command(name = "sites-bench")]
pub struct Args {
    /// The `roster` executable.
    #[arg(long, default_value = "target/release/roster")]
    pub roster: PathBuf,
    /// Where demos, drivers' reports and the results go.
    #[arg(long, default_value = "/tmp/roster-sites-bench")]
    pub out: PathBuf,
    /// Node 1's SIP port (the demo's nodes use 127.0.0.1 … 127.0.0.6 on this port).
    #[arg(long, default_value_t = 15060)]
    pub sip_port: u16,
    /// Node 1's HTTP port.
    #[arg(long, default_value_t = 18080)]
    pub http_port: u16,
    /// What to measure.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Replication lag per direction under REGISTERs into both pools across a delayed WAN.
    Rpo {
        /// REGISTER/s into each pool.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// One-way inter-site delay, ms.
        #[arg(long, default_value_t = 50)]
        wan_latency: u64,
        /// Seconds of load.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// The highest clean REGISTER rate of pool a with pairing on (two sites) and off (one).
    Cost {
        /// The rate steps.
        #[command(flatten)]
        steps: Steps,
        /// Rounds, each measuring both (the machine's noise shows in their spread).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
        /// One-way inter-site delay of the paired demo, ms.
        #[arg(long, default_value_t = 20)]
        wan_latency: u64,
    },
    /// Lag after the inter-site link is cut and healed under load.
    CatchUp {
        /// REGISTER/s into each pool.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// Seconds the link stays cut.
        #[arg(long, default_value_t = 60)]
        cut_seconds: u64,
        /// One-way inter-site delay, ms.
        #[arg(long, default_value_t = 20)]
        wan_latency: u64,
    },
    /// Losing pool a: backup registrar, failover, capacity, failback.
    Loss {
        /// Users of a registered at b during the failover, then failed back.
        #[arg(long, default_value_t = 100_000)]
        failback_users: u64,
        /// REGISTER/s of those users at b.
        #[arg(long, default_value_t = 2500)]
        fill_rate: u32,
        /// The rate steps.
        #[command(flatten)]
        steps: Steps,
        /// One-way inter-site delay, ms.
        #[arg(long, default_value_t = 20)]
        wan_latency: u64,
    },
}

/// Stepping the offered rate up to the first step that is not clean.
#[derive(Clone, Debug, clap::Args)]
pub struct Steps {
    /// Offered rates stepped through, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,3000,4000,5000,6000,8000"
    )]
    pub rates: Vec<u32>,
    /// Seconds per step.
    #[arg(long, default_value_t = 10)]
    pub step_seconds: u64,
    /// A step is clean with no failure and a p99 under this, ms.
    #[arg(long, default_value_t = 50.0)]
    pub p99_max_ms: f64,
    /// Runs of an unclean step again before the series stops.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    // Drivers run in the demo's directory: the executable by its absolute path.
    if let Ok(roster) = std::fs::canonicalize(&args.roster) {
        args.roster = roster;
    }
    match scenarios::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sites-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
