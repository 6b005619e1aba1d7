//! How the operator's commands reach the deployment: one node's HTTP address (`--url`, so a
//! laptop needs no copy of the topology) or the topology file (`--topology`, every node's HTTP
//! address in it, the first that answers). Either way they start from the deployment's overview
//! (`/api/v1/deployment`), which names every node with its pool and HTTP address.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use roster::http::{LAYOUT_PATH, OVERVIEW_PATH};
use roster::http_client;
use roster::topology::read_topology;
use serde_json::Value;

/// How long a node may take to gather the overview (it asks every node within 1.5 s, and the
/// backup report within 2.5 s).
const OVERVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest overview read.
const OVERVIEW_SIZE_MAX: u64 = 16 * 1024 * 1024;

/// Where to reach the deployment: `--url` or `--topology`.
#[derive(clap::Args, Clone, Debug)]
pub struct Access {
    /// Any node's HTTP address (`http://10.0.1.1:8080`, or `10.0.1.1:8080`): the command learns
    /// every other node from it, so no topology file is needed.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "topology",
        required_unless_present = "topology"
    )]
    pub url: Option<String>,
    /// The deployment's topology: its nodes' HTTP addresses, asked in turn until one answers.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
}

/// How a command prints its answer.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Tables for people.
    #[default]
    Table,
    /// The JSON the node answered, for scripts.
    Json,
}

impl Access {
    /// The addresses to ask, in order.
    fn addresses(&self) -> anyhow::Result<Vec<SocketAddr>> {
        if let Some(url) = &self.url {
            return Ok(vec![parse_url(url)?]);
        }
        let Some(path) = &self.topology else {
            anyhow::bail!("give --url (a node's HTTP address) or --topology FILE");
        };
        let deployment = read_topology(path)?;
        let addresses: Vec<SocketAddr> = deployment.node.iter().filter_map(|n| n.http).collect();
        anyhow::ensure!(
            !addresses.is_empty(),
            "no node of {} has an http address: add `http = \"ADDR:PORT\"` to its [[node]]s, or \
             use --url",
            path.display()
        );
        Ok(addresses)
    }

    /// The overview from the first node that gives one.
    pub async fn overview(&self) -> anyhow::Result<Value> {
        self.first_answer(OVERVIEW_PATH).await
    }

    /// The layout (the overview's shape from one node alone, no node shown up) from the first
    /// node that gives one: for commands that only need to find a pool's nodes, at once
    /// whatever is down.
    pub async fn layout(&self) -> anyhow::Result<Value> {
        self.first_answer(LAYOUT_PATH).await
    }

    async fn first_answer(&self, path: &str) -> anyhow::Result<Value> {
        let mut failures = Vec::new();
        for address in self.addresses()? {
            match get_json(address, path).await {
                Ok(overview) => {
                    if let Some(error) = overview["error"].as_str() {
                        failures.push(format!("{address}: {error}"));
                        continue;
                    }
                    return Ok(overview);
                }
                Err(error) => failures.push(format!("{address}: {error}")),
            }
        }
        anyhow::bail!(
            "no node answered with the deployment's overview ({}): check the address and that \
             the node runs (systemctl status roster), or try another node's --url",
            failures.join("; ")
        )
    }
}

/// `GET path` on `address`, as JSON.
pub async fn get_json(address: SocketAddr, path: &str) -> Result<Value, String> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let (status, body) =
        http_client::exchange(address, &request, OVERVIEW_SIZE_MAX, OVERVIEW_TIMEOUT).await?;
    match status {
        200 => serde_json::from_str(&body).map_err(|error| format!("bad JSON: {error}")),
        404 if path == OVERVIEW_PATH || path == LAYOUT_PATH => {
            Err("no deployment overview there: not a pool node, or an older version".into())
        }
        _ => Err(format!("HTTP {status}: {}", body.trim())),
    }
}

/// `http://host:port[/]`, `host:port`: the socket address (a host name is resolved).
pub fn parse_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    anyhow::ensure!(
        !rest.starts_with("https://"),
        "--url {url:?}: the nodes' HTTP is plain http (keep it on a management network)"
    );
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .to_socket_addrs()
        .map_err(|error| {
            anyhow::anyhow!(
                "--url {url:?}: {error} (expected http://HOST:PORT, e.g. http://10.0.1.1:8080)"
            )
        })?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--url {url:?} names no address"))
}

/// Every node of the overview: (id, pool name, up, HTTP address).
pub fn nodes(overview: &Value) -> Vec<(u64, String, bool, Option<SocketAddr>)> {
    overview["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|pool| {
            let name = pool["name"].as_str().unwrap_or("").to_string();
            pool["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |node| {
                    (
                        node["id"].as_u64().unwrap_or(0),
                        name.clone(),
                        node["up"] == true,
                        node["http"].as_str().and_then(|a| a.parse().ok()),
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_with_or_without_a_scheme() {
        let expected: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for url in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "127.0.0.1:8080",
        ] {
            assert_eq!(parse_url(url).unwrap(), expected, "{url}");
        }
        assert!(parse_url("https://127.0.0.1:8080").is_err());
        let error = parse_url("http://127.0.0.1").unwrap_err().to_string();
        assert!(error.contains("expected http://HOST:PORT"), "{error}");
    }
}
