//! The server side of a QUIC node: accepts connections, authenticates peers, serves each
//! bidirectional stream as one RPC, and shuts the endpoint down when cancelled.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError};

use futures_util::FutureExt;

use tokio::sync::OwnedSemaphorePermit;

use super::{
    read_length, tls, write_frame, FrameError, Shared, StreamCode, CLOSE_SHUTDOWN,
    CLOSE_UNAUTHENTICATED, CLOSE_UNTRUSTED_POOL, CLOSE_WAIT_MAX,
};
use crate::{Peer, MESSAGE_SIZE_MAX};

/// Accepts connections until shutdown, refusing those beyond
/// [`super::QuicConfig::connections_max`].
pub(super) async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    loop {
        let incoming = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else {
            break;
        };
        let Ok(permit) = Arc::clone(&shared.connection_permits).try_acquire_owned() else {
            tracing::warn!(remote = %incoming.remote_address(), "refusing connection: too many open");
            incoming.refuse();
            continue;
        };
        shared
            .tracker
            .spawn(accept_connection(Arc::clone(&shared), incoming, permit));
    }
}

/// Completes the handshake of one incoming connection, then serves it.
async fn accept_connection(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    permit: OwnedSemaphorePermit,
) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(error) => {
            tracing::debug!(%remote, "incoming connection failed: {error}");
            return;
        }
    };
    let connection = match tokio::time::timeout(shared.config.connect_timeout, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::warn!(%remote, "refused or failed handshake: {error}");
            return;
        }
        Err(_) => {
            tracing::warn!(%remote, "handshake timed out");
            return;
        }
    };
    // The certificate chains to the cluster CA (rustls checked); it must also name one node.
    let peer = match tls::peer_identity(&connection) {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(%remote, "refusing peer without a node identity: {error}");
            connection.close(
                quinn::VarInt::from_u32(CLOSE_UNAUTHENTICATED),
                b"certificate names no node",
            );
            return;
        }
    };
    // A valid certificate of a pool this node does not talk to: closed before any stream.
    if !shared.trust.allows(peer.pool) {
        tracing::warn!(%peer, %remote, "refusing connection: {}", shared.trust.refusal(peer));
        connection.close(
            quinn::VarInt::from_u32(CLOSE_UNTRUSTED_POOL),
            b"pool not trusted",
        );
        return;
    }
    tracing::debug!(%peer, %remote, "accepted connection");
    shared.adopt(peer, &connection).await;
    serve_connection(shared, connection, peer).await;
    drop(permit);
}

/// Serves every stream the peer opens on `connection`, until it closes or shutdown.
pub(super) async fn serve_connection(
    shared: Arc<Shared>,
    connection: quinn::Connection,
    peer: Peer,
) {
    loop {
        let stream = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            stream = connection.accept_bi() => stream,
        };
        match stream {
            Ok((send, recv)) => {
                shared
                    .tracker
                    .spawn(serve_stream(Arc::clone(&shared), peer, send, recv));
            }
            Err(error) => {
                tracing::debug!(%peer, "connection ended: {error}");
                break;
            }
        }
    }
}

/// The permits a request holds while its body is in memory and its handler runs.
struct RequestPermits {
    _handler: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// Serves one RPC: read the request, run the handler (a panic fails this RPC only), write the
/// response.
async fn serve_stream(
    shared: Arc<Shared>,
    peer: Peer,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let read_timeout = shared.config.request_read_timeout;
    let received = tokio::time::timeout(read_timeout, receive_request(&shared, &mut recv)).await;
    let (body, permits) = match received {
        Ok(Ok(request)) => request,
        Ok(Err(Unread::Refused(code))) => return refuse(peer, &mut send, &mut recv, code),
        Ok(Err(Unread::Abandoned(reason))) => {
            // Nobody waits for an answer, and the receive side is closed already: there is
            // nothing to stop or refuse (dropping the send side finishes it).
            tracing::debug!(%peer, "request abandoned by the peer: {reason}");
            return;
        }
        Err(_) => return refuse(peer, &mut send, &mut recv, StreamCode::Overloaded),
    };
    // A panic fails this request only. Caught in place rather than in a task of its own: a
    // spawned task per RPC cost a spawn and a wake-up on every message a loaded node receives.
    let handled = AssertUnwindSafe(shared.handler.handle(peer, body))
        .catch_unwind()
        .await;
    let response = match handled {
        Ok(response) => response,
        Err(payload) => {
            let reason = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            tracing::error!(%peer, "request handler failed: {reason}");
            let _ = send.reset(StreamCode::HandlerFailed.var_int());
            return;
        }
    };
    drop(permits);
    if response.len() > MESSAGE_SIZE_MAX {
        tracing::error!(%peer, size = response.len(), "response too large, dropped");
        let _ = send.reset(StreamCode::ResponseTooLarge.var_int());
        return;
    }
    if let Err(error) = write_frame(&mut send, &response).await {
        tracing::debug!(%peer, "response not sent: {error}");
        return;
    }
    let _ = send.finish();
    // Wait until the peer has the response, so that a shutdown right after does not cut it off.
    let _ = tokio::time::timeout(read_timeout, send.stopped()).await;
}

/// Why a request was not read.
enum Unread {
    /// The request breaks the protocol or a limit: the stream is refused with this code.
    Refused(StreamCode),
    /// The peer reset the stream (its call timed out) or the connection is gone: there is no
    /// one to refuse, and the stream's receive side is closed already.
    Abandoned(String),
}

/// Reads one request body, taking a handler permit and the body's bytes from the budget first.
///
/// Every read is an ordered one. quinn-proto 0.11.19 keeps duplicate copies of stream data
/// that arrived before it was read (a packet and its retransmission: common under delay and
/// jitter), drops them lazily on ordered reads, but hands them out again on the first
/// unordered read (`read_to_end`, `read_chunk(_, false)`): its switch to unordered mode
/// compacts the buffer from offset 0, not from what was read. The stream then counts more
/// bytes read than it received: `read_to_end` fails (a valid request refused as malformed),
/// and `RecvStream::stop` computes `end - bytes_read` below zero (`recv.rs:97`), which
/// panics a debug build inside quinn's connection mutex and takes the node down.
async fn receive_request(
    shared: &Shared,
    recv: &mut quinn::RecvStream,
) -> Result<(Vec<u8>, RequestPermits), Unread> {
    let size = read_length(recv).await.map_err(|error| match error {
        FrameError::TooLarge(_) => Unread::Refused(StreamCode::RequestTooLarge),
        FrameError::Read(error) => unread(error),
    })?;
    // The semaphores are never closed; an error would mean shutdown, reported as overload.
    let handler = Arc::clone(&shared.handler_permits)
        .acquire_owned()
        .await
        .map_err(|_| Unread::Refused(StreamCode::Overloaded))?;
    // `size` is at most MESSAGE_SIZE_MAX, which fits in u32 (checked at compile time).
    let size_permits =
        u32::try_from(size).map_err(|_| Unread::Refused(StreamCode::RequestTooLarge))?;
    let bytes = Arc::clone(&shared.request_byte_permits)
        .acquire_many_owned(size_permits)
        .await
        .map_err(|_| Unread::Refused(StreamCode::Overloaded))?;
    let mut body = vec![0; size];
    recv.read_exact(&mut body).await.map_err(unread)?;
    // The body must end the stream: an ordered read past it finds the end (see above for why
    // not `read_to_end`).
    let mut past_end = [0; 1];
    match recv.read(&mut past_end).await {
        Ok(None) => {}
        Ok(Some(_)) => return Err(Unread::Refused(StreamCode::Malformed)),
        Err(error) => return Err(unread(quinn::ReadExactError::ReadError(error))),
    }
    let permits = RequestPermits {
        _handler: handler,
        _bytes: bytes,
    };
    Ok((body, permits))
}

/// What a failed read of a request means for the stream.
fn unread(error: quinn::ReadExactError) -> Unread {
    match error {
        quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code)) => {
            Unread::Abandoned(format!("reset with code {code}"))
        }
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(error)) => {
            Unread::Abandoned(error.to_string())
        }
        // The stream ended inside the message, or a read this server never makes (0-RTT,
        // unordered).
        _ => Unread::Refused(StreamCode::Malformed),
    }
}

/// Refuses a stream whose request was not read: the peer stops sending and gets `code`.
/// Only for streams the peer has not reset (a reset stream is [`Unread::Abandoned`]).
fn refuse(
    peer: Peer,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    code: StreamCode,
) {
    tracing::warn!(%peer, ?code, "request refused");
    let _ = recv.stop(code.var_int());
    let _ = send.reset(code.var_int());
}

/// Waits for cancellation, drains in-flight requests, then closes the endpoint.
pub(super) async fn close_when_cancelled(shared: Arc<Shared>) {
    shared.shutdown.cancelled().await;
    shared.tracker.close();
    if tokio::time::timeout(shared.config.drain_timeout, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            identity = %shared.identity,
            "drain timed out; closing with requests in flight"
        );
    }
    let endpoint = shared
        .endpoint
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(endpoint) = endpoint {
        endpoint.close(quinn::VarInt::from_u32(CLOSE_SHUTDOWN), b"shutting down");
        let _ = tokio::time::timeout(CLOSE_WAIT_MAX, endpoint.wait_idle()).await;
    }
    shared
        .slots
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    tracing::info!(identity = %shared.identity, "roster-net shut down");
}
