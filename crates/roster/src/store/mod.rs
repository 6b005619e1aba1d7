//! Where bindings live: the [`Store`] trait the request path calls, with its two
//! implementations: [`MemoryStore`] (one node's memory) and [`PoolStore`] (a pool's Raft
//! groups).

use std::future::Future;

use roster_registrar::{Binding, Command, CommandOutcome};

mod memory;
mod pool;

pub use memory::MemoryStore;
pub use pool::PoolStore;

/// A store that cannot take or answer a request now: the caller answers `503`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No quorum, overloaded, shutting down.
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
        /// When the client may retry, in seconds.
        retry_after_s: u32,
    },
}

/// A command's result and the timestamp it was applied at: the answer counts remaining
/// expiries from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// What the registry did.
    pub outcome: CommandOutcome,
    /// The command's timestamp as applied (never below an earlier command's).
    pub at_ms: u64,
    /// Who acknowledged it, in a pool.
    pub served: Option<Served>,
}

/// Which pool answered a request for an AOR, at which epoch, and whether as the AOR's owner or
/// as the backup registrar (resiliency mode). The SIP edge sends it in the `200`'s
/// `X-Roster-Served` header, so that the chaos suite can tell which pool acknowledged each
/// write (no two pools may acknowledge one user's writes as owner in one epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The answering pool's id.
    pub pool: u64,
    /// The epoch the write was applied under (a read: the owner's epoch as this node knows it).
    pub epoch: u64,
    /// Answered by the partner of the AOR's home pool in resiliency mode, from its overlay.
    pub resilient: bool,
}

impl Served {
    /// The `X-Roster-Served` header's value: `pool=2; epoch=3; mode=owner|resilient`.
    pub fn header_value(&self) -> String {
        let mode = if self.resilient { "resilient" } else { "owner" };
        format!("pool={}; epoch={}; mode={mode}", self.pool, self.epoch)
    }
}

/// Where an AOR's bindings live, for the request's log lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Its group (`1/routing-7`), or `memory` on a single node.
    pub group: String,
    /// Its home pool, in a pool.
    pub pool: Option<u64>,
    /// The epoch its writes carry, in a pool.
    pub epoch: Option<u64>,
}

/// The registrar's state as the request path sees it.
pub trait Store: Send + Sync + 'static {
    /// Applies `command`, stamped `now_ms` (the store may raise it, never lower it).
    fn apply(
        &self,
        command: Command,
        now_ms: u64,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// The live bindings of `aor` at `now_ms`, highest q first; linearizable.
    fn lookup(
        &self,
        aor: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send;

    /// Removes expired bindings, where this store holds any to remove.
    fn purge_expired(&self, now_ms: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Where `aor`'s bindings live (logs and spans; cheap, no I/O).
    fn placement(&self, aor: &str) -> Placement;

    /// Which pool serves `aor` now, and how (see [`Served`]); `None` on a single node.
    fn served(&self, aor: &str) -> Option<Served>;

    /// The store's part of the node's status document.
    fn status(&self) -> serde_json::Value;

    /// Whether the store can serve requests now.
    fn healthy(&self) -> bool;
}
