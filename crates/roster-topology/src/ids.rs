//! [`NodeId`], [`PoolId`] and [`WITNESS_POOL`].

/// A node (one server running the `roster` daemon): positive, unique in the whole deployment
/// (across all pools and sites) and never reused after the node is removed, since Raft
/// memberships and certificates name it.
pub type NodeId = u64;

/// A pool: positive and unique in the deployment. Small, as it travels in every Raft message
/// (inside a group key) and in every node certificate.
pub type PoolId = u16;

/// The pool id a witness is named by (pools start at 1, so 0 is never a pool): its identity in
/// certificates and on the network is a node of this "pool", which pools trust only as the
/// witness (they send it heartbeats and serve nothing it asks).
pub const WITNESS_POOL: PoolId = 0;
