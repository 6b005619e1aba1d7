//! A node of a Roster pool: the Raft replicas of the groups placed on it (its routing groups,
//! its partner pool's backup copies, the CMS or its copy).
//!
//! Main types: [`PoolNode`] (its groups, the write and read paths, the handler its peers
//! call), [`PoolOptions`] (which groups a pool hosts), [`placement`] (where replicas go, and the
//! moves that rebalance them), [`protocol`] (what a pool's nodes say to each other), [`pair`]
//! (what paired pools say to each other), [`shipper`] (the backup stream), [`resilience`] (the
//! backup registrar while the partner is silent), [`report`] (its
//! status) and [`router`] (Raft traffic of every group over one `roster-net` network). Membership changes
//! (moves, rebalancing after a node joins or drains, leader balancing) are methods of
//! [`PoolNode`]: [`PoolNode::move_replica`], [`PoolNode::rebalance`],
//! [`PoolNode::balance_leaders`].
//!
//! **Architecture Invariant**: this crate knows openraft, not QUIC (that is `roster-net`) nor
//! sled (that is `roster-store`). Every write carries the pool's epoch; the leader stamps the
//! time; apply never reads a clock.
#![deny(missing_docs)]

mod batch;
mod bootstrap;
pub mod failover;
pub mod gauges;
mod handler;
mod hints;
mod leader;
mod membership;
pub mod node;
mod options;
pub mod ownership;
pub mod pair;
mod partner;
pub mod placement;
pub mod protocol;
mod replicas;
pub mod report;
pub mod resilience;
mod route;
pub mod router;
pub mod shipper;
mod status;
mod supervisor;
pub mod witness;

/// Metric: seconds a node took to serve a peer's request, by kind (`append`, `write`, …).
pub const RPC_DURATION: &str = "roster_pool_rpc_seconds";

pub use batch::BATCH_SIZE;
pub use handler::PoolHandler;
pub use node::{PoolError, PoolNode};
pub use options::{Partner, PoolOptions, DETECTION_INTERVAL_DEFAULT};
