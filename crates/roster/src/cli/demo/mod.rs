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

use roster::topology::read_topology;

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

/// Where the demo writes its files unless `--dir` says otherwise: a path that exists on every
/// Unix machine whatever `$TMPDIR` says (unset on a fresh Debian), so that README's commands
/// can name it.
pub const DEMO_DIR_DEFAULT: &str = "/tmp/roster-demo";

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
    /// Sources the nodes trust (`[sip] trusted_networks`): no per-source limits, lookups
    /// without credentials. For benchmark drivers; default none.
    pub trusted_networks: Vec<String>,
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
    check_earlier_pool(&options)?;
    let roster = std::env::current_exe().context("cannot find the roster executable")?;
    let password = Alphanumeric.sample_string(&mut rand::rng(), 20);
    files::write_all(&options, &password)?;
    let configs = init::init(&InitOptions {
        topology: options.dir.join(files::TOPOLOGY_FILE),
        dir: options.dir.join("pool"),
        domains: vec![DEMO_DOMAIN.to_string()],
        users: (!options.no_auth).then(|| options.dir.join(files::USERS_FILE)),
        no_auth: options.no_auth,
        // SHA-256 preferred; a challenge offers MD5 alone unless the client asks for SHA-256
        // ([auth] challenge = "single", the default), so SIPp 3.6 and baresip 1.0 register.
        algorithms: vec!["SHA-256".into(), "MD5".into()],
        worker_threads: Some(demo_worker_threads()),
        trusted_networks: options.trusted_networks.clone(),
        given: None,
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
    let users = if options.no_auth { 0 } else { DEMO_USERS };
    let ready = tokio::select! {
        _ = shutdown.cancelled() => Ok(Ok(())),
        ready = tokio::time::timeout(NODES_READY_DEADLINE, async {
            nodes::wait_ready(&mut nodes).await?;
            // The users reach the nodes through the CMS: the demo is ready once every node
            // knows them (a registration before would get 404).
            nodes::wait_directory(&nodes, users).await
        }) => ready,
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

/// The demo's directory keeps its pool between runs (a second `roster demo` restarts it from
/// its disk), but a pool's routing groups are fixed for its life: a run asking for other
/// `--groups` is refused before anything is written, saying how to start afresh.
fn check_earlier_pool(options: &DemoOptions) -> anyhow::Result<()> {
    let earlier = options.dir.join("pool").join(files::TOPOLOGY_FILE);
    if !earlier.exists() {
        return Ok(());
    }
    let deployment = read_topology(&earlier)?;
    let groups = deployment.pool.first().map_or(0, |pool| pool.groups);
    anyhow::ensure!(
        groups == options.groups,
        "{} holds the pool of an earlier demo with {groups} routing groups, and a pool keeps \
         its groups for life: remove it (rm -r {}) or choose another --dir for a demo with \
         --groups {}",
        options.dir.display(),
        options.dir.display(),
        options.groups
    );
    Ok(())
}

/// Worker threads per demo node: the demo's three nodes share this machine's CPUs, so each
/// gets a third of them (at least one) instead of one thread per CPU each, which would only
/// add context switches.
fn demo_worker_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let nodes = usize::try_from(DEMO_NODES).unwrap_or(usize::MAX);
    (cpus / nodes).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &std::path::Path, groups: u32) -> DemoOptions {
        DemoOptions {
            sip: "127.0.0.1:5060".parse().expect("address"),
            dir: dir.to_path_buf(),
            no_auth: false,
            http: "127.0.0.1:8080".parse().expect("address"),
            groups,
            trusted_networks: Vec::new(),
        }
    }

    #[test]
    fn an_earlier_pool_with_other_groups_is_refused_with_the_way_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(
            check_earlier_pool(&options(dir.path(), 8)).is_ok(),
            "no pool yet"
        );
        std::fs::create_dir_all(dir.path().join("pool")).expect("pool dir");
        std::fs::write(
            dir.path().join("pool").join(files::TOPOLOGY_FILE),
            files::topology(&options(dir.path(), 32)),
        )
        .expect("topology");
        assert!(
            check_earlier_pool(&options(dir.path(), 32)).is_ok(),
            "same groups"
        );
        let error = check_earlier_pool(&options(dir.path(), 8))
            .expect_err("other groups")
            .to_string();
        assert!(
            error.contains("32 routing groups") && error.contains("rm -r"),
            "{error}"
        );
    }
}
