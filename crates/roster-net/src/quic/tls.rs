//! Builds the rustls and quinn configurations of a node: mutual TLS 1.3 with the cluster CA as
//! the only root, ring as the only crypto provider, no session resumption and no 0-RTT.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::QuicConfig;
use crate::pki::peer_from_certificate;

use crate::{NetError, Peer};

/// The one application protocol spoken: a peer that offers another is refused in the handshake.
pub(crate) const ALPN: &[u8] = b"roster-net/1";

/// The quinn configurations of one node, built and checked.
pub(crate) struct TlsConfigs {
    pub(crate) server: quinn::ServerConfig,
    pub(crate) client: quinn::ClientConfig,
    pub(crate) endpoint: quinn::EndpointConfig,
}

/// Builds both sides from `config`, checking that the certificate names `config.identity`.
pub(crate) fn build(config: &QuicConfig) -> Result<TlsConfigs, NetError> {
    let roots = root_store(&config.ca_cert_pem)?;
    let chain = certificate_chain(&config.cert_pem)?;
    let own = chain
        .first()
        .map(|certificate| peer_from_certificate(certificate.as_ref()))
        .ok_or_else(|| NetError::Tls("no certificate in cert_pem".into()))?
        .map_err(|error| NetError::Tls(error.to_string()))?;
    if own != config.identity {
        return Err(NetError::Tls(format!(
            "the certificate is for {own}, not {}",
            config.identity
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(config.key_pem.as_bytes())
        .map_err(|error| NetError::Tls(format!("node key: {error}")))?;
    let transport = Arc::new(transport_config(config)?);
    let mut endpoint = quinn::EndpointConfig::new(Arc::new(stateless_reset_key(&key)));
    let connection_id_key = connection_id_key(&key);
    endpoint.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(
            connection_id_key,
        ))
    });

    let server_crypto = server_crypto(Arc::clone(&roots), chain.clone(), key.clone_key())?;
    let server_crypto = QuicServerConfig::try_from(server_crypto)
        .map_err(|error| NetError::Tls(error.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(Arc::clone(&transport));
    // Peers are servers at fixed addresses; an address change means a new connection.
    server.migration(false);

    let client_crypto = client_crypto(roots, chain, key)?;
    let client_crypto = QuicClientConfig::try_from(client_crypto)
        .map_err(|error| NetError::Tls(error.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);
    Ok(TlsConfigs {
        server,
        client,
        endpoint,
    })
}

/// The key that signs QUIC stateless resets, derived from the node's private key so that it
/// survives a restart: a node that crashed and came back can then tell its peers at once that
/// their old connections are gone (RFC 9000, section 10.3), instead of leaving them to wait for
/// the idle timeout. The label keeps the derived key unrelated to any other use of the node key.
///
/// The connection-id key must survive too ([`connection_id_key`]): a node only sends a reset for
/// a packet whose connection id it recognises as one it could have issued.
fn stateless_reset_key(key: &PrivateKeyDer<'_>) -> ring::hmac::Key {
    let derived = derive(key, b"roster-net quic stateless reset key v1");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

/// The key with which connection ids are made recognisable, derived like
/// [`stateless_reset_key`] so that a restarted node recognises the ids it issued before.
fn connection_id_key(key: &PrivateKeyDer<'_>) -> u64 {
    let derived = derive(key, b"roster-net quic connection id key v1");
    let mut word = [0; 8];
    word.copy_from_slice(&derived.as_ref()[..8]);
    u64::from_le_bytes(word)
}

/// HMAC-SHA-256 of `label` under the node's private key: a secret that lasts as long as the key.
fn derive(key: &PrivateKeyDer<'_>, label: &[u8]) -> ring::hmac::Tag {
    let node_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.secret_der());
    ring::hmac::sign(&node_key, label)
}

/// The identity in the verified certificate of the other end of `connection`.
pub(crate) fn peer_identity(connection: &quinn::Connection) -> Result<Peer, NetError> {
    let identity = connection
        .peer_identity()
        .ok_or_else(|| NetError::Tls("the peer presented no certificate".into()))?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| NetError::Tls("the peer identity is not a certificate chain".into()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| NetError::Tls("the peer certificate chain is empty".into()))?;
    peer_from_certificate(leaf.as_ref()).map_err(|error| NetError::Tls(error.to_string()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(ca_cert_pem: &str) -> Result<Arc<rustls::RootCertStore>, NetError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificate_chain(ca_cert_pem)? {
        roots
            .add(certificate)
            .map_err(|error| NetError::Tls(format!("CA certificate: {error}")))?;
    }
    Ok(Arc::new(roots))
}

fn certificate_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| NetError::Tls(format!("certificate PEM: {error}")))?;
    if chain.is_empty() {
        return Err(NetError::Tls("no certificate in PEM".into()));
    }
    Ok(chain)
}

fn server_crypto(
    roots: Arc<rustls::RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, NetError> {
    let tls = |error: rustls::Error| NetError::Tls(error.to_string());
    // Every client must present a certificate chaining to the cluster CA.
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|error| NetError::Tls(error.to_string()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(tls)?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: every connection proves its certificate afresh, and a restarted node has
    // nothing to resume anyway.
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    server.max_early_data_size = 0;
    Ok(server)
}

fn client_crypto(
    roots: Arc<rustls::RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, NetError> {
    let tls = |error: rustls::Error| NetError::Tls(error.to_string());
    // Checks the chain to the cluster CA and that the certificate names the node dialled.
    let server_verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|error| NetError::Tls(error.to_string()))?;
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_webpki_verifier(server_verifier)
        .with_client_auth_cert(chain, key)
        .map_err(tls)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    client.resumption = rustls::client::Resumption::disabled();
    client.enable_early_data = false;
    Ok(client)
}

fn transport_config(config: &QuicConfig) -> Result<quinn::TransportConfig, NetError> {
    let idle_timeout = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|error| NetError::Config(format!("idle_timeout: {error}")))?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(config.streams_per_connection_max));
    // RPCs use bidirectional streams only; a peer may open no others.
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    transport.datagram_receive_buffer_size(None);
    transport.keep_alive_interval(Some(config.keep_alive_interval));
    transport.max_idle_timeout(Some(idle_timeout));
    Ok(transport)
}
