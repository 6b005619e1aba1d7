//! What an attacker tries against a registrar, against real `roster` processes: replaying a
//! captured `Authorization`, guessing passwords, listing users, malformed and oversize
//! requests, and holding TCP connections with half a message.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use roster_tests::sip_client::{Credentials, SipClient};
use roster_tests::{http_get, Node, NodeOptions, Pool, Users};

const ALICE: &str = "t1";
const ALICE_CONTACT: &str = "<sip:t1@192.0.2.10:5060>";
const ATTACKER_CONTACT: &str = "<sip:t1@198.51.100.66:5060>";

fn users() -> Users {
    Users {
        count: 20,
        password: "correct-horse".into(),
    }
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn alice(users: &Users) -> Credentials<'_> {
    Credentials {
        user: ALICE,
        password: &users.password,
    }
}

/// The attacker's REGISTER: a new Call-ID (its own socket), its own Contact, alice's captured
/// `Authorization`.
fn replay(target: SocketAddr, authorization: &str) -> u16 {
    let mut attacker = SipClient::new(loopback(66), target);
    let extra = format!("Authorization: {authorization}\r\nContact: {ATTACKER_CONTACT}\r\n");
    let to = format!("sip:{ALICE}@example.com");
    attacker
        .send("REGISTER", "sip:example.com", &to, &extra)
        .map_or(0, |response| response.status)
}

/// An `Authorization` captured from alice's REGISTER to node 1 gets no `200` on the two other
/// nodes, nor on node 1 again, nor on node 1 after it restarted (and its groups changed
/// leaders); alice's bindings never list the attacker's contact.
#[test]
fn a_captured_authorization_replays_nowhere_in_the_pool() {
    let users = users();
    let mut pool = Pool::start_authenticated(&users);
    let addresses = pool.sip.clone();
    let node = |id: u64| addresses[&id];
    let mut phone = SipClient::new(loopback(1), node(1));
    let register = |phone: &mut SipClient| {
        let extra = format!("Contact: {ALICE_CONTACT}\r\n");
        let to = format!("sip:{ALICE}@example.com");
        phone.send_authenticated("REGISTER", "sip:example.com", &to, &alice(&users), &extra)
    };
    // The pool's groups may still be electing their first leaders.
    let deadline = Instant::now() + Duration::from_secs(30);
    let captured = loop {
        match register(&mut phone) {
            Some((response, Some(authorization))) if response.status == 200 => break authorization,
            other if Instant::now() > deadline => panic!("alice cannot register: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    for id in [2, 3, 1] {
        assert_ne!(
            replay(node(id), &captured),
            200,
            "replay accepted by node {id}"
        );
    }
    pool.kill(1);
    pool.restart(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = replay(node(1), &captured);
        assert_ne!(status, 200, "replay accepted by node 1 after its restart");
        if status == 401 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut checker = SipClient::new(loopback(1), node(2));
    let (status, contacts) = checker.bindings(&alice(&users));
    assert_eq!(status, 200);
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert!(contacts[0].contains("192.0.2.10"), "{contacts:?}");
}

/// One wrong REGISTER answer for `user` from `client`; the final status.
fn guess(client: &mut SipClient, user: &str, password: &str) -> u16 {
    let to = format!("sip:{user}@example.com");
    let credentials = Credentials { user, password };
    client
        .send_authenticated("REGISTER", "sip:example.com", &to, &credentials, "")
        .map_or(0, |(response, _)| response.status)
}

/// Guesses for one user from one source are answered `401` up to the per-user bound, then
/// `503` with `Retry-After` unchecked; the real user, registered before from its own address,
/// still registers; the bound is a metric.
#[test]
fn password_guesses_are_bounded_while_the_real_user_registers() {
    let users = users();
    let node = Node::start(&users, NodeOptions::default());
    let mut phone = SipClient::new(loopback(1), node.sip());
    assert_eq!(guess(&mut phone, ALICE, &users.password), 200);
    let mut attacker = SipClient::new(loopback(77), node.sip());
    let statuses: Vec<u16> = (0..15)
        .map(|n| guess(&mut attacker, ALICE, &format!("guess-{n}")))
        .collect();
    let refused = statuses.iter().filter(|&&status| status == 503).count();
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(refused, 5, "{statuses:?}");
    assert_eq!(guess(&mut phone, ALICE, &users.password), 200);
    // The right password from the attacker's address is refused unchecked as well.
    assert_eq!(guess(&mut attacker, ALICE, &users.password), 503);
    let (_, metrics) = http_get(node.http.expect("http"), "/metrics");
    assert!(
        metrics.contains("roster_auth_guess_limits_total{scope=\"user\"} 1"),
        "{metrics}"
    );
}

/// One nonce, rising nonce counts, wrong responses: bounded by the source's bound.
#[test]
fn nonce_reusing_guesses_are_bounded_per_source() {
    let users = users();
    let node = Node::start(&users, NodeOptions::default());
    let mut attacker = SipClient::new(loopback(78), node.sip());
    let to = "sip:t2@example.com";
    let challenge = attacker
        .send("REGISTER", "sip:example.com", to, "")
        .expect("a challenge");
    let challenge = challenge
        .headers
        .get(&roster_sip::HeaderName::WwwAuthenticate)
        .and_then(|value| roster_auth::DigestChallenge::parse(value).ok())
        .expect("a digest challenge");
    let mut statuses = Vec::new();
    for nc in 1..=40u32 {
        // A different user name each time, so that only the source's bound applies.
        let username = format!("t{}", 2 + nc % 15);
        let answer = challenge.answer(&roster_auth::ChallengeAnswer {
            username: &username,
            password: "wrong",
            method: "REGISTER",
            uri: "sip:example.com",
            cnonce: "reuse",
            nc,
        });
        let extra = format!("Authorization: {answer}\r\n");
        let response = attacker.send("REGISTER", "sip:example.com", to, &extra);
        statuses.push(response.map_or(0, |r| r.status));
    }
    assert_eq!(&statuses[..20], &[401; 20], "{statuses:?}");
    assert!(statuses[20..].iter().all(|&s| s == 503), "{statuses:?}");
}

/// From an untrusted source, OPTIONS and INVITE for a registered user and for a user that
/// does not exist get the same challenge; nothing is located without credentials.
#[test]
fn untrusted_lookups_are_challenged_alike() {
    let users = users();
    let node = Node::start(&users, NodeOptions::default());
    let mut phone = SipClient::new(loopback(1), node.sip());
    let extra = format!("Contact: {ALICE_CONTACT}\r\n");
    let to = format!("sip:{ALICE}@example.com");
    let registered =
        phone.send_authenticated("REGISTER", "sip:example.com", &to, &alice(&users), &extra);
    assert_eq!(registered.map(|(r, _)| r.status), Some(200));
    let mut scanner = SipClient::new(loopback(79), node.sip());
    for method in ["OPTIONS", "INVITE"] {
        let mut answers = Vec::new();
        for target in [
            "sip:t1@example.com",
            "sip:t3@example.com",
            "sip:nobody@example.com",
        ] {
            let response = scanner.send(method, target, target, "").expect("an answer");
            let challenges = response
                .headers
                .get_all(&roster_sip::HeaderName::WwwAuthenticate)
                .count();
            assert!(response
                .headers
                .get_all(&roster_sip::HeaderName::Contact)
                .next()
                .is_none());
            answers.push((response.status, response.reason.clone(), challenges));
        }
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{method}: {answers:?}"
        );
        assert_eq!(answers[0].0, 401, "{method}: {answers:?}");
    }
    // With credentials, the lookup works as before.
    let located = scanner.send_authenticated(
        "OPTIONS",
        "sip:t1@example.com",
        "sip:t1@example.com",
        &alice(&users),
        "",
    );
    assert_eq!(located.map(|(r, _)| r.status), Some(302));
}

const FIELDS: &str = "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-bad;rport\r\n\
    From: <sip:t1@example.com>;tag=1\r\nTo: <sip:t1@example.com>\r\nCall-ID: bad-1\r\n\
    CSeq: 1 REGISTER\r\n";

fn malformed_cases() -> Vec<(String, u16)> {
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    vec![
        (
            format!("REGISTER tel:+15551234 SIP/2.0\r\n{FIELDS}Content-Length: 0\r\n\r\n"),
            416,
        ),
        (
            format!("REGISTER sip:example.com SIP/3.0\r\n{FIELDS}Content-Length: 0\r\n\r\n"),
            505,
        ),
        (
            format!("REGISTER sip:example.com SIP/2.0\r\n{FIELDS}{many}Content-Length: 0\r\n\r\n"),
            400,
        ),
    ]
}

/// Unsupported scheme `416`, unsupported version `505`, too many header fields `400`, over
/// UDP and TCP; a message over the size limit on TCP `513`; the node keeps serving.
#[test]
fn unparsable_requests_get_the_rfc_status_over_udp_and_tcp() {
    let users = users();
    let node = Node::start(&users, NodeOptions::default());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buffer = vec![0u8; 65_536];
    for (request, status) in malformed_cases() {
        socket
            .send_to(request.as_bytes(), node.sip())
            .expect("send");
        let (length, _) = socket.recv_from(&mut buffer).expect("an answer over UDP");
        let answer = String::from_utf8_lossy(&buffer[..length]).into_owned();
        assert_eq!(roster_tests::status_of(&answer), status, "{answer}");
        assert!(answer.contains("Call-ID: bad-1"), "{answer}");
    }
    let oversize = format!(
        "REGISTER sip:example.com SIP/2.0\r\n{FIELDS}Content-Length: 65500\r\n\r\n{}",
        "x".repeat(65_500)
    );
    let mut cases = malformed_cases();
    cases.push((oversize, 513));
    for (request, status) in cases {
        let mut stream = TcpStream::connect(node.sip()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = stream.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(roster_tests::status_of(&answer), status, "{answer}");
    }
    let mut phone = SipClient::new(loopback(1), node.sip());
    assert_eq!(guess(&mut phone, ALICE, &users.password), 200);
}

/// A source's TCP connections beyond its bound are closed at once; a connection holding half
/// a REGISTER is closed after the message timeout; another source still registers.
#[test]
fn tcp_connections_are_capped_per_source_and_half_messages_time_out() {
    let users = users();
    let options = NodeOptions {
        sip: "connections_per_source_max = 4\nmessage_timeout_s = 2".into(),
        ..NodeOptions::default()
    };
    let node = Node::start(&users, options);
    let connect = |last: u8| {
        let stream = connect_from(loopback(last), node.sip());
        stream
            .set_read_timeout(Some(Duration::from_secs(6)))
            .expect("timeout");
        stream
    };
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(88)).collect();
    for stream in &mut held {
        let _ =
            stream.write_all(b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.88");
    }
    let mut extra = connect(88);
    let mut byte = [0u8; 1];
    assert!(
        matches!(extra.read(&mut byte), Ok(0) | Err(_)),
        "a fifth connection from one source is closed"
    );
    let started = Instant::now();
    for stream in &mut held {
        assert!(matches!(stream.read(&mut byte), Ok(0) | Err(_)));
    }
    let held_for = started.elapsed();
    assert!(
        held_for < Duration::from_secs(5),
        "half messages held {held_for:?}"
    );
    let mut other = connect(89);
    let register = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.89:5999;branch=z9hG4bK-ok\r\n\
         From: <sip:t1@example.com>;tag=1\r\nTo: <sip:t1@example.com>\r\nCall-ID: ok-1\r\n\
         CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
    other.write_all(register.as_bytes()).expect("write");
    let mut answer = [0u8; 2048];
    let length = other.read(&mut answer).expect("an answer");
    let answer = String::from_utf8_lossy(&answer[..length]).into_owned();
    assert_eq!(roster_tests::status_of(&answer), 401, "{answer}");
}

/// A TCP connection from `source` (a loopback address) to `target`.
fn connect_from(source: IpAddr, target: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind a loopback address");
    socket
        .connect_timeout(&target.into(), Duration::from_secs(5))
        .expect("connect");
    socket.into()
}
