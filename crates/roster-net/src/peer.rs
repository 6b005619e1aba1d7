//! [`Peer`], the authenticated identity of a node (its pool and its id), and the trust rule
//! every transport applies to it: a node talks to its own pool, at most one partner pool and
//! the deployment's witness (pool [`WITNESS_POOL`]); a witness talks to the two pools it
//! watches.

use roster_topology::{NodeId, PoolId, WITNESS_POOL};

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
        if self.pool == WITNESS_POOL {
            return write!(formatter, "witness {}", self.node);
        }
        write!(formatter, "pool {} node {}", self.pool, self.node)
    }
}

/// The pools one node trusts: its own, at most one partner, and the witness; a witness's are
/// the two pools it watches. The same rule applies to both ends of a connection, so two nodes
/// talk only when each trusts the other's pool. A pool node trusts the witness only as the
/// witness: the pool's handler serves nothing a witness asks (a witness asks nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trust {
    own: PoolId,
    partner: Option<PoolId>,
    /// On a witness, the second pool it watches (`partner` is the first).
    second: Option<PoolId>,
}

impl Trust {
    /// The trust of a node of pool `own` paired with `partner`.
    pub(crate) fn new(own: PoolId, partner: Option<PoolId>) -> Trust {
        Trust {
            own,
            partner,
            second: None,
        }
    }

    /// The trust of a witness watching `pools`.
    pub(crate) fn witness(pools: [PoolId; 2]) -> Trust {
        Trust {
            own: WITNESS_POOL,
            partner: Some(pools[0]),
            second: Some(pools[1]),
        }
    }

    /// Whether a node of `pool` may talk to this node.
    pub(crate) fn allows(self, pool: PoolId) -> bool {
        pool == self.own
            || self.partner == Some(pool)
            || self.second == Some(pool)
            || (pool == WITNESS_POOL && self.own != WITNESS_POOL)
    }

    /// Why `peer` is refused, for [`crate::NetError::Untrusted`] and the log.
    pub(crate) fn refusal(self, peer: Peer) -> String {
        if self.own == WITNESS_POOL {
            return format!(
                "{peer} is of neither pool this witness watches ({:?} and {:?})",
                self.partner, self.second
            );
        }
        match self.partner {
            Some(partner) => format!(
                "{peer} is of neither this node's pool {} nor its partner pool {partner}",
                self.own
            ),
            None => format!(
                "{peer} is not of this node's pool {}, and this node has no partner pool",
                self.own
            ),
        }
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

    #[test]
    fn a_node_trusts_its_own_pool_and_its_partner_only() {
        let alone = Trust::new(1, None);
        assert!(alone.allows(1));
        assert!(!alone.allows(2));
        let paired = Trust::new(1, Some(2));
        assert!(paired.allows(1) && paired.allows(2));
        assert!(!paired.allows(3));
        assert!(paired.allows(WITNESS_POOL), "a pool node dials the witness");
        let witness = Trust::witness([1, 2]);
        assert!(witness.allows(1) && witness.allows(2));
        assert!(!witness.allows(3));
        let refusal = paired.refusal(Peer { pool: 3, node: 7 });
        assert!(refusal.contains("pool 3 node 7"), "{refusal}");
        assert!(refusal.contains("partner pool 2"), "{refusal}");
    }
}
