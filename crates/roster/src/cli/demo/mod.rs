//! `roster demo`: a ready deployment in the foreground, with generated users, password and
//! certificates, for a first look and for benchmarks: two sites with a pool of three
//! `roster start` processes each, paired (each pool backs the other up), the CMS on the first
//! pool, and optionally a WAN latency between the sites; or, with `--sites 1`, one pool of
//! three. The nodes are watched (a node that dies is reported and the others serve on) and
//! stopped together on Ctrl-C.
//!
//! ```text
//! layout    pools, users homed on each, every node's ports (pure)
//! files     users, credentials, SIPp's CSV and the topology, before `roster init`
//! relay     the WAN between the sites: a UDP relay delaying every datagram
//! nodes     the node processes: start, wait until ready, stop
//! restarted finding a node started again outside the demo
//! supervise reports a node that ends, with the command that starts it again
//! commands  what to try, ready to copy (the banner prints them, demo.json lists them)
//! manifest  DIR/demo.json, what a script needs to drive the demo
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
use layout::Layout;
use manifest::{DemoState, Manifest};
use nodes::DemoNode;
use relay::WanRelay;

mod banner;
mod commands;
mod files;
mod layout;
mod manifest;
mod nodes;
mod relay;
mod restarted;
mod supervise;

/// The demo's SIP domain.
pub const DEMO_DOMAIN: &str = "example.com";

/// Users the demo creates: `u0` … `u9999`.
pub const DEMO_USERS: usize = 10_000;

/// The demo users' names are this prefix and a number.
pub const DEMO_USER_PREFIX: &str = "u";

/// Where the demo writes its files unless `--dir` says otherwise: a path that exists on every
/// Unix machine whatever `$TMPDIR` says (unset on a fresh Debian), so that README's commands
/// can name it.
pub const DEMO_DIR_DEFAULT: &str = "/tmp/roster-demo";

/// The demo's default: two sites.
pub const SITES_DEFAULT: u8 = layout::SITES_MAX;

/// The WAN latency of a two-site demo unless `--wan-latency` says otherwise: 20 ms one way,
/// about two data centres in one continent (light in fibre covers some 200 km a millisecond,
/// routes are longer than the crow flies), so that the backup lag shows a real WAN's.
pub const WAN_LATENCY_MS_DEFAULT: u64 = 20;

/// The largest `--wan-latency`: 10 s one way is beyond any real WAN, and bounds what the
/// relay holds back.
pub const WAN_LATENCY_MS_MAX: u64 = 10_000;

/// What `roster demo` was asked for.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Node 1's UDP and TCP address; TLS listens on the next port; the other nodes follow.
    pub sip: SocketAddr,
    /// Where the generated files go.
    pub dir: PathBuf,
    /// Accept any user of the demo domain without a challenge.
    pub no_auth: bool,
    /// Node 1's metrics, health and status; the other nodes follow (port 0: any free port).
    pub http: SocketAddr,
    /// Routing groups of each pool.
    pub groups: u32,
    /// Sources the nodes trust (`[sip] trusted_networks`): no per-source limits, lookups
    /// without credentials. For benchmark drivers; default none.
    pub trusted_networks: Vec<String>,
    /// Sites: 1 (one pool) or 2 (two paired pools).
    pub sites: u8,
    /// One-way delay of everything between the sites (0: none, and no relay).
    pub wan_latency: Duration,
    /// Also run a witness in a third site (two sites only).
    pub witness: bool,
}

/// How long the demo waits for its nodes to report ready and to know every user: six nodes
/// share the machine, and the second site's learn the users through the CMS's backup copy.
const NODES_READY_DEADLINE: Duration = Duration::from_secs(120);

/// Writes the demo's files, starts its pools' `roster start` processes on the loopback
/// address (and the WAN relay between the sites), and runs until `shutdown` (then stops them)
/// or until no node is left.
pub async fn run(mut options: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    check_options(&options)?;
    std::fs::create_dir_all(&options.dir)
        .with_context(|| format!("cannot create demo directory {}", options.dir.display()))?;
    // Absolute, so that every path the demo prints works from any directory.
    options.dir = std::fs::canonicalize(&options.dir)
        .with_context(|| format!("cannot resolve demo directory {}", options.dir.display()))?;
    let layout = Layout::of(&options);
    check_earlier_deployment(&options, &layout)?;
    let roster = std::env::current_exe().context("cannot find the roster executable")?;
    let password = Alphanumeric.sample_string(&mut rand::rng(), 20);
    files::write_all(&options, &layout, &password)?;
    // Without authentication one pool needs no directory (any user registers, homed there);
    // two pools need it for their users' homes.
    let seeded = !options.no_auth || layout.pools.len() > 1;
    let configs = init::init(&InitOptions {
        topology: options.dir.join(files::TOPOLOGY_FILE),
        dir: options.dir.join("pool"),
        domains: vec![DEMO_DOMAIN.to_string()],
        users: seeded.then(|| options.dir.join(files::USERS_FILE)),
        no_auth: options.no_auth,
        // SHA-256 preferred; a challenge offers MD5 alone unless the client asks for SHA-256
        // ([auth] challenge = "single", the default), so SIPp 3.6 and baresip 1.0 register.
        algorithms: vec!["SHA-256".into(), "MD5".into()],
        worker_threads: Some(demo_worker_threads(&layout)),
        trusted_networks: options.trusted_networks.clone(),
        given: None,
    })?;
    let routes = layout.relay_routes();
    // Bound before any node starts: a node dials its partner's fronts from the start.
    let relay = match routes.is_empty() {
        true => None,
        false => Some(WanRelay::start(&routes, options.wan_latency)?),
    };
    // The witness first: the nodes send it heartbeats from their start.
    let mut witness = match (
        &layout.witness,
        init::witness_config(&options.dir.join("pool"))?,
    ) {
        (Some(plan), Some(config)) => {
            let log = options.dir.join(format!("witness-{}.log", plan.id));
            let mut started = vec![DemoNode::start_witness(plan.id, &config, &log)?];
            let ready = tokio::time::timeout(NODES_READY_DEADLINE, nodes::wait_ready(&mut started))
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "the demo's witness was not ready within {NODES_READY_DEADLINE:?}; see {}",
                        log.display()
                    ))
                });
            if let Err(error) = ready {
                nodes::stop(&mut started).await;
                return Err(error);
            }
            started
        }
        _ => Vec::new(),
    };
    let mut nodes = Vec::new();
    for (id, config) in configs {
        let log = options.dir.join(format!("node-{id}.log"));
        let pool = layout.pool_of(id).map_or("", |pool| pool.name);
        match DemoNode::start(id, pool, &config, &log) {
            Ok(node) => nodes.push(node),
            Err(error) => {
                nodes::stop(&mut nodes).await;
                nodes::stop(&mut witness).await;
                return Err(error);
            }
        }
    }
    let manifest = |nodes: &[DemoNode], witness: Option<&DemoNode>, state| {
        let written =
            Manifest::new(&options, &layout, nodes, witness, state, &roster).write(&options.dir);
        if let Err(error) = written {
            eprintln!("roster demo: {error:#}");
        }
    };
    manifest(&nodes, witness.first(), DemoState::Starting);
    let users = if seeded { DEMO_USERS } else { 0 };
    let ready = tokio::select! {
        _ = shutdown.cancelled() => Ok(Ok(())),
        ready = tokio::time::timeout(NODES_READY_DEADLINE, async {
            nodes::wait_ready(&mut nodes).await?;
            // The users reach the nodes through the CMS (the second pool's through its
            // backup copy): the demo is ready once every node knows them (a registration
            // before would get 404).
            nodes::wait_directory(&nodes, users).await
        }) => ready,
    };
    let outcome = match ready {
        Ok(Ok(())) if shutdown.is_cancelled() => Ok(()),
        Ok(Ok(())) => {
            manifest(&nodes, witness.first(), DemoState::Ready);
            print!(
                "{}",
                banner::banner(
                    &options,
                    &layout,
                    &nodes,
                    witness.first(),
                    &password,
                    &roster
                )
            );
            let watch = supervise::Watch {
                layout: &layout,
                roster: &roster,
                on_change: &|nodes: &[DemoNode], witness: &[DemoNode]| {
                    manifest(nodes, witness.first(), DemoState::Ready)
                },
            };
            supervise::supervise(&mut nodes, &mut witness, &watch, &shutdown).await
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(anyhow::anyhow!(
            "the demo nodes were not ready within {NODES_READY_DEADLINE:?}; see {}/node-*.log",
            options.dir.display()
        )),
    };
    nodes::stop(&mut nodes).await;
    // The witness after the nodes: a node that lost it while serving would fence itself.
    nodes::stop(&mut witness).await;
    manifest(&nodes, witness.first(), DemoState::Stopped);
    // The relay goes last: the nodes it connects are stopped.
    if let Some(relay) = relay {
        let stats = relay.stats();
        println!(
            "roster demo: the WAN relay delayed {} datagrams and dropped {} at its bounds",
            stats.relayed.load(std::sync::atomic::Ordering::Relaxed),
            stats.dropped.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    outcome
}

/// Refuses options the demo cannot lay out, naming the flag.
fn check_options(options: &DemoOptions) -> anyhow::Result<()> {
    let base = options.sip.port();
    anyhow::ensure!(
        base != 0 && base <= 60_000,
        "--sip needs a fixed port of 60000 or below (the demo uses ports up to {} above it)",
        layout::PORT_OFFSET_MAX
    );
    if options.sites > 1 {
        for (flag, address) in [("--sip", options.sip.ip()), ("--http", options.http.ip())] {
            if let Some(refusal) = layout::two_sites_refusal(address, options.witness) {
                anyhow::bail!("{flag} {refusal}");
            }
        }
    }
    anyhow::ensure!(
        (1..=layout::SITES_MAX).contains(&options.sites),
        "--sites {} is out of range: 1 (one pool) or 2 (two paired pools)",
        options.sites
    );
    let latency_ms = options.wan_latency.as_millis();
    anyhow::ensure!(
        latency_ms <= u128::from(WAN_LATENCY_MS_MAX),
        "--wan-latency {latency_ms} is above {WAN_LATENCY_MS_MAX} ms"
    );
    anyhow::ensure!(
        latency_ms == 0 || options.sites > 1,
        "--wan-latency needs two sites: with --sites 1 nothing crosses a WAN"
    );
    anyhow::ensure!(
        !options.witness || options.sites > 1,
        "--witness needs two sites: a witness watches a pair of pools"
    );
    Ok(())
}

/// The demo's directory keeps its deployment between runs (a second `roster demo` restarts it
/// from its disk), but a pool's routing groups are fixed for its life, and a one-pool demo's
/// pool does not become half of a pair: a run asking for other `--groups` or `--sites` is
/// refused before anything is written, saying how to start afresh.
fn check_earlier_deployment(options: &DemoOptions, layout: &Layout) -> anyhow::Result<()> {
    let earlier = options.dir.join("pool").join(files::TOPOLOGY_FILE);
    if !earlier.exists() {
        return Ok(());
    }
    let deployment = read_topology(&earlier)?;
    let pools: Vec<&str> = deployment
        .pool
        .iter()
        .map(|pool| pool.name.as_str())
        .collect();
    let wanted: Vec<&str> = layout.pools.iter().map(|pool| pool.name).collect();
    let dir = options.dir.display();
    anyhow::ensure!(
        pools == wanted,
        "{dir} holds an earlier demo with {} ({}), and this one asks for {} (--sites {}): \
         remove it (rm -r {dir}) or choose another --dir",
        sites_phrase(pools.len()),
        pools.join(", "),
        sites_phrase(wanted.len()),
        options.sites,
    );
    let groups = deployment.pool.first().map_or(0, |pool| pool.groups);
    anyhow::ensure!(
        groups == options.groups,
        "{dir} holds the pool of an earlier demo with {groups} routing groups, and a pool keeps \
         its groups for life: remove it (rm -r {dir}) or choose another --dir for a demo with \
         --groups {}",
        options.groups
    );
    Ok(())
}

fn sites_phrase(pools: usize) -> &'static str {
    if pools == 1 {
        "one pool"
    } else {
        "two sites"
    }
}

/// Worker threads per demo node: the demo's nodes share this machine's CPUs, so each gets its
/// share of them (at least one) instead of one thread per CPU each, which would only add
/// context switches.
fn demo_worker_threads(layout: &Layout) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cpus / layout.nodes().count().max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &std::path::Path, groups: u32, sites: u8) -> DemoOptions {
        DemoOptions {
            sip: "127.0.0.1:5060".parse().expect("address"),
            dir: dir.to_path_buf(),
            no_auth: false,
            http: "127.0.0.1:8080".parse().expect("address"),
            groups,
            trusted_networks: Vec::new(),
            sites,
            wan_latency: Duration::ZERO,
            witness: false,
        }
    }

    fn check(options: &DemoOptions) -> anyhow::Result<()> {
        check_earlier_deployment(options, &Layout::of(options))
    }

    #[test]
    fn an_earlier_deployment_of_another_shape_is_refused_with_the_way_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(check(&options(dir.path(), 8, 1)).is_ok(), "no pool yet");
        std::fs::create_dir_all(dir.path().join("pool")).expect("pool dir");
        let earlier = options(dir.path(), 32, 1);
        std::fs::write(
            dir.path().join("pool").join(files::TOPOLOGY_FILE),
            Layout::of(&earlier).topology(earlier.groups),
        )
        .expect("topology");
        assert!(check(&options(dir.path(), 32, 1)).is_ok(), "same groups");
        let error = check(&options(dir.path(), 8, 1))
            .expect_err("other groups")
            .to_string();
        assert!(
            error.contains("32 routing groups") && error.contains("rm -r"),
            "{error}"
        );
        let error = check(&options(dir.path(), 32, 2))
            .expect_err("other sites")
            .to_string();
        assert!(
            error.contains("earlier demo with one pool (demo)")
                && error.contains("asks for two sites (--sites 2)")
                && error.contains("rm -r"),
            "{error}"
        );
    }

    #[test]
    fn options_the_demo_cannot_lay_out_are_refused_by_flag() {
        let dir = std::path::Path::new("/tmp/roster-demo");
        assert!(check_options(&options(dir, 32, 2)).is_ok());
        let refused =
            |options: DemoOptions| check_options(&options).expect_err("refused").to_string();
        assert!(refused(options(dir, 32, 3)).contains("--sites 3"));
        let mut latency = options(dir, 32, 1);
        latency.wan_latency = Duration::from_millis(50);
        assert!(refused(latency.clone()).contains("--wan-latency needs two sites"));
        latency.sites = 2;
        assert!(check_options(&latency).is_ok());
        latency.wan_latency = Duration::from_millis(WAN_LATENCY_MS_MAX + 1);
        assert!(refused(latency).contains("--wan-latency 10001"));
        let mut witness = options(dir, 32, 1);
        witness.witness = true;
        assert!(refused(witness.clone()).contains("--witness needs two sites"));
        witness.sites = 2;
        assert!(check_options(&witness).is_ok());
        let mut high = options(dir, 32, 2);
        high.sip = "127.0.0.1:60001".parse().expect("address");
        assert!(refused(high).contains("--sip"));
        let mut wildcard = options(dir, 32, 2);
        wildcard.http = "0.0.0.0:8080".parse().expect("address");
        assert!(refused(wildcard.clone()).contains("--http 0.0.0.0"));
        wildcard.sites = 1;
        assert!(
            check_options(&wildcard).is_ok(),
            "one site keeps one address"
        );
    }
}
