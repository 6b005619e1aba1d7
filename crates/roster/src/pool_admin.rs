//! [`PoolAdmin`]: the pool operations a node's admin routes run, draining a node,
//! rebalancing the pool, and failing a partner's users over and back, over its [`PoolNode`].
//!
//! A drain moves every replica off a node (learner → catch up → joint change → the node
//! closes its copy), then rebalances leaders over the nodes left; afterwards the node can be
//! stopped and removed from the topology: Lync's `Invoke-CsComputerFailOver`. A handover
//! moves only a node's leaderships to the other nodes of its pool, before it is stopped for
//! an upgrade.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roster_net::{Network as _, QuicNetwork};
use roster_pool::failover::{OperationError, OperationReport};
use roster_pool::placement::REPLICAS_PER_GROUP;
use roster_pool::PoolNode;
use roster_topology::{NodeId, PoolId};

use crate::http::admin::{Admin, AdminError, AdminFuture};
use crate::topology::read_topology;

/// Attempts of a drain or rebalance whose groups are briefly unavailable.
const ADMIN_ATTEMPTS: u32 = 10;

/// Pause between attempts.
const ADMIN_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// [`Admin`] for a pool node: runs the moves through [`PoolNode`], over the nodes the
/// topology file lists when the operation starts (an operator adds a node to the file, then
/// rebalances).
pub struct PoolAdmin {
    node: Arc<PoolNode<QuicNetwork>>,
    network: QuicNetwork,
    topology: PathBuf,
}

impl PoolAdmin {
    /// Admin over `node`, whose peers `network` reaches, for the pool described by the
    /// topology file at `topology`.
    pub fn new(
        node: Arc<PoolNode<QuicNetwork>>,
        network: QuicNetwork,
        topology: PathBuf,
    ) -> PoolAdmin {
        PoolAdmin {
            node,
            network,
            topology,
        }
    }

    /// The topology's node ids and cluster addresses, read now; the network learns any
    /// address it did not know.
    fn members(&self) -> Result<(Vec<NodeId>, BTreeMap<NodeId, String>), AdminError> {
        let topology = read_topology(&self.topology)
            .map_err(|error| AdminError::new(500, format!("{error:#}")))?;
        let pool = self.node.pool();
        let addresses: BTreeMap<NodeId, String> = topology
            .nodes_of(pool)
            .iter()
            .map(|n| (n.id, n.cluster.to_string()))
            .collect();
        for (&id, address) in &addresses {
            self.network.learn_address(id, address);
        }
        Ok((topology.node_ids_of(pool), addresses))
    }

    async fn spread_over(
        node: Arc<PoolNode<QuicNetwork>>,
        targets: Vec<NodeId>,
        addresses: BTreeMap<NodeId, String>,
    ) -> Result<(usize, usize), AdminError> {
        // Moves are idempotent: a group briefly unavailable (electing, a slow follower) is
        // retried, within ADMIN_ATTEMPTS.
        let mut last_error = String::new();
        let mut moves = 0;
        for attempt in 1..=ADMIN_ATTEMPTS {
            match node.rebalance(&targets, &addresses).await {
                Ok(done) => {
                    moves += done.len();
                    match node.balance_leaders().await {
                        Ok(transfers) => return Ok((moves, transfers)),
                        Err(error) => last_error = error.to_string(),
                    }
                }
                Err(error) => last_error = error.to_string(),
            }
            tracing::warn!(attempt, error = %last_error, "pool admin operation will be retried");
            tokio::time::sleep(ADMIN_RETRY_PAUSE).await;
        }
        Err(AdminError::new(
            503,
            format!("gave up after {ADMIN_ATTEMPTS} attempts: {last_error}"),
        ))
    }
}

impl Admin for PoolAdmin {
    fn drain(&self, drained: NodeId) -> AdminFuture {
        let node = self.node.clone();
        let members = self.members();
        Box::pin(async move {
            let (nodes, addresses) = members?;
            if !nodes.contains(&drained) {
                return Err(AdminError::new(
                    404,
                    format!("node {drained} is not in the pool's topology"),
                ));
            }
            let targets: Vec<NodeId> = nodes.into_iter().filter(|&n| n != drained).collect();
            if targets.len() < REPLICAS_PER_GROUP {
                return Err(AdminError::new(
                    409,
                    format!(
                        "draining node {drained} would leave {} nodes, and every routing group \
                         keeps {REPLICAS_PER_GROUP} replicas on distinct nodes: add a node first",
                        targets.len()
                    ),
                ));
            }
            let (moves, transfers) =
                PoolAdmin::spread_over(node.clone(), targets, addresses).await?;
            let assignment = node
                .assignment()
                .await
                .map_err(|error| AdminError::new(503, error.to_string()))?;
            let left: Vec<_> = assignment
                .iter()
                .filter(|(_, voters)| voters.contains(&drained))
                .map(|(group, _)| *group)
                .collect();
            if !left.is_empty() {
                return Err(AdminError::new(
                    500,
                    format!("node {drained} still holds replicas of groups {left:?}; run the drain again"),
                ));
            }
            Ok(serde_json::json!({
                "drained": drained,
                "replica_moves": moves,
                "leader_transfers": transfers,
            }))
        })
    }

    fn rebalance(&self) -> AdminFuture {
        let node = self.node.clone();
        let members = self.members();
        Box::pin(async move {
            let (nodes, addresses) = members?;
            let (moves, transfers) = PoolAdmin::spread_over(node, nodes.clone(), addresses).await?;
            Ok(serde_json::json!({
                "nodes": nodes,
                "replica_moves": moves,
                "leader_transfers": transfers,
            }))
        })
    }

    fn hand_over(&self, from: NodeId) -> AdminFuture {
        let node = self.node.clone();
        let members = self.members();
        Box::pin(async move {
            let (nodes, _) = members?;
            if !nodes.contains(&from) {
                return Err(AdminError::new(
                    404,
                    format!("node {from} is not in this pool's topology"),
                ));
            }
            // Transfers complete asynchronously: ask again until the node leads nothing.
            let mut transfers = 0;
            let mut last = String::new();
            for _ in 1..=ADMIN_ATTEMPTS {
                match node.hand_over_leaderships(from).await {
                    Ok((0, _)) => {
                        return Ok(serde_json::json!({
                            "node": from,
                            "leader_transfers": transfers,
                        }));
                    }
                    Ok((led, asked)) => {
                        transfers += asked;
                        last = format!("node {from} still leads {led} groups");
                    }
                    Err(error) => last = error.to_string(),
                }
                tokio::time::sleep(ADMIN_RETRY_PAUSE).await;
            }
            Err(AdminError::new(
                503,
                format!("gave up after {ADMIN_ATTEMPTS} attempts: {last}"),
            ))
        })
    }

    fn fail_over(&self, pool: PoolId, disaster: bool) -> AdminFuture {
        let node = self.node.clone();
        Box::pin(async move { operation_answer(node.fail_over(pool, disaster).await) })
    }

    fn fail_back(&self, pool: PoolId) -> AdminFuture {
        let node = self.node.clone();
        Box::pin(async move { operation_answer(node.fail_back(pool).await) })
    }

    fn fail_over_cms(&self) -> AdminFuture {
        let node = self.node.clone();
        Box::pin(async move { operation_answer(node.fail_over_cms().await) })
    }

    fn fail_back_cms(&self) -> AdminFuture {
        let node = self.node.clone();
        Box::pin(async move { operation_answer(node.fail_back_cms().await) })
    }
}

/// A failover, failback or CMS failover as the admin route answers it: its report, `409` when
/// refused (nothing changed), `500` when it stopped halfway (the message says where).
fn operation_answer(
    result: Result<OperationReport, OperationError>,
) -> Result<serde_json::Value, AdminError> {
    match result {
        Ok(report) => serde_json::to_value(report)
            .map_err(|error| AdminError::new(500, format!("report: {error}"))),
        Err(OperationError::Refused(why)) => Err(AdminError::new(
            409,
            format!("refused, nothing changed: {why}"),
        )),
        Err(OperationError::Failed(why)) => Err(AdminError::new(500, why)),
    }
}
