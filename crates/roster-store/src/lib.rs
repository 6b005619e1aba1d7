//! Durable storage of a node's routing groups: one sled database per node, many Raft groups.
//!
//! - [`NodeStore`]: the node's database. [`NodeStore::group`] opens one group's storage as the
//!   two halves openraft wants: a [`LogStore`] (`RaftLogStorage` + `RaftLogReader`: the log, the
//!   vote, the committed and purged log ids) and a [`StateMachineStore`] (`RaftStateMachine` +
//!   `RaftSnapshotBuilder`: the group's applied state in memory, snapshotted into sled). The
//!   state is any `roster_raft::ReplicatedState` (a routing group's `GroupState`, the CMS's
//!   state): the store applies and snapshots it without knowing what it holds. [`GroupStateHandle`] reads the applied state from outside Raft.
//! - Group commit: appends, votes, truncations, purges and snapshots of all groups share one
//!   flusher thread, which makes them durable with one sled flush and one `fdatasync` per round
//!   (see `flusher`). [`NodeStore::flush_count`] counts the rounds.
//! - Restart: [`NodeStore::group`] loads the group's last snapshot; openraft then replays the log
//!   from the snapshot up to the saved committed log id (`Raft::new` does it).
//! - A full disk: a failed flush poisons the store ([`NodeStore::failure`]) and stops its groups.
//!   Its owner closes it ([`NodeStore::close`]) once the groups are stopped, waits until the disk
//!   takes writes ([`StoreOpener::probe_disk`]) and opens it again ([`StoreOpener::open`]).
//!   [`DiskFault`] makes a disk look full in tests.
//! - [`StoreIo`]: a node's store makes writes durable on a flusher thread and runs blocking
//!   steps on Tokio's blocking threads; `StoreIo::Inline` runs both on the calling task, for
//!   deterministic simulations.
//!
//! Durability, at each call (all "durable" points go through the flusher):
//! - `save_vote`, `truncate_after`, `purge`: durable before they return;
//! - `append`: readable when it returns, durable before its `IOFlushed` callback fires;
//! - snapshots (built or installed): durable before the call returns, hence before openraft
//!   purges the log they cover;
//! - `save_committed`: written at most every 50 ms, durable with the next flush of any group
//!   (openraft allows a stale `committed`; it only shortens the replay after a restart);
//! - `apply`: in memory only; the log and snapshots rebuild it.
//!
//! **Architecture Invariant**: only this crate knows sled; no sled type appears in its API.
//! **Architecture Invariant**: apply never reads the local clock (it runs
//! `roster_raft::ReplicatedState::apply`, which reads no clock).
//! A broken storage invariant (an entry that does not decode, a hole in the log, a snapshot whose
//! metadata does not match its content) is returned as an I/O error, which openraft treats as
//! fatal: the group's replica stops rather than serve from damaged state.
#![deny(missing_docs)]

mod disk;
mod flusher;
mod layout;
mod log;
mod segments;
mod state_machine;
mod tail;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long opening waits for the database's file lock to be released: this process's own
/// previous handle lets go within milliseconds; past this, another process holds it.
const LOCK_WAIT_MAX: Duration = Duration::from_secs(2);

use roster_raft::{CodecError, GroupKey, ReplicatedState};

pub use disk::{DiskFault, StoreOpener, DISK_PROBE_BYTES};
pub use flusher::{FLUSH_BATCH_MAX, FLUSH_INTERVAL_MIN, FLUSH_WAITERS_PENDING_MAX};
pub use layout::SNAPSHOT_CHUNK_SIZE_MAX;
pub use log::{LogStore, LOG_READ_BYTES_MAX, LOG_READ_ENTRIES_MAX};
pub use segments::LOG_SEGMENT_ENTRIES;
pub use state_machine::{GroupSnapshotBuilder, GroupStateHandle, StateMachineStore};

use crate::flusher::Flusher;
use crate::layout::GroupTrees;

/// A group's Raft, with this crate's state machine over the applied state `S`.
pub type GroupRaft<S> = roster_raft::typ::Raft<StateMachineStore<S>>;

/// Metric: seconds one durable point took (sled flush, `fdatasync`, blob syncs).
pub const FLUSH_DURATION: &str = "roster_store_flush_seconds";
/// Metric: waiters (appends of any group, votes, purges) completed by one flush.
pub const FLUSH_BATCH: &str = "roster_store_flush_batch";

/// Groups one node may hold replicas of: every group of the pool (G defaults to 32) plus the CMS
/// group, with room for a larger G.
pub const GROUPS_PER_NODE_MAX: usize = 1_024;

/// How a node's database is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// The database directory (created if absent).
    pub path: PathBuf,
    /// sled's page cache, in bytes. Default 64 MiB. Group states are held in memory anyway;
    /// the cache serves log reads for replication.
    pub cache_capacity_bytes: u64,
    /// Where durable points and blocking steps run. Default [`StoreIo::Threads`].
    pub io: StoreIo,
}

/// Where a store's durable points and blocking steps run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreIo {
    /// A flusher thread makes the writes of every group durable at once (group commit), and
    /// large sled writes, snapshot encodings and decodings run on Tokio's blocking threads.
    /// What a node uses.
    #[default]
    Threads,
    /// Every durable point and blocking step runs on the calling task, when it is asked for:
    /// the store starts no thread of its own (nor sled's periodic flush) and spawns no
    /// blocking task, so a one-threaded runtime with a paused clock sees every completion at a
    /// point fixed by its own tasks (deterministic simulation). One flush per durable point
    /// and the runtime waits on the disk meanwhile: for tests, not for a node.
    Inline,
}

impl StoreIo {
    /// Runs `work`, a blocking step (CPU-heavy, or sled writes of megabytes), where this mode
    /// runs them: on Tokio's blocking threads, or at once on the calling task.
    pub async fn run_blocking<T, F>(self, work: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self {
            StoreIo::Threads => tokio::task::spawn_blocking(work)
                .await
                .map_err(io::Error::other),
            StoreIo::Inline => Ok(work()),
        }
    }
}

/// Why the store could not be opened or a group not served.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, corruption found by sled, lock held by another process).
    #[error("database error: {0}")]
    Database(String),
    /// A file operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// Stored bytes did not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Stored data breaks an invariant of the store.
    #[error("group {key}: corrupt store: {reason}")]
    Corrupt {
        /// The group.
        key: GroupKey,
        /// What is wrong.
        reason: String,
    },
    /// The group's storage is already open (two writers would break Raft's ordering).
    #[error("group {0} is already open")]
    GroupOpen(GroupKey),
    /// More than [`GROUPS_PER_NODE_MAX`] groups open at once.
    #[error("more than {GROUPS_PER_NODE_MAX} groups open")]
    TooManyGroups,
    /// The database holds groups in the layout of an older Roster, which this one cannot read.
    #[error(
        "the database holds {tree:?}, a group stored by an older Roster: start this node from an \
         empty data directory (its replicas catch up from the pool)"
    )]
    OlderLayout {
        /// A tree of the older layout.
        tree: String,
    },
    /// A panic while the group's state was locked left it unusable.
    #[error("group {0}: state lock poisoned by a panic")]
    Poisoned(GroupKey),
}

/// One node's database, shared by all its routing groups. Cheap to clone.
#[derive(Clone)]
pub struct NodeStore {
    shared: Arc<Shared>,
}

/// What every handle of a node's store shares.
pub(crate) struct Shared {
    // Field order is drop order: the flusher joins its thread (which holds a `Db` clone) before
    // this handle of the database goes.
    flusher: Flusher,
    db: sled::Db,
    opener: StoreOpener,
    open_groups: Mutex<BTreeSet<GroupKey>>,
    /// Last, so dropped last: says the flusher and sled have let go of the database.
    released: Released,
}

/// Set when dropped: the last field of [`Shared`], so that [`NodeStore::close`] knows when
/// the fields before it (the flusher's thread, sled's files and lock) are gone, not only the
/// last handle (an `Arc`'s count drops before its content).
struct Released(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Released {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Held by every handle of an open group; the last one to go closes the group.
pub(crate) struct GroupLease {
    key: GroupKey,
    shared: Arc<Shared>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            path: PathBuf::from("roster-data"),
            cache_capacity_bytes: 64 * 1024 * 1024,
            io: StoreIo::Threads,
        }
    }
}

impl NodeStore {
    /// Opens (or creates) the database at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<NodeStore, StoreError> {
        NodeStore::open_with(&StoreOptions {
            path: path.as_ref().to_path_buf(),
            ..StoreOptions::default()
        })
    }

    /// Opens (or creates) the database described by `options`.
    pub fn open_with(options: &StoreOptions) -> Result<NodeStore, StoreError> {
        NodeStore::open_inner(options, None)
    }

    /// Opens (or creates) the database described by `options` on a disk that `fault` can make
    /// look full (tests and drills; see [`DiskFault`]). [`NodeStore::opener`] keeps the switch.
    pub fn open_with_fault(
        options: &StoreOptions,
        fault: DiskFault,
    ) -> Result<NodeStore, StoreError> {
        NodeStore::open_inner(options, Some(fault))
    }

    fn open_inner(
        options: &StoreOptions,
        fault: Option<DiskFault>,
    ) -> Result<NodeStore, StoreError> {
        remove_unfinished_snapshots(&options.path)?;
        remove_probe(&options.path)?;
        let config = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_capacity_bytes)
            // Logs are purged behind every snapshot: favour space reclamation.
            .mode(sled::Mode::LowSpace)
            // Durability comes from the flusher (flush + fdatasync); sled's own timer only
            // bounds how much unflushed data piles up between rounds.
            .flush_every_ms((options.io == StoreIo::Threads).then_some(1_000))
            .use_compression(false);
        let locked_since = std::time::Instant::now();
        let db = loop {
            match config.open() {
                // sled's threads let go of the file lock a moment after the last handle of a
                // database this process closed (a reopen after recovery, a test's restart);
                // another process holding it is reported once the wait is over.
                Err(sled::Error::Io(error))
                    if error.kind() == std::io::ErrorKind::WouldBlock
                        && locked_since.elapsed() < LOCK_WAIT_MAX =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other.map_err(database)?,
            }
        };
        if let Some(tree) = db
            .tree_names()
            .into_iter()
            .find(|name| layout::is_foreign_group_tree(name))
        {
            return Err(StoreError::OlderLayout {
                tree: String::from_utf8_lossy(&tree).into_owned(),
            });
        }
        // Durability: the files sled just created (`db`, `conf`, `blobs/`) exist after a crash
        // only once their directory is synced.
        sync_directory(&options.path)?;
        let flusher = Flusher::start(db.clone(), &options.path, fault.clone(), options.io)?;
        Ok(NodeStore {
            shared: Arc::new(Shared {
                flusher,
                db,
                opener: StoreOpener {
                    options: options.clone(),
                    fault,
                },
                open_groups: Mutex::new(BTreeSet::new()),
                released: Released(Arc::default()),
            }),
        })
    }

    /// Opens the storage of group `key`, loading its last snapshot.
    ///
    /// `fresh` is the state of a group that has no snapshot yet (the caller builds it; for a
    /// routing group it carries the registrar policy, replicated state every replica starts
    /// from); a group restored from a snapshot keeps the state recorded in it.
    pub fn group<S: ReplicatedState>(
        &self,
        key: GroupKey,
        fresh: S,
    ) -> Result<(LogStore, StateMachineStore<S>), StoreError> {
        let lease = Arc::new(self.lease(key)?);
        let trees = GroupTrees::of(key);
        let meta_tree = self.shared.db.open_tree(&trees.meta).map_err(database)?;
        let snapshot_tree = self
            .shared
            .db
            .open_tree(&trees.snapshot)
            .map_err(database)?;
        let log_store = LogStore::open(key, self.shared.db.clone(), meta_tree, lease.clone())?;
        let state_machine = StateMachineStore::open(key, snapshot_tree, fresh, lease)?;
        Ok((log_store, state_machine))
    }

    /// The groups that have data in this database, open or not.
    pub fn group_keys(&self) -> BTreeSet<GroupKey> {
        self.shared
            .db
            .tree_names()
            .iter()
            .filter_map(|name| layout::group_of_tree(name))
            .collect()
    }

    /// Whether some handle holds group `key`'s storage open (a [`LogStore`] or
    /// [`StateMachineStore`] from [`NodeStore::group`] that is not dropped yet).
    pub fn is_open(&self, key: GroupKey) -> bool {
        // A poisoned set only means a panic elsewhere mid-update.
        self.shared
            .open_groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&key)
    }

    /// Deletes a group's data (its replica moved away). The group must not be open.
    pub async fn remove_group(&self, key: GroupKey) -> Result<(), StoreError> {
        let lease = self.lease(key)?;
        // Every tree of the group: its log segments, meta and snapshot.
        for name in self.shared.db.tree_names() {
            if layout::group_of_tree(&name) == Some(key) {
                self.shared.db.drop_tree(name).map_err(database)?;
            }
        }
        // Durability: the removal is on disk before this returns.
        self.shared.flusher.flush().await?;
        drop(lease);
        Ok(())
    }

    /// Makes everything written so far durable (one flusher round).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.shared.flusher.flush().await?;
        Ok(())
    }

    /// Flusher rounds so far, each one sled flush plus one `fdatasync`, serving any number of
    /// writes from any number of groups.
    pub fn flush_count(&self) -> u64 {
        self.shared.flusher.flush_count()
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.shared.opener.path()
    }

    /// Why the store is poisoned, if it is: a flush failed (a full disk, an I/O error), so no
    /// write can be made durable through it any more, and every group's next durable write
    /// fails. Close it and open the database again.
    pub fn failure(&self) -> Option<String> {
        self.shared.flusher.failure()
    }

    /// Where this store's durable points and blocking steps run; the node runs its own blocking
    /// steps the same way ([`StoreIo::run_blocking`]).
    pub fn io(&self) -> StoreIo {
        self.shared.opener.options.io
    }

    /// What opens this database again (its options and fault switch).
    pub fn opener(&self) -> StoreOpener {
        self.shared.opener.clone()
    }

    /// Drops this handle and waits, at most `wait`, until every other handle of the database
    /// is gone too (the groups' storage included: stop their Raft first): then the flusher has
    /// finished and sled has released the database, and [`StoreOpener::open`] may open it
    /// again. Gives the store back if some handle still holds it after `wait`.
    pub async fn close(self, wait: Duration) -> Result<(), NodeStore> {
        /// How often the wait looks again: the last handles go within milliseconds of their
        /// groups' Raft stopping (requests in flight, replication tasks ending).
        const CLOSE_POLL: Duration = Duration::from_millis(10);
        let released = Arc::clone(&self.shared.released.0);
        let weak = Arc::downgrade(&self.shared);
        drop(self);
        let deadline = tokio::time::Instant::now() + wait;
        while !released.load(std::sync::atomic::Ordering::SeqCst) {
            if tokio::time::Instant::now() >= deadline {
                if let Some(shared) = weak.upgrade() {
                    return Err(NodeStore { shared });
                }
                // The last handle is being dropped right now: its flusher joins within a flush.
            }
            tokio::time::sleep(CLOSE_POLL).await;
        }
        Ok(())
    }

    fn lease(&self, key: GroupKey) -> Result<GroupLease, StoreError> {
        let mut open = self
            .shared
            .open_groups
            .lock()
            .map_err(|_| StoreError::Poisoned(key))?;
        if open.contains(&key) {
            return Err(StoreError::GroupOpen(key));
        }
        if open.len() >= GROUPS_PER_NODE_MAX {
            return Err(StoreError::TooManyGroups);
        }
        open.insert(key);
        Ok(GroupLease {
            key,
            shared: self.shared.clone(),
        })
    }
}

impl GroupLease {
    pub(crate) fn key(&self) -> GroupKey {
        self.key
    }

    pub(crate) fn flusher(&self) -> &Flusher {
        &self.shared.flusher
    }

    pub(crate) fn io(&self) -> StoreIo {
        self.shared.opener.options.io
    }
}

impl Drop for GroupLease {
    fn drop(&mut self) {
        // A short section without `.await`. A poisoned set only means a panic elsewhere; the
        // group is closed either way.
        let mut open = match self.shared.open_groups.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        open.remove(&self.key);
    }
}

pub(crate) fn database(error: sled::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

pub(crate) fn sled_io(error: sled::Error) -> io::Error {
    io::Error::other(error.to_string())
}

/// Removes the half-written page-table snapshots sled left in `path` (`snap.<lsn>.generating`).
///
/// sled writes a snapshot to `snap.<lsn>.generating`, syncs it, then renames it to `snap.<lsn>`,
/// and only then deletes the older snapshots; at startup it reads the name that sorts last,
/// `.generating` included, and refuses to open ("Read corrupted data") when that file is cut
/// short, as it is when the disk filled up or the process died while writing it. Such a file was
/// never used: until the rename the older snapshot and the log are the database, exactly as if
/// sled had not started writing, so removing it gives sled the state it recovers from a crash at
/// that earlier moment. The removal is made durable before sled opens.
fn remove_unfinished_snapshots(path: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        // A new database: nothing to clean.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let mut removed = false;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let length = entry.metadata().map(|metadata| metadata.len()).ok();
            tracing::warn!(
                file = %entry.path().display(),
                bytes = ?length,
                "removing a half-written sled snapshot (the disk was full or the node stopped \
                 while writing it); the database opens from the snapshot before it and its log"
            );
            std::fs::remove_file(entry.path())?;
            removed = true;
        }
    }
    if removed {
        std::fs::File::open(path)?.sync_all()?;
    }
    Ok(())
}

/// Removes a disk probe left by a crash in the middle of one ([`StoreOpener::probe_disk`]): it
/// would hold the space the database needs.
fn remove_probe(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path.join(disk::PROBE_FILE)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn sync_directory(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::storage::{RaftLogReader, RaftLogStorage};
    use roster_raft::typ;
    use roster_registrar::Policy;

    use super::*;

    #[test]
    fn a_database_of_an_older_layout_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let db = sled::open(dir.path()).expect("sled");
            db.open_tree("group/0000000003/meta")
                .expect("tree")
                .insert(b"vote", vec![1])
                .expect("insert");
            db.flush().expect("flush");
        }
        let refused = NodeStore::open(dir.path());
        assert!(
            matches!(&refused, Err(StoreError::OlderLayout { tree }) if tree == "group/0000000003/meta"),
            "{:?}",
            refused.err()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_written_sled_snapshot_does_not_stop_the_database_from_opening() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("node");
        let vote = typ::Vote::new_committed(3, 2);
        {
            let node = NodeStore::open(&path).unwrap();
            let (mut log, _state_machine) = node
                .group(
                    roster_raft::GroupKey::routing(1, 5),
                    roster_raft::GroupState::new(Policy::default()),
                )
                .unwrap();
            log.save_vote(&vote).await.unwrap();
            drop((log, _state_machine));
            // The flusher thread lets go of sled's lock a moment after the last handle.
            assert!(node.close(Duration::from_secs(10)).await.is_ok());
        }
        // What a full disk leaves: the newest snapshot name, cut short at 0 bytes (sled reads
        // the name that sorts last, and refuses a file of 12 bytes or less).
        let half_written = path.join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&half_written, b"").unwrap();
        let node = NodeStore::open(&path).unwrap();
        assert!(!half_written.exists(), "the unfinished snapshot is removed");
        let (mut log, _state_machine) = node
            .group(
                roster_raft::GroupKey::routing(1, 5),
                roster_raft::GroupState::new(Policy::default()),
            )
            .unwrap();
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(vote),
            "nothing stored is lost"
        );
        // A complete snapshot of sled's is not touched.
        let names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect();
        assert!(
            names.iter().all(|name| !name.ends_with(".generating")),
            "{names:?}"
        );
    }
}
