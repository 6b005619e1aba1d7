//! `roster node drain` and `roster pool rebalance`: ask a node of the pool to run the
//! operation (`POST /admin/drain/{node}`, `POST /admin/rebalance` with the bearer token) and
//! print its JSON answer.

use std::path::Path;
use std::time::Duration;

use roster::admin_api::{self, AdminToken};
use roster::topology::read_topology;
use roster_topology::{Deployment, PoolId};

use super::http_client;
use super::runtime;

/// How long the command waits for a drain or rebalance: every group may move one replica,
/// each move waits for the new replica to catch up.
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Largest answer read.
const ANSWER_SIZE_MAX: u64 = 1024 * 1024;

/// `roster node drain`: drains `node` through another node of its pool.
pub fn drain(topology: &Path, token_file: &Path, node: u64) -> anyhow::Result<()> {
    let deployment = read_topology(topology)?;
    let pool = deployment
        .pool_of(node)
        .ok_or_else(|| anyhow::anyhow!("node {node} is not in the topology"))?;
    call_and_print(
        &deployment,
        pool,
        token_file,
        Some(node),
        &admin_api::drain_path(node),
    )
}

/// `roster pool rebalance`: rebalances pool `pool` (by name; may be left out when the
/// deployment has one pool) through any of its nodes.
pub fn rebalance(topology: &Path, token_file: &Path, pool: Option<&str>) -> anyhow::Result<()> {
    let deployment = read_topology(topology)?;
    let pool = pick_pool(&deployment, pool)?;
    call_and_print(
        &deployment,
        pool,
        token_file,
        None,
        admin_api::REBALANCE_PATH,
    )
}

/// The pool named `name`, or the only pool when no name is given.
pub fn pick_pool(deployment: &Deployment, name: Option<&str>) -> anyhow::Result<PoolId> {
    match name {
        Some(name) => deployment
            .pool_by_name(name)
            .map(|pool| pool.id)
            .ok_or_else(|| {
                let names: Vec<&str> = deployment
                    .pool
                    .iter()
                    .map(|pool| pool.name.as_str())
                    .collect();
                anyhow::anyhow!(
                    "no pool {name:?} in the topology (pools: {})",
                    names.join(", ")
                )
            }),
        None if deployment.pool.len() == 1 => Ok(deployment.pool[0].id),
        None => {
            let names: Vec<&str> = deployment
                .pool
                .iter()
                .map(|pool| pool.name.as_str())
                .collect();
            anyhow::bail!(
                "the deployment has several pools: name one with --pool ({})",
                names.join(", ")
            )
        }
    }
}

/// Runs `POST path` on a node of pool `pool` (not `avoid`) and prints its answer.
fn call_and_print(
    deployment: &Deployment,
    pool: PoolId,
    token_file: &Path,
    avoid: Option<u64>,
    path: &str,
) -> anyhow::Result<()> {
    let token = AdminToken::read(token_file)?;
    let answer = runtime::block_on(call(deployment, pool, avoid, path, &token))??;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// Runs `POST path` on the first node of pool `pool` (other than `avoid`) that answers, and
/// returns its JSON answer.
pub(super) async fn call(
    deployment: &Deployment,
    pool: PoolId,
    avoid: Option<u64>,
    path: &str,
    token: &AdminToken,
) -> anyhow::Result<serde_json::Value> {
    let mut failures = Vec::new();
    for node in deployment
        .nodes_of(pool)
        .into_iter()
        .filter(|n| Some(n.id) != avoid)
    {
        let Some(http) = node.http else {
            failures.push(format!("node {}: no http address in the topology", node.id));
            continue;
        };
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: {http}\r\nAuthorization: {}\r\n\
             Content-Length: 0\r\n\r\n",
            token.authorization()
        );
        match http_client::exchange(http, &request, ANSWER_SIZE_MAX, ADMIN_CALL_TIMEOUT).await {
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
