//! Digest hash algorithms, HA1 and the `qop=auth` request-digest
//! (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1), and a constant-time comparison.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::AuthError;

/// How many characters of an unsupported algorithm name an error keeps, so logs stay short.
const ALGORITHM_ECHO_LENGTH_MAX: usize = 32;

/// A digest hash algorithm. Wire names are `SHA-256` and `MD5`; parsing ignores case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// SHA-256 (RFC 7616, RFC 8760), wire name `SHA-256`.
    #[serde(rename = "SHA-256", alias = "Sha256", alias = "sha-256")]
    Sha256,
    /// MD5 (RFC 2617), wire name `MD5`. The default when a response names no algorithm.
    #[serde(rename = "MD5", alias = "Md5", alias = "md5")]
    Md5,
}

impl Algorithm {
    /// The name used in `algorithm=` parameters.
    pub const fn wire_name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Lowercase hex of H(parts joined by `:`).
    pub(crate) fn hex_digest(self, parts: &[&str]) -> String {
        match self {
            Algorithm::Sha256 => hex_digest_joined::<Sha256>(parts),
            Algorithm::Md5 => hex_digest_joined::<Md5>(parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

impl FromStr for Algorithm {
    type Err = AuthError;

    fn from_str(text: &str) -> Result<Algorithm, AuthError> {
        if text.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else if text.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else {
            let echo = text.chars().take(ALGORITHM_ECHO_LENGTH_MAX).collect();
            Err(AuthError::UnsupportedAlgorithm(echo))
        }
    }
}

/// HA1 = H(username ":" realm ":" password), lowercase hex. Stored instead of passwords.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hex_digest(&[username, realm, password])
}

/// The inputs of a `qop=auth` request-digest, named so that same-typed strings cannot swap.
///
/// Clients (tests, load generators) use it to compute `response`; the authenticator uses it to
/// recompute the expected one. No `Debug`: `ha1` is a secret.
#[derive(Clone, Copy)]
pub struct ResponseParts<'a> {
    /// The user's HA1 for the algorithm, lowercase hex.
    pub ha1: &'a str,
    /// The server nonce, as sent.
    pub nonce: &'a str,
    /// The nonce count; hashed as 8 lowercase hex digits.
    pub nc: u32,
    /// The client nonce, as sent.
    pub cnonce: &'a str,
    /// The quality of protection, as sent (`auth`).
    pub qop: &'a str,
    /// The request method, e.g. `REGISTER`.
    pub method: &'a str,
    /// The digest `uri` parameter, as sent.
    pub uri: &'a str,
}

impl ResponseParts<'_> {
    /// response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri)), lowercase hex.
    pub fn digest(&self, algorithm: Algorithm) -> String {
        let ha2 = algorithm.hex_digest(&[self.method, self.uri]);
        let nc = format!("{:08x}", self.nc);
        let ha1 = self.ha1.to_ascii_lowercase();
        algorithm.hex_digest(&[&ha1, self.nonce, &nc, self.cnonce, self.qop, &ha2])
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let difference = left
        .iter()
        .zip(right)
        .fold(0u8, |accumulator, (l, r)| accumulator | (l ^ r));
    std::hint::black_box(difference) == 0
}

fn hex_digest_joined<D: Digest>(parts: &[&str]) -> String {
    let mut hasher = D::new();
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hasher.update(b":");
        }
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_known_answer() {
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let parts = ResponseParts {
            ha1: &ha1,
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            nc: 1,
            cnonce: "0a4f113b",
            qop: "auth",
            method: "GET",
            uri: "/dir/index.html",
        };
        assert_eq!(
            parts.digest(Algorithm::Md5),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn rfc7616_sha256_known_answer() {
        // RFC 7616 §3.9.1 spells the password "Circle of Life" (lowercase "of").
        let ha1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let parts = ResponseParts {
            ha1: &ha1,
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            nc: 1,
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            qop: "auth",
            method: "GET",
            uri: "/dir/index.html",
        };
        assert_eq!(
            parts.digest(Algorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn algorithm_names_round_trip_case_insensitively() {
        assert_eq!("sha-256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!("SHA-256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!("md5".parse::<Algorithm>(), Ok(Algorithm::Md5));
        assert_eq!(Algorithm::Sha256.to_string(), "SHA-256");
        assert_eq!(Algorithm::Md5.to_string(), "MD5");
        assert!(matches!(
            "MD5-sess".parse::<Algorithm>(),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
        assert!("SHA-256-sess".parse::<Algorithm>().is_err());
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
