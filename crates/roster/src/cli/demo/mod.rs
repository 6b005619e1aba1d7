//! `roster demo`: a ready deployment in the foreground, with generated users, password and
//! certificates, for a first look and for benchmarks: a pool of three `roster start`
//! processes, watched (a node that dies is reported and the others serve on), stopped
//! together on Ctrl-C.
//!
//! ```text
//! files     users, credentials, SIPp's CSV and the topology, before `roster init`
//! nodes     the node processes: start, wait until ready, stop
//! supervise reports a node that ends, with the command that starts it again
//! banner    what the demo prints once its nodes are ready
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use rand::distr::{Alphanumeric, SampleString};
use tokio_util::sync::CancellationToken;

use super::init::{self, InitOptions};
use nodes::DemoNode;

mod banner;
mod files;
mod nodes;
mod supervise;

/// The demo's SIP domain.
pub const DEMO_DOMAIN: &str = "example.com";

/// Users the demo creates: `u0` … `u9999`.
pub const DEMO_USERS: usize = 10_000;

/// What `roster demo` was asked for.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// UDP and TCP address; TLS listens on the next port.
    pub sip: SocketAddr,
    /// Where the generated files go.
    pub dir: PathBuf,
    /// Accept any user of the demo domain without a challenge.
    pub no_auth: bool,
    /// Metrics, health and status.
    pub http: SocketAddr,
    /// Routing groups of the pool.
    pub groups: u32,
}

/// Nodes of the demo pool.
pub const DEMO_NODES: u64 = 3;

/// How long the demo waits for its nodes to report ready.
const NODES_READY_DEADLINE: Duration = Duration::from_secs(60);

/// Writes the demo's files, starts a pool of three `roster start` processes on the loopback
/// address, and runs until `shutdown` (then stops them) or until no node is left.
pub async fn run(mut options: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let base = options.sip.port();
    anyhow::ensure!(
        base != 0 && base <= 60_000,
        "--sip needs a fixed port of 60000 or below (the pool uses the ports above it)"
    );
    std::fs::create_dir_all(&options.dir)
        .with_context(|| format!("cannot create demo directory {}", options.dir.display()))?;
    // Absolute, so that every path the demo prints works from any directory.
    options.dir = std::fs::canonicalize(&options.dir)
        .with_context(|| format!("cannot resolve demo directory {}", options.dir.display()))?;
    let roster = std::env::current_exe().context("cannot find the roster executable")?;
    let password = Alphanumeric.sample_string(&mut rand::rng(), 20);
    files::write_all(&options, &password)?;
    let configs = init::init(&InitOptions {
        topology: options.dir.join(files::TOPOLOGY_FILE),
        dir: options.dir.join("pool"),
        domains: vec![DEMO_DOMAIN.to_string()],
        users: (!options.no_auth).then(|| options.dir.join(files::USERS_FILE)),
        no_auth: options.no_auth,
        // MD5 first: SIPp 3.6 and many phones answer only the first challenge, and only MD5.
        // A production pool should list SHA-256 first (RFC 8760 section 2.4).
        algorithms: vec!["MD5".into(), "SHA-256".into()],
        worker_threads: Some(demo_worker_threads()),
    })?;
    let mut nodes = Vec::new();
    for (id, config) in configs {
        let log = options.dir.join(format!("node-{id}.log"));
        match DemoNode::start(id, &config, &log) {
            Ok(node) => nodes.push(node),
            Err(error) => {
                nodes::stop(&mut nodes).await;
                return Err(error);
            }
        }
    }
    let ready = tokio::select! {
        _ = shutdown.cancelled() => Ok(Ok(())),
        ready = tokio::time::timeout(NODES_READY_DEADLINE, nodes::wait_ready(&mut nodes)) => ready,
    };
    let outcome = match ready {
        Ok(Ok(())) if shutdown.is_cancelled() => Ok(()),
        Ok(Ok(())) => {
            print!("{}", banner::banner(&options, &nodes, &password, &roster));
            supervise::supervise(&mut nodes, &roster, &shutdown).await
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(anyhow::anyhow!(
            "the demo nodes were not ready within {NODES_READY_DEADLINE:?}; see {}/node-*.log",
            options.dir.display()
        )),
    };
    nodes::stop(&mut nodes).await;
    outcome
}

/// Worker threads per demo node: the demo's three nodes share this machine's CPUs, so each
/// gets a third of them (at least one) instead of one thread per CPU each, which would only
/// add context switches.
fn demo_worker_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let nodes = usize::try_from(DEMO_NODES).unwrap_or(usize::MAX);
    (cpus / nodes).max(1)
}
