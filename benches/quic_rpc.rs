//! QUIC RPC round trips between two `roster_net` nodes on 127.0.0.1: `QuicNetwork::request` to
//! a handler that echoes the body, over an established connection with mutual TLS (certificates
//! from `roster_net::pki`), one stream per RPC. Bodies of 200 bytes (a forwarded REGISTER) and
//! 16 KiB (a batch of log entries), one RPC at a time and 64 in flight (64 tasks, each sending
//! its next request once answered). Time is per RPC of every task; throughput is in RPCs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use roster_net::pki::Ca;
use roster_net::{bind, AddressBook, Handler, Network, Peer, QuicConfig, QuicNetwork, QuicServer};
use roster_topology::{NodeId, PoolId};
use tokio_util::sync::CancellationToken;

const BODY_SIZES: [usize; 2] = [200, 16 * 1024];
const IN_FLIGHT: [u64; 2] = [1, 64];
/// Far above any round trip on loopback: a timeout is a failure of the benchmark.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The node that answers.
const SERVER: NodeId = 2;
/// The pool of both nodes.
const POOL: PoolId = 1;

/// Answers each request with its own body.
struct Echo;

impl Handler for Echo {
    async fn handle(&self, _from: Peer, body: Vec<u8>) -> Vec<u8> {
        body
    }
}

/// Binds node `node_id` on a free port of 127.0.0.1 and enters it in `peers`. Must run inside
/// a Tokio runtime.
fn start(ca: &Ca, node_id: NodeId, peers: &AddressBook) -> QuicServer {
    let peer = Peer {
        pool: POOL,
        node: node_id,
    };
    let certificate = ca.issue_node(peer, ["127.0.0.1"]).expect("certificate");
    let listen = "127.0.0.1:0".parse().expect("address");
    let config = QuicConfig::new(listen, ca.cert_pem(), &certificate, peers.clone());
    let server = bind(config, Arc::new(Echo), CancellationToken::new()).expect("bind");
    peers.insert(peer, server.local_addr());
    server
}

/// `in_flight` tasks each send `iters` requests, one after the other; returns the time until
/// the last answer.
async fn round_trips(network: &QuicNetwork, body: &[u8], in_flight: u64, iters: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (network, body) = (network.clone(), body.to_vec());
        tasks.spawn(async move {
            for _ in 0..iters {
                let response = network.request(SERVER, body.clone(), TIMEOUT).await;
                assert_eq!(response.expect("round trip").len(), body.len());
            }
        });
    }
    tasks.join_all().await;
    started.elapsed()
}

fn rpc(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = Ca::generate("bench").expect("CA");
    let peers = AddressBook::new();
    let (client, server) = {
        let _entered = runtime.enter();
        (start(&ca, 1, &peers), start(&ca, SERVER, &peers))
    };
    let network = client.network();
    // The handshake happens here, not in the first sample.
    runtime.block_on(round_trips(&network, b"hello", 1, 1));

    let mut group = c.benchmark_group("quic_rpc");
    for in_flight in IN_FLIGHT {
        group.throughput(Throughput::Elements(in_flight));
        for size in BODY_SIZES {
            let body = vec![0x5a; size];
            let id = BenchmarkId::new(format!("{in_flight}_in_flight"), format!("{size}_bytes"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(round_trips(&network, &body, in_flight, iters))
                })
            });
        }
    }
    group.finish();
    runtime.block_on(async {
        client.shutdown().await;
        server.shutdown().await;
    });
}

criterion_group!(benches, rpc);
criterion_main!(benches);
