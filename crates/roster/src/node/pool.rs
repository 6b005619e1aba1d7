//! Running a node as a member of a pool: open its database, join the cluster network (QUIC
//! with mutual TLS), start the replicas placement gives it, bootstrap the pool's groups once,
//! and serve SIP from them with the pool's admin operations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use roster_net::pki::NodeCertificate;
use roster_net::{AddressBook, Peer, QuicConfig, QuicNetwork};
use roster_pool::placement::{self, Assignment};
use roster_pool::{PoolHandler, PoolNode, PoolOptions, Topology};
use roster_raft::config::GroupConfigOptions;
use roster_store::{NodeStore, StoreOptions};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{listeners, service, tasks, Listening};
use crate::admin_api::AdminToken;
use crate::clock::now_ms;
use crate::config::{Config, PoolConfig};
use crate::http::admin::{Admin, AdminAccess};
use crate::pool_admin::PoolAdmin;
use crate::store::PoolStore;
use crate::topology::read_topology;

/// How long a pool write or read may take before the client gets `503`: a leader election
/// (0.7–1.4 s) fits, a lost quorum does not hang the client.
const POOL_REQUEST_TIMEOUT: Duration = Duration::from_millis(2_500);

/// How long a request waits for a group with no known leader to elect one.
const LEADER_WAIT: Duration = Duration::from_millis(2_000);

/// The file in a node's data directory that says it has bootstrapped its groups once.
const BOOTSTRAPPED_MARKER: &str = "bootstrapped";

/// Runs this node of the pool until `shutdown`.
pub(super) async fn run(
    config: Config,
    pool: PoolConfig,
    admin_token: Option<AdminToken>,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    let topology = read_topology(&pool.topology)?;
    let own_cluster = topology
        .node
        .iter()
        .find(|node| node.id == pool.node_id)
        .with_context(|| format!("node id {} is not in the topology", pool.node_id))?
        .cluster;
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
    let mut quic = QuicConfig::new(own_cluster, ca, &certificate, peers);
    // Pools are not paired yet: a node talks to its own pool only.
    quic.partner = None;
    let server = roster_net::bind(quic, handler.clone(), shutdown.child_token())
        .with_context(|| format!("cannot bind the cluster transport on {own_cluster}"))?;
    let options = options(&config, &pool, &topology);
    let assignment = placement::initial(&topology.node_ids(), &options.keys());
    let node = PoolNode::start(options, store, server.network(), &assignment, now_ms)
        .await
        .context("cannot start the routing groups")?;
    handler.attach(&node);
    bootstrap_once(&node, &pool, &topology, &assignment).await?;
    info!(
        node = pool.node_id,
        pool = %topology.pool.name,
        groups = node.groups().len(),
        cluster = %own_cluster,
        "pool node started"
    );
    let service = Arc::new(service::build(
        &config,
        PoolStore::new(node.clone(), topology.pool.groups),
    )?);
    let admin = admin_token.map(|token| AdminAccess {
        admin: Arc::new(PoolAdmin::new(
            node.clone(),
            server.network(),
            pool.topology.clone(),
        )) as Arc<dyn Admin>,
        token,
    });
    let gauges = tokio::spawn(tasks::record_gauges(node.clone(), shutdown.clone()));
    let balancer = pool.leader_balance_interval.map(|period| {
        tokio::spawn(tasks::balance_leaders(
            node.clone(),
            period,
            shutdown.clone(),
        ))
    });
    let result = listeners::serve(&config, service, admin, shutdown, on_ready).await;
    gauges.abort();
    if let Some(balancer) = balancer {
        balancer.abort();
    }
    node.shutdown().await;
    server.shutdown().await;
    result
}

/// The pool node's options from its configuration and the pool's topology.
fn options(config: &Config, pool: &PoolConfig, topology: &Topology) -> PoolOptions {
    PoolOptions {
        node_id: pool.node_id,
        pool: topology.pool.id,
        groups: topology.pool.groups,
        partner: None,
        cms: None,
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
    }
}

/// Initializes the groups of `assignment` when the pool is created, and never again.
///
/// A node that has ever bootstrapped keeps a marker, and never initializes groups again
/// (after moves, `placement::initial` is not the live layout, and initializing a group there
/// would create a second copy of it). A joining node writes the marker at once: it must never
/// initialize, even if its configuration later loses `join`.
async fn bootstrap_once(
    node: &PoolNode<QuicNetwork>,
    pool: &PoolConfig,
    topology: &Topology,
    assignment: &Assignment,
) -> anyhow::Result<()> {
    let marker = pool.data_dir.join(BOOTSTRAPPED_MARKER);
    if pool.join && !marker.exists() {
        info!(
            node = pool.node_id,
            "joining a running pool: replicas come by moves"
        );
        write_marker(&marker)?;
    }
    if !marker.exists() {
        let addresses: BTreeMap<u64, String> = topology
            .node
            .iter()
            .map(|n| (n.id, n.cluster.to_string()))
            .collect();
        node.bootstrap(assignment, &addresses, None)
            .await
            .context("cannot initialize the routing groups")?;
        write_marker(&marker)?;
    }
    Ok(())
}

/// Writes the marker durably (file and directory synced).
fn write_marker(path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
