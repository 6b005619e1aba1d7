//! What a routing group's log carries ([`GroupRequest`]) and what applying it answers
//! ([`GroupResponse`]).

use std::fmt;
use std::sync::Arc;

use roster_cms::{CmsCommand, CmsOutcome};
use roster_registrar::{Binding, Command, CommandOutcome, ContactChange, MergeCommand, Refusal};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, ENTRY_SIZE_MAX};
use crate::overlay::ResilientCommand;
use crate::stream::{ReplicaBatch, ReplicaRefusal, RestoreChunk};

/// What a log entry adds around its request (log id and payload tag, a few varints), rounded up
/// generously.
const ENTRY_OVERHEAD_MAX: usize = 256;

/// Largest encoded [`GroupRequest`] a node proposes for a client or an operator (a REGISTER's
/// facts, a CMS change), in bytes: three quarters of an entry. A SIP message is at most 64 KiB,
/// so its facts fit; the rest of an entry is room for the backup stream, which wraps shipped
/// requests in a batch ([`SHIPPED_SIZE_MAX`]) and must fit any one of them.
pub const REQUEST_SIZE_MAX: usize = 96 * 1024;

/// Largest encoded request that carries a backup batch or restore piece: a whole entry less its
/// overhead.
pub const SHIPPED_SIZE_MAX: usize = ENTRY_SIZE_MAX - ENTRY_OVERHEAD_MAX;

/// What a batch adds around the requests it carries (source key, epoch, indexes, per-entry index
/// and length), rounded up generously for one request.
const BATCH_OVERHEAD_MAX: usize = 1024;

// A batch of one request of the largest size still fits an entry.
const _: () = assert!(REQUEST_SIZE_MAX + BATCH_OVERHEAD_MAX <= SHIPPED_SIZE_MAX);

/// The application data of one log entry: a command, the epoch it was proposed under, and the
/// leader's timestamp.
///
/// The leader stamps `timestamp_ms` (milliseconds since the Unix epoch) when it proposes; every
/// replica applies the command at `max(timestamp_ms, last applied timestamp)`, never at its own
/// clock. `epoch` is the pool-ownership epoch from the CMS (fencing): the group refuses a request
/// whose epoch is below its current one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRequest {
    /// The ownership epoch the proposer holds.
    pub epoch: u64,
    /// The leader's wall-clock time at proposal, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// What to do.
    pub command: GroupCommand,
}

/// The commands a routing group applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupCommand {
    /// A registrar command (REGISTER, purge), applied by `roster_registrar::Registry`.
    ///
    /// Shared, not owned: a leader's entry is read several times while it is fresh (once per
    /// follower's replication and once for apply), and each read clones the entry; cloning a
    /// command with its contacts was a few percent of a loaded node's CPU. Encoded as the
    /// command itself, so the log's format does not depend on it.
    Registrar(Arc<Command>),
    /// Raise the group's epoch to the request's `epoch` (a pool failover or failback), so that
    /// writers still holding an older epoch are refused from then on.
    SetEpoch,
    /// A CMS command, applied by `roster_cms::CmsState` (shared, like a registrar command).
    Cms(Arc<CmsCommand>),
    /// A run of a source group's log, applied in order by its copy (the backup stream).
    Replicate(Arc<ReplicaBatch>),
    /// A piece of a source group's state, when the copy cannot follow its log.
    Restore(Arc<RestoreChunk>),
    /// A resiliency-mode change on a backup copy: applied to the copy's overlay, never to its
    /// registry (see `overlay`). Never shipped.
    Resilient(Arc<ResilientCommand>),
    /// Bindings a backup registrar acknowledged, come home: merged into a routing group's
    /// registry, newest per binding winning (`Registry::merge`). Shipped like a registrar
    /// command.
    Merge(Arc<MergeCommand>),
}

impl GroupCommand {
    /// Whether a source ships this command to its copy: those that change a group's content or
    /// epoch. A source's own stream commands are not (see `stream`).
    pub fn is_shipped(&self) -> bool {
        matches!(
            self,
            GroupCommand::Registrar(_)
                | GroupCommand::SetEpoch
                | GroupCommand::Cms(_)
                | GroupCommand::Merge(_)
        )
    }
}

/// The result of applying one log entry.
///
/// The first three variants mirror `roster_registrar::CommandOutcome` (see
/// [`GroupResponse::into_outcome`]); the others are the group's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupResponse {
    /// A REGISTER was applied; these are the AOR's live bindings now.
    Registered {
        /// Live bindings after the apply, for the `200 OK`.
        bindings: Vec<Binding>,
        /// Whether anything was added, refreshed or removed.
        changed: bool,
        /// The time the command was applied at (the effective time, never below an earlier
        /// command's): the `200 OK` counts remaining expiries from it.
        at_ms: u64,
        /// The epoch it was applied under: which owner acknowledged it (the chaos suite counts
        /// writes acknowledged by two pools in one epoch).
        epoch: u64,
    },
    /// A REGISTER was refused by the registrar rules; nothing changed.
    Refused(GroupRefusal),
    /// Expired bindings were removed.
    Purged {
        /// How many bindings went.
        bindings_removed: u64,
    },
    /// The request's epoch is below the group's: another pool owns these users now. Nothing
    /// changed.
    StaleEpoch {
        /// The group's epoch.
        current: u64,
    },
    /// The group's epoch is now `epoch` (it was lower or equal).
    EpochSet {
        /// The group's epoch after the apply.
        epoch: u64,
    },
    /// A blank entry (a new leader's first) was applied.
    Blank,
    /// A membership entry was applied.
    Membership,
    /// A CMS command was applied (or refused by the CMS's rules: see the outcome).
    Cms(CmsOutcome),
    /// A backup batch or the last restore piece was applied (or had been): the copy stands at
    /// source index `position`.
    Replicated {
        /// The copy's position in its source's log.
        position: u64,
    },
    /// A backup batch or restore piece was refused; nothing changed.
    ReplicaRefused(ReplicaRefusal),
    /// A restore piece was staged; `next_part` is expected next.
    Restoring {
        /// The next piece.
        next_part: u32,
    },
    /// The command is for another kind of group (a registrar command on the CMS); nothing
    /// changed.
    WrongKind,
    /// AORs sent home were removed from a copy's overlay (those written again meanwhile stay).
    OverlayCleared {
        /// How many went.
        aors: u64,
    },
    /// A copy's overlay holds `OVERLAY_AORS_MAX` AORs: a resiliency write for another is
    /// refused; nothing changed.
    OverlayFull,
}

/// A serde mirror of `roster_registrar::Refusal`, which is not a serde type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRefusal {
    /// RFC 3261 §10.3 step 7: same Call-ID and a CSeq not higher than the stored one.
    OutOfOrder {
        /// The request's CSeq.
        cseq: u32,
        /// The CSeq stored with the binding.
        stored: u32,
    },
    /// The AOR would hold more bindings than the policy allows, and the policy rejects.
    TooManyBindings {
        /// Bindings the request would leave.
        count: u64,
        /// The policy's limit.
        max: u64,
    },
}

impl GroupRequest {
    /// A registrar command proposed under `epoch` at the leader's `timestamp_ms`.
    pub fn registrar(epoch: u64, timestamp_ms: u64, command: Command) -> GroupRequest {
        GroupRequest {
            epoch,
            timestamp_ms,
            command: GroupCommand::Registrar(Arc::new(command)),
        }
    }

    /// Checks that the request fits a log entry ([`REQUEST_SIZE_MAX`]). The proposer must call
    /// this before `client_write`: every replica refuses to store a larger entry, and a refused
    /// write stops the replica.
    pub fn check_size(&self) -> Result<(), CodecError> {
        codec::encode::<_, REQUEST_SIZE_MAX>("group request", self).map(|_| ())
    }

    /// A CMS command proposed under `epoch` at the leader's `timestamp_ms`.
    pub fn cms(epoch: u64, timestamp_ms: u64, command: CmsCommand) -> GroupRequest {
        GroupRequest {
            epoch,
            timestamp_ms,
            command: GroupCommand::Cms(Arc::new(command)),
        }
    }

    /// A backup batch, proposed by the copy's leader (the batch's epoch is the source's).
    pub fn replicate(batch: ReplicaBatch) -> GroupRequest {
        GroupRequest {
            epoch: batch.epoch,
            timestamp_ms: 0,
            command: GroupCommand::Replicate(Arc::new(batch)),
        }
    }

    /// A restore piece, proposed by the copy's leader.
    pub fn restore(chunk: RestoreChunk) -> GroupRequest {
        GroupRequest {
            epoch: chunk.epoch,
            timestamp_ms: 0,
            command: GroupCommand::Restore(Arc::new(chunk)),
        }
    }

    /// Checks that the request fits a log entry: a stream request (a backup batch or restore
    /// piece) within [`SHIPPED_SIZE_MAX`], any other within [`REQUEST_SIZE_MAX`]. The proposer
    /// must call this before `client_write`: every replica refuses to store a larger entry, and
    /// a refused write stops the replica.
    pub fn check_fits(&self) -> Result<(), CodecError> {
        let stream = matches!(
            self.command,
            GroupCommand::Replicate(_) | GroupCommand::Restore(_)
        );
        if !stream {
            self.check_size()
        } else {
            codec::encode::<_, SHIPPED_SIZE_MAX>("stream request", self).map(|_| ())
        }
    }

    /// A resiliency-mode change, proposed on a backup copy under the copy's `epoch`.
    pub fn resilient(epoch: u64, timestamp_ms: u64, command: ResilientCommand) -> GroupRequest {
        GroupRequest {
            epoch,
            timestamp_ms,
            command: GroupCommand::Resilient(Arc::new(command)),
        }
    }

    /// A homecoming merge, proposed on the home routing group under its owner's `epoch`.
    pub fn merge(epoch: u64, timestamp_ms: u64, command: MergeCommand) -> GroupRequest {
        GroupRequest {
            epoch,
            timestamp_ms,
            command: GroupCommand::Merge(Arc::new(command)),
        }
    }

    /// A request raising the group's epoch to `epoch`.
    pub fn set_epoch(epoch: u64, timestamp_ms: u64) -> GroupRequest {
        GroupRequest {
            epoch,
            timestamp_ms,
            command: GroupCommand::SetEpoch,
        }
    }
}

impl GroupResponse {
    /// The registrar's view of a registrar outcome; `None` for the group's own variants.
    pub fn into_outcome(self) -> Option<CommandOutcome> {
        match self {
            GroupResponse::Registered {
                bindings, changed, ..
            } => Some(CommandOutcome::Registered { bindings, changed }),
            GroupResponse::Refused(refusal) => Some(CommandOutcome::Refused(refusal.into())),
            GroupResponse::Purged { bindings_removed } => Some(CommandOutcome::Purged {
                bindings_removed: usize::try_from(bindings_removed).unwrap_or(usize::MAX),
            }),
            GroupResponse::StaleEpoch { .. }
            | GroupResponse::EpochSet { .. }
            | GroupResponse::Blank
            | GroupResponse::Membership
            | GroupResponse::Cms(_)
            | GroupResponse::Replicated { .. }
            | GroupResponse::ReplicaRefused(_)
            | GroupResponse::Restoring { .. }
            | GroupResponse::WrongKind
            | GroupResponse::OverlayCleared { .. }
            | GroupResponse::OverlayFull => None,
        }
    }
}

impl GroupResponse {
    /// The group's response to a registrar outcome applied at `at_ms` under `epoch`.
    pub fn from_outcome(outcome: CommandOutcome, at_ms: u64, epoch: u64) -> GroupResponse {
        match outcome {
            CommandOutcome::Registered { bindings, changed } => GroupResponse::Registered {
                bindings,
                changed,
                at_ms,
                epoch,
            },
            CommandOutcome::Refused(refusal) => GroupResponse::Refused(refusal.into()),
            CommandOutcome::Purged { bindings_removed } => GroupResponse::Purged {
                bindings_removed: u64::try_from(bindings_removed).unwrap_or(u64::MAX),
            },
        }
    }
}

impl From<Refusal> for GroupRefusal {
    fn from(refusal: Refusal) -> GroupRefusal {
        match refusal {
            Refusal::OutOfOrder { cseq, stored } => GroupRefusal::OutOfOrder { cseq, stored },
            Refusal::TooManyBindings { count, max } => GroupRefusal::TooManyBindings {
                count: u64::try_from(count).unwrap_or(u64::MAX),
                max: u64::try_from(max).unwrap_or(u64::MAX),
            },
        }
    }
}

impl From<GroupRefusal> for Refusal {
    fn from(refusal: GroupRefusal) -> Refusal {
        match refusal {
            GroupRefusal::OutOfOrder { cseq, stored } => Refusal::OutOfOrder { cseq, stored },
            GroupRefusal::TooManyBindings { count, max } => Refusal::TooManyBindings {
                count: usize::try_from(count).unwrap_or(usize::MAX),
                max: usize::try_from(max).unwrap_or(usize::MAX),
            },
        }
    }
}

/// One line for logs: epoch, timestamp, and the command's kind and AOR (no contacts).
impl fmt::Display for GroupRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch={} t={}ms ", self.epoch, self.timestamp_ms)?;
        let command = match &self.command {
            GroupCommand::Registrar(command) => command,
            GroupCommand::SetEpoch => return write!(f, "set-epoch"),
            GroupCommand::Cms(_) => return write!(f, "cms"),
            GroupCommand::Replicate(batch) => {
                return write!(
                    f,
                    "replicate {} ({}, {}] {} requests",
                    batch.source,
                    batch.after,
                    batch.through,
                    batch.entries.len()
                )
            }
            GroupCommand::Restore(chunk) => {
                return write!(
                    f,
                    "restore {} at {} part {}",
                    chunk.source, chunk.at, chunk.part
                )
            }
            GroupCommand::Resilient(resilient) => {
                return match resilient.as_ref() {
                    ResilientCommand::Register(register) => write!(
                        f,
                        "resilient register {} cseq={}",
                        register.aor, register.cseq
                    ),
                    ResilientCommand::Clear(sent) => write!(f, "overlay-clear {}", sent.len()),
                }
            }
            GroupCommand::Merge(merge) => {
                return write!(
                    f,
                    "merge {} bindings={} tombstones={}",
                    merge.aor,
                    merge.bindings.len(),
                    merge.tombstones.len()
                )
            }
        };
        match command.as_ref() {
            Command::PurgeExpired => write!(f, "purge-expired"),
            Command::Register(register) => {
                let change = match &register.change {
                    ContactChange::Query => "query".to_string(),
                    ContactChange::RemoveAll => "remove-all".to_string(),
                    ContactChange::Update(updates) => format!("update({})", updates.len()),
                };
                write!(
                    f,
                    "register {} cseq={} {}",
                    register.aor, register.cseq, change
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_mirror_round_trips() {
        let refusals = [
            Refusal::OutOfOrder { cseq: 3, stored: 7 },
            Refusal::TooManyBindings { count: 9, max: 8 },
        ];
        for refusal in refusals {
            let mirrored = GroupRefusal::from(refusal.clone());
            assert_eq!(Refusal::from(mirrored), refusal);
        }
    }

    #[test]
    fn a_shared_command_encodes_as_the_command_itself() {
        // The log's format from before commands were shared: the same bytes must come out.
        #[derive(Serialize)]
        enum PlainCommand {
            Registrar(Command),
            #[allow(dead_code)]
            SetEpoch,
        }
        #[derive(Serialize)]
        struct PlainRequest {
            epoch: u64,
            timestamp_ms: u64,
            command: PlainCommand,
        }
        let shared = GroupRequest::registrar(3, 9, Command::PurgeExpired);
        let plain = PlainRequest {
            epoch: 3,
            timestamp_ms: 9,
            command: PlainCommand::Registrar(Command::PurgeExpired),
        };
        let shared_bytes = codec::encode::<_, REQUEST_SIZE_MAX>("shared", &shared).expect("encode");
        let plain_bytes = codec::encode::<_, REQUEST_SIZE_MAX>("plain", &plain).expect("encode");
        assert_eq!(shared_bytes, plain_bytes);
        let decoded: GroupRequest =
            codec::decode::<_, REQUEST_SIZE_MAX>("group request", &plain_bytes).expect("decode");
        assert_eq!(decoded, shared);
    }

    #[test]
    fn display_names_the_command_not_the_contacts() {
        let request = GroupRequest::set_epoch(4, 1000);
        assert_eq!(request.to_string(), "epoch=4 t=1000ms set-epoch");
        let purge = GroupRequest::registrar(1, 2, Command::PurgeExpired);
        assert_eq!(purge.to_string(), "epoch=1 t=2ms purge-expired");
    }
}
