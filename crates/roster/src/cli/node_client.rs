//! The JSON client of a pool's nodes that `roster user` and `roster backup` share: which nodes
//! to ask (`--url`, or `--topology`'s nodes in a useful order), and one call with its
//! failover and retries.
//!
//! A node that cannot be connected to is skipped for the next (nothing was sent). A `503` is
//! retried after its `Retry-After`, a node that stops answering mid-call is left for the next;
//! both within [`CALL_DEADLINE`]. A write retried after either may have been applied by the
//! earlier attempt: the reply says so (`uncertain`), and the caller decides.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use roster::admin_api::users::ErrorAnswer;
use roster::admin_api::AdminToken;
use roster::topology::read_topology;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::args::NodeTarget;
use roster::http_client::{self, ExchangeError};

/// How long one call may keep retrying: a CMS election (seconds), or a node restart.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

/// How long one exchange may take: a CMS write through the partner pool (a WAN hop and a
/// commit) or a backup status gathered from both pools (2 s per node that does not answer)
/// fits well within it.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest pause a `Retry-After` may ask for.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Which nodes of a topology to try first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeOrder {
    /// The CMS's pool, then its partner (the only pools that hold the directory).
    Cms,
    /// Every pool, in the file's order.
    Any,
}

/// A node to ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    /// How messages name it (`node 3 (127.0.0.1:8080)`, `http://host:8080`).
    pub label: String,
    /// Its HTTP address.
    pub address: SocketAddr,
}

/// A call that did not succeed.
#[derive(Debug)]
pub enum CallError {
    /// A node answered with an error status; its verdict stands.
    Refused {
        /// The status.
        status: u16,
        /// What it said (the message alone when it did not answer JSON).
        answer: ErrorAnswer,
        /// Whether an earlier attempt of this call may have been applied.
        uncertain: bool,
        /// The node.
        node: String,
    },
    /// No node answered within the deadline.
    Unreachable(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused {
                status,
                answer,
                node,
                ..
            } => write!(f, "{node} refused ({status}): {}", answer.error),
            CallError::Unreachable(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for CallError {}

/// A successful call's answer.
#[derive(Debug)]
pub struct Reply<T> {
    /// The decoded answer.
    pub value: T,
    /// Whether the call was retried after an attempt whose outcome is unknown.
    pub uncertain: bool,
}

/// Calls nodes of a pool, sticking to the last that answered.
pub struct NodeClient {
    nodes: Vec<NodeAddress>,
    current: usize,
    token: Option<AdminToken>,
}

impl NodeClient {
    /// A client of the nodes `target` names, presenting `token` when given.
    pub fn new(
        target: &NodeTarget,
        order: NodeOrder,
        token: Option<AdminToken>,
    ) -> anyhow::Result<NodeClient> {
        Ok(NodeClient {
            nodes: nodes(target, order)?,
            current: 0,
            token,
        })
    }

    /// A client that presents the admin token read from `token_file`.
    pub fn admin(
        target: &NodeTarget,
        order: NodeOrder,
        token_file: Option<&Path>,
    ) -> anyhow::Result<NodeClient> {
        let token_file = token_file.context(
            "--token-file is needed: the admin token file roster init wrote (admin.token)",
        )?;
        NodeClient::new(target, order, Some(AdminToken::read(token_file)?))
    }

    /// The node the next call goes to first.
    pub fn node(&self) -> &str {
        &self.nodes[self.current].label
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(&mut self, path: &str) -> Result<Reply<T>, CallError> {
        self.call("GET", path, None).await
    }

    /// `POST path` with `body` as JSON, decoded.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: &B,
    ) -> Result<Reply<T>, CallError> {
        let body = serde_json::to_vec(body).map_err(|error| {
            CallError::Unreachable(format!("cannot encode the request: {error}"))
        })?;
        self.call("POST", path, Some(body)).await
    }

    async fn call<T: DeserializeOwned>(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply<T>, CallError> {
        let deadline = tokio::time::Instant::now() + CALL_DEADLINE;
        let mut uncertain = false;
        let mut failures: Vec<String> = Vec::new();
        let mut unreached = 0;
        let mut answered = false;
        loop {
            let node = self.nodes[self.current].clone();
            let request = self.request(method, path, &node, body.as_deref());
            let size_max = roster::admin_api::backup::BACKUP_ANSWER_SIZE_MAX
                .max(roster::admin_api::users::USERS_ANSWER_SIZE_MAX);
            let outcome =
                http_client::exchange_bytes(node.address, &request, size_max, EXCHANGE_TIMEOUT)
                    .await;
            let pause = match outcome {
                Ok((200, text)) => {
                    return serde_json::from_str(&text)
                        .map(|value| Reply { value, uncertain })
                        .map_err(|error| {
                            CallError::Unreachable(format!(
                                "{} answered what this command cannot read ({error}): is it \
                                 another version of roster?",
                                node.label
                            ))
                        })
                }
                Ok((status, text)) => {
                    answered = true;
                    let answer = serde_json::from_str::<ErrorAnswer>(&text).unwrap_or_else(|_| {
                        ErrorAnswer {
                            error: text.trim().to_string(),
                            ..ErrorAnswer::default()
                        }
                    });
                    if status != 503 {
                        return Err(CallError::Refused {
                            status,
                            answer,
                            uncertain,
                            node: node.label,
                        });
                    }
                    // The node may have passed the write on before it gave up on it.
                    uncertain |= body.is_some();
                    failures.push(format!("{}: {}", node.label, answer.error));
                    let seconds = answer.retry_after_s.unwrap_or(1);
                    Duration::from_secs(u64::from(seconds)).min(RETRY_PAUSE_MAX)
                }
                Err(ExchangeError::Connect(reason)) => {
                    failures.push(format!("{}: cannot connect: {reason}", node.label));
                    unreached += 1;
                    self.current = (self.current + 1) % self.nodes.len();
                    if unreached == self.nodes.len() && !answered {
                        // No node runs: waiting would not change that.
                        return Err(CallError::Unreachable(format!(
                            "no node could be reached: {}",
                            failures.join("; ")
                        )));
                    }
                    // Every node refused the connection in turn: pause before the next round.
                    if unreached % self.nodes.len() == 0 {
                        Duration::from_millis(500)
                    } else {
                        Duration::ZERO
                    }
                }
                Err(ExchangeError::Answer(reason)) => {
                    answered = true;
                    uncertain |= body.is_some();
                    failures.push(format!("{}: {reason}", node.label));
                    self.current = (self.current + 1) % self.nodes.len();
                    Duration::ZERO
                }
            };
            if tokio::time::Instant::now() + pause >= deadline {
                let last: Vec<String> = failures.iter().rev().take(4).rev().cloned().collect();
                return Err(CallError::Unreachable(format!(
                    "no node answered {method} {path} within {} s ({} attempts; last: {})",
                    CALL_DEADLINE.as_secs(),
                    failures.len(),
                    last.join("; ")
                )));
            }
            tokio::time::sleep(pause).await;
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        node: &NodeAddress,
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {}\r\n", node.address);
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: {}\r\n", token.authorization()));
        }
        let body = body.unwrap_or_default();
        if method == "POST" {
            head.push_str("Content-Type: application/json\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        request
    }
}

/// The nodes `target` names, in the order they are tried.
pub fn nodes(target: &NodeTarget, order: NodeOrder) -> anyhow::Result<Vec<NodeAddress>> {
    if !target.urls.is_empty() {
        return target
            .urls
            .iter()
            .map(|url| {
                Ok(NodeAddress {
                    label: url.clone(),
                    address: parse_url(url)?,
                })
            })
            .collect();
    }
    let Some(topology) = &target.topology else {
        anyhow::bail!("name a node to ask: --url http://HOST:PORT, or --topology FILE");
    };
    let deployment = read_topology(topology)?;
    let mut pools: Vec<roster_topology::PoolId> =
        deployment.pool.iter().map(|pool| pool.id).collect();
    if order == NodeOrder::Cms {
        let cms = deployment.cms_pool();
        pools = std::iter::once(cms)
            .chain(deployment.partner(cms))
            .collect();
    }
    let nodes: Vec<NodeAddress> = pools
        .into_iter()
        .flat_map(|pool| deployment.nodes_of(pool))
        .filter_map(|node| {
            node.http.map(|address| NodeAddress {
                label: format!("node {} ({address})", node.id),
                address,
            })
        })
        .collect();
    anyhow::ensure!(
        !nodes.is_empty(),
        "no node in {} has an http address{}",
        topology.display(),
        if order == NodeOrder::Cms {
            " (only the CMS's pool and its partner hold the directory)"
        } else {
            ""
        }
    );
    Ok(nodes)
}

/// `http://HOST:PORT[/]` as an address (a name is resolved, its first address used).
pub fn parse_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("--url {url:?}: expected http://HOST:PORT (a node's [http] listen address)")
    })?;
    let authority = rest.trim_end_matches('/');
    anyhow::ensure!(
        !authority.is_empty() && !authority.contains('/'),
        "--url {url:?}: expected http://HOST:PORT with no path"
    );
    authority
        .to_socket_addrs()
        .with_context(|| format!("--url {url:?}: cannot resolve {authority:?} (HOST:PORT)"))?
        .next()
        .with_context(|| format!("--url {url:?}: {authority:?} has no address"))
}

/// `text` percent-encoded for a query string (every byte but the unreserved ones).
pub fn query_value(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_host_and_port() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/").expect("valid"),
            "127.0.0.1:8080".parse().expect("address")
        );
        assert!(parse_url("https://127.0.0.1:8080").is_err());
        assert!(parse_url("127.0.0.1:8080").is_err());
        assert!(parse_url("http://127.0.0.1:8080/admin").is_err());
        assert!(parse_url("http://127.0.0.1").is_err());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_value("sip:al ice+x@example.com"),
            "sip%3Aal%20ice%2Bx%40example.com"
        );
    }

    #[test]
    fn without_a_node_the_error_says_how_to_name_one() {
        let error = nodes(&NodeTarget::default(), NodeOrder::Any).unwrap_err();
        assert!(error.to_string().contains("--url"), "{error}");
    }
}
