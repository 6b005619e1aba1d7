//! Watching the nodes from outside: a minimal HTTP/1.0 client ([`http_get`]) and the status
//! sampler ([`sample_node`]), which reads a node's `/status` and `/health` every
//! [`SAMPLE_INTERVAL`] and feeds the Raft checker.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::check::raft::{parse_status, RaftChecker, StatusSample};
use crate::history::Deployment;

/// How often each node is asked. Elections take about a second; a few samples per election
/// catch overlapping leaders without loading the nodes.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// How long one HTTP exchange may take: a paused node never answers.
pub const HTTP_TIMEOUT: Duration = Duration::from_millis(800);

/// Largest HTTP answer read (a status document of 64 groups is a few KiB).
const HTTP_RESPONSE_SIZE_MAX: u64 = 4 * 1024 * 1024;

/// `GET path` over HTTP/1.0: (status code, body).
pub async fn http_get(
    address: SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
            .await?;
        let mut text = String::new();
        stream
            .take(HTTP_RESPONSE_SIZE_MAX)
            .read_to_string(&mut text)
            .await?;
        anyhow::Ok(text)
    };
    let text = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{address}{path}: no answer within {timeout:?}"))??;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// What the samplers share with the runner.
#[derive(Debug, Default)]
pub struct Observed {
    /// The Raft checker, fed by every sampler.
    pub raft: RaftChecker,
    /// Per node: how many times the runner has started it, minus one.
    pub incarnations: Vec<u64>,
}

/// Samples node `node` at `http` until `cancel`, feeding `observed`.
pub async fn sample_node(
    node: usize,
    http: SocketAddr,
    start: Instant,
    deployment: Deployment,
    observed: Arc<Mutex<Observed>>,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let at = start.elapsed();
        let Ok((200, body)) = http_get(http, "/status", HTTP_TIMEOUT).await else {
            continue;
        };
        let Some((epoch, groups)) = parse_status(&body) else {
            continue;
        };
        let healthy = match http_get(http, "/health", HTTP_TIMEOUT).await {
            Ok((status, _)) => Some(status == 200),
            Err(_) => None,
        };
        // A short section without `.await`; a poisoned lock means a panic elsewhere, which
        // ends the run anyway.
        let Ok(mut observed) = observed.lock() else {
            return;
        };
        let incarnation = observed.incarnations.get(node).copied().unwrap_or(0);
        let sample = StatusSample {
            at,
            node,
            incarnation,
            epoch,
            healthy,
            groups,
        };
        observed.raft.observe(&sample, &deployment);
    }
}
