//! The backup stream as replicated state: what a copy applies to follow its source.
//!
//! A *source* group (a routing group, the CMS) ships its committed entries, in log order, to its
//! *copy* (a Raft group in the partner pool). The copy proposes each [`ReplicaBatch`] into its own
//! log; applying it runs the source's requests, in order, on the copy's state, and moves the
//! copy's [`StreamPosition`]. When the source has purged its log past the copy's position, it
//! ships its state instead, as [`RestoreChunk`]s. Both are idempotent by source index: a batch
//! the copy has applied changes nothing, a batch that would leave a gap is refused (the source
//! sends again from the position the refusal names). So a copy is always a prefix of its
//! source's history.
//!
//! Only requests that change a source's content are shipped ([`GroupCommand::is_shipped`]):
//! registrar and CMS commands and epoch changes. A source's own stream commands (it was itself a
//! copy before a failover promoted it) are refused by their epoch after the promotion, so they
//! change nothing and are not shipped.
//!
//! [`GroupCommand::is_shipped`]: crate::GroupCommand::is_shipped

use roster_cms::{CmsState, UserRecord};
use roster_registrar::{Binding, BindingKey, Policy, Registry};
use serde::{Deserialize, Serialize};

use openraft::EntryPayload;

use crate::codec;
use crate::request::GroupRequest;
use crate::state::GroupContent;
use crate::{typ, GroupKey};

/// Where a copy stands in its source's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The group whose committed entries this one applies.
    pub source: GroupKey,
    /// The last source log index applied: every source entry up to it, in order.
    pub index: u64,
}

/// A run of a source group's log, shipped to its copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaBatch {
    /// The source group.
    pub source: GroupKey,
    /// The source's epoch when it shipped: a copy at a higher epoch (promoted) refuses it.
    pub epoch: u64,
    /// The source log index just before the batch: the copy must stand there (or past it).
    pub after: u64,
    /// The last source log index the batch covers. Entries that carry no shipped request
    /// (blanks, memberships, stream commands) are covered without being carried.
    pub through: u64,
    /// The shipped requests of `after + 1 ..= through`, in log order.
    pub entries: Vec<SourceEntry>,
}

/// One shipped request and its index in the source's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceEntry {
    /// The source log index.
    pub index: u64,
    /// The request as the source applied it (its epoch and leader timestamp).
    pub request: GroupRequest,
}

/// One piece of a source's state at source index `at`, when the copy cannot follow its log.
///
/// Pieces come in order from part 0; the copy stages them and switches to the whole state only
/// when the last arrives, so a copy is never a mix of two histories.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreChunk {
    /// The source group.
    pub source: GroupKey,
    /// The source's epoch at `at`.
    pub epoch: u64,
    /// The source log index whose state this is.
    pub at: u64,
    /// The source's last applied time at `at` (milliseconds since the Unix epoch).
    pub last_time_ms: u64,
    /// This piece's number, from 0.
    pub part: u32,
    /// Whether this is the last piece.
    pub last: bool,
    /// The piece.
    pub content: RestorePart,
}

/// The content of a restore piece, by kind of group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestorePart {
    /// Part of a routing group's registry.
    Routing {
        /// The registry's policy (part 0 only).
        policy: Option<Policy>,
        /// AORs and their stored bindings (expired ones too); an AOR whose bindings do not fit
        /// one piece continues in the next.
        aors: Vec<(String, Vec<Binding>)>,
    },
    /// Part of the CMS's state.
    Cms {
        /// The state without its users (`CmsState::head`: deployment, ownership, operations;
        /// part 0 only).
        head: Option<Box<CmsState>>,
        /// Users.
        users: Vec<UserRecord>,
    },
}

/// Why a copy refused a batch or a restore piece; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReplicaRefusal {
    /// The batch starts past the copy's position: send from `position`.
    #[error("a gap: the copy stands at source index {position}")]
    Gap {
        /// The copy's position.
        position: u64,
    },
    /// The copy follows another source.
    #[error("the copy follows {followed}")]
    OtherSource {
        /// The source it follows.
        followed: GroupKey,
    },
    /// The copy has a history of its own and no stream: only a restore can start one.
    #[error("the group has a history of its own; a stream starts with a restore")]
    NotPristine,
    /// A restore piece out of order: the copy expects `expected` (none: a part 0).
    #[error("restore piece out of order (expected {expected:?})")]
    RestoreOrder {
        /// The next piece expected, if a restore is under way.
        expected: Option<u32>,
    },
    /// The piece's content is not of the group's kind.
    #[error("the piece is for another kind of group")]
    WrongKind,
}

/// A restore under way: the source's state, piece by piece.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Restoring {
    pub(crate) source: GroupKey,
    pub(crate) at: u64,
    pub(crate) epoch: u64,
    pub(crate) last_time_ms: u64,
    pub(crate) next_part: u32,
    pub(crate) content: GroupContent,
}

impl Restoring {
    /// Starts a restore from part 0 of `chunk`.
    pub(crate) fn begin(chunk: &RestoreChunk) -> Result<Restoring, ReplicaRefusal> {
        let content = match &chunk.content {
            RestorePart::Routing { policy, .. } => {
                GroupContent::Routing(Registry::new(policy.clone().unwrap_or_default()))
            }
            RestorePart::Cms { head, .. } => GroupContent::Cms(CmsState::restore_begin(
                head.as_deref().cloned().unwrap_or_default(),
            )),
        };
        Ok(Restoring {
            source: chunk.source,
            at: chunk.at,
            epoch: chunk.epoch,
            last_time_ms: chunk.last_time_ms,
            next_part: 0,
            content,
        })
    }

    /// Whether `chunk` is the part this restore took last: sent again because its answer was
    /// lost (a timeout), it is answered as the first time, and the source goes on with the
    /// next part instead of starting over.
    pub(crate) fn took_last(&self, chunk: &RestoreChunk) -> bool {
        chunk.source == self.source && chunk.at == self.at && chunk.part + 1 == self.next_part
    }

    /// Adds `chunk` (the next part) to the staged state.
    pub(crate) fn add(&mut self, chunk: &RestoreChunk) -> Result<(), ReplicaRefusal> {
        if chunk.source != self.source || chunk.at != self.at || chunk.part != self.next_part {
            return Err(ReplicaRefusal::RestoreOrder {
                expected: Some(self.next_part),
            });
        }
        match (&mut self.content, &chunk.content) {
            (GroupContent::Routing(registry), RestorePart::Routing { aors, .. }) => {
                for (aor, bindings) in aors {
                    registry.restore_extend(aor, bindings);
                }
            }
            (GroupContent::Cms(cms), RestorePart::Cms { users, .. }) => cms.restore_users(users),
            _ => return Err(ReplicaRefusal::WrongKind),
        }
        self.next_part += 1;
        Ok(())
    }
}

/// Bytes of shipped requests one batch carries at most, so that the batch fits one entry of the
/// copy's log with room for its own fields ([`crate::SHIPPED_SIZE_MAX`] less a margin).
pub const BATCH_REQUEST_BYTES_MAX: usize = crate::SHIPPED_SIZE_MAX - 16 * 1024;

// The largest request a node proposes fits one batch alone.
const _: () = assert!(crate::REQUEST_SIZE_MAX <= BATCH_REQUEST_BYTES_MAX);

/// Forms the batch that ships `entries`, consecutive committed entries of `source`'s log from
/// index `after + 1`, as far as they fit [`BATCH_REQUEST_BYTES_MAX`] (at least one entry). Returns
/// `None` when `entries` is empty or does not start at `after + 1`.
pub fn batch_of<'a>(
    source: GroupKey,
    epoch: u64,
    after: u64,
    entries: impl IntoIterator<Item = &'a typ::Entry>,
) -> Option<ReplicaBatch> {
    let mut through = after;
    let mut carried = Vec::new();
    let mut bytes = 0usize;
    for entry in entries {
        if entry.log_id.index != through + 1 {
            break;
        }
        if let EntryPayload::Normal(request) = &entry.payload {
            if request.command.is_shipped() {
                let size =
                    codec::encode::<_, { crate::REQUEST_SIZE_MAX }>("shipped request", request)
                        .map_or(crate::REQUEST_SIZE_MAX, |bytes| bytes.len());
                if bytes + size > BATCH_REQUEST_BYTES_MAX && through > after {
                    break;
                }
                bytes += size;
                carried.push(SourceEntry {
                    index: entry.log_id.index,
                    request: request.clone(),
                });
            }
        }
        through = entry.log_id.index;
    }
    (through > after).then_some(ReplicaBatch {
        source,
        epoch,
        after,
        through,
        entries: carried,
    })
}

/// Cuts a content's state into restore pieces of at most about `piece_bytes` each (measured
/// roughly: strings' lengths plus a fixed cost per binding or user). Pure: the source calls it on
/// a copy of its state taken at `at`.
pub fn restore_chunks(
    source: GroupKey,
    content: &GroupContent,
    epoch: u64,
    at: u64,
    last_time_ms: u64,
    piece_bytes: usize,
) -> Vec<RestoreChunk> {
    let parts = match content {
        GroupContent::Routing(registry) => routing_parts(registry, piece_bytes),
        GroupContent::Cms(cms) => cms_parts(cms, piece_bytes),
    };
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(part, content)| RestoreChunk {
            source,
            epoch,
            at,
            last_time_ms,
            part: u32::try_from(part).unwrap_or(u32::MAX),
            last: part + 1 == count,
            content,
        })
        .collect()
}

/// Bytes counted for one binding or user besides its strings: numbers, tags, lengths.
const ITEM_OVERHEAD_BYTES: usize = 64;

fn binding_bytes(binding: &Binding) -> usize {
    ITEM_OVERHEAD_BYTES
        + binding.contact.len()
        + binding.call_id.len()
        + match &binding.key {
            BindingKey::Uri(uri) => uri.len(),
            BindingKey::Flow { instance, .. } => instance.len(),
        }
        + binding.instance.as_ref().map_or(0, String::len)
        + binding.path.iter().map(String::len).sum::<usize>()
        + binding.received.as_ref().map_or(0, String::len)
        + binding.user_agent.as_ref().map_or(0, String::len)
}

fn routing_parts(registry: &Registry, piece_bytes: usize) -> Vec<RestorePart> {
    // Sorted, so that the pieces of one state are the same on every run.
    let mut entries: Vec<(&str, Vec<Binding>)> = registry.entries().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut parts = Vec::new();
    let mut aors: Vec<(String, Vec<Binding>)> = Vec::new();
    let mut bytes = 0;
    for (aor, bindings) in entries {
        let mut piece: Vec<Binding> = Vec::new();
        for binding in bindings {
            let size = binding_bytes(&binding) + aor.len();
            if bytes + size > piece_bytes && (bytes > 0) {
                if !piece.is_empty() {
                    aors.push((aor.to_string(), std::mem::take(&mut piece)));
                }
                parts.push(std::mem::take(&mut aors));
                bytes = 0;
            }
            bytes += size;
            piece.push(binding);
        }
        if !piece.is_empty() {
            aors.push((aor.to_string(), piece));
        }
    }
    parts.push(aors);
    let policy = registry.policy().clone();
    parts
        .into_iter()
        .enumerate()
        .map(|(number, aors)| RestorePart::Routing {
            policy: (number == 0).then(|| policy.clone()),
            aors,
        })
        .collect()
}

fn cms_parts(cms: &CmsState, piece_bytes: usize) -> Vec<RestorePart> {
    let mut parts: Vec<Vec<UserRecord>> = Vec::new();
    let mut users: Vec<UserRecord> = Vec::new();
    let mut bytes = 0;
    for user in cms.users() {
        let size = ITEM_OVERHEAD_BYTES
            + user.aor.len()
            + user.credentials.username.len()
            + user.credentials.ha1_md5.as_ref().map_or(0, String::len)
            + user.credentials.ha1_sha256.as_ref().map_or(0, String::len);
        if bytes + size > piece_bytes && !users.is_empty() {
            parts.push(std::mem::take(&mut users));
            bytes = 0;
        }
        bytes += size;
        users.push(user.clone());
    }
    parts.push(users);
    let head = Box::new(cms.head());
    parts
        .into_iter()
        .enumerate()
        .map(|(number, users)| RestorePart::Cms {
            head: (number == 0).then(|| head.clone()),
            users,
        })
        .collect()
}

#[cfg(test)]
mod tests;
