//! Raft types and the applied state of one Roster routing group, sans-IO.
//!
//! A routing group is a shard of a pool's users (`group_of(aor, G)`), replicated by one Raft
//! group. This crate names what the replicas agree on and what they compute from it; it opens
//! no file, socket or clock:
//!
//! - [`TypeConfig`]: openraft's type configuration for every routing group, and [`typ`], the
//!   aliases (`typ::Raft`, `typ::Entry`, `typ::Vote`, `typ::RaftError`, ...) used everywhere
//!   else so that no other crate spells openraft's generic types.
//! - [`GroupRequest`] (a log entry's application data: epoch, leader timestamp, [`GroupCommand`])
//!   and [`GroupResponse`] (what applying it answered).
//! - [`ReplicatedState`]: what the storage needs of any group's applied state (apply, the last
//!   applied log id and membership, snapshots).
//! - [`GroupState`]: the pure, deterministic applied state of one routing group (the
//!   `roster_registrar::Registry`, the epoch, the last applied log id and membership, the last
//!   leader timestamp). [`GroupState::apply`] is the Raft apply step.
//! - [`overlay`]: a backup copy's resiliency overlay (what the backup registrar acknowledged
//!   for its partner's users, beside the copy's registry, never in it).
//! - [`GroupKey`]: what names a Raft group (its home pool and its kind: a routing group, a
//!   backup copy of one, the CMS).
//! - [`group_of`]: the fixed hash that puts an AOR in a routing group.
//! - [`config`]: builds and validates openraft's `Config` with explicit timings and pre-vote on.
//! - [`codec`]: bincode encoding of entries and snapshots, every decode bounded by a `*_MAX`.
//! - [`runtime`]: [`RaftRuntime`], openraft's Tokio runtime whose election-timeout draws a
//!   deterministic simulation can seed ([`runtime::seed_thread`]); random in a node.
//!
//! **Architecture Invariant**: apply never reads the local clock. The effective time of a
//! command is `max(command timestamp, last applied timestamp)`, both from the log.
//! **Architecture Invariant**: no I/O here; only `roster-store` knows sled and only the network
//! crate knows the transport.
#![deny(missing_docs)]

pub mod codec;
pub mod config;
mod key;
mod machine;
pub mod overlay;
mod request;
mod routing;
pub mod runtime;
mod state;
pub mod stream;
pub mod typ;

pub use codec::{CodecError, ENTRY_SIZE_MAX, SNAPSHOT_SIZE_MAX};
pub use key::{GroupKey, GroupKeyError, GroupKind};
pub use machine::ReplicatedState;
pub use request::{
    GroupCommand, GroupRefusal, GroupRequest, GroupResponse, REQUEST_SIZE_MAX, SHIPPED_SIZE_MAX,
};
pub use routing::group_of;
pub use runtime::RaftRuntime;
pub use state::{ApplyError, GroupContent, GroupState};

openraft::declare_raft_types!(
    /// The openraft type configuration of every routing group (and of nothing else).
    ///
    /// Only the application data, the response and the runtime differ from openraft's
    /// defaults: `NodeId = u64`, `Node = openraft::BasicNode { addr }`, `leader_id_adv` leader
    /// ids; the runtime is Tokio's with a seedable rng ([`RaftRuntime`]).
    pub TypeConfig:
        D = GroupRequest,
        R = GroupResponse,
        AsyncRuntime = RaftRuntime,
);
