//! What the nodes of a pool say to each other: one request, one response, bincode-encoded
//! over `roster-net`, with a size limit on every decode.
//!
//! Raft traffic of every routing group shares one connection per node pair; the group id is in
//! every message (openraft's multi-raft example does the same).

use std::collections::BTreeMap;

use roster_raft::stream::StreamPosition;

use crate::report::NodeStreams;
use roster_raft::{typ, GroupKey, GroupRequest, GroupResponse};
use roster_registrar::Binding;
use roster_topology::NodeId;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Largest encoded pool message: a group snapshot is the biggest thing sent, and it must fit
/// `roster-net`'s own limit.
pub const POOL_MESSAGE_SIZE_MAX: usize = roster_net::MESSAGE_SIZE_MAX;

/// A request from one node of the pool to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PoolRequest {
    /// Raft AppendEntries for `group`.
    Append {
        /// The routing group.
        group: GroupKey,
        /// The RPC.
        rpc: typ::AppendEntriesRequest,
    },
    /// Raft RequestVote for `group`.
    Vote {
        /// The routing group.
        group: GroupKey,
        /// The RPC.
        rpc: typ::VoteRequest,
    },
    /// Raft pre-vote for `group`.
    PreVote {
        /// The routing group.
        group: GroupKey,
        /// The RPC.
        rpc: typ::VoteRequest,
    },
    /// A whole snapshot of `group`.
    Snapshot {
        /// The routing group.
        group: GroupKey,
        /// The leader's vote.
        vote: typ::Vote,
        /// What the snapshot covers.
        meta: typ::SnapshotMeta,
        /// The encoded `GroupState`.
        data: Vec<u8>,
    },
    /// A write forwarded to the node believed to lead `group`.
    Write {
        /// The routing group.
        group: GroupKey,
        /// The proposal (epoch, command; the leader stamps the time).
        request: GroupRequest,
    },
    /// A linearizable lookup forwarded to the node believed to lead `group`.
    Read {
        /// The routing group.
        group: GroupKey,
        /// The AOR.
        aor: String,
        /// The reader's clock, to hide expired bindings.
        now_ms: u64,
    },
    /// Open an empty replica of `group` (it will join as a learner; it does not initialize).
    /// Sent by the group's leader before `add_learner`. Idempotent.
    OpenReplica {
        /// The routing group.
        group: GroupKey,
    },
    /// Close the replica of `group` and delete its data: the receiver has been removed from
    /// the group. Idempotent.
    CloseReplica {
        /// The routing group.
        group: GroupKey,
        /// The group's committed members (voters and learners) as its leader saw them after
        /// the removal: the receiver refuses to close if it is one of them.
        members: Vec<NodeId>,
    },
    /// The groups the receiver holds a replica of (open now).
    Groups,
    /// The members of `group`, answered by its leader after a read-index round.
    Members {
        /// The routing group.
        group: GroupKey,
    },
    /// The backup streams the receiver ships and the copies it leads (for status).
    Streams,
    /// `group`'s epoch and where it stands in its source's history (a [`Peek`]), answered by
    /// its leader after a read-index round.
    Position {
        /// The group.
        group: GroupKey,
    },
    /// Move a replica of `group` (run by its leader): `add` joins as learner, catches up and
    /// becomes a voter, then `remove` (if any) leaves and closes its replica.
    MoveReplica {
        /// The routing group.
        group: GroupKey,
        /// The node gaining a replica.
        add: NodeId,
        /// The node losing one.
        remove: Option<NodeId>,
        /// Cluster addresses, for the new member's `Node` record.
        addresses: BTreeMap<NodeId, String>,
    },
    /// Transfer leadership of `group` to `to` (run by its leader), if `to` is caught up.
    TransferLeader {
        /// The routing group.
        group: GroupKey,
        /// The new leader.
        to: NodeId,
    },
    /// Several encoded requests in one message (see `batch`), served concurrently and
    /// answered by one [`PoolResponse::Batch`] in the same order. Never nested.
    Batch(Vec<Frame>),
    /// openraft's TransferLeader message for `group`, which the leader sends to every voter
    /// when it hands over (after [`PoolRequest::TransferLeader`]): the new leader campaigns at
    /// once instead of waiting out an election timeout against the other voters.
    LeaderTransfer {
        /// The routing group.
        group: GroupKey,
        /// The message.
        rpc: typ::TransferLeaderRequest,
    },
}

impl PoolRequest {
    /// The request's kind, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            PoolRequest::Append { .. } => "append",
            PoolRequest::Vote { .. } => "vote",
            PoolRequest::PreVote { .. } => "pre_vote",
            PoolRequest::Snapshot { .. } => "snapshot",
            PoolRequest::Write { .. } => "write",
            PoolRequest::Read { .. } => "read",
            PoolRequest::OpenReplica { .. } => "open_replica",
            PoolRequest::CloseReplica { .. } => "close_replica",
            PoolRequest::Groups => "groups",
            PoolRequest::Members { .. } => "members",
            PoolRequest::Position { .. } => "position",
            PoolRequest::Streams => "streams",
            PoolRequest::MoveReplica { .. } => "move_replica",
            PoolRequest::TransferLeader { .. } => "transfer_leader",
            PoolRequest::Batch(_) => "batch",
            PoolRequest::LeaderTransfer { .. } => "leader_transfer",
        }
    }
}

/// A group's epoch and its place in its source's history, as its leader sees them after a
/// read-index round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peek {
    /// The group's epoch: writes below it are refused.
    pub epoch: u64,
    /// Where it stands in its source's history, if it follows one.
    pub stream: Option<StreamPosition>,
    /// Its last applied log index.
    pub applied: u64,
}

/// A routing group's members as its leader sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembers {
    /// The leader that answered.
    pub leader: NodeId,
    /// The voters (of the last configuration, when the group is in joint consensus).
    pub voters: Vec<NodeId>,
    /// Voters of the earlier configuration of a joint one that are not in the last (leaving,
    /// but still voting until the change completes). Empty when not joint.
    pub outgoing: Vec<NodeId>,
    /// Members that do not vote.
    pub learners: Vec<NodeId>,
    /// Whether the membership is a joint configuration (a change is under way or was cut
    /// short).
    pub joint: bool,
}

impl GroupMembers {
    /// Every member: voters (outgoing ones too) and learners, ascending.
    pub fn all(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// Why a forwarded write or read was not served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ServeError {
    /// The receiver does not lead the group; `leader` is who it believes does.
    #[error("not the leader of the group (leader: {leader:?})")]
    NotLeader {
        /// The leader the receiver knows of.
        leader: Option<NodeId>,
    },
    /// The group has no quorum or no leader now.
    #[error("group unavailable: {0}")]
    Unavailable(String),
    /// The receiver has no replica of the group.
    #[error("no replica of group {0} here")]
    UnknownGroup(GroupKey),
    /// The request can never be served (too large for a log entry); sending it again is
    /// pointless.
    #[error("refused: {0}")]
    Refused(String),
}

/// The answer to a [`PoolRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum PoolResponse {
    /// To `Append`.
    Append(Result<typ::AppendEntriesResponse, String>),
    /// To `Vote` and `PreVote`.
    Vote(Result<typ::VoteResponse, String>),
    /// To `Snapshot`.
    Snapshot(Result<typ::SnapshotResponse, String>),
    /// To `Write`: the applied result and the time it was applied at.
    Write(Result<GroupResponse, ServeError>),
    /// To `Read`.
    Read(Result<Vec<Binding>, ServeError>),
    /// To `OpenReplica`, `CloseReplica` and `TransferLeader`.
    Done(Result<(), ServeError>),
    /// To `Groups`.
    Groups(Vec<GroupKey>),
    /// To `Members`.
    Members(Result<GroupMembers, ServeError>),
    /// To `Position`.
    Position(Result<Peek, ServeError>),
    /// To `Streams`.
    Streams(NodeStreams),
    /// To `MoveReplica`: the voters after the move.
    Moved(Result<Vec<NodeId>, ServeError>),
    /// To `Batch`: the encoded answers, in the order of the requests.
    Batch(Vec<Frame>),
    /// The request could not be decoded or names a group the node does not hold.
    Error(String),
    /// To `LeaderTransfer`.
    LeaderTransfer(Result<typ::TransferLeaderResponse, String>),
}

/// An encoded message inside a batch, carried as one length-prefixed byte string (not as a
/// sequence of single bytes, which is how serde would carry a plain `Vec<u8>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(pub Vec<u8>);

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({} bytes)", self.0.len())
    }
}

impl Serialize for Frame {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Frame {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Frame, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Frame;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Frame, E> {
                Ok(Frame(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Frame, E> {
                Ok(Frame(bytes))
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// A message that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed.
    #[error("cannot encode pool message: {0}")]
    Encode(String),
    /// Decoding failed (malformed or over the size limit).
    #[error("cannot decode pool message: {0}")]
    Decode(String),
}

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<POOL_MESSAGE_SIZE_MAX>,
> {
    bincode::config::standard().with_limit::<POOL_MESSAGE_SIZE_MAX>()
}

/// Encodes a pool message.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(message, config())
        .map_err(|error| CodecError::Encode(error.to_string()))
}

/// Decodes a pool message, refusing anything over [`POOL_MESSAGE_SIZE_MAX`] or with trailing
/// bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|error| CodecError::Decode(error.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(value)
}
