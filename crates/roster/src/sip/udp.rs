//! The UDP transport: one receive loop per socket, a task per request, and the server
//! transaction layer in front of the registrar.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster_registrar::{Networks, Transport};
use roster_sip::{Method, Request, Response};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::service::{stamp_top_via, udp_response_destination, via_destination, Service};
use super::source_limit::SourceRates;
use super::transaction::{Received, TransactionKey, TransactionTable, Transmit};
use super::SIP_MESSAGE_SIZE_MAX;
use crate::clock::monotonic_ms;
use crate::store::Store;
use crate::telemetry;

/// Requests of one UDP socket being handled at once. Past it a new request is shed at once
/// with `503` and `Retry-After` (after parsing, before any other work) instead of waiting
/// while the kernel's buffer overflows. 4,096 is about 170 ms of requests at the pool's
/// clean rate of 24,000/s: the requests taken are answered before their clients' first
/// retransmission (T1, 500 ms), so no retransmission storm builds on a queue that only
/// grows, while a pause of a few tens of milliseconds (a busy machine) sheds nothing.
pub const UDP_REQUESTS_IN_FLIGHT_MAX: usize = 4_096;

/// Per-source settings of a UDP listener.
#[derive(Clone, Debug)]
pub struct UdpSettings {
    /// Requests per second one untrusted source may send (bursts of twice that).
    pub source_requests_per_s_max: u32,
    /// Sources exempt from the rate.
    pub trusted: Networks,
}

/// How often the transaction timers are checked. Timer G's first interval is T1 = 500 ms;
/// 50 ms keeps retransmissions within 10% of their schedule.
const TRANSACTION_TICK: Duration = Duration::from_millis(50);

/// Serves one bound UDP socket until `shutdown`.
pub async fn serve<S: Store>(
    socket: UdpSocket,
    service: Arc<Service<S>>,
    settings: UdpSettings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut rates = SourceRates::new(settings.source_requests_per_s_max, settings.trusted);
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
        if !rates.admit(source.ip(), monotonic_ms()) {
            // Before parsing: a flooding source costs one lookup per datagram.
            metrics::counter!(telemetry::SIP_SOURCE_LIMITED, "transport" => "udp").increment(1);
            continue;
        }
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
            if let Some(response) = service.answer_unparsable(datagram) {
                send_response(
                    &socket,
                    &response,
                    via_destination(&response.headers, source),
                )
                .await;
            }
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
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            shed(&socket, &service, &transactions, &key, &request, source).await;
            continue;
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
            if is_stateless(&request, &response) {
                forget(&transactions, &key);
                send(
                    &socket,
                    &Transmit {
                        destination,
                        bytes: encoded.into(),
                    },
                )
                .await;
                return;
            }
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

/// Whether `response` may be forgotten at once instead of kept for timer J: a final
/// non-2xx answer to a request other than INVITE changed nothing (a challenge, an error, a
/// `503`), so a retransmission handled again gets an equivalent answer. An unauthenticated
/// flood then holds no memory for 32 s per request.
fn is_stateless(request: &Request, response: &Response) -> bool {
    request.method != Method::Invite && response.status >= 300
}

fn forget(transactions: &TransactionTable, key: &TransactionKey) {
    if let Ok(mut shard) = transactions.shard(key).lock() {
        shard.forget(key);
    }
}

/// Answers `request` `503` with `Retry-After` without handling it, and keeps nothing.
async fn shed<S: Store>(
    socket: &UdpSocket,
    service: &Service<S>,
    transactions: &TransactionTable,
    key: &TransactionKey,
    request: &Request,
    source: SocketAddr,
) {
    forget(transactions, key);
    if request.method == Method::Ack {
        return;
    }
    if let Some(response) = service.answer_overloaded(request) {
        send_response(socket, &response, udp_response_destination(request, source)).await;
    }
}

async fn send_response(socket: &UdpSocket, response: &Response, destination: SocketAddr) {
    let mut encoded = Vec::with_capacity(512);
    response.encode(&mut encoded);
    send(
        socket,
        &Transmit {
            destination,
            bytes: encoded.into(),
        },
    )
    .await;
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
