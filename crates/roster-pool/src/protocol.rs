//! What the nodes of a pool say to each other: one request, one response, bincode-encoded
//! over `roster-net`, with a size limit on every decode.
//!
//! Raft traffic of every routing group shares one connection per node pair; the group id is in
//! every message (openraft's multi-raft example does the same).

use roster_raft::{typ, GroupId, GroupRequest, GroupResponse, NodeId};
use roster_registrar::Binding;
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
        group: GroupId,
        /// The RPC.
        rpc: typ::AppendEntriesRequest,
    },
    /// Raft RequestVote for `group`.
    Vote {
        /// The routing group.
        group: GroupId,
        /// The RPC.
        rpc: typ::VoteRequest,
    },
    /// Raft pre-vote for `group`.
    PreVote {
        /// The routing group.
        group: GroupId,
        /// The RPC.
        rpc: typ::VoteRequest,
    },
    /// A whole snapshot of `group`.
    Snapshot {
        /// The routing group.
        group: GroupId,
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
        group: GroupId,
        /// The proposal (epoch, command; the leader stamps the time).
        request: GroupRequest,
    },
    /// A linearizable lookup forwarded to the node believed to lead `group`.
    Read {
        /// The routing group.
        group: GroupId,
        /// The AOR.
        aor: String,
        /// The reader's clock, to hide expired bindings.
        now_ms: u64,
    },
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
    UnknownGroup(GroupId),
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
    /// The request could not be decoded or names a group the node does not hold.
    Error(String),
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
