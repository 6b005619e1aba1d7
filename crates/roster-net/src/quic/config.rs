//! The configuration of a QUIC node ([`QuicConfig`]) and its run-time peer [`AddressBook`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::pki::NodeCertificate;
use roster_topology::{NodeId, PoolId};

use crate::{NetError, Peer, MESSAGE_SIZE_MAX};

/// Each peer node's identity (its pool) and where it listens, by node id, shared by all clones
/// and updatable at run time.
///
/// A client dials node `n` as the [`Peer`] its entry names, so the pool in the entry must be
/// the pool the node's certificate names, and one this node trusts. A change applies to the
/// next connection to that peer: a cached connection to an old address or identity is closed
/// and replaced on the next request.
#[derive(Clone, Debug, Default)]
pub struct AddressBook {
    // A std lock: every section is a map operation with no `.await`.
    entries: Arc<RwLock<HashMap<NodeId, (Peer, SocketAddr)>>>,
}

impl AddressBook {
    /// An empty address book.
    pub fn new() -> AddressBook {
        AddressBook::default()
    }

    /// Sets the identity and address of node `peer.node`, returning the previous ones.
    pub fn insert(&self, peer: Peer, address: SocketAddr) -> Option<(Peer, SocketAddr)> {
        self.write().insert(peer.node, (peer, address))
    }

    /// Forgets node `node`, returning its identity and address.
    pub fn remove(&self, node: NodeId) -> Option<(Peer, SocketAddr)> {
        self.write().remove(&node)
    }

    /// The identity and address of node `node`.
    pub fn get(&self, node: NodeId) -> Option<(Peer, SocketAddr)> {
        self.read().get(&node).copied()
    }

    /// A copy of all entries.
    pub fn snapshot(&self) -> HashMap<NodeId, (Peer, SocketAddr)> {
        self.read().clone()
    }

    // A poisoned lock only means a panic elsewhere while holding it; a map insert or remove
    // cannot leave the map half-changed, so the data is still good.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeId, (Peer, SocketAddr)>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NodeId, (Peer, SocketAddr)>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FromIterator<(Peer, SocketAddr)> for AddressBook {
    fn from_iter<I: IntoIterator<Item = (Peer, SocketAddr)>>(entries: I) -> AddressBook {
        let book = AddressBook::new();
        for (peer, address) in entries {
            book.insert(peer, address);
        }
        book
    }
}

/// The configuration of one QUIC node: identity, trust, peers and limits.
///
/// Build it with [`QuicConfig::new`], which sets every knob to its default, then change knobs as
/// needed; [`crate::quic::bind`] validates it with [`QuicConfig::validate`].
#[derive(Clone)]
pub struct QuicConfig {
    /// This node: its pool and id, which must be the identity `cert_pem` carries.
    pub identity: Peer,
    /// The one pool besides its own whose nodes this node talks to: its partner in a pair of
    /// pools. A connection with a node of any other pool is refused, dialling or accepting, and
    /// none of its requests reaches the handler. Default `None` (only the own pool); never the
    /// own pool.
    pub partner: Option<PoolId>,
    /// On a witness (an identity of pool [`roster_topology::WITNESS_POOL`]): the two pools it
    /// watches, the only ones it talks to (`partner` stays `None`). `None` on a pool's node,
    /// which talks to the witness besides its own pool and partner. Default `None`.
    pub witnessed: Option<[PoolId; 2]>,
    /// The UDP address to listen on; requests to peers leave from it too.
    pub listen_addr: SocketAddr,
    /// The cluster CA certificate in PEM: the only trust root, for servers and clients alike.
    pub ca_cert_pem: String,
    /// This node's certificate in PEM, issued by the cluster CA.
    pub cert_pem: String,
    /// This node's private key in PEM.
    pub key_pem: String,
    /// Where peers listen, and their pools.
    pub peers: AddressBook,
    /// How often an idle connection sends a keep-alive. Default 1 s; must be below
    /// `idle_timeout`.
    pub keep_alive_interval: Duration,
    /// How long a connection may hear nothing from its peer before it is considered dead.
    /// Default 10 s; at least 100 ms, at most 1 hour.
    pub idle_timeout: Duration,
    /// How long a handshake may take, dialling or accepting. Default 3 s; at least 10 ms.
    pub connect_timeout: Duration,
    /// How long a server waits for a whole request body once its stream opened. Default 10 s;
    /// at least 10 ms.
    pub request_read_timeout: Duration,
    /// How long shutdown waits for in-flight handlers before closing connections. Default 5 s.
    pub drain_timeout: Duration,
    /// Most concurrent RPC streams a peer may open on one connection; more wait for a free one.
    /// Default 4096 (forwarded writes filled 256 and blocked Raft appends behind them); 1 to 65 536.
    pub streams_per_connection_max: u32,
    /// Most requests handled at once across all connections; more wait. Default 8192; at least 1.
    pub handlers_in_flight_max: usize,
    /// Most request body bytes held at once across all connections, counted from the length
    /// prefix before allocating; more wait. Default 256 MiB; at least [`MESSAGE_SIZE_MAX`], so a
    /// maximal request always fits.
    pub request_bytes_in_flight_max: usize,
    /// Most accepted connections at once; further handshakes are refused. A node talks to at
    /// most 31 others (the rest of a pool of up to 16 and a partner pool of up to 16), one
    /// connection per pair, so the default of 64 leaves room for restarts.
    pub connections_max: usize,
    /// First wait before redialling a peer after a failed dial. Default 50 ms.
    pub reconnect_backoff_min: Duration,
    /// Longest wait before redialling, reached by doubling. Default 5 s; at least the minimum.
    pub reconnect_backoff_max: Duration,
}

impl QuicConfig {
    /// A configuration for the node that `certificate` names, with every knob at its default
    /// (no partner pool).
    pub fn new(
        listen_addr: SocketAddr,
        ca_cert_pem: impl Into<String>,
        certificate: &NodeCertificate,
        peers: AddressBook,
    ) -> QuicConfig {
        QuicConfig {
            identity: certificate.peer,
            partner: None,
            witnessed: None,
            listen_addr,
            ca_cert_pem: ca_cert_pem.into(),
            cert_pem: certificate.cert_pem.clone(),
            key_pem: certificate.key_pem.clone(),
            peers,
            keep_alive_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            request_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            streams_per_connection_max: 4096,
            handlers_in_flight_max: 8192,
            request_bytes_in_flight_max: 256 * 1024 * 1024,
            connections_max: 64,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(5),
        }
    }

    /// Checks every knob against its bounds (certificates are checked when TLS is built).
    pub fn validate(&self) -> Result<(), NetError> {
        let fail = |message: &str| Err(NetError::Config(message.to_owned()));
        if self.partner == Some(self.identity.pool) {
            return fail("partner must be another pool than the node's own");
        }
        let is_witness = self.identity.pool == roster_topology::WITNESS_POOL;
        if is_witness != self.witnessed.is_some() {
            return fail("witnessed names the watched pools on a witness, and only there");
        }
        if is_witness && self.partner.is_some() {
            return fail("a witness has no partner pool: witnessed names its pools");
        }
        if self.idle_timeout < Duration::from_millis(100)
            || self.idle_timeout > Duration::from_secs(3600)
        {
            return fail("idle_timeout must be 100 ms to 1 hour");
        }
        if self.keep_alive_interval.is_zero() || self.keep_alive_interval >= self.idle_timeout {
            return fail("keep_alive_interval must be above zero and below idle_timeout");
        }
        if self.connect_timeout < Duration::from_millis(10) {
            return fail("connect_timeout must be at least 10 ms");
        }
        if self.request_read_timeout < Duration::from_millis(10) {
            return fail("request_read_timeout must be at least 10 ms");
        }
        if self.streams_per_connection_max == 0 || self.streams_per_connection_max > 65_536 {
            return fail("streams_per_connection_max must be 1 to 65536");
        }
        if self.handlers_in_flight_max == 0 {
            return fail("handlers_in_flight_max must be at least 1");
        }
        if self.request_bytes_in_flight_max < MESSAGE_SIZE_MAX {
            return fail("request_bytes_in_flight_max must be at least MESSAGE_SIZE_MAX");
        }
        // The byte budget is a tokio semaphore, whose permits are bounded.
        if self.request_bytes_in_flight_max > tokio::sync::Semaphore::MAX_PERMITS {
            return fail("request_bytes_in_flight_max is too large");
        }
        if self.connections_max == 0 {
            return fail("connections_max must be at least 1");
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_max < self.reconnect_backoff_min
        {
            return fail(
                "reconnect_backoff_min must be above zero and at most reconnect_backoff_max",
            );
        }
        Ok(())
    }
}

impl std::fmt::Debug for QuicConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("QuicConfig")
            .field("identity", &self.identity)
            .field("partner", &self.partner)
            .field("witnessed", &self.witnessed)
            .field("listen_addr", &self.listen_addr)
            .field("peers", &self.peers)
            .field("key_pem", &"<secret>")
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_read_timeout", &self.request_read_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field(
                "streams_per_connection_max",
                &self.streams_per_connection_max,
            )
            .field("handlers_in_flight_max", &self.handlers_in_flight_max)
            .field(
                "request_bytes_in_flight_max",
                &self.request_bytes_in_flight_max,
            )
            .field("connections_max", &self.connections_max)
            .field("reconnect_backoff_min", &self.reconnect_backoff_min)
            .field("reconnect_backoff_max", &self.reconnect_backoff_max)
            .finish_non_exhaustive()
    }
}
