//! A full disk on one node of a pool (its store's flushes fail, as on `ENOSPC`): its store is
//! poisoned and its replicas stop. It reports itself unhealthy, still serves writes and reads
//! of every group by forwarding them to the leaders elsewhere, and once the disk takes writes
//! again it opens its store and replicas again from disk by itself. Nothing acknowledged is
//! lost, and the replicas agree.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use openraft::async_runtime::watch::WatchReceiver;
use roster_raft::group_of;

const GROUPS: u32 = 4;
const WRITERS: u32 = 3;
const USERS_PER_WRITER: u32 = 20;

/// Bound on each wait of these tests: generous, as other builds share the machine's CPUs.
const WAIT: Duration = Duration::from_secs(30);

/// Waits until `condition` holds, polling, for at most [`WAIT`]; `what` names it on failure.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < WAIT, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// A user whose AOR is in routing group `group`, from `from` on.
fn user_in(group: u32, from: u32) -> u32 {
    (from..)
        .find(|user| group_of(&format!("sip:u{user}@example.com"), GROUPS) == group)
        .expect("some user is in every group")
}

/// How many of `node`'s replicas have a stopped Raft.
fn stopped_replicas(node: &Node) -> usize {
    node.groups()
        .into_iter()
        .filter_map(|group| node.raft(group))
        .filter(|raft| raft.metrics().borrow_watched().running_state.is_err())
        .count()
}

/// The generation of each of `node`'s replicas, from its status document.
fn generations(node: &Node) -> Vec<u64> {
    node.status()["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|group| group["generation"].as_u64().expect("generation"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_full_disk_forwards_reports_itself_unhealthy_and_recovers_when_space_returns() {
    let seed = 19;
    let cluster = Cluster::start(3, seed, GROUPS, raft_options()).await;
    let oracle = Arc::new(Oracle::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                cluster.nodes.clone(),
                GROUPS,
                w * USERS_PER_WRITER..(w + 1) * USERS_PER_WRITER,
                seed * 100 + u64::from(w),
                oracle.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let full = cluster.node(2);
    let disk = cluster.disk(2);
    assert!(full.healthy(), "{:?}", full.unhealthy_reason());
    let before = generations(&full);

    disk.set_full(true);
    let noticed = wait_until("the full node reports itself unhealthy", || {
        !full.healthy() && stopped_replicas(&full) > 0
    })
    .await;
    eprintln!(
        "full disk: unhealthy after {noticed:?} ({:?}), {} replica(s) stopped",
        full.unhealthy_reason(),
        stopped_replicas(&full)
    );
    // Every group is served through the full node, forwarded to its leader elsewhere.
    for group in 0..GROUPS {
        let user = user_in(group, 10_000 + group * 1_000);
        let cseq = write_until_ok(&full, GROUPS, user, WAIT, seed).await;
        oracle.record(user, cseq, true);
        let aor = format!("sip:u{user}@example.com");
        let bindings = read_until_ok(&full, GROUPS, &aor, WAIT).await;
        assert_eq!(
            bindings.len(),
            1,
            "group {group}: {aor} read through the full node"
        );
    }
    // No recovery while the disk is full: the probes fail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!full.healthy(), "healthy while its disk is still full");

    let freed = Instant::now();
    disk.set_full(false);
    wait_until("the node is healthy again after its disk has room", || {
        full.healthy() && stopped_replicas(&full) == 0 && full.groups().len() == before.len()
    })
    .await;
    eprintln!(
        "full disk: healthy again {:?} after the space returned",
        freed.elapsed()
    );
    let after = generations(&full);
    assert!(
        after.iter().all(|generation| !before.contains(generation)),
        "every replica was opened again: {before:?} then {after:?}"
    );

    // The reopened replicas take part again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = 0;
    for handle in writers {
        let outcomes = handle.await.expect("writer");
        assert_eq!(outcomes.refused, 0, "a write was applied twice");
        acknowledged += outcomes.acknowledged;
    }
    assert!(acknowledged > 0);
    check_acknowledged(&cluster, &oracle, seed).await;
    let members = check_replicas_agree(&cluster, seed, WAIT).await;
    assert!(
        members.values().all(|members| members.contains(&2)),
        "node 2 is still a member of every group: {members:?}"
    );
    for node in cluster.all() {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_raft_stopped_is_opened_again() {
    let seed = 20;
    let cluster = Cluster::start(3, seed, GROUPS, raft_options()).await;
    let node = cluster.node(1);
    let group = routing_keys(GROUPS)[0];
    let user = user_in(0, 1);
    let cseq = write_until_ok(&node, GROUPS, user, WAIT, seed).await;
    let before = generations(&node);

    // What openraft does on a fatal error: the Raft stops for good in this instance.
    node.raft(group)
        .expect("a replica of group 0")
        .shutdown()
        .await
        .expect("raft stops");
    assert!(!node.healthy(), "unhealthy with a stopped replica");
    // Served meanwhile through the others.
    let next = write_until_ok(&node, GROUPS, user_in(0, user + 1), WAIT, seed).await;
    assert!(next >= 1);
    let took = wait_until("the stopped replica runs again", || {
        node.healthy() && stopped_replicas(&node) == 0 && node.raft(group).is_some()
    })
    .await;
    eprintln!("stopped replica: running again after {took:?}");
    let after = generations(&node);
    let changed = before
        .iter()
        .zip(&after)
        .filter(|(before, after)| before != after)
        .count();
    assert_eq!(
        changed, 1,
        "only the stopped replica was opened again: {before:?}, {after:?}"
    );
    let bindings = read_until_ok(&node, GROUPS, &format!("sip:u{user}@example.com"), WAIT).await;
    assert_eq!(bindings.first().map(|binding| binding.cseq), Some(cseq));
    check_replicas_agree(&cluster, seed, WAIT).await;
    for node in cluster.all() {
        node.shutdown().await;
    }
}
