//! A pool's topology as the operator writes it for `roster init`: its nodes, their addresses,
//! and the fixed number of routing groups.
//!
//! ```toml
//! [pool]
//! name = "pool-a"
//! groups = 32            # fixed when the pool is created
//!
//! [[node]]
//! id = 1                 # never reused after the node is removed
//! cluster = "10.0.0.1:7000"
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use roster_topology::{NodeId, PoolId};

/// Nodes a pool may have (DESIGN.md: 3 to 16 servers).
pub const POOL_NODES_MIN: usize = 3;
/// See [`POOL_NODES_MIN`].
pub const POOL_NODES_MAX: usize = 16;
/// Routing groups a pool may have: each is a Raft group with its own log and timers on three
/// nodes, so the bound keeps per-node heartbeat traffic in hand.
pub const GROUPS_MAX: u32 = 1024;
/// The default number of routing groups (DESIGN.md).
pub const GROUPS_DEFAULT: u32 = 32;

/// A topology that cannot be used; the message names the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    /// Not TOML of this shape.
    #[error("invalid topology: {0}")]
    Syntax(String),
    /// A value is out of range or inconsistent.
    #[error("invalid topology: {0}")]
    Invalid(String),
}

/// The topology file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// `[pool]`.
    pub pool: PoolSpec,
    /// `[[node]]`.
    pub node: Vec<NodeSpec>,
}

/// `[pool]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// The pool's id in the deployment. Default 1.
    #[serde(default = "default_pool_id")]
    pub id: PoolId,
    /// The pool's name.
    pub name: String,
    /// Routing groups, fixed for the pool's life. Default 32, bound 1..=[`GROUPS_MAX`].
    #[serde(default = "default_groups")]
    pub groups: u32,
}

/// One `[[node]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's id: positive, unique, never reused.
    pub id: NodeId,
    /// Its address for the cluster transport (QUIC).
    pub cluster: SocketAddr,
    /// Its SIP address (UDP and TCP), for clients and `roster pool status`. Optional.
    #[serde(default)]
    pub sip: Option<SocketAddr>,
    /// Its HTTP status address, for `roster pool status`. Optional.
    #[serde(default)]
    pub http: Option<SocketAddr>,
}

fn default_pool_id() -> PoolId {
    1
}

fn default_groups() -> u32 {
    GROUPS_DEFAULT
}

impl Topology {
    /// Parses and checks a topology file's text.
    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        let topology: Topology =
            toml::from_str(text).map_err(|error| TopologyError::Syntax(error.to_string()))?;
        topology.validate()?;
        Ok(topology)
    }

    /// Checks node count, unique ids and addresses, and the group count.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let invalid = |message: String| Err(TopologyError::Invalid(message));
        if self.pool.id == 0 {
            return invalid("pool.id 0 is reserved; ids start at 1".into());
        }
        if self.pool.name.trim().is_empty() {
            return invalid("pool.name is empty".into());
        }
        if !(1..=GROUPS_MAX).contains(&self.pool.groups) {
            return invalid(format!(
                "pool.groups = {} is out of range 1..={GROUPS_MAX}",
                self.pool.groups
            ));
        }
        let count = self.node.len();
        if !(POOL_NODES_MIN..=POOL_NODES_MAX).contains(&count) {
            return invalid(format!(
                "a pool has {POOL_NODES_MIN} to {POOL_NODES_MAX} nodes, this one {count}"
            ));
        }
        let mut ids = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for node in &self.node {
            if node.id == 0 {
                return invalid("node id 0 is reserved; ids start at 1".into());
            }
            if !ids.insert(node.id) {
                return invalid(format!("node id {} appears twice", node.id));
            }
            if !addresses.insert(node.cluster) {
                return invalid(format!("cluster address {} appears twice", node.cluster));
            }
        }
        Ok(())
    }

    /// The node ids, ascending.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.node.iter().map(|n| n.id).collect();
        ids.sort_unstable();
        ids
    }

    /// The cluster address of node `id`.
    pub fn cluster_address(&self, id: NodeId) -> Option<SocketAddr> {
        self.node.iter().find(|n| n.id == id).map(|n| n.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = "[pool]\nname = \"a\"\n\
        [[node]]\nid = 1\ncluster = \"127.0.0.1:7001\"\n\
        [[node]]\nid = 2\ncluster = \"127.0.0.1:7002\"\n\
        [[node]]\nid = 3\ncluster = \"127.0.0.1:7003\"\n";

    #[test]
    fn parses_with_default_groups() {
        let topology = Topology::parse(THREE).expect("valid");
        assert_eq!(topology.pool.groups, 32);
        assert_eq!(topology.node_ids(), [1, 2, 3]);
    }

    #[test]
    fn problems_are_named() {
        let cases = [
            (THREE.replace("id = 3", "id = 2"), "appears twice"),
            (THREE.replace("7003", "7002"), "appears twice"),
            (THREE.replace("id = 1", "id = 0"), "reserved"),
            (
                THREE.replace("name = \"a\"", "name = \"a\"\ngroups = 0"),
                "pool.groups",
            ),
            (
                THREE.replace("[[node]]\nid = 3\ncluster = \"127.0.0.1:7003\"\n", ""),
                "3 to 16 nodes",
            ),
            (THREE.replace("cluster", "clustre"), "unknown field"),
        ];
        for (text, expected) in cases {
            let error = Topology::parse(&text).expect_err(&text).to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
