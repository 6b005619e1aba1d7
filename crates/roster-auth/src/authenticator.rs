//! [`DigestAuthenticator`]: issues `WWW-Authenticate` challenges and turns `Authorization`
//! values into a [`Verdict`]; [`DigestConfig`] configures it.

use std::fmt;

use hmac::Mac;

use crate::algorithm::{constant_time_eq, Algorithm, ResponseParts};
use crate::credentials::Credentials;
use crate::error::{AuthError, ConfigError};
use crate::nonce::{NonceId, NonceMac};
use crate::nonce_counts::{CountRefusal, NonceCounts};
use crate::parse::DigestResponse;

/// Default [`DigestConfig::nonce_lifetime_ms`]: five minutes, long enough for a REGISTER
/// round trip and its retransmissions, short enough to limit a captured nonce's use.
pub const NONCE_LIFETIME_MS_DEFAULT: u64 = 300_000;

/// Bound on [`DigestConfig::nonce_lifetime_ms`]: one day. Past that a nonce is a long-lived
/// credential, and the nonce-count table would have to remember it as long.
pub const NONCE_LIFETIME_MS_MAX: u64 = 86_400_000;

/// Default [`DigestConfig::nonces_tracked_max`]: 100 000 nonces, a few MiB.
pub const NONCES_TRACKED_DEFAULT: usize = 100_000;

/// Bound on [`DigestConfig::nonces_tracked_max`]: ten million entries is about half a GiB,
/// the most one registrar node should spend on replay protection.
pub const NONCES_TRACKED_MAX: usize = 10_000_000;

/// Bound on the realm's length in bytes; realms are host names or short labels.
pub const REALM_LENGTH_MAX: usize = 256;

/// Digest settings. Build with [`DigestConfig::new`] and check with [`DigestConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestConfig {
    /// The protection space sent in challenges and required in responses.
    /// No default; 1..=[`REALM_LENGTH_MAX`] bytes without `"`, `\` or control characters.
    pub realm: String,
    /// Algorithms challenged, in order, preferred first (RFC 8760 §2.4), and the only ones
    /// accepted. Default `[Sha256, Md5]`; non-empty, no duplicates.
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays valid; older ones get [`Verdict::Stale`].
    /// Default [`NONCE_LIFETIME_MS_DEFAULT`]; 1..=[`NONCE_LIFETIME_MS_MAX`].
    pub nonce_lifetime_ms: u64,
    /// Bound of the nonce-count table.
    /// Default [`NONCES_TRACKED_DEFAULT`]; 1..=[`NONCES_TRACKED_MAX`].
    pub nonces_tracked_max: usize,
}

impl DigestConfig {
    /// The defaults for `realm`.
    pub fn new(realm: impl Into<String>) -> DigestConfig {
        DigestConfig {
            realm: realm.into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_lifetime_ms: NONCE_LIFETIME_MS_DEFAULT,
            nonces_tracked_max: NONCES_TRACKED_DEFAULT,
        }
    }

    /// Checks every field against its documented bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let realm_ok = !self.realm.is_empty()
            && self.realm.len() <= REALM_LENGTH_MAX
            && !self
                .realm
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control());
        if !realm_ok {
            return Err(ConfigError::Realm);
        }
        let duplicates = self
            .algorithms
            .iter()
            .enumerate()
            .any(|(index, a)| self.algorithms[..index].contains(a));
        if self.algorithms.is_empty() || duplicates {
            return Err(ConfigError::Algorithms);
        }
        if !(1..=NONCE_LIFETIME_MS_MAX).contains(&self.nonce_lifetime_ms) {
            return Err(ConfigError::NonceLifetime);
        }
        if !(1..=NONCES_TRACKED_MAX).contains(&self.nonces_tracked_max) {
            return Err(ConfigError::NoncesTracked);
        }
        Ok(())
    }
}

/// The outcome of [`DigestAuthenticator::verify`].
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Credentials are good. `username` as sent.
    Authenticated {
        /// The digest `username`, as sent; the caller maps it to an AOR.
        username: String,
    },
    /// Good response but the nonce is expired (or was forgotten by a full nonce-count table):
    /// challenge again with `stale=true` (RFC 2617 §3.2.1).
    Stale,
    /// Wrong password, unknown user, wrong realm, forged nonce, replayed nc, unsupported
    /// algorithm or qop: challenge again (401). `reason` is for logs and never contains secrets.
    Rejected {
        /// Why, for logs.
        reason: String,
    },
    /// Syntactically broken header or missing mandatory parameter: answer 400.
    Malformed {
        /// The problem, for logs and the reason phrase.
        reason: String,
    },
}

/// Issues challenges and verifies `Authorization` header values.
///
/// Nonces are self-validating:
/// hex(issued_ms (8 bytes BE) || counter (8 bytes BE) || HMAC-SHA256(key, issued_ms || counter)[..16]),
/// so any node sharing the key can verify them and a forged or altered nonce is refused.
/// `opaque` is hex(HMAC-SHA256(key, "opaque")[..8]), the same on every node sharing the key.
///
/// Replay protection: per nonce, the highest `nc` accepted; a request with `nc` not above it is
/// refused as a replay. The table is bounded by `nonces_tracked_max`; expired entries go first,
/// then the oldest. A valid, unexpired nonce not in the table is accepted once with any `nc >= 1`,
/// unless it is not newer than a nonce the full table had to drop, which gets [`Verdict::Stale`].
///
/// Methods take `now_ms`, milliseconds since the Unix epoch; it need not be monotonic.
pub struct DigestAuthenticator {
    config: DigestConfig,
    nonce_mac: NonceMac,
    opaque: String,
    challenge_counter: u64,
    nonce_counts: NonceCounts,
}

impl DigestAuthenticator {
    /// An authenticator for `config` whose nonces are keyed by `key`; nodes that must accept
    /// each other's nonces share the key.
    ///
    /// # Panics
    ///
    /// If `config` fails [`DigestConfig::validate`]; validate configuration first.
    pub fn new(config: DigestConfig, key: [u8; 32]) -> DigestAuthenticator {
        if let Err(error) = config.validate() {
            panic!("invalid DigestConfig: {error}");
        }
        // HMAC accepts keys of any length, so this never fails.
        let Ok(nonce_mac) = NonceMac::new_from_slice(&key) else {
            unreachable!("HMAC accepts keys of any length");
        };
        let opaque_tag = nonce_mac.clone().chain_update(b"opaque").finalize();
        let opaque = hex::encode(&opaque_tag.into_bytes()[..8]);
        let nonce_counts = NonceCounts::new(config.nonces_tracked_max);
        DigestAuthenticator {
            config,
            nonce_mac,
            opaque,
            challenge_counter: 0,
            nonce_counts,
        }
    }

    /// The realm challenged and required.
    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// How many nonces the nonce-count table holds; at most `nonces_tracked_max`.
    pub fn nonces_tracked(&self) -> usize {
        self.nonce_counts.len()
    }

    /// One `WWW-Authenticate` header value per configured algorithm, in order, e.g.
    /// `Digest realm="example.com", nonce="...", opaque="...", algorithm=SHA-256, qop="auth"`
    /// (+ `, stale=true` when `stale`). All values of one call share one nonce.
    #[must_use]
    pub fn challenge(&mut self, now_ms: u64, stale: bool) -> Vec<String> {
        let id = NonceId {
            issued_ms: now_ms,
            counter: self.challenge_counter,
        };
        self.challenge_counter = self.challenge_counter.wrapping_add(1);
        let nonce = id.encode(&self.nonce_mac);
        let stale = if stale { ", stale=true" } else { "" };
        self.config
            .algorithms
            .iter()
            .map(|algorithm| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", opaque=\"{}\", algorithm={algorithm}, qop=\"auth\"{stale}",
                    self.config.realm, self.opaque
                )
            })
            .collect()
    }

    /// Verifies one `Authorization` header value for `method` (e.g. `REGISTER`).
    /// `lookup(username)` returns the user's credentials, if any.
    ///
    /// The digest `uri` is not compared with the Request-URI; the caller may.
    #[must_use]
    pub fn verify<'c>(
        &mut self,
        now_ms: u64,
        method: &str,
        authorization: &str,
        lookup: impl FnOnce(&str) -> Option<&'c Credentials>,
    ) -> Verdict {
        match self.check(now_ms, method, authorization, lookup) {
            Ok(username) => Verdict::Authenticated { username },
            Err(verdict) => verdict,
        }
    }

    /// [`DigestAuthenticator::verify`] with every refusal as `Err`.
    fn check<'c>(
        &mut self,
        now_ms: u64,
        method: &str,
        authorization: &str,
        lookup: impl FnOnce(&str) -> Option<&'c Credentials>,
    ) -> Result<String, Verdict> {
        let response = DigestResponse::parse(authorization).map_err(verdict_for_parse_error)?;
        let algorithm = self.accepted_algorithm(&response)?;
        let protection = self.check_parameters(&response)?;
        let id = NonceId::decode(&response.nonce, &self.nonce_mac)
            .ok_or_else(|| rejected("nonce not issued with our key"))?;
        let credentials = lookup(&response.username).ok_or_else(|| rejected("unknown user"))?;
        let ha1 = credentials
            .ha1(algorithm)
            .ok_or_else(|| rejected("no stored secret for this algorithm"))?;
        let expected = ResponseParts {
            ha1,
            nonce: &response.nonce,
            nc: protection.nc,
            cnonce: protection.cnonce,
            qop: protection.qop,
            method,
            uri: &response.uri,
        }
        .digest(algorithm);
        let received = response.response.to_ascii_lowercase();
        if !constant_time_eq(expected.as_bytes(), received.as_bytes()) {
            return Err(rejected("wrong response"));
        }
        self.accept_nonce_count(now_ms, id, protection.nc)?;
        Ok(response.username)
    }

    /// The response's algorithm (absent means MD5) if we challenge with it.
    fn accepted_algorithm(&self, response: &DigestResponse) -> Result<Algorithm, Verdict> {
        let algorithm = response.algorithm.unwrap_or(Algorithm::Md5);
        if !self.config.algorithms.contains(&algorithm) {
            return Err(rejected("algorithm not offered"));
        }
        Ok(algorithm)
    }

    /// Realm, opaque and `qop=auth` with its `cnonce` and `nc >= 1`.
    fn check_parameters<'r>(&self, response: &'r DigestResponse) -> Result<QopAuth<'r>, Verdict> {
        if response.realm != self.config.realm {
            return Err(rejected("wrong realm"));
        }
        if response.opaque.as_ref().is_some_and(|o| *o != self.opaque) {
            return Err(rejected("wrong opaque"));
        }
        let Some(qop) = response.qop.as_deref() else {
            return Err(rejected("qop=auth required"));
        };
        if !qop.eq_ignore_ascii_case("auth") {
            return Err(rejected("unsupported qop"));
        }
        // The parser guarantees cnonce and nc whenever qop is present.
        let (Some(cnonce), Some(nc)) = (response.cnonce.as_deref(), response.nc) else {
            return Err(malformed("qop without cnonce or nc"));
        };
        if nc == 0 {
            return Err(rejected("nc must be at least 1"));
        }
        Ok(QopAuth { qop, cnonce, nc })
    }

    /// Expiry, then the nonce-count table, for a response already known to be right.
    fn accept_nonce_count(&mut self, now_ms: u64, id: NonceId, nc: u32) -> Result<(), Verdict> {
        let lifetime_ms = self.config.nonce_lifetime_ms;
        if id.is_expired(now_ms, lifetime_ms) {
            return Err(Verdict::Stale);
        }
        self.nonce_counts.drop_expired(now_ms, lifetime_ms);
        match self.nonce_counts.accept(id, nc) {
            Ok(()) => Ok(()),
            Err(CountRefusal::Replayed) => Err(rejected("replayed nonce count")),
            Err(CountRefusal::Forgotten) => Err(Verdict::Stale),
        }
    }
}

impl fmt::Debug for DigestAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestAuthenticator")
            .field("config", &self.config)
            .field("key", &"<redacted>")
            .field("challenge_counter", &self.challenge_counter)
            .field("nonces_tracked", &self.nonce_counts.len())
            .finish()
    }
}

/// The `qop=auth` parameters of a response.
struct QopAuth<'r> {
    qop: &'r str,
    cnonce: &'r str,
    nc: u32,
}

fn verdict_for_parse_error(error: AuthError) -> Verdict {
    match error {
        AuthError::UnsupportedAlgorithm(_) => Verdict::Rejected {
            reason: error.to_string(),
        },
        _ => Verdict::Malformed {
            reason: error.to_string(),
        },
    }
}

fn rejected(reason: &str) -> Verdict {
    Verdict::Rejected {
        reason: reason.to_owned(),
    }
}

fn malformed(reason: &str) -> Verdict {
    Verdict::Malformed {
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_enforces_bounds() {
        let good = DigestConfig::new("example.com");
        assert_eq!(good.validate(), Ok(()));
        let cases = [
            (DigestConfig::new("bad\"realm"), ConfigError::Realm),
            (DigestConfig::new(""), ConfigError::Realm),
            (
                DigestConfig {
                    algorithms: vec![],
                    ..good.clone()
                },
                ConfigError::Algorithms,
            ),
            (
                DigestConfig {
                    algorithms: vec![Algorithm::Md5, Algorithm::Md5],
                    ..good.clone()
                },
                ConfigError::Algorithms,
            ),
            (
                DigestConfig {
                    nonce_lifetime_ms: 0,
                    ..good.clone()
                },
                ConfigError::NonceLifetime,
            ),
            (
                DigestConfig {
                    nonces_tracked_max: NONCES_TRACKED_MAX + 1,
                    ..good.clone()
                },
                ConfigError::NoncesTracked,
            ),
        ];
        for (config, error) in cases {
            assert_eq!(config.validate(), Err(error), "{config:?}");
        }
    }

    #[test]
    fn debug_redacts_key() {
        let authenticator = DigestAuthenticator::new(DigestConfig::new("example.com"), [0xab; 32]);
        let printed = format!("{authenticator:?}");
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains("abab"));
        assert!(!printed.contains("171"));
    }

    #[test]
    fn opaque_is_shared_by_nodes_with_one_key() {
        let config = DigestConfig::new("example.com");
        let first = DigestAuthenticator::new(config.clone(), [1; 32]);
        let second = DigestAuthenticator::new(config.clone(), [1; 32]);
        let other = DigestAuthenticator::new(config, [2; 32]);
        assert_eq!(first.opaque, second.opaque);
        assert_ne!(first.opaque, other.opaque);
        assert_eq!(first.opaque.len(), 16);
    }
}
