//! [`GroupState`]: what one routing group's replicas compute from its log.

use openraft::EntryPayload;
use roster_registrar::{Binding, Policy, Registry};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_SIZE_MAX};
use crate::machine::ReplicatedState;
use crate::request::{GroupCommand, GroupRequest, GroupResponse};
use crate::typ;

/// The applied state of one routing group: pure and deterministic.
///
/// The same entries applied in the same order give the same state and the same responses on
/// every replica: [`GroupState::apply`] reads only the entry and the state, never a clock, an
/// environment or a random source. Time is the entry's leader timestamp, raised to the last
/// applied one if it is lower (leader clocks may step back across a leader change; the
/// registrar's expiry arithmetic must not).
///
/// Fencing: a request whose epoch is below the group's is refused with
/// [`GroupResponse::StaleEpoch`] and changes nothing; a request with a higher epoch raises the
/// group's epoch to it (the highest epoch seen wins, as with fencing tokens).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupState {
    registry: Registry,
    epoch: u64,
    last_applied: Option<typ::LogId>,
    last_membership: typ::StoredMembership,
    last_time_ms: u64,
}

/// An entry that cannot be applied: a broken storage invariant, which stops the replica.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    /// Entries must be applied in log order: each after the last applied one.
    #[error("entry {entry} does not come after the last applied entry {last_applied}")]
    OutOfOrder {
        /// The entry offered.
        entry: typ::LogId,
        /// The last entry applied.
        last_applied: typ::LogId,
    },
}

impl GroupState {
    /// An empty group whose registry applies `policy`.
    ///
    /// Every replica of a group must start from the same policy: it is part of the replicated
    /// state (snapshots carry it).
    pub fn new(policy: Policy) -> GroupState {
        GroupState {
            registry: Registry::new(policy),
            epoch: 0,
            last_applied: None,
            last_membership: typ::StoredMembership::default(),
            last_time_ms: 0,
        }
    }

    /// The bindings of every AOR of the group.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The live bindings of `aor` at the reader's `now_ms`, as `Registry::lookup`.
    pub fn lookup(&self, aor: &str, now_ms: u64) -> Vec<Binding> {
        self.registry.lookup(aor, now_ms)
    }

    /// The group's ownership epoch: requests below it are refused.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The effective time of the last applied command, in milliseconds since the Unix epoch.
    pub fn last_time_ms(&self) -> u64 {
        self.last_time_ms
    }

    /// Runs one request: the epoch check, the effective time, then the command.
    fn apply_request(&mut self, request: &GroupRequest) -> GroupResponse {
        if request.epoch < self.epoch {
            return GroupResponse::StaleEpoch {
                current: self.epoch,
            };
        }
        self.epoch = request.epoch;
        let now_ms = request.timestamp_ms.max(self.last_time_ms);
        self.last_time_ms = now_ms;
        match &request.command {
            GroupCommand::SetEpoch => GroupResponse::EpochSet { epoch: self.epoch },
            GroupCommand::Registrar(command) => {
                GroupResponse::from_outcome(self.registry.apply(command, now_ms), now_ms)
            }
        }
    }
}

impl ReplicatedState for GroupState {
    fn last_applied(&self) -> Option<typ::LogId> {
        self.last_applied
    }

    fn last_membership(&self) -> &typ::StoredMembership {
        &self.last_membership
    }

    /// Applies one committed log entry: the Raft apply step.
    ///
    /// Blank entries only advance the last applied log id; membership entries also record the
    /// membership; normal entries run [`GroupRequest`]s. An entry at or before the last applied
    /// one is an [`ApplyError`] and changes nothing. (Gaps are not refused: Raft never makes
    /// them, but openraft's storage test suite applies entries with gaps.)
    fn apply(&mut self, entry: &typ::Entry) -> Result<GroupResponse, ApplyError> {
        if let Some(last_applied) = self.last_applied {
            if entry.log_id.index <= last_applied.index || entry.log_id <= last_applied {
                return Err(ApplyError::OutOfOrder {
                    entry: entry.log_id,
                    last_applied,
                });
            }
        }
        let response = match &entry.payload {
            EntryPayload::Blank => GroupResponse::Blank,
            EntryPayload::Normal(request) => self.apply_request(request),
            EntryPayload::Membership(membership) => {
                self.last_membership =
                    typ::StoredMembership::new(Some(entry.log_id), membership.clone());
                GroupResponse::Membership
            }
        };
        self.last_applied = Some(entry.log_id);
        Ok(response)
    }

    /// Encodes the whole state as a snapshot: a format version byte, then bincode, at most
    /// [`SNAPSHOT_SIZE_MAX`] bytes in all.
    fn encode_snapshot(&self) -> Result<Vec<u8>, CodecError> {
        let body = codec::encode::<_, { SNAPSHOT_SIZE_MAX - 1 }>("group snapshot", self)?;
        let mut bytes = Vec::with_capacity(body.len() + 1);
        bytes.push(SNAPSHOT_FORMAT_VERSION);
        bytes.extend_from_slice(&body);
        Ok(bytes)
    }

    /// Decodes a snapshot made by `encode_snapshot`.
    fn decode_snapshot(bytes: &[u8]) -> Result<Self, CodecError> {
        let Some((&version, body)) = bytes.split_first() else {
            return Err(CodecError::Decode {
                what: "group snapshot",
                reason: "empty".into(),
            });
        };
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(CodecError::Decode {
                what: "group snapshot",
                reason: format!("format version {version}, expected {SNAPSHOT_FORMAT_VERSION}"),
            });
        }
        codec::decode::<_, { SNAPSHOT_SIZE_MAX - 1 }>("group snapshot", body)
    }
}

#[cfg(test)]
mod tests;
