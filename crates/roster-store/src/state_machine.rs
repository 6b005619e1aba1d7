//! [`StateMachineStore`]: one group's applied state, in memory, with snapshots in sled
//! (`RaftStateMachine` + `RaftSnapshotBuilder`).

use std::io;
use std::sync::{Arc, RwLock};

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::OptionalSend;
use roster_raft::codec::{self, SNAPSHOT_SIZE_MAX};
use roster_raft::{typ, GroupKey, ReplicatedState, TypeConfig};

use crate::layout::{
    chunk_key, SNAPSHOT_CHUNKS, SNAPSHOT_CHUNK_SIZE_MAX, SNAPSHOT_LENGTH, SNAPSHOT_META,
};
use crate::{sled_io, GroupLease, StoreError};

/// Largest encoded snapshot metadata, in bytes: two log ids and a membership of at most 16
/// nodes with their addresses.
const SNAPSHOT_META_SIZE_MAX: usize = 64 * 1024;

/// Chunks of one snapshot at most.
const SNAPSHOT_CHUNKS_MAX: usize = SNAPSHOT_SIZE_MAX.div_ceil(SNAPSHOT_CHUNK_SIZE_MAX);

/// One group's state machine: its applied state `S` in memory, its snapshots in sled.
pub struct StateMachineStore<S> {
    key: GroupKey,
    state: GroupStateHandle<S>,
    snapshots: SnapshotStore,
}

/// A shared, read-mostly handle to a group's applied state, for reads outside Raft (lookups
/// after `Raft::ensure_linearizable`, status pages). Cheap to clone.
pub struct GroupStateHandle<S> {
    key: GroupKey,
    state: Arc<RwLock<S>>,
}

// By hand: a derive would ask `S: Clone`, and cloning the handle never clones the state.
impl<S> Clone for GroupStateHandle<S> {
    fn clone(&self) -> Self {
        GroupStateHandle {
            key: self.key,
            state: Arc::clone(&self.state),
        }
    }
}

/// Builds a snapshot from a copy of the state taken between two applies.
pub struct GroupSnapshotBuilder<S> {
    /// Shared with the encoding thread, so the copy is made once (a group of 30,000 AORs takes
    /// milliseconds to copy, and the second copy ran on an async worker).
    state: Arc<S>,
    snapshots: SnapshotStore,
}

/// A group's snapshot tree, with the lock that serializes snapshot writes.
#[derive(Clone)]
struct SnapshotStore {
    key: GroupKey,
    tree: sled::Tree,
    /// Held across a snapshot's write and flush, so that an older snapshot never replaces a
    /// newer one.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    lease: Arc<GroupLease>,
}

impl<S: ReplicatedState> StateMachineStore<S> {
    pub(crate) fn open(
        key: GroupKey,
        tree: sled::Tree,
        fresh: S,
        lease: Arc<GroupLease>,
    ) -> Result<StateMachineStore<S>, StoreError> {
        let snapshots = SnapshotStore {
            key,
            tree,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            lease,
        };
        let state = match snapshots.read()? {
            None => fresh,
            Some(snapshot) => {
                decode_checked(key, &snapshot.meta, &snapshot.snapshot).map_err(|error| {
                    StoreError::Corrupt {
                        key,
                        reason: error.to_string(),
                    }
                })?
            }
        };
        Ok(StateMachineStore {
            key,
            state: GroupStateHandle {
                key,
                state: Arc::new(RwLock::new(state)),
            },
            snapshots,
        })
    }

    /// The group this state machine belongs to.
    pub fn key(&self) -> GroupKey {
        self.key
    }

    /// A handle reading the applied state from outside Raft.
    pub fn state_handle(&self) -> GroupStateHandle<S> {
        self.state.clone()
    }
}

impl<S: ReplicatedState> GroupStateHandle<S> {
    /// Runs `read` on the applied state. Holds a read lock for its duration: keep it short and
    /// never `.await` inside.
    pub fn read<R>(&self, read: impl FnOnce(&S) -> R) -> Result<R, StoreError> {
        let state = self
            .state
            .read()
            .map_err(|_| StoreError::Poisoned(self.key))?;
        Ok(read(&state))
    }

    /// A copy of the applied state.
    pub fn snapshot(&self) -> Result<S, StoreError> {
        self.read(S::clone)
    }

    fn write<R>(&self, write: impl FnOnce(&mut S) -> R) -> io::Result<R> {
        // A short section without `.await`; a poisoned lock means a panic mid-apply left the
        // state unknown, so the replica stops.
        let mut state = self
            .state
            .write()
            .map_err(|_| io::Error::other(StoreError::Poisoned(self.key)))?;
        Ok(write(&mut state))
    }
}

impl<S: ReplicatedState> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotData = typ::SnapshotData;
    type SnapshotBuilder = GroupSnapshotBuilder<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<typ::LogId>, typ::StoredMembership), io::Error> {
        self.state
            .read(|state| (state.last_applied(), state.last_membership().clone()))
            .map_err(io::Error::other)
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<typ::EntryResponder, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            // Durability: none; the state is in memory and rebuilt from snapshot + log.
            let response = self
                .state
                .write(|state| state.apply(&entry))?
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        Some(self.get_snapshot_builder().await)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called between applies, so the copy is a consistent state. A poisoned lock still
        // yields the last state written; the next apply stops the replica anyway.
        let state = match self.state.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        GroupSnapshotBuilder {
            state: Arc::new(state),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &typ::SnapshotMeta,
        snapshot: typ::SnapshotData,
    ) -> Result<(), io::Error> {
        let key = self.key;
        let meta_copy = meta.clone();
        let (state, snapshot) = self
            .snapshots
            .lease
            .io()
            .run_blocking(move || {
                decode_checked(key, &meta_copy, &snapshot).map(|state| (state, snapshot))
            })
            .await??;
        // Durability: the snapshot is on disk before the state is replaced and before this
        // returns (openraft purges the log it covers afterwards).
        self.snapshots.store(meta, &snapshot).await?;
        self.state.write(|current| *current = state)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<typ::Snapshot>, io::Error> {
        let snapshots = self.snapshots.clone();
        let io = snapshots.lease.io();
        io.run_blocking(move || snapshots.read())
            .await?
            .map_err(io::Error::other)
    }
}

impl<S: ReplicatedState> RaftSnapshotBuilder<TypeConfig> for GroupSnapshotBuilder<S> {
    type SnapshotData = typ::SnapshotData;

    async fn build_snapshot(&mut self) -> Result<typ::Snapshot, io::Error> {
        let meta = self.state.snapshot_meta();
        let state = Arc::clone(&self.state);
        let bytes = self
            .snapshots
            .lease
            .io()
            .run_blocking(move || state.encode_snapshot())
            .await?
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        // Durability: on disk before this returns, hence before openraft purges the log.
        self.snapshots.store(&meta, &bytes).await?;
        Ok(typ::Snapshot {
            meta,
            snapshot: bytes,
        })
    }
}

impl SnapshotStore {
    /// Writes `bytes` as the group's snapshot unless a newer one is stored, then flushes.
    async fn store(&self, meta: &typ::SnapshotMeta, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() > SNAPSHOT_SIZE_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot of {} bytes exceeds {SNAPSHOT_SIZE_MAX}",
                    bytes.len()
                ),
            ));
        }
        let meta_bytes = codec::encode::<_, SNAPSHOT_META_SIZE_MAX>("snapshot meta", meta)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        let _writing = self.write_lock.lock().await;
        let stored = self.read_meta()?;
        if stored.is_some_and(|stored| stored.last_log_id > meta.last_log_id) {
            // A newer snapshot was installed meanwhile; it stays.
            return Ok(());
        }
        let previous_chunks = self.read_u32(SNAPSHOT_CHUNKS)?.unwrap_or(0);
        let mut batch = sled::Batch::default();
        for number in 0..previous_chunks {
            batch.remove(chunk_key(number));
        }
        let mut chunks = 0u32;
        for chunk in bytes.chunks(SNAPSHOT_CHUNK_SIZE_MAX) {
            batch.insert(chunk_key(chunks), chunk);
            chunks += 1;
        }
        batch.insert(SNAPSHOT_CHUNKS, &chunks.to_be_bytes());
        batch.insert(SNAPSHOT_LENGTH, &(bytes.len() as u64).to_be_bytes());
        batch.insert(SNAPSHOT_META, meta_bytes);
        // Atomic: a reader (or a restart) sees the old snapshot or the new one, never a mix.
        // Megabytes go into sled here: off the async threads, which carry every group's Raft.
        let tree = self.tree.clone();
        self.lease
            .io()
            .run_blocking(move || tree.apply_batch(batch))
            .await?
            .map_err(sled_io)?;
        // Durability: flush + fdatasync before returning.
        self.lease.flusher().flush().await
    }

    /// The stored snapshot, if any, with its length and chunk count checked.
    fn read(&self) -> io::Result<Option<typ::Snapshot>> {
        let Some(meta) = self.read_meta()? else {
            return Ok(None);
        };
        let length = self.read_u64(SNAPSHOT_LENGTH)?.unwrap_or(0);
        let chunks = self.read_u32(SNAPSHOT_CHUNKS)?.unwrap_or(0);
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if length > SNAPSHOT_SIZE_MAX || chunks as usize > SNAPSHOT_CHUNKS_MAX {
            return Err(self.corrupt("snapshot length or chunk count past its limit"));
        }
        let mut bytes = Vec::with_capacity(length);
        for number in 0..chunks {
            let chunk = self
                .tree
                .get(chunk_key(number))
                .map_err(sled_io)?
                .ok_or_else(|| self.corrupt("a snapshot chunk is missing"))?;
            bytes.extend_from_slice(&chunk);
        }
        // Pair check with `store`: what was written is what is read.
        if bytes.len() != length {
            return Err(self.corrupt("snapshot length differs from its recorded length"));
        }
        Ok(Some(typ::Snapshot {
            meta,
            snapshot: bytes,
        }))
    }

    fn read_meta(&self) -> io::Result<Option<typ::SnapshotMeta>> {
        let Some(bytes) = self.tree.get(SNAPSHOT_META).map_err(sled_io)? else {
            return Ok(None);
        };
        codec::decode::<_, SNAPSHOT_META_SIZE_MAX>("snapshot meta", &bytes)
            .map(Some)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }

    fn read_u32(&self, key: &[u8]) -> io::Result<Option<u32>> {
        let Some(bytes) = self.tree.get(key).map_err(sled_io)? else {
            return Ok(None);
        };
        let array: [u8; 4] = bytes
            .as_ref()
            .try_into()
            .map_err(|_| self.corrupt("a snapshot counter is not 4 bytes"))?;
        Ok(Some(u32::from_be_bytes(array)))
    }

    fn read_u64(&self, key: &[u8]) -> io::Result<Option<u64>> {
        let Some(bytes) = self.tree.get(key).map_err(sled_io)? else {
            return Ok(None);
        };
        let array: [u8; 8] = bytes
            .as_ref()
            .try_into()
            .map_err(|_| self.corrupt("a snapshot length is not 8 bytes"))?;
        Ok(Some(u64::from_be_bytes(array)))
    }

    fn corrupt(&self, reason: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("group {}: corrupt snapshot: {reason}", self.key),
        )
    }
}

/// Decodes a snapshot and checks it against its metadata: a pair check across the network or
/// disk boundary.
fn decode_checked<S: ReplicatedState>(
    key: GroupKey,
    meta: &typ::SnapshotMeta,
    bytes: &[u8],
) -> io::Result<S> {
    let state = S::decode_snapshot(bytes)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    if state.snapshot_meta() != *meta {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "group {key}: snapshot content is at {:?}, its metadata says {:?}",
                state.last_applied(),
                meta.last_log_id
            ),
        ));
    }
    Ok(state)
}
