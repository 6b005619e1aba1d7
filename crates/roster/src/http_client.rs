//! A minimal HTTP/1.0 client for a node's HTTP port, used by the commands (`roster node
//! status`, `roster pool status`, drain, rebalance, failover, `roster user`, `roster backup`)
//! and by a node gathering the deployment's overview from the others: one request per
//! connection, the answer read to its end within a size limit and a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Why an exchange failed: before the request was sent (nothing reached the node), or after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The connection could not be made: the request was not sent.
    Connect(String),
    /// The request may have been sent, but no whole answer came back.
    Answer(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Connect(reason) => write!(f, "cannot connect: {reason}"),
            ExchangeError::Answer(reason) => write!(f, "{reason}"),
        }
    }
}

/// How long a connection may take to open: a node that does not accept within this is down
/// or cut off.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `request` (the whole HTTP/1.0 request text) to `address` and returns the answer's
/// status code and body. At most `size_max` bytes are read, within `timeout`.
pub async fn exchange(
    address: SocketAddr,
    request: &str,
    size_max: u64,
    timeout: Duration,
) -> Result<(u16, String), String> {
    exchange_bytes(address, request.as_bytes(), size_max, timeout)
        .await
        .map_err(|error| match error {
            ExchangeError::Connect(reason) | ExchangeError::Answer(reason) => reason,
        })
}

/// [`exchange`] of a request in bytes, saying whether a failure happened before the request
/// was sent.
pub async fn exchange_bytes(
    address: SocketAddr,
    request: &[u8],
    size_max: u64,
    timeout: Duration,
) -> Result<(u16, String), ExchangeError> {
    let connect = tokio::net::TcpStream::connect(address);
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT.min(timeout), connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(ExchangeError::Connect(error.to_string())),
        Err(_) => return Err(ExchangeError::Connect("timed out".into())),
    };
    let exchange = async {
        stream.write_all(request).await.map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        stream
            .take(size_max)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<Vec<u8>, String>(bytes)
    };
    let bytes = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ExchangeError::Answer("timed out".to_string()))?
        .map_err(ExchangeError::Answer)?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ExchangeError::Answer("no HTTP answer".to_string()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            ExchangeError::Answer(format!(
                "bad HTTP status line: {}",
                head.lines().next().unwrap_or("")
            ))
        })?;
    Ok((status, body.to_string()))
}
