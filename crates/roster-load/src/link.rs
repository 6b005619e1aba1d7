//! The sockets: [`Target`] (a resolved registrar address, and TLS settings) and [`Links`]
//! (one UDP socket, or TCP/TLS connections that reconnect), delivering [`Inbound`] events.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use roster_sip::{Frame, StreamFramer, SIP_MESSAGE_SIZE_MAX};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::client::Transmit;
use crate::config::{TargetSpec, TransportKind};
use crate::error::LoadError;

/// How long resolving the target's name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one TCP connect, or one TLS handshake, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reconnection back-off after a connection closes: from the first to the longest wait.
const RECONNECT_DELAY_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);

/// Messages received but not yet taken by the driver. A reader waits when it is full, so
/// this bounds memory; 64 Ki messages is well over a second of traffic at full speed.
const INBOUND_QUEUE_MAX: usize = 65_536;

/// UDP socket buffer sizes asked of the kernel: a burst of 4 MiB of answers (several
/// thousand) must not be dropped while the driver is busy.
const UDP_BUFFER_SIZE: usize = 4 * 1024 * 1024;

/// A registrar to send to.
#[derive(Clone)]
pub struct Target {
    /// Its address (the first the name resolved to).
    pub address: SocketAddr,
    /// The transport.
    pub transport: TransportKind,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Target {
    /// Resolves `spec`'s host and, for TLS, loads its CA. An unresolvable host or an
    /// unusable CA file is an error at once.
    pub async fn resolve(spec: &TargetSpec) -> Result<Target, LoadError> {
        let resolve_error = |reason: String| LoadError::Resolve {
            host: spec.host.clone(),
            reason,
        };
        let lookup = tokio::net::lookup_host((spec.host.as_str(), spec.port));
        let mut addresses = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
            .await
            .map_err(|_| resolve_error(format!("no answer within {RESOLVE_TIMEOUT:?}")))?
            .map_err(|error| resolve_error(error.to_string()))?;
        let address = addresses
            .next()
            .ok_or_else(|| resolve_error("no address".to_owned()))?;
        let tls = match (&spec.transport, &spec.tls_ca) {
            (TransportKind::Tls, Some(ca)) => {
                let name = spec.tls_name.clone().unwrap_or_else(|| spec.host.clone());
                Some(tls_connector(ca, &name)?)
            }
            (TransportKind::Tls, None) => {
                return Err(LoadError::flag("--tls-ca", "required with --transport tls"))
            }
            _ => None,
        };
        Ok(Target {
            address,
            transport: spec.transport,
            tls,
        })
    }
}

/// Something received, or a connection lost.
#[derive(Debug)]
pub enum Inbound {
    /// One whole message on `link`.
    Message {
        /// The link.
        link: usize,
        /// The message.
        bytes: Vec<u8>,
    },
    /// The connection of `link` closed; it reconnects in the background.
    Closed {
        /// The link.
        link: usize,
        /// Why, for logs.
        reason: String,
    },
}

/// The open links to a target; dropping it stops every task it started.
pub struct Links {
    target: SocketAddr,
    udp: Option<Arc<UdpSocket>>,
    /// Per stream link: its writer's queue. Unbounded, but it holds at most the requests of
    /// open transactions (nothing is retransmitted on streams), which `--max-outstanding`
    /// bounds.
    writers: Vec<mpsc::UnboundedSender<Vec<u8>>>,
    local: Vec<SocketAddr>,
    inbound: mpsc::Receiver<Inbound>,
    tasks: Vec<JoinHandle<()>>,
    send_errors: u64,
}

impl Links {
    /// Opens one UDP socket (on `local_port`, or any free port), or `connections` TCP/TLS
    /// connections (all of them now, so a refused connection or failed handshake is reported
    /// before the run).
    pub async fn open(
        target: &Target,
        connections: usize,
        local_port: Option<u16>,
    ) -> Result<Links, LoadError> {
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE_MAX);
        let mut links = Links {
            target: target.address,
            udp: None,
            writers: Vec::new(),
            local: Vec::new(),
            inbound,
            tasks: Vec::new(),
            send_errors: 0,
        };
        if target.transport == TransportKind::Udp {
            let socket = Arc::new(udp_socket(target.address, local_port.unwrap_or(0))?);
            let local = socket.local_addr().map_err(|error| LoadError::Socket {
                what: "UDP",
                reason: error.to_string(),
            })?;
            links.local.push(local);
            links
                .tasks
                .push(tokio::spawn(read_udp(socket.clone(), inbound_tx)));
            links.udp = Some(socket);
            return Ok(links);
        }
        for link in 0..connections {
            let stream = connect(target).await?;
            links.local.push(stream.local);
            let (writer_tx, writer_rx) = mpsc::unbounded_channel();
            links.writers.push(writer_tx);
            let connection = Connection {
                link,
                target: target.clone(),
                inbound: inbound_tx.clone(),
            };
            links
                .tasks
                .push(tokio::spawn(connection.run(stream.io, writer_rx)));
        }
        Ok(links)
    }

    /// The local address of each link (the Via sent-by and contact host).
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.local.clone()
    }

    /// How many links there are.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    /// Whether there is no link (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }

    /// Sends one message. A failure is counted, not returned: the transaction times out as
    /// if the message were lost.
    pub async fn send(&mut self, transmit: Transmit) {
        let sent = match &self.udp {
            Some(socket) => socket
                .send_to(&transmit.bytes, self.target)
                .await
                .map(|_| ()),
            None => match self.writers.get(transmit.link) {
                Some(writer) => writer
                    .send(transmit.bytes)
                    .map_err(|_| io::Error::other("connection task ended")),
                None => Err(io::Error::other("no such link")),
            },
        };
        if let Err(error) = sent {
            self.send_errors += 1;
            tracing::debug!(%error, "send failed");
        }
    }

    /// Sends that failed.
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    /// The next event; `None` once every reader has stopped.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.inbound.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        self.inbound.try_recv().ok()
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A UDP socket on the local address that routes to `target` (on `port`; 0 for any free
/// one), with large buffers.
fn udp_socket(target: SocketAddr, port: u16) -> Result<UdpSocket, LoadError> {
    let socket_error = |error: io::Error| LoadError::Socket {
        what: "UDP",
        reason: error.to_string(),
    };
    let unspecified: IpAddr = if target.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    // The address the kernel would use towards the target, so Via and Contact name it.
    let probe = std::net::UdpSocket::bind((unspecified, 0)).map_err(socket_error)?;
    probe.connect(target).map_err(socket_error)?;
    let local_ip = probe.local_addr().map_err(socket_error)?.ip();
    let domain = socket2::Domain::for_address(target);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(socket_error)?;
    // Best effort: the kernel may cap the sizes (net.core.rmem_max).
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_SIZE);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_SIZE);
    socket.set_nonblocking(true).map_err(socket_error)?;
    socket
        .bind(&SocketAddr::new(local_ip, port).into())
        .map_err(|error| LoadError::Socket {
            what: "UDP",
            reason: format!("port {port} on {local_ip}: {error}"),
        })?;
    UdpSocket::from_std(socket.into()).map_err(socket_error)
}

async fn read_udp(socket: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>) {
    let mut buffer = vec![0u8; SIP_MESSAGE_SIZE_MAX];
    loop {
        match socket.recv_from(&mut buffer).await {
            Ok((length, _)) => {
                let message = Inbound::Message {
                    link: 0,
                    bytes: buffer[..length].to_vec(),
                };
                if inbound.send(message).await.is_err() {
                    return;
                }
            }
            // ICMP errors (port unreachable) surface here on some systems; the transaction
            // times out as if nothing came back.
            Err(error) => {
                tracing::debug!(%error, "UDP receive error");
                // Never spin on a socket that keeps failing.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// A connected byte stream, TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Connected {
    io: Box<dyn Io>,
    local: SocketAddr,
}

/// Connects (and shakes hands, for TLS), each step within [`CONNECT_TIMEOUT`].
async fn connect(target: &Target) -> Result<Connected, LoadError> {
    let transport = target.transport.via_token();
    let connect_error = |reason: String| LoadError::Connect {
        target: target.address.to_string(),
        transport,
        reason,
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.address))
        .await
        .map_err(|_| connect_error(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|error| connect_error(error.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let local = tcp
        .local_addr()
        .map_err(|error| connect_error(error.to_string()))?;
    let Some((connector, name)) = &target.tls else {
        return Ok(Connected {
            io: Box::new(tcp),
            local,
        });
    };
    let handshake_error = |reason: String| LoadError::TlsHandshake {
        target: target.address.to_string(),
        reason,
    };
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
        .await
        .map_err(|_| handshake_error(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|error| handshake_error(error.to_string()))?;
    Ok(Connected {
        io: Box::new(tls),
        local,
    })
}

/// A rustls client (ring provider) trusting only the certificates in `ca`, verifying `name`.
fn tls_connector(ca: &Path, name: &str) -> Result<(TlsConnector, ServerName<'static>), LoadError> {
    let ca_error = |reason: String| LoadError::TlsCa {
        path: ca.display().to_string(),
        reason,
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|error| ca_error(error.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|error| ca_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(ca_error("no CERTIFICATE block".to_owned()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| ca_error(error.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ca_error(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
        LoadError::flag(
            "--tls-name",
            format!("{name:?} is not a DNS name or IP address"),
        )
    })?;
    Ok((TlsConnector::from(Arc::new(config)), server_name))
}

/// One stream link: reads frames into the inbound queue, writes queued messages, and
/// reconnects with back-off when the connection closes.
struct Connection {
    link: usize,
    target: Target,
    inbound: mpsc::Sender<Inbound>,
}

impl Connection {
    async fn run(self, first: Box<dyn Io>, mut writes: mpsc::UnboundedReceiver<Vec<u8>>) {
        let mut io = Some(first);
        let mut delay = RECONNECT_DELAY_FIRST;
        loop {
            let stream = match io.take() {
                Some(stream) => stream,
                None => match connect(&self.target).await {
                    Ok(connected) => {
                        delay = RECONNECT_DELAY_FIRST;
                        connected.io
                    }
                    Err(error) => {
                        tracing::debug!(link = self.link, %error, "reconnect failed");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(RECONNECT_DELAY_MAX);
                        continue;
                    }
                },
            };
            let reason = match self.serve(stream, &mut writes).await {
                Some(reason) => reason,
                // The driver dropped the writer: the run is over.
                None => return,
            };
            let closed = Inbound::Closed {
                link: self.link,
                reason,
            };
            if self.inbound.send(closed).await.is_err() {
                return;
            }
        }
    }

    /// Serves one connection until it fails (`Some(reason)`) or the writer queue closes.
    async fn serve(
        &self,
        stream: Box<dyn Io>,
        writes: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    ) -> Option<String> {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let read = async {
            let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                let length = match reader.read(&mut buffer).await {
                    Ok(0) => return "closed by the registrar".to_owned(),
                    Ok(length) => length,
                    Err(error) => return error.to_string(),
                };
                if let Err(error) = framer.push(&buffer[..length]) {
                    return error.to_string();
                }
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(bytes))) => {
                            let message = Inbound::Message {
                                link: self.link,
                                bytes,
                            };
                            if self.inbound.send(message).await.is_err() {
                                return "run over".to_owned();
                            }
                        }
                        Ok(Some(Frame::KeepAlivePing)) => {}
                        Ok(None) => break,
                        Err(error) => return error.to_string(),
                    }
                }
            }
        };
        let write = async {
            while let Some(bytes) = writes.recv().await {
                if let Err(error) = writer.write_all(&bytes).await {
                    return Some(error.to_string());
                }
            }
            None
        };
        tokio::select! {
            reason = read => Some(reason),
            reason = write => reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_target() -> Target {
        Target {
            address: SocketAddr::from(([127, 0, 0, 1], 9)),
            transport: TransportKind::Udp,
            tls: None,
        }
    }

    #[tokio::test]
    async fn a_udp_link_sends_from_the_local_port_asked_for_and_says_when_it_is_taken() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port");
        let port = taken.local_addr().expect("its address").port();
        // Taken: the error names the port.
        match Links::open(&udp_target(), 1, Some(port)).await {
            Ok(_) => panic!("port {port} is in use and must be refused"),
            Err(error) => assert!(error.to_string().contains(&port.to_string()), "{error}"),
        }
        drop(taken);
        let links = Links::open(&udp_target(), 1, Some(port))
            .await
            .expect("the port is free now");
        assert_eq!(links.local_addresses()[0].port(), port);
        // Without a port, any free one.
        let any = Links::open(&udp_target(), 1, None).await.expect("any port");
        assert_ne!(any.local_addresses()[0].port(), port);
    }
}
