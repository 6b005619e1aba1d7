//! The UDP transport: one receive loop per socket, a task per request, and the server
//! transaction layer in front of the registrar.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster_registrar::Transport;
use roster_sip::Method;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::service::{stamp_top_via, udp_response_destination, Service};
use super::transaction::{Received, TransactionTable, Transmit};
use super::SIP_MESSAGE_SIZE_MAX;
use crate::clock::monotonic_ms;
use crate::store::Store;
use crate::telemetry;

/// Requests of one UDP socket being handled at once. Past it the receive loop waits, the
/// kernel's socket buffer fills and drops: UDP clients retransmit, so that is backpressure.
/// 4,096 covers 10,000 requests/s at 400 ms each.
pub const UDP_REQUESTS_IN_FLIGHT_MAX: usize = 4_096;

/// How often the transaction timers are checked. Timer G's first interval is T1 = 500 ms;
/// 50 ms keeps retransmissions within 10% of their schedule.
const TRANSACTION_TICK: Duration = Duration::from_millis(50);

/// Serves one bound UDP socket until `shutdown`.
pub async fn serve<S: Store>(
    socket: UdpSocket,
    service: Arc<Service<S>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let socket = Arc::new(socket);
    // A `std` mutex: every section is a map operation without `.await`.
    let transactions = Arc::new(TransactionTable::default());
    tracker.spawn(retransmit_loop(
        socket.clone(),
        transactions.clone(),
        shutdown.clone(),
    ));
    let in_flight = Arc::new(Semaphore::new(UDP_REQUESTS_IN_FLIGHT_MAX));
    let mut buffer = vec![0u8; SIP_MESSAGE_SIZE_MAX + 1];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buffer) => received,
        };
        let (length, source) = match received {
            Ok(received) => received,
            Err(error) => {
                // ICMP port unreachable from an earlier send shows up here on Linux; not fatal.
                debug!(%error, "udp receive error");
                continue;
            }
        };
        if length > SIP_MESSAGE_SIZE_MAX {
            metrics::counter!(telemetry::SIP_MALFORMED).increment(1);
            continue;
        }
        let datagram = &buffer[..length];
        if datagram
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | 0))
        {
            // Keep-alive (RFC 5626 §4.4.1 uses STUN on UDP; bare CRLF is common practice).
            continue;
        }
        let Some(mut request) = service.parse_request(datagram, source) else {
            continue;
        };
        stamp_top_via(&mut request, source);
        let Some(key) = transactions.key(&request) else {
            metrics::counter!(telemetry::SIP_DROPPED).increment(1);
            continue;
        };
        let is_ack = request.method == Method::Ack;
        let verdict = match transactions.shard(&key).lock() {
            Ok(mut transactions) => transactions.on_request(&key, is_ack, monotonic_ms()),
            Err(_) => {
                warn!("transaction table lock poisoned");
                break;
            }
        };
        match verdict {
            Received::New => {}
            Received::Acknowledged => continue,
            Received::Retransmission(resend) => {
                metrics::counter!(telemetry::SIP_RETRANSMISSIONS).increment(1);
                if let Some(transmit) = resend {
                    send(&socket, &transmit).await;
                }
                continue;
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let socket = socket.clone();
        let service = service.clone();
        let transactions = transactions.clone();
        tracker.spawn(async move {
            let response = service
                .handle_request(&request, Transport::Udp, source)
                .await;
            drop(permit);
            let Some(response) = response else {
                return;
            };
            let mut encoded = Vec::with_capacity(512);
            response.encode(&mut encoded);
            let destination = udp_response_destination(&request, source);
            // Recorded before it is sent, so an ACK racing the answer finds it.
            // Timer G: final non-2xx answers to INVITE are resent until the ACK comes.
            let retransmit = request.method == Method::Invite && response.status >= 300;
            let transmit = match transactions.shard(&key).lock() {
                Ok(mut shard) => {
                    shard.on_response(&key, destination, &encoded, retransmit, monotonic_ms())
                }
                Err(_) => Transmit {
                    destination,
                    bytes: encoded.into(),
                },
            };
            send(&socket, &transmit).await;
        });
    }
}

async fn retransmit_loop(
    socket: Arc<UdpSocket>,
    transactions: Arc<TransactionTable>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(TRANSACTION_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sends = transactions.handle_timeout(monotonic_ms());
        for transmit in sends {
            send(&socket, &transmit).await;
        }
    }
}

async fn send(socket: &UdpSocket, transmit: &Transmit) {
    if let Err(error) = socket.send_to(&transmit.bytes, transmit.destination).await {
        debug!(%error, destination = %transmit.destination, "udp send failed");
    }
}

/// Kernel receive buffer asked for each SIP UDP socket: 4 MiB holds about 8,000 typical
/// requests, a quarter second at 30,000 requests/s, so a pause of the receive loop (a table
/// resize, a scheduling hiccup) does not drop datagrams and set off client retransmissions.
/// Linux caps it at net.core.rmem_max.
pub const UDP_RECEIVE_BUFFER_SIZE: usize = 4 * 1024 * 1024;

/// Binds a UDP socket at `address` with a large receive buffer.
pub async fn bind(address: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: a smaller buffer still works, it only absorbs shorter pauses.
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER_SIZE);
    let _ = socket.set_send_buffer_size(UDP_RECEIVE_BUFFER_SIZE);
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}
