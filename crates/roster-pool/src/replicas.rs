//! The replicas a node holds: opening a group's storage and Raft, listing, closing (with its
//! data) and stopping them; and, for the supervisor (`supervisor`), restarting a replica whose
//! Raft stopped and reopening the whole store after it was poisoned (a full disk).
//!
//! Opening, closing and reopening hold the lifecycle lock ([`Lifecycle`]), so that a
//! membership move and a recovery never act on one group at once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use roster_raft::{GroupKey, GroupState};
use roster_store::{
    GroupRaft, GroupStateHandle, LogStore, NodeStore, StateMachineStore, StoreOpener,
};
use tracing::{info, warn};

use crate::node::PoolError;

/// Attempts to delete a closed group's data while requests in flight still hold its storage:
/// 200 × [`CLOSE_POLL`] = 5 s, far more than any request holds a handle.
const CLOSE_ATTEMPTS_MAX: usize = 200;

/// Pause between attempts to delete a closed group's data.
const CLOSE_POLL: Duration = Duration::from_millis(25);

/// Longest wait, when reopening the store, for the last handles of the stopped groups to go
/// (requests in flight and openraft's tasks let go within milliseconds of a Raft stopping).
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// One replica: a group's Raft, a handle on its applied state, and a reader of its log (the
/// backup stream reads committed entries from it).
pub(crate) struct Replica {
    pub(crate) raft: GroupRaft<GroupState>,
    pub(crate) state: GroupStateHandle<GroupState>,
    pub(crate) log: LogStore,
    /// Which opening of a replica on this node this one is (counted over all groups, from 1):
    /// a replica opened again after its Raft stopped starts over from the disk, applied index
    /// included, so observers tell its life apart from the one before.
    pub(crate) generation: u64,
}

impl Replica {
    /// Whether this replica's Raft has stopped for good: openraft stops a group on a storage
    /// error (a full disk) or a broken invariant, and it never runs again in this instance.
    pub(crate) fn is_stopped(&self) -> bool {
        self.raft.metrics().borrow_watched().running_state.is_err()
    }
}

/// Proof that the holder has the replicas' lifecycle lock.
pub(crate) struct Lifecycle<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

/// The replicas of one node, by group key.
pub(crate) struct Replicas {
    /// Opens the node's database again after a poisoned store was closed.
    opener: StoreOpener,
    /// The node's database: `None` only while it is being reopened, or when opening it again
    /// failed (the supervisor retries). A `std` lock, held only to clone the handle out.
    store: RwLock<Option<NodeStore>>,
    /// A `std` lock: held only to clone a replica handle out, never across an `.await`.
    table: RwLock<BTreeMap<GroupKey, Arc<Replica>>>,
    /// Serializes opening, closing and reopening replicas (a `tokio` lock: held across the
    /// awaits of starting and stopping a Raft group).
    lifecycle: tokio::sync::Mutex<()>,
    /// Openings so far, for [`Replica::generation`].
    openings: AtomicU64,
    /// Groups whose replica should be open here and is not: reopening it failed (a `std` lock
    /// around short sections).
    missing: Mutex<BTreeSet<GroupKey>>,
    /// Set while every replica is down for the store to be reopened.
    reopening: AtomicBool,
}

/// What keeps this node's replicas from serving, for health and for the supervisor.
pub(crate) enum Trouble {
    /// The store is poisoned (a flush failed) or closed: every replica must stop and the
    /// store be opened again.
    Store(String),
    /// These replicas' Raft stopped; the store may still be sound.
    Stopped(Vec<(GroupKey, Arc<Replica>)>),
    /// These groups' replicas failed to open again.
    Missing(Vec<GroupKey>),
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |keys: &mut dyn Iterator<Item = GroupKey>| {
            keys.map(|key| key.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Trouble::Store(reason) => formatter.write_str(reason),
            Trouble::Stopped(stopped) => write!(
                formatter,
                "the Raft of {} replica(s) stopped ({})",
                stopped.len(),
                keys(&mut stopped.iter().map(|(group, _)| *group))
            ),
            Trouble::Missing(groups) => write!(
                formatter,
                "{} replica(s) not open ({})",
                groups.len(),
                keys(&mut groups.iter().copied())
            ),
        }
    }
}

impl Replicas {
    /// No replica open yet, over the node's database.
    pub(crate) fn new(store: NodeStore) -> Replicas {
        Replicas {
            opener: store.opener(),
            store: RwLock::new(Some(store)),
            table: RwLock::new(BTreeMap::new()),
            lifecycle: tokio::sync::Mutex::new(()),
            openings: AtomicU64::new(0),
            missing: Mutex::new(BTreeSet::new()),
            reopening: AtomicBool::new(false),
        }
    }

    /// Takes the lifecycle lock.
    pub(crate) async fn lifecycle(&self) -> Lifecycle<'_> {
        Lifecycle {
            _guard: self.lifecycle.lock().await,
        }
    }

    /// The replica of `group`, if open here.
    pub(crate) fn get(&self, group: GroupKey) -> Option<Arc<Replica>> {
        self.read().get(&group).cloned()
    }

    /// The replica of `group` if open here and its Raft running: a stopped one can serve
    /// nothing, and requests for its group go to the leader elsewhere.
    pub(crate) fn live(&self, group: GroupKey) -> Option<Arc<Replica>> {
        self.get(group).filter(|replica| !replica.is_stopped())
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
    ///
    /// The storage of a group whose replica was just closed or dropped is released when its
    /// last handle goes (requests in flight may hold one for a moment): the open waits for
    /// that, for at most 5 s.
    pub(crate) async fn open<Fut>(
        &self,
        _lifecycle: &Lifecycle<'_>,
        group: GroupKey,
        fresh: GroupState,
        start: impl FnOnce(LogStore, StateMachineStore<GroupState>) -> Fut,
    ) -> Result<(), PoolError>
    where
        Fut: Future<Output = Result<GroupRaft<GroupState>, PoolError>>,
    {
        if self.get(group).is_some() {
            return Ok(());
        }
        let store = self.store()?;
        for _ in 0..CLOSE_ATTEMPTS_MAX {
            if !store.is_open(group) {
                break;
            }
            tokio::time::sleep(CLOSE_POLL).await;
        }
        let (log, state_machine) = store
            .group(group, fresh)
            .map_err(|error| PoolError::Internal(error.to_string()))?;
        let state = state_machine.state_handle();
        let reader = log.clone();
        let raft = start(log, state_machine).await?;
        let replica = Arc::new(Replica {
            raft,
            state,
            log: reader,
            generation: self.openings.fetch_add(1, Ordering::Relaxed) + 1,
        });
        match self.table.write() {
            Ok(mut table) => {
                table.insert(group, replica);
            }
            Err(_) => return Err(PoolError::Internal("replica table lock poisoned".into())),
        }
        self.missing_groups().remove(&group);
        Ok(())
    }

    /// Stops the replica of `group` and deletes its data. Idempotent: without a replica it only
    /// makes sure no data is left.
    pub(crate) async fn close(&self, group: GroupKey) -> Result<(), PoolError> {
        let _lifecycle = self.lifecycle.lock().await;
        // Removed from this node: no longer a replica to reopen either.
        self.missing_groups().remove(&group);
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
            match self.store()?.remove_group(group).await {
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

    /// Stops every Raft group and closes their storage (the data stays). Waits for a recovery
    /// in progress to finish, so that it leaves no Raft running.
    pub(crate) async fn shutdown(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        let replicas: Vec<Arc<Replica>> = self.drain().into_iter().map(|(_, r)| r).collect();
        stop_all(&replicas).await;
    }

    /// What keeps the replicas from serving, if anything: the store first (it takes every
    /// replica down), then stopped replicas, then replicas that failed to open again.
    pub(crate) fn trouble(&self) -> Option<Trouble> {
        if self.reopening.load(Ordering::SeqCst) {
            return Some(Trouble::Store("the store is being reopened".into()));
        }
        let store = self.store.read().unwrap_or_else(PoisonError::into_inner);
        match store.as_ref() {
            None => return Some(Trouble::Store("the store is closed".into())),
            Some(store) => {
                if let Some(failure) = store.failure() {
                    return Some(Trouble::Store(format!("the store is poisoned: {failure}")));
                }
            }
        }
        drop(store);
        let mut stopped: Vec<(GroupKey, Arc<Replica>)> = self
            .list()
            .into_iter()
            .filter(|(_, replica)| replica.is_stopped())
            .collect();
        if !stopped.is_empty() {
            stopped.sort_by_key(|(group, _)| *group);
            return Some(Trouble::Stopped(stopped));
        }
        let missing: Vec<GroupKey> = self.missing_groups().iter().copied().collect();
        (!missing.is_empty()).then_some(Trouble::Missing(missing))
    }

    /// The groups whose replica should be open here and is not.
    pub(crate) fn missing(&self) -> Vec<GroupKey> {
        self.missing_groups().iter().copied().collect()
    }

    /// What opens the node's database.
    pub(crate) fn opener(&self) -> &StoreOpener {
        &self.opener
    }

    /// The node's database, unless it is closed for reopening.
    pub(crate) fn store(&self) -> Result<NodeStore, PoolError> {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| PoolError::Internal("the store is being reopened".into()))
    }

    /// Takes the stopped replica `stopped` of `group` out and drops it, unless the group's
    /// replica has changed meanwhile (closed by a move, or restarted already): then `false`.
    /// The caller opens the group again.
    pub(crate) async fn take_stopped(
        &self,
        _lifecycle: &Lifecycle<'_>,
        group: GroupKey,
        stopped: Arc<Replica>,
    ) -> bool {
        let taken = {
            let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
            match table.get(&group) {
                Some(current) if Arc::ptr_eq(current, &stopped) => table.remove(&group),
                _ => None,
            }
        };
        let Some(taken) = taken else {
            return false;
        };
        // Stopped already: this only joins its task and lets go of its storage.
        stop_all(&[taken]).await;
        // It is to be reopened: until it is, it counts as missing.
        self.missing_groups().insert(group);
        true
    }

    /// Stops every replica, closes the store and opens it again from disk; returns the groups
    /// to open again (every replica that was open, and those already missing), all counted
    /// missing until they are. On an error the store may be closed (`Trouble::Store`); calling
    /// again retries.
    pub(crate) async fn reopen_store(
        &self,
        _lifecycle: &Lifecycle<'_>,
    ) -> Result<Vec<GroupKey>, PoolError> {
        self.reopening.store(true, Ordering::SeqCst);
        let result = self.reopen_store_inner().await;
        self.reopening.store(false, Ordering::SeqCst);
        result
    }

    async fn reopen_store_inner(&self) -> Result<Vec<GroupKey>, PoolError> {
        let replicas = self.drain();
        self.missing_groups()
            .extend(replicas.iter().map(|(group, _)| *group));
        let replicas: Vec<Arc<Replica>> = replicas.into_iter().map(|(_, r)| r).collect();
        stop_all(&replicas).await;
        drop(replicas);
        let old = self
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(old) = old {
            if let Err(still_open) = old.close(STORE_CLOSE_WAIT).await {
                *self.store.write().unwrap_or_else(PoisonError::into_inner) = Some(still_open);
                return Err(PoolError::Internal(format!(
                    "the poisoned store is still in use {STORE_CLOSE_WAIT:?} after its groups \
                     stopped"
                )));
            }
        }
        let store = self.opener.open().map_err(|error| {
            PoolError::Internal(format!("cannot open the store again: {error}"))
        })?;
        // Groups with data on disk that had no replica open stay closed, as before.
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = Some(store);
        Ok(self.missing_groups().iter().copied().collect())
    }

    /// Every replica, taken out of the table.
    fn drain(&self) -> Vec<(GroupKey, Arc<Replica>)> {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *table).into_iter().collect()
    }

    fn missing_groups(&self) -> std::sync::MutexGuard<'_, BTreeSet<GroupKey>> {
        // A poisoned lock only means a panic elsewhere mid-update of a set of keys.
        self.missing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<GroupKey, Arc<Replica>>> {
        // A poisoned lock only means a panic elsewhere while inserting; the map is still whole.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the Raft of every replica of `replicas`, all at once (a stopped one only joins).
async fn stop_all(replicas: &[Arc<Replica>]) {
    let stops = replicas.iter().map(|replica| async move {
        if let Err(error) = replica.raft.shutdown().await {
            warn!(%error, "raft shutdown failed");
        }
    });
    futures_util::future::join_all(stops).await;
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
