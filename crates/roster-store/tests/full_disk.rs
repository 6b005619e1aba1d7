//! A full disk: a failed flush poisons the store and fails every durable write after it; the
//! store closes, and opened again from disk once the disk takes writes it keeps everything made
//! durable before the failure and takes writes again.

mod common;

use std::time::Duration;

use common::*;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use roster_raft::{typ, GroupKey, GroupState, TypeConfig};
use roster_registrar::Policy;
use roster_store::{DiskFault, NodeStore, StoreOptions};

/// Bound on closing a store whose groups are dropped: the flusher joins within one flush.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_store_reopens_with_what_was_durable_and_takes_writes_again() {
    let directory = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        path: directory.path().join("node"),
        ..StoreOptions::default()
    };
    let fault = DiskFault::new();
    let key = GroupKey::routing(1, 4);
    let node = NodeStore::open_with_fault(&options, fault.clone()).unwrap();
    let opener = node.opener();
    let (mut log, state_machine) = node.group(key, GroupState::new(Policy::default())).unwrap();
    let entries: Vec<typ::Entry> = std::iter::once(membership_entry(1))
        .chain((2..=20).map(register_entry))
        .collect();
    append_durably(&mut log, entries[..10].to_vec()).await;
    assert_eq!(node.failure(), None);

    fault.set_full(true);
    // An append whose flush fails is reported failed (never acknowledged), and poisons.
    let (sender, receiver) = TypeConfig::oneshot();
    log.append(entries[10..].to_vec(), typ::IOFlushed::signal(sender))
        .await
        .unwrap();
    let flushed = receiver.await.unwrap();
    assert!(flushed.is_err(), "{flushed:?}");
    let failure = node.failure().expect("the store is poisoned");
    assert!(failure.contains("no space left"), "{failure}");
    // Poisoned for good: space coming back does not make its flushes trustworthy again.
    fault.set_full(false);
    assert!(node.flush().await.is_err());
    assert!(log
        .save_vote(&typ::Vote::new_committed(2, 1))
        .await
        .is_err());

    // Not closed while a group's storage holds it: the caller gets the store back.
    let node = node
        .close(Duration::from_millis(50))
        .await
        .expect_err("a group still holds the store");
    drop((log, state_machine));
    node.close(CLOSE_WAIT)
        .await
        .unwrap_or_else(|_| panic!("not closed"));

    fault.set_full(true);
    assert!(opener.probe_disk().is_err(), "the disk still looks full");
    fault.set_full(false);
    opener.probe_disk().unwrap();
    let node = opener.open().unwrap();
    assert_eq!(node.failure(), None);
    let (mut log, _state_machine) = node.group(key, GroupState::new(Policy::default())).unwrap();
    // Everything acknowledged is there; what follows may or may not be (never acknowledged).
    let read = log.try_get_log_entries(1..=20).await.unwrap();
    assert!(read.len() >= 10, "{} entries", read.len());
    assert_eq!(read[..10], entries[..10]);
    // And it takes durable writes again.
    log.save_vote(&typ::Vote::new_committed(3, 1))
        .await
        .unwrap();
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(typ::Vote::new_committed(3, 1))
    );
    node.flush().await.unwrap();
}
