//! Delay with jitter, and loss, on node-to-node paths: a userspace UDP relay per directed pair
//! of nodes (every pair with `[cluster] relay = true`, and every pair across two sites: the
//! inter-site link is made of them)
//! (QUIC is UDP, so forwarding datagrams is enough), on a thread of its own so that the
//! runner's load never delays the cluster's packets by accident.
//!
//! Node `i` sends to peer `j` at `127.77.P.i:7100+j`; the relay forwards from
//! `127.77.P.i:7200+j` to `j`'s cluster address and sends `j`'s answers back to `i`. Both hops
//! carry `i`'s and `j`'s addresses, so firewall cuts apply to relayed traffic as to direct.
//! Each relay delays a datagram by `delay ± jitter` (uniform) when its [`LinkShape`] says so;
//! with jitter, datagrams overtake each other, as on a real WAN.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Datagrams one relay holds back at once; past it, further datagrams are dropped (a queue
/// overflowing, as a real router's would). At the suite's rates a relay holds a few hundred.
pub const DELAYED_PER_RELAY_MAX: usize = 20_000;

/// Largest datagram relayed (QUIC's are at most about 1,500 bytes on loopback paths here).
const DATAGRAM_SIZE_MAX: usize = 65_536;

/// How one direction of one link delays.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkShape {
    /// Mean one-way delay.
    pub delay: Duration,
    /// Uniform jitter around it (delay ± jitter, never below zero).
    pub jitter: Duration,
    /// Share of datagrams dropped, 0..=1 (1: the link is cut).
    pub loss: f64,
}

/// One directed path through a relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayPath {
    /// The sending node (index).
    pub from: usize,
    /// The receiving node (index).
    pub to: usize,
    /// Where the sender sends.
    pub listen: SocketAddr,
    /// Where the relay sends from.
    pub upstream_bind: SocketAddr,
    /// The receiver's cluster address.
    pub target: SocketAddr,
}

/// Every relay of a run, and their shapes.
pub struct Relays {
    shapes: Vec<(RelayPath, Arc<Mutex<LinkShape>>)>,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relays {
    /// Binds every path's sockets now (before the nodes start) and serves them on a thread.
    pub fn start(paths: Vec<RelayPath>, seed: u64) -> anyhow::Result<Relays> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let cancel = CancellationToken::new();
        let mut shapes = Vec::new();
        let mut sockets = Vec::new();
        for path in paths {
            // Bound here, so that a taken address fails the run before any node starts; made
            // Tokio sockets on the relay thread's runtime.
            let down = std::net::UdpSocket::bind(path.listen)?;
            let up = std::net::UdpSocket::bind(path.upstream_bind)?;
            up.connect(path.target)?;
            down.set_nonblocking(true)?;
            up.set_nonblocking(true)?;
            let shape = Arc::new(Mutex::new(LinkShape::default()));
            shapes.push((path, shape.clone()));
            sockets.push((down, up, shape));
        }
        let token = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("relays".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    for (index, (down, up, shape)) in sockets.into_iter().enumerate() {
                        let (Ok(down), Ok(up)) =
                            (UdpSocket::from_std(down), UdpSocket::from_std(up))
                        else {
                            tracing::error!("a relay socket could not join the runtime");
                            continue;
                        };
                        let rng = StdRng::seed_from_u64(seed ^ ((index as u64 + 1) << 32));
                        tasks.push(tokio::spawn(relay(down, up, shape, rng, token.clone())));
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            })?;
        Ok(Relays {
            shapes,
            cancel,
            thread: Some(thread),
        })
    }

    /// Shapes both directions of every link touching node `node`.
    pub fn shape_node(&self, node: usize, shape: LinkShape) {
        for (path, current) in &self.shapes {
            if path.from == node || path.to == node {
                if let Ok(mut current) = current.lock() {
                    *current = shape;
                }
            }
        }
    }

    /// Shapes every path (from, to) that `chosen` picks.
    pub fn shape_where(&self, chosen: impl Fn(usize, usize) -> bool, shape: LinkShape) {
        for (path, current) in &self.shapes {
            if chosen(path.from, path.to) {
                if let Ok(mut current) = current.lock() {
                    *current = shape;
                }
            }
        }
    }

    /// Shapes both directions between `a` and `b`.
    #[cfg(test)]
    pub fn shape_link(&self, a: usize, b: usize, shape: LinkShape) {
        for (path, current) in &self.shapes {
            if (path.from, path.to) == (a, b) || (path.from, path.to) == (b, a) {
                if let Ok(mut current) = current.lock() {
                    *current = shape;
                }
            }
        }
    }

    /// No delay anywhere.
    pub fn heal(&self) {
        for (_, current) in &self.shapes {
            if let Ok(mut current) = current.lock() {
                *current = LinkShape::default();
            }
        }
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn relay(
    down: UdpSocket,
    up: UdpSocket,
    shape: Arc<Mutex<LinkShape>>,
    mut rng: StdRng,
    cancel: CancellationToken,
) {
    let down = Arc::new(down);
    let up = Arc::new(up);
    let held = Arc::new(Semaphore::new(DELAYED_PER_RELAY_MAX));
    let mut sender: Option<SocketAddr> = None;
    let mut from_sender = vec![0u8; DATAGRAM_SIZE_MAX];
    let mut from_target = vec![0u8; DATAGRAM_SIZE_MAX];
    // The shape is read when a datagram arrives, so a change applies from the next one;
    // `None`: dropped.
    let delay_now = |rng: &mut StdRng| {
        let current = shape.lock().map(|shape| *shape).unwrap_or_default();
        if current.loss > 0.0 && rng.random_bool(current.loss.clamp(0.0, 1.0)) {
            return None;
        }
        Some(sample_delay(current, rng))
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            received = down.recv_from(&mut from_sender) => {
                let Ok((length, from)) = received else { continue };
                sender = Some(from);
                let Some(delay) = delay_now(&mut rng) else { continue };
                let datagram = from_sender[..length].to_vec();
                let up = up.clone();
                forward(delay, &held, async move { let _ = up.send(&datagram).await; });
            }
            received = up.recv(&mut from_target) => {
                let Ok(length) = received else { continue };
                let Some(sender) = sender else { continue };
                let Some(delay) = delay_now(&mut rng) else { continue };
                let datagram = from_target[..length].to_vec();
                let down = down.clone();
                forward(delay, &held, async move { let _ = down.send_to(&datagram, sender).await; });
            }
        }
    }
}

/// Sends now, or after `delay` on a task of its own while a slot is free (else drops).
fn forward(
    delay: Duration,
    held: &Arc<Semaphore>,
    send: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if delay.is_zero() {
        tokio::spawn(send);
        return;
    }
    let Ok(permit) = held.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        send.await;
        drop(permit);
    });
}

fn sample_delay(shape: LinkShape, rng: &mut StdRng) -> Duration {
    if shape.delay.is_zero() && shape.jitter.is_zero() {
        return Duration::ZERO;
    }
    let jitter_ms = shape.jitter.as_secs_f64() * 1_000.0;
    let offset_ms = if jitter_ms > 0.0 {
        rng.random_range(-jitter_ms..=jitter_ms)
    } else {
        0.0
    };
    let delay_ms = (shape.delay.as_secs_f64() * 1_000.0 + offset_ms).max(0.0);
    Duration::from_secs_f64(delay_ms / 1_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_jitter_and_never_go_negative() {
        let mut rng = StdRng::seed_from_u64(1);
        let shape = LinkShape {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(30),
            loss: 0.0,
        };
        for _ in 0..1_000 {
            let delay = sample_delay(shape, &mut rng);
            assert!(delay <= Duration::from_millis(50), "{delay:?}");
        }
        assert_eq!(sample_delay(LinkShape::default(), &mut rng), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_relay_forwards_both_ways_with_its_delay() {
        let target = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let listen = probe.local_addr().unwrap();
        drop(probe);
        let path = RelayPath {
            from: 0,
            to: 1,
            listen,
            upstream_bind: "127.0.0.1:0".parse().unwrap(),
            target: target.local_addr().unwrap(),
        };
        let relays = Relays::start(vec![path], 7).unwrap();
        relays.shape_link(
            0,
            1,
            LinkShape {
                delay: Duration::from_millis(80),
                jitter: Duration::ZERO,
                loss: 0.0,
            },
        );
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sent = std::time::Instant::now();
        client.send_to(b"ping", listen).await.unwrap();
        let mut buffer = [0u8; 16];
        let (length, relay_side) =
            tokio::time::timeout(Duration::from_secs(5), target.recv_from(&mut buffer))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(&buffer[..length], b"ping");
        assert!(sent.elapsed() >= Duration::from_millis(80));
        target.send_to(b"pong", relay_side).await.unwrap();
        let length = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buffer[..length], b"pong");
        relays.heal();
    }
}
