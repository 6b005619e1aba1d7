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

/// How a `401` offers the configured algorithms.
///
/// Clients disagree on several `WWW-Authenticate` fields: RFC 8760 §2.4 says a client answers
/// the topmost one it supports, but older clients fail on any algorithm they do not know
/// (baresip 1.0: `Function not implemented`), take the last field, or take only the first. No
/// order of several fields suits them all, so by default a challenge carries one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChallengeMode {
    /// One field: the most preferred configured algorithm the request asks for (an
    /// `Authorization` naming it: IMS-style initial credentials with an empty nonce, or the
    /// client's answer to an earlier challenge), else the compatibility algorithm: MD5 when it
    /// is configured, since every client answers it, else the most preferred one.
    #[default]
    Single,
    /// One field per configured algorithm, preferred first (RFC 8760 §2.4), for fleets whose
    /// every client copes with several.
    Every,
}

/// Digest settings. Build with [`DigestConfig::new`] and check with [`DigestConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestConfig {
    /// The protection space sent in challenges and required in responses.
    /// No default; 1..=[`REALM_LENGTH_MAX`] bytes without `"`, `\` or control characters.
    pub realm: String,
    /// Algorithms challenged, in order, preferred first (RFC 8760 §2.4), and the only ones
    /// accepted. Default `[Sha256, Md5]`; non-empty, no duplicates.
    pub algorithms: Vec<Algorithm>,
    /// How a challenge offers `algorithms`. Default [`ChallengeMode::Single`].
    pub challenge: ChallengeMode,
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
            challenge: ChallengeMode::default(),
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
    /// A well-formed response over a nonce issued with our key that does not match: a wrong
    /// password, or a user name without credentials (the two look alike, and take about as
    /// long). Each is a password guess: challenge again (401), and count it.
    Wrong {
        /// The digest `username`, as sent.
        username: String,
    },
    /// Wrong realm, forged nonce, replayed nc, unsupported algorithm or qop: challenge again
    /// (401). `reason` is for logs and never contains secrets.
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
/// Nonces are self-validating: hex(issued_ms || boot || counter (8 bytes BE each) ||
/// HMAC-SHA256(key, issued_ms || boot || counter)[..16]), so a forged or altered nonce is
/// refused without state. A nonce is good for counting only on the process that issued it
/// (the `boot`, random per process start, see [`DigestAuthenticator::with_boot`]): a right
/// response over another node's nonce, or over one issued before a restart, gets
/// [`Verdict::Stale`] and a fresh challenge, so a captured `Authorization` cannot be replayed
/// on another node of a pool or after a restart, while the nonce-count table stays per node
/// and in memory.
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
    boot: u64,
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
            boot: 0,
            nonce_counts,
        }
    }

    /// The same authenticator issuing nonces for `boot`, a number drawn at random when the
    /// process starts: only nonces of this boot are accepted, others are [`Verdict::Stale`].
    #[must_use]
    pub fn with_boot(mut self, boot: u64) -> DigestAuthenticator {
        self.boot = boot;
        self
    }

    /// The algorithm a [`ChallengeMode::Single`] challenge offers when the request asks for
    /// `requested`: it if configured, else MD5 if configured, else the most preferred.
    pub fn single_algorithm(&self, requested: Option<Algorithm>) -> Algorithm {
        let algorithms = &self.config.algorithms;
        requested
            .filter(|algorithm| algorithms.contains(algorithm))
            .or_else(|| algorithms.iter().copied().find(|a| *a == Algorithm::Md5))
            .unwrap_or(algorithms[0])
    }

    /// The realm challenged and required.
    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// How many nonces the nonce-count table holds; at most `nonces_tracked_max`.
    pub fn nonces_tracked(&self) -> usize {
        self.nonce_counts.len()
    }

    /// [`DigestAuthenticator::challenge_for`] a request that asks for no algorithm.
    #[must_use]
    pub fn challenge(&mut self, now_ms: u64, stale: bool) -> Vec<String> {
        self.challenge_for(now_ms, stale, None)
    }

    /// The `WWW-Authenticate` header values of a `401`, e.g.
    /// `Digest realm="example.com", nonce="...", opaque="...", algorithm=SHA-256, qop="auth"`
    /// (+ `, stale=true` when `stale`): one per configured algorithm in order
    /// ([`ChallengeMode::Every`]), or one for [`DigestAuthenticator::single_algorithm`] of
    /// `requested` ([`ChallengeMode::Single`]). All values of one call share one nonce.
    #[must_use]
    pub fn challenge_for(
        &mut self,
        now_ms: u64,
        stale: bool,
        requested: Option<Algorithm>,
    ) -> Vec<String> {
        let id = NonceId {
            issued_ms: now_ms,
            boot: self.boot,
            counter: self.challenge_counter,
        };
        self.challenge_counter = self.challenge_counter.wrapping_add(1);
        let nonce = id.encode(&self.nonce_mac);
        let stale = if stale { ", stale=true" } else { "" };
        let single = [self.single_algorithm(requested)];
        let algorithms = match self.config.challenge {
            ChallengeMode::Single => &single[..],
            ChallengeMode::Every => &self.config.algorithms[..],
        };
        algorithms
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
        match DigestResponse::parse(authorization) {
            Ok(response) => self.verify_response(now_ms, method, &response, lookup),
            Err(error) => verdict_for_parse_error(error),
        }
    }

    /// [`DigestAuthenticator::verify`] for a value the caller has parsed already.
    #[must_use]
    pub fn verify_response<'c>(
        &mut self,
        now_ms: u64,
        method: &str,
        response: &DigestResponse,
        lookup: impl FnOnce(&str) -> Option<&'c Credentials>,
    ) -> Verdict {
        match self.check(now_ms, method, response, lookup) {
            Ok(()) => Verdict::Authenticated {
                username: response.username.clone(),
            },
            Err(verdict) => verdict,
        }
    }

    /// [`DigestAuthenticator::verify_response`] with every refusal as `Err`.
    fn check<'c>(
        &mut self,
        now_ms: u64,
        method: &str,
        response: &DigestResponse,
        lookup: impl FnOnce(&str) -> Option<&'c Credentials>,
    ) -> Result<(), Verdict> {
        let algorithm = self.accepted_algorithm(response)?;
        let protection = self.check_parameters(response)?;
        let id = NonceId::decode(&response.nonce, &self.nonce_mac)
            .ok_or_else(|| rejected("nonce not issued with our key"))?;
        // A user without a secret for the algorithm costs the same digest as a wrong password,
        // so that neither the verdict nor its timing tells real user names from others.
        let ha1 = lookup(&response.username)
            .and_then(|credentials| credentials.ha1(algorithm))
            .unwrap_or(UNKNOWN_USER_HA1);
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
        let known = ha1 != UNKNOWN_USER_HA1;
        if !constant_time_eq(expected.as_bytes(), received.as_bytes()) || !known {
            return Err(Verdict::Wrong {
                username: response.username.clone(),
            });
        }
        self.accept_nonce_count(now_ms, id, protection.nc)
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
        if id.is_expired(now_ms, lifetime_ms) || id.boot != self.boot {
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
            .field("boot", &self.boot)
            .field("nonces_tracked", &self.nonce_counts.len())
            .finish()
    }
}

/// The HA1 a response is checked against when its user has no secret: no stored HA1 is 64
/// `x`s (not hex), so it never matches a real user's.
const UNKNOWN_USER_HA1: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

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

    fn algorithms_of(values: &[String]) -> Vec<Algorithm> {
        values
            .iter()
            .map(|value| match crate::DigestChallenge::parse(value) {
                Ok(challenge) => challenge.algorithm,
                Err(error) => panic!("{value}: {error}"),
            })
            .collect()
    }

    #[test]
    fn a_single_challenge_offers_what_is_asked_for_else_md5() {
        let mut sha_first = DigestAuthenticator::new(DigestConfig::new("example.com"), [1; 32]);
        let offered = |a: &mut DigestAuthenticator, requested| {
            algorithms_of(&a.challenge_for(0, false, requested))
        };
        assert_eq!(offered(&mut sha_first, None), [Algorithm::Md5]);
        let sha = Some(Algorithm::Sha256);
        assert_eq!(offered(&mut sha_first, sha), [Algorithm::Sha256]);
        let sha_only = DigestConfig {
            algorithms: vec![Algorithm::Sha256],
            ..DigestConfig::new("example.com")
        };
        let mut sha_only = DigestAuthenticator::new(sha_only, [1; 32]);
        let md5 = Some(Algorithm::Md5);
        assert_eq!(offered(&mut sha_only, md5), [Algorithm::Sha256]);
        let every = DigestConfig {
            challenge: ChallengeMode::Every,
            ..DigestConfig::new("example.com")
        };
        let mut every = DigestAuthenticator::new(every, [1; 32]);
        assert_eq!(
            offered(&mut every, md5),
            [Algorithm::Sha256, Algorithm::Md5]
        );
    }

    /// A right answer over another boot's nonce (another node of the pool sharing the key, or
    /// this node before a restart) is stale, never accepted; a wrong one is a guess.
    #[test]
    fn nonces_of_another_boot_are_stale() {
        let credentials = Credentials::from_password("alice", "example.com", "pw");
        let config = DigestConfig::new("example.com");
        let mut issuer = DigestAuthenticator::new(config.clone(), [1; 32]).with_boot(1);
        let mut other = DigestAuthenticator::new(config, [1; 32]).with_boot(2);
        let challenge = issuer.challenge(1_000, false).swap_remove(0);
        let Ok(challenge) = crate::DigestChallenge::parse(&challenge) else {
            panic!("challenge must parse");
        };
        let answer = |password: &str, nc: u32| {
            challenge
                .answer(&crate::ChallengeAnswer {
                    username: "alice",
                    password,
                    method: "REGISTER",
                    uri: "sip:example.com",
                    cnonce: "c",
                    nc,
                })
                .to_string()
        };
        let verify = |a: &mut DigestAuthenticator, header: &str| {
            a.verify(2_000, "REGISTER", header, |_| Some(&credentials))
        };
        assert_eq!(verify(&mut other, &answer("pw", 1)), Verdict::Stale);
        assert_eq!(
            verify(&mut other, &answer("guess", 1)),
            Verdict::Wrong {
                username: "alice".into()
            }
        );
        assert!(matches!(
            verify(&mut issuer, &answer("pw", 1)),
            Verdict::Authenticated { .. }
        ));
        assert!(matches!(
            verify(&mut issuer, &answer("pw", 1)),
            Verdict::Rejected { .. }
        ));
        // An unknown user looks like a wrong password.
        let unknown = issuer.verify(2_000, "REGISTER", &answer("pw", 2), |_| None);
        assert_eq!(
            unknown,
            Verdict::Wrong {
                username: "alice".into()
            }
        );
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
