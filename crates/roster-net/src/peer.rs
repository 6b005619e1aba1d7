//! [`Peer`], the authenticated identity of a node: its pool and its id.

use roster_topology::{NodeId, PoolId};

/// The identity of a node as its certificate proves it: the pool it belongs to and its id.
///
/// What a [`crate::Handler`] is told about the node a request came from, read from that node's
/// certificate after it was verified against the deployment's CA. Ordered by pool, then node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    /// The pool the node belongs to.
    pub pool: PoolId,
    /// The node's id, unique in the whole deployment.
    pub node: NodeId,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "pool {} node {}", self.pool, self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_displays_and_orders_by_pool_then_node() {
        let peer = Peer { pool: 2, node: 5 };
        assert_eq!(peer.to_string(), "pool 2 node 5");
        let mut peers = vec![
            Peer { pool: 2, node: 1 },
            Peer { pool: 1, node: 9 },
            Peer { pool: 1, node: 3 },
        ];
        peers.sort();
        assert_eq!(
            peers,
            [
                Peer { pool: 1, node: 3 },
                Peer { pool: 1, node: 9 },
                Peer { pool: 2, node: 1 },
            ]
        );
    }
}
