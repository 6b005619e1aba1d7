//! SIPp, a real SIP client, against a real `roster` process on loopback.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use roster_tests::{free_port, scenario, sipp, Node, NodeOptions, Users};

/// A SIPp run that takes longer than this has hung.
const SIPP_DEADLINE: Duration = Duration::from_secs(60);

fn users() -> Users {
    Users {
        count: 50,
        password: "s3cret-pw".into(),
    }
}

/// A node with the default `[auth]`: SIPp 3.6 answers MD5 challenges only, and the default
/// challenge offers MD5 to a client that asks for nothing else (SHA-256 is covered by the
/// registrar's unit tests and by `roster load --algorithm sha-256`).
fn md5_node() -> Node {
    Node::start(&users(), NodeOptions::default())
}

fn flow_args(node: &Node, transport: &str, calls: &str) -> Vec<String> {
    let csv = node.dir.path().join("users.csv");
    vec![
        "-sf".into(),
        scenario("registrar_flow.xml").display().to_string(),
        "-inf".into(),
        csv.display().to_string(),
        "-t".into(),
        transport.into(),
        "-m".into(),
        calls.into(),
        "-l".into(),
        "5".into(),
        "-r".into(),
        "20".into(),
    ]
}

fn run_flow(node: &Node, target: std::net::SocketAddr, transport: &str, calls: &str) {
    let args = flow_args(node, transport, calls);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = sipp(target, &args, SIPP_DEADLINE);
    assert_eq!(
        run.code,
        Some(0),
        "SIPp reported failed calls:\n{}",
        run.report
    );
}

/// Register, refresh, second contact, query, unregister one, 423, unregister *, query: every
/// step behind a digest challenge answered by SIPp's [authentication], over UDP.
#[test]
fn udp_registrar_flow_with_digest() {
    let node = md5_node();
    run_flow(&node, node.sip(), "u1", "10");
}

/// The same flow over TCP: one connection carrying every call.
#[test]
fn tcp_registrar_flow_with_digest() {
    let node = md5_node();
    run_flow(&node, node.sip(), "t1", "10");
}

/// The same flow over TLS. Debian's SIPp is built without TLS, so socat carries SIPp's TCP
/// into a TLS connection to roster: roster's side is real TLS.
#[test]
fn tls_registrar_flow_with_digest() {
    let node = md5_node();
    let relay_port = free_port();
    let _relay = Relay::start(relay_port, node.sip_tls());
    run_flow(
        &node,
        std::net::SocketAddr::from(([127, 0, 0, 1], relay_port)),
        "t1",
        "10",
    );
}

/// A wrong password is challenged again and never registers.
#[test]
fn wrong_password_fails() {
    let node = md5_node();
    let csv = node.dir.path().join("wrong.csv");
    let line = roster_tests::sipp_csv_line("t1", "not-the-password");
    std::fs::write(&csv, format!("SEQUENTIAL\n{line}")).expect("csv");
    let run = sipp(
        node.sip(),
        &[
            "-sf",
            scenario("registrar_flow.xml").to_str().expect("utf-8 path"),
            "-inf",
            csv.to_str().expect("utf-8 path"),
            "-m",
            "1",
        ],
        SIPP_DEADLINE,
    );
    assert_ne!(
        run.code,
        Some(0),
        "a wrong password must fail:\n{}",
        run.report
    );
    assert!(
        run.report.contains("401"),
        "the failure should be an unexpected 401:\n{}",
        run.report
    );
}

/// Open-loop load without authentication: every REGISTER gets its 200.
#[test]
fn udp_register_load_without_failures() {
    let node = Node::start(
        &Users {
            count: 2000,
            password: "x".into(),
        },
        NodeOptions {
            auth: false,
            // SIPp drives 500 requests/s from one address: a trusted load driver.
            sip: "trusted_networks = [\"127.0.0.1\"]".into(),
            ..NodeOptions::default()
        },
    );
    let csv = node.dir.path().join("users.csv");
    let run = sipp(
        node.sip(),
        &[
            "-sf",
            scenario("register_load.xml").to_str().expect("utf-8 path"),
            "-inf",
            csv.to_str().expect("utf-8 path"),
            "-r",
            "500",
            "-m",
            "2000",
            "-l",
            "500",
        ],
        SIPP_DEADLINE,
    );
    assert_eq!(
        run.code,
        Some(0),
        "failed calls under load:\n{}",
        run.report
    );
}

/// socat relaying plain TCP on a loopback port into TLS towards `target`.
struct Relay(Child);

impl Relay {
    fn start(port: u16, target: std::net::SocketAddr) -> Relay {
        assert!(
            Path::new("/usr/bin/socat").exists(),
            "socat is needed for the TLS test (apt-get install socat)"
        );
        let mut child = Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!("OPENSSL:{target},verify=0"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn socat");
        // Wait (bounded) until the relay accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Relay(child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("socat relay did not start listening on {port}");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
