//! [`ReplicatedState`]: what any Raft group's replicas compute from its log, as the storage sees
//! it.

use crate::codec::CodecError;
use crate::state::ApplyError;
use crate::{typ, GroupResponse};

/// The applied state of one Raft group: a pure, deterministic function of the log.
///
/// The store (`roster-store`) keeps any such state in memory, applies committed entries to it
/// and snapshots it, without knowing what it holds: a routing group's registry, the CMS's
/// directory. Implementations must give the same state and the same responses on every
/// replica for the same entries: no clock, no environment, no randomness.
pub trait ReplicatedState: Clone + Send + Sync + 'static {
    /// Applies one committed entry: the Raft apply step. An entry at or before the last applied
    /// one is an [`ApplyError`] and changes nothing (a broken storage invariant, which stops
    /// the replica).
    fn apply(&mut self, entry: &typ::Entry) -> Result<GroupResponse, ApplyError>;

    /// The log id of the last applied entry.
    fn last_applied(&self) -> Option<typ::LogId>;

    /// The last membership applied, with its log id.
    fn last_membership(&self) -> &typ::StoredMembership;

    /// Encodes the whole state as snapshot bytes (bounded by
    /// [`SNAPSHOT_SIZE_MAX`](crate::SNAPSHOT_SIZE_MAX)).
    fn encode_snapshot(&self) -> Result<Vec<u8>, CodecError>;

    /// Decodes bytes made by [`ReplicatedState::encode_snapshot`].
    fn decode_snapshot(bytes: &[u8]) -> Result<Self, CodecError>;

    /// The metadata a snapshot of this state carries.
    fn snapshot_meta(&self) -> typ::SnapshotMeta {
        typ::SnapshotMeta {
            last_log_id: self.last_applied(),
            last_membership: self.last_membership().clone(),
        }
    }
}
