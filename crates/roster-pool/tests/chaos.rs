//! Many seeds of one chaos run over the simulated network. Safety phase: writes go on through
//! random nodes while partitions, drops, lost replies, and a node stopped and restarted from
//! its disk come and go. Liveness phase, faults healed: every acknowledged write is present
//! (linearizable reads), and every replica of each group that applied the same log holds the
//! same state. A write that timed out or was refused is unknown: the oracle accepts both.
//!
//! `ROSTER_CHAOS_SEEDS=first..=last` runs other seeds (default: two tests of 4 seeds each, 1..=8).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    check_acknowledged, check_replicas_agree, raft_options, write_until_ok, writer, Cluster,
    Oracle, Rng,
};

/// Routing groups of the chaos pools: enough for leaders to spread, few enough for 2 cores.
const GROUPS: u32 = 4;
/// Concurrent writers, each with its own users.
const WRITERS: u32 = 3;
/// Users per writer.
const USERS_PER_WRITER: u32 = 20;
/// Fault steps of the safety phase, each 300–900 ms.
const FAULT_STEPS: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_seeds_a() {
    for seed in seeds(1..=4) {
        run(seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_seeds_b() {
    // Runs only when no seeds are given on the environment (they all go to `a`).
    if std::env::var("ROSTER_CHAOS_SEEDS").is_ok() {
        return;
    }
    for seed in 5..=8 {
        run(seed).await;
    }
}

fn seeds(default: std::ops::RangeInclusive<u64>) -> std::ops::RangeInclusive<u64> {
    let Ok(text) = std::env::var("ROSTER_CHAOS_SEEDS") else {
        return default;
    };
    let (first, last) = text
        .split_once("..=")
        .expect("ROSTER_CHAOS_SEEDS=first..=last");
    first.parse().expect("first seed")..=last.parse().expect("last seed")
}

fn oracle_extra(oracle: &Oracle, user: u32, cseq: u32) {
    oracle.record(user, cseq, true);
}

async fn run(seed: u64) {
    let started = std::time::Instant::now();
    let mut rng = Rng::new(seed);
    // Three or four nodes: with four, some nodes hold no replica of a group and forward.
    let count = 3 + rng.below(2);
    let cluster = Cluster::start(count, seed, GROUPS, raft_options()).await;
    let oracle = Arc::new(Oracle::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let users = w * USERS_PER_WRITER..(w + 1) * USERS_PER_WRITER;
            tokio::spawn(writer(
                cluster.nodes.clone(),
                GROUPS,
                users,
                seed * 100 + u64::from(w),
                oracle.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Safety phase.
    let mut stopped: Option<u64> = None;
    for _ in 0..FAULT_STEPS {
        match rng.below(6) {
            0 => {
                let id = 1 + rng.below(count);
                let rest: Vec<u64> = (1..=count).filter(|n| *n != id).collect();
                cluster.network.partition(&[id], &rest);
            }
            1 => cluster.network.set_drop_probability(0.05),
            2 => cluster.network.set_reply_drop_probability(0.1),
            3 if stopped.is_none() => {
                let id = 1 + rng.below(count);
                cluster.stop_node(id).await;
                stopped = Some(id);
            }
            4 => {
                if let Some(id) = stopped.take() {
                    cluster.start_node(id).await;
                }
            }
            _ => {
                cluster.network.heal();
                cluster.network.set_drop_probability(0.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(300 + rng.below(600))).await;
    }

    // Liveness phase.
    cluster.network.heal();
    cluster.network.set_drop_probability(0.0);
    if let Some(id) = stopped.take() {
        cluster.start_node(id).await;
    }
    // Writes are back through every node (a fresh user each, so that the oracle's users keep
    // one writer each).
    for (index, node) in cluster.all().into_iter().enumerate() {
        let user = 1_000 + u32::try_from(index).unwrap_or(0);
        let cseq = write_until_ok(&node, GROUPS, user, Duration::from_secs(10), seed).await;
        oracle_extra(&oracle, user, cseq);
    }
    // The writers go on for a while without faults.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = 0;
    let mut unknown = 0;
    for handle in writers {
        let outcomes = handle.await.expect("writer");
        acknowledged += outcomes.acknowledged;
        unknown += outcomes.unknown;
        assert_eq!(
            outcomes.refused, 0,
            "seed {seed}: a write was applied twice (refused as an old CSeq)"
        );
    }
    assert!(acknowledged > 0, "seed {seed}: no write was acknowledged");
    check_acknowledged(&cluster, &oracle, seed).await;
    check_replicas_agree(&cluster, seed, Duration::from_secs(15)).await;
    eprintln!(
        "seed {seed}: {count} nodes, {acknowledged} acknowledged, {unknown} unknown, {:?}, {:?}",
        started.elapsed(),
        cluster.network.stats()
    );
    for node in cluster.all() {
        node.shutdown().await;
    }
}
