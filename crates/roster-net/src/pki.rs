//! The cluster's own certificate authority and the node certificates it issues.
//!
//! Main types: [`Ca`] (a self-signed CA certificate and its key) and [`NodeCertificate`] (a node's
//! certificate and key, issued by [`Ca::issue_node`]). Keys are ECDSA P-256; everything crosses
//! the API as PEM text, and [`Ca::write_files`] / [`NodeCertificate::write_files`] and their
//! `read_files` counterparts move it to and from disk for the `roster cert` command.
//!
//! **How a node's identity is carried**: a node certificate holds exactly one DNS subject
//! alternative name of the form `node-<node>.pool-<pool>.roster.invalid` ([`node_server_name`]),
//! with both ids in decimal without leading zeros: the node's [`Peer`]. The `.invalid` top-level
//! domain is reserved (RFC 6761) and never resolves, so the name cannot collide with a real host
//! and is only meaningful inside the deployment. A client dials node `n` of pool `p` with the
//! server name `node-<n>.pool-<p>.roster.invalid`, so rustls' standard name check proves it
//! reached that node of that pool; a server reads the client's identity back from the verified
//! certificate with [`peer_from_certificate`]. [`Ca::issue_node`] refuses extra addresses under
//! `roster.invalid`, so one certificate can never name two nodes, and a name in that domain that
//! does not parse (such as `node-<id>.roster.invalid`, which names no pool) is refused.
//!
//! **A witness** (a process in a third site that both pools of a pair send heartbeats to) is named
//! `witness-<id>.roster.invalid` ([`Ca::issue_witness`]): its [`Peer`] is node `id` of
//! [`WITNESS_POOL`], a pool id no pool has, so a witness certificate can never pass for a node of
//! a pool, nor a node's for the witness (`node-<n>.pool-0.roster.invalid` is refused).
//!
//! **Architecture Invariant**: a peer's identity is only ever taken from a certificate that
//! rustls has verified against the deployment's CA; this module parses names, it does not decide
//! trust.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::CertificateDer;

use roster_topology::{NodeId, PoolId, WITNESS_POOL};

use crate::Peer;

/// The domain under which node names live: `node-<node>.pool-<pool>` followed by this suffix.
pub const NODE_NAME_SUFFIX: &str = ".roster.invalid";

/// How long a new CA certificate is valid, in days: 20 years, about the life of a deployment.
pub const CA_VALIDITY_DAYS: u32 = 20 * 365;

/// How long a new node certificate is valid, in days: 5 years, within the CA's life.
pub const NODE_VALIDITY_DAYS: u32 = 5 * 365;

// A node certificate must not outlive the CA that signed it.
const _: () = assert!(NODE_VALIDITY_DAYS <= CA_VALIDITY_DAYS);

/// Most extra addresses (IP addresses or DNS names) in one node certificate. A node has a few
/// interfaces; 32 leaves room and keeps certificates small.
pub const NODE_ADDRESS_COUNT_MAX: usize = 32;

/// Longest cluster name in bytes: the X.509 upper bound for an organization name.
pub const CLUSTER_NAME_SIZE_MAX: usize = 64;

/// Largest PEM file read from disk in bytes. A certificate or key is a few kilobytes; the bound
/// keeps a wrong path (a log file, a device) from being read into memory.
pub const PEM_FILE_SIZE_MAX: u64 = 1024 * 1024;

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// An argument is out of its bounds, such as an empty cluster name or a reserved address.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Generating or signing a certificate or key failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// A certificate or key could not be parsed, or they do not match.
    #[error("cannot parse certificate or key: {0}")]
    Parse(String),
    /// A certificate does not chain to a trusted CA, or is not valid now.
    #[error("certificate not trusted: {0}")]
    Untrusted(String),
    /// The certificate carries no node identity, or more than one.
    #[error("certificate does not identify exactly one node: {0}")]
    NoNodeId(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The cluster's certificate authority: a self-signed CA certificate and its private key.
///
/// The CA signs node certificates only (path length 0). Its key is the cluster's root secret:
/// keep [`Ca::key_pem`] off the nodes where possible; nodes need only [`Ca::cert_pem`].
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A node's certificate, issued by the cluster [`Ca`], and its private key.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCertificate {
    /// The node the certificate names: its pool and id.
    pub peer: Peer,
    /// The certificate in PEM.
    pub cert_pem: String,
    /// The private key in PEM (PKCS#8).
    pub key_pem: String,
}

/// The DNS name that carries `peer` in a certificate: `node-<node>.pool-<pool>.roster.invalid`,
/// or `witness-<node>.roster.invalid` for a witness (pool [`WITNESS_POOL`]).
pub fn node_server_name(peer: Peer) -> String {
    if peer.pool == WITNESS_POOL {
        return format!("witness-{}{NODE_NAME_SUFFIX}", peer.node);
    }
    format!("node-{}.pool-{}{NODE_NAME_SUFFIX}", peer.node, peer.pool)
}

/// The node and pool in a name made by [`node_server_name`], or `None` for any other name.
///
/// Case-insensitive, like DNS; both ids must be canonical decimal (no sign, no leading zeros)
/// and in range, so each identity has exactly one name.
pub fn parse_node_server_name(name: &str) -> Option<Peer> {
    let name = name.to_ascii_lowercase();
    let labels = name.strip_suffix(NODE_NAME_SUFFIX)?;
    if let Some(digits) = labels.strip_prefix("witness-") {
        let node: NodeId = canonical_decimal(digits)?;
        return Some(Peer {
            pool: WITNESS_POOL,
            node,
        });
    }
    let (node_label, pool_label) = labels.split_once('.')?;
    let node: NodeId = canonical_decimal(node_label.strip_prefix("node-")?)?;
    let pool: PoolId = canonical_decimal(pool_label.strip_prefix("pool-")?)?;
    // Pool 0 is the witness's, named only by the witness form.
    (pool != WITNESS_POOL).then_some(Peer { pool, node })
}

/// The number `digits` spells in canonical decimal: ASCII digits only, no leading zero.
fn canonical_decimal<T: std::str::FromStr>(digits: &str) -> Option<T> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The node identity carried by a DER certificate: its one
/// `node-<node>.pool-<pool>.roster.invalid` DNS name.
///
/// Any other name under `roster.invalid` makes the certificate invalid, so a certificate of the
/// older form `node-<id>.roster.invalid` (no pool) is refused with a message that says so.
/// This only parses. Call it on a certificate that has been verified against the cluster CA.
pub fn peer_from_certificate(certificate_der: &[u8]) -> Result<Peer, PkiError> {
    let der = CertificateDer::from(certificate_der);
    let certificate = webpki::EndEntityCert::try_from(&der)
        .map_err(|error| PkiError::Parse(format!("{error:?}")))?;
    let mut found: Option<Peer> = None;
    for name in certificate.valid_dns_names() {
        let lowercase = name.to_ascii_lowercase();
        let in_namespace = lowercase.ends_with(NODE_NAME_SUFFIX);
        match (parse_node_server_name(name), found) {
            (Some(peer), None) => found = Some(peer),
            (Some(peer), Some(previous)) if peer == previous => {}
            (Some(_), Some(_)) => {
                return Err(PkiError::NoNodeId("it names more than one node".into()));
            }
            (None, _) if in_namespace => return Err(malformed_name(name)),
            (None, _) => {}
        }
    }
    found.ok_or_else(|| {
        PkiError::NoNodeId(format!(
            "no DNS name of the form node-<node>.pool-<pool>{NODE_NAME_SUFFIX}"
        ))
    })
}

/// The error for a name under `roster.invalid` that is not a node name, telling a name of the
/// form before pools (`node-<id>.roster.invalid`) apart.
fn malformed_name(name: &str) -> PkiError {
    let lowercase = name.to_ascii_lowercase();
    let without_pool = lowercase
        .strip_suffix(NODE_NAME_SUFFIX)
        .and_then(|label| label.strip_prefix("node-"))
        .is_some_and(|digits| canonical_decimal::<NodeId>(digits).is_some());
    if without_pool {
        return PkiError::NoNodeId(format!(
            "node name {name:?} names no pool (a certificate issued before node certificates \
             carried the pool); issue a new one for node-<node>.pool-<pool>{NODE_NAME_SUFFIX}"
        ));
    }
    PkiError::NoNodeId(format!("malformed node name {name:?}"))
}

impl Ca {
    /// Generates a new CA for the cluster `cluster_name` (1 to [`CLUSTER_NAME_SIZE_MAX`] bytes of
    /// printable text), valid for [`CA_VALIDITY_DAYS`] from yesterday.
    pub fn generate(cluster_name: &str) -> Result<Ca, PkiError> {
        check_cluster_name(cluster_name)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = ca_distinguished_name(cluster_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY_DAYS);
        let key = KeyPair::generate().map_err(generate_error)?;
        let certificate = params.self_signed(&key).map_err(generate_error)?;
        let key_pem = key.serialize_pem();
        Ok(Ca {
            cert_pem: certificate.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and private key in PEM, checking that they match.
    ///
    /// `cert_pem` may be a bundle of several CA certificates (during a CA rotation a deployment
    /// trusts the old CA and the new one): the CA is the one certificate the key belongs to.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(parse_error)?;
        let bundle = split_certificates(cert_pem)?;
        let count = bundle.len();
        let mut matching = None;
        for single_pem in bundle {
            let certificate_der = single_certificate_der(&single_pem)?;
            let certificate = webpki::EndEntityCert::try_from(&certificate_der)
                .map_err(|error| PkiError::Parse(format!("{error:?}")))?;
            if certificate.subject_public_key_info().as_ref() == key.subject_public_key_info() {
                matching = Some((single_pem, certificate_der));
                break;
            }
        }
        let Some((single_pem, certificate_der)) = matching else {
            return Err(PkiError::Parse(match count {
                1 => "the CA key does not belong to the CA certificate".into(),
                _ => format!("the CA key belongs to none of the {count} CA certificates"),
            }));
        };
        let issuer = Issuer::from_ca_cert_der(&certificate_der, key).map_err(parse_error)?;
        Ok(Ca {
            cert_pem: single_pem,
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// Reads a CA from its certificate and key files (see [`Ca::write_files`]).
    pub fn read_files(cert_path: &Path, key_path: &Path) -> Result<Ca, PkiError> {
        Ca::from_pem(&read_pem_file(cert_path)?, &read_pem_file(key_path)?)
    }

    /// Writes the certificate and the key to two new files; the key file is readable by its
    /// owner only. Refuses to overwrite an existing file, so a CA key is never lost by mistake.
    pub fn write_files(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        write_pem_file(cert_path, &self.cert_pem, FileSecrecy::Public)?;
        write_pem_file(key_path, &self.key_pem, FileSecrecy::Secret)
    }

    /// The CA certificate in PEM: the trust root every node is configured with.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a certificate for node `peer.node` of pool `peer.pool`, valid for
    /// [`NODE_VALIDITY_DAYS`] from yesterday, for both server and client authentication.
    ///
    /// `addresses` are extra names for the node: each is an IP address or a DNS name, at most
    /// [`NODE_ADDRESS_COUNT_MAX`] of them. Names under `roster.invalid` are refused, since they
    /// would let the certificate claim another node's identity.
    pub fn issue_node<I, S>(&self, peer: Peer, addresses: I) -> Result<NodeCertificate, PkiError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if peer.pool == WITNESS_POOL {
            return Err(PkiError::Invalid(format!(
                "pool {WITNESS_POOL} is the witness's: issue its certificate with issue_witness"
            )));
        }
        self.issue(peer, addresses)
    }

    /// Issues the certificate of witness `id` (`witness-<id>.roster.invalid`, node `id` of
    /// [`WITNESS_POOL`]), as [`Ca::issue_node`] does a node's.
    pub fn issue_witness<I, S>(&self, id: NodeId, addresses: I) -> Result<NodeCertificate, PkiError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.issue(
            Peer {
                pool: WITNESS_POOL,
                node: id,
            },
            addresses,
        )
    }

    fn issue<I, S>(&self, peer: Peer, addresses: I) -> Result<NodeCertificate, PkiError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let server_name = node_server_name(peer);
        let mut names = vec![dns_name(&server_name)?];
        for address in addresses {
            if names.len() > NODE_ADDRESS_COUNT_MAX {
                return Err(PkiError::Invalid(format!(
                    "more than {NODE_ADDRESS_COUNT_MAX} addresses"
                )));
            }
            names.push(address_name(address.as_ref())?);
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = names;
        let mut distinguished_name = DistinguishedName::new();
        distinguished_name.push(DnType::CommonName, server_name);
        params.distinguished_name = distinguished_name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, NODE_VALIDITY_DAYS);
        let key = KeyPair::generate().map_err(generate_error)?;
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_error)?;
        Ok(NodeCertificate {
            peer,
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

impl NodeCertificate {
    /// Builds a node certificate from PEM, taking the node's identity from the certificate and
    /// checking that the key belongs to it. Does not check the issuer: the TLS handshake does.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<NodeCertificate, PkiError> {
        let certificate_der = single_certificate_der(cert_pem)?;
        let peer = peer_from_certificate(certificate_der.as_ref())?;
        let key = KeyPair::from_pem(key_pem).map_err(parse_error)?;
        let certificate = webpki::EndEntityCert::try_from(&certificate_der)
            .map_err(|error| PkiError::Parse(format!("{error:?}")))?;
        if certificate.subject_public_key_info().as_ref() != key.subject_public_key_info() {
            return Err(PkiError::Parse(
                "the node key does not belong to the node certificate".into(),
            ));
        }
        Ok(NodeCertificate {
            peer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// Reads a node certificate and key from files (see [`NodeCertificate::write_files`]).
    pub fn read_files(cert_path: &Path, key_path: &Path) -> Result<NodeCertificate, PkiError> {
        NodeCertificate::from_pem(&read_pem_file(cert_path)?, &read_pem_file(key_path)?)
    }

    /// Writes the certificate and the key to two new files; the key file is readable by its
    /// owner only. Refuses to overwrite an existing file.
    pub fn write_files(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        write_pem_file(cert_path, &self.cert_pem, FileSecrecy::Public)?;
        write_pem_file(key_path, &self.key_pem, FileSecrecy::Secret)
    }
}

impl std::fmt::Debug for NodeCertificate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NodeCertificate")
            .field("peer", &self.peer)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

/// Most CA certificates a node trusts at once: the deployment's CA, and during a rotation the
/// next one (`roster cert rotate`); a few more leave room for an operator's own steps.
pub const TRUSTED_CA_COUNT_MAX: usize = 8;

/// The certificates of a PEM bundle, each as PEM of its own (its `BEGIN`/`END CERTIFICATE`
/// block), in the bundle's order; text between the blocks (comments) is dropped. Refuses an
/// empty bundle, a block that does not parse, and more than [`TRUSTED_CA_COUNT_MAX`] blocks.
pub fn split_certificates(bundle_pem: &str) -> Result<Vec<String>, PkiError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certificates = Vec::new();
    let mut block: Option<String> = None;
    for line in bundle_pem.lines().map(str::trim) {
        match block.as_mut() {
            None if line == BEGIN => block = Some(format!("{BEGIN}\n")),
            None => {}
            Some(text) => {
                text.push_str(line);
                text.push('\n');
                if line == END {
                    if certificates.len() == TRUSTED_CA_COUNT_MAX {
                        return Err(PkiError::Invalid(format!(
                            "more than {TRUSTED_CA_COUNT_MAX} certificates in one bundle"
                        )));
                    }
                    let text = block.take().unwrap_or_default();
                    single_certificate_der(&text)?;
                    certificates.push(text);
                }
            }
        }
    }
    if block.is_some() {
        return Err(PkiError::Parse(format!("a certificate without {END}")));
    }
    if certificates.is_empty() {
        return Err(PkiError::Parse("no certificate in PEM".into()));
    }
    Ok(certificates)
}

/// Checks that the node certificate `node_cert_pem` is valid now and chains to one of the CA
/// certificates of `ca_bundle_pem`, exactly as the node's peers check it in the TLS handshake
/// (rustls' WebPKI verifier for the node's own name); returns the node it names.
pub fn verify_node_certificate(ca_bundle_pem: &str, node_cert_pem: &str) -> Result<Peer, PkiError> {
    let certificate_der = single_certificate_der(node_cert_pem)?;
    let peer = peer_from_certificate(certificate_der.as_ref())?;
    let mut roots = rustls::RootCertStore::empty();
    for single_pem in split_certificates(ca_bundle_pem)? {
        roots
            .add(single_certificate_der(&single_pem)?)
            .map_err(|error| PkiError::Parse(format!("CA certificate: {error}")))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .map_err(|error| PkiError::Parse(error.to_string()))?;
    let server_name = rustls::pki_types::ServerName::try_from(node_server_name(peer))
        .map_err(|error| PkiError::Parse(error.to_string()))?;
    let now = rustls::pki_types::UnixTime::now();
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &certificate_der,
        &[],
        &server_name,
        &[],
        now,
    )
    .map_err(|error| PkiError::Untrusted(error.to_string()))?;
    Ok(peer)
}

/// Reads a PEM file of at most [`PEM_FILE_SIZE_MAX`] bytes, such as the CA certificate a node
/// is configured with.
pub fn read_pem_file(path: &Path) -> Result<String, PkiError> {
    let io_error = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io_error)?;
    let mut text = String::new();
    // Read one byte past the bound to tell a file of exactly the bound from a larger one.
    file.take(PEM_FILE_SIZE_MAX + 1)
        .read_to_string(&mut text)
        .map_err(io_error)?;
    if text.len() as u64 > PEM_FILE_SIZE_MAX {
        return Err(PkiError::Invalid(format!(
            "{}: larger than {PEM_FILE_SIZE_MAX} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// Whether a file written by [`write_pem_file`] holds a secret.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileSecrecy {
    Public,
    Secret,
}

fn write_pem_file(path: &Path, text: &str, secrecy: FileSecrecy) -> Result<(), PkiError> {
    let io_error = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(match secrecy {
            FileSecrecy::Public => 0o644,
            FileSecrecy::Secret => 0o600,
        });
    }
    #[cfg(not(unix))]
    let _ = secrecy;
    let mut file = options.open(path).map_err(io_error)?;
    file.write_all(text.as_bytes()).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

fn single_certificate_der(cert_pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    let mut certificates = CertificateDer::pem_slice_iter(cert_pem.as_bytes());
    let first = certificates
        .next()
        .ok_or_else(|| PkiError::Parse("no certificate in PEM".into()))?
        .map_err(|error| PkiError::Parse(error.to_string()))?;
    if certificates.next().is_some() {
        return Err(PkiError::Parse("more than one certificate in PEM".into()));
    }
    Ok(first)
}

fn check_cluster_name(cluster_name: &str) -> Result<(), PkiError> {
    if cluster_name.is_empty() || cluster_name.len() > CLUSTER_NAME_SIZE_MAX {
        return Err(PkiError::Invalid(format!(
            "cluster name must be 1 to {CLUSTER_NAME_SIZE_MAX} bytes"
        )));
    }
    if cluster_name.chars().any(char::is_control) {
        return Err(PkiError::Invalid(
            "cluster name has control characters".into(),
        ));
    }
    Ok(())
}

fn ca_distinguished_name(cluster_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, cluster_name);
    name.push(DnType::CommonName, "Roster cluster CA");
    name
}

fn dns_name(name: &str) -> Result<SanType, PkiError> {
    let name = rcgen::string::Ia5String::try_from(name)
        .map_err(|error| PkiError::Invalid(format!("{name:?}: {error}")))?;
    Ok(SanType::DnsName(name))
}

fn address_name(address: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let lowercase = address.to_ascii_lowercase();
    let reserved = NODE_NAME_SUFFIX.trim_start_matches('.');
    if lowercase == reserved || lowercase.ends_with(NODE_NAME_SUFFIX) {
        return Err(PkiError::Invalid(format!(
            "{address:?} is under the reserved domain {reserved}"
        )));
    }
    if address.is_empty() || !address.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(PkiError::Invalid(format!(
            "{address:?} is neither an IP address nor a DNS name"
        )));
    }
    dns_name(address)
}

/// Valid from yesterday (so a peer whose clock is a little behind accepts it) for `days`.
fn set_validity(params: &mut CertificateParams, days: u32) {
    let today = days_since_epoch_today();
    let (year, month, day) = civil_from_days(today - 1);
    params.not_before = rcgen::date_time_ymd(year, month, day);
    let (year, month, day) = civil_from_days(today + i64::from(days));
    params.not_after = rcgen::date_time_ymd(year, month, day);
}

fn days_since_epoch_today() -> i64 {
    // A clock before 1970 is a broken host; day 0 still yields valid, if early, dates.
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    (seconds / 86_400) as i64
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u8;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u8;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

fn generate_error(error: rcgen::Error) -> PkiError {
    PkiError::Generate(error.to_string())
}

fn parse_error(error: rcgen::Error) -> PkiError {
    PkiError::Parse(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate_der(cert_pem: &str) -> CertificateDer<'static> {
        single_certificate_der(cert_pem).unwrap()
    }

    const PEER: Peer = Peer { pool: 2, node: 7 };

    #[test]
    fn node_name_round_trips_and_is_canonical() {
        for node in [0, 1, 42, u64::MAX] {
            for pool in [0, 1, 2, u16::MAX] {
                let peer = Peer { pool, node };
                assert_eq!(parse_node_server_name(&node_server_name(peer)), Some(peer));
            }
        }
        assert_eq!(node_server_name(PEER), "node-7.pool-2.roster.invalid");
        assert_eq!(
            parse_node_server_name("NODE-7.Pool-2.Roster.Invalid"),
            Some(PEER)
        );
        for name in [
            "node-7.roster.invalid",
            "node-.pool-2.roster.invalid",
            "node-7.pool-.roster.invalid",
            "node-07.pool-2.roster.invalid",
            "node-7.pool-02.roster.invalid",
            "node-+7.pool-2.roster.invalid",
            "node-7.pool--2.roster.invalid",
            "node-7.pool-2.roster.example",
            "node-18446744073709551616.pool-2.roster.invalid",
            "node-7.pool-65536.roster.invalid",
            "node-7.pool-2.x.roster.invalid",
            "pool-2.node-7.roster.invalid",
            "xnode-7.pool-2.roster.invalid",
            "node-7.xpool-2.roster.invalid",
            "node-7.pool-0.roster.invalid",
            "witness-07.roster.invalid",
            "witness-7.pool-2.roster.invalid",
        ] {
            assert_eq!(parse_node_server_name(name), None, "{name}");
        }
    }

    #[test]
    fn issued_certificate_carries_node_and_pool() {
        let ca = Ca::generate("test cluster").unwrap();
        let node = ca
            .issue_node(PEER, ["127.0.0.1", "registrar-1.example.com"])
            .unwrap();
        assert_eq!(node.peer, PEER);
        let der = certificate_der(&node.cert_pem);
        assert_eq!(peer_from_certificate(der.as_ref()).unwrap(), PEER);
        let parsed = NodeCertificate::from_pem(&node.cert_pem, &node.key_pem).unwrap();
        assert_eq!(parsed, node);
    }

    #[test]
    fn a_witness_is_named_as_one_and_only_by_issue_witness() {
        let ca = Ca::generate("test cluster").unwrap();
        let witness = ca.issue_witness(100, ["127.0.0.7"]).unwrap();
        let expected = Peer {
            pool: WITNESS_POOL,
            node: 100,
        };
        assert_eq!(witness.peer, expected);
        assert_eq!(node_server_name(expected), "witness-100.roster.invalid");
        let der = certificate_der(&witness.cert_pem);
        assert_eq!(peer_from_certificate(der.as_ref()).unwrap(), expected);
        let refused = ca.issue_node(expected, ["127.0.0.7"]).unwrap_err();
        assert!(refused.to_string().contains("witness"), "{refused}");
    }

    /// A certificate signed by the CA but naming a node the way certificates did before pools
    /// (`node-<id>.roster.invalid`), or with another malformed name in the reserved domain, or
    /// two different nodes, identifies no node.
    #[test]
    fn certificates_without_exactly_one_well_formed_node_name_are_refused() {
        let ca = Ca::generate("test cluster").unwrap();
        let sign = |names: &[&str]| {
            let mut params = CertificateParams::default();
            params.subject_alt_names = names.iter().map(|name| dns_name(name).unwrap()).collect();
            let key = KeyPair::generate().unwrap();
            params.signed_by(&key, &ca.issuer).unwrap().pem()
        };
        let refused = |names: &[&str]| {
            let der = certificate_der(&sign(names));
            match peer_from_certificate(der.as_ref()) {
                Err(PkiError::NoNodeId(reason)) => reason,
                other => panic!("{names:?}: {other:?}"),
            }
        };
        let reason = refused(&["node-7.roster.invalid"]);
        assert!(reason.contains("names no pool"), "{reason}");
        let reason = refused(&[
            "node-7.pool-2.roster.invalid",
            "node-07.pool-2.roster.invalid",
        ]);
        assert!(reason.contains("malformed"), "{reason}");
        let reason = refused(&[
            "node-7.pool-2.roster.invalid",
            "node-7.pool-3.roster.invalid",
        ]);
        assert!(reason.contains("more than one"), "{reason}");
        let reason = refused(&["registrar.example.com"]);
        assert!(reason.contains("no DNS name"), "{reason}");
        // The same name twice is one node.
        let der = certificate_der(&sign(&[
            "node-7.pool-2.roster.invalid",
            "NODE-7.POOL-2.ROSTER.INVALID",
            "registrar.example.com",
        ]));
        assert_eq!(peer_from_certificate(der.as_ref()).unwrap(), PEER);
    }

    #[test]
    fn reserved_addresses_are_refused() {
        let ca = Ca::generate("test cluster").unwrap();
        for address in [
            "node-8.pool-2.roster.invalid",
            "node-7.pool-3.roster.invalid",
            "node-8.roster.invalid",
            "ROSTER.INVALID",
            "x.roster.invalid",
            "a b",
        ] {
            assert!(
                matches!(ca.issue_node(PEER, [address]), Err(PkiError::Invalid(_))),
                "{address}"
            );
        }
        let too_many: Vec<String> = (0..=NODE_ADDRESS_COUNT_MAX)
            .map(|index| format!("10.0.0.{index}"))
            .collect();
        assert!(ca.issue_node(PEER, &too_many).is_err());
    }

    #[test]
    fn ca_reloaded_from_pem_issues_certificates_under_the_same_name() {
        let ca = Ca::generate("test cluster").unwrap();
        let reloaded = Ca::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let node = reloaded
            .issue_node(Peer { pool: 1, node: 3 }, Vec::<String>::new())
            .unwrap();
        let ca_der = certificate_der(ca.cert_pem());
        let ca_certificate = webpki::EndEntityCert::try_from(&ca_der).unwrap();
        let node_der = certificate_der(&node.cert_pem);
        let node_certificate = webpki::EndEntityCert::try_from(&node_der).unwrap();
        assert_eq!(node_certificate.issuer(), ca_certificate.subject());
    }

    /// During a CA rotation `ca.pem` holds the old and the new CA: the key picks the one that
    /// signs, and a node certificate from either verifies against the bundle, not against a
    /// bundle without its CA.
    #[test]
    fn a_bundle_of_two_cas_signs_with_the_key_and_trusts_both() {
        let old = Ca::generate("rotation").unwrap();
        let new = Ca::generate("rotation").unwrap();
        let bundle = format!("# old\n{}\n# new\n{}", old.cert_pem(), new.cert_pem());
        let split = split_certificates(&bundle).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(
            single_certificate_der(&split[1]).unwrap(),
            certificate_der(new.cert_pem())
        );
        let signer = Ca::from_pem(&bundle, new.key_pem()).unwrap();
        assert_eq!(
            certificate_der(signer.cert_pem()),
            certificate_der(new.cert_pem())
        );
        let from_new = signer.issue_node(PEER, ["10.0.0.7"]).unwrap();
        let from_old = old.issue_node(PEER, ["10.0.0.7"]).unwrap();
        for node in [&from_new, &from_old] {
            assert_eq!(
                verify_node_certificate(&bundle, &node.cert_pem).unwrap(),
                PEER
            );
        }
        assert!(verify_node_certificate(new.cert_pem(), &from_new.cert_pem).is_ok());
        match verify_node_certificate(new.cert_pem(), &from_old.cert_pem) {
            Err(PkiError::Untrusted(_)) => {}
            other => panic!("{other:?}"),
        }
        let stranger = Ca::generate("other").unwrap();
        let error = Ca::from_pem(&bundle, stranger.key_pem()).unwrap_err();
        assert!(error.to_string().contains("none of the 2"), "{error}");
    }

    #[test]
    fn bundles_are_bounded_and_whole() {
        let ca = Ca::generate("bounded").unwrap();
        let full = ca.cert_pem().repeat(TRUSTED_CA_COUNT_MAX);
        assert_eq!(
            split_certificates(&full).unwrap().len(),
            TRUSTED_CA_COUNT_MAX
        );
        let over = ca.cert_pem().repeat(TRUSTED_CA_COUNT_MAX + 1);
        assert!(matches!(
            split_certificates(&over),
            Err(PkiError::Invalid(_))
        ));
        let cut = ca
            .cert_pem()
            .trim_end()
            .trim_end_matches("-----END CERTIFICATE-----");
        assert!(matches!(split_certificates(cut), Err(PkiError::Parse(_))));
        assert!(matches!(
            split_certificates("# nothing"),
            Err(PkiError::Parse(_))
        ));
    }

    #[test]
    fn ca_with_foreign_key_is_refused() {
        let ca = Ca::generate("one").unwrap();
        let other = Ca::generate("two").unwrap();
        assert!(Ca::from_pem(ca.cert_pem(), other.key_pem()).is_err());
        let node = ca.issue_node(PEER, ["127.0.0.1"]).unwrap();
        assert!(NodeCertificate::from_pem(&node.cert_pem, other.key_pem()).is_err());
    }

    #[test]
    fn files_round_trip_and_are_not_overwritten() {
        let directory = std::env::temp_dir().join(format!(
            "roster-net-pki-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&directory);
        fs::create_dir_all(&directory).unwrap();
        let ca = Ca::generate("files").unwrap();
        let (ca_cert, ca_key) = (directory.join("ca.pem"), directory.join("ca.key"));
        ca.write_files(&ca_cert, &ca_key).unwrap();
        assert!(matches!(
            ca.write_files(&ca_cert, &ca_key),
            Err(PkiError::Io { .. })
        ));
        let ca = Ca::read_files(&ca_cert, &ca_key).unwrap();
        let node = ca.issue_node(PEER, ["::1"]).unwrap();
        let (node_cert, node_key) = (directory.join("node-2.pem"), directory.join("node-2.key"));
        node.write_files(&node_cert, &node_key).unwrap();
        assert_eq!(
            NodeCertificate::read_files(&node_cert, &node_key).unwrap(),
            node
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&node_key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");
        }
        fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
