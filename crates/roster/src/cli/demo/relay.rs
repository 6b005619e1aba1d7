//! The demo's WAN between its two sites: a userspace UDP relay on loopback that delays every
//! datagram by a fixed one-way latency (`roster demo --wan-latency MS`; this machine has no
//! netem). QUIC runs over UDP, so relaying datagrams is enough.
//!
//! Each node has a *front*, the address the other site dials for it (its `wan` address in
//! the topology). A datagram reaching a front from a source is sent on, after the delay, from
//! an upstream socket of that source's own to the node's cluster address; the node's answers
//! to that upstream socket go back, after the delay, from the front to the source. One
//! upstream socket per source is what lets the answers find their way back.
//!
//! Everything waits in bounded queues: a datagram that finds its path's queue full, or the
//! relay's held bytes at their bound, is dropped, as a real router's full queue drops. The
//! relay runs on a thread of its own, so that nothing else the demo does delays a datagram.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bytes of datagrams the relay holds back at once, over all its paths; past it, datagrams are
/// dropped. At 50 ms, 64 MiB in flight is over 1 GB/s between the sites: far above what a
/// demo's nodes send, while a runaway sender cannot take the machine's memory.
pub const DELAYED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Datagrams one path (a source toward a node, or a node back toward a source) holds back at
/// once; past it, datagrams are dropped. A loaded pair of demo pools sends a few thousand
/// datagrams a second each way, so a path holds a few hundred at 50 ms.
pub const DELAYED_PER_PATH_MAX: usize = 8_192;

/// Sources one front keeps an upstream socket for. The sources are the other site's nodes
/// (at most `POOL_NODES_MAX`, 16, each sending from its one cluster socket); past the bound the
/// source heard from least recently gives its socket up.
pub const SOURCES_PER_FRONT_MAX: usize = 32;

/// The largest UDP payload: a datagram is read whole.
const DATAGRAM_SIZE_MAX: usize = 65_535;

/// One front and the node behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Where the other site sends (port 0: any free port, see [`WanRelay::fronts`]).
    pub front: SocketAddr,
    /// The node's cluster address.
    pub target: SocketAddr,
}

/// The relay's bounds; [`WanRelay::start`] uses the constants above.
#[derive(Clone, Copy, Debug)]
struct Limits {
    delayed_bytes_max: usize,
    delayed_per_path_max: usize,
    sources_per_front_max: usize,
}

const LIMITS: Limits = Limits {
    delayed_bytes_max: DELAYED_BYTES_MAX,
    delayed_per_path_max: DELAYED_PER_PATH_MAX,
    sources_per_front_max: SOURCES_PER_FRONT_MAX,
};

/// What the relay has done so far.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams sent on after their delay.
    pub relayed: AtomicU64,
    /// Datagrams dropped at a full queue or at the byte bound.
    pub dropped: AtomicU64,
    /// Sources that gave their upstream socket up to a newer one.
    pub sources_replaced: AtomicU64,
}

/// A running relay; stopped (its thread joined, its sockets closed) on drop.
pub struct WanRelay {
    #[cfg(test)]
    fronts: Vec<SocketAddr>,
    stats: Arc<RelayStats>,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WanRelay {
    /// Binds every route's front now (a taken address is an error before any node starts) and
    /// relays on a thread of its own, delaying each datagram by `one_way`.
    pub fn start(routes: &[Route], one_way: Duration) -> anyhow::Result<WanRelay> {
        WanRelay::start_with(routes, one_way, LIMITS)
    }

    fn start_with(routes: &[Route], one_way: Duration, limits: Limits) -> anyhow::Result<WanRelay> {
        let mut fronts = Vec::with_capacity(routes.len());
        let mut sockets = Vec::with_capacity(routes.len());
        for route in routes {
            let socket = std::net::UdpSocket::bind(route.front)
                .with_context(|| format!("cannot bind the WAN relay's front {}", route.front))?;
            socket.set_nonblocking(true)?;
            fronts.push(socket.local_addr()?);
            sockets.push((socket, route.target));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the WAN relay's runtime")?;
        let stats = Arc::new(RelayStats::default());
        let cancel = CancellationToken::new();
        let relay = Relay {
            one_way,
            limits,
            held: Arc::new(AtomicUsize::new(0)),
            stats: stats.clone(),
        };
        let token = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("demo-wan-relay".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    for (socket, target) in sockets {
                        match UdpSocket::from_std(socket) {
                            Ok(front) => tasks.push(tokio::spawn(relay.clone().serve_front(
                                Arc::new(front),
                                target,
                                token.clone(),
                            ))),
                            Err(error) => tracing::error!(%error, "a WAN relay front failed"),
                        }
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            })
            .context("cannot start the WAN relay's thread")?;
        #[cfg(not(test))]
        let _ = fronts;
        Ok(WanRelay {
            #[cfg(test)]
            fronts,
            stats,
            cancel,
            thread: Some(thread),
        })
    }

    /// The fronts' bound addresses, in the order of the routes.
    #[cfg(test)]
    pub fn fronts(&self) -> &[SocketAddr] {
        &self.fronts
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }
}

impl Drop for WanRelay {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What every task of the relay shares.
#[derive(Clone)]
struct Relay {
    one_way: Duration,
    limits: Limits,
    /// Bytes held back now, over every path.
    held: Arc<AtomicUsize>,
    stats: Arc<RelayStats>,
}

/// A source's upstream socket, and the path toward the node.
struct SourceLink {
    toward_node: mpsc::Sender<Delayed>,
    last_heard: Instant,
    cancel: CancellationToken,
}

/// A datagram waiting for its time, holding its share of the byte bound until it is gone.
struct Delayed {
    due: Instant,
    bytes: Vec<u8>,
    _held: Held,
}

/// Bytes counted against [`DELAYED_BYTES_MAX`]; released when dropped, sent or not.
struct Held {
    held: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Where a path sends: a connected upstream socket, or a front toward one source.
enum Outlet {
    Connected(Arc<UdpSocket>),
    To(Arc<UdpSocket>, SocketAddr),
}

impl Relay {
    /// Reads a front until cancelled: each source's datagrams go on through its own upstream.
    async fn serve_front(
        self,
        front: Arc<UdpSocket>,
        target: SocketAddr,
        cancel: CancellationToken,
    ) {
        let mut sources: HashMap<SocketAddr, SourceLink> = HashMap::new();
        let mut buffer = vec![0u8; DATAGRAM_SIZE_MAX];
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => break,
                received = front.recv_from(&mut buffer) => received,
            };
            // An error on an unconnected socket is about one datagram: go on.
            let Ok((length, source)) = received else {
                continue;
            };
            if !sources.contains_key(&source) {
                self.make_room(&mut sources);
                match self.open_source(&front, source, target, &cancel).await {
                    Ok(link) => {
                        sources.insert(source, link);
                    }
                    Err(error) => {
                        tracing::warn!(%error, %source, "the WAN relay cannot open an upstream socket");
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            if let Some(link) = sources.get_mut(&source) {
                link.last_heard = Instant::now();
                self.hold(&link.toward_node, &buffer[..length]);
            }
        }
        for link in sources.values() {
            link.cancel.cancel();
        }
    }

    /// At the bound, the source heard from least recently gives its upstream socket up.
    fn make_room(&self, sources: &mut HashMap<SocketAddr, SourceLink>) {
        if sources.len() < self.limits.sources_per_front_max {
            return;
        }
        let quietest = sources
            .iter()
            .min_by_key(|(_, link)| link.last_heard)
            .map(|(source, _)| *source);
        if let Some(link) = quietest.and_then(|source| sources.remove(&source)) {
            link.cancel.cancel();
            self.stats.sources_replaced.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An upstream socket for `source` toward `target`, with its two paths: the source's
    /// datagrams to the node, and the node's answers back through `front`.
    async fn open_source(
        &self,
        front: &Arc<UdpSocket>,
        source: SocketAddr,
        target: SocketAddr,
        cancel: &CancellationToken,
    ) -> std::io::Result<SourceLink> {
        let local = front.local_addr()?;
        let upstream = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await?;
        upstream.connect(target).await?;
        let upstream = Arc::new(upstream);
        let cancel = cancel.child_token();
        let toward_node = self.spawn_path(Outlet::Connected(upstream.clone()), cancel.clone());
        let toward_source = self.spawn_path(Outlet::To(front.clone(), source), cancel.clone());
        let relay = self.clone();
        let token = cancel.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; DATAGRAM_SIZE_MAX];
            loop {
                let received = tokio::select! {
                    () = token.cancelled() => return,
                    received = upstream.recv(&mut buffer) => received,
                };
                // A refused datagram (the node is down: ICMP port unreachable) is reported on
                // the next read; the node may come back, so go on.
                if let Ok(length) = received {
                    relay.hold(&toward_source, &buffer[..length]);
                }
            }
        });
        Ok(SourceLink {
            toward_node,
            last_heard: Instant::now(),
            cancel,
        })
    }

    /// Queues a copy of `bytes` on `path` for one delay from now, or drops it at a bound.
    fn hold(&self, path: &mpsc::Sender<Delayed>, bytes: &[u8]) {
        let before = self.held.fetch_add(bytes.len(), Ordering::Relaxed);
        let held = Held {
            held: self.held.clone(),
            bytes: bytes.len(),
        };
        if before + bytes.len() > self.limits.delayed_bytes_max {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let delayed = Delayed {
            due: Instant::now() + self.one_way,
            bytes: bytes.to_vec(),
            _held: held,
        };
        if path.try_send(delayed).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A path's queue and the task that sends each datagram when it is due. The delay is the
    /// same for every datagram, so the queue is in order of time.
    fn spawn_path(&self, outlet: Outlet, cancel: CancellationToken) -> mpsc::Sender<Delayed> {
        let (sender, mut queue) = mpsc::channel::<Delayed>(self.limits.delayed_per_path_max);
        let stats = self.stats.clone();
        tokio::spawn(async move {
            loop {
                let delayed = tokio::select! {
                    () = cancel.cancelled() => return,
                    delayed = queue.recv() => delayed,
                };
                let Some(delayed) = delayed else { return };
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep_until(delayed.due) => {}
                }
                let sent = match &outlet {
                    Outlet::Connected(socket) => socket.send(&delayed.bytes).await,
                    Outlet::To(socket, to) => socket.send_to(&delayed.bytes, *to).await,
                };
                // A datagram to a node that is down is lost, as on a real network.
                if sent.is_ok() {
                    stats.relayed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        sender
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::UdpSocket as StdSocket;
    use std::time::Instant as StdInstant;

    use super::*;

    const DELAY: Duration = Duration::from_millis(60);
    /// How late a datagram may be past its delay on a shared, busy machine.
    const SLACK: Duration = Duration::from_secs(3);

    fn socket() -> StdSocket {
        let socket = StdSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(DELAY + SLACK))
            .expect("timeout");
        socket
    }

    fn relay_to(target: &StdSocket, limits: Limits) -> WanRelay {
        let route = Route {
            front: "127.0.0.1:0".parse().expect("address"),
            target: target.local_addr().expect("target address"),
        };
        WanRelay::start_with(&[route], DELAY, limits).expect("relay starts")
    }

    fn receive(socket: &StdSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buffer = vec![0u8; 2048];
        let (length, from) = socket.recv_from(&mut buffer).ok()?;
        buffer.truncate(length);
        Some((buffer, from))
    }

    #[test]
    fn each_direction_is_delayed_and_answers_reach_their_own_source() {
        let node = socket();
        let relay = relay_to(&node, LIMITS);
        let front = relay.fronts()[0];
        let clients: Vec<StdSocket> = (0..3).map(|_| socket()).collect();
        let mut upstreams = BTreeSet::new();
        for round in 0..2 {
            for (index, client) in clients.iter().enumerate() {
                let payload = format!("{round}-{index}");
                let sent = StdInstant::now();
                client.send_to(payload.as_bytes(), front).expect("send");
                let (bytes, upstream) = receive(&node).expect("the node gets the datagram");
                let there = sent.elapsed();
                assert_eq!(bytes, payload.as_bytes());
                assert!(
                    (DELAY..DELAY + SLACK).contains(&there),
                    "one way took {there:?}"
                );
                upstreams.insert((index, upstream));
                node.send_to(format!("re {payload}").as_bytes(), upstream)
                    .expect("answer");
                let (answer, from) = receive(client).expect("the answer comes back");
                let round_trip = sent.elapsed();
                assert_eq!(answer, format!("re {payload}").as_bytes());
                assert_eq!(from, front, "answers come from the front");
                assert!(
                    (2 * DELAY..2 * DELAY + SLACK).contains(&round_trip),
                    "the round trip took {round_trip:?}"
                );
            }
        }
        // One upstream socket per source, kept across rounds.
        let distinct: BTreeSet<SocketAddr> = upstreams.iter().map(|(_, up)| *up).collect();
        assert_eq!(upstreams.len(), 3, "{upstreams:?}");
        assert_eq!(distinct.len(), 3, "{upstreams:?}");
        // A path counts a datagram after its send returns, which may be after the receiver
        // has it.
        let counted = StdInstant::now();
        while relay.stats().relayed.load(Ordering::Relaxed) < 12 && counted.elapsed() < SLACK {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(relay.stats().relayed.load(Ordering::Relaxed), 12);
        assert_eq!(relay.stats().dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn datagrams_keep_their_order() {
        let node = socket();
        let relay = relay_to(&node, LIMITS);
        let client = socket();
        for index in 0..200u32 {
            client
                .send_to(&index.to_be_bytes(), relay.fronts()[0])
                .expect("send");
        }
        for index in 0..200u32 {
            let (bytes, _) = receive(&node).expect("every datagram arrives");
            assert_eq!(bytes, index.to_be_bytes());
        }
    }

    #[test]
    fn past_the_byte_bound_datagrams_are_dropped_until_the_held_ones_leave() {
        let node = socket();
        let limits = Limits {
            delayed_bytes_max: 3_000,
            ..LIMITS
        };
        let relay = relay_to(&node, limits);
        let client = socket();
        for _ in 0..5 {
            client
                .send_to(&[7u8; 1_000], relay.fronts()[0])
                .expect("send");
        }
        for _ in 0..3 {
            assert!(receive(&node).is_some(), "three fit the bound");
        }
        node.set_read_timeout(Some(DELAY * 4)).expect("timeout");
        assert!(receive(&node).is_none(), "the other two were dropped");
        assert_eq!(relay.stats().dropped.load(Ordering::Relaxed), 2);
        client
            .send_to(&[8u8; 1_000], relay.fronts()[0])
            .expect("send");
        node.set_read_timeout(Some(DELAY + SLACK)).expect("timeout");
        assert_eq!(receive(&node).map(|(bytes, _)| bytes[0]), Some(8));
    }

    #[test]
    fn a_full_path_drops_what_does_not_fit() {
        let node = socket();
        let limits = Limits {
            delayed_per_path_max: 4,
            ..LIMITS
        };
        let relay = relay_to(&node, limits);
        let client = socket();
        // The first datagram opens the source's path; then a burst far past its queue.
        for index in 0..50u8 {
            client.send_to(&[index], relay.fronts()[0]).expect("send");
        }
        let mut arrived = 0;
        node.set_read_timeout(Some(DELAY * 5)).expect("timeout");
        while receive(&node).is_some() {
            arrived += 1;
        }
        let dropped = relay.stats().dropped.load(Ordering::Relaxed);
        assert!((4..50).contains(&arrived), "{arrived} arrived");
        assert_eq!(arrived + dropped, 50);
    }

    #[test]
    fn past_the_source_bound_the_quietest_source_gives_its_socket_up() {
        let node = socket();
        let limits = Limits {
            sources_per_front_max: 2,
            ..LIMITS
        };
        let relay = relay_to(&node, limits);
        let clients: Vec<StdSocket> = (0..3).map(|_| socket()).collect();
        let mut upstreams = Vec::new();
        for client in &clients {
            client.send_to(b"hello", relay.fronts()[0]).expect("send");
            upstreams.push(receive(&node).expect("relayed").1);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(relay.stats().sources_replaced.load(Ordering::Relaxed), 1);
        // The first client was the quietest: it comes back through a new upstream socket.
        clients[0]
            .send_to(b"again", relay.fronts()[0])
            .expect("send");
        let (_, upstream) = receive(&node).expect("relayed");
        assert!(!upstreams.contains(&upstream), "{upstream} is new");
        assert_eq!(relay.stats().sources_replaced.load(Ordering::Relaxed), 2);
    }
}
