//! The client side: [`DigestChallenge`] parses one `WWW-Authenticate` (or `Proxy-Authenticate`)
//! value and answers it with a [`DigestResponse`] (RFC 2617 §3.2.1, RFC 8760).

use crate::algorithm::{ha1, Algorithm, ResponseParts};
use crate::error::AuthError;
use crate::parse::{Cursor, DigestResponse, AUTHORIZATION_LENGTH_MAX, PARAMETERS_MAX};

/// One parsed `Digest` challenge, values unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestChallenge {
    /// `realm`, as sent.
    pub realm: String,
    /// `nonce`, as sent.
    pub nonce: String,
    /// `opaque`, to be echoed unchanged.
    pub opaque: Option<String>,
    /// `algorithm`; MD5 when absent (RFC 2617).
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth`; without it the client answers in the RFC 2069 form.
    pub qop_auth: bool,
    /// `stale=true`: the previous credentials were good but the nonce expired, so the client
    /// retries with the new nonce without asking the user again.
    pub stale: bool,
}

/// What a client needs to answer a challenge, named so that same-typed strings cannot swap.
/// No `Debug`: `password` is a secret.
#[derive(Clone, Copy)]
pub struct ChallengeAnswer<'a> {
    /// The digest user name.
    pub username: &'a str,
    /// The user's password.
    pub password: &'a str,
    /// The request method, e.g. `REGISTER`.
    pub method: &'a str,
    /// The digest `uri`: the Request-URI as sent.
    pub uri: &'a str,
    /// A client nonce, fresh per nonce count sequence.
    pub cnonce: &'a str,
    /// The nonce count: 1 for the first use of a nonce, then one more per request.
    pub nc: u32,
}

impl DigestChallenge {
    /// Parses one challenge value with the `Digest` scheme.
    ///
    /// Parameter names ignore case; unknown parameters (`domain`, extensions) are ignored.
    /// A missing `realm` or `nonce` is an error, and an algorithm other than `MD5` or `SHA-256`
    /// is [`AuthError::UnsupportedAlgorithm`], so that a client can pick another challenge.
    pub fn parse(value: &str) -> Result<DigestChallenge, AuthError> {
        if value.len() > AUTHORIZATION_LENGTH_MAX {
            return Err(AuthError::TooLong);
        }
        let mut cursor = Cursor::new(value);
        cursor.expect_digest_scheme()?;
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut stale = None;
        let mut count = 0;
        while let Some((name, parameter_value)) = cursor.next_parameter()? {
            count += 1;
            if count > PARAMETERS_MAX {
                return Err(AuthError::TooManyParameters);
            }
            let (slot, known) = match name.to_ascii_lowercase().as_str() {
                "realm" => (&mut realm, "realm"),
                "nonce" => (&mut nonce, "nonce"),
                "opaque" => (&mut opaque, "opaque"),
                "algorithm" => (&mut algorithm, "algorithm"),
                "qop" => (&mut qop, "qop"),
                "stale" => (&mut stale, "stale"),
                _ => continue,
            };
            if slot.replace(parameter_value).is_some() {
                return Err(AuthError::DuplicateParameter(known));
            }
        }
        let realm = realm.ok_or(AuthError::MissingParameter("realm"))?;
        let nonce = nonce.ok_or(AuthError::MissingParameter("nonce"))?;
        let algorithm = match algorithm {
            Some(name) => name.parse()?,
            None => Algorithm::Md5,
        };
        let qop_auth = qop.is_some_and(|options| {
            options
                .split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("auth"))
        });
        let stale = stale.is_some_and(|flag| flag.eq_ignore_ascii_case("true"));
        Ok(DigestChallenge {
            realm,
            nonce,
            opaque,
            algorithm,
            qop_auth,
            stale,
        })
    }

    /// The credentials answering this challenge: `qop=auth` with `nc` and `cnonce` when the
    /// challenge offers it, else the RFC 2069 form without them.
    pub fn answer(&self, answer: &ChallengeAnswer<'_>) -> DigestResponse {
        let ha1 = ha1(
            self.algorithm,
            answer.username,
            &self.realm,
            answer.password,
        );
        let (response, cnonce, qop, nc) = if self.qop_auth {
            let parts = ResponseParts {
                ha1: &ha1,
                nonce: &self.nonce,
                nc: answer.nc,
                cnonce: answer.cnonce,
                qop: "auth",
                method: answer.method,
                uri: answer.uri,
            };
            let response = parts.digest(self.algorithm);
            (
                response,
                Some(answer.cnonce.to_owned()),
                Some("auth".to_owned()),
                Some(answer.nc),
            )
        } else {
            let ha2 = self.algorithm.hex_digest(&[answer.method, answer.uri]);
            let response = self.algorithm.hex_digest(&[&ha1, &self.nonce, &ha2]);
            (response, None, None, None)
        };
        DigestResponse {
            username: answer.username.to_owned(),
            realm: self.realm.clone(),
            nonce: self.nonce.clone(),
            uri: answer.uri.to_owned(),
            response,
            algorithm: Some(self.algorithm),
            cnonce,
            opaque: self.opaque.clone(),
            qop,
            nc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChallengeMode, Credentials, DigestAuthenticator, DigestConfig, Verdict};

    /// An authenticator offering SHA-256 then MD5, one field each.
    fn offering_both() -> DigestAuthenticator {
        let config = DigestConfig {
            challenge: ChallengeMode::Every,
            ..DigestConfig::new("example.com")
        };
        DigestAuthenticator::new(config, [7; 32])
    }

    #[test]
    fn parses_what_the_authenticator_issues() {
        let mut authenticator = offering_both();
        let values = authenticator.challenge(1_000, true);
        let parsed: Vec<_> = values.iter().map(|v| DigestChallenge::parse(v)).collect();
        let Ok(sha) = parsed[0].clone() else {
            panic!("challenge must parse: {parsed:?}");
        };
        assert_eq!(sha.realm, "example.com");
        assert_eq!(sha.algorithm, Algorithm::Sha256);
        assert!(sha.qop_auth && sha.stale && sha.opaque.is_some());
        assert!(matches!(&parsed[1], Ok(md5) if md5.algorithm == Algorithm::Md5));
    }

    #[test]
    fn answers_are_accepted_by_the_authenticator_for_both_algorithms() {
        let mut authenticator = offering_both();
        let credentials = Credentials::from_password("alice", "example.com", "pw");
        // One fresh nonce per algorithm: both values of one call share a nonce and its counts.
        for index in 0..2 {
            let value = authenticator.challenge(1_000, false).swap_remove(index);
            let Ok(challenge) = DigestChallenge::parse(&value) else {
                panic!("challenge must parse: {value}");
            };
            for (nc, password, accepted) in [(1, "pw", true), (2, "pw", true), (2, "pw", false)] {
                let header = challenge
                    .answer(&ChallengeAnswer {
                        username: "alice",
                        password,
                        method: "REGISTER",
                        uri: "sip:example.com",
                        cnonce: "c1",
                        nc,
                    })
                    .to_string();
                let verdict =
                    authenticator.verify(2_000, "REGISTER", &header, |_| Some(&credentials));
                let ok = matches!(verdict, Verdict::Authenticated { .. });
                // The third answer replays nc=2 and must be refused.
                assert_eq!(ok, accepted, "{value} nc={nc}: {verdict:?}");
            }
        }
    }

    #[test]
    fn rfc2617_known_answer_and_rfc2069_form() {
        let challenge = DigestChallenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        let Ok(mut challenge) = challenge else {
            panic!("must parse: {challenge:?}");
        };
        assert_eq!(challenge.algorithm, Algorithm::Md5);
        let answer = ChallengeAnswer {
            username: "Mufasa",
            password: "Circle Of Life",
            method: "GET",
            uri: "/dir/index.html",
            cnonce: "0a4f113b",
            nc: 1,
        };
        let response = challenge.answer(&answer);
        assert_eq!(response.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(response.nc, Some(1));
        challenge.qop_auth = false;
        let legacy = challenge.answer(&answer);
        assert_eq!((legacy.qop, legacy.nc, legacy.cnonce), (None, None, None));
        // RFC 2069: H(HA1 ":" nonce ":" HA2), no nc or cnonce.
        assert_eq!(legacy.response, "670fd8c2df070c60b045671b8b24ff02");
    }

    #[test]
    fn refuses_broken_or_unsupported_challenges() {
        let cases = [
            (r#"Digest nonce="n""#, AuthError::MissingParameter("realm")),
            (r#"Digest realm="r""#, AuthError::MissingParameter("nonce")),
            (
                r#"Digest realm="r", nonce="n", realm="x""#,
                AuthError::DuplicateParameter("realm"),
            ),
            (
                r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#,
                AuthError::UnsupportedAlgorithm("SHA-512-256".into()),
            ),
            (r#"Basic realm="r""#, AuthError::NotDigest),
        ];
        for (value, error) in cases {
            assert_eq!(DigestChallenge::parse(value), Err(error), "{value}");
        }
    }
}
