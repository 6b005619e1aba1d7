//! `roster start`: runs a node from its configuration file in the foreground, and announces on
//! standard output what it listens on and when it is ready (the demo and the tests read these
//! lines). `--check-config` checks the configuration and the files it names, and stops there.

use std::path::Path;

use roster::config::{Config, LogFormat};

use super::logging;
use super::runtime::{self, Runtime};

/// Runs the node configured at `config` until SIGINT or SIGTERM; with `check_only`, checks
/// it and prints what was checked instead. `log_format` overrides `[node] log_format`.
pub fn start(
    config_path: &Path,
    log_format: Option<LogFormat>,
    check_only: bool,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    logging::init(log_format.unwrap_or(config.log_format));
    if check_only {
        for line in roster::node::check::check(&config)? {
            println!("ok: {line}");
        }
        println!("{}: the node can start", config_path.display());
        return Ok(());
    }
    runtime::serve(
        Runtime::MultiThread(config.worker_threads),
        |shutdown| async move {
            roster::node::run(config, shutdown, |listening| {
                for (transport, address) in &listening.sip {
                    println!("roster: sip {} {address}", transport.as_str());
                }
                if let Some(address) = listening.http {
                    println!("roster: http {address}");
                }
                println!("roster: ready");
            })
            .await
        },
    )
}
