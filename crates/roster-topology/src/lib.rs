//! The shape of a Roster deployment, and the ids that name its parts.
//!
//! Main types: [`Deployment`] (the sites, pools, pairs and nodes an operator writes for `roster
//! init`, checked), [`NodeId`] (one server, unique in the whole deployment) and [`PoolId`] (one
//! pool of servers in one site). Every other crate names nodes and pools with these, so that a node
//! id in a certificate, in a Raft membership and in a placement is one type.
//!
//! **Architecture Invariant**: no I/O, no clock, and no dependency on another Roster crate:
//! this crate is the bottom of the workspace.
#![deny(missing_docs)]

mod deployment;
mod ids;

pub use deployment::{
    Deployment, DeploymentSpec, NodeSpec, PairSpec, PoolSpec, SiteSpec, TopologyError, WitnessSpec,
    GROUPS_DEFAULT, GROUPS_MAX, NAME_LENGTH_MAX, POOLS_MAX, POOL_NODES_MAX, POOL_NODES_MIN,
};
pub use ids::{NodeId, PoolId, WITNESS_POOL};
