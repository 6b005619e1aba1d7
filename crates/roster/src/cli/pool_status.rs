//! `roster pool status`: asks every node of a pool for its HTTP status and prints one table.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use roster::topology::read_topology;
use roster_topology::Deployment;

use super::{http_client, runtime};

/// How long one node may take to answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest status document read from a node.
const STATUS_SIZE_MAX: usize = 4 * 1024 * 1024;

/// Prints the state of every pool `topology` describes.
pub fn print(topology: &Path) -> anyhow::Result<()> {
    let topology = read_topology(topology)?;
    print!("{}", runtime::block_on(pool_status(&topology))?);
    Ok(())
}

/// Every pool's state as text: nodes up or down, then one line per group and replica.
async fn pool_status(deployment: &Deployment) -> String {
    let mut text = String::new();
    for pool in &deployment.pool {
        let partner = deployment
            .partner(pool.id)
            .and_then(|partner| deployment.pool(partner))
            .map_or_else(|| "none".to_string(), |partner| partner.name.clone());
        let _ = writeln!(
            text,
            "pool {} (id {}, site {}, {} routing groups, partner {partner})",
            pool.name, pool.id, pool.site, pool.groups
        );
        let mut rows = Vec::new();
        for node in deployment.nodes_of(pool.id) {
            let Some(http) = node.http else {
                let _ = writeln!(text, "node {}: no http address in the topology", node.id);
                continue;
            };
            match fetch(http).await {
                Ok(status) => {
                    let _ = writeln!(text, "node {}: up ({http})", node.id);
                    for group in status["store"]["groups"].as_array().into_iter().flatten() {
                        rows.push((node.id, group.clone()));
                    }
                }
                Err(error) => {
                    let _ = writeln!(text, "node {}: DOWN ({http}: {error})", node.id);
                }
            }
        }
        rows.sort_by_key(|(node, group)| {
            let key = group["key"]
                .as_str()
                .and_then(|key| key.parse::<roster_raft::GroupKey>().ok());
            (key, *node)
        });
        let _ = writeln!(
            text,
            "{:<14} {:>4} {:<9} {:>6} {:>5} {:>9} {:>9} replicas",
            "group", "node", "state", "leader", "term", "committed", "applied"
        );
        for (node, group) in rows {
            let show = |key: &str| match &group[key] {
                serde_json::Value::Null => "-".to_string(),
                value => value.to_string().trim_matches('"').to_string(),
            };
            let _ = writeln!(
                text,
                "{:<14} {:>4} {:<9} {:>6} {:>5} {:>9} {:>9} {}",
                show("key"),
                node,
                show("state"),
                show("leader"),
                show("term"),
                show("committed"),
                show("applied"),
                show("voters")
            );
        }
        let _ = writeln!(text);
    }
    text
}

async fn fetch(address: SocketAddr) -> Result<serde_json::Value, String> {
    let request = format!("GET /status HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let (status, body) =
        http_client::exchange(address, &request, STATUS_SIZE_MAX as u64, STATUS_TIMEOUT).await?;
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("bad status document: {e}"))
}
