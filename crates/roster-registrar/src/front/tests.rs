//! The registrar end to end on parsed SIP text: every rule, with exact codes and headers.

use md5::{Digest as _, Md5};
use roster_auth::{Credentials, DigestAuthenticator, DigestConfig};
use roster_sip::{parse_message, HeaderName, Message, Response};
use sha2::Sha256;

use super::*;
use crate::command::Command;
use crate::directory::User;
use crate::policy::Overflow;
use crate::registry::{CommandOutcome, Registry};

const T0: u64 = 1_795_378_472_000;
const REALM: &str = "example.com";

struct Harness {
    front: Front,
    registry: Registry,
    now_ms: u64,
    vias: u32,
    source: std::net::SocketAddr,
}

/// A source outside the harness's trusted network.
const UNTRUSTED: &str = "198.51.100.7:5060";

fn user(name: &str, password: &str) -> User {
    User {
        aor: format!("sip:{name}@example.com"),
        credentials: Credentials::from_password(name, REALM, password),
        bindings_max: None,
    }
}

fn config(policy: Policy) -> FrontConfig {
    FrontConfig {
        domains: vec!["example.com".into()],
        policy,
        open_directory: false,
        server: "Roster-test".into(),
        own_hosts: vec!["192.0.2.10".into()],
        trusted: crate::Networks::parse(&["192.0.2.1"]).expect("valid network"),
    }
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Policy::default(), false)
    }

    fn with(policy: Policy, auth: bool) -> Harness {
        let directory = Directory::new(vec![user("alice", "wonder"), user("bob", "builder")])
            .expect("unique users");
        let authenticator = auth.then(|| {
            DigestAuthenticator::new(
                DigestConfig {
                    realm: REALM.into(),
                    algorithms: vec![roster_auth::Algorithm::Sha256, roster_auth::Algorithm::Md5],
                    challenge: roster_auth::ChallengeMode::Every,
                    nonce_lifetime_ms: 300_000,
                    nonces_tracked_max: 1000,
                },
                [7; 32],
            )
        });
        Harness {
            front: Front::new(config(policy.clone()), directory, authenticator),
            registry: Registry::new(policy),
            now_ms: T0,
            vias: 1,
            source: "192.0.2.1:5060".parse().expect("address"),
        }
    }

    fn send(&mut self, text: &str) -> Response {
        let wire = text.replace('\n', "\r\n");
        let Ok(Message::Request(request)) = parse_message(wire.as_bytes()) else {
            panic!("test request does not parse: {text}");
        };
        let context = RequestContext {
            now_ms: self.now_ms,
            transport: Transport::Udp,
            source: self.source,
        };
        match self.front.handle_request(&request, &context) {
            Action::Respond(response) => response,
            Action::Apply { command, reply } => {
                let outcome = self.registry.apply(&command, self.now_ms);
                match outcome {
                    CommandOutcome::Registered { bindings, .. } => {
                        self.front
                            .answer_register(&request, &reply, Ok(&bindings), self.now_ms)
                    }
                    CommandOutcome::Refused(refusal) => {
                        self.front
                            .answer_register(&request, &reply, Err(&refusal), self.now_ms)
                    }
                    CommandOutcome::Purged { .. } => panic!("purge from a request"),
                }
            }
            Action::Lookup { aor } => {
                let bindings = self.registry.lookup(&aor, self.now_ms);
                self.front.answer_lookup(&request, &bindings, self.now_ms)
            }
            Action::Drop { reason } => panic!("dropped: {reason}"),
        }
    }

    fn register(&mut self, user: &str, call_id: &str, cseq: u32, extra: &str) -> Response {
        let mut vias = String::new();
        for hop in 0..self.vias {
            vias.push_str(&format!(
                "Via: SIP/2.0/UDP 192.0.2.{}:5060;branch=z9hG4bK{call_id}{cseq}{hop}\n",
                hop + 1
            ));
        }
        self.send(&format!(
            "REGISTER sip:example.com SIP/2.0\n{vias}Max-Forwards: 70\n\
             From: <sip:{user}@example.com>;tag=f{call_id}\nTo: <sip:{user}@example.com>\n\
             Call-ID: {call_id}\nCSeq: {cseq} REGISTER\n{extra}Content-Length: 0\n\n"
        ))
    }

    fn request(&mut self, method: &str, uri: &str) -> Response {
        self.send(&format!(
            "{method} {uri} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKr{method}\n\
             Max-Forwards: 70\nFrom: <sip:carol@example.net>;tag=c1\nTo: <{uri}>\n\
             Call-ID: route-{method}\nCSeq: 1 {method}\nContent-Length: 0\n\n"
        ))
    }
}

fn values<'a>(response: &'a Response, name: &'a HeaderName) -> Vec<&'a str> {
    response.headers.get_all(name).collect()
}

fn contacts(response: &Response) -> Vec<&str> {
    values(response, &HeaderName::Contact)
}

#[test]
fn register_lists_binding_with_expiry_and_date() {
    let mut h = Harness::new();
    let r = h.register("alice", "c1", 1, "Contact: <sip:alice@192.0.2.1:5060>\n");
    assert_eq!(r.status, 200);
    assert_eq!(contacts(&r), ["<sip:alice@192.0.2.1:5060>;expires=3600"]);
    assert_eq!(
        r.headers.get(&HeaderName::Date),
        Some("Sun, 22 Nov 2026 20:14:32 GMT")
    );
    assert_eq!(
        r.headers.get(&HeaderName::Supported),
        Some("path, outbound, gruu")
    );
    let to = r.headers.to().expect("To");
    assert!(to.tag().is_some(), "a final response carries a To tag");
    assert_eq!(r.headers.call_id().expect("Call-ID"), "c1");
}

#[test]
fn refresh_updates_expiry_without_duplicating() {
    let mut h = Harness::new();
    h.register(
        "alice",
        "c1",
        1,
        "Contact: <sip:alice@192.0.2.1>;expires=600\n",
    );
    h.now_ms += 100_000;
    let r = h.register(
        "alice",
        "c1",
        2,
        "Contact: <sip:alice@192.0.2.1>;expires=900\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(contacts(&r), ["<sip:alice@192.0.2.1>;expires=900"]);
}

#[test]
fn query_lists_bindings_with_remaining_expiry() {
    let mut h = Harness::new();
    h.register(
        "alice",
        "c1",
        1,
        "Contact: <sip:alice@192.0.2.1>;expires=600\n",
    );
    h.now_ms += 100_000;
    let r = h.register("alice", "q1", 1, "");
    assert_eq!(r.status, 200);
    assert_eq!(contacts(&r), ["<sip:alice@192.0.2.1>;expires=500"]);
}

#[test]
fn unregister_one_contact() {
    let mut h = Harness::new();
    h.register(
        "alice",
        "c1",
        1,
        "Contact: <sip:a@192.0.2.1>, <sip:a@192.0.2.2>\n",
    );
    let r = h.register("alice", "c1", 2, "Contact: <sip:a@192.0.2.1>;expires=0\n");
    assert_eq!(r.status, 200);
    assert_eq!(contacts(&r), ["<sip:a@192.0.2.2>;expires=3600"]);
}

#[test]
fn unregister_star_with_expires_zero() {
    let mut h = Harness::new();
    h.register(
        "alice",
        "c1",
        1,
        "Contact: <sip:a@192.0.2.1>\nContact: <sip:a@192.0.2.2>\n",
    );
    let r = h.register("alice", "c2", 1, "Contact: *\nExpires: 0\n");
    assert_eq!(r.status, 200);
    assert!(contacts(&r).is_empty());
    assert!(contacts(&h.register("alice", "q", 1, "")).is_empty());
}

#[test]
fn star_needs_expires_zero_and_to_be_alone() {
    let mut h = Harness::new();
    assert_eq!(h.register("alice", "c1", 1, "Contact: *\n").status, 400);
    assert_eq!(
        h.register("alice", "c1", 2, "Contact: *\nExpires: 60\n")
            .status,
        400
    );
    assert_eq!(
        h.register("alice", "c1", 3, "Contact: *, <sip:a@h>\nExpires: 0\n")
            .status,
        400
    );
}

#[test]
fn too_brief_is_423_with_min_expires_and_changes_nothing() {
    let mut h = Harness::new();
    let r = h.register(
        "alice",
        "c1",
        1,
        "Contact: <sip:a@h1>, <sip:a@h2>;expires=30\n",
    );
    assert_eq!(r.status, 423);
    assert_eq!(r.reason, "Interval Too Brief");
    assert_eq!(r.headers.get(&HeaderName::MinExpires), Some("60"));
    assert!(contacts(&h.register("alice", "q", 1, "")).is_empty());
    let r = h.register("alice", "c1", 2, "Contact: <sip:a@h1>\nExpires: 59\n");
    assert_eq!(r.status, 423);
}

#[test]
fn long_expiry_is_lowered_to_max() {
    let mut h = Harness::new();
    let r = h.register("alice", "c1", 1, "Contact: <sip:a@h>\nExpires: 999999\n");
    assert_eq!(contacts(&r), ["<sip:a@h>;expires=7200"]);
}

#[test]
fn contact_param_wins_over_expires_header() {
    let mut h = Harness::new();
    let r = h.register(
        "alice",
        "c1",
        1,
        "Contact: <sip:a@h1>;expires=120, <sip:a@h2>\nExpires: 300\n",
    );
    let mut listed = contacts(&r);
    listed.sort();
    assert_eq!(listed, ["<sip:a@h1>;expires=120", "<sip:a@h2>;expires=300"]);
}

#[test]
fn out_of_order_cseq_fails_with_500_and_changes_nothing() {
    let mut h = Harness::new();
    h.register("alice", "c1", 5, "Contact: <sip:a@h>;expires=600\n");
    for cseq in [4, 5] {
        let r = h.register("alice", "c1", cseq, "Contact: <sip:a@h>;expires=0\n");
        assert_eq!(r.status, 500);
    }
    assert_eq!(
        contacts(&h.register("alice", "q", 1, "")),
        ["<sip:a@h>;expires=600"]
    );
}

#[test]
fn q_values_kept_and_routing_in_q_order() {
    let mut h = Harness::new();
    h.register(
        "alice",
        "c1",
        1,
        "Contact: <sip:a@low>;q=0.1, <sip:a@high>;q=0.9, <sip:a@mid>;q=0.5\n",
    );
    let r = h.request("INVITE", "sip:alice@example.com");
    assert_eq!(r.status, 302);
    assert_eq!(
        contacts(&r),
        [
            "<sip:a@high>;q=0.9;expires=3600",
            "<sip:a@mid>;q=0.5;expires=3600",
            "<sip:a@low>;q=0.1;expires=3600"
        ]
    );
}

#[test]
fn bad_q_and_expires_params_are_400() {
    let mut h = Harness::new();
    assert_eq!(
        h.register("alice", "c1", 1, "Contact: <sip:a@h>;q=2\n")
            .status,
        400
    );
    assert_eq!(
        h.register("alice", "c1", 2, "Contact: <sip:a@h>;expires=soon\n")
            .status,
        400
    );
    assert_eq!(h.register("alice", "c1", 3, "Expires: -1\n").status, 400);
}

#[test]
fn binding_limit_rejects_with_403() {
    let mut h = Harness::new();
    for i in 0..8 {
        let r = h.register("alice", "c1", i + 1, &format!("Contact: <sip:a@h{i}>\n"));
        assert_eq!(r.status, 200);
    }
    let r = h.register("alice", "c1", 9, "Contact: <sip:a@h8>\n");
    assert_eq!(r.status, 403);
    assert_eq!(contacts(&h.register("alice", "q", 1, "")).len(), 8);
}

#[test]
fn a_users_own_limit_travels_in_its_command_and_holds() {
    let mut h = Harness::new();
    let limited = User {
        bindings_max: Some(2),
        ..user("alice", "wonder")
    };
    h.front.set_directory(
        Directory::new(vec![limited, user("bob", "builder")]).expect("unique users"),
    );
    for i in 0..2 {
        let r = h.register("alice", "c1", i + 1, &format!("Contact: <sip:a@h{i}>\n"));
        assert_eq!(r.status, 200);
    }
    let r = h.register("alice", "c1", 3, "Contact: <sip:a@h2>\n");
    assert_eq!(r.status, 403, "alice may hold 2 bindings");
    assert_eq!(contacts(&h.register("alice", "q", 1, "")).len(), 2);
    // bob has no limit of his own: the policy's 8.
    for i in 0..3 {
        let r = h.register("bob", "c2", i + 1, &format!("Contact: <sip:b@h{i}>\n"));
        assert_eq!(r.status, 200);
    }
    // The command itself carries the limit, so that every replica applies the same one.
    let wire = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\n\
                From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n\
                Call-ID: c9\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@h9>\r\nContent-Length: 0\r\n\r\n";
    let Ok(Message::Request(request)) = parse_message(wire.as_bytes()) else {
        panic!("parses");
    };
    let context = RequestContext {
        now_ms: h.now_ms,
        transport: Transport::Udp,
        source: h.source,
    };
    match h.front.handle_request(&request, &context) {
        Action::Apply {
            command: Command::Register(register),
            ..
        } => assert_eq!(register.bindings_max, Some(2)),
        _ => panic!("a REGISTER to apply"),
    }
}

#[test]
fn binding_limit_can_evict_oldest() {
    let policy = Policy {
        bindings_per_aor_max: 2,
        overflow: Overflow::EvictOldest,
        ..Policy::default()
    };
    let mut h = Harness::with(policy, false);
    for i in 0..3 {
        h.now_ms += 1000;
        h.register("alice", "c1", i + 1, &format!("Contact: <sip:a@h{i}>\n"));
    }
    let answer = h.register("alice", "q", 1, "");
    let mut listed = contacts(&answer);
    listed.sort();
    assert_eq!(
        listed,
        ["<sip:a@h1>;expires=3599", "<sip:a@h2>;expires=3600"]
    );
}

#[test]
fn domain_not_served_and_unknown_aor_are_404() {
    let mut h = Harness::new();
    let r = h.send(
        "REGISTER sip:other.org SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\n\
         From: <sip:alice@other.org>;tag=1\nTo: <sip:alice@other.org>\nCall-ID: d\n\
         CSeq: 1 REGISTER\nContent-Length: 0\n\n",
    );
    assert_eq!(r.status, 404);
    let r = h.register("mallory", "c1", 1, "Contact: <sip:m@h>\n");
    assert_eq!(r.status, 404);
}

#[test]
fn unsupported_require_is_420_with_unsupported() {
    let mut h = Harness::new();
    let r = h.register("alice", "c1", 1, "Require: foo, path\nContact: <sip:a@h>\n");
    assert_eq!(r.status, 420);
    assert_eq!(r.headers.get(&HeaderName::Unsupported), Some("foo"));
    let r = h.register("alice", "c1", 2, "Require: path\nContact: <sip:a@h>\n");
    assert_eq!(r.status, 200);
}

#[test]
fn path_is_stored_and_echoed_when_supported() {
    let mut h = Harness::new();
    h.vias = 2;
    let r = h.register(
        "alice",
        "c1",
        1,
        "Supported: path\nPath: <sip:edge.example.com;lr>\nContact: <sip:a@h>\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(values(&r, &HeaderName::Path), ["<sip:edge.example.com;lr>"]);
    let r = h.register(
        "alice",
        "c1",
        2,
        "Path: <sip:edge.example.com;lr>\nContact: <sip:a@h>\n",
    );
    assert!(values(&r, &HeaderName::Path).is_empty());
    let stored = h.registry.lookup("sip:alice@example.com", h.now_ms);
    assert_eq!(stored[0].path, ["<sip:edge.example.com;lr>"]);
}

#[test]
fn outbound_flow_answers_require_outbound() {
    let mut h = Harness::new();
    let contact = "Supported: outbound\nContact: <sip:a@h1>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\";reg-id=1\n";
    let r = h.register("alice", "c1", 1, contact);
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get(&HeaderName::Require), Some("outbound"));
    // The same flow from a new address replaces the binding (RFC 5626 keys on instance + reg-id).
    let moved = contact.replace("sip:a@h1", "sip:a@h2");
    let r = h.register("alice", "c2", 1, &moved);
    assert_eq!(contacts(&r).len(), 1);
    assert!(contacts(&r)[0].starts_with("<sip:a@h2>"));
}

#[test]
fn outbound_through_proxy_without_path_is_439() {
    let mut h = Harness::new();
    h.vias = 2;
    let r = h.register(
        "alice",
        "c1",
        1,
        "Supported: outbound\nContact: <sip:a@h>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\n",
    );
    assert_eq!(r.status, 439);
}

#[test]
fn reg_id_without_instance_is_400() {
    let mut h = Harness::new();
    let r = h.register(
        "alice",
        "c1",
        1,
        "Supported: outbound\nContact: <sip:a@h>;reg-id=1\n",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn gruu_listed_when_supported() {
    let mut h = Harness::new();
    let r = h.register(
        "alice",
        "c1",
        1,
        "Supported: gruu\nContact: <sip:a@h>;+sip.instance=\"<urn:uuid:abc>\"\n",
    );
    assert_eq!(
        contacts(&r),
        ["<sip:a@h>;+sip.instance=\"<urn:uuid:abc>\";expires=3600;pub-gruu=\"sip:alice@example.com;gr=urn:uuid:abc\""]
    );
    let r = h.register("alice", "q", 1, "");
    assert!(!contacts(&r)[0].contains("pub-gruu"));
}

#[test]
fn routing_answers() {
    let mut h = Harness::new();
    assert_eq!(h.request("INVITE", "sip:alice@example.com").status, 480);
    assert_eq!(h.request("MESSAGE", "sip:mallory@example.com").status, 404);
    assert_eq!(h.request("INVITE", "sip:alice@other.org").status, 404);
    h.register("alice", "c1", 1, "Contact: <sip:a@h>\n");
    let r = h.request("OPTIONS", "sip:alice@example.com");
    assert_eq!(r.status, 302);
    assert_eq!(contacts(&r), ["<sip:a@h>;expires=3600"]);
    let r = h.request("CANCEL", "sip:alice@example.com");
    assert_eq!(r.status, 481);
}

#[test]
fn options_to_the_server_lists_capabilities() {
    let mut h = Harness::new();
    let r = h.request("OPTIONS", "sip:example.com");
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .get(&HeaderName::Allow)
        .is_some_and(|allow| allow.contains("REGISTER")));
    assert_eq!(
        r.headers.get(&HeaderName::Supported),
        Some("path, outbound, gruu")
    );
}

#[test]
fn expired_bindings_are_never_returned() {
    let mut h = Harness::new();
    h.register("alice", "c1", 1, "Contact: <sip:a@h>;expires=60\n");
    h.now_ms += 60_000;
    assert!(contacts(&h.register("alice", "q", 1, "")).is_empty());
    assert_eq!(h.request("INVITE", "sip:alice@example.com").status, 480);
}

#[test]
fn broken_mandatory_headers_are_400() {
    let mut h = Harness::new();
    let r = h.send(
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\n\
         From: <sip:alice@example.com>;tag=1\nTo: <sip:alice@example.com>\n\
         CSeq: 1 REGISTER\nContent-Length: 0\n\n",
    );
    assert_eq!(r.status, 400);
    let r = h.send(
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\n\
         From: <sip:alice@example.com>;tag=1\nTo: <sip:alice@example.com>\nCall-ID: x\n\
         CSeq: 1 INVITE\nContent-Length: 0\n\n",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn request_without_via_is_dropped() {
    let mut h = Harness::new();
    let wire = "OPTIONS sip:example.com SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n\
                Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let Ok(Message::Request(request)) = parse_message(wire.as_bytes()) else {
        panic!("parses");
    };
    let context = RequestContext {
        now_ms: T0,
        transport: Transport::Udp,
        source: "192.0.2.1:5060".parse().expect("address"),
    };
    assert!(matches!(
        h.front.handle_request(&request, &context),
        Action::Drop { .. }
    ));
}

// ---- digest authentication

/// Answers a challenge like a client: `qop=auth`, nc, cnonce, for a REGISTER.
fn authorization(challenge: &str, user: &str, password: &str, nc: u32) -> String {
    authorization_for(
        challenge,
        user,
        password,
        nc,
        ("REGISTER", "sip:example.com"),
    )
}

/// Answers a challenge for `request`: (method, digest uri).
fn authorization_for(
    challenge: &str,
    user: &str,
    password: &str,
    nc: u32,
    (method, uri): (&str, &str),
) -> String {
    let param = |name: &str| {
        let start = challenge.find(&format!("{name}=")).expect("param") + name.len() + 1;
        let rest = &challenge[start..];
        let rest = rest.strip_prefix('"').unwrap_or(rest);
        let end = rest.find(['"', ',']).unwrap_or(rest.len());
        rest[..end].to_string()
    };
    let nonce = param("nonce");
    let algorithm = param("algorithm");
    let hash = |text: String| -> String {
        if algorithm == "SHA-256" {
            hex::encode(Sha256::digest(text.as_bytes()))
        } else {
            hex::encode(Md5::digest(text.as_bytes()))
        }
    };
    let ha1 = hash(format!("{user}:{REALM}:{password}"));
    let ha2 = hash(format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = hash(format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={algorithm}, cnonce=\"0a4f113b\", qop=auth, nc={nc}, \
         opaque=\"{}\"",
        param("opaque")
    )
}

fn challenges(response: &Response) -> Vec<String> {
    values(response, &HeaderName::WwwAuthenticate)
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn unauthenticated_register_is_challenged_for_sha256_then_md5() {
    let mut h = Harness::with(Policy::default(), true);
    let r = h.register("alice", "c1", 1, "Contact: <sip:a@h>\n");
    assert_eq!(r.status, 401);
    let offered = challenges(&r);
    assert_eq!(offered.len(), 2);
    assert!(offered[0].contains("algorithm=SHA-256"));
    assert!(offered[1].contains("algorithm=MD5"));
    assert!(offered.iter().all(|c| c.contains("qop=\"auth\"")));
}

#[test]
fn digest_sha256_and_md5_both_register() {
    for index in [0, 1] {
        let mut h = Harness::with(Policy::default(), true);
        let r = h.register("alice", "c1", 1, "Contact: <sip:a@h>\n");
        let answer = authorization(&challenges(&r)[index], "alice", "wonder", 1);
        let r = h.register(
            "alice",
            "c1",
            2,
            &format!("Authorization: {answer}\nContact: <sip:a@h>\n"),
        );
        assert_eq!(r.status, 200, "challenge {index}");
    }
}

#[test]
fn wrong_password_is_challenged_again() {
    let mut h = Harness::with(Policy::default(), true);
    let r = h.register("alice", "c1", 1, "Contact: <sip:a@h>\n");
    let answer = authorization(&challenges(&r)[0], "alice", "guess", 1);
    let r = h.register(
        "alice",
        "c1",
        2,
        &format!("Authorization: {answer}\nContact: <sip:a@h>\n"),
    );
    assert_eq!(r.status, 401);
    assert!(!challenges(&r)[0].contains("stale=true"));
}

#[test]
fn registering_another_users_aor_is_403() {
    let mut h = Harness::with(Policy::default(), true);
    let r = h.register("alice", "c1", 1, "Contact: <sip:a@h>\n");
    let answer = authorization(&challenges(&r)[0], "bob", "builder", 1);
    let r = h.register(
        "alice",
        "c1",
        2,
        &format!("Authorization: {answer}\nContact: <sip:a@h>\n"),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn expired_nonce_is_stale_and_replayed_nc_refused() {
    let mut h = Harness::with(Policy::default(), true);
    let r = h.register("alice", "c1", 1, "Contact: <sip:a@h>\n");
    let challenge = challenges(&r)[0].clone();
    let first = authorization(&challenge, "alice", "wonder", 1);
    let extra = format!("Authorization: {first}\nContact: <sip:a@h>\n");
    assert_eq!(h.register("alice", "c1", 2, &extra).status, 200);
    // The same nc again is a replay.
    assert_eq!(h.register("alice", "c1", 3, &extra).status, 401);
    // A higher nc on the same nonce is fine.
    let second = authorization(&challenge, "alice", "wonder", 2);
    let extra = format!("Authorization: {second}\nContact: <sip:a@h>\n");
    assert_eq!(h.register("alice", "c1", 4, &extra).status, 200);
    // Past the nonce lifetime: challenged again with stale=true.
    h.now_ms += 301_000;
    let third = authorization(&challenge, "alice", "wonder", 3);
    let extra = format!("Authorization: {third}\nContact: <sip:a@h>\n");
    let r = h.register("alice", "c1", 5, &extra);
    assert_eq!(r.status, 401);
    assert!(challenges(&r).iter().all(|c| c.contains("stale=true")));
}

#[test]
fn malformed_authorization_is_400() {
    let mut h = Harness::with(Policy::default(), true);
    let r = h.register(
        "alice",
        "c1",
        1,
        "Authorization: Digest realm=\"example.com\", username=\"alice\nContact: <sip:a@h>\n",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn purge_command_is_applied_by_registry() {
    let mut h = Harness::new();
    h.register("alice", "c1", 1, "Contact: <sip:a@h>;expires=60\n");
    h.now_ms += 61_000;
    let outcome = h.registry.apply(&Command::PurgeExpired, h.now_ms);
    assert_eq!(
        outcome,
        CommandOutcome::Purged {
            bindings_removed: 1
        }
    );
}

/// By default a challenge is one field: MD5, which every client answers; a client naming
/// SHA-256 in an `Authorization` (IMS-style initial credentials, or its earlier answer) gets
/// SHA-256, and registers with it.
#[test]
fn a_single_challenge_is_md5_unless_sha256_is_asked_for() {
    let mut h = Harness::with(Policy::default(), true);
    h.front = Front::new(
        config(Policy::default()),
        Directory::new(vec![user("alice", "wonder")]).expect("users"),
        Some(DigestAuthenticator::new(DigestConfig::new(REALM), [7; 32])),
    );
    let r = h.register("alice", "c1", 1, "Contact: <sip:a@h>\n");
    let offered = challenges(&r);
    assert_eq!(offered.len(), 1);
    assert!(offered[0].contains("algorithm=MD5"), "{offered:?}");
    let hint = "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"\", \
                uri=\"sip:example.com\", response=\"\", algorithm=SHA-256\n";
    let r = h.register("alice", "c1", 2, &format!("{hint}Contact: <sip:a@h>\n"));
    assert_eq!(r.status, 401);
    let offered = challenges(&r);
    assert_eq!(offered.len(), 1);
    assert!(offered[0].contains("algorithm=SHA-256"), "{offered:?}");
    let answer = authorization(&offered[0], "alice", "wonder", 1);
    let r = h.register(
        "alice",
        "c1",
        3,
        &format!("Authorization: {answer}\nContact: <sip:a@h>\n"),
    );
    assert_eq!(r.status, 200);
}

/// Phones set up with the server's IP put it in the Request-URI; the AOR's domain still counts.
#[test]
fn request_uri_naming_the_registrar_by_address_is_accepted() {
    let mut h = Harness::new();
    let register = |h: &mut Harness, request_uri: &str, aor: &str, cseq: u32| {
        h.send(&format!(
            "REGISTER {request_uri} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKo{cseq}\n\
             Max-Forwards: 70\nFrom: <{aor}>;tag=f\nTo: <{aor}>\nCall-ID: own\n\
             CSeq: {cseq} REGISTER\nContact: <sip:alice@192.0.2.1>\nContent-Length: 0\n\n"
        ))
        .status
    };
    assert_eq!(
        register(&mut h, "sip:192.0.2.10:5060", "sip:alice@example.com", 1),
        200
    );
    assert_eq!(
        register(&mut h, "sip:192.0.2.10", "sip:alice@example.com", 2),
        200
    );
    assert_eq!(
        register(&mut h, "sip:192.0.2.10", "sip:alice@example.org", 3),
        404
    );
    assert_eq!(
        register(&mut h, "sip:192.0.2.11", "sip:alice@example.com", 4),
        404
    );
}

/// From an untrusted source, a lookup of a real user and of an unknown one get the same
/// challenge; once authenticated, the answers differ as before.
#[test]
fn untrusted_lookups_must_authenticate_and_users_look_alike() {
    let mut h = Harness::with(Policy::default(), true);
    h.register("alice", "c1", 1, "Contact: <sip:a@h>\n");
    h.source = UNTRUSTED.parse().expect("address");
    let mut statuses = Vec::new();
    for target in ["sip:alice@example.com", "sip:nobody@example.com"] {
        for method in ["OPTIONS", "INVITE"] {
            let r = h.request(method, target);
            assert_eq!(challenges(&r).len(), 2, "{method} {target}");
            statuses.push(r.status);
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401]);
    let lookup = |h: &mut Harness, target: &str| {
        let r = h.request("OPTIONS", target);
        let answer =
            authorization_for(&challenges(&r)[0], "bob", "builder", 1, ("OPTIONS", target));
        h.send(&format!(
            "OPTIONS {target} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKauth\n\
             Max-Forwards: 70\nFrom: <sip:bob@example.com>;tag=c1\nTo: <{target}>\n\
             Call-ID: route-auth\nCSeq: 2 OPTIONS\nAuthorization: {answer}\nContent-Length: 0\n\n"
        ))
        .status
    };
    assert_eq!(lookup(&mut h, "sip:alice@example.com"), 480);
    assert_eq!(lookup(&mut h, "sip:nobody@example.com"), 404);
}

/// Wrong answers from one source stop being checked once its bound is reached (`503` with
/// `Retry-After`, reported once), while the real user registers from its own address.
#[test]
fn password_guesses_are_bounded_while_the_real_user_registers() {
    let mut h = Harness::with(Policy::default(), true);
    let limits = roster_auth::GuessLimits {
        per_user_max: 3,
        per_source_max: 5,
        window_ms: 60_000,
    };
    let front = std::mem::replace(
        &mut h.front,
        Front::new(config(Policy::default()), Directory::default(), None),
    );
    h.front = front.with_guess_limiter(roster_auth::GuessLimiter::new(limits, RandomState::new()));
    let register_with = |h: &mut Harness, password: &str, cseq: u32| {
        let r = h.register("alice", "c1", cseq, "Contact: <sip:a@h>\n");
        let answer = authorization(&challenges(&r)[0], "alice", password, 1);
        h.register(
            "alice",
            "c1",
            cseq + 1,
            &format!("Authorization: {answer}\nContact: <sip:a@h>\n"),
        )
    };
    assert_eq!(register_with(&mut h, "wonder", 1).status, 200);
    h.source = UNTRUSTED.parse().expect("address");
    let statuses: Vec<u16> = (0..5)
        .map(|guess| register_with(&mut h, "guess", 10 + 2 * guess).status)
        .collect();
    assert_eq!(statuses, [401, 401, 401, 503, 503]);
    let r = h.register("alice", "c1", 30, "Contact: <sip:a@h>\n");
    assert_eq!(r.status, 401, "the source's bound is not reached yet");
    let mut events = Vec::new();
    while let Some(event) = h.front.poll_event() {
        events.push(event);
    }
    let reached: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, FrontEvent::GuessLimitReached { .. }))
        .collect();
    assert_eq!(reached.len(), 1, "{events:?}");
    h.source = "192.0.2.1:5060".parse().expect("address");
    assert_eq!(register_with(&mut h, "wonder", 40).status, 200);
    h.source = "203.0.113.5:5060".parse().expect("address");
    let r = register_with(&mut h, "wonder", 50);
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get(&HeaderName::RetryAfter), Some("60"));
}
