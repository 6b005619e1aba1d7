//! A node's status document (per group, this replica's view of its Raft, what it holds, and
//! for a backup copy where it stands in its source's history) and its health.

use openraft::async_runtime::watch::WatchReceiver;
use roster_net::Network;
use roster_topology::NodeId;

use crate::leader::millis_since_quorum_ack;
use crate::node::PoolNode;

impl<N: Network> PoolNode<N> {
    /// Whether this node serves every replica it holds. It does not while its store is
    /// poisoned (a flush failed: a full disk) or being opened again, while a replica's Raft
    /// has stopped, or while a replica failed to open again; requests for those groups still
    /// work through it (forwarded to their leaders), and the node recovers by itself once the
    /// disk takes writes (`supervisor`). What `/health` answers.
    pub fn healthy(&self) -> bool {
        self.unhealthy_reason().is_none()
    }

    /// Why this node is not [`PoolNode::healthy`], if it is not.
    pub fn unhealthy_reason(&self) -> Option<String> {
        self.replicas.trouble().map(|trouble| trouble.to_string())
    }

    /// A status document: per group, this replica's view: its Raft (state, leader, term, log,
    /// commit and applied indexes, voters), the AORs a routing group or backup copy holds
    /// (`aors`), and for a backup copy the last index of its source it has applied
    /// (`stream_position`, comparable with the source's `applied`).
    pub fn status(&self) -> serde_json::Value {
        let mut replicas = self.replica_list();
        replicas.sort_by_key(|(key, _)| *key);
        let mut groups = Vec::with_capacity(replicas.len());
        for (group, replica) in replicas {
            // Cloned out at once: holding the borrow across an await can deadlock.
            let metrics = replica.raft.metrics().borrow_watched().clone();
            let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
            // Both O(1) reads of the applied state.
            let (aors, stream_position) = replica
                .state
                .read(|state| {
                    (
                        state.registry().map(|registry| registry.aor_count()),
                        state.stream().map(|stream| stream.index),
                    )
                })
                .unwrap_or((None, None));
            groups.push(serde_json::json!({
                "key": group.to_string(),
                "group": group.routing_group(),
                "state": format!("{:?}", metrics.state),
                "leader": metrics.current_leader,
                "term": metrics.current_term,
                "last_log_index": metrics.last_log_index,
                "committed": metrics.cluster_committed.map(|id| id.index),
                "applied": metrics.last_applied.map(|id| id.index),
                "voters": voters,
                "millis_since_quorum_ack": millis_since_quorum_ack(&metrics),
                "aors": aors,
                "stream_position": stream_position,
                "generation": replica.generation,
            }));
        }
        serde_json::json!({
            "node": self.options.node_id,
            "pool": self.options.pool,
            "epoch": self.epoch_of(self.options.pool),
            "ownership": self.ownership_view(),
            "partner_silent_ms": self.partner_silent_for().map(|silent| u64::try_from(silent.as_millis()).unwrap_or(u64::MAX)),
            "witness": self.witness_lease(),
            "unhealthy": self.unhealthy_reason(),
            "groups": groups,
        })
    }
}
