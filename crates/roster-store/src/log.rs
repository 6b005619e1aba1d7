//! [`LogStore`]: one group's Raft log and vote in sled (`RaftLogStorage` + `RaftLogReader`).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use roster_raft::codec::{decode_entry, decode_meta, encode_entry, encode_meta};
use roster_raft::{typ, GroupKey, TypeConfig};
// Tokio's clock: the real one in a node, the paused one of a deterministic simulation.
use tokio::time::Instant;

use crate::flusher::Waiter;
use crate::layout::{META_COMMITTED, META_PURGED, META_VOTE};
use crate::segments::{Run, Segments};
use crate::tail::{Tail, TailRead};
use crate::{sled_io, GroupLease, StoreError};

/// Entries returned by one `limited_get_log_entries` call at most (replication reads in such
/// batches; openraft sends at most `PAYLOAD_ENTRIES_MAX` per message anyway).
pub const LOG_READ_ENTRIES_MAX: usize = 1_024;
/// Encoded bytes returned by one `limited_get_log_entries` call at most (at least one entry is
/// always returned): bounds the memory of one replication read.
pub const LOG_READ_BYTES_MAX: usize = 16 * 1024 * 1024;

const _: () = assert!(LOG_READ_BYTES_MAX >= roster_raft::ENTRY_SIZE_MAX);

/// One group's log store; also its own log reader (clones share everything).
#[derive(Clone)]
pub struct LogStore {
    key: GroupKey,
    /// The entries, in segment trees. Lock order: `tail` before `segments`.
    segments: Arc<RwLock<Segments>>,
    meta: sled::Tree,
    lease: Arc<GroupLease>,
    /// The newest entries, decoded: replication and apply read them from here. Every change
    /// of the log's end happens under this lock (see [`Tail`]).
    tail: Arc<Mutex<Tail>>,
    /// The latest committed log id openraft saved, and when it was last written to sled (the
    /// writer's own; readers never use them).
    committed: Option<typ::LogId>,
    committed_written_at: Option<Instant>,
}

/// Least time between two writes of the committed log id to sled. Openraft saves it at every
/// commit; written each time it cost a sled insert per write on every replica. Stale on disk
/// by at most this (or until the next commit), it only shortens the replay after a restart.
const COMMITTED_WRITE_INTERVAL: Duration = Duration::from_millis(50);

impl LogStore {
    /// Opens the group's log in `db`; `meta` is the group's meta tree. Finishes a purge a
    /// crash interrupted.
    pub(crate) fn open(
        key: GroupKey,
        db: sled::Db,
        meta: sled::Tree,
        lease: Arc<GroupLease>,
    ) -> Result<LogStore, StoreError> {
        debug_assert_eq!(lease.key(), key);
        let purged: Option<typ::LogId> = read_meta(&meta, META_PURGED, "purged log id")?;
        let segments = Segments::open(db, key, purged.map(|log_id| log_id.index))?;
        Ok(LogStore {
            key,
            segments: Arc::new(RwLock::new(segments)),
            meta,
            lease,
            tail: Arc::default(),
            committed: None,
            committed_written_at: None,
        })
    }

    /// The group this log belongs to.
    pub fn key(&self) -> GroupKey {
        self.key
    }

    fn read_purged(&self) -> io::Result<Option<typ::LogId>> {
        self.read_meta(META_PURGED, "purged log id")
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> io::Result<Option<T>> {
        read_meta(&self.meta, key, what)
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        what: &'static str,
        value: &T,
    ) -> io::Result<()> {
        let bytes = encode_meta(what, value).map_err(invalid)?;
        self.meta.insert(key, bytes).map_err(sled_io)?;
        Ok(())
    }

    // The segments are changed only by code that cannot panic halfway through a change of the
    // map; a poisoned lock still holds consistent segments.
    fn segments(&self) -> RwLockReadGuard<'_, Segments> {
        self.segments.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn segments_mut(&self) -> RwLockWriteGuard<'_, Segments> {
        self.segments
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The last entry's log id, from the log itself (purged entries excluded).
    fn last_entry_log_id(&self) -> io::Result<Option<typ::LogId>> {
        let Some((index, bytes)) = self.segments().last()? else {
            return Ok(None);
        };
        let entry = self.decode_at(index, &bytes)?;
        Ok(Some(entry.log_id))
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        // The tail is changed only together with sled, by code that cannot panic between the
        // two; a poisoned lock still holds a consistent tail.
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last entry's index: the tail's, else from the last run (no decode).
    fn last_index(&self, tail: &Tail) -> io::Result<Option<u64>> {
        if let Some(index) = tail.last_index() {
            return Ok(Some(index));
        }
        Ok(self.segments().last()?.map(|(index, _)| index))
    }

    /// Decodes the entry stored as the entry of `index`, checking that it is.
    fn decode_at(&self, index: u64, bytes: &[u8]) -> io::Result<typ::Entry> {
        let entry = decode_entry(bytes).map_err(invalid)?;
        if entry.log_id.index != index {
            return Err(self.corrupt(&format!(
                "key {index} holds the entry of index {}",
                entry.log_id.index
            )));
        }
        Ok(entry)
    }

    /// Reads entries of `range`, at most `entries_max` of them and (past the first)
    /// `bytes_max` encoded bytes, checking that they are consecutive.
    fn read_range<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        entries_max: usize,
        bytes_max: usize,
    ) -> io::Result<Vec<typ::Entry>> {
        if let TailRead::Served(entries) = self.tail().read(&range, entries_max, bytes_max) {
            return Ok(entries);
        }
        let from = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(index) => index.checked_add(1),
            Bound::Excluded(index) => Some(*index),
            Bound::Unbounded => None,
        };
        let mut entries: Vec<typ::Entry> = Vec::new();
        let mut bytes_read = 0usize;
        self.segments().scan(from, to, |index, bytes| {
            if !entries.is_empty()
                && (entries.len() >= entries_max || bytes_read + bytes.len() > bytes_max)
            {
                return Ok(false);
            }
            let entry = self.decode_at(index, bytes)?;
            if let Some(previous) = entries.last() {
                if entry.log_id.index != previous.log_id.index + 1 {
                    return Err(self.corrupt(&format!(
                        "hole in the log between {} and {}",
                        previous.log_id.index, entry.log_id.index
                    )));
                }
            }
            bytes_read += bytes.len();
            entries.push(entry);
            Ok(true)
        })?;
        Ok(entries)
    }

    /// Writes `entries` after the log's end (not yet durable) and into the tail.
    fn insert_entries(&self, entries: impl IntoIterator<Item = typ::Entry>) -> io::Result<()> {
        let mut tail = self.tail();
        let mut previous: Option<u64> = self.last_index(&tail)?;
        let mut segments = self.segments_mut();
        // The entries of the run being built, which join the tail once it is written.
        let mut run = Run::default();
        let mut pending: Vec<(typ::Entry, usize)> = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            // Precondition: appends extend the log without a hole; a conflicting suffix has been
            // truncated first (openraft's contract).
            if let Some(previous) = previous {
                if index != previous + 1 {
                    return Err(io::Error::other(format!(
                        "group {}: append of index {index} after {previous} would leave a hole or overwrite",
                        self.key
                    )));
                }
            }
            // An entry too large to read back must not be written: refusing stops the replica.
            let bytes = encode_entry(&entry).map_err(invalid)?;
            if !run.accepts(index, bytes.len()) {
                write_run(
                    &mut segments,
                    &mut tail,
                    std::mem::take(&mut run),
                    &mut pending,
                )?;
            }
            run.push(index, &bytes)?;
            pending.push((entry, bytes.len()));
            previous = Some(index);
        }
        write_run(&mut segments, &mut tail, run, &mut pending)
    }

    /// Runs `remove` on sled and `trim` on the tail under the tail's lock. If `remove` fails,
    /// whatever sled kept, the tail must not claim what it may no longer hold: it is cleared.
    fn remove_with_tail(
        &self,
        remove: impl FnOnce(&LogStore) -> io::Result<()>,
        trim: impl FnOnce(&mut Tail),
    ) -> io::Result<()> {
        let mut tail = self.tail();
        let removed = remove(self);
        match removed {
            Ok(()) => trim(&mut tail),
            Err(_) => tail.clear(),
        }
        removed
    }

    fn corrupt(&self, reason: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("group {}: corrupt log: {reason}", self.key),
        )
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<typ::Entry>, io::Error> {
        self.read_range(range, usize::MAX, usize::MAX)
    }

    async fn read_vote(&mut self) -> Result<Option<typ::Vote>, io::Error> {
        self.read_meta(META_VOTE, "vote")
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<typ::Entry>, io::Error> {
        self.read_range(start..end, LOG_READ_ENTRIES_MAX, LOG_READ_BYTES_MAX)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<typ::LogState, io::Error> {
        let last_purged_log_id = self.read_purged()?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &typ::Vote) -> Result<(), io::Error> {
        self.write_meta(META_VOTE, "vote", vote)?;
        // Durability: the vote is on disk before this returns.
        self.lease.flusher().flush().await
    }

    async fn save_committed(&mut self, committed: Option<typ::LogId>) -> Result<(), io::Error> {
        self.committed = committed;
        match committed {
            Some(log_id) => {
                let now = Instant::now();
                let due = self
                    .committed_written_at
                    .is_none_or(|at| now.duration_since(at) >= COMMITTED_WRITE_INTERVAL);
                if due {
                    self.write_meta(META_COMMITTED, "committed log id", &log_id)?;
                    self.committed_written_at = Some(now);
                }
            }
            None => {
                self.meta.remove(META_COMMITTED).map_err(sled_io)?;
                self.committed_written_at = None;
            }
        }
        // Durability: none awaited here; the next flush of any group carries it. A crash may
        // lose the latest value (and the value is written at most every
        // `COMMITTED_WRITE_INTERVAL`), which only makes the restart replay less (see the crate
        // doc).
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<typ::LogId>, io::Error> {
        match self.committed {
            Some(log_id) => Ok(Some(log_id)),
            None => self.read_meta(META_COMMITTED, "committed log id"),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = typ::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.insert_entries(entries)?;
        // Durability: the callback fires after the flusher's next flush + fdatasync.
        self.lease.flusher().enqueue(Waiter::Append(callback)).await
    }

    async fn truncate_after(&mut self, last_log_id: Option<typ::LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |log_id| log_id.index + 1);
        self.remove_with_tail(
            |log| log.segments_mut().remove_from(from),
            |tail| tail.truncate_from(from),
        )?;
        // Durability: the truncation is on disk before this returns, so a restart cannot bring
        // back a suffix that conflicts with entries appended after it.
        self.lease.flusher().flush().await?;
        // Postcondition: nothing at or after `from` remains.
        let last = self.last_entry_log_id()?;
        if last.is_some_and(|log_id| log_id.index >= from) {
            return Err(self.corrupt("entries remain after truncation"));
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: typ::LogId) -> Result<(), io::Error> {
        // The purged id first: entries at or below it are hidden (and their trees dropped at
        // open) even if the drops below are interrupted. Cheap: whole segment trees go (see
        // `segments`), which matters because openraft runs a purge inside the group's core.
        self.write_meta(META_PURGED, "purged log id", &log_id)?;
        self.remove_with_tail(
            |log| log.segments_mut().purge_through(log_id.index),
            |tail| tail.purge_through(log_id.index),
        )?;
        // Durability: the purge is on disk before this returns.
        self.lease.flusher().flush().await
    }
}

/// Writes `run` and then moves its entries (`pending`) into the tail.
///
/// One insert per run, in index order, not a `sled::Batch`: sled 0.34 writes out and
/// `sync_file_range`s its I/O buffer twice for every batch (before and after a batch manifest),
/// which cost a loaded node thousands of small synchronous writes a second. A crash before the
/// flush keeps a prefix of the runs (sled recovers its log in order up to the first torn
/// message, and each insert is atomic): no hole, and none of them was reported durable.
/// Readable by every reader once inserted.
fn write_run(
    segments: &mut Segments,
    tail: &mut Tail,
    run: Run,
    pending: &mut Vec<(typ::Entry, usize)>,
) -> io::Result<()> {
    segments.insert(run)?;
    for (entry, size) in pending.drain(..) {
        // Appends are contiguous (checked by the caller): the log ended just before it.
        let previous = entry.log_id.index.checked_sub(1);
        tail.push(previous, entry, size);
    }
    Ok(())
}

/// The value under `key` of a group's meta tree, decoded.
fn read_meta<T: serde::de::DeserializeOwned>(
    meta: &sled::Tree,
    key: &[u8],
    what: &'static str,
) -> io::Result<Option<T>> {
    let Some(bytes) = meta.get(key).map_err(sled_io)? else {
        return Ok(None);
    };
    decode_meta(what, &bytes).map(Some).map_err(invalid)
}

fn invalid(error: roster_raft::CodecError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
