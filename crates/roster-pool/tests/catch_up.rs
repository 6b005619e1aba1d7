//! A node stopped while writes go on restarts from its disk and catches up: by log when the
//! leader still has the entries it missed, by snapshot when the leader purged them. Either
//! way its replicas end identical to the others'.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    check_acknowledged, check_replicas_agree, raft_options, routing_keys, write_until_ok, Cluster,
    Oracle,
};
use openraft::async_runtime::watch::WatchReceiver;
use roster_raft::config::GroupConfigOptions;
use roster_raft::GroupKey;
use roster_topology::NodeId;

const GROUPS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_catches_up_by_log() {
    let raft = GroupConfigOptions {
        snapshot_logs_since_last: 10_000,
        ..raft_options()
    };
    let cluster = Cluster::start(3, 21, GROUPS, raft).await;
    let oracle = Oracle::default();
    write_users(&cluster, &oracle, 0..10).await;
    cluster.stop_node(3).await;
    write_users(&cluster, &oracle, 10..50).await;
    for group in routing_keys(GROUPS) {
        assert_eq!(
            leader_metrics(&cluster, group).purged,
            None,
            "nothing purged"
        );
    }
    cluster.start_node(3).await;
    let members = check_replicas_agree(&cluster, 21, Duration::from_secs(15)).await;
    assert!(members.values().all(|m| m.contains(&3)), "{members:?}");
    check_acknowledged(&cluster, &oracle, 21).await;
    for node in cluster.all() {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_catches_up_by_snapshot() {
    let raft = GroupConfigOptions {
        snapshot_logs_since_last: 10,
        logs_kept_after_snapshot: 0,
        ..raft_options()
    };
    let cluster = Cluster::start(3, 22, GROUPS, raft).await;
    let oracle = Oracle::default();
    write_users(&cluster, &oracle, 0..10).await;
    let before: BTreeMap<GroupKey, u64> = routing_keys(GROUPS)
        .into_iter()
        .map(|group| {
            let raft = cluster.node(3).raft(group).expect("replica");
            let last = raft.metrics().borrow_watched().last_log_index.unwrap_or(0);
            (group, last)
        })
        .collect();
    cluster.stop_node(3).await;
    write_users(&cluster, &oracle, 10..80).await;
    // The leaders purge behind their snapshots, past what node 3 has: it can only catch up
    // by installing a snapshot.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for group in routing_keys(GROUPS) {
        loop {
            let purged = leader_metrics(&cluster, group).purged.map(|id| id.index);
            if purged.is_some_and(|purged| purged > before[&group]) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "group {group}: leader purged {purged:?}, node 3 has {}",
                before[&group]
            );
            // More entries make the next snapshot and purge.
            write_users(&cluster, &oracle, 80..90).await;
        }
    }
    cluster.start_node(3).await;
    let members = check_replicas_agree(&cluster, 22, Duration::from_secs(15)).await;
    assert!(members.values().all(|m| m.contains(&3)), "{members:?}");
    for group in routing_keys(GROUPS) {
        let raft = cluster.node(3).raft(group).expect("replica");
        let snapshot = raft.metrics().borrow_watched().snapshot;
        assert!(
            snapshot.is_some_and(|id| id.index > before[&group]),
            "group {group}: node 3's snapshot {snapshot:?}"
        );
    }
    check_acknowledged(&cluster, &oracle, 22).await;
    for node in cluster.all() {
        node.shutdown().await;
    }
}

async fn write_users(cluster: &Cluster, oracle: &Oracle, users: std::ops::Range<u32>) {
    let ids: Vec<NodeId> = cluster.ids();
    for user in users {
        let node = cluster.node(ids[user as usize % ids.len()]);
        let cseq = write_until_ok(&node, GROUPS, user, Duration::from_secs(10), 0).await;
        oracle.record(user, cseq, true);
    }
}

fn leader_metrics(cluster: &Cluster, group: GroupKey) -> roster_raft::typ::RaftMetrics {
    for node in cluster.all() {
        if let Some(raft) = node.raft(group) {
            let metrics = raft.metrics().borrow_watched().clone();
            if metrics.current_leader == Some(node.node_id()) {
                return metrics;
            }
        }
    }
    panic!("group {group} has no leader");
}
