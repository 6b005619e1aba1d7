//! What paired pools say to each other: the backup stream, the requests of users homed on the
//! other pool, CMS changes for the CMS's pool, and liveness. [`PairRequest`] and
//! [`PairResponse`] ride on the same authenticated network as a pool's own messages; a node
//! serves them only for a node of its partner pool (the network refuses any other pool, and the
//! handler tells the partner's messages from its own pool's by the sender's certificate).
//!
//! Every request names what it is for by group key, and the receiving node routes it to that
//! group's leader in its own pool: the sender needs to know only some node of the partner.

use roster_cms::{CmsCommand, CmsOutcome, Ownership};
use roster_raft::{GroupKey, GroupRequest, GroupResponse};
use roster_registrar::{Binding, Command, MergeCommand};
use serde::{Deserialize, Serialize};

use crate::ownership::OwnershipView;
use crate::protocol::{decode, encode, CodecError, Peek, ServeError};
use crate::report::NodeStreams;

/// A request from a node of the partner pool.
#[derive(Debug, Serialize, Deserialize)]
pub enum PairRequest {
    /// Apply a backup batch or restore piece (a `GroupRequest::replicate` or `restore`) on
    /// `copy`, the receiver's backup copy of one of the sender's groups.
    Stream {
        /// The copy, a group of the receiving pool.
        copy: GroupKey,
        /// The batch or piece.
        request: GroupRequest,
    },
    /// The epoch of `copy` (a group of the receiving pool) and where it stands in its
    /// source's history.
    Position {
        /// The copy.
        copy: GroupKey,
    },
    /// Raise the epoch of `group`, a group of the receiving pool that the sender takes over
    /// (a planned failover), so that the receiver's writes for its users are refused from then
    /// on; answered once applied.
    Fence {
        /// The group.
        group: GroupKey,
        /// The new epoch.
        epoch: u64,
    },
    /// A registrar command for a user whose routing group `group` the receiver serves (the
    /// user is homed there): a SIP request that reached the sender's pool.
    Write {
        /// The routing group of the user.
        group: GroupKey,
        /// The command, as the sender's front built it.
        command: Command,
    },
    /// A linearizable lookup of `aor` in routing group `group`, which the receiver serves.
    Read {
        /// The routing group.
        group: GroupKey,
        /// The AOR.
        aor: String,
        /// The reader's clock, to hide expired bindings.
        now_ms: u64,
    },
    /// What the sender acknowledged as the backup registrar (resiliency mode) for one AOR of
    /// routing group `group`, which the receiver serves again: merge it, newest per binding
    /// winning. Idempotent (a merge sent twice changes nothing more).
    Homecoming {
        /// The routing group of the AOR.
        group: GroupKey,
        /// The AOR's bindings and removals.
        merge: MergeCommand,
    },
    /// A change to the CMS, which lives on the receiving pool.
    Cms {
        /// The change.
        command: CmsCommand,
    },
    /// Take the CMS back (`roster cms failback`): the sender, which holds the CMS now, has
    /// fenced it at `ownership.epoch` and the receiver's copy has applied that fence; the
    /// receiver records itself as the CMS's owner in its copy, which becomes the CMS.
    TakeCms {
        /// The receiver's pool, at the epoch of the fence.
        ownership: Ownership,
    },
    /// Is the partner there? Answered at once by any node.
    Ping,
    /// The backup streams the receiver ships and the copies it leads (for status).
    Streams,
}

impl PairRequest {
    /// The request's kind, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            PairRequest::Stream { .. } => "pair_stream",
            PairRequest::Position { .. } => "pair_position",
            PairRequest::Fence { .. } => "pair_fence",
            PairRequest::Write { .. } => "pair_write",
            PairRequest::Read { .. } => "pair_read",
            PairRequest::Homecoming { .. } => "pair_homecoming",
            PairRequest::Cms { .. } => "pair_cms",
            PairRequest::TakeCms { .. } => "pair_take_cms",
            PairRequest::Ping => "pair_ping",
            PairRequest::Streams => "pair_streams",
        }
    }

    /// Whether sending the request again is harmless when its answer was lost: everything but a
    /// user's write (which could apply twice, and find its own CSeq applied) and a CMS change
    /// (a fence raises an epoch to a given value, and a CMS owner recorded twice is recorded
    /// once: twice is once).
    pub fn is_idempotent(&self) -> bool {
        !matches!(self, PairRequest::Write { .. } | PairRequest::Cms { .. })
    }
}

/// The answer to a [`PairRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum PairResponse {
    /// To `Stream`, `Write`, `Fence`, `Homecoming` and `TakeCms`: what applying it answered.
    Applied(Result<GroupResponse, ServeError>),
    /// To `Position`.
    Position(Result<Peek, ServeError>),
    /// To `Read`.
    Read(Result<Vec<Binding>, ServeError>),
    /// To `Cms`.
    Cms(Result<CmsOutcome, ServeError>),
    /// To `Ping`: the ownership the answering node knows.
    Pong(OwnershipView),
    /// To `Streams`.
    Streams(NodeStreams),
    /// The request was refused (not the receiver's to serve) or could not be decoded.
    Error(String),
}

/// Encodes a pair message (the pool's codec: bincode, size-limited).
pub fn encode_pair<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    encode(message)
}

/// Decodes a pair message, refusing anything over the pool's message limit or with trailing
/// bytes.
pub fn decode_pair<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode(bytes)
}
