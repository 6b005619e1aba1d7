//! A minimal HTTP/1.0 client for a node's HTTP port, used by the commands (`roster node
//! status`, `roster pool status`, drain, rebalance) and by a node gathering the deployment's
//! overview from the others: one request per connection, the answer read to its end within a
//! size limit and a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Sends `request` (the whole HTTP/1.0 request text) to `address` and returns the answer's
/// status code and body. At most `size_max` bytes are read, within `timeout`.
pub async fn exchange(
    address: SocketAddr,
    request: &str,
    size_max: u64,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
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
        .map_err(|_| "timed out".to_string())??;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no HTTP answer".to_string())?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "bad HTTP status line: {}",
                head.lines().next().unwrap_or("")
            )
        })?;
    Ok((status, body.to_string()))
}
