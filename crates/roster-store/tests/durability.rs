//! Durability: what the store acknowledged survives a process that dies without shutdown.
//!
//! The test runs this same test binary again as a child (`crash_child`), which writes to
//! several groups at once, prints every acknowledgement (a vote saved, an append's callback
//! fired), and then aborts mid-stream: no destructor, no sled shutdown flush. The parent
//! reopens the database and checks that everything acknowledged is there.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::sync::Arc;

use common::*;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use roster_raft::GroupKey;
use roster_raft::{typ, GroupState};
use roster_registrar::Policy;
use roster_store::NodeStore;

/// Set in the child's environment to the database directory.
const CHILD_DIRECTORY: &str = "ROSTER_STORE_CRASH_CHILD_DIRECTORY";
const GROUPS: u32 = 4;
/// Entries the child appends per group before it aborts, if it gets that far.
const ENTRIES_PER_GROUP: u64 = 400;
/// Acknowledgements after which the child aborts, with writes still in flight.
const ACKS_BEFORE_ABORT: u64 = 600;

#[test]
fn acknowledged_writes_survive_a_crash() {
    let directory = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIRECTORY, directory.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "the child must die by abort");
    let stdout = String::from_utf8_lossy(&output.stdout);

    let mut acked: BTreeMap<u32, u64> = BTreeMap::new();
    let mut voted = Vec::new();
    for line in stdout.lines() {
        // The test harness may print its own words before ours on the same line.
        let ours = ["acked ", "voted "]
            .iter()
            .filter_map(|word| line.find(word))
            .min()
            .map_or("", |start| &line[start..]);
        let words: Vec<&str> = ours.split_whitespace().collect();
        match words.as_slice() {
            ["acked", group, index] => {
                let entry = acked.entry(group.parse().unwrap()).or_default();
                *entry = (*entry).max(index.parse().unwrap());
            }
            ["voted", group] => voted.push(group.parse::<u32>().unwrap()),
            _ => {}
        }
    }
    assert_eq!(voted.len(), GROUPS as usize, "child output:\n{stdout}");
    let total: u64 = acked.values().sum();
    assert!(total >= ACKS_BEFORE_ABORT, "child output:\n{stdout}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let node = NodeStore::open(directory.path()).unwrap();
        for group in 0..GROUPS {
            let (mut log, _machine) = node
                .group(
                    GroupKey::routing(1, group),
                    GroupState::new(Policy::default()),
                )
                .unwrap();
            assert_eq!(
                log.read_vote().await.unwrap(),
                Some(typ::Vote::new_committed(2, 1)),
                "group {group}"
            );
            let acked_last = acked.get(&group).copied().unwrap_or(0);
            let entries = log.try_get_log_entries(1..=acked_last).await.unwrap();
            let expected: Vec<typ::Entry> = (1..=acked_last).map(register_entry).collect();
            assert_eq!(
                entries, expected,
                "group {group}: acknowledged entries lost"
            );
            // Anything past the acknowledged end may or may not be there, but whole, and without
            // a hole (appends are single inserts: a crash keeps a prefix of them).
            let state = log.get_log_state().await.unwrap();
            let last = state.last_log_id.map_or(0, |id| id.index);
            assert!(last >= acked_last);
            let all = log.try_get_log_entries(1..=last).await.unwrap();
            let expected: Vec<typ::Entry> = (1..=last).map(register_entry).collect();
            assert_eq!(all, expected, "group {group}: the log after the crash");
        }
    });
}

/// The child half of `acknowledged_writes_survive_a_crash`; does nothing when run normally.
#[test]
fn crash_child() {
    let Some(directory) = std::env::var_os(CHILD_DIRECTORY) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let node = NodeStore::open(&directory).unwrap();
        let acks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for group in 0..GROUPS {
            let (mut log, machine) = node
                .group(
                    GroupKey::routing(1, group),
                    GroupState::new(Policy::default()),
                )
                .unwrap();
            log.save_vote(&typ::Vote::new_committed(2, 1))
                .await
                .unwrap();
            say(&format!("voted {group}"));
            let acks = acks.clone();
            tasks.spawn(async move {
                let _machine = machine;
                for batch_start in (1..=ENTRIES_PER_GROUP).step_by(4) {
                    let batch: Vec<typ::Entry> =
                        (batch_start..batch_start + 4).map(register_entry).collect();
                    append_durably(&mut log, batch).await;
                    say(&format!("acked {group} {}", batch_start + 3));
                    acks.fetch_add(4, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        while acks.load(std::sync::atomic::Ordering::SeqCst) < ACKS_BEFORE_ABORT {
            tokio::task::yield_now().await;
        }
        std::process::abort();
    });
}

/// Writes a line to stdout at once: `abort` flushes no buffer.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").unwrap();
    stdout.flush().unwrap();
}
