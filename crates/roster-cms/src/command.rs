//! [`CmsCommand`]: what changes the CMS, and [`CmsOutcome`]: what applying one answered.

use roster_topology::{Deployment, PoolId};
use serde::{Deserialize, Serialize};

use crate::ownership::{Operation, OperationKind, Ownership};
use crate::user::UserRecord;

/// Users one command may add or remove. A command is one Raft log entry of at most 128 KiB, and
/// a user record is about 250 bytes (two HA1 hashes, an AOR, a user name); 256 of them leave
/// room. An import of 100,000 users is 391 commands.
pub const USERS_PER_COMMAND_MAX: usize = 256;

/// A change to the CMS. Every command is all-or-nothing: refused, it changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmsCommand {
    /// Publish the deployment (`roster init`). A pool keeps its routing groups for life and a
    /// pool with users homed on it stays; a new pool's users are owned by itself at epoch 1.
    SetDeployment(Deployment),
    /// Add users; with `replace`, an existing user of the same AOR is replaced (a password
    /// change), else it is refused.
    PutUsers {
        /// The users, at most [`USERS_PER_COMMAND_MAX`].
        users: Vec<UserRecord>,
        /// Replace existing users of the same AOR.
        replace: bool,
    },
    /// Remove users by AOR (those not present are counted as not found, not refused).
    RemoveUsers {
        /// The AORs, at most [`USERS_PER_COMMAND_MAX`].
        aors: Vec<String>,
    },
    /// Enable or disable a user.
    SetEnabled {
        /// The user.
        aor: String,
        /// Whether it may register.
        enabled: bool,
    },
    /// Record who owns `pool`'s users: a failover or failback. The epoch must rise; an
    /// operation under way for the pool ends.
    SetOwnership {
        /// The home pool whose users change owner.
        pool: PoolId,
        /// The new ownership.
        ownership: Ownership,
    },
    /// Record which pool holds the authoritative CMS (`roster cms failover`, or its way back).
    /// The epoch must rise.
    SetCmsOwner(Ownership),
    /// Record that a failover or failback of `pool`'s users begins; refused while another is
    /// under way for the same pool.
    BeginOperation {
        /// The home pool.
        pool: PoolId,
        /// What begins.
        operation: Operation,
    },
    /// Record that the operation under way for `pool` ended without changing ownership (it was
    /// given up), whatever its kind (the form of entries written before `EndOperationOf`).
    EndOperation {
        /// The home pool.
        pool: PoolId,
    },
    /// Record that the operation of kind `kind` under way for `pool` ended: refused
    /// (`NoOperation`) when none, or one of another kind, is under way, so that an end sent
    /// late or from a stale view never ends the operation that began since.
    EndOperationOf {
        /// The home pool.
        pool: PoolId,
        /// The kind of the operation that ended.
        kind: OperationKind,
    },
}

/// What applying a [`CmsCommand`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmsOutcome {
    /// The deployment is recorded.
    DeploymentSet {
        /// Pools in it.
        pools: usize,
    },
    /// Users were added or replaced.
    UsersPut {
        /// New users.
        added: usize,
        /// Users replaced.
        replaced: usize,
    },
    /// Users were removed.
    UsersRemoved {
        /// Removed.
        removed: usize,
        /// Not present.
        not_found: usize,
    },
    /// A user was enabled or disabled.
    UserUpdated,
    /// A pool's ownership changed.
    OwnershipSet {
        /// The new epoch.
        epoch: u64,
    },
    /// An operation was recorded as begun.
    OperationBegun,
    /// An operation was recorded as ended.
    OperationEnded,
    /// The command was refused; nothing changed.
    Refused(CmsRefusal),
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CmsRefusal {
    /// An operation was asked from an ownership the CMS no longer records.
    #[error(
        "pool {pool}'s users are owned by {} now, not by pool {} at epoch {} as the asker saw",
        current.map_or_else(|| "no pool".to_string(), |c| format!("pool {} at epoch {}", c.owner, c.epoch)),
        seen.owner,
        seen.epoch
    )]
    OwnershipChanged {
        /// The home pool.
        pool: PoolId,
        /// What the asker saw.
        seen: Ownership,
        /// What the CMS records.
        current: Option<Ownership>,
    },
    /// No deployment has been published yet.
    #[error("no deployment is published yet (run roster init)")]
    NoDeployment,
    /// A pool the command names is not in the deployment.
    #[error("pool {0} is not in the deployment")]
    UnknownPool(PoolId),
    /// A user record is malformed.
    #[error("{0}")]
    InvalidUser(String),
    /// The AOR exists already (and `replace` was not asked).
    #[error("user {0} exists already")]
    Exists(String),
    /// The digest user name belongs to another AOR.
    #[error("digest user name {username:?} is taken by {aor}")]
    UsernameTaken {
        /// The name.
        username: String,
        /// Its user.
        aor: String,
    },
    /// An AOR appears twice in one command.
    #[error("user {0} appears twice in one command")]
    Duplicate(String),
    /// The user does not exist.
    #[error("no user {0}")]
    NotFound(String),
    /// Too many users in one command.
    #[error("{count} users in one command; at most {USERS_PER_COMMAND_MAX}")]
    TooMany {
        /// How many.
        count: usize,
    },
    /// The deployment would change a pool's routing groups.
    #[error("pool {pool} has {from} routing groups; a pool keeps them for life (not {to})")]
    GroupsChanged {
        /// The pool.
        pool: PoolId,
        /// Its groups.
        from: u32,
        /// The groups asked for.
        to: u32,
    },
    /// The deployment would drop a pool that still has users homed on it.
    #[error("pool {pool} still has {users} users homed on it")]
    PoolHasUsers {
        /// The pool.
        pool: PoolId,
        /// Its users.
        users: usize,
    },
    /// An ownership change whose epoch does not rise.
    #[error("epoch {asked} is not above the current epoch {current}")]
    StaleEpoch {
        /// The epoch asked for.
        asked: u64,
        /// The current one.
        current: u64,
    },
    /// The deployment itself is invalid.
    #[error("invalid deployment: {0}")]
    InvalidDeployment(String),
    /// A failover or failback of the pool is under way already.
    #[error("a {} of pool {pool} is under way already (since {} ms)", running.kind, running.started_ms)]
    OperationInFlight {
        /// The pool.
        pool: PoolId,
        /// The operation under way.
        running: Operation,
    },
    /// No operation (of the kind an `EndOperationOf` names) is under way for the pool.
    #[error("no failover or failback of pool {0} is under way")]
    NoOperation(PoolId),
}
