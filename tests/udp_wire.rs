//! Raw SIP datagrams against a real `roster` process: server transactions, Via handling and
//! malformed input, byte for byte.

use std::net::UdpSocket;
use std::time::Duration;

use roster_tests::{Node, NodeOptions, Users};

fn node() -> Node {
    Node::start(
        &Users {
            count: 10,
            password: "pw".into(),
        },
        NodeOptions {
            auth: false,
            ..NodeOptions::default()
        },
    )
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    socket
}

fn exchange(socket: &UdpSocket, node: &Node, request: &str) -> String {
    socket
        .send_to(request.as_bytes(), node.sip())
        .expect("send");
    receive(socket).expect("a response within the deadline")
}

fn receive(socket: &UdpSocket) -> Option<String> {
    let mut buffer = vec![0u8; 65_536];
    let (length, _) = socket.recv_from(&mut buffer).ok()?;
    Some(String::from_utf8_lossy(&buffer[..length]).into_owned())
}

fn register(socket: &UdpSocket, call_id: &str, cseq: u32, branch: &str, contact: &str) -> String {
    let port = socket.local_addr().expect("address").port();
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};rport;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t1@example.com>;tag=abc\r\nTo: <sip:t1@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or_default()
}

#[test]
fn retransmission_gets_the_same_response_and_is_not_applied_twice() {
    let node = node();
    let socket = client();
    let first = register(&socket, "tx-1", 1, "z9hG4bK-tx-1", "sip:t1@192.0.2.1");
    let answer = exchange(&socket, &node, &first);
    assert_eq!(status(&answer), "200", "{answer}");
    // A newer REGISTER of the same Call-ID moves the CSeq on ...
    let second = register(&socket, "tx-1", 2, "z9hG4bK-tx-2", "sip:t1@192.0.2.2");
    assert_eq!(status(&exchange(&socket, &node, &second)), "200");
    // ... so the first, if applied again, would fail with 500. Its retransmission gets the
    // very same 200 instead.
    let again = exchange(&socket, &node, &first);
    assert_eq!(again, answer);
    // And nothing changed: both contacts are there.
    let query = register(&socket, "tx-q", 1, "z9hG4bK-tx-q", "x").replace("Contact: <x>\r\n", "");
    let listed = exchange(&socket, &node, &query);
    assert!(listed.contains("<sip:t1@192.0.2.1>;expires="), "{listed}");
    assert!(listed.contains("<sip:t1@192.0.2.2>;expires="), "{listed}");
}

#[test]
fn response_goes_to_the_source_port_with_received_and_rport() {
    let node = node();
    let socket = client();
    let port = socket.local_addr().expect("address").port();
    let request = register(&socket, "via-1", 1, "z9hG4bK-via-1", "sip:t2@192.0.2.1").replace(
        &format!("127.0.0.1:{port};rport"),
        "198.51.100.7:5060;rport",
    );
    let answer = exchange(&socket, &node, &request);
    let via = format!(
        "Via: SIP/2.0/UDP 198.51.100.7:5060;rport={port};branch=z9hG4bK-via-1;received=127.0.0.1\r\n"
    );
    assert!(answer.contains(&via), "{answer}");
}

#[test]
fn malformed_datagrams_are_dropped_and_the_node_keeps_serving() {
    let mut node = node();
    let socket = client();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    for garbage in [
        &b"\x00\x01\x02 not sip at all"[..],
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1\r\n",
        b"REGISTER sip:example.com SIP/3.0\r\n\r\n",
        &[0xff; 70_000][..1400],
    ] {
        socket.send_to(garbage, node.sip()).expect("send");
        assert_eq!(receive(&socket), None, "no answer to garbage");
    }
    assert!(node.is_running());
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let options = "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK-o1\r\n\
                   From: <sip:t1@example.com>;tag=1\r\nTo: <sip:example.com>\r\nCall-ID: o1\r\n\
                   CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let answer = exchange(&socket, &node, options);
    assert_eq!(status(&answer), "200", "{answer}");
    assert!(answer.contains("Allow: REGISTER"), "{answer}");
}

#[test]
fn broken_header_gets_400_naming_the_problem() {
    let node = node();
    let socket = client();
    let request = register(&socket, "bad-1", 1, "z9hG4bK-bad-1", "sip:t1@192.0.2.1")
        .replace("CSeq: 1 REGISTER", "CSeq: one REGISTER");
    let answer = exchange(&socket, &node, &request);
    assert_eq!(status(&answer), "400", "{answer}");
    let reason = answer.lines().next().unwrap_or_default();
    assert!(reason.to_lowercase().contains("cseq"), "{reason}");
}

#[test]
fn invite_is_redirected_and_ack_absorbed() {
    let node = node();
    let socket = client();
    let port = socket.local_addr().expect("address").port();
    let add = register(
        &socket,
        "inv-reg",
        1,
        "z9hG4bK-inv-reg",
        "sip:t3@192.0.2.3;transport=udp",
    );
    let add = add.replace("t1@example.com", "t3@example.com");
    assert_eq!(status(&exchange(&socket, &node, &add)), "200");
    let invite = format!(
        "INVITE sip:t3@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK-inv-1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t4@example.com>;tag=9\r\nTo: <sip:t3@example.com>\r\n\
         Call-ID: inv-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let answer = exchange(&socket, &node, &invite);
    assert_eq!(status(&answer), "302", "{answer}");
    assert!(
        answer.contains("Contact: <sip:t3@192.0.2.3;transport=udp>;expires="),
        "{answer}"
    );
    let to_tag = answer
        .lines()
        .find(|l| l.starts_with("To:"))
        .expect("To")
        .to_string();
    let ack = invite
        .replace("INVITE sip", "ACK sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:t3@example.com>", &to_tag);
    socket
        .send_to(ack.as_bytes(), node.sip())
        .expect("send ack");
    socket
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    // After the ACK, timer G stops: no retransmitted 302 arrives.
    assert_eq!(receive(&socket), None);
}

#[test]
fn http_reports_metrics_health_and_status() {
    let node = node();
    let socket = client();
    let request = register(&socket, "http-1", 1, "z9hG4bK-http-1", "sip:t5@192.0.2.5");
    let request = request.replace("t1@example.com", "t5@example.com");
    assert_eq!(status(&exchange(&socket, &node, &request)), "200");
    let http = node.http.expect("the test node serves HTTP");
    let (code, body) = roster_tests::http_get(http, "/health");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = roster_tests::http_get(http, "/status");
    assert_eq!(code, 200);
    assert!(body.contains("\"bindings\":1"), "{body}");
    let (code, body) = roster_tests::http_get(http, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("roster_sip_responses_total{class=\"2xx\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("roster_sip_request_duration_seconds_bucket"),
        "{body}"
    );
}
