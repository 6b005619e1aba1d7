//! Per-group gauges of a node, for its `/metrics`: what each replica holds and where it
//! stands in its group. Set by [`PoolNode::record_gauges`], which the node calls periodically
//! (counting bindings walks every AOR of the replica: cheap, but not per request).

use openraft::async_runtime::watch::WatchReceiver;
use roster_net::Network;

use crate::node::PoolNode;

/// Metric: bindings stored in this node's replica of a group (expired ones until purged).
pub const GROUP_BINDINGS: &str = "roster_group_bindings";
/// Metric: AORs with bindings in this node's replica of a group.
pub const GROUP_AORS: &str = "roster_group_aors";
/// Metric: the last log index this node's replica of a group has applied.
pub const GROUP_APPLIED_INDEX: &str = "roster_group_applied_index";
/// Metric: the last log index in this node's replica of a group.
pub const GROUP_LAST_LOG_INDEX: &str = "roster_group_last_log_index";
/// Metric: 1 when this node leads the group, else 0.
pub const GROUP_LEADER: &str = "roster_group_leader";
/// Metric: the group's Raft term as this node knows it.
pub const GROUP_TERM: &str = "roster_group_term";
/// Metric: bindings stored in all of this node's replicas.
pub const NODE_BINDINGS: &str = "roster_node_bindings";

impl<N: Network> PoolNode<N> {
    /// Sets the per-group gauges of every replica this node holds, and the node's total.
    pub fn record_gauges(&self) {
        let mut total = 0usize;
        for (group, replica) in self.replica_list() {
            let label = group.to_string();
            // Read in place; the borrow ends before anything else is touched.
            let (leader, term, applied, last_log) = {
                let metrics = replica.raft.metrics();
                let metrics = metrics.borrow_watched();
                (
                    metrics.current_leader == Some(self.node_id()),
                    metrics.current_term,
                    metrics.last_applied.map_or(0, |id| id.index),
                    metrics.last_log_index.unwrap_or(0),
                )
            };
            let counts = replica.state.read(|state| {
                state
                    .registry()
                    .map(|registry| (registry.aor_count(), registry.binding_count()))
            });
            if let Ok(Some((aors, bindings))) = counts {
                total += bindings;
                metrics::gauge!(GROUP_BINDINGS, "group" => label.clone()).set(bindings as f64);
                metrics::gauge!(GROUP_AORS, "group" => label.clone()).set(aors as f64);
            }
            metrics::gauge!(GROUP_APPLIED_INDEX, "group" => label.clone()).set(applied as f64);
            metrics::gauge!(GROUP_LAST_LOG_INDEX, "group" => label.clone()).set(last_log as f64);
            metrics::gauge!(GROUP_LEADER, "group" => label.clone())
                .set(f64::from(u8::from(leader)));
            metrics::gauge!(GROUP_TERM, "group" => label).set(term as f64);
        }
        metrics::gauge!(NODE_BINDINGS).set(total as f64);
    }
}
