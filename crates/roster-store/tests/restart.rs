//! Restart: a group's state machine comes back from its snapshot plus a replay of the log.

mod common;

use common::*;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::StorageHelper;
use roster_raft::GroupKey;
use roster_raft::{typ, GroupState};
use roster_registrar::Policy;
use roster_store::NodeStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_machine_is_restored_from_snapshot_and_log_replay() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("node");
    let mut entries = vec![membership_entry(1)];
    entries.extend((2..=40).map(register_entry));

    {
        let node = NodeStore::open(&path).unwrap();
        let (mut log, mut state_machine) = node
            .group(GroupKey::routing(1, 3), GroupState::new(Policy::default()))
            .unwrap();
        log.save_vote(&typ::Vote::new_committed(1, 1))
            .await
            .unwrap();
        append_durably(&mut log, entries.clone()).await;

        apply(&mut state_machine, entries[..20].to_vec()).await;
        let snapshot = state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 20)));
        log.purge(log_id(1, 10)).await.unwrap();

        apply(&mut state_machine, entries[20..30].to_vec()).await;
        log.save_committed(Some(log_id(1, 30))).await.unwrap();
        node.flush().await.unwrap();
        // Dropped here without any shutdown call.
    }

    let node = NodeStore::open(&path).unwrap();
    assert_eq!(
        node.group_keys().into_iter().collect::<Vec<_>>(),
        vec![GroupKey::routing(1, 3)]
    );
    let (mut log, mut state_machine) = node
        .group(GroupKey::routing(1, 3), GroupState::new(Policy::default()))
        .unwrap();
    let (applied, membership) = state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 20)), "loaded from the snapshot");
    assert_eq!(membership.log_id(), &Some(log_id(1, 1)));

    // What `Raft::new` does first: replay the log from the snapshot up to `committed`.
    StorageHelper::new(&mut log, &mut state_machine)
        .with_id(1)
        .get_initial_state()
        .await
        .unwrap();
    let (applied, _) = state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 30)), "replayed up to committed");
    let restored = state_machine.state_handle().snapshot().unwrap();
    assert_eq!(
        canonical(&restored),
        canonical(&reference_state(&entries[..30]))
    );

    // The log itself: purged through 10, everything after it still there.
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 10)));
    assert_eq!(state.last_log_id, Some(log_id(1, 40)));
    let kept = log.try_get_log_entries(0..=40).await.unwrap();
    assert_eq!(kept.first().map(|entry| entry.log_id.index), Some(11));
    assert_eq!(kept, entries[10..].to_vec());
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(typ::Vote::new_committed(1, 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_snapshot_survives_a_restart() {
    let directory = tempfile::tempdir().unwrap();
    let leader_path = directory.path().join("leader");
    let follower_path = directory.path().join("follower");
    let mut entries = vec![membership_entry(1)];
    entries.extend((2..=12).map(register_entry));

    let leader = NodeStore::open(&leader_path).unwrap();
    let (_log, mut leader_machine) = leader
        .group(GroupKey::routing(1, 0), GroupState::new(Policy::default()))
        .unwrap();
    apply(&mut leader_machine, entries.clone()).await;
    let snapshot = leader_machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    {
        let follower = NodeStore::open(&follower_path).unwrap();
        let (_log, mut machine) = follower
            .group(GroupKey::routing(1, 0), GroupState::new(Policy::default()))
            .unwrap();
        // A snapshot whose content disagrees with its metadata is refused.
        let mut wrong_meta = snapshot.meta.clone();
        wrong_meta.last_log_id = Some(log_id(1, 99));
        assert!(machine
            .install_snapshot(&wrong_meta, snapshot.snapshot.clone())
            .await
            .is_err());
        machine
            .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
            .await
            .unwrap();
    }

    let follower = NodeStore::open(&follower_path).unwrap();
    let (_log, mut machine) = follower
        .group(GroupKey::routing(1, 0), GroupState::new(Policy::default()))
        .unwrap();
    let current = machine.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(current.snapshot, snapshot.snapshot);
    let restored = machine.state_handle().snapshot().unwrap();
    assert_eq!(canonical(&restored), canonical(&reference_state(&entries)));
    let bindings = machine
        .state_handle()
        .read(|state| state.lookup("sip:user2@x", T0))
        .unwrap();
    assert!(!bindings.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_opens_once_at_a_time() {
    let directory = tempfile::tempdir().unwrap();
    let node = NodeStore::open(directory.path().join("node")).unwrap();
    let stores = node
        .group(GroupKey::routing(1, 5), GroupState::new(Policy::default()))
        .unwrap();
    assert!(node
        .group(GroupKey::routing(1, 5), GroupState::new(Policy::default()))
        .is_err());
    assert!(node.remove_group(GroupKey::routing(1, 5)).await.is_err());
    drop(stores);
    let (mut log, _machine) = node
        .group(GroupKey::routing(1, 5), GroupState::new(Policy::default()))
        .unwrap();
    append_durably(&mut log, vec![blank_entry(1)]).await;
    drop((log, _machine));
    node.remove_group(GroupKey::routing(1, 5)).await.unwrap();
    assert!(node.group_keys().is_empty());
}
