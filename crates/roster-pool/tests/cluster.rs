//! In-process pools over the simulated network: leader loss, partitions, restarts. After
//! healing, every acknowledged registration is present and every replica agrees.

mod common;

use common::register;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use roster_net::{Peer, SimEndpoint, SimNetwork};
use roster_pool::placement::{self, Assignment};
use roster_pool::{PoolError, PoolHandler, PoolNode, PoolOptions};
use roster_raft::config::GroupConfigOptions;
use roster_raft::{group_of, GroupKey, GroupResponse};
use roster_registrar::Policy;
use roster_store::NodeStore;
use roster_topology::NodeId;

const GROUPS: u32 = 4;
const T0: u64 = 1_795_378_472_000;

fn clock() -> u64 {
    // Wall time is fine: the assertions only need bindings to be live for an hour.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(T0)
}

/// The pool id of the test pool.
const POOL: roster_topology::PoolId = 1;

/// The routing group of `aor`.
fn key_of(aor: &str) -> GroupKey {
    GroupKey::routing(POOL, group_of(aor, GROUPS))
}

fn keys() -> Vec<GroupKey> {
    (0..GROUPS)
        .map(|group| GroupKey::routing(POOL, group))
        .collect()
}

fn options(node_id: NodeId) -> PoolOptions {
    PoolOptions {
        node_id,
        pool: POOL,
        groups: GROUPS,
        partner: None,
        cms: None,
        raft: GroupConfigOptions {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_logs_since_last: 50,
            logs_kept_after_snapshot: 10,
            ..GroupConfigOptions::default()
        },
        policy: Policy::default(),
        request_timeout: Duration::from_secs(3),
        leader_wait: Duration::from_secs(3),
        detection_interval: roster_pool::DETECTION_INTERVAL_DEFAULT,
        witness: None,
    }
}

struct Cluster {
    network: SimNetwork,
    dir: tempfile::TempDir,
    assignment: Assignment,
    nodes: BTreeMap<NodeId, Arc<PoolNode<SimEndpoint>>>,
}

impl Cluster {
    async fn start(count: u64, seed: u64) -> Cluster {
        let ids: Vec<NodeId> = (1..=count).collect();
        let mut cluster = Cluster {
            network: SimNetwork::new(seed),
            dir: tempfile::tempdir().expect("temp dir"),
            assignment: placement::initial(&ids, &keys()),
            nodes: BTreeMap::new(),
        };
        for id in ids {
            cluster.start_node(id).await;
        }
        let addresses: BTreeMap<NodeId, String> =
            (1..=count).map(|id| (id, format!("node-{id}"))).collect();
        for node in cluster.nodes.values() {
            node.bootstrap(&cluster.assignment, &addresses, None)
                .await
                .expect("bootstrap");
        }
        cluster
    }

    async fn start_node(&mut self, id: NodeId) {
        let handler = Arc::new(PoolHandler::default());
        let endpoint = self.network.endpoint(
            Peer {
                pool: POOL,
                node: id,
            },
            handler.clone(),
        );
        let store = NodeStore::open(self.dir.path().join(format!("node-{id}"))).expect("store");
        let node = PoolNode::start(options(id), store, endpoint, &self.assignment, clock)
            .await
            .expect("start node");
        handler.attach(&node);
        self.nodes.insert(id, node);
    }

    async fn stop_node(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            self.network.remove(id);
            node.shutdown().await;
        }
    }

    fn node(&self, id: NodeId) -> &Arc<PoolNode<SimEndpoint>> {
        &self.nodes[&id]
    }

    fn any_node(&self) -> &Arc<PoolNode<SimEndpoint>> {
        self.nodes.values().next().expect("a node")
    }
}

/// Writes through `node` until acknowledged or the deadline passes.
async fn write_until_ok(node: &PoolNode<SimEndpoint>, user: u32, cseq: u32) -> GroupResponse {
    let (aor, command) = register(user, cseq);
    let group = key_of(&aor);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match node.write(group, command.clone()).await {
            Ok(response) => return response,
            Err(PoolError::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("write of u{user} failed: {error}"),
        }
    }
}

async fn assert_registered(node: &PoolNode<SimEndpoint>, users: impl Iterator<Item = u32>) {
    for user in users {
        let aor = format!("sip:u{user}@example.com");
        let bindings = node
            .read(key_of(&aor), &aor, clock())
            .await
            .unwrap_or_else(|error| panic!("read of {aor}: {error}"));
        assert_eq!(bindings.len(), 1, "{aor} lost its binding");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_linearizable_reads_through_any_node() {
    let cluster = Cluster::start(3, 1).await;
    for user in 0..40 {
        let node = cluster.node(1 + u64::from(user % 3));
        let response = write_until_ok(node, user, 1).await;
        assert!(
            matches!(response, GroupResponse::Registered { .. }),
            "{response:?}"
        );
    }
    for id in 1..=3 {
        assert_registered(cluster.node(id), 0..40).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_loss_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start(3, 2).await;
    for user in 0..30 {
        write_until_ok(cluster.any_node(), user, 1).await;
    }
    // Stop the node leading group 0.
    let aor = "sip:u0@example.com";
    let group = key_of(aor);
    let leader = cluster
        .any_node()
        .raft(group)
        .and_then(|raft| raft.metrics().borrow_watched().current_leader)
        .expect("a leader");
    cluster.stop_node(leader).await;
    let started = std::time::Instant::now();
    let survivor = cluster.any_node().clone();
    write_until_ok(&survivor, 0, 2).await;
    let unavailable = started.elapsed();
    assert!(
        unavailable < Duration::from_secs(5),
        "writes back after {unavailable:?}"
    );
    for user in 30..60 {
        write_until_ok(&survivor, user, 1).await;
    }
    assert_registered(&survivor, 0..60).await;
    // The stopped node restarts from its disk and catches up.
    cluster.start_node(leader).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_registered(cluster.node(leader), 0..60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_side_refuses_quickly_and_majority_serves() {
    let cluster = Cluster::start(3, 3).await;
    for user in 0..10 {
        write_until_ok(cluster.any_node(), user, 1).await;
    }
    cluster.network.partition(&[3], &[1, 2]);
    // The majority side elects where needed and serves.
    for user in 10..20 {
        write_until_ok(cluster.node(1), user, 1).await;
    }
    // Node 3 alone: refused with Unavailable, not a hang.
    let (aor, command) = register(99, 1);
    let started = std::time::Instant::now();
    let result = cluster.node(3).write(key_of(&aor), command).await;
    assert!(
        matches!(result, Err(PoolError::Unavailable { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    cluster.network.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_registered(cluster.node(3), 0..20).await;
}

use openraft::async_runtime::watch::WatchReceiver;
