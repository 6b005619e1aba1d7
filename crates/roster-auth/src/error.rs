//! Error types: [`AuthError`] for a malformed `Authorization` value, [`ConfigError`] for a bad
//! [`crate::DigestConfig`].

use crate::authenticator::{NONCES_TRACKED_MAX, NONCE_LIFETIME_MS_MAX, REALM_LENGTH_MAX};
use crate::parse::{AUTHORIZATION_LENGTH_MAX, PARAMETERS_MAX};

/// Why a `Digest` credentials value could not be parsed.
///
/// Every variant except [`AuthError::UnsupportedAlgorithm`] means the header is syntactically
/// broken or lacks a mandatory parameter (answer `400`).
/// Messages name the problem and never echo secrets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The value is longer than [`AUTHORIZATION_LENGTH_MAX`] bytes.
    #[error("Authorization value longer than {AUTHORIZATION_LENGTH_MAX} bytes")]
    TooLong,
    /// The authentication scheme is not `Digest`.
    #[error("authorization scheme is not Digest")]
    NotDigest,
    /// A character that the grammar does not allow at this place.
    #[error("syntax error at byte {position}: expected {expected}")]
    Syntax {
        /// Byte offset into the header value.
        position: usize,
        /// What the grammar expected there.
        expected: &'static str,
    },
    /// A quoted string has no closing quote.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A known parameter appears twice.
    #[error("duplicate parameter {0}")]
    DuplicateParameter(&'static str),
    /// A mandatory parameter is absent.
    #[error("missing parameter {0}")]
    MissingParameter(&'static str),
    /// `nc` is not exactly 8 hexadecimal digits (RFC 2617 §3.2.2).
    #[error("nc is not 8 hexadecimal digits")]
    BadNonceCount,
    /// More than [`PARAMETERS_MAX`] parameters.
    #[error("more than {PARAMETERS_MAX} parameters")]
    TooManyParameters,
    /// The `algorithm` is well formed but not `MD5` or `SHA-256` (including the `-sess` variants).
    /// Holds the client's value, truncated, for logs.
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
}

/// Why a [`crate::DigestConfig`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The realm is empty, longer than [`REALM_LENGTH_MAX`], or holds `"`, `\` or a control
    /// character (it is sent inside a quoted string).
    #[error("realm must be 1..={REALM_LENGTH_MAX} bytes without '\"', '\\' or control characters")]
    Realm,
    /// No algorithm, or one listed twice.
    #[error("algorithms must be non-empty and without duplicates")]
    Algorithms,
    /// `nonce_lifetime_ms` is zero or above [`NONCE_LIFETIME_MS_MAX`].
    #[error("nonce_lifetime_ms must be in 1..={NONCE_LIFETIME_MS_MAX}")]
    NonceLifetime,
    /// `nonces_tracked_max` is zero or above [`NONCES_TRACKED_MAX`].
    #[error("nonces_tracked_max must be in 1..={NONCES_TRACKED_MAX}")]
    NoncesTracked,
}
