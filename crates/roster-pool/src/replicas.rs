//! The replicas a node holds: opening a group's storage and Raft, listing, closing (with its
//! data) and stopping them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use roster_raft::{GroupKey, GroupState};
use roster_store::{GroupRaft, GroupStateHandle, LogStore, NodeStore, StateMachineStore};
use tracing::{info, warn};

use crate::node::PoolError;

/// Attempts to delete a closed group's data while requests in flight still hold its storage:
/// 200 × [`CLOSE_POLL`] = 5 s, far more than any request holds a handle.
const CLOSE_ATTEMPTS_MAX: usize = 200;

/// Pause between attempts to delete a closed group's data.
const CLOSE_POLL: Duration = Duration::from_millis(25);

/// One replica: a group's Raft, a handle on its applied state, and a reader of its log (the
/// backup stream reads committed entries from it).
pub(crate) struct Replica {
    pub(crate) raft: GroupRaft<GroupState>,
    pub(crate) state: GroupStateHandle<GroupState>,
    pub(crate) log: LogStore,
}

/// The replicas of one node, by group key.
pub(crate) struct Replicas {
    store: NodeStore,
    /// A `std` lock: held only to clone a replica handle out, never across an `.await`.
    table: RwLock<HashMap<GroupKey, Arc<Replica>>>,
    /// Serializes opening and closing replicas (a `tokio` lock: held across the awaits of
    /// starting and stopping a Raft group).
    lifecycle: tokio::sync::Mutex<()>,
}

impl Replicas {
    /// No replica open yet, over the node's database.
    pub(crate) fn new(store: NodeStore) -> Replicas {
        Replicas {
            store,
            table: RwLock::new(HashMap::new()),
            lifecycle: tokio::sync::Mutex::new(()),
        }
    }

    /// The replica of `group`, if open here.
    pub(crate) fn get(&self, group: GroupKey) -> Option<Arc<Replica>> {
        self.read().get(&group).cloned()
    }

    /// Every replica, copied out of the lock.
    pub(crate) fn list(&self) -> Vec<(GroupKey, Arc<Replica>)> {
        self.read()
            .iter()
            .map(|(group, replica)| (*group, replica.clone()))
            .collect()
    }

    /// The keys of the replicas open here, ascending.
    pub(crate) fn keys(&self) -> Vec<GroupKey> {
        let mut keys: Vec<GroupKey> = self.read().keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// Opens `group`'s storage (with `fresh` as its state if it has none yet) and starts its
    /// Raft with `start`, unless it is open already. Idempotent.
    pub(crate) async fn open<Fut>(
        &self,
        group: GroupKey,
        fresh: GroupState,
        start: impl FnOnce(LogStore, StateMachineStore<GroupState>) -> Fut,
    ) -> Result<(), PoolError>
    where
        Fut: Future<Output = Result<GroupRaft<GroupState>, PoolError>>,
    {
        let _lifecycle = self.lifecycle.lock().await;
        if self.get(group).is_some() {
            return Ok(());
        }
        let (log, state_machine) = self
            .store
            .group(group, fresh)
            .map_err(|error| PoolError::Internal(error.to_string()))?;
        let state = state_machine.state_handle();
        let reader = log.clone();
        let raft = start(log, state_machine).await?;
        let replica = Arc::new(Replica {
            raft,
            state,
            log: reader,
        });
        match self.table.write() {
            Ok(mut table) => {
                table.insert(group, replica);
                Ok(())
            }
            Err(_) => Err(PoolError::Internal("replica table lock poisoned".into())),
        }
    }

    /// Stops the replica of `group` and deletes its data. Idempotent: without a replica it only
    /// makes sure no data is left.
    pub(crate) async fn close(&self, group: GroupKey) -> Result<(), PoolError> {
        let _lifecycle = self.lifecycle.lock().await;
        let replica = match self.table.write() {
            Ok(mut table) => table.remove(&group),
            Err(_) => return Err(PoolError::Internal("replica table lock poisoned".into())),
        };
        if let Some(replica) = replica {
            if let Err(error) = replica.raft.shutdown().await {
                warn!(group = %group, %error, "raft shutdown failed");
            }
            info!(group = %group, "closed replica");
        }
        // The storage is released when the last handle of the stopped group goes; requests in
        // flight may hold one for a moment.
        for _ in 0..CLOSE_ATTEMPTS_MAX {
            match self.store.remove_group(group).await {
                Ok(()) => return Ok(()),
                Err(roster_store::StoreError::GroupOpen(_)) => {
                    tokio::time::sleep(CLOSE_POLL).await;
                }
                Err(error) => return Err(PoolError::Internal(error.to_string())),
            }
        }
        Err(PoolError::Internal(format!(
            "group {group} still open after its replica stopped"
        )))
    }

    /// Stops every Raft group and closes their storage (the data stays).
    pub(crate) async fn shutdown(&self) {
        let replicas: Vec<Arc<Replica>> = match self.table.write() {
            Ok(mut table) => table.drain().map(|(_, replica)| replica).collect(),
            Err(_) => Vec::new(),
        };
        for replica in replicas {
            if let Err(error) = replica.raft.shutdown().await {
                warn!(%error, "raft shutdown failed");
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<GroupKey, Arc<Replica>>> {
        // A poisoned lock only means a panic elsewhere while inserting; the map is still whole.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The snapshot interval of the group at `position` of the node's `groups`: `base` entries, plus
/// up to `base` more spread over them. Groups under an even load reach the same entry count together; with
/// one interval they would all snapshot at once, and the burst of snapshot writes and flushes
/// would stall every group's appends on the node.
pub(crate) fn staggered_snapshot_interval(base: u64, position: usize, groups: usize) -> u64 {
    let groups = u64::try_from(groups.max(1)).unwrap_or(u64::MAX);
    let position = u64::try_from(position).unwrap_or(0);
    base + base * (position % groups) / groups
}

#[cfg(test)]
mod tests {
    use super::staggered_snapshot_interval;

    #[test]
    fn intervals_spread_over_one_base() {
        let intervals: Vec<u64> = (0..32)
            .map(|group| staggered_snapshot_interval(5_000, group, 32))
            .collect();
        assert_eq!(intervals[0], 5_000);
        assert_eq!(intervals[16], 7_500);
        assert!(intervals.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(intervals[31] < 10_000);
    }
}
