//! `roster start`: runs a node from its configuration file in the foreground, and announces on
//! standard output what it listens on and when it is ready (the demo and the tests read these
//! lines).

use std::path::Path;

use roster::config::Config;

use super::runtime::{self, Runtime};

/// Runs the node configured at `config` until SIGINT or SIGTERM.
pub fn start(config: &Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
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
