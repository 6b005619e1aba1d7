//! End-to-end tests through the public API: challenge, client response, verdict.

use roster_auth::{
    Algorithm, ChallengeMode, Credentials, DigestAuthenticator, DigestConfig, DigestResponse,
    ResponseParts, Verdict,
};

const REALM: &str = "example.com";
const KEY: [u8; 32] = [7; 32];
const START_MS: u64 = 1_700_000_000_000;

/// A client's view of one challenge.
struct Challenge {
    nonce: String,
    opaque: String,
    algorithm: Algorithm,
}

/// The quoted or bare value of `name` in a challenge we produced (no escapes in our output).
fn challenge_parameter(challenge: &str, name: &str) -> String {
    let start = challenge
        .find(&format!("{name}="))
        .map(|index| index + name.len() + 1)
        .unwrap_or_else(|| panic!("{name} missing from {challenge}"));
    let rest = &challenge[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or_default().to_owned(),
        None => rest.split(',').next().unwrap_or_default().to_owned(),
    }
}

fn parse_challenge(challenge: &str) -> Challenge {
    let algorithm = challenge_parameter(challenge, "algorithm")
        .parse()
        .unwrap_or_else(|error| panic!("{error}"));
    Challenge {
        nonce: challenge_parameter(challenge, "nonce"),
        opaque: challenge_parameter(challenge, "opaque"),
        algorithm,
    }
}

/// Offers every algorithm, one field each: these tests are about the algorithms.
fn authenticator() -> DigestAuthenticator {
    let config = DigestConfig {
        challenge: ChallengeMode::Every,
        ..DigestConfig::new(REALM)
    };
    DigestAuthenticator::new(config, KEY)
}

fn alice() -> Credentials {
    Credentials::from_password("alice", REALM, "wonderland")
}

/// An `Authorization` value answering `challenge` as `username` with `password`.
fn answer(challenge: &Challenge, username: &str, password: &str, nc: u32) -> DigestResponse {
    let ha1 = roster_auth::ha1(challenge.algorithm, username, REALM, password);
    let uri = "sip:example.com";
    let cnonce = "0a4f113b";
    let response = ResponseParts {
        ha1: &ha1,
        nonce: &challenge.nonce,
        nc,
        cnonce,
        qop: "auth",
        method: "REGISTER",
        uri,
    }
    .digest(challenge.algorithm);
    DigestResponse {
        username: username.to_owned(),
        realm: REALM.to_owned(),
        nonce: challenge.nonce.clone(),
        uri: uri.to_owned(),
        response,
        algorithm: Some(challenge.algorithm),
        cnonce: Some(cnonce.to_owned()),
        opaque: Some(challenge.opaque.clone()),
        qop: Some("auth".to_owned()),
        nc: Some(nc),
    }
}

fn verify(authenticator: &mut DigestAuthenticator, now_ms: u64, header: &str) -> Verdict {
    let credentials = alice();
    authenticator.verify(now_ms, "REGISTER", header, |username| {
        (username == credentials.username).then_some(&credentials)
    })
}

fn authenticated() -> Verdict {
    Verdict::Authenticated {
        username: "alice".to_owned(),
    }
}

fn is_rejected(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Rejected { .. })
}

/// A password guess: wrong password, or a user without credentials.
fn is_wrong(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Wrong { .. })
}

fn is_malformed(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Malformed { .. })
}

/// The first challenge of a fresh call, for `algorithm`.
fn challenge_for(
    authenticator: &mut DigestAuthenticator,
    now_ms: u64,
    algorithm: Algorithm,
) -> Challenge {
    authenticator
        .challenge_for(now_ms, false, Some(algorithm))
        .iter()
        .map(|value| parse_challenge(value))
        .find(|challenge| challenge.algorithm == algorithm)
        .unwrap_or_else(|| panic!("no {algorithm} challenge"))
}

#[test]
fn challenge_offers_sha256_then_md5_with_one_nonce() {
    let mut authenticator = authenticator();
    let values = authenticator.challenge(START_MS, false);
    assert_eq!(values.len(), 2);
    assert!(values[0].starts_with("Digest realm=\"example.com\", nonce=\""));
    assert!(values[0].contains("algorithm=SHA-256"));
    assert!(values[0].ends_with("qop=\"auth\""));
    assert!(values[1].contains("algorithm=MD5"));
    let nonces: Vec<String> = values
        .iter()
        .map(|v| challenge_parameter(v, "nonce"))
        .collect();
    assert_eq!(nonces[0], nonces[1]);
    let stale = authenticator.challenge(START_MS, true);
    assert!(stale.iter().all(|v| v.ends_with(", stale=true")));
    assert_ne!(challenge_parameter(&stale[0], "nonce"), nonces[0]);
}

#[test]
fn round_trip_succeeds_for_both_algorithms() {
    for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
        let mut authenticator = authenticator();
        let challenge = challenge_for(&mut authenticator, START_MS, algorithm);
        let header = answer(&challenge, "alice", "wonderland", 1).to_string();
        assert_eq!(
            verify(&mut authenticator, START_MS + 10, &header),
            authenticated(),
            "{algorithm}"
        );
    }
}

/// Another node of the pool (same key, another boot), or this node after a restart, answers
/// a right response over the nonce with a fresh challenge (`Stale`), never with success: a
/// captured `Authorization` replays nowhere but on its issuer, which counts its nc.
#[test]
fn another_boot_with_the_same_key_finds_the_nonce_stale() {
    let mut issuer = authenticator().with_boot(1);
    let mut other_node = authenticator().with_boot(2);
    let challenge = challenge_for(&mut issuer, START_MS, Algorithm::Sha256);
    let header = answer(&challenge, "alice", "wonderland", 1).to_string();
    assert_eq!(
        verify(&mut other_node, START_MS + 10, &header),
        Verdict::Stale
    );
    assert_eq!(verify(&mut issuer, START_MS + 10, &header), authenticated());
    let mut restarted = authenticator().with_boot(3);
    assert_eq!(
        verify(&mut restarted, START_MS + 20, &header),
        Verdict::Stale
    );
    let mut stranger = DigestAuthenticator::new(DigestConfig::new(REALM), [8; 32]);
    assert!(is_rejected(&verify(&mut stranger, START_MS + 10, &header)));
}

#[test]
fn absent_algorithm_means_md5() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Md5);
    let mut response = answer(&challenge, "alice", "wonderland", 1);
    response.algorithm = None;
    let header = response.to_string();
    assert!(!header.contains("algorithm"));
    assert_eq!(
        verify(&mut authenticator, START_MS, &header),
        authenticated()
    );
}

#[test]
fn algorithm_name_is_case_insensitive() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let header = answer(&challenge, "alice", "wonderland", 1)
        .to_string()
        .replace("algorithm=SHA-256", "algorithm=sha-256");
    assert_eq!(
        verify(&mut authenticator, START_MS, &header),
        authenticated()
    );
}

#[test]
fn wrong_password_is_rejected() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let header = answer(&challenge, "alice", "looking-glass", 1).to_string();
    assert!(is_wrong(&verify(&mut authenticator, START_MS, &header)));
}

/// An unknown user gets the verdict of a wrong password: nothing tells them apart.
#[test]
fn unknown_user_looks_like_a_wrong_password() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let header = answer(&challenge, "mallory", "wonderland", 1).to_string();
    assert_eq!(
        verify(&mut authenticator, START_MS, &header),
        Verdict::Wrong {
            username: "mallory".to_owned()
        }
    );
}

#[test]
fn user_without_a_hash_for_the_algorithm_is_rejected() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Md5);
    let header = answer(&challenge, "alice", "wonderland", 1).to_string();
    let sha256_only = Credentials {
        ha1_md5: None,
        ..alice()
    };
    let verdict = authenticator.verify(START_MS, "REGISTER", &header, |_| Some(&sha256_only));
    assert!(is_wrong(&verdict));
}

#[test]
fn wrong_realm_is_rejected() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let mut response = answer(&challenge, "alice", "wonderland", 1);
    response.realm = "elsewhere.org".to_owned();
    let verdict = verify(&mut authenticator, START_MS, &response.to_string());
    assert_eq!(
        verdict,
        Verdict::Rejected {
            reason: "wrong realm".to_owned()
        }
    );
}

#[test]
fn wrong_opaque_is_rejected_and_absent_opaque_accepted() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let mut response = answer(&challenge, "alice", "wonderland", 1);
    response.opaque = Some("0000000000000000".to_owned());
    assert!(is_rejected(&verify(
        &mut authenticator,
        START_MS,
        &response.to_string()
    )));
    response.opaque = None;
    assert_eq!(
        verify(&mut authenticator, START_MS, &response.to_string()),
        authenticated()
    );
}

#[test]
fn forged_or_altered_nonce_is_rejected() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let mut altered = challenge.nonce.clone().into_bytes();
    // Move the issue time forward by flipping a low byte of issued_ms.
    altered[15] = if altered[15] == b'0' { b'1' } else { b'0' };
    let forgeries = [
        String::from_utf8(altered).unwrap_or_default(),
        "0".repeat(64),
        "dcd98b7102dd2f0e8b11d0f600bfb0c093".to_owned(),
        challenge.nonce.to_uppercase(),
    ];
    for nonce in forgeries {
        // The client computes a correct response over the forged nonce.
        let forged = Challenge {
            nonce,
            opaque: challenge.opaque.clone(),
            algorithm: challenge.algorithm,
        };
        let header = answer(&forged, "alice", "wonderland", 1).to_string();
        assert!(
            is_rejected(&verify(&mut authenticator, START_MS, &header)),
            "{}",
            forged.nonce
        );
    }
}

#[test]
fn expired_nonce_is_stale() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let header = answer(&challenge, "alice", "wonderland", 1).to_string();
    let lifetime_ms = DigestConfig::new(REALM).nonce_lifetime_ms;
    assert_eq!(
        verify(&mut authenticator, START_MS + lifetime_ms, &header),
        Verdict::Stale
    );
    // A wrong password on an expired nonce is still a wrong answer.
    let wrong = answer(&challenge, "alice", "looking-glass", 1).to_string();
    assert!(is_wrong(&verify(
        &mut authenticator,
        START_MS + lifetime_ms,
        &wrong
    )));
    assert_eq!(
        verify(&mut authenticator, START_MS + lifetime_ms - 1, &header),
        authenticated()
    );
}

#[test]
fn replayed_nc_is_rejected_and_increasing_nc_accepted() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let first = answer(&challenge, "alice", "wonderland", 1).to_string();
    let second = answer(&challenge, "alice", "wonderland", 2).to_string();
    let fifth = answer(&challenge, "alice", "wonderland", 5).to_string();
    assert_eq!(
        verify(&mut authenticator, START_MS, &first),
        authenticated()
    );
    assert_eq!(
        verify(&mut authenticator, START_MS, &first),
        Verdict::Rejected {
            reason: "replayed nonce count".to_owned()
        }
    );
    assert_eq!(
        verify(&mut authenticator, START_MS, &fifth),
        authenticated()
    );
    assert!(is_rejected(&verify(&mut authenticator, START_MS, &second)));
    let zero = answer(&challenge, "alice", "wonderland", 0).to_string();
    assert!(is_rejected(&verify(&mut authenticator, START_MS, &zero)));
}

#[test]
fn nonce_table_stays_bounded_and_forgotten_nonces_go_stale() {
    let tracked_max = 64;
    let config = DigestConfig {
        nonces_tracked_max: tracked_max,
        ..DigestConfig::new(REALM)
    };
    let mut authenticator = DigestAuthenticator::new(config, KEY);
    let mut first = None;
    for step in 0..1_000u64 {
        let now_ms = START_MS + step;
        let challenge = challenge_for(&mut authenticator, now_ms, Algorithm::Sha256);
        let header = answer(&challenge, "alice", "wonderland", 1).to_string();
        assert_eq!(verify(&mut authenticator, now_ms, &header), authenticated());
        assert!(authenticator.nonces_tracked() <= tracked_max);
        first.get_or_insert(header);
    }
    assert_eq!(authenticator.nonces_tracked(), tracked_max);
    // The first nonce was dropped while unexpired: its replay must not be accepted.
    let first = first.unwrap_or_default();
    assert_eq!(
        verify(&mut authenticator, START_MS + 1_000, &first),
        Verdict::Stale
    );
}

#[test]
fn expired_entries_leave_the_table() {
    let config = DigestConfig {
        nonce_lifetime_ms: 1_000,
        ..DigestConfig::new(REALM)
    };
    let mut authenticator = DigestAuthenticator::new(config, KEY);
    for step in 0..100u64 {
        let now_ms = START_MS + step * 100;
        let challenge = challenge_for(&mut authenticator, now_ms, Algorithm::Md5);
        let header = answer(&challenge, "alice", "wonderland", 1).to_string();
        assert_eq!(verify(&mut authenticator, now_ms, &header), authenticated());
    }
    // Only nonces younger than the lifetime (issued at the last ten steps) remain.
    assert_eq!(authenticator.nonces_tracked(), 10);
}

#[test]
fn malformed_headers_are_malformed() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let good = answer(&challenge, "alice", "wonderland", 1).to_string();
    let response_parameter = good
        .split(", ")
        .find(|p| p.starts_with("response="))
        .unwrap_or_default()
        .to_owned();
    let cases = [
        good.replace(&format!(", {response_parameter}"), ""),
        good.replace("username=\"alice\"", "username=\"alice"),
        format!("{good}, realm=\"{REALM}\""),
        good.replace("nc=00000001", "nc=0000000x"),
        good.replace("nc=00000001", "nc=001"),
        good.replace("Digest ", "Digest,"),
        good.replacen(", ", " ", 1),
        String::new(),
        "Digest".to_owned(),
        format!("Basic {good}"),
    ];
    for header in cases {
        let verdict = verify(&mut authenticator, START_MS, &header);
        assert!(is_malformed(&verdict), "{header}: {verdict:?}");
    }
}

#[test]
fn unsupported_algorithm_and_qop_are_rejected() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Md5);
    let good = answer(&challenge, "alice", "wonderland", 1).to_string();
    let mut no_qop = answer(&challenge, "alice", "wonderland", 1);
    no_qop.qop = None;
    no_qop.cnonce = None;
    no_qop.nc = None;
    let cases = [
        good.replace("algorithm=MD5", "algorithm=MD5-sess"),
        good.replace("algorithm=MD5", "algorithm=SHA-256-sess"),
        good.replace("algorithm=MD5", "algorithm=SHA-512-256"),
        good.replace("qop=auth", "qop=auth-int"),
        no_qop.to_string(),
    ];
    for header in cases {
        let verdict = verify(&mut authenticator, START_MS, &header);
        assert!(is_rejected(&verdict), "{header}: {verdict:?}");
    }
}

#[test]
fn algorithm_not_configured_is_rejected() {
    let sha256_only = DigestConfig {
        algorithms: vec![Algorithm::Sha256],
        ..DigestConfig::new(REALM)
    };
    let mut authenticator = DigestAuthenticator::new(sha256_only, KEY);
    assert_eq!(authenticator.challenge(START_MS, false).len(), 1);
    let mut md5_issuer = self::authenticator();
    let challenge = challenge_for(&mut md5_issuer, START_MS, Algorithm::Md5);
    let header = answer(&challenge, "alice", "wonderland", 1).to_string();
    assert!(is_rejected(&verify(&mut authenticator, START_MS, &header)));
}

#[test]
fn reasons_never_contain_secrets() {
    let mut authenticator = authenticator();
    let challenge = challenge_for(&mut authenticator, START_MS, Algorithm::Sha256);
    let wrong = answer(&challenge, "alice", "looking-glass", 1);
    let verdict = verify(&mut authenticator, START_MS, &wrong.to_string());
    assert!(is_wrong(&verdict));
    let reason = format!("{verdict:?}");
    let stored = alice();
    for secret in [stored.ha1_md5, stored.ha1_sha256].into_iter().flatten() {
        assert!(!reason.contains(&secret));
    }
    assert!(!reason.contains(&wrong.response));
    assert!(!reason.contains("wonderland"));
}
