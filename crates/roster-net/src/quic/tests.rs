//! Unit tests of the QUIC transport that need its insides: the raw wire format and the
//! connection count. Behaviour through the public API is tested in `tests/quic.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::pki::Ca;

const WAIT: Duration = Duration::from_secs(10);

/// The pool of every node in these tests.
const POOL: roster_topology::PoolId = 1;

#[derive(Default)]
struct Counter {
    calls: AtomicUsize,
}

impl Handler for Counter {
    async fn handle(&self, _from: Peer, body: Vec<u8>) -> Vec<u8> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        body
    }
}

fn start(ca: &Ca, node_id: NodeId, peers: &AddressBook, handler: Arc<Counter>) -> QuicServer {
    let peer = Peer {
        pool: POOL,
        node: node_id,
    };
    let certificate = ca.issue_node(peer, ["127.0.0.1"]).unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let config = QuicConfig::new(listen, ca.cert_pem(), &certificate, peers.clone());
    let server = bind(config, handler, CancellationToken::new()).unwrap();
    peers.insert(peer, server.local_addr());
    server
}

#[test]
fn length_prefix_is_checked_before_allocating() {
    assert!(matches!(decode_length([0, 0, 0, 5]), Ok(5)));
    let max = (MESSAGE_SIZE_MAX as u32).to_be_bytes();
    assert!(matches!(decode_length(max), Ok(MESSAGE_SIZE_MAX)));
    let over = (MESSAGE_SIZE_MAX as u32 + 1).to_be_bytes();
    assert!(matches!(decode_length(over), Err(FrameError::TooLarge(_))));
    assert!(matches!(
        decode_length([0xff; 4]),
        Err(FrameError::TooLarge(_))
    ));
}

/// A prefix announcing more than the limit is refused at once: the server does not wait for
/// (or allocate) the body, which the client never sends.
#[tokio::test]
async fn oversize_prefix_is_refused_without_reading_the_body() {
    let ca = Ca::generate("unit").unwrap();
    let peers = AddressBook::new();
    let counter = Arc::new(Counter::default());
    let a = start(&ca, 1, &peers, Arc::default());
    let b = start(&ca, 2, &peers, Arc::clone(&counter));
    let network = a.network();
    let deadline = Instant::now() + WAIT;
    let connection = network.connection(2, deadline).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    // No body and no finish: a server that tried to read the announced body would hang here.
    let mut prefix = [0; 4];
    let result = tokio::time::timeout(WAIT, recv.read_exact(&mut prefix))
        .await
        .expect("the server did not refuse in time");
    match result {
        Err(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code))) => {
            assert_eq!(code, StreamCode::RequestTooLarge.var_int());
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    assert_eq!(counter.calls.load(Ordering::SeqCst), 0);
    // The connection survives a refused stream.
    let response = network.request(2, b"after".to_vec(), WAIT).await.unwrap();
    assert_eq!(response, b"after");
    a.shutdown().await;
    b.shutdown().await;
}

/// A server closes a connection from a pool it does not trust right after the handshake, with
/// the close code kept for that, and no stream of it reaches the handler.
#[tokio::test]
async fn an_untrusted_pool_is_closed_with_its_own_code() {
    let ca = Ca::generate("unit").unwrap();
    let peers = AddressBook::new();
    let counter = Arc::new(Counter::default());
    let server = start(&ca, 1, &peers, Arc::clone(&counter));
    // Node 7 of pool 3 says pool 1 is its partner; pool 1 has none.
    let stranger = Peer { pool: 3, node: 7 };
    let certificate = ca.issue_node(stranger, ["127.0.0.1"]).unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let mut config = QuicConfig::new(listen, ca.cert_pem(), &certificate, peers.clone());
    config.partner = Some(POOL);
    let client = bind(
        config,
        Arc::new(Counter::default()),
        CancellationToken::new(),
    )
    .unwrap();
    let target = Peer {
        pool: POOL,
        node: 1,
    };
    match client.network().dial(target, server.local_addr()).await {
        Ok(connection) => {
            // Streams opened before the close arrives are never accepted.
            if let Ok((mut send, _recv)) = connection.open_bi().await {
                let _ = send.write_all(&[0, 0, 0, 1, 7]).await;
                let _ = send.finish();
            }
            let closed = tokio::time::timeout(WAIT, connection.closed())
                .await
                .expect("the server did not close in time");
            match closed {
                quinn::ConnectionError::ApplicationClosed(close) => {
                    assert_eq!(
                        close.error_code.into_inner(),
                        u64::from(CLOSE_UNTRUSTED_POOL)
                    );
                }
                other => panic!("expected an application close, got {other:?}"),
            }
        }
        // The close overtook the end of the handshake: only that code maps to this error.
        Err(error) => assert!(matches!(error, NetError::Untrusted { .. }), "{error:?}"),
    }
    assert_eq!(counter.calls.load(Ordering::SeqCst), 0);
    client.shutdown().await;
    server.shutdown().await;
}

/// Requests in both directions, many at once, share one connection between the two nodes.
#[tokio::test]
async fn one_connection_per_pair_of_nodes() {
    let ca = Ca::generate("unit").unwrap();
    let peers = AddressBook::new();
    let a = start(&ca, 1, &peers, Arc::default());
    let b = start(&ca, 2, &peers, Arc::default());
    let (from_a, from_b) = (a.network(), b.network());
    a.network()
        .request(2, b"first".to_vec(), WAIT)
        .await
        .unwrap();
    let mut requests = tokio::task::JoinSet::new();
    for index in 0..50u32 {
        let (from_a, from_b) = (from_a.clone(), from_b.clone());
        requests.spawn(async move {
            let body = index.to_be_bytes().to_vec();
            assert_eq!(from_a.request(2, body.clone(), WAIT).await.unwrap(), body);
            assert_eq!(from_b.request(1, body.clone(), WAIT).await.unwrap(), body);
        });
    }
    while let Some(joined) = requests.join_next().await {
        joined.unwrap();
    }
    let open = |server: &QuicServer| server.network.shared.endpoint().unwrap().open_connections();
    assert_eq!(open(&a), 1);
    assert_eq!(open(&b), 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[test]
fn back_off_doubles_up_to_the_cap() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let ca = Ca::generate("unit").unwrap();
    let server = start(&ca, 1, &AddressBook::new(), Arc::default());
    let shared = &server.network.shared;
    let delays: Vec<u128> = (1..=10)
        .map(|failures| shared.backoff(failures).as_millis())
        .collect();
    assert_eq!(
        delays,
        [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
    );
    assert_eq!(shared.backoff(u32::MAX).as_millis(), 5000);
}
