//! The QUIC transport: [`QuicNetwork`] (the client side, a [`Network`]) and [`QuicServer`] (made
//! by [`bind`], dispatching each incoming stream to a [`Handler`]), one quinn endpoint per node.
//!
//! **Connections**: one per pair of nodes, whoever dialled it, reused by all requests in both
//! directions. A node dials a peer on the first request to it, and keeps the connection alive
//! with keep-alives; when it drops, the next request redials, waiting out a capped exponential
//! back-off after failed dials ([`QuicConfig::reconnect_backoff_min`] to
//! [`QuicConfig::reconnect_backoff_max`]). Two nodes that dial each other at the same moment may
//! end up with two connections; both work. A node that crashes and restarts with the same key
//! resets its peers' stale connections at once (QUIC stateless reset, keyed from the node key),
//! so they redial without waiting for [`QuicConfig::idle_timeout`].
//!
//! **Authentication**: mutual TLS 1.3 with the cluster CA as the only root. A client checks that
//! the server's certificate chains to the CA and names the node it dialled, in the pool its
//! [`AddressBook`] gives (`node-<node>.pool-<pool>.roster.invalid`, see [`crate::pki`]); a
//! server requires a client certificate chaining to the CA and reads the client's [`Peer`] from
//! it. A certificate from another CA is refused in the handshake, before any stream is opened.
//!
//! **Trust**: one CA per deployment signs the nodes of every pool, so a valid certificate is not
//! enough: a node talks to the nodes of its own pool and of its partner pool
//! ([`QuicConfig::partner`]) only. A client refuses to dial a node that its address book puts
//! in any other pool ([`NetError::Untrusted`], nothing sent). A server closes a connection from
//! any other pool right after the handshake, before accepting a stream, with a close code of its
//! own, and the client's request fails with [`NetError::Untrusted`]. In neither direction does a
//! request of an untrusted pool reach a [`Handler`].
//!
//! **Wire format**: one bidirectional stream per RPC. The client writes the request body with a
//! 4-byte big-endian length prefix and finishes the stream; the server answers the same way, or
//! resets the stream with an error code ([`StreamCode`]). Both sides check the prefix against
//! [`MESSAGE_SIZE_MAX`] before allocating.
//!
//! **Limits**: at most [`QuicConfig::streams_per_connection_max`] concurrent RPCs per connection,
//! [`QuicConfig::handlers_in_flight_max`] handlers and
//! [`QuicConfig::request_bytes_in_flight_max`] request bytes at once per node, and
//! [`QuicConfig::connections_max`] accepted connections.
//!
//! **Shutdown**: cancelling the token given to [`bind`] (or [`QuicServer::shutdown`]) stops
//! accepting connections and streams, lets in-flight handlers finish for up to
//! [`QuicConfig::drain_timeout`], then closes the endpoint and releases the UDP port.

mod config;
mod server;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{AddressBook, QuicConfig};

use crate::pki::node_server_name;
use roster_topology::NodeId;

use crate::peer::Trust;
use crate::{check_size, ErasedHandler, Handler, NetError, Network, Peer, MESSAGE_SIZE_MAX};

/// The error codes a server resets a stream with, as the peer sees them in
/// [`NetError::Remote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StreamCode {
    /// The request's length prefix exceeds [`MESSAGE_SIZE_MAX`].
    RequestTooLarge = 1,
    /// The handler's response exceeds [`MESSAGE_SIZE_MAX`].
    ResponseTooLarge = 2,
    /// The handler panicked.
    HandlerFailed = 3,
    /// The request was not a length-prefixed body followed by the end of the stream.
    Malformed = 4,
    /// The whole request did not arrive within [`QuicConfig::request_read_timeout`], counting
    /// the wait for a free handler.
    Overloaded = 5,
}

impl StreamCode {
    fn describe(code: quinn::VarInt) -> String {
        let name = match code.into_inner() {
            1 => "request too large",
            2 => "response too large",
            3 => "handler failed",
            4 => "malformed request",
            5 => "request not received in time (overloaded or slow)",
            _ => "unknown error",
        };
        format!("{name} (stream code {code})")
    }

    fn var_int(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self as u32)
    }
}

/// Connection close codes.
const CLOSE_SHUTDOWN: u32 = 0;
const CLOSE_UNAUTHENTICATED: u32 = 1;
/// The address book gave the peer another address or identity than the connection's.
const CLOSE_ADDRESS_CHANGED: u32 = 2;
/// The peer's certificate is valid, but of a pool that is neither this node's nor its partner.
const CLOSE_UNTRUSTED_POOL: u32 = 3;

/// Longest wait, at shutdown, for peers to acknowledge the endpoint's close. Closing takes three
/// probe timeouts, a few round trips: milliseconds inside a data centre.
const CLOSE_WAIT_MAX: Duration = Duration::from_secs(1);

/// Binds a QUIC endpoint on `config.listen_addr` that serves requests with `handler` and sends
/// requests through [`QuicServer::network`]. Must be called from inside a Tokio runtime.
///
/// Cancelling `shutdown` (or a parent of it) shuts the node's network down.
pub fn bind<H: Handler>(
    config: QuicConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<QuicServer, NetError> {
    config.validate()?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(NetError::Config(
            "bind must be called inside a Tokio runtime".into(),
        ));
    }
    let tls = tls::build(&config)?;
    let bind_error =
        |error: std::io::Error| NetError::Io(format!("bind {}: {error}", config.listen_addr));
    let socket = std::net::UdpSocket::bind(config.listen_addr).map_err(bind_error)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    let endpoint = quinn::Endpoint::new(tls.endpoint, Some(tls.server), socket, runtime)
        .map_err(bind_error)?;
    let local_addr = endpoint
        .local_addr()
        .map_err(|error| NetError::Io(error.to_string()))?;
    let shared = Arc::new(Shared {
        identity: config.identity,
        trust: match config.witnessed {
            Some(pools) => Trust::witness(pools),
            None => Trust::new(config.identity.pool, config.partner),
        },
        client_config: tls.client,
        endpoint: Mutex::new(Some(endpoint.clone())),
        peers: config.peers.clone(),
        slots: Mutex::new(HashMap::new()),
        handler: ErasedHandler::new(handler),
        shutdown: shutdown.child_token(),
        tracker: TaskTracker::new(),
        handler_permits: Arc::new(Semaphore::new(config.handlers_in_flight_max)),
        request_byte_permits: Arc::new(Semaphore::new(config.request_bytes_in_flight_max)),
        connection_permits: Arc::new(Semaphore::new(config.connections_max)),
        config,
    });
    shared
        .tracker
        .spawn(server::accept_loop(Arc::clone(&shared), endpoint));
    let closed = tokio::spawn(server::close_when_cancelled(Arc::clone(&shared)));
    tracing::info!(identity = %shared.identity, %local_addr, "roster-net listening");
    Ok(QuicServer {
        network: QuicNetwork { shared },
        local_addr,
        closed: Some(closed),
    })
}

/// A node's bound QUIC endpoint: serves requests from peers and hands out [`QuicNetwork`]s.
///
/// Dropping it shuts the node's network down, like [`QuicServer::shutdown`] without the wait.
pub struct QuicServer {
    network: QuicNetwork,
    local_addr: SocketAddr,
    closed: Option<tokio::task::JoinHandle<()>>,
}

impl QuicServer {
    /// The address the endpoint is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.network.shared.identity.node
    }

    /// This node's pool and id, as its certificate names them.
    pub fn identity(&self) -> Peer {
        self.network.shared.identity
    }

    /// The client side of this node, sharing its endpoint and connections.
    pub fn network(&self) -> QuicNetwork {
        self.network.clone()
    }

    /// Shuts down: stops accepting, lets in-flight handlers finish for up to
    /// [`QuicConfig::drain_timeout`], closes every connection and releases the UDP port.
    pub async fn shutdown(mut self) {
        self.network.shared.shutdown.cancel();
        if let Some(closed) = self.closed.take() {
            if let Err(error) = closed.await {
                tracing::warn!("roster-net shutdown task failed: {error}");
            }
        }
    }
}

impl Drop for QuicServer {
    fn drop(&mut self) {
        self.network.shared.shutdown.cancel();
    }
}

impl std::fmt::Debug for QuicServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("QuicServer")
            .field("identity", &self.identity())
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// The client side of a QUIC node: a [`Network`] sharing the node's endpoint and connections.
#[derive(Clone)]
pub struct QuicNetwork {
    shared: Arc<Shared>,
}

impl QuicNetwork {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.identity.node
    }

    /// This node's pool and id, as its certificate names them.
    pub fn identity(&self) -> Peer {
        self.shared.identity
    }

    /// The address book this node dials from; changes apply to the next connection.
    pub fn peers(&self) -> &AddressBook {
        &self.shared.peers
    }

    /// One request over an open or new connection, without the overall timeout.
    async fn exchange(
        &self,
        to: NodeId,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<u8>, NetError> {
        let connection = self.connection(to, deadline).await?;
        let (mut send, mut recv) = match connection.open_bi().await {
            Ok(stream) => stream,
            // Nothing was sent yet, so a connection found dead here is redialled once.
            Err(error) if self.shared.shutdown.is_cancelled() => {
                return Err(connection_error(to, error))
            }
            // A peer that refused us would refuse again: no redial.
            Err(error) if is_refusal(&error) => return Err(connection_error(to, error)),
            Err(error) => {
                tracing::debug!(to, "connection lost, redialling: {error}");
                let connection = self.connection(to, deadline).await?;
                connection
                    .open_bi()
                    .await
                    .map_err(|error| connection_error(to, error))?
            }
        };
        write_frame(&mut send, &body)
            .await
            .map_err(|error| write_error(to, error))?;
        // Only fails if the stream was reset, which the read below reports.
        let _ = send.finish();
        let size = match read_length(&mut recv).await {
            Ok(size) => size,
            Err(error) => {
                if let FrameError::TooLarge(_) = error {
                    let _ = recv.stop(StreamCode::ResponseTooLarge.var_int());
                }
                return Err(error.into_net_error(to));
            }
        };
        let mut response = vec![0; size];
        recv.read_exact(&mut response)
            .await
            .map_err(|error| FrameError::Read(error).into_net_error(to))?;
        Ok(response)
    }

    /// The connection to `to`: the cached one if alive, else a new one.
    async fn connection(
        &self,
        to: NodeId,
        deadline: Instant,
    ) -> Result<quinn::Connection, NetError> {
        let slot = self.shared.slot(to);
        // An async lock: at most one dial per peer, and requests queue behind it.
        let mut state = slot.state.lock().await;
        let (peer, address) = self.shared.peers.get(to).ok_or(NetError::UnknownPeer(to))?;
        // Refused before anything is sent: this node never dials a pool it does not trust.
        if !self.shared.trust.allows(peer.pool) {
            return Err(NetError::Untrusted {
                to,
                reason: self.shared.trust.refusal(peer),
            });
        }
        if let Some(connection) = state.usable(peer, address) {
            return Ok(connection);
        }
        if let Some(retry_at) = state.retry_at {
            if retry_at > deadline {
                return Err(NetError::Unreachable {
                    to,
                    reason: format!("backing off after {} failed dials", state.dial_failures),
                });
            }
            tokio::time::sleep_until(retry_at).await;
        }
        match self.dial(peer, address).await {
            Ok(connection) => {
                state.connected(connection.clone(), peer, Some(address));
                self.shared.tracker.spawn(server::serve_connection(
                    Arc::clone(&self.shared),
                    connection.clone(),
                    peer,
                ));
                Ok(connection)
            }
            Err(error) => {
                state.dial_failures = state.dial_failures.saturating_add(1);
                state.retry_at = Some(Instant::now() + self.shared.backoff(state.dial_failures));
                tracing::debug!(to, %address, failures = state.dial_failures, "dial failed: {error}");
                Err(error)
            }
        }
    }

    /// Dials `expected` at `address` and checks that the certificate it presents names it.
    async fn dial(
        &self,
        expected: Peer,
        address: SocketAddr,
    ) -> Result<quinn::Connection, NetError> {
        let to = expected.node;
        let endpoint = self.shared.endpoint()?;
        let connecting = endpoint
            .connect_with(
                self.shared.client_config.clone(),
                address,
                &node_server_name(expected),
            )
            .map_err(|error| match error {
                quinn::ConnectError::EndpointStopping => NetError::Closed,
                other => NetError::Unreachable {
                    to,
                    reason: other.to_string(),
                },
            })?;
        let connection = tokio::time::timeout(self.shared.config.connect_timeout, connecting)
            .await
            .map_err(|_| NetError::Unreachable {
                to,
                reason: format!("no handshake with {address} within the connect timeout"),
            })?
            .map_err(|error| connection_error(to, error))?;
        // The name check in the handshake already proved this; check the identity we act on too.
        let peer = tls::peer_identity(&connection)?;
        if peer != expected {
            connection.close(
                quinn::VarInt::from_u32(CLOSE_UNAUTHENTICATED),
                b"wrong node",
            );
            return Err(NetError::Tls(format!(
                "dialled {expected} at {address}, found {peer}"
            )));
        }
        tracing::debug!(to, %address, "connected");
        Ok(connection)
    }
}

impl Network for QuicNetwork {
    async fn request(
        &self,
        to: NodeId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, NetError> {
        check_size(body.len())?;
        if self.shared.shutdown.is_cancelled() {
            return Err(NetError::Closed);
        }
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.exchange(to, body, deadline)).await {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout { to }),
        }
    }

    fn learn_address(&self, node: NodeId, address: &str) {
        if self.shared.peers.get(node).is_some() {
            return;
        }
        // A Raft membership only names nodes of this node's own pool.
        let peer = Peer {
            pool: self.shared.identity.pool,
            node,
        };
        match address.parse::<SocketAddr>() {
            Ok(address) => {
                tracing::info!(%peer, %address, "learned a peer's address");
                self.shared.peers.insert(peer, address);
            }
            Err(error) => tracing::warn!(node, address, "unusable peer address: {error}"),
        }
    }
}

impl std::fmt::Debug for QuicNetwork {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("QuicNetwork")
            .field("identity", &self.shared.identity)
            .finish_non_exhaustive()
    }
}

/// What the server and the clients of one node share.
struct Shared {
    identity: Peer,
    /// The pools this node talks to: its own and its partner.
    trust: Trust,
    config: QuicConfig,
    client_config: quinn::ClientConfig,
    /// `None` once shut down, so that no handle keeps the UDP port bound.
    // A std lock: only taken to clone or take the handle, never across an `.await`.
    endpoint: Mutex<Option<quinn::Endpoint>>,
    peers: AddressBook,
    // A std lock: only taken to find or create a slot, never across an `.await`.
    slots: Mutex<HashMap<NodeId, Arc<PeerSlot>>>,
    handler: ErasedHandler,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handler_permits: Arc<Semaphore>,
    request_byte_permits: Arc<Semaphore>,
    connection_permits: Arc<Semaphore>,
}

impl Shared {
    fn endpoint(&self) -> Result<quinn::Endpoint, NetError> {
        self.endpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(NetError::Closed)
    }

    fn slot(&self, peer: NodeId) -> Arc<PeerSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(peer).or_default())
    }

    /// Makes an accepted connection the one used for requests to `peer`, unless one is open.
    async fn adopt(&self, peer: Peer, connection: &quinn::Connection) {
        let slot = self.slot(peer.node);
        let mut state = slot.state.lock().await;
        let open = state
            .connection
            .as_ref()
            .is_some_and(|current| current.close_reason().is_none());
        if !open {
            state.connected(connection.clone(), peer, None);
        }
    }

    /// The wait before the next dial after `failures` failed dials in a row.
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.config
            .reconnect_backoff_min
            .saturating_mul(1 << doublings)
            .min(self.config.reconnect_backoff_max)
    }
}

/// The connection to one peer and the state of redialling it.
#[derive(Default)]
struct PeerSlot {
    state: tokio::sync::Mutex<PeerState>,
}

#[derive(Default)]
struct PeerState {
    connection: Option<quinn::Connection>,
    /// The verified identity at the other end of `connection`.
    peer: Option<Peer>,
    /// The address we dialled, or `None` for a connection the peer dialled.
    dialled_to: Option<SocketAddr>,
    dial_failures: u32,
    retry_at: Option<Instant>,
}

impl PeerState {
    /// The cached connection if it is open and still goes to the peer's current identity and
    /// `address`.
    fn usable(&mut self, peer: Peer, address: SocketAddr) -> Option<quinn::Connection> {
        let connection = self.connection.as_ref()?;
        if connection.close_reason().is_some() {
            self.connection = None;
            return None;
        }
        let moved = self.dialled_to.is_some_and(|dialled| dialled != address);
        if moved || self.peer != Some(peer) {
            connection.close(
                quinn::VarInt::from_u32(CLOSE_ADDRESS_CHANGED),
                b"address or identity changed",
            );
            self.connection = None;
            return None;
        }
        Some(connection.clone())
    }

    fn connected(
        &mut self,
        connection: quinn::Connection,
        peer: Peer,
        dialled_to: Option<SocketAddr>,
    ) {
        self.connection = Some(connection);
        self.peer = Some(peer);
        self.dialled_to = dialled_to;
        self.dial_failures = 0;
        self.retry_at = None;
    }
}

/// Why a length-prefixed body could not be read.
enum FrameError {
    TooLarge(usize),
    Read(quinn::ReadExactError),
}

impl FrameError {
    fn into_net_error(self, to: NodeId) -> NetError {
        match self {
            FrameError::TooLarge(size) => NetError::TooLarge {
                size,
                max: MESSAGE_SIZE_MAX,
            },
            FrameError::Read(quinn::ReadExactError::FinishedEarly(_)) => {
                NetError::Remote("the stream ended inside a message".into())
            }
            FrameError::Read(quinn::ReadExactError::ReadError(error)) => match error {
                quinn::ReadError::Reset(code) => NetError::Remote(StreamCode::describe(code)),
                quinn::ReadError::ConnectionLost(error) => connection_error(to, error),
                other => NetError::Unreachable {
                    to,
                    reason: other.to_string(),
                },
            },
        }
    }
}

/// Reads a length prefix and checks it against [`MESSAGE_SIZE_MAX`]; nothing is allocated.
async fn read_length(recv: &mut quinn::RecvStream) -> Result<usize, FrameError> {
    let mut prefix = [0; 4];
    recv.read_exact(&mut prefix)
        .await
        .map_err(FrameError::Read)?;
    decode_length(prefix)
}

fn decode_length(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let size = u32::from_be_bytes(prefix) as usize;
    if size > MESSAGE_SIZE_MAX {
        return Err(FrameError::TooLarge(size));
    }
    Ok(size)
}

/// Writes `body` with its length prefix. The caller has checked it against
/// [`MESSAGE_SIZE_MAX`], which fits in the prefix.
async fn write_frame(send: &mut quinn::SendStream, body: &[u8]) -> Result<(), quinn::WriteError> {
    debug_assert!(body.len() <= MESSAGE_SIZE_MAX);
    let prefix = (body.len() as u32).to_be_bytes();
    send.write_all(&prefix).await?;
    send.write_all(body).await
}

fn write_error(to: NodeId, error: quinn::WriteError) -> NetError {
    match error {
        quinn::WriteError::Stopped(code) => NetError::Remote(StreamCode::describe(code)),
        quinn::WriteError::ConnectionLost(error) => connection_error(to, error),
        other => NetError::Unreachable {
            to,
            reason: other.to_string(),
        },
    }
}

/// Maps a connection failure, telling refused authentication apart from an unreachable peer.
fn connection_error(to: NodeId, error: quinn::ConnectionError) -> NetError {
    match error {
        quinn::ConnectionError::LocallyClosed => NetError::Closed,
        quinn::ConnectionError::TransportError(error) if is_tls_code(error.code) => {
            NetError::Tls(format!("handshake with node {to} failed: {error}"))
        }
        quinn::ConnectionError::ConnectionClosed(close) if is_tls_code(close.error_code) => {
            NetError::Tls(format!("node {to} refused the handshake: {close}"))
        }
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code.into_inner() == u64::from(CLOSE_UNAUTHENTICATED) =>
        {
            NetError::Tls(format!("node {to} refused our identity: {close}"))
        }
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code.into_inner() == u64::from(CLOSE_UNTRUSTED_POOL) =>
        {
            NetError::Untrusted {
                to,
                reason: format!("node {to} does not trust this node's pool ({close})"),
            }
        }
        other => NetError::Unreachable {
            to,
            reason: other.to_string(),
        },
    }
}

/// Whether `error` is the peer refusing this node (its certificate or its pool), which a
/// redial cannot change.
fn is_refusal(error: &quinn::ConnectionError) -> bool {
    match error {
        quinn::ConnectionError::TransportError(error) => is_tls_code(error.code),
        quinn::ConnectionError::ConnectionClosed(close) => is_tls_code(close.error_code),
        quinn::ConnectionError::ApplicationClosed(close) => {
            let code = close.error_code.into_inner();
            code == u64::from(CLOSE_UNAUTHENTICATED) || code == u64::from(CLOSE_UNTRUSTED_POOL)
        }
        _ => false,
    }
}

/// QUIC carries TLS alerts as transport error codes 0x100 to 0x1ff (RFC 9001, section 4.8).
fn is_tls_code(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

#[cfg(test)]
mod tests;
