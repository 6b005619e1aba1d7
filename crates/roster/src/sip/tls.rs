//! TLS for the SIP transport: rustls with the ring provider only, certificates from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// TLS material that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load {what} from {path}: {message}")]
    Load {
        /// "certificate chain" or "private key".
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// rustls refused the certificate and key.
    #[error("invalid TLS certificate or key: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS acceptor serving the certificate chain and key in these PEM files.
pub fn acceptor(certificate: &Path, private_key: &Path) -> Result<TlsAcceptor, TlsError> {
    let load_error = |what: &'static str, path: &Path, message: String| TlsError::Load {
        what,
        path: path.display().to_string(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| load_error("certificate chain", certificate, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| load_error("certificate chain", certificate, e.to_string()))?;
    if chain.is_empty() {
        return Err(load_error(
            "certificate chain",
            certificate,
            "no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(private_key)
        .map_err(|e| load_error("private key", private_key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A self-signed certificate and key (PEM) for `names` (DNS names or IP addresses), for the
/// demo and tests.
pub fn self_signed(names: &[String]) -> Result<(String, String), rcgen::Error> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}
