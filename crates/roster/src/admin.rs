//! Pool administration: draining a node and rebalancing the pool, served by every pool node
//! on its HTTP port behind a bearer token, and the `roster node drain` / `roster pool
//! rebalance` commands that call it.
//!
//! A drain moves every replica off a node (learner → catch up → joint change → the node
//! closes its copy), then rebalances leaders over the nodes left; afterwards the node can be
//! stopped and removed from the topology: Lync's `Invoke-CsComputerFailOver`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use roster_net::{Network as _, QuicNetwork};
use roster_pool::placement::REPLICAS_PER_GROUP;
use roster_pool::{PoolNode, Topology};
use roster_topology::NodeId;
use sha2::{Digest as _, Sha256};

/// Shortest admin token accepted, in characters.
pub const ADMIN_TOKEN_LEN_MIN: usize = 32;

/// How long the CLI waits for a drain or rebalance: every group may move one replica, each
/// move waits for the new replica to catch up.
pub const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Attempts of a drain or rebalance whose groups are briefly unavailable.
const ADMIN_ATTEMPTS: u32 = 10;

/// Pause between attempts.
const ADMIN_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Largest answer the CLI reads.
const ANSWER_SIZE_MAX: u64 = 1024 * 1024;

/// A failed admin operation: the HTTP status to answer with and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    /// HTTP status code.
    pub status: u16,
    /// What went wrong, for the operator.
    pub message: String,
}

impl AdminError {
    fn new(status: u16, message: impl Into<String>) -> AdminError {
        AdminError {
            status,
            message: message.into(),
        }
    }
}

/// The answer of an admin operation, as JSON.
pub type AdminFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, AdminError>> + Send>>;

/// Pool operations the HTTP endpoint can run.
pub trait Admin: Send + Sync + 'static {
    /// Moves every replica off `node`, then balances leaders over the others.
    fn drain(&self, node: NodeId) -> AdminFuture;
    /// Spreads replicas and leaders over every node of the topology.
    fn rebalance(&self) -> AdminFuture;
}

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
        let topology = crate::pool::read_topology(&self.topology)
            .map_err(|error| AdminError::new(500, format!("{error:#}")))?;
        let addresses: BTreeMap<NodeId, String> = topology
            .node
            .iter()
            .map(|n| (n.id, n.cluster.to_string()))
            .collect();
        for (&id, address) in &addresses {
            self.network.learn_address(id, address);
        }
        Ok((topology.node_ids(), addresses))
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
}

/// Whether `presented` (an `Authorization` header's value) carries `token`. Compares digests,
/// so the time taken says nothing about how much of the token matched.
pub fn authorized(token: &str, presented: Option<&str>) -> bool {
    let Some(bearer) = presented.and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    Sha256::digest(bearer.trim().as_bytes()) == Sha256::digest(token.as_bytes())
}

/// Reads an admin token file: one line of at least [`ADMIN_TOKEN_LEN_MIN`] characters.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        anyhow::anyhow!("cannot read admin token file {}: {error}", path.display())
    })?;
    let token = text.trim().to_string();
    anyhow::ensure!(
        token.len() >= ADMIN_TOKEN_LEN_MIN && !token.contains(char::is_whitespace),
        "admin token file {} must hold one token of at least {ADMIN_TOKEN_LEN_MIN} characters",
        path.display()
    );
    Ok(token)
}

/// Runs `POST path` on the first node of `topology` (other than `avoid`) that answers, and
/// returns its JSON answer. Used by `roster node drain` and `roster pool rebalance`.
pub async fn call(
    topology: &Topology,
    avoid: Option<NodeId>,
    path: &str,
    token: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut failures = Vec::new();
    for node in topology.node.iter().filter(|n| Some(n.id) != avoid) {
        let Some(http) = node.http else {
            failures.push(format!("node {}: no http address in the topology", node.id));
            continue;
        };
        match post(http, path, token).await {
            Ok((200, body)) => {
                return serde_json::from_str(&body)
                    .map_err(|error| anyhow::anyhow!("node {} answered badly: {error}", node.id));
            }
            // The node answered: its verdict stands (trying another would repeat it).
            Ok((status, body)) => {
                anyhow::bail!("node {} refused ({status}): {}", node.id, body.trim())
            }
            Err(error) => failures.push(format!("node {} ({http}): {error}", node.id)),
        }
    }
    anyhow::bail!("no node could be asked: {}", failures.join("; "))
}

async fn post(address: SocketAddr, path: &str, token: &str) -> Result<(u16, String), String> {
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    crate::cli_http::exchange(address, &request, ANSWER_SIZE_MAX, ADMIN_CALL_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match() {
        let token = "t".repeat(40);
        assert!(authorized(&token, Some(&format!("Bearer {token}"))));
        assert!(!authorized(&token, Some(&format!("Bearer {token}x"))));
        assert!(!authorized(&token, Some(&token)));
        assert!(!authorized(&token, None));
    }
}
