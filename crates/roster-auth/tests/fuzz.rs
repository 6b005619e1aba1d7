//! Property tests: arbitrary input never panics the parser or the authenticator, and printed
//! responses parse back to themselves.

use proptest::prelude::*;
use roster_auth::{
    Algorithm, Credentials, DigestAuthenticator, DigestConfig, DigestResponse, Verdict,
};

fn authenticator() -> DigestAuthenticator {
    DigestAuthenticator::new(DigestConfig::new("example.com"), [3; 32])
}

/// Header-like strings: the digest grammar's punctuation mixed with arbitrary text.
fn header_like() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("Digest ".to_owned()),
        Just("username=".to_owned()),
        Just("realm=".to_owned()),
        Just("nonce=".to_owned()),
        Just("uri=".to_owned()),
        Just("response=".to_owned()),
        Just("algorithm=SHA-256".to_owned()),
        Just("qop=auth".to_owned()),
        Just("nc=00000001".to_owned()),
        Just("cnonce=".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just(", ".to_owned()),
        Just("=".to_owned()),
        any::<String>(),
    ];
    proptest::collection::vec(pieces, 0..24).prop_map(|pieces| pieces.concat())
}

fn printable() -> impl Strategy<Value = String> {
    "[ -~\u{a0}-\u{ff}]{0,20}"
}

fn digest_response() -> impl Strategy<Value = DigestResponse> {
    (
        (
            printable(),
            printable(),
            printable(),
            printable(),
            printable(),
        ),
        proptest::option::of(prop_oneof![Just(Algorithm::Md5), Just(Algorithm::Sha256)]),
        proptest::option::of(printable()),
        proptest::option::of(("[a-z]{1,8}", printable(), any::<u32>())),
    )
        .prop_map(
            |((username, realm, nonce, uri, response), algorithm, opaque, protection)| {
                let (qop, cnonce, nc) = match protection {
                    Some((qop, cnonce, nc)) => (Some(qop), Some(cnonce), Some(nc)),
                    None => (None, None, None),
                };
                DigestResponse {
                    username,
                    realm,
                    nonce,
                    uri,
                    response,
                    algorithm,
                    cnonce,
                    opaque,
                    qop,
                    nc,
                }
            },
        )
}

proptest! {
    #[test]
    fn parse_never_panics(value in any::<String>()) {
        let _ = DigestResponse::parse(&value);
    }

    #[test]
    fn verify_never_panics(value in header_like()) {
        let mut authenticator = authenticator();
        let credentials = Credentials::from_password("alice", "example.com", "secret");
        let verdict = authenticator.verify(1, "REGISTER", &value, |_| Some(&credentials));
        let authenticated = matches!(verdict, Verdict::Authenticated { .. });
        prop_assert!(!authenticated);
    }

    #[test]
    fn printed_responses_parse_back(response in digest_response()) {
        prop_assert_eq!(DigestResponse::parse(&response.to_string()), Ok(response));
    }
}
