//! Sans-IO SIP digest authentication: RFC 8760 SHA-256 and RFC 2617 MD5 with `qop=auth`.
//!
//! The main types are [`DigestAuthenticator`], which issues `WWW-Authenticate` challenges and
//! verifies `Authorization` header values into a [`Verdict`], and [`Credentials`], a user's stored
//! HA1 hashes (never the password).
//! [`DigestResponse`] parses one `Digest` credentials header value; on the client side,
//! [`DigestChallenge`] parses a challenge and answers it.
//! [`GuessLimiter`] bounds password guesses per user and per source.
//!
//! **Architecture Invariant:** this crate does no I/O, reads no clock and draws no randomness.
//! Time (`now_ms`, milliseconds since the Unix epoch) and the nonce key are arguments.
//!
//! **Architecture Invariant:** passwords and HA1 hashes never appear in `Debug` output or in a
//! verdict's `reason`.
#![deny(missing_docs)]

mod algorithm;
mod authenticator;
mod challenge;
mod credentials;
mod error;
mod guesses;
mod nonce;
mod nonce_counts;
mod parse;

pub use algorithm::{ha1, Algorithm, ResponseParts};
pub use authenticator::{
    ChallengeMode, DigestAuthenticator, DigestConfig, Verdict, NONCES_TRACKED_DEFAULT,
    NONCES_TRACKED_MAX, NONCE_LIFETIME_MS_DEFAULT, NONCE_LIFETIME_MS_MAX, REALM_LENGTH_MAX,
};
pub use challenge::{ChallengeAnswer, DigestChallenge};
pub use credentials::Credentials;
pub use error::{AuthError, ConfigError};
pub use guesses::{
    source_prefix, Admission, GuessLimiter, GuessLimits, GuessScope, GUESSES_PER_SOURCE_DEFAULT,
    GUESSES_PER_USER_DEFAULT, GUESS_KEYS_TRACKED_MAX, GUESS_WINDOW_MS_DEFAULT, GUESS_WINDOW_MS_MAX,
};
pub use parse::{requested_algorithm, DigestResponse, AUTHORIZATION_LENGTH_MAX, PARAMETERS_MAX};
