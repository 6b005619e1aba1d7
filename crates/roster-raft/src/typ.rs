//! Aliases of openraft's generic types for [`TypeConfig`]: use these, not openraft's paths.
//!
//! `Raft` takes the state machine type as a parameter since openraft 0.10 (`Raft<C, SM>`);
//! `roster-store` names the concrete one.
#![allow(missing_docs)]

use crate::TypeConfig;

pub use roster_topology::NodeId;

/// What a routing group's snapshot carries: `GroupState::encode_snapshot` bytes, at most
/// [`crate::SNAPSHOT_SIZE_MAX`].
pub type SnapshotData = Vec<u8>;

pub type Raft<SM> = openraft::Raft<TypeConfig, SM>;
pub type Config = openraft::Config;
pub type Node = openraft::BasicNode;
pub type Term = <TypeConfig as openraft::RaftTypeConfig>::Term;
pub type LeaderId = <TypeConfig as openraft::RaftTypeConfig>::LeaderId;
pub type CommittedLeaderId = openraft::alias::CommittedLeaderIdOf<TypeConfig>;
pub type Vote = <TypeConfig as openraft::RaftTypeConfig>::Vote;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
pub type EntryPayload = openraft::alias::EntryPayloadOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, Node>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type LogState = openraft::storage::LogState<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
pub type IOFlushed = openraft::storage::IOFlushed<TypeConfig>;
pub type EntryResponder = openraft::storage::EntryResponder<TypeConfig>;
pub type ApplyResponder = openraft::storage::ApplyResponder<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
pub type ServerState = openraft::ServerState;
pub type ReadPolicy = openraft::ReadPolicy;

pub type Fatal = openraft::errors::Fatal<TypeConfig>;
pub type StorageError = openraft::StorageError<TypeConfig>;
pub type RaftError<E = openraft::errors::Infallible> = openraft::errors::RaftError<TypeConfig, E>;
pub type RPCError<E = openraft::errors::Infallible> = openraft::errors::RPCError<TypeConfig, E>;
pub type StreamingError = openraft::errors::StreamingError<TypeConfig>;
pub type ClientWriteError = openraft::errors::ClientWriteError<TypeConfig>;
pub type LinearizableReadError = openraft::errors::LinearizableReadError<TypeConfig>;
pub type ForwardToLeader = openraft::errors::ForwardToLeader<TypeConfig>;
pub type InitializeError = openraft::errors::InitializeError<TypeConfig>;

pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
pub type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
pub type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;
pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
