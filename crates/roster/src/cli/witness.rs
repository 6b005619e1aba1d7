//! `roster witness --config FILE`: runs the witness of a pair of pools in the foreground
//! (`roster::witness`), announcing on standard output where it listens; `roster witness status
//! --http ADDR`: what a running witness has heard of each pool, as a table or JSON.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use roster::witness::{WitnessConfig, WitnessStatus, WITNESS_STATUS_PATH};

use super::args::Format;
use super::runtime::{self, Runtime};

/// Largest status document read: two pools and an ownership view are a few hundred bytes.
const STATUS_SIZE_MAX: u64 = 64 * 1024;

/// How long `roster witness status` waits for the witness's answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the witness configured at `config_path` until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = WitnessConfig::load(config_path)?;
    runtime::serve(Runtime::MultiThread(Some(2)), |shutdown| async move {
        roster::witness::run(config, shutdown, |listening| {
            println!("roster: witness quic {}", listening.quic);
            if let Some(http) = listening.http {
                println!("roster: http {http}");
            }
            println!("roster: ready");
        })
        .await
    })
}

/// Prints what the witness at `http` has heard.
pub fn status(http: SocketAddr, format: Format) -> anyhow::Result<()> {
    let request = format!("GET {WITNESS_STATUS_PATH} HTTP/1.0\r\nHost: {http}\r\n\r\n");
    runtime::serve(Runtime::CurrentThread, |_| async move {
        let (code, body) =
            roster::http_client::exchange(http, &request, STATUS_SIZE_MAX, STATUS_TIMEOUT)
                .await
                .map_err(|error| {
                    anyhow::anyhow!("the witness at {http} does not answer: {error}")
                })?;
        print_status(http, code, &body, format)
    })
}

fn print_status(http: SocketAddr, code: u16, body: &str, format: Format) -> anyhow::Result<()> {
    anyhow::ensure!(code == 200, "the witness at {http} answered {code}: {body}");
    let status: WitnessStatus = serde_json::from_str(body).with_context(|| {
        format!("the witness at {http} answered something else than its status")
    })?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Format::Table => {
            println!("witness {}", status.id);
            println!(
                "{:<10} {:>10} {:<6} {:<14}",
                "POOL", "SILENT_S", "HEARD", "REPORTED_LOST"
            );
            for heard in &status.report.pools {
                println!(
                    "{:<10} {:>10.1} {:<6} {:<14}",
                    status.pool_name(heard.pool),
                    heard.silent_ms as f64 / 1000.0,
                    if heard.heard { "yes" } else { "never" },
                    if heard.reported_lost { "yes" } else { "no" }
                );
            }
            for (&pool, ownership) in &status.report.view.pools {
                println!(
                    "pool {}'s users: owned by pool {} at epoch {}",
                    status.pool_name(pool),
                    status.pool_name(ownership.owner),
                    ownership.epoch
                );
            }
        }
    }
    Ok(())
}
