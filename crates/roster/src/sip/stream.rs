//! The TCP and TLS transports: a connection's bytes are framed into messages, each request is
//! handled in its own task, and responses go back on the same connection in any order
//! (RFC 3261 §18.2.2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster_registrar::Transport;
use roster_sip::{Frame, StreamFramer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::service::{stamp_top_via, Service};
use super::source_limit::SourceConnections;
use super::SIP_MESSAGE_SIZE_MAX;
use crate::store::Store;
use crate::telemetry;

/// Requests of one connection being handled at once; past it the connection is not read, so
/// TCP flow control pushes back on the client. One SIPp process multiplexes all its calls on
/// one connection, so this is sized like the UDP bound.
pub const STREAM_REQUESTS_IN_FLIGHT_MAX: usize = 4_096;

/// Responses queued for one connection's writer.
const WRITE_QUEUE_MAX: usize = 1_024;

/// A TLS handshake taking longer than this is abandoned.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Read buffer size: one typical burst of SIP messages.
const READ_CHUNK_SIZE: usize = 16 * 1024;

/// Settings shared by a listener's connections.
#[derive(Clone)]
pub struct StreamSettings {
    /// TCP or TLS.
    pub transport: Transport,
    /// Present for TLS.
    pub tls: Option<TlsAcceptor>,
    /// Limits open connections across all stream listeners.
    pub connections: Arc<Semaphore>,
    /// Idle connections are closed after this.
    pub idle_timeout: Duration,
    /// A begun message, and a new connection's first message, must be complete within this.
    pub message_timeout: Duration,
    /// Open connections per untrusted source, across all stream listeners.
    pub per_source: Arc<SourceConnections>,
}

/// Accepts connections on `listener` until `shutdown`.
pub async fn serve<S: Store>(
    listener: TcpListener,
    settings: StreamSettings,
    service: Arc<Service<S>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: wait a little rather than spin.
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = settings.per_source.open(peer.ip()) else {
            metrics::counter!(telemetry::SIP_SOURCE_LIMITED, "transport" => settings.transport.as_str())
                .increment(1);
            debug!(%peer, "per-source connection limit reached; closing new connection");
            continue;
        };
        let Ok(permit) = settings.connections.clone().try_acquire_owned() else {
            warn!(%peer, "connection limit reached; closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let settings = settings.clone();
        let service = service.clone();
        let shutdown = shutdown.clone();
        let connection_tracker = tracker.clone();
        tracker.spawn(async move {
            match settings.tls.clone() {
                None => {
                    run_connection(
                        stream,
                        peer,
                        &settings,
                        service,
                        shutdown,
                        connection_tracker,
                    )
                    .await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(tls)) => {
                            run_connection(
                                tls,
                                peer,
                                &settings,
                                service,
                                shutdown,
                                connection_tracker,
                            )
                            .await
                        }
                        Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
            drop(slot);
        });
    }
}

/// Binds a TCP listener at `address`.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

async fn run_connection<S, T>(
    stream: T,
    peer: SocketAddr,
    settings: &StreamSettings,
    service: Arc<Service<S>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) where
    S: Store,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let (queue, queued) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE_MAX);
    let writer_task = tracker.spawn(write_loop(writer, queued));
    let in_flight = Arc::new(Semaphore::new(STREAM_REQUESTS_IN_FLIGHT_MAX));
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    let mut chunk = vec![0u8; READ_CHUNK_SIZE];
    // When the message being received began (the connection's start for its first one):
    // it must be complete within the message timeout, or a peer holding half a message
    // would keep a connection for the whole idle timeout.
    let mut message_started = Some(tokio::time::Instant::now());
    'connection: loop {
        let wait = match message_started {
            Some(started) => settings
                .message_timeout
                .saturating_sub(started.elapsed())
                .min(settings.idle_timeout),
            None => settings.idle_timeout,
        };
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            read = tokio::time::timeout(wait, reader.read(&mut chunk)) => read,
        };
        let length = match read {
            Err(_) if message_started.is_some() => {
                metrics::counter!(telemetry::SIP_MESSAGE_TIMEOUTS).increment(1);
                debug!(%peer, "message not complete in time; connection closed");
                break;
            }
            Err(_) => {
                debug!(%peer, "idle connection closed");
                break;
            }
            Ok(Err(error)) => {
                debug!(%peer, %error, "read failed");
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(length)) => length,
        };
        if message_started.is_none() {
            message_started = Some(tokio::time::Instant::now());
        }
        if let Err(error) = framer.push(&chunk[..length]) {
            count_malformed();
            answer_framing_error(&service, &queue, framer.pending(), &error).await;
            debug!(%peer, %error, "closing connection: framing error");
            break;
        }
        loop {
            let frame = match framer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    // The stream has lost its message boundaries; nothing after can be trusted.
                    count_malformed();
                    answer_framing_error(&service, &queue, framer.pending(), &error).await;
                    debug!(%peer, %error, "closing connection: framing error");
                    break 'connection;
                }
            };
            if framer.buffered() == 0 {
                message_started = None;
            } else {
                message_started = Some(tokio::time::Instant::now());
            }
            let bytes = match frame {
                Frame::KeepAlivePing => {
                    // RFC 5626 §3.5.1: a CRLF pong answers a double-CRLF ping.
                    if queue.send(b"\r\n".to_vec()).await.is_err() {
                        break 'connection;
                    }
                    continue;
                }
                Frame::Message(bytes) => bytes,
            };
            let Some(mut request) = service.parse_request(&bytes, peer) else {
                if let Some(response) = service.answer_unparsable(&bytes) {
                    let mut encoded = Vec::with_capacity(512);
                    response.encode(&mut encoded);
                    if queue.send(encoded).await.is_err() {
                        break 'connection;
                    }
                }
                continue;
            };
            stamp_top_via(&mut request, peer);
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break 'connection;
            };
            let service = service.clone();
            let queue = queue.clone();
            let transport = settings.transport;
            tracker.spawn(async move {
                let response = service.handle_request(&request, transport, peer).await;
                drop(permit);
                if let Some(response) = response {
                    let mut bytes = Vec::with_capacity(512);
                    response.encode(&mut bytes);
                    let _ = queue.send(bytes).await;
                }
            });
        }
        if framer.pending().iter().all(|b| matches!(b, b'\r' | b'\n')) {
            // Only line breaks wait (a single-CRLF keep-alive): no message has begun.
            message_started = None;
        }
    }
    drop(queue);
    // The writer ends once every in-flight request has sent its answer and dropped its queue.
    let _ = writer_task.await;
}

async fn write_loop<W>(mut writer: W, mut queued: mpsc::Receiver<Vec<u8>>)
where
    W: AsyncWrite + Unpin,
{
    while let Some(bytes) = queued.recv().await {
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
        // Coalesce what is already queued before flushing.
        while let Ok(more) = queued.try_recv() {
            if writer.write_all(&more).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Answers the message a framing error stopped at, when it names where an answer goes: `513`
/// for one over the size limit, `400` otherwise. The connection closes after it.
async fn answer_framing_error<S: Store>(
    service: &Service<S>,
    queue: &mpsc::Sender<Vec<u8>>,
    pending: &[u8],
    error: &roster_sip::FrameError,
) {
    let status = match error {
        roster_sip::FrameError::TooLarge { .. } => 513,
        _ => 400,
    };
    if let Some(response) = service.answer_head(pending, status, &error.to_string()) {
        let mut encoded = Vec::with_capacity(512);
        response.encode(&mut encoded);
        let _ = queue.send(encoded).await;
    }
}

fn count_malformed() {
    metrics::counter!(telemetry::SIP_MALFORMED).increment(1);
}
