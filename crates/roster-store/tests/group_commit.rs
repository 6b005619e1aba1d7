//! Group commit: concurrent appends of many groups share flushes.

mod common;

use common::*;
use openraft::storage::RaftLogReader;
use roster_raft::{GroupKey, GroupState};
use roster_registrar::Policy;
use roster_store::NodeStore;

const GROUPS: u32 = 64;
const ROUNDS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_flushes() {
    let directory = tempfile::tempdir().unwrap();
    let node = NodeStore::open(directory.path().join("node")).unwrap();
    let mut logs = Vec::new();
    for group in 0..GROUPS {
        logs.push(
            node.group(
                GroupKey::routing(1, group),
                GroupState::new(Policy::default()),
            )
            .unwrap(),
        );
    }
    let flushes_before = node.flush_count();

    let mut tasks = tokio::task::JoinSet::new();
    for (mut log, machine) in logs {
        tasks.spawn(async move {
            for index in 1..=ROUNDS {
                append_durably(&mut log, vec![register_entry(index)]).await;
            }
            (log, machine)
        });
    }
    let mut stores = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        stores.push(joined.unwrap());
    }

    let appends = u64::from(GROUPS) * ROUNDS;
    let flushes = node.flush_count() - flushes_before;
    println!("{appends} appends, {flushes} flushes");
    assert!(flushes >= 1);
    assert!(
        flushes * 2 <= appends,
        "{flushes} flushes for {appends} appends: group commit is not batching"
    );
    for (log, _machine) in &mut stores {
        let entries = log.try_get_log_entries(1..=ROUNDS).await.unwrap();
        assert_eq!(entries.len() as u64, ROUNDS);
    }
}
