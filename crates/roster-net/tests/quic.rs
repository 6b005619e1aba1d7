//! The QUIC transport through its public API, on 127.0.0.1 only: round trips, concurrency,
//! reconnection, refusal of strangers and impostors, size limits and shutdown.
//! Every wait is bounded by a request timeout or [`WAIT`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster_net::pki::{Ca, NodeCertificate};
use roster_net::{
    bind, AddressBook, Handler, NetError, Network, Peer, QuicConfig, QuicServer, MESSAGE_SIZE_MAX,
};
use roster_topology::{NodeId, PoolId};
use tokio_util::sync::CancellationToken;

/// The bound on any one wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

/// The pool of the nodes of most tests.
const POOL: PoolId = 1;

/// Node `node` of [`POOL`].
fn member(node: NodeId) -> Peer {
    Peer { pool: POOL, node }
}

/// Answers `echo:` and the body, and remembers who asked.
#[derive(Default)]
struct Echo {
    calls: AtomicUsize,
    callers: Mutex<Vec<Peer>>,
}

impl Echo {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Handler for Echo {
    async fn handle(&self, from: Peer, body: Vec<u8>) -> Vec<u8> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.callers.lock().unwrap().push(from);
        // A short pause makes concurrent requests overlap on the server.
        tokio::time::sleep(Duration::from_millis(1)).await;
        match body.as_slice() {
            b"panic" => panic!("the handler was asked to panic"),
            b"huge" => vec![0; MESSAGE_SIZE_MAX + 1],
            _ => [b"echo:".as_slice(), &body].concat(),
        }
    }
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(
    ca: &Ca,
    certificate: &NodeCertificate,
    listen: SocketAddr,
    peers: &AddressBook,
) -> QuicConfig {
    QuicConfig::new(listen, ca.cert_pem(), certificate, peers.clone())
}

/// Starts node `node_id` of [`POOL`] with a certificate from `ca` and enters it in `peers`.
fn start(ca: &Ca, node_id: NodeId, peers: &AddressBook, handler: Arc<Echo>) -> QuicServer {
    start_paired(ca, member(node_id), None, peers, handler)
}

/// Starts node `identity` with partner pool `partner` and enters it in `peers`.
fn start_paired(
    ca: &Ca,
    identity: Peer,
    partner: Option<PoolId>,
    peers: &AddressBook,
    handler: Arc<Echo>,
) -> QuicServer {
    let certificate = ca.issue_node(identity, ["127.0.0.1"]).unwrap();
    let mut config = config(ca, &certificate, localhost(), peers);
    config.partner = partner;
    let server = bind(config, handler, CancellationToken::new()).unwrap();
    peers.insert(identity, server.local_addr());
    server
}

#[tokio::test]
async fn round_trip_between_two_nodes() {
    let ca = Ca::generate("round trip").unwrap();
    let peers = AddressBook::new();
    let (echo_a, echo_b) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
    let a = start(&ca, 1, &peers, Arc::clone(&echo_a));
    let b = start(&ca, 2, &peers, Arc::clone(&echo_b));

    let response = a
        .network()
        .request(2, b"hello".to_vec(), WAIT)
        .await
        .unwrap();
    assert_eq!(response, b"echo:hello");
    let response = b.network().request(1, Vec::new(), WAIT).await.unwrap();
    assert_eq!(response, b"echo:");
    // `from` is the identity in the caller's certificate.
    assert_eq!(*echo_b.callers.lock().unwrap(), [member(1)]);
    assert_eq!(*echo_a.callers.lock().unwrap(), [member(2)]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_requests_on_one_connection() {
    let ca = Ca::generate("concurrency").unwrap();
    let peers = AddressBook::new();
    let echo = Arc::new(Echo::default());
    let a = start(&ca, 1, &peers, Arc::default());
    // Few streams per connection: the other requests must wait for one, not fail.
    let certificate = ca.issue_node(member(2), ["127.0.0.1"]).unwrap();
    let mut b_config = config(&ca, &certificate, localhost(), &peers);
    b_config.streams_per_connection_max = 8;
    b_config.handlers_in_flight_max = 4;
    let b = bind(b_config, Arc::clone(&echo), CancellationToken::new()).unwrap();
    peers.insert(member(2), b.local_addr());

    let network = a.network();
    let mut requests = tokio::task::JoinSet::new();
    for index in 0..300u32 {
        let network = network.clone();
        requests.spawn(async move {
            let body = index.to_be_bytes().to_vec();
            let response = network.request(2, body.clone(), WAIT).await.unwrap();
            assert_eq!(response, [b"echo:".as_slice(), &body].concat());
        });
    }
    while let Some(joined) = requests.join_next().await {
        joined.unwrap();
    }
    assert_eq!(echo.calls(), 300);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_the_peer_restarts() {
    let ca = Ca::generate("restart").unwrap();
    let peers = AddressBook::new();
    let a = start(&ca, 1, &peers, Arc::default());
    let b = start(&ca, 2, &peers, Arc::default());
    let network = a.network();
    assert_eq!(
        network.request(2, b"one".to_vec(), WAIT).await.unwrap(),
        b"echo:one"
    );

    let b_address = b.local_addr();
    b.shutdown().await;
    let short = Duration::from_millis(300);
    let error = network
        .request(2, b"down".to_vec(), short)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            NetError::Unreachable { to: 2, .. } | NetError::Timeout { to: 2 }
        ),
        "{error:?}"
    );

    // The same node comes back on the same address.
    let certificate = ca.issue_node(member(2), ["127.0.0.1"]).unwrap();
    let echo = Arc::new(Echo::default());
    let b = bind(
        config(&ca, &certificate, b_address, &peers),
        Arc::clone(&echo),
        CancellationToken::new(),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let response = loop {
        match network.request(2, b"two".to_vec(), short).await {
            Ok(response) => break response,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("no reconnection: {error}"),
        }
    };
    assert_eq!(response, b"echo:two");
    assert_eq!(echo.calls(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

/// A crash sends no close: the peer learns that its connection is gone from the stateless reset
/// the restarted node sends, well before the idle timeout would tell it.
#[tokio::test]
async fn reconnects_soon_after_the_peer_crashes_and_restarts() {
    let ca = Ca::generate("crash").unwrap();
    let peers = AddressBook::new();
    let a = start(&ca, 1, &peers, Arc::default());
    let certificate = ca.issue_node(member(2), ["127.0.0.1"]).unwrap();

    // Node 2 runs on its own runtime, so that it can die without closing anything.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let b = {
        let _context = runtime.enter();
        bind(
            config(&ca, &certificate, localhost(), &peers),
            Arc::new(Echo::default()),
            CancellationToken::new(),
        )
        .unwrap()
    };
    let b_address = b.local_addr();
    peers.insert(member(2), b_address);
    let network = a.network();
    assert_eq!(
        network.request(2, b"one".to_vec(), WAIT).await.unwrap(),
        b"echo:one"
    );
    runtime.shutdown_background();
    drop(b);

    // It comes back on the same address with the same key, once the port is free.
    let echo = Arc::new(Echo::default());
    let deadline = tokio::time::Instant::now() + WAIT;
    let b = loop {
        let config = config(&ca, &certificate, b_address, &peers);
        match bind(config, Arc::clone(&echo), CancellationToken::new()) {
            Ok(server) => break server,
            Err(error) if tokio::time::Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("cannot rebind: {error}"),
        }
    };
    let restarted = tokio::time::Instant::now();
    let short = Duration::from_millis(500);
    loop {
        match network.request(2, b"two".to_vec(), short).await {
            Ok(response) => {
                assert_eq!(response, b"echo:two");
                break;
            }
            Err(_) if restarted.elapsed() < Duration::from_secs(3) => {}
            Err(error) => panic!("still no answer after the restart: {error}"),
        }
    }
    // The idle timeout is 10 s: reconnecting sooner proves the reset was heard.
    assert!(restarted.elapsed() < Duration::from_secs(3));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_client_with_a_certificate_from_another_ca_is_refused() {
    let ca = Ca::generate("cluster").unwrap();
    let stranger_ca = Ca::generate("stranger").unwrap();
    let peers = AddressBook::new();
    let echo = Arc::new(Echo::default());
    let b = start(&ca, 2, &peers, Arc::clone(&echo));

    // The stranger trusts the cluster CA, so it would accept the server; the server must not
    // accept the stranger's certificate, even though it claims a plausible node id.
    let stranger_certificate = stranger_ca.issue_node(member(1), ["127.0.0.1"]).unwrap();
    let stranger_config = config(&ca, &stranger_certificate, localhost(), &peers);
    let stranger = bind(
        stranger_config,
        Arc::new(Echo::default()),
        CancellationToken::new(),
    )
    .unwrap();
    let error = stranger
        .network()
        .request(2, b"let me in".to_vec(), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(error, NetError::Tls(_)), "{error:?}");
    assert_eq!(echo.calls(), 0, "the handler ran for a stranger");

    // And a cluster node refuses to talk to a server with a stranger's certificate.
    let impostor_certificate = stranger_ca.issue_node(member(3), ["127.0.0.1"]).unwrap();
    let impostor_echo = Arc::new(Echo::default());
    let impostor = bind(
        config(&stranger_ca, &impostor_certificate, localhost(), &peers),
        Arc::clone(&impostor_echo),
        CancellationToken::new(),
    )
    .unwrap();
    peers.insert(member(3), impostor.local_addr());
    let error = b
        .network()
        .request(3, b"hello?".to_vec(), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(error, NetError::Tls(_)), "{error:?}");
    assert_eq!(impostor_echo.calls(), 0);
    stranger.shutdown().await;
    impostor.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_peer_with_another_node_id_than_dialled_is_refused() {
    let ca = Ca::generate("identity").unwrap();
    let peers = AddressBook::new();
    let echo_c = Arc::new(Echo::default());
    let a = start(&ca, 1, &peers, Arc::default());
    let c = start(&ca, 3, &peers, Arc::clone(&echo_c));
    // The address book says node 2 is where node 3 listens.
    peers.insert(member(2), c.local_addr());
    let error = a
        .network()
        .request(2, b"for two".to_vec(), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(error, NetError::Tls(_)), "{error:?}");
    assert_eq!(echo_c.calls(), 0);
    // Node 3 itself is reachable at that address.
    assert_eq!(
        a.network().request(3, b"x".to_vec(), WAIT).await.unwrap(),
        b"echo:x"
    );
    a.shutdown().await;
    c.shutdown().await;
}

/// Node 1 of pool 1 and node 5 of pool 2, each the other's partner, talk both ways, and each
/// handler is told the other's pool and node.
#[tokio::test]
async fn partner_pools_talk_both_ways() {
    let ca = Ca::generate("pair").unwrap();
    let peers = AddressBook::new();
    let (echo_a, echo_b) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
    let (one, five) = (member(1), Peer { pool: 2, node: 5 });
    let a = start_paired(&ca, one, Some(2), &peers, Arc::clone(&echo_a));
    let b = start_paired(&ca, five, Some(1), &peers, Arc::clone(&echo_b));
    let response = a.network().request(5, b"to b".to_vec(), WAIT).await;
    assert_eq!(response.unwrap(), b"echo:to b");
    // A node that has not spoken to the other yet dials it too.
    let c = start_paired(&ca, member(3), Some(2), &peers, Arc::default());
    let response = b.network().request(3, b"to c".to_vec(), WAIT).await;
    assert_eq!(response.unwrap(), b"echo:to c");
    let response = b.network().request(1, b"to a".to_vec(), WAIT).await;
    assert_eq!(response.unwrap(), b"echo:to a");
    assert_eq!(*echo_b.callers.lock().unwrap(), [one]);
    assert_eq!(*echo_a.callers.lock().unwrap(), [five]);
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

/// Node 1 of pool 1 is paired with pool 2; node 7 of pool 3, same CA, is refused both ways,
/// even when pool 3 says pool 1 is its partner: node 1 never dials it, and closes the
/// connection node 7 dials. No request reaches either handler.
#[tokio::test]
async fn a_pool_that_is_not_the_partner_is_refused_both_ways() {
    let ca = Ca::generate("stranger pool").unwrap();
    let peers = AddressBook::new();
    let (echo_one, echo_seven) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
    let one = start_paired(&ca, member(1), Some(2), &peers, Arc::clone(&echo_one));
    let seven = Peer { pool: 3, node: 7 };
    let stranger = start_paired(&ca, seven, Some(1), &peers, Arc::clone(&echo_seven));

    let error = one
        .network()
        .request(7, b"to 7".to_vec(), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, NetError::Untrusted { to: 7, ref reason }
            if reason.contains("pool 3 node 7") && reason.contains("partner pool 2")),
        "{error:?}"
    );
    let error = stranger
        .network()
        .request(1, b"to 1".to_vec(), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, NetError::Untrusted { to: 1, ref reason }
            if reason.contains("does not trust this node's pool")),
        "{error:?}"
    );
    // Refused again, at once, without a redial loop.
    let started = tokio::time::Instant::now();
    let error = stranger.network().request(1, b"again".to_vec(), WAIT).await;
    assert!(
        matches!(error, Err(NetError::Untrusted { to: 1, .. })),
        "{error:?}"
    );
    assert!(started.elapsed() < WAIT / 2, "{:?}", started.elapsed());
    assert_eq!(echo_one.calls(), 0, "a handler ran for pool 3");
    assert_eq!(echo_seven.calls(), 0, "a handler ran for pool 1");
    // A node without a partner refuses pool 2 as well, and pool 1 still works.
    let lone = start(&ca, 2, &peers, Arc::default());
    let error = lone.network().request(7, b"?".to_vec(), WAIT).await;
    assert!(
        matches!(error, Err(NetError::Untrusted { to: 7, .. })),
        "{error:?}"
    );
    let response = lone.network().request(1, b"x".to_vec(), WAIT).await;
    assert_eq!(response.unwrap(), b"echo:x");
    one.shutdown().await;
    stranger.shutdown().await;
    lone.shutdown().await;
}

/// The address book says node 7 is of the partner pool 2, but at its address listens node 7 of
/// pool 3: the certificate names another node than the one dialled, and it is refused.
#[tokio::test]
async fn a_peer_of_another_pool_than_dialled_is_refused() {
    let ca = Ca::generate("pool identity").unwrap();
    let peers = AddressBook::new();
    let echo = Arc::new(Echo::default());
    let one = start_paired(&ca, member(1), Some(2), &peers, Arc::default());
    let impostor = start_paired(
        &ca,
        Peer { pool: 3, node: 7 },
        Some(1),
        &peers,
        Arc::clone(&echo),
    );
    peers.insert(Peer { pool: 2, node: 7 }, impostor.local_addr());
    let error = one
        .network()
        .request(7, b"for pool 2".to_vec(), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(error, NetError::Tls(_)), "{error:?}");
    assert_eq!(echo.calls(), 0);
    one.shutdown().await;
    impostor.shutdown().await;
}

/// A pool cannot be its own partner.
#[tokio::test]
async fn a_partner_equal_to_the_own_pool_is_refused() {
    let ca = Ca::generate("own partner").unwrap();
    let certificate = ca.issue_node(member(1), ["127.0.0.1"]).unwrap();
    let mut config = config(&ca, &certificate, localhost(), &AddressBook::new());
    config.partner = Some(POOL);
    let error = bind(config, Arc::new(Echo::default()), CancellationToken::new()).unwrap_err();
    assert!(matches!(error, NetError::Config(_)), "{error:?}");
}

#[tokio::test]
async fn a_configuration_for_another_node_than_the_certificate_is_refused() {
    let ca = Ca::generate("config").unwrap();
    let certificate = ca.issue_node(member(1), ["127.0.0.1"]).unwrap();
    // Another node of the same pool, and the same node of another pool.
    for identity in [member(2), Peer { pool: 2, node: 1 }] {
        let mut config = config(&ca, &certificate, localhost(), &AddressBook::new());
        config.identity = identity;
        let error = bind(config, Arc::new(Echo::default()), CancellationToken::new()).unwrap_err();
        assert!(matches!(error, NetError::Tls(_)), "{error:?}");
    }
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let ca = Ca::generate("size").unwrap();
    let peers = AddressBook::new();
    let echo = Arc::new(Echo::default());
    let a = start(&ca, 1, &peers, Arc::default());
    let b = start(&ca, 2, &peers, Arc::clone(&echo));
    let network = a.network();

    let error = network
        .request(2, vec![0; MESSAGE_SIZE_MAX + 1], WAIT)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        NetError::TooLarge {
            size: MESSAGE_SIZE_MAX + 1,
            max: MESSAGE_SIZE_MAX
        }
    );
    assert_eq!(echo.calls(), 0);

    // A response over the limit is not sent; the caller hears why.
    let error = network
        .request(2, b"huge".to_vec(), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, NetError::Remote(ref reason) if reason.contains("response too large")),
        "{error:?}"
    );
    // A body of exactly the limit goes through.
    let response = network
        .request(2, vec![7; MESSAGE_SIZE_MAX - 5], WAIT)
        .await
        .unwrap();
    assert_eq!(response.len(), MESSAGE_SIZE_MAX);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_fails_one_request_only() {
    let ca = Ca::generate("panic").unwrap();
    let peers = AddressBook::new();
    let a = start(&ca, 1, &peers, Arc::default());
    let b = start(&ca, 2, &peers, Arc::default());
    let error = a
        .network()
        .request(2, b"panic".to_vec(), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, NetError::Remote(ref reason) if reason.contains("handler failed")),
        "{error:?}"
    );
    assert_eq!(
        a.network().request(2, b"ok".to_vec(), WAIT).await.unwrap(),
        b"echo:ok"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn unknown_peers_and_shutdown_are_reported() {
    let ca = Ca::generate("shutdown").unwrap();
    let peers = AddressBook::new();
    let token = CancellationToken::new();
    let certificate = ca.issue_node(member(1), ["127.0.0.1"]).unwrap();
    let a = bind(
        config(&ca, &certificate, localhost(), &peers),
        Arc::new(Echo::default()),
        token.clone(),
    )
    .unwrap();
    let network = a.network();
    assert_eq!(
        network.request(9, b"?".to_vec(), WAIT).await.unwrap_err(),
        NetError::UnknownPeer(9)
    );
    // Cancelling the caller's token shuts the node down.
    token.cancel();
    a.shutdown().await;
    assert_eq!(
        network.request(9, b"?".to_vec(), WAIT).await.unwrap_err(),
        NetError::Closed
    );
}

/// A UDP relay on 127.0.0.1 between one client and one server that can hold the client's
/// large datagrams (those carrying a request) and then deliver them all at once. Small ones
/// (acknowledgements, probes) pass: the server acknowledges the client's probes, so the client
/// takes the held packet for lost and sends its stream data again in a new packet, held too.
/// The server then receives a request and its copies together, before it reads any of it.
struct HoldingRelay {
    address: SocketAddr,
    held: Arc<Mutex<Option<Vec<Vec<u8>>>>>,
    to_server: Arc<tokio::net::UdpSocket>,
    tasks: tokio::task::JoinSet<()>,
}

/// Datagrams the relay holds are at least this large: a request of 1,000 bytes fills one;
/// acknowledgements and probes (pings) are tens of bytes.
const HELD_SIZE_MIN: usize = 500;

impl HoldingRelay {
    /// A relay in front of `server`, passing everything through.
    async fn start(server: SocketAddr) -> HoldingRelay {
        let from_client = Arc::new(tokio::net::UdpSocket::bind(localhost()).await.unwrap());
        let to_server = Arc::new(tokio::net::UdpSocket::bind(localhost()).await.unwrap());
        to_server.connect(server).await.unwrap();
        let address = from_client.local_addr().unwrap();
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let held: Arc<Mutex<Option<Vec<Vec<u8>>>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        let (inbound, outbound) = (Arc::clone(&from_client), Arc::clone(&to_server));
        let (seen, holding) = (Arc::clone(&client), Arc::clone(&held));
        tasks.spawn(async move {
            let mut buffer = vec![0; 65_536];
            while let Ok((length, from)) = inbound.recv_from(&mut buffer).await {
                *seen.lock().unwrap() = Some(from);
                let datagram = buffer[..length].to_vec();
                // A short section without `.await`.
                let passed = match holding.lock().unwrap().as_mut() {
                    Some(held) if datagram.len() >= HELD_SIZE_MIN => {
                        held.push(datagram);
                        None
                    }
                    _ => Some(datagram),
                };
                if let Some(datagram) = passed {
                    let _ = outbound.send(&datagram).await;
                }
            }
        });
        let (inbound, outbound) = (Arc::clone(&to_server), from_client);
        tasks.spawn(async move {
            let mut buffer = vec![0; 65_536];
            while let Ok(length) = inbound.recv(&mut buffer).await {
                let client = *client.lock().unwrap();
                if let Some(client) = client {
                    let _ = outbound.send_to(&buffer[..length], client).await;
                }
            }
        });
        HoldingRelay {
            address,
            held,
            to_server,
            tasks,
        }
    }

    /// Holds the client's large datagrams from now on.
    fn hold(&self) {
        *self.held.lock().unwrap() = Some(Vec::new());
    }

    /// Sends every held datagram to the server back to back and passes the next ones
    /// through; returns how many were held.
    async fn release(&self) -> usize {
        let held = self.held.lock().unwrap().take().unwrap_or_default();
        for datagram in &held {
            self.to_server.send(datagram).await.unwrap();
        }
        held.len()
    }
}

impl Drop for HoldingRelay {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// A request whose packets arrive together with their retransmissions is served. The server
/// once read the end of a request with an unordered read after ordered ones; quinn-proto then
/// handed the stale duplicates out again, the valid request was refused as malformed, and
/// refusing it (`RecvStream::stop`) underflowed in quinn-proto and panicked (debug builds)
/// inside the connection's mutex: a node under delay with jitter aborted.
#[tokio::test]
async fn a_request_that_arrives_with_its_retransmissions_is_served() {
    let ca = Ca::generate("retransmissions").unwrap();
    let server_book = AddressBook::new();
    let echo = Arc::new(Echo::default());
    let server = start(&ca, 2, &server_book, Arc::clone(&echo));
    let relay = HoldingRelay::start(server.local_addr()).await;
    let client_book = AddressBook::new();
    let client = start(&ca, 1, &client_book, Arc::default());
    client_book.insert(member(2), relay.address);
    let network = client.network();
    // The first request opens the connection through the relay.
    assert_eq!(
        network.request(2, b"open".to_vec(), WAIT).await.unwrap(),
        b"echo:open"
    );
    for round in 0..3u8 {
        relay.hold();
        let body = vec![round; 1_000];
        let request = tokio::spawn({
            let network = network.clone();
            let body = body.clone();
            async move { network.request(2, body, WAIT).await }
        });
        // Long enough for several probe timeouts on loopback (tens of milliseconds each): each
        // probe is acknowledged, the held request is taken for lost and sent again.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let held = relay.release().await;
        assert!(held >= 2, "round {round}: only {held} datagram(s) held");
        let response = request.await.unwrap();
        assert_eq!(
            response,
            Ok([b"echo:".as_slice(), &body].concat()),
            "round {round} ({held} datagrams held)"
        );
    }
    assert_eq!(echo.calls(), 4);
    client.shutdown().await;
    server.shutdown().await;
}
