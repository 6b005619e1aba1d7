//! [`NodeId`] and [`PoolId`].

/// A node (one server running the `roster` daemon): positive, unique in the whole deployment
/// (across all pools and sites) and never reused after the node is removed, since Raft
/// memberships and certificates name it.
pub type NodeId = u64;

/// A pool: positive and unique in the deployment. Small, as it travels in every Raft message
/// (inside a group key) and in every node certificate.
pub type PoolId = u16;
