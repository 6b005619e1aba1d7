//! `roster node drain`, `roster node handover` and `roster pool rebalance`: find the pool's
//! nodes in the deployment's overview (from `--url` or `--topology`), ask one of them (never
//! the node being drained) to run the operation (`POST /admin/drain/{node}`, `POST
//! /admin/handover/{node}`, `POST /admin/rebalance` with the bearer token), and print what it
//! did: a sentence, or its JSON with `--format json`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use roster::admin_api::{self, AdminToken};
use roster::http_client;
use serde_json::Value;

use super::access::{self, Access, Format};
use super::args::NodeAdmin;
use super::runtime;

/// How long the command waits for a drain or rebalance: every group may move one replica,
/// each move waits for the new replica to catch up.
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Largest answer read.
const ANSWER_SIZE_MAX: u64 = 1024 * 1024;

/// `roster node drain`: drains the node through another node of its pool.
pub fn drain(on: &NodeAdmin) -> anyhow::Result<()> {
    let node = on.node;
    let answer = on_node(on, &admin_api::drain_path(node), false)?;
    match on.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Format::Table => println!(
            "node {node} drained: {} replica moves, {} leader transfers; it holds no replica \
             now: stop it, remove it from the topology and run roster init again (its id is \
             never reused)",
            answer["replica_moves"], answer["leader_transfers"]
        ),
    }
    Ok(())
}

/// `roster node handover`: hands the node's leaderships to the other nodes of its pool,
/// through any node of the pool (the node itself first: it is up when it is about to be
/// upgraded).
pub fn handover(on: &NodeAdmin) -> anyhow::Result<()> {
    let node = on.node;
    let answer = on_node(on, &admin_api::handover_path(node), true)?;
    match on.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Format::Table => println!(
            "node {node} leads no group now ({} leader transfers): it can be stopped",
            answer["leader_transfers"]
        ),
    }
    Ok(())
}

/// Runs `POST path` about `on.node` on a node of its pool (`on.node` itself first when
/// `ask_itself`, else never), and returns the answer.
fn on_node(on: &NodeAdmin, path: &str, ask_itself: bool) -> anyhow::Result<Value> {
    let token = AdminToken::read(&on.token_file)?;
    let node = on.node;
    runtime::block_on(async {
        let overview = on.access.overview().await?;
        let nodes = access::nodes(&overview);
        let Some((_, pool, _, http)) = nodes.iter().find(|(id, ..)| *id == node) else {
            let ids: Vec<String> = nodes.iter().map(|(id, ..)| id.to_string()).collect();
            anyhow::bail!(
                "node {node} is not in the topology (the deployment's nodes: {})",
                ids.join(", ")
            );
        };
        let mut asked = candidates(&nodes, pool, Some(node));
        if ask_itself {
            asked.insert(0, (node, *http));
        }
        call(&asked, path, &token).await
    })?
}

/// `roster pool rebalance`: rebalances pool `pool` (by name; default: the pool of the node
/// `--url` names, or the only pool) through any of its nodes.
pub fn rebalance(
    access: &Access,
    token_file: &Path,
    pool: Option<&str>,
    format: Format,
) -> anyhow::Result<()> {
    let token = AdminToken::read(token_file)?;
    let answer = runtime::block_on(async {
        let overview = access.overview().await?;
        let nodes = access::nodes(&overview);
        let pools: Vec<&str> = overview["pools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        let seen_by = overview["seen_by"].as_u64();
        let name = match pool {
            Some(name) if pools.contains(&name) => name.to_string(),
            Some(name) => anyhow::bail!(
                "no pool {name:?} in the deployment (pools: {})",
                pools.join(", ")
            ),
            None if pools.len() == 1 => pools[0].to_string(),
            None if access.url.is_some() => nodes
                .iter()
                .find(|(id, ..)| Some(*id) == seen_by)
                .map(|(_, pool, ..)| pool.clone())
                .ok_or_else(|| anyhow::anyhow!("the node at --url is in no pool"))?,
            None => anyhow::bail!(
                "the deployment has several pools: name one with --pool ({})",
                pools.join(", ")
            ),
        };
        let asked = candidates(&nodes, &name, None);
        call(&asked, admin_api::REBALANCE_PATH, &token)
            .await
            .map(|answer| (name, answer))
    })??;
    let (name, answer) = answer;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Format::Table => println!(
            "pool {name} rebalanced over nodes {}: {} replica moves, {} leader transfers",
            answer["nodes"], answer["replica_moves"], answer["leader_transfers"]
        ),
    }
    Ok(())
}

/// The HTTP addresses of `pool`'s nodes other than `avoid`, those up first.
pub(super) fn candidates(
    nodes: &[(u64, String, bool, Option<SocketAddr>)],
    pool: &str,
    avoid: Option<u64>,
) -> Vec<(u64, Option<SocketAddr>)> {
    let mut asked: Vec<_> = nodes
        .iter()
        .filter(|(id, name, ..)| name == pool && Some(*id) != avoid)
        .collect();
    asked.sort_by_key(|(id, _, up, _)| (!*up, *id));
    asked
        .into_iter()
        .map(|(id, .., http)| (*id, *http))
        .collect()
}

/// Runs `POST path` on the first of `nodes` that answers, and returns its JSON answer.
pub(super) async fn call(
    nodes: &[(u64, Option<SocketAddr>)],
    path: &str,
    token: &AdminToken,
) -> anyhow::Result<Value> {
    let mut failures = Vec::new();
    for &(node, http) in nodes {
        let Some(http) = http else {
            failures.push(format!("node {node}: no http address in the topology"));
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
                    .map_err(|error| anyhow::anyhow!("node {node} answered badly: {error}"));
            }
            // The node answered: its verdict stands (trying another would repeat it).
            Ok((status, body)) => {
                anyhow::bail!("node {node} refused ({status}): {}", body.trim())
            }
            Err(error) => failures.push(format!("node {node} ({http}): {error}")),
        }
    }
    anyhow::bail!("no node could be asked: {}", failures.join("; "))
}
