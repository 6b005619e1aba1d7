//! [`Deployment`]: the sites, pools, nodes and pairs of a deployment, as the operator writes them
//! for `roster init`, checked.
//!
//! ```toml
//! [deployment]
//! name = "acme"              # the CA's subject
//! cms = "a"                  # the pool the CMS lives on (its backup copy: on its partner)
//!
//! [[site]]
//! name = "dc1"
//!
//! [[site]]
//! name = "dc2"
//!
//! [[pool]]
//! id = 1                     # never reused
//! name = "a"
//! site = "dc1"
//! groups = 32                # fixed when the pool is created
//!
//! [[pool]]
//! id = 2
//! name = "b"
//! site = "dc2"
//!
//! [[pair]]
//! pools = ["a", "b"]         # each is the other's backup
//!
//! [[node]]
//! id = 1                     # unique in the deployment, never reused
//! pool = "a"
//! cluster = "10.0.1.1:7000"  # QUIC between nodes
//! sip = "10.0.1.1:5060"
//! http = "10.0.1.1:8080"
//! # wan = "198.51.100.1:7000"  # what the partner site dials, when it differs from `cluster`
//!
//! # [witness]                # optional: a third site's witness makes failover automatic
//! # id = 100                 # a node id of its own, unique in the deployment
//! # site = "dc3"             # neither pool's site
//! # address = "10.0.3.1:7000"  # QUIC, dialled by the nodes of both pools
//! # pools = ["a", "b"]       # the pair it watches
//! # http = "10.0.3.1:8080"   # optional: its status, for `roster witness status`
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{NodeId, PoolId};

/// Nodes a pool may have (DESIGN.md: 3 to 16 servers).
pub const POOL_NODES_MIN: usize = 3;
/// See [`POOL_NODES_MIN`].
pub const POOL_NODES_MAX: usize = 16;
/// Routing groups a pool may have: each is a Raft group with its own log and timers on three
/// nodes, and its backup copy is another on the partner's, so the bound keeps per-node
/// heartbeat traffic in hand.
pub const GROUPS_MAX: u32 = 1024;
/// The default number of routing groups (DESIGN.md).
pub const GROUPS_DEFAULT: u32 = 32;
/// Pools in one deployment at most: pools are paired, and every node of a pool trusts one other
/// pool; 64 is far more than the sites an operator runs.
pub const POOLS_MAX: usize = 64;
/// Longest name of a deployment, site or pool, in bytes: it appears in certificates, logs and
/// metric labels.
pub const NAME_LENGTH_MAX: usize = 32;

/// A deployment file that cannot be used; the message names the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    /// Not TOML of this shape.
    #[error("invalid topology: {0}")]
    Syntax(String),
    /// A value is out of range or inconsistent.
    #[error("invalid topology: {0}")]
    Invalid(String),
}

/// A deployment: its sites, pools, pairs and nodes. Built only by [`Deployment::parse`] (or
/// deserialized and then [`Deployment::validate`]d), so that every pool, site and partner a
/// method returns exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// `[deployment]`.
    pub deployment: DeploymentSpec,
    /// `[[site]]`.
    #[serde(default)]
    pub site: Vec<SiteSpec>,
    /// `[[pool]]`.
    pub pool: Vec<PoolSpec>,
    /// `[[pair]]`.
    #[serde(default)]
    pub pair: Vec<PairSpec>,
    /// `[[node]]`.
    pub node: Vec<NodeSpec>,
    /// `[witness]`, if the deployment has one. Always serialized (the CMS keeps the deployment
    /// in bincode, which has no optional fields; TOML leaves a `None` out by itself).
    /// Boxed: it is rare, and a `Deployment` travels inside CMS commands.
    #[serde(default)]
    pub witness: Option<Box<WitnessSpec>>,
}

/// `[witness]`: a small process in a third site that both pools of a pair send heartbeats to;
/// with it, a pool fails its lost partner over by itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessSpec {
    /// Its id, in the node ids' space (unique in the deployment, never reused): its certificate
    /// names it `witness-<id>.roster.invalid`.
    pub id: NodeId,
    /// The site it runs in (a `[[site]]` name), neither of its pools' sites.
    pub site: String,
    /// Its QUIC address, which the nodes of both pools dial.
    pub address: SocketAddr,
    /// The two pools it watches: a `[[pair]]`.
    pub pools: [String; 2],
    /// Its HTTP address (`GET /status`, for `roster witness status`), if it serves one.
    #[serde(default)]
    pub http: Option<SocketAddr>,
}

/// `[deployment]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// The deployment's name (the CA's subject, logs).
    pub name: String,
    /// The name of the pool the CMS lives on. Default: the first pool.
    #[serde(default)]
    pub cms: Option<String>,
}

/// `[[site]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// The site's name.
    pub name: String,
}

/// `[[pool]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// The pool's id: positive, unique, never reused.
    pub id: PoolId,
    /// The pool's name: unique.
    pub name: String,
    /// The site the pool is in (a `[[site]]` name).
    pub site: String,
    /// Routing groups, fixed for the pool's life. Default 32, bound 1..=[`GROUPS_MAX`].
    #[serde(default = "default_groups")]
    pub groups: u32,
}

/// `[[pair]]`: two pools in two sites, each the other's backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSpec {
    /// The two pools' names.
    pub pools: [String; 2],
}

/// `[[node]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's id: positive, unique in the deployment, never reused.
    pub id: NodeId,
    /// The pool the node belongs to (a `[[pool]]` name).
    pub pool: String,
    /// Its address for the cluster transport (QUIC), inside its site.
    pub cluster: SocketAddr,
    /// The address the partner site dials for this node, when it differs from `cluster` (a
    /// NAT, a WAN relay). Default: `cluster`.
    #[serde(default)]
    pub wan: Option<SocketAddr>,
    /// Its SIP address (UDP and TCP; TLS on the next port), for clients.
    #[serde(default)]
    pub sip: Option<SocketAddr>,
    /// Its HTTP address (metrics, health, status, admin), for the commands.
    #[serde(default)]
    pub http: Option<SocketAddr>,
}

fn default_groups() -> u32 {
    GROUPS_DEFAULT
}

impl Deployment {
    /// Parses and checks a deployment file's text.
    pub fn parse(text: &str) -> Result<Deployment, TopologyError> {
        let deployment: Deployment =
            toml::from_str(text).map_err(|error| TopologyError::Syntax(error.to_string()))?;
        deployment.validate()?;
        Ok(deployment)
    }

    /// The deployment as TOML, as [`Deployment::parse`] reads it.
    pub fn to_toml(&self) -> Result<String, TopologyError> {
        toml::to_string(self).map_err(|error| TopologyError::Syntax(error.to_string()))
    }

    /// Checks names, ids, addresses, node counts, pairs and the CMS pool.
    pub fn validate(&self) -> Result<(), TopologyError> {
        check_name("deployment.name", &self.deployment.name)?;
        let mut sites = BTreeSet::new();
        for site in &self.site {
            check_name("site name", &site.name)?;
            if !sites.insert(site.name.as_str()) {
                return invalid(format!("site {:?} appears twice", site.name));
            }
        }
        self.validate_pools(&sites)?;
        self.validate_nodes()?;
        self.validate_pairs()?;
        self.validate_witness()?;
        if let Some(cms) = &self.deployment.cms {
            if self.pool_by_name(cms).is_none() {
                return invalid(format!(
                    "deployment.cms names pool {cms:?}, which is not a [[pool]]"
                ));
            }
        }
        Ok(())
    }

    fn validate_pools(&self, sites: &BTreeSet<&str>) -> Result<(), TopologyError> {
        if self.pool.is_empty() || self.pool.len() > POOLS_MAX {
            return invalid(format!(
                "a deployment has 1 to {POOLS_MAX} pools, this one {}",
                self.pool.len()
            ));
        }
        let mut ids = BTreeSet::new();
        let mut names = BTreeSet::new();
        for pool in &self.pool {
            check_name("pool name", &pool.name)?;
            if pool.id == 0 {
                return invalid(format!(
                    "pool {:?}: id 0 is reserved; ids start at 1",
                    pool.name
                ));
            }
            if !ids.insert(pool.id) {
                return invalid(format!("pool id {} appears twice", pool.id));
            }
            if !names.insert(pool.name.as_str()) {
                return invalid(format!("pool name {:?} appears twice", pool.name));
            }
            if !sites.contains(pool.site.as_str()) {
                return invalid(format!(
                    "pool {:?} is in site {:?}, which is not a [[site]]",
                    pool.name, pool.site
                ));
            }
            if !(1..=GROUPS_MAX).contains(&pool.groups) {
                return invalid(format!(
                    "pool {:?}: groups = {} is out of range 1..={GROUPS_MAX}",
                    pool.name, pool.groups
                ));
            }
        }
        Ok(())
    }

    fn validate_nodes(&self) -> Result<(), TopologyError> {
        let mut ids = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        let mut per_pool: BTreeMap<&str, usize> = self
            .pool
            .iter()
            .map(|pool| (pool.name.as_str(), 0))
            .collect();
        for node in &self.node {
            if node.id == 0 {
                return invalid("node id 0 is reserved; ids start at 1".into());
            }
            if !ids.insert(node.id) {
                return invalid(format!("node id {} appears twice", node.id));
            }
            let Some(count) = per_pool.get_mut(node.pool.as_str()) else {
                return invalid(format!(
                    "node {} is in pool {:?}, which is not a [[pool]]",
                    node.id, node.pool
                ));
            };
            *count += 1;
            if !addresses.insert(node.cluster) {
                return invalid(format!("cluster address {} appears twice", node.cluster));
            }
        }
        for (pool, count) in per_pool {
            if !(POOL_NODES_MIN..=POOL_NODES_MAX).contains(&count) {
                return invalid(format!(
                    "a pool has {POOL_NODES_MIN} to {POOL_NODES_MAX} nodes, pool {pool:?} {count}"
                ));
            }
        }
        Ok(())
    }

    fn validate_pairs(&self) -> Result<(), TopologyError> {
        let mut paired = BTreeSet::new();
        for pair in &self.pair {
            let [first, second] = &pair.pools;
            let (Some(a), Some(b)) = (self.pool_by_name(first), self.pool_by_name(second)) else {
                return invalid(format!(
                    "pair {:?} names a pool that is not a [[pool]]",
                    pair.pools
                ));
            };
            if a.id == b.id {
                return invalid(format!("pair {:?} pairs a pool with itself", pair.pools));
            }
            if a.site == b.site {
                return invalid(format!(
                    "pair {:?}: both pools are in site {:?}; a pair spans two sites",
                    pair.pools, a.site
                ));
            }
            for pool in [a, b] {
                if !paired.insert(pool.id) {
                    return invalid(format!(
                        "pool {:?} is in two pairs; a pool has one partner",
                        pool.name
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_witness(&self) -> Result<(), TopologyError> {
        let Some(witness) = self.witness.as_deref() else {
            return Ok(());
        };
        if witness.id == 0 || self.node(witness.id).is_some() {
            return invalid(format!(
                "witness id {} must be positive and no node's id",
                witness.id
            ));
        }
        if !self.site.iter().any(|site| site.name == witness.site) {
            return invalid(format!(
                "the witness is in site {:?}, which is not a [[site]]",
                witness.site
            ));
        }
        if self.node.iter().any(|node| node.cluster == witness.address) {
            return invalid(format!(
                "the witness address {} is a node's cluster address",
                witness.address
            ));
        }
        let [first, second] = &witness.pools;
        let (Some(a), Some(b)) = (self.pool_by_name(first), self.pool_by_name(second)) else {
            return invalid(format!(
                "the witness watches {:?}, which names a pool that is not a [[pool]]",
                witness.pools
            ));
        };
        if self.partner(a.id) != Some(b.id) {
            return invalid(format!(
                "the witness watches {:?}, which is not a [[pair]]",
                witness.pools
            ));
        }
        if a.site == witness.site || b.site == witness.site {
            return invalid(format!(
                "the witness is in site {:?} with a pool it watches; it belongs in a third site",
                witness.site
            ));
        }
        Ok(())
    }

    /// The deployment's witness, if it watches pool `id`.
    pub fn witness_of(&self, id: PoolId) -> Option<&WitnessSpec> {
        let name = &self.pool(id)?.name;
        self.witness
            .as_deref()
            .filter(|witness| witness.pools.contains(name))
    }

    /// The pool with id `id`.
    pub fn pool(&self, id: PoolId) -> Option<&PoolSpec> {
        self.pool.iter().find(|pool| pool.id == id)
    }

    /// The pool named `name`.
    pub fn pool_by_name(&self, name: &str) -> Option<&PoolSpec> {
        self.pool.iter().find(|pool| pool.name == name)
    }

    /// The partner of pool `id`, if it is paired.
    pub fn partner(&self, id: PoolId) -> Option<PoolId> {
        let name = &self.pool(id)?.name;
        self.pair.iter().find_map(|pair| {
            let [first, second] = &pair.pools;
            let other = if first == name {
                second
            } else if second == name {
                first
            } else {
                return None;
            };
            self.pool_by_name(other).map(|pool| pool.id)
        })
    }

    /// The pool the CMS lives on.
    pub fn cms_pool(&self) -> PoolId {
        let named = self
            .deployment
            .cms
            .as_deref()
            .and_then(|name| self.pool_by_name(name));
        // `validate` requires at least one pool and a CMS name that exists.
        named.or(self.pool.first()).map_or(0, |pool| pool.id)
    }

    /// The node with id `id`.
    pub fn node(&self, id: NodeId) -> Option<&NodeSpec> {
        self.node.iter().find(|node| node.id == id)
    }

    /// The pool of node `id`.
    pub fn pool_of(&self, id: NodeId) -> Option<PoolId> {
        let node = self.node(id)?;
        self.pool_by_name(&node.pool).map(|pool| pool.id)
    }

    /// The nodes of pool `id`, ascending by node id.
    pub fn nodes_of(&self, id: PoolId) -> Vec<&NodeSpec> {
        let Some(pool) = self.pool(id) else {
            return Vec::new();
        };
        let mut nodes: Vec<&NodeSpec> = self
            .node
            .iter()
            .filter(|node| node.pool == pool.name)
            .collect();
        nodes.sort_by_key(|node| node.id);
        nodes
    }

    /// The node ids of pool `id`, ascending.
    pub fn node_ids_of(&self, id: PoolId) -> Vec<NodeId> {
        self.nodes_of(id).iter().map(|node| node.id).collect()
    }
}

impl NodeSpec {
    /// The address the other site dials for this node: `wan`, else `cluster`.
    pub fn wan_address(&self) -> SocketAddr {
        self.wan.unwrap_or(self.cluster)
    }
}

fn invalid<T>(message: String) -> Result<T, TopologyError> {
    Err(TopologyError::Invalid(message))
}

/// Names go into certificates, file names, logs and metric labels: short, and of letters,
/// digits, `-` and `_`.
fn check_name(what: &str, name: &str) -> Result<(), TopologyError> {
    let fine = !name.is_empty()
        && name.len() <= NAME_LENGTH_MAX
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if fine {
        Ok(())
    } else {
        invalid(format!(
            "{what} {name:?} must be 1 to {NAME_LENGTH_MAX} letters, digits, '-' or '_'"
        ))
    }
}

#[cfg(test)]
mod tests;
