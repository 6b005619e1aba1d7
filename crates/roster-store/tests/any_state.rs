//! The store keeps any `ReplicatedState`, not only a routing group's: a state of its own
//! (a count of normal entries) is applied, snapshotted and restored like a registry.

mod common;

use common::*;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use roster_raft::{typ, ApplyError, CodecError, GroupKey, GroupResponse, ReplicatedState};
use roster_store::NodeStore;

/// Counts the normal entries it applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counter {
    normal: u64,
    last_applied: Option<typ::LogId>,
    last_membership: typ::StoredMembership,
}

impl ReplicatedState for Counter {
    fn apply(&mut self, entry: &typ::Entry) -> Result<GroupResponse, ApplyError> {
        if let Some(last_applied) = self.last_applied {
            if entry.log_id <= last_applied {
                return Err(ApplyError::OutOfOrder {
                    entry: entry.log_id,
                    last_applied,
                });
            }
        }
        if let EntryPayload::Normal(_) = entry.payload {
            self.normal += 1;
        }
        if let EntryPayload::Membership(membership) = &entry.payload {
            self.last_membership =
                typ::StoredMembership::new(Some(entry.log_id), membership.clone());
        }
        self.last_applied = Some(entry.log_id);
        Ok(GroupResponse::Blank)
    }

    fn last_applied(&self) -> Option<typ::LogId> {
        self.last_applied
    }

    fn last_membership(&self) -> &typ::StoredMembership {
        &self.last_membership
    }

    fn encode_snapshot(&self) -> Result<Vec<u8>, CodecError> {
        roster_raft::codec::encode::<_, 4096>(
            "counter",
            &(self.normal, self.last_applied, &self.last_membership),
        )
    }

    fn decode_snapshot(bytes: &[u8]) -> Result<Counter, CodecError> {
        let (normal, last_applied, last_membership) =
            roster_raft::codec::decode::<_, 4096>("counter", bytes)?;
        Ok(Counter {
            normal,
            last_applied,
            last_membership,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_of_its_own_is_applied_snapshotted_and_restored() {
    let directory = tempfile::tempdir().unwrap();
    let key = GroupKey::cms(1);
    let mut entries = vec![membership_entry(1)];
    entries.extend((2..=10).map(register_entry));
    {
        let node = NodeStore::open(directory.path()).unwrap();
        let (_log, mut machine) = node.group(key, Counter::default()).unwrap();
        let stream =
            futures_util::stream::iter(entries.clone().into_iter().map(|entry| Ok((entry, None))));
        machine.apply(stream).await.unwrap();
        let snapshot = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 10)));
    }
    let node = NodeStore::open(directory.path()).unwrap();
    let (_log, machine) = node.group(key, Counter::default()).unwrap();
    let restored = machine.state_handle().snapshot().unwrap();
    assert_eq!(restored.normal, 9);
    assert_eq!(restored.last_applied, Some(log_id(1, 10)));
    assert_eq!(restored.last_membership.log_id(), &Some(log_id(1, 1)));
}
