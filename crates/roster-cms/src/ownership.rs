//! [`Ownership`]: which pool serves a home pool's users (and which holds the CMS), at which
//! epoch; [`Operation`]: a failover or failback under way.

use std::fmt;

use roster_topology::PoolId;
use serde::{Deserialize, Serialize};

/// Which pool owns a home pool's users (or the CMS), at which epoch.
///
/// Every write of a routing group carries the epoch it was proposed under, and groups refuse
/// epochs below theirs: raising the epoch here, then in the groups, fences the previous owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// The pool that serves the users' writes.
    pub owner: PoolId,
    /// The epoch writes carry.
    pub epoch: u64,
}

/// A failover or failback under way (of a pool's users, or of the CMS): recorded first, so that
/// a second one is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// What it is.
    pub kind: OperationKind,
    /// The pool taking the users over (failover) or giving them back (failback).
    pub by: PoolId,
    /// The ownership it starts from, as its pool saw it (of the users; of the CMS for a CMS
    /// failback): the CMS refuses the operation when it records another (the asker's view was
    /// stale, or another operation won).
    pub from: Ownership,
    /// When it began (the operator's node's clock, for status only).
    pub started_ms: u64,
}

/// The kinds of operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationKind {
    /// A planned failover (the home pool answers; nothing is lost).
    Failover,
    /// A failover of a lost pool, from what its partner has.
    DisasterFailover,
    /// Giving the users back to their home pool.
    Failback,
    /// Bringing the CMS back to its home pool (the operation's pool) after a CMS failover:
    /// while it is under way, no other operation begins, and it begins only when none is.
    CmsFailback,
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperationKind::Failover => "failover",
            OperationKind::DisasterFailover => "disaster failover",
            OperationKind::Failback => "failback",
            OperationKind::CmsFailback => "CMS failback",
        })
    }
}
