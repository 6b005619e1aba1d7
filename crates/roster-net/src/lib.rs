//! Request/response RPCs between the nodes of a Roster pool, and between the nodes of two paired
//! pools, authenticated and encrypted.
//!
//! Main types: the [`Network`] trait (the client side: send one request to a node, wait for its
//! response) and the [`Handler`] trait (the server side: what a node does with a request from an
//! authenticated peer), with two implementations:
//!
//! - [`quic`]: [`QuicNetwork`] and [`QuicServer`] over QUIC (quinn) with mutual TLS (rustls),
//!   one connection per pair of nodes and one bidirectional stream per request;
//! - [`sim`]: [`SimNetwork`] and [`SimEndpoint`], an in-process router with QUIC's trust rule
//!   and with faults (partitions between nodes or pools, isolation, drops, lost replies, delays)
//!   that are deterministic for a seed, for tests.
//!
//! [`Peer`] is a node's identity, its pool and its id, as its certificate proves it. [`pki`] makes
//! the deployment's own certificate authority and the node certificates that carry each node's
//! identity; the `roster cert` command calls it.
//!
//! Payloads are opaque bytes: callers encode their own messages (with bincode and a size limit on
//! every decode). This crate knows nothing of Raft or SIP.
//!
//! **Architecture Invariant**: only `roster-net` knows QUIC and rustls. No quinn or rustls type
//! appears in the public API; certificates and keys cross it as PEM text.
//!
//! **Architecture Invariant**: the `from` passed to [`Handler::handle`] is authenticated: it is
//! read from the peer's certificate after rustls has verified it against the cluster CA, and
//! names the peer's pool as well as its node id. It is always of the handler's own pool or of
//! its one partner pool: a node exchanges nothing with any other pool, in either direction.
//!
//! **Architecture Invariant**: no request or response body larger than [`MESSAGE_SIZE_MAX`] is
//! sent, and the length prefix of a received body is checked against it before any allocation.
//! Peer input never panics this crate.
#![deny(missing_docs)]

mod peer;
pub mod pki;
pub mod quic;
pub mod sim;

use roster_topology::NodeId;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use peer::Peer;
pub use quic::{bind, AddressBook, QuicConfig, QuicNetwork, QuicServer};
pub use sim::{SimEndpoint, SimNetwork, SimStats};

/// Largest request or response body in bytes, checked before allocating on receive.
///
/// 16 MiB. The largest messages are Raft snapshots of one routing group. A pool splits its users
/// into 32 groups by default, so a pool of 100 000 AORs puts about 3 000 in a group; at a few
/// bindings of a few hundred bytes each, a group's snapshot is a few megabytes, and 16 MiB leaves
/// several times that as headroom. A deployment with larger groups raises the group count or
/// sends snapshots in chunks. The limit also bounds what one peer can make a node allocate per
/// stream; the total is bounded by [`QuicConfig::request_bytes_in_flight_max`].
pub const MESSAGE_SIZE_MAX: usize = 16 * 1024 * 1024;

// The length prefix on the wire is a u32.
const _: () = assert!(MESSAGE_SIZE_MAX <= u32::MAX as usize);

/// Why a request failed.
///
/// After [`NetError::Timeout`], [`NetError::Unreachable`] or [`NetError::Remote`] the caller
/// cannot know whether the peer executed the request: the request may have arrived and only the
/// reply been lost. Callers that need exactly-once effects make their requests idempotent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The node could not be reached: no connection, the connection dropped, or the peer is down.
    #[error("node {to} is unreachable: {reason}")]
    Unreachable {
        /// The node the request was for.
        to: NodeId,
        /// What went wrong, for the log.
        reason: String,
    },
    /// No response arrived within the request's timeout.
    #[error("no response from node {to} within the timeout")]
    Timeout {
        /// The node the request was for.
        to: NodeId,
    },
    /// A body is larger than [`MESSAGE_SIZE_MAX`].
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The size of the body in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// This node's network is shut down.
    #[error("the network endpoint is shut down")]
    Closed,
    /// A certificate or key is invalid, or a peer failed authentication.
    #[error("TLS: {0}")]
    Tls(String),
    /// A local I/O error, such as a socket that cannot be bound.
    #[error("I/O: {0}")]
    Io(String),
    /// The node is not in the address book.
    #[error("node {0} is not in the address book")]
    UnknownPeer(NodeId),
    /// One of the two nodes does not trust the other's pool: the peer is of neither this node's
    /// pool nor its partner, or this node's pool is neither for the peer. Nothing reached a
    /// handler.
    #[error("no exchange with node {to}: {reason}")]
    Untrusted {
        /// The node the request was for.
        to: NodeId,
        /// Which side refused which pool.
        reason: String,
    },
    /// The peer received the request but could not answer it (too large, overloaded, failed).
    #[error("the peer could not answer: {0}")]
    Remote(String),
    /// A configuration value is out of its bounds.
    #[error("invalid network configuration: {0}")]
    Config(String),
}

/// The client side: send one request to a node and wait for its response.
///
/// Implementations are cheap to clone and share one connection per peer among all clones.
pub trait Network: Clone + Send + Sync + 'static {
    /// Sends `body` to node `to` and returns its response, or an error once `timeout` has passed.
    ///
    /// A body larger than [`MESSAGE_SIZE_MAX`] is refused with [`NetError::TooLarge`] before
    /// anything is sent.
    fn request(
        &self,
        to: NodeId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, NetError>> + Send;

    /// Learns that node `node` listens at `address` (from a Raft membership, which only ever
    /// names nodes of this node's own pool, so the node is taken to be of the own pool), unless
    /// its address is known already. Networks that route by id alone ignore it.
    fn learn_address(&self, node: NodeId, address: &str) {
        let _ = (node, address);
    }
}

/// The server side: what a node does with a request from an authenticated peer.
///
/// The returned future runs to completion in its own task even when the requester stops waiting,
/// so a handler never observes a half-done request. A panic in a handler fails that one request
/// (the peer sees [`NetError::Remote`]) and nothing else.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request `body` from the node `from` (its pool and id, read from its verified
    /// certificate). The response must not be larger than [`MESSAGE_SIZE_MAX`]; a larger one is
    /// dropped and the peer sees [`NetError::Remote`].
    fn handle(&self, from: Peer, body: Vec<u8>) -> impl Future<Output = Vec<u8>> + Send;
}

/// A response future with the handler's type erased.
type ResponseFuture = Pin<Box<dyn Future<Output = Vec<u8>> + Send + 'static>>;

/// A [`Handler`] behind a pointer of one type, so that the transports need no type parameter.
#[derive(Clone)]
pub(crate) struct ErasedHandler {
    call: Arc<dyn Fn(Peer, Vec<u8>) -> ResponseFuture + Send + Sync>,
}

impl ErasedHandler {
    pub(crate) fn new<H: Handler>(handler: Arc<H>) -> Self {
        let call = move |from: Peer, body: Vec<u8>| -> ResponseFuture {
            let handler = Arc::clone(&handler);
            Box::pin(async move { handler.handle(from, body).await })
        };
        ErasedHandler {
            call: Arc::new(call),
        }
    }

    pub(crate) fn handle(&self, from: Peer, body: Vec<u8>) -> ResponseFuture {
        (self.call)(from, body)
    }
}

/// Checks a body against [`MESSAGE_SIZE_MAX`].
pub(crate) fn check_size(size: usize) -> Result<(), NetError> {
    if size > MESSAGE_SIZE_MAX {
        return Err(NetError::TooLarge {
            size,
            max: MESSAGE_SIZE_MAX,
        });
    }
    Ok(())
}
