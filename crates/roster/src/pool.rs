//! Running a node as a member of a pool: open its database, join the cluster network (QUIC
//! with mutual TLS), start the replicas placement gives it, and serve SIP from them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use roster_net::pki::NodeCertificate;
use roster_net::{AddressBook, Peer, QuicConfig};
use roster_pool::placement;
use roster_pool::{PoolHandler, PoolNode, PoolOptions, Topology};
use roster_raft::config::GroupConfigOptions;
use roster_store::{NodeStore, StoreOptions};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::clock::now_ms;
use crate::config::{Config, PoolConfig};
use crate::node::{build_service, serve, Listening};
use crate::pool_store::PoolStore;

/// How long a pool write or read may take before the client gets `503`: a leader election
/// (0.7–1.4 s) fits, a lost quorum does not hang the client.
const POOL_REQUEST_TIMEOUT: Duration = Duration::from_millis(2_500);

/// How long a request waits for a group with no known leader to elect one.
const LEADER_WAIT: Duration = Duration::from_millis(2_000);

/// The file in a node's data directory that says it has bootstrapped its groups once.
const BOOTSTRAPPED_MARKER: &str = "bootstrapped";

/// Writes the marker durably (file and directory synced).
fn write_marker(path: &std::path::Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// How often the per-group gauges (`roster_group_*`, `roster_node_bindings`) are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Refreshes the node's per-group gauges until `shutdown`.
async fn record_gauges<N: roster_net::Network>(
    node: Arc<PoolNode<N>>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(GAUGE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => node.record_gauges(),
        }
    }
}

/// Every `period`, balances the leaders of the pool's groups when this node leads routing
/// group 0 (see `PoolNode::balance_leaders_if_coordinator`): after a node restarts, elections
/// have left its share of leaderships on the others, and one node leading most groups does
/// most of the pool's work.
async fn balance_leaders<N: roster_net::Network>(
    node: Arc<PoolNode<N>>,
    period: Duration,
    shutdown: CancellationToken,
) {
    let start = tokio::time::Instant::now() + period;
    let mut ticks = tokio::time::interval_at(start, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match node.balance_leaders_if_coordinator().await {
            Ok(Some(transfers)) if transfers > 0 => {
                info!(node = node.node_id(), transfers, "leaders balanced");
            }
            Ok(_) => {}
            // A group without a leader right now: the next run tries again.
            Err(error) => debug!(node = node.node_id(), %error, "leader balancing skipped"),
        }
    }
}

/// Reads the topology file of a pool.
pub fn read_topology(path: &std::path::Path) -> anyhow::Result<Topology> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read topology file {}", path.display()))?;
    Topology::parse(&text).with_context(|| format!("in topology file {}", path.display()))
}

/// Runs this node of the pool until `shutdown`.
pub async fn run(
    config: Config,
    pool: PoolConfig,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    let topology = read_topology(&pool.topology)?;
    let own = topology
        .node
        .iter()
        .find(|node| node.id == pool.node_id)
        .with_context(|| format!("node id {} is not in the topology", pool.node_id))?
        .clone();
    let ca = roster_net::pki::read_pem_file(&pool.ca_certificate)?;
    let certificate = NodeCertificate::read_files(&pool.node_certificate, &pool.node_private_key)?;
    let identity = Peer {
        pool: topology.pool.id,
        node: pool.node_id,
    };
    anyhow::ensure!(
        certificate.peer == identity,
        "certificate {} is for {}, this node is {identity}",
        pool.node_certificate.display(),
        certificate.peer,
    );
    let peers = AddressBook::new();
    for node in &topology.node {
        let peer = Peer {
            pool: topology.pool.id,
            node: node.id,
        };
        peers.insert(peer, node.cluster);
    }
    let store = NodeStore::open_with(&StoreOptions {
        path: pool.data_dir.clone(),
        cache_capacity_bytes: pool.cache_bytes,
    })
    .with_context(|| format!("cannot open database {}", pool.data_dir.display()))?;
    let handler = Arc::new(PoolHandler::default());
    let mut quic = QuicConfig::new(own.cluster, ca, &certificate, peers);
    // Pools are not paired yet: a node talks to its own pool only.
    quic.partner = None;
    let server = roster_net::bind(quic, handler.clone(), shutdown.child_token())
        .with_context(|| format!("cannot bind the cluster transport on {}", own.cluster))?;
    let ids = topology.node_ids();
    let options = PoolOptions {
        node_id: pool.node_id,
        pool: topology.pool.id,
        groups: topology.pool.groups,
        epoch: pool.epoch,
        raft: GroupConfigOptions {
            cluster_name: topology.pool.name.clone(),
            heartbeat_interval_ms: pool.heartbeat_interval_ms,
            election_timeout_min_ms: pool.election_timeout_ms.0,
            election_timeout_max_ms: pool.election_timeout_ms.1,
            ..GroupConfigOptions::default()
        },
        policy: config.policy.clone(),
        request_timeout: POOL_REQUEST_TIMEOUT,
        leader_wait: LEADER_WAIT,
    };
    let assignment = placement::initial(&ids, &options.keys());
    let node = PoolNode::start(options, store, server.network(), &assignment, now_ms)
        .await
        .context("cannot start the routing groups")?;
    handler.attach(&node);
    let addresses: BTreeMap<u64, String> = topology
        .node
        .iter()
        .map(|n| (n.id, n.cluster.to_string()))
        .collect();
    // Bootstrap only when the pool is created: a node that has ever bootstrapped keeps a
    // marker, and never initializes groups again (after moves, `placement::initial` is not the
    // live layout, and initializing a group there would create a second copy of it).
    // A joining node writes the marker at once: it must never initialize, even if its
    // configuration later loses `join`.
    let marker = pool.data_dir.join(BOOTSTRAPPED_MARKER);
    if pool.join && !marker.exists() {
        info!(
            node = pool.node_id,
            "joining a running pool: replicas come by moves"
        );
        write_marker(&marker)?;
    }
    if !marker.exists() {
        node.bootstrap(&assignment, &addresses)
            .await
            .context("cannot initialize the routing groups")?;
        write_marker(&marker)?;
    }
    info!(
        node = pool.node_id,
        pool = %topology.pool.name,
        groups = node.groups().len(),
        cluster = %own.cluster,
        "pool node started"
    );
    let service = Arc::new(build_service(
        &config,
        PoolStore::new(node.clone(), topology.pool.groups),
    )?);
    let admin: Arc<dyn crate::admin::Admin> = Arc::new(crate::admin::PoolAdmin::new(
        node.clone(),
        server.network(),
        pool.topology.clone(),
    ));
    let gauges = tokio::spawn(record_gauges(node.clone(), shutdown.clone()));
    let balancer = pool
        .leader_balance_interval
        .map(|period| tokio::spawn(balance_leaders(node.clone(), period, shutdown.clone())));
    let result = serve(&config, service, Some(admin), shutdown, on_ready).await;
    gauges.abort();
    if let Some(balancer) = balancer {
        balancer.abort();
    }
    node.shutdown().await;
    server.shutdown().await;
    result
}
