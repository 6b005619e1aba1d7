//! Answering digest challenges, sans-IO: [`DigestState`] keeps one session's last challenge
//! and nonce count, decides whether a `401`/`407` is worth a retry, and writes the
//! `Authorization` (or `Proxy-Authorization`) value of each request.

use roster_auth::{Algorithm, ChallengeAnswer, DigestChallenge};
use roster_sip::{HeaderName, Headers};

/// Most challenges one request answers before it is counted as refused: the first challenge,
/// a `stale=true` one, and one for a cached nonce the server had forgotten.
pub const AUTH_ATTEMPTS_MAX: u32 = 3;

/// A user's digest credentials. No `Debug`: the password is a secret.
#[derive(Clone)]
pub struct UserCredentials {
    /// The digest user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// What to do with a `401` or `407`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChallengeVerdict {
    /// Send the request again (new CSeq and branch) with the credentials of
    /// [`DigestState::authorization`].
    Retry,
    /// Stop: the challenge cannot be answered, or the answer was already refused.
    Refused(String),
}

/// Where the challenge of one session came from, which names the header to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Challenger {
    /// `401` + `WWW-Authenticate` → `Authorization`.
    Registrar,
    /// `407` + `Proxy-Authenticate` → `Proxy-Authorization`.
    Proxy,
}

/// One session's digest state: the challenge in use, its nonce count and client nonce.
///
/// After a first challenge every request of the session carries credentials for the cached
/// nonce (nc counting up), as phones do, so a refresh costs one round trip. A `stale=true`
/// challenge or a forgotten nonce restarts with the new nonce.
#[derive(Clone, Debug, Default)]
pub struct DigestState {
    current: Option<(Challenger, DigestChallenge)>,
    nc: u32,
    cnonce: String,
}

impl DigestState {
    /// The header carrying credentials for a request with `method` and Request-URI `uri`, if a
    /// challenge is known; counts one more use of its nonce.
    pub fn authorization(
        &mut self,
        credentials: &UserCredentials,
        method: &str,
        uri: &str,
    ) -> Option<(HeaderName, String)> {
        let (challenger, challenge) = self.current.as_ref()?;
        self.nc = self.nc.wrapping_add(1).max(1);
        let value = challenge
            .answer(&ChallengeAnswer {
                username: &credentials.username,
                password: &credentials.password,
                method,
                uri,
                cnonce: &self.cnonce,
                nc: self.nc,
            })
            .to_string();
        let name = match challenger {
            Challenger::Registrar => HeaderName::Authorization,
            Challenger::Proxy => HeaderName::ProxyAuthorization,
        };
        Some((name, value))
    }

    /// Takes in a `401` or `407` answering a request of this session.
    ///
    /// `answered` says whether that request already answered a challenge received for this
    /// same operation; `attempts` how many challenges the operation has met, this one
    /// included. `fresh_cnonce` is used if the challenge brings a new nonce.
    /// `algorithm`, when set, is the only algorithm accepted; otherwise the first supported
    /// challenge wins (the server lists its preference first, RFC 8760 §2.4).
    pub fn handle_challenge(
        &mut self,
        response: ChallengeResponse<'_>,
        algorithm: Option<Algorithm>,
        fresh_cnonce: String,
    ) -> ChallengeVerdict {
        let (challenger, header) = match response.status {
            401 => (Challenger::Registrar, HeaderName::WwwAuthenticate),
            407 => (Challenger::Proxy, HeaderName::ProxyAuthenticate),
            other => return ChallengeVerdict::Refused(format!("{other} is not a challenge")),
        };
        let Some(challenge) = pick_challenge(response.headers, &header, algorithm) else {
            let wanted = algorithm.map_or("MD5 or SHA-256".to_owned(), |a| a.to_string());
            return ChallengeVerdict::Refused(format!(
                "{} without a usable Digest challenge ({wanted})",
                response.status
            ));
        };
        if response.attempts > AUTH_ATTEMPTS_MAX {
            return ChallengeVerdict::Refused(format!(
                "still challenged after {AUTH_ATTEMPTS_MAX} answers"
            ));
        }
        if response.answered && !challenge.stale {
            self.current = None;
            return ChallengeVerdict::Refused(
                "credentials refused (wrong user name or password?)".to_owned(),
            );
        }
        self.current = Some((challenger, challenge));
        self.nc = 0;
        self.cnonce = fresh_cnonce;
        ChallengeVerdict::Retry
    }

    /// Credentials announcing `algorithm` before any challenge (IMS-style: empty nonce and
    /// response), so that a registrar offering one challenge offers this algorithm.
    pub fn hint(
        credentials: &UserCredentials,
        realm: &str,
        uri: &str,
        algorithm: Algorithm,
    ) -> (HeaderName, String) {
        let value = format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"\", uri=\"{uri}\", response=\"\", algorithm={algorithm}",
            credentials.username
        );
        (HeaderName::Authorization, value)
    }

    /// Whether a challenge is cached, so requests carry credentials before being asked.
    pub fn has_challenge(&self) -> bool {
        self.current.is_some()
    }
}

/// The parts of a challenging response [`DigestState::handle_challenge`] reads.
#[derive(Clone, Copy, Debug)]
pub struct ChallengeResponse<'a> {
    /// `401` or `407`.
    pub status: u16,
    /// The response's header fields.
    pub headers: &'a Headers,
    /// Whether the challenged request answered a challenge received for this same operation.
    pub answered: bool,
    /// Challenges met by the operation, this one included.
    pub attempts: u32,
}

/// The first parseable challenge in `header` fields, restricted to `algorithm` when given.
fn pick_challenge(
    headers: &Headers,
    header: &HeaderName,
    algorithm: Option<Algorithm>,
) -> Option<DigestChallenge> {
    headers
        .get_all(header)
        .filter_map(|value| DigestChallenge::parse(value).ok())
        .find(|challenge| algorithm.is_none_or(|wanted| challenge.algorithm == wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_auth::{Credentials, DigestAuthenticator, DigestConfig, Verdict};

    fn credentials() -> UserCredentials {
        UserCredentials {
            username: "alice".into(),
            password: "pw".into(),
        }
    }

    fn challenge_headers(values: Vec<String>, name: HeaderName) -> Headers {
        let mut headers = Headers::new();
        for value in values {
            headers.push(name.clone(), value);
        }
        headers
    }

    fn response(headers: &Headers, answered: bool, attempts: u32) -> ChallengeResponse<'_> {
        ChallengeResponse {
            status: 401,
            headers,
            answered,
            attempts,
        }
    }

    /// A server (the real authenticator) and a client session agree, nc counts up, and the
    /// cached nonce is reused until the server calls it stale.
    #[test]
    fn answers_and_reuses_the_nonce_until_stale() {
        let mut config = DigestConfig::new("example.com");
        config.nonce_lifetime_ms = 10_000;
        config.challenge = roster_auth::ChallengeMode::Every;
        let mut server = DigestAuthenticator::new(config, [1; 32]);
        let stored = Credentials::from_password("alice", "example.com", "pw");
        let mut state = DigestState::default();
        assert_eq!(
            state.authorization(&credentials(), "REGISTER", "sip:example.com"),
            None
        );
        let headers = challenge_headers(server.challenge(0, false), HeaderName::WwwAuthenticate);
        let verdict = state.handle_challenge(response(&headers, false, 1), None, "c1".into());
        assert_eq!(verdict, ChallengeVerdict::Retry);
        for (now_ms, expected_nc) in [(100, "nc=00000001"), (200, "nc=00000002")] {
            let Some((name, value)) =
                state.authorization(&credentials(), "REGISTER", "sip:example.com")
            else {
                panic!("a challenge is cached");
            };
            assert_eq!(name, HeaderName::Authorization);
            assert!(
                value.contains(expected_nc) && value.contains("algorithm=SHA-256"),
                "{value}"
            );
            let verdict = server.verify(now_ms, "REGISTER", &value, |_| Some(&stored));
            assert!(
                matches!(verdict, Verdict::Authenticated { .. }),
                "{verdict:?}"
            );
        }
        // Past the nonce lifetime the server says stale; the session retries with the new one.
        let late = state.authorization(&credentials(), "REGISTER", "sip:example.com");
        let verdict =
            late.map(|(_, value)| server.verify(20_000, "REGISTER", &value, |_| Some(&stored)));
        assert_eq!(verdict, Some(Verdict::Stale));
        let headers =
            challenge_headers(server.challenge(20_000, true), HeaderName::WwwAuthenticate);
        let verdict = state.handle_challenge(response(&headers, true, 1), None, "c2".into());
        assert_eq!(verdict, ChallengeVerdict::Retry);
        let value = state.authorization(&credentials(), "REGISTER", "sip:example.com");
        assert!(value.is_some_and(|(_, v)| v.contains("nc=00000001") && v.contains("\"c2\"")));
    }

    #[test]
    fn refuses_a_second_non_stale_challenge_and_too_many_attempts() {
        let mut server = DigestAuthenticator::new(DigestConfig::new("example.com"), [1; 32]);
        let headers = challenge_headers(server.challenge(0, false), HeaderName::WwwAuthenticate);
        let mut state = DigestState::default();
        let verdict = state.handle_challenge(response(&headers, true, 2), None, "c".into());
        assert!(matches!(verdict, ChallengeVerdict::Refused(reason) if reason.contains("refused")));
        assert!(!state.has_challenge());
        let stale = challenge_headers(server.challenge(0, true), HeaderName::WwwAuthenticate);
        let verdict = state.handle_challenge(
            response(&stale, true, AUTH_ATTEMPTS_MAX + 1),
            None,
            "c".into(),
        );
        assert!(matches!(verdict, ChallengeVerdict::Refused(_)));
    }

    #[test]
    fn honours_the_algorithm_restriction_and_proxy_challenges() {
        let mut server = DigestAuthenticator::new(DigestConfig::new("example.com"), [1; 32]);
        let headers = challenge_headers(server.challenge(0, false), HeaderName::ProxyAuthenticate);
        let mut state = DigestState::default();
        let proxy = ChallengeResponse {
            status: 407,
            headers: &headers,
            answered: false,
            attempts: 1,
        };
        assert_eq!(
            state.handle_challenge(proxy, Some(Algorithm::Md5), "c".into()),
            ChallengeVerdict::Retry
        );
        let value = state.authorization(&credentials(), "OPTIONS", "sip:alice@example.com");
        assert!(value.is_some_and(
            |(name, v)| name == HeaderName::ProxyAuthorization && v.contains("algorithm=MD5")
        ));
        // A 401 whose challenges are in the wrong header, or only Basic, is refused.
        let verdict = state.handle_challenge(response(&headers, false, 1), None, "c".into());
        assert!(matches!(verdict, ChallengeVerdict::Refused(_)));
    }
}
