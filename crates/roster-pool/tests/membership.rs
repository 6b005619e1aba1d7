//! Membership changes while writes go on: a fourth node joins and takes its share of replicas,
//! then node 1 drains (Lync's `Invoke-CsComputerFailOver`) and holds nothing; every
//! acknowledged write survives, replicas agree, placement is balanced, and leaders spread.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    check_acknowledged, check_replicas_agree, raft_options, routing_keys, writer, Cluster, Oracle,
    POOL,
};
use openraft::async_runtime::watch::WatchReceiver;
use roster_net::{Handler, Network, Peer, SimEndpoint};
use roster_pool::placement;
use roster_pool::protocol::{decode, encode, Frame, PoolRequest, PoolResponse};
use roster_pool::PoolHandler;
use roster_raft::GroupKey;
use roster_topology::NodeId;

const GROUPS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_a_node_then_drain_one_while_writing() {
    let seed = 11;
    let cluster = Cluster::start(3, seed, GROUPS, raft_options()).await;
    let oracle = Arc::new(Oracle::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            tokio::spawn(writer(
                cluster.nodes.clone(),
                GROUPS,
                w * 20..(w + 1) * 20,
                seed * 10 + u64::from(w),
                oracle.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Node 4 joins: it starts with the pool's creation assignment (which does not name it),
    // so it opens nothing and serves by forwarding until replicas move to it.
    cluster.start_node(4).await;
    assert!(cluster.node(4).groups().is_empty());
    let addresses = cluster.addresses();
    let orchestrator = cluster.node(2);
    let moves = orchestrator
        .rebalance(&[1, 2, 3, 4], &addresses)
        .await
        .expect("rebalance onto node 4");
    assert!(!moves.is_empty());
    assert!(moves.iter().all(|m| m.add == 4), "{moves:?}");
    let assignment = orchestrator.assignment().await.expect("assignment");
    assert_balanced(&assignment, &[1, 2, 3, 4]);
    assert_eq!(
        groups_held(&cluster, 4),
        held_in(&assignment, 4),
        "node 4 opened what it was given"
    );

    // Node 1 drains: its replicas go to the others, and it closes them.
    let moves = orchestrator
        .rebalance(&[2, 3, 4], &addresses)
        .await
        .expect("drain node 1");
    assert!(moves.iter().all(|m| m.remove == Some(1)), "{moves:?}");
    let assignment = orchestrator.assignment().await.expect("assignment");
    assert!(
        assignment.values().all(|r| !r.contains(&1)),
        "{assignment:?}"
    );
    assert_balanced(&assignment, &[2, 3, 4]);
    assert!(
        cluster.node(1).groups().is_empty(),
        "node 1 still holds {:?}",
        cluster.node(1).groups()
    );
    // Running it again finds nothing to do.
    let again = orchestrator
        .rebalance(&[2, 3, 4], &addresses)
        .await
        .expect("rebalance again");
    assert!(again.is_empty(), "{again:?}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = 0;
    for handle in writers {
        acknowledged += handle.await.expect("writer").acknowledged;
    }
    assert!(acknowledged > 0);
    // Reads through every node, node 1 included (it forwards).
    check_acknowledged(&cluster, &oracle, seed).await;
    let members = check_replicas_agree(&cluster, seed, Duration::from_secs(15)).await;
    for (group, members) in &members {
        assert!(!members.contains(&1), "group {group}: {members:?}");
        assert_eq!(members.len(), 3, "group {group}: {members:?}");
    }

    // Leader balancing: every node that holds replicas leads its share.
    cluster
        .node(3)
        .balance_leaders()
        .await
        .expect("balance leaders");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let led = leaders(&cluster);
        let counts: Vec<usize> = [2, 3, 4]
            .iter()
            .map(|n| led.values().filter(|l| *l == n).count())
            .collect();
        let cap = (GROUPS as usize).div_ceil(3);
        if led.len() == GROUPS as usize && counts.iter().all(|c| *c <= cap) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leaders not balanced: {led:?}"
        );
        // Transfers can be refused while a follower lags; ask again.
        let _ = cluster.node(3).balance_leaders().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for node in cluster.all() {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_is_idempotent_and_a_member_refuses_to_close() {
    let cluster = Cluster::start(3, 12, GROUPS, raft_options()).await;
    cluster.start_node(4).await;
    let addresses = cluster.addresses();
    let node = cluster.node(1);
    let before = node
        .members(GroupKey::routing(POOL, 0))
        .await
        .expect("members");
    let remove = before.voters[0];
    let after = node
        .move_replica(GroupKey::routing(POOL, 0), 4, Some(remove), &addresses)
        .await
        .expect("move");
    assert!(after.contains(&4) && !after.contains(&remove), "{after:?}");
    // The same move again changes nothing.
    let again = node
        .move_replica(GroupKey::routing(POOL, 0), 4, Some(remove), &addresses)
        .await
        .expect("move again");
    assert_eq!(again, after);
    let members = node
        .members(GroupKey::routing(POOL, 0))
        .await
        .expect("members");
    assert_eq!(members.voters, after);
    assert!(!members.joint);
    assert!(members.learners.is_empty(), "{members:?}");
    assert!(cluster
        .node(remove)
        .state(GroupKey::routing(POOL, 0))
        .is_none());
    assert!(cluster.node(4).state(GroupKey::routing(POOL, 0)).is_some());
    // A member told to close (a bug in an orchestrator) refuses and keeps its replica.
    let probe = cluster
        .network
        .endpoint(member(99), Arc::new(PoolHandler::<SimEndpoint>::default()));
    let member = after[0];
    let request = PoolRequest::CloseReplica {
        group: GroupKey::routing(POOL, 0),
        members: after.clone(),
    };
    let answer = ask(&probe, member, &request).await;
    assert!(matches!(answer, PoolResponse::Done(Err(_))), "{answer:?}");
    assert!(cluster
        .node(member)
        .state(GroupKey::routing(POOL, 0))
        .is_some());
    for node in cluster.all() {
        node.shutdown().await;
    }
}

fn assert_balanced(assignment: &placement::Assignment, nodes: &[NodeId]) {
    let load = placement::load(assignment, nodes);
    let (min, max) = (load.values().min(), load.values().max());
    assert!(
        max.zip(min).is_some_and(|(max, min)| max - min <= 1),
        "unbalanced: {load:?}"
    );
    assert!(assignment.values().all(|r| r.len() == 3), "{assignment:?}");
}

fn held_in(assignment: &placement::Assignment, node: NodeId) -> Vec<GroupKey> {
    assignment
        .iter()
        .filter(|(_, r)| r.contains(&node))
        .map(|(g, _)| *g)
        .collect()
}

fn groups_held(cluster: &Cluster, node: NodeId) -> Vec<GroupKey> {
    cluster.node(node).groups()
}

fn leaders(cluster: &Cluster) -> BTreeMap<GroupKey, NodeId> {
    let mut led = BTreeMap::new();
    for node in cluster.all() {
        for group in node.groups() {
            let Some(raft) = node.raft(group) else {
                continue;
            };
            if raft.metrics().borrow_watched().current_leader == Some(node.node_id()) {
                led.insert(group, node.node_id());
            }
        }
    }
    led
}

/// A leader hands over to exactly the voter it is asked to, at once: the target gets
/// openraft's TransferLeader message and campaigns. Without that message the old leader only
/// stops serving, and whichever follower's election timer fires first wins: the named one
/// half of the time. Eight hand-overs in a row all landing on their target rule that out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_hands_over_to_the_voter_it_names() {
    let cluster = Cluster::start(3, 13, GROUPS, raft_options()).await;
    let probe = cluster
        .network
        .endpoint(member(99), Arc::new(PoolHandler::<SimEndpoint>::default()));
    for round in 0..2 {
        for group in routing_keys(GROUPS) {
            let from = leader_of(&cluster, group, None).await;
            // The voter after the leader, in id order: not a choice a timer could make.
            let to = (from % 3) + 1;
            let request = PoolRequest::TransferLeader { group, to };
            let answer = ask(&probe, from, &request).await;
            assert!(
                matches!(answer, PoolResponse::Done(Ok(()))),
                "round {round}, group {group}: {answer:?}"
            );
            let now = leader_of(&cluster, group, Some(from)).await;
            assert_eq!(
                now, to,
                "round {round}, group {group}: node {from} handed over to node {now}, not {to}"
            );
        }
    }
    for node in cluster.all() {
        node.shutdown().await;
    }
}

/// The node every replica of `group` agrees leads it, other than `not` (within 5 s).
async fn leader_of(cluster: &Cluster, group: GroupKey, not: Option<NodeId>) -> NodeId {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let views: Vec<Option<NodeId>> = cluster
            .all()
            .iter()
            .filter_map(|node| node.raft(group))
            .map(|raft| raft.metrics().borrow_watched().current_leader)
            .collect();
        if let Some(Some(leader)) = views.first().copied() {
            if Some(leader) != not && views.iter().all(|view| *view == Some(leader)) {
                return leader;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {group}: no agreed leader other than {not:?}: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every request a pool serves comes from its own nodes: one from a node of another pool (a
/// partner the network lets through) is answered with an error and not served, alone or in a
/// batch, while the same request from a node of the pool is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_a_node_of_another_pool_is_refused() {
    let cluster = Cluster::start(3, 17, GROUPS, raft_options()).await;
    let node = cluster.node(1);
    let request = PoolRequest::Members {
        group: GroupKey::routing(POOL, 0),
    };
    let body = encode(&request).expect("encode");
    let batch = encode(&PoolRequest::Batch(vec![Frame(body.clone())])).expect("encode");
    let answer = |reply: Vec<u8>| decode::<PoolResponse>(&reply).expect("decode");

    let own = answer(node.handle(member(2), body.clone()).await);
    assert!(matches!(own, PoolResponse::Members(_)), "{own:?}");
    let own = answer(node.handle(member(2), batch.clone()).await);
    assert!(
        matches!(own, PoolResponse::Batch(ref answers) if answers.len() == 1),
        "{own:?}"
    );

    // Node 2 of pool 2: the same node id, another pool.
    let stranger = Peer {
        pool: POOL + 1,
        node: 2,
    };
    for request in [body, batch] {
        let refused = answer(node.handle(stranger, request).await);
        assert!(
            matches!(refused, PoolResponse::Error(ref reason)
                if reason.contains("pool 2 node 2") && reason.contains("not a node of pool 1")),
            "{refused:?}"
        );
    }
    for node in cluster.all() {
        node.shutdown().await;
    }
}

/// Node `node` of the test pool.
fn member(node: NodeId) -> Peer {
    Peer { pool: POOL, node }
}

/// Sends `request` to node `to` from `probe` and decodes the answer (within 5 s).
async fn ask(probe: &SimEndpoint, to: NodeId, request: &PoolRequest) -> PoolResponse {
    let reply = probe
        .request(to, encode(request).expect("encode"), Duration::from_secs(5))
        .await
        .expect("reply");
    decode(&reply).expect("decode")
}
