//! [`GroupState`]: what one Raft group's replicas compute from its log.

use openraft::EntryPayload;
use roster_cms::CmsState;
use roster_registrar::{Binding, Policy, Registry};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_SIZE_MAX};
use crate::machine::ReplicatedState;
use crate::overlay::{Overlay, ResilientCommand};
use crate::request::{GroupCommand, GroupRequest, GroupResponse};
use crate::stream::{ReplicaBatch, ReplicaRefusal, RestoreChunk, Restoring, StreamPosition};
use crate::typ;

/// The applied state of one Raft group: pure and deterministic.
///
/// The same entries applied in the same order give the same state and the same responses on
/// every replica: [`ReplicatedState::apply`] reads only the entry and the state, never a clock, an
/// environment or a random source. Time is the entry's leader timestamp, raised to the last
/// applied one if it is lower (leader clocks may step back across a leader change; the
/// registrar's expiry arithmetic must not).
///
/// What the group holds is its [`GroupContent`]: a routing group's registry, or the CMS. A
/// group that follows a source (a backup copy; a failed-back group catching up) also has a
/// [`StreamPosition`]: see [`crate::stream`].
///
/// Fencing: a request whose epoch is below the group's is refused with
/// [`GroupResponse::StaleEpoch`] and changes nothing; a request with a higher epoch raises the
/// group's epoch to it (the highest epoch seen wins, as with fencing tokens). A backup batch or
/// restore piece below the group's epoch is refused the same way.
///
/// A backup copy also has an [`Overlay`]: what the backup registrar (resiliency mode)
/// acknowledged for its partner's users, beside the registry and never in it, so the registry
/// stays a prefix of the source's history. Lookups read the overlay merged over the registry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupState {
    content: GroupContent,
    epoch: u64,
    last_applied: Option<typ::LogId>,
    last_membership: typ::StoredMembership,
    last_time_ms: u64,
    stream: Option<StreamPosition>,
    restoring: Option<Restoring>,
    overlay: Overlay,
}

/// What a group holds, by kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GroupContent {
    /// A routing group (or its backup copy): every AOR's bindings.
    Routing(Registry),
    /// The CMS (or its backup copy).
    Cms(CmsState),
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
    /// An empty routing group whose registry applies `policy`.
    ///
    /// Every replica of a group must start from the same policy: it is part of the replicated
    /// state (snapshots carry it).
    pub fn new(policy: Policy) -> GroupState {
        GroupState::with_content(GroupContent::Routing(Registry::new(policy)))
    }

    /// An empty CMS.
    pub fn cms() -> GroupState {
        GroupState::with_content(GroupContent::Cms(CmsState::default()))
    }

    fn with_content(content: GroupContent) -> GroupState {
        GroupState {
            content,
            epoch: 0,
            last_applied: None,
            last_membership: typ::StoredMembership::default(),
            last_time_ms: 0,
            stream: None,
            restoring: None,
            overlay: Overlay::default(),
        }
    }

    /// What the group holds.
    pub fn content(&self) -> &GroupContent {
        &self.content
    }

    /// The bindings of every AOR, for a routing group.
    pub fn registry(&self) -> Option<&Registry> {
        match &self.content {
            GroupContent::Routing(registry) => Some(registry),
            GroupContent::Cms(_) => None,
        }
    }

    /// The CMS's state, for the CMS.
    pub fn cms_state(&self) -> Option<&CmsState> {
        match &self.content {
            GroupContent::Cms(cms) => Some(cms),
            GroupContent::Routing(_) => None,
        }
    }

    /// The live bindings of `aor` at the reader's `now_ms`, as `Registry::lookup` (none for the
    /// CMS); for an AOR in the overlay, the overlay's merged over the registry's.
    pub fn lookup(&self, aor: &str, now_ms: u64) -> Vec<Binding> {
        self.registry()
            .map(|registry| {
                self.overlay
                    .lookup(registry, aor, now_ms)
                    .unwrap_or_else(|| registry.lookup(aor, now_ms))
            })
            .unwrap_or_default()
    }

    /// What the backup registrar acknowledged here and has not yet sent home.
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// The group's ownership epoch: requests below it are refused.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The effective time of the last applied command, in milliseconds since the Unix epoch.
    pub fn last_time_ms(&self) -> u64 {
        self.last_time_ms
    }

    /// Where the group stands in its source's history, if it follows one.
    pub fn stream(&self) -> Option<StreamPosition> {
        self.stream
    }

    /// The next restore piece expected, while a restore is under way.
    pub fn restoring_part(&self) -> Option<u32> {
        self.restoring.as_ref().map(|restoring| restoring.next_part)
    }

    /// Runs one request: stream commands on their own path; others the epoch check, the
    /// effective time, then the command.
    fn apply_request(&mut self, request: &GroupRequest) -> GroupResponse {
        match &request.command {
            GroupCommand::Replicate(batch) => return self.apply_batch(batch),
            GroupCommand::Restore(chunk) => return self.apply_restore(chunk),
            GroupCommand::Resilient(command) => return self.apply_resilient(request, command),
            GroupCommand::SetEpoch
            | GroupCommand::Registrar(_)
            | GroupCommand::Cms(_)
            | GroupCommand::Merge(_) => {}
        }
        if request.epoch < self.epoch {
            return GroupResponse::StaleEpoch {
                current: self.epoch,
            };
        }
        let fits = matches!(
            (&request.command, &self.content),
            (GroupCommand::SetEpoch, _)
                | (GroupCommand::Registrar(_), GroupContent::Routing(_))
                | (GroupCommand::Merge(_), GroupContent::Routing(_))
                | (GroupCommand::Cms(_), GroupContent::Cms(_))
        );
        if !fits {
            return GroupResponse::WrongKind;
        }
        self.epoch = request.epoch;
        let now_ms = request.timestamp_ms.max(self.last_time_ms);
        self.last_time_ms = now_ms;
        match (&request.command, &mut self.content) {
            (GroupCommand::Registrar(command), GroupContent::Routing(registry)) => {
                GroupResponse::from_outcome(registry.apply(command, now_ms), now_ms, self.epoch)
            }
            (GroupCommand::Merge(command), GroupContent::Routing(registry)) => {
                GroupResponse::from_outcome(registry.merge(command, now_ms), now_ms, self.epoch)
            }
            (GroupCommand::Cms(command), GroupContent::Cms(cms)) => {
                GroupResponse::Cms(cms.apply(command))
            }
            _ => GroupResponse::EpochSet { epoch: self.epoch },
        }
    }

    /// After an epoch raised on this group itself (not one shipped from its source): a copy
    /// promoted by a failover folds what the backup registrar acknowledged here into its own
    /// registry at once (a merge per AOR, newest binding wins), so that the first write or
    /// query at the new epoch sees it. Nothing can join the overlay afterwards: resiliency
    /// writes carry the old epoch and are refused. (Before, a task folded it AOR by AOR
    /// after the promotion, and a query in between missed those bindings.) A copy that
    /// follows this group later starts from a restore of its state, which holds the fold.
    fn fold_overlay(&mut self) {
        if self.overlay.is_empty() {
            return;
        }
        let GroupContent::Routing(registry) = &mut self.content else {
            return;
        };
        for merge in self.overlay.drain() {
            let _ = registry.merge(&merge, self.last_time_ms);
        }
    }

    /// Applies a resiliency command to the overlay (see [`crate::overlay`]): refused below the
    /// group's epoch (a failover or failback raised it), and it never moves the epoch, the
    /// group's time or the registry, which follow the source's history.
    fn apply_resilient(
        &mut self,
        request: &GroupRequest,
        command: &ResilientCommand,
    ) -> GroupResponse {
        if request.epoch < self.epoch {
            return GroupResponse::StaleEpoch {
                current: self.epoch,
            };
        }
        let GroupContent::Routing(registry) = &self.content else {
            return GroupResponse::WrongKind;
        };
        self.overlay.apply(
            registry,
            command,
            request.timestamp_ms,
            self.last_time_ms,
            self.epoch,
        )
    }

    /// Applies a run of the source's log (see [`crate::stream`]).
    fn apply_batch(&mut self, batch: &ReplicaBatch) -> GroupResponse {
        if batch.epoch < self.epoch {
            return GroupResponse::StaleEpoch {
                current: self.epoch,
            };
        }
        let position = match self.stream {
            Some(stream) if stream.source != batch.source => {
                return GroupResponse::ReplicaRefused(ReplicaRefusal::OtherSource {
                    followed: stream.source,
                })
            }
            Some(stream) => stream.index,
            None if self.is_pristine() => 0,
            None => return GroupResponse::ReplicaRefused(ReplicaRefusal::NotPristine),
        };
        if batch.through <= position {
            return GroupResponse::Replicated { position };
        }
        if batch.after > position {
            return GroupResponse::ReplicaRefused(ReplicaRefusal::Gap { position });
        }
        for entry in &batch.entries {
            if entry.index > position
                && entry.index <= batch.through
                && entry.request.command.is_shipped()
            {
                // The source's response is the source's business; the copy's state is what
                // matters, and it follows from the same requests in the same order.
                let _ = self.apply_request(&entry.request);
            }
        }
        self.stream = Some(StreamPosition {
            source: batch.source,
            index: batch.through,
        });
        GroupResponse::Replicated {
            position: batch.through,
        }
    }

    /// Applies one piece of the source's state (see [`crate::stream`]).
    fn apply_restore(&mut self, chunk: &RestoreChunk) -> GroupResponse {
        if chunk.epoch < self.epoch {
            return GroupResponse::StaleEpoch {
                current: self.epoch,
            };
        }
        if chunk.part == 0 {
            if let Some(stream) = self.stream.filter(|stream| stream.source == chunk.source) {
                if stream.index >= chunk.at {
                    return GroupResponse::Replicated {
                        position: stream.index,
                    };
                }
            }
            match Restoring::begin(chunk) {
                Ok(restoring) => self.restoring = Some(restoring),
                Err(refusal) => return GroupResponse::ReplicaRefused(refusal),
            }
        }
        let Some(restoring) = self.restoring.as_mut() else {
            return GroupResponse::ReplicaRefused(ReplicaRefusal::RestoreOrder { expected: None });
        };
        if restoring.took_last(chunk) {
            return GroupResponse::Restoring {
                next_part: restoring.next_part,
            };
        }
        if let Err(refusal) = restoring.add(chunk) {
            return GroupResponse::ReplicaRefused(refusal);
        }
        if !chunk.last {
            return GroupResponse::Restoring {
                next_part: restoring.next_part,
            };
        }
        let Some(done) = self.restoring.take() else {
            return GroupResponse::ReplicaRefused(ReplicaRefusal::RestoreOrder { expected: None });
        };
        self.content = done.content;
        self.epoch = self.epoch.max(done.epoch);
        self.last_time_ms = done.last_time_ms;
        self.stream = Some(StreamPosition {
            source: done.source,
            index: done.at,
        });
        GroupResponse::Replicated { position: done.at }
    }

    /// Whether nothing but blanks and memberships was ever applied: a fresh copy may start a
    /// stream from the source's first entry.
    fn is_pristine(&self) -> bool {
        self.epoch == 0 && self.last_time_ms == 0 && self.restoring.is_none()
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
            EntryPayload::Normal(request) => {
                let response = self.apply_request(request);
                if matches!(response, GroupResponse::EpochSet { .. }) {
                    self.fold_overlay();
                }
                response
            }
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
        if version == SNAPSHOT_FORMAT_VERSION_WITHOUT_OVERLAY {
            let old: GroupStateWithoutOverlay = codec::decode_claiming::<
                _,
                { SNAPSHOT_SIZE_MAX - 1 },
                { codec::SNAPSHOT_CLAIMS_MAX },
            >("group snapshot", body)?;
            return Ok(old.into());
        }
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(CodecError::Decode {
                what: "group snapshot",
                reason: format!("format version {version}, expected {SNAPSHOT_FORMAT_VERSION}"),
            });
        }
        codec::decode_claiming::<_, { SNAPSHOT_SIZE_MAX - 1 }, { codec::SNAPSHOT_CLAIMS_MAX }>(
            "group snapshot",
            body,
        )
    }
}

/// The snapshot format before groups had a resiliency overlay: still read (as an empty
/// overlay), so that a node's snapshots on disk survive the upgrade.
const SNAPSHOT_FORMAT_VERSION_WITHOUT_OVERLAY: u8 = 1;

/// [`GroupState`] as [`SNAPSHOT_FORMAT_VERSION_WITHOUT_OVERLAY`] encoded it.
#[derive(Deserialize)]
struct GroupStateWithoutOverlay {
    content: GroupContent,
    epoch: u64,
    last_applied: Option<typ::LogId>,
    last_membership: typ::StoredMembership,
    last_time_ms: u64,
    stream: Option<StreamPosition>,
    restoring: Option<Restoring>,
}

impl From<GroupStateWithoutOverlay> for GroupState {
    fn from(old: GroupStateWithoutOverlay) -> GroupState {
        GroupState {
            content: old.content,
            epoch: old.epoch,
            last_applied: old.last_applied,
            last_membership: old.last_membership,
            last_time_ms: old.last_time_ms,
            stream: old.stream,
            restoring: old.restoring,
            overlay: Overlay::default(),
        }
    }
}

#[cfg(test)]
mod tests;
