//! The `roster` command line as an operator meets it: bad input gives a message naming the
//! problem and a non-zero exit; `user add` and `demo` do what they say.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn roster() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roster"))
}

fn temp_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("roster-cli-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Stops a `roster demo` child when dropped, even when the test panics: SIGTERM first, so the
/// demo stops its nodes, then SIGKILL if it is still there after a bounded wait.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn missing_config_file_is_named() {
    let output = roster()
        .args(["start", "--config", "/nonexistent/roster.toml"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot read config file /nonexistent/roster.toml"));
}

#[test]
fn demo_groups_out_of_range_is_named() {
    for groups in ["0", "1025", "many"] {
        let output = roster()
            .args(["demo", "--groups", groups])
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "--groups {groups}");
        let message = stderr(&output);
        assert!(
            message.contains(&format!("invalid value '{groups}' for '--groups <N>'")),
            "{message}"
        );
    }
}

#[test]
fn invalid_config_is_named() {
    let dir = temp_dir("bad-config");
    let path = dir.join("roster.toml");
    std::fs::write(&path, "[sip]\ndomains = []\nudp = [\"127.0.0.1:5060\"]\n").expect("write");
    let output = roster()
        .arg("start")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("sip.domains"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn port_in_use_is_named() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address");
    let dir = temp_dir("port-in-use");
    let path = dir.join("roster.toml");
    std::fs::write(
        &path,
        format!(
            "[sip]\ndomains = [\"example.com\"]\nudp = [\"{address}\"]\n[auth]\nenabled = false\n"
        ),
    )
    .expect("write");
    let output = roster()
        .arg("start")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("cannot bind SIP UDP on {address}")),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let output = roster().args(["start", "--bogus"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn user_add_stores_hashes_and_refuses_duplicates() {
    let dir = temp_dir("user-add");
    let users = dir.join("users.toml");
    let add = || {
        let mut child = roster()
            .args([
                "user",
                "add",
                "--aor",
                "sip:alice@example.com",
                "--users-file",
            ])
            .arg(&users)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"correct horse\n")
            .expect("write password");
        child.wait_with_output().expect("wait")
    };
    let first = add();
    assert!(first.status.success(), "{}", stderr(&first));
    let text = std::fs::read_to_string(&users).expect("users file");
    assert!(text.contains("sip:alice@example.com"));
    assert!(text.contains("ha1_sha256"));
    assert!(!text.contains("correct horse"), "no clear password on disk");
    let second = add();
    assert_eq!(second.status.code(), Some(1));
    assert!(stderr(&second).contains("duplicate"), "{}", stderr(&second));
    let _ = std::fs::remove_dir_all(dir);
}

/// `roster demo` starts (with the routing groups asked for), prints its addresses and a
/// password, writes the credentials, and a real SIP client registers demo users with that
/// password.
#[test]
fn demo_serves_with_printed_credentials() {
    let dir = temp_dir("demo");
    let port = free_port();
    let mut child = roster()
        .arg("demo")
        // The one pool, whose nodes' ports free_port checked.
        .args(["--sites", "1"])
        .arg("--sip")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--dir")
        .arg(&dir)
        .args(["--http", "127.0.0.1:0", "--groups", "8"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let demo = Demo(child);
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut password = None;
    let mut banner = String::new();
    while password.is_none() {
        let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(60)) else {
            panic!("demo printed no password within 60 s:\n{banner}");
        };
        banner.push_str(&line);
        banner.push('\n');
        password = line.strip_prefix("password: ").map(str::to_string);
    }
    let password = password.expect("password line");
    assert!(
        banner.contains(&format!("UDP 127.0.0.1:{port}")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("UDP 127.0.0.1:{}", port + 4)),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("TLS 127.0.0.1:{}", port + 1)),
        "{banner}"
    );
    assert!(banner.contains("one of 8 Raft groups"), "{banner}");
    let topology = std::fs::read_to_string(dir.join("topology.toml")).expect("topology");
    assert!(topology.contains("groups = 8\n"), "{topology}");
    let credentials = std::fs::read_to_string(dir.join("credentials")).expect("credentials");
    assert!(credentials.contains(&format!("password: {password}")));

    let sipp = Command::new("sipp")
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-i",
            "127.0.0.1",
            "-nostdin",
            "-timeout_error",
            "-timeout",
            "30s",
        ])
        .args(["-recv_timeout", "5000", "-m", "3"])
        .arg("-sf")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/sipp/registrar_flow.xml"
        ))
        .arg("-inf")
        .arg(dir.join("users.csv"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output();
    drop(demo);
    let sipp = sipp.expect("run sipp (apt-get install sip-tester)");
    assert!(
        sipp.status.success(),
        "SIPp against the demo failed:\n{}",
        String::from_utf8_lossy(&sipp.stdout)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn demo_without_auth_says_so_loudly() {
    let dir = temp_dir("demo-no-auth");
    let port = free_port();
    let mut child = roster()
        .arg("demo")
        .args(["--sites", "1"])
        .arg("--no-auth")
        .arg("--sip")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--dir")
        .arg(&dir)
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let demo = Demo(child);
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut warned = false;
    while let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(60)) {
        warned |= line.contains("AUTHENTICATION IS OFF");
        if line.starts_with("password: ") {
            break;
        }
    }
    drop(demo);
    assert!(warned, "--no-auth must be announced");
    let _ = std::fs::remove_dir_all(dir);
}

/// A base port for the demo pool: SIP on base..base+5 (UDP and TCP), cluster on
/// base+1001..base+1003 (UDP), all free now.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    for _ in 0..500 {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = 20_000 + (std::process::id() % 500) as u16 * 70 + (step % 50) * 40;
        if base > 59_000 {
            continue;
        }
        let sip_free = (base..base + 6).all(|port| {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        let cluster_free = (base + 1001..=base + 1003)
            .all(|port| std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
        if sip_free && cluster_free {
            return base;
        }
    }
    panic!("no free port range");
}

/// A topology of the given node ids on loopback (no process listens: `init` only writes files).
fn topology_of(ids: &[u64]) -> String {
    topology_with_groups(ids, 4)
}

fn topology_with_groups(ids: &[u64], groups: u32) -> String {
    let mut text = format!(
        "[deployment]\nname = \"ids\"\n[[site]]\nname = \"s1\"\n\
         [[pool]]\nid = 1\nname = \"ids\"\nsite = \"s1\"\ngroups = {groups}\n"
    );
    for id in ids {
        text.push_str(&format!(
            "\n[[node]]\nid = {id}\npool = \"ids\"\ncluster = \"127.0.0.1:{}\"\nsip = \"127.0.0.1:{}\"\n",
            7000 + id,
            5000 + 2 * id
        ));
    }
    text
}

fn init(dir: &std::path::Path, ids: &[u64]) -> Output {
    init_with(dir, &topology_of(ids))
}

fn init_with(dir: &std::path::Path, text: &str) -> Output {
    let topology = dir.join("topology-in.toml");
    std::fs::write(&topology, text).expect("write topology");
    roster()
        .arg("init")
        .arg("--topology")
        .arg(&topology)
        .arg("--dir")
        .arg(dir.join("pool"))
        .arg("--no-auth")
        .output()
        .expect("run")
}

#[test]
fn init_never_gives_a_removed_node_id_again() {
    let dir = temp_dir("node-ids");
    for ids in [&[1, 2, 3][..], &[1, 2, 3, 4], &[1, 3, 4]] {
        let output = init(&dir, ids);
        assert!(output.status.success(), "init {ids:?}: {}", stderr(&output));
    }
    let record = std::fs::read_to_string(dir.join("pool/node-ids.toml")).expect("node-ids.toml");
    assert!(record.contains("retired = [2]"), "{record}");

    // Node 2 was removed: a new node under its id is refused, and nothing is rewritten.
    let before = std::fs::read_to_string(dir.join("pool/topology.toml")).expect("topology");
    let output = init(&dir, &[1, 2, 3, 4]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("node id 2 belonged to a node removed from this pool"),
        "{}",
        stderr(&output)
    );
    let after = std::fs::read_to_string(dir.join("pool/topology.toml")).expect("topology");
    assert_eq!(before, after);

    // A new id is fine.
    let output = init(&dir, &[1, 3, 4, 5]);
    assert!(output.status.success(), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn init_keeps_the_routing_groups_a_pool_was_created_with() {
    let dir = temp_dir("groups");
    let output = init_with(&dir, &topology_with_groups(&[1, 2, 3], 4));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = init_with(&dir, &topology_with_groups(&[1, 2, 3, 4], 8));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output)
            .contains("the topology says groups = 8 for pool ids, but it was created with 4"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.join("pool/node-4").exists(), "nothing is written");
    let output = init_with(&dir, &topology_with_groups(&[1, 2, 3, 4], 4));
    assert!(output.status.success(), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `roster cert node` needs the node's pool and writes it into the certificate's name.
#[test]
fn cert_node_names_the_pool_it_is_given() {
    let dir = temp_dir("cert-node");
    let output = roster()
        .args(["cert", "ca", "--dir"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", stderr(&output));
    let cert_node = |extra: &[&str]| {
        roster()
            .args(["cert", "node", "--id", "3", "--dir"])
            .arg(&dir)
            .args(extra)
            .output()
            .expect("run")
    };
    let output = cert_node(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--pool"), "{}", stderr(&output));
    let output = cert_node(&["--pool", "0"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--pool must be 1 or more"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.join("node-3.pem").exists(), "nothing is written");
    let output = cert_node(&["--pool", "2", "--address", "127.0.0.1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let certificate = roster_net::pki::NodeCertificate::read_files(
        &dir.join("node-3.pem"),
        &dir.join("node-3.key"),
    )
    .expect("certificate");
    assert_eq!(certificate.peer, roster_net::Peer { pool: 2, node: 3 });
    let _ = std::fs::remove_dir_all(&dir);
}

/// `roster init` issues each node's certificate for the topology's pool id.
#[test]
fn init_issues_certificates_for_the_topology_pool() {
    let dir = temp_dir("init-pool");
    let topology = topology_of(&[1, 2, 3]).replace("[[pool]]\nid = 1\n", "[[pool]]\nid = 7\n");
    let output = init_with(&dir, &topology);
    assert!(output.status.success(), "{}", stderr(&output));
    for node in [1, 2, 3] {
        let node_dir = dir.join(format!("pool/node-{node}"));
        let certificate = roster_net::pki::NodeCertificate::read_files(
            &node_dir.join("node.pem"),
            &node_dir.join("node.key"),
        )
        .expect("certificate");
        assert_eq!(certificate.peer, roster_net::Peer { pool: 7, node });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Asserts that `output` is a refusal (exit 1) whose message holds each of `expected`.
fn assert_refused(output: &Output, expected: &[&str]) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    for part in expected {
        assert!(message.contains(part), "{part:?} is not in: {message}");
    }
}

/// Two paired pools of three nodes on loopback and a witness in a third site (no process
/// listens: `init` and `cert rotate` only write files). `witness_address` is its QUIC address.
fn two_sites_with_witness(witness_address: &str) -> String {
    let mut text = String::from(
        "[deployment]\nname = \"sites\"\ncms = \"a\"\n\
         [[site]]\nname = \"dc1\"\n[[site]]\nname = \"dc2\"\n[[site]]\nname = \"dc3\"\n\
         [[pool]]\nid = 1\nname = \"a\"\nsite = \"dc1\"\ngroups = 4\n\
         [[pool]]\nid = 2\nname = \"b\"\nsite = \"dc2\"\ngroups = 4\n\
         [[pair]]\npools = [\"a\", \"b\"]\n",
    );
    for id in 1..=6u64 {
        let pool = if id <= 3 { "a" } else { "b" };
        text.push_str(&format!(
            "\n[[node]]\nid = {id}\npool = \"{pool}\"\ncluster = \"127.0.0.1:{}\"\nsip = \"127.0.0.1:{}\"\n",
            7000 + id,
            5000 + 2 * id
        ));
    }
    text.push_str(&format!(
        "\n[witness]\nid = 100\nsite = \"dc3\"\naddress = \"{witness_address}\"\npools = [\"a\", \"b\"]\n"
    ));
    text
}

fn rotate(step: &str, dir: &std::path::Path) -> Output {
    roster()
        .args(["cert", "rotate", step, "--dir"])
        .arg(dir)
        .output()
        .expect("run")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The peer `pem_path`'s certificate names, if the CA certificates in `ca_path` cover it.
fn verified(ca_path: &std::path::Path, pem_path: &std::path::Path) -> Option<roster_net::Peer> {
    let read = |path: &std::path::Path| std::fs::read_to_string(path).expect("read pem");
    roster_net::pki::verify_node_certificate(&read(ca_path), &read(pem_path)).ok()
}

/// A CA rotation covers the witness as it covers the nodes: `issue` gives it a certificate of
/// the new CA, its trust file (`../tls/ca.pem`) holds both CAs until `finish`, and `finish`
/// refuses while its certificate is the old CA's.
#[test]
fn a_ca_rotation_covers_the_witness() {
    let dir = temp_dir("rotate-witness");
    let output = init_with(&dir, &two_sites_with_witness("127.0.0.1:7100"));
    assert!(output.status.success(), "{}", stderr(&output));
    let pool = dir.join("pool");
    let (ca, witness_pem) = (
        pool.join("tls/ca.pem"),
        pool.join("witness-100/witness.pem"),
    );
    let witness = roster_net::Peer {
        pool: roster_topology::WITNESS_POOL,
        node: 100,
    };
    let config = std::fs::read_to_string(pool.join("witness-100/witness.toml")).expect("config");
    assert!(
        config.contains("ca_certificate = \"../tls/ca.pem\""),
        "{config}"
    );
    let old_ca = std::fs::read_to_string(&ca).expect("ca.pem");
    let old_witness = std::fs::read_to_string(&witness_pem).expect("witness.pem");

    let output = rotate("begin", &pool);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("and to the witness") && stdout(&output).contains("witness.toml"),
        "{}",
        stdout(&output)
    );
    let next_ca = pool.join("tls/ca-next.pem");
    let next_ca_copy = dir.join("next-ca.pem");
    std::fs::copy(&next_ca, &next_ca_copy).expect("copy the next CA");
    assert_eq!(
        verified(&ca, &witness_pem),
        Some(witness),
        "old witness, both CAs"
    );

    let output = rotate("issue", &pool);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("re-issued 6 node certificate(s) and the witness's"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        verified(&next_ca_copy, &witness_pem),
        Some(witness),
        "the witness's certificate is the new CA's"
    );
    assert_eq!(
        verified(&ca, &witness_pem),
        Some(witness),
        "new witness, both CAs"
    );
    let new_witness = std::fs::read_to_string(&witness_pem).expect("witness.pem");
    let new_key = std::fs::read(pool.join("witness-100/witness.key")).expect("witness.key");

    // The old certificate put back: finish refuses, naming it, and changes nothing.
    std::fs::write(&witness_pem, &old_witness).expect("put the old one back");
    let before = std::fs::read_to_string(&ca).expect("ca.pem");
    let output = rotate("finish", &pool);
    assert_refused(
        &output,
        &["witness-100/witness.pem (witness 100) is not from the new CA"],
    );
    assert_eq!(std::fs::read_to_string(&ca).expect("ca.pem"), before);
    std::fs::write(&witness_pem, &new_witness).expect("the new one again");

    let output = rotate("finish", &pool);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(verified(&ca, &witness_pem), Some(witness), "new CA alone");
    std::fs::write(dir.join("old-ca.pem"), &old_ca).expect("old CA");
    assert_eq!(
        verified(&dir.join("old-ca.pem"), &witness_pem),
        None,
        "the old CA does not cover the witness's new certificate"
    );
    // The witness starts from its rotated files (its key matches its new certificate).
    let certificate = roster_net::pki::NodeCertificate::read_files(
        &witness_pem,
        &pool.join("witness-100/witness.key"),
    )
    .expect("the witness's new pair");
    assert_eq!(certificate.peer, witness);
    assert_eq!(
        std::fs::read(pool.join("witness-100/witness.key")).expect("key"),
        new_key
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each rotation step out of turn is refused with the step that is due, and changes nothing.
#[test]
fn rotation_steps_out_of_turn_are_refused() {
    let dir = temp_dir("rotate-order");
    let output = init(&dir, &[1, 2, 3]);
    assert!(output.status.success(), "{}", stderr(&output));
    let pool = dir.join("pool");
    let ca = || std::fs::read_to_string(pool.join("tls/ca.pem")).expect("ca.pem");
    let steady = ca();
    for step in ["issue", "finish"] {
        let output = rotate(step, &pool);
        assert_refused(
            &output,
            &[
                "no rotation is under way",
                "`roster cert rotate begin` starts one",
            ],
        );
        assert_eq!(ca(), steady, "{step} before begin changed ca.pem");
        assert!(!pool.join("tls/ca-next.key").exists());
    }
    let output = rotate("begin", &pool);
    assert!(output.status.success(), "{}", stderr(&output));
    let begun = ca();
    let next_key = std::fs::read(pool.join("tls/ca-next.key")).expect("next key");
    let output = rotate("begin", &pool);
    assert_refused(
        &output,
        &[
            "cannot begin a rotation now: the rotation has begun",
            "`roster cert rotate issue` is next",
        ],
    );
    assert_eq!(ca(), begun, "a second begin changed ca.pem");
    assert_eq!(
        std::fs::read(pool.join("tls/ca-next.key")).expect("next key"),
        next_key,
        "a second begin made another CA"
    );
    let output = rotate("finish", &pool);
    assert_refused(
        &output,
        &["cannot finish the rotation now: the rotation has begun"],
    );
    let output = rotate("begin", &dir.join("nowhere"));
    assert_refused(&output, &["not a `roster init` directory"]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn witness(config: &std::path::Path) -> Output {
    roster()
        .arg("witness")
        .arg("--config")
        .arg(config)
        .output()
        .expect("run")
}

/// `roster witness` refuses a configuration it cannot read or use, naming the file and the
/// problem, with exit 1.
#[test]
fn witness_refuses_a_configuration_it_cannot_use() {
    let output = witness(std::path::Path::new("/nonexistent/witness.toml"));
    assert_refused(
        &output,
        &["cannot read witness configuration /nonexistent/witness.toml"],
    );
    let dir = temp_dir("witness-config");
    let output = witness(&dir);
    let unreadable = format!("cannot read witness configuration {}", dir.display());
    assert_refused(&output, &[&unreadable]);
    let garbage = dir.join("garbage.toml");
    std::fs::write(&garbage, "[witness]\nid = \"one\"\n").expect("write");
    let output = witness(&garbage);
    assert_refused(&output, &[&format!("in {}", garbage.display())]);

    let output = init_with(&dir, &two_sites_with_witness("127.0.0.1:7100"));
    assert!(output.status.success(), "{}", stderr(&output));
    let config = dir.join("pool/witness-100/witness.toml");
    let text = std::fs::read_to_string(&config).expect("witness.toml");
    assert!(text.contains("pools = [1, 2]"), "{text}");
    for (edit, expected) in [
        (
            text.replace("pools = [1, 2]", "pools = [1, 3]"),
            "witness.pools names pool 3, which is not in the topology (its pools: 1 (a), 2 (b))",
        ),
        (
            text.replace("id = 100", "id = 101"),
            "witness.id is 101, and the topology's [witness] has id 100",
        ),
    ] {
        std::fs::write(&config, edit).expect("edit");
        let output = witness(&config);
        assert_refused(&output, &["does not match", expected]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `roster witness` whose QUIC or HTTP address another process holds exits 1 naming it.
#[test]
fn witness_address_in_use_is_named() {
    let taken_udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let quic = taken_udp.local_addr().expect("address");
    let dir = temp_dir("witness-in-use");
    let output = init_with(&dir, &two_sites_with_witness(&quic.to_string()));
    assert!(output.status.success(), "{}", stderr(&output));
    let config = dir.join("pool/witness-100/witness.toml");
    let output = witness(&config);
    assert_refused(&output, &[&format!("cannot listen on {quic} (UDP)")]);
    drop(taken_udp);

    let taken_tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let http = taken_tcp.local_addr().expect("address");
    let text = std::fs::read_to_string(&config).expect("witness.toml");
    std::fs::write(
        &config,
        text.replace(
            &format!("listen = \"{quic}\"\n"),
            &format!("listen = \"127.0.0.1:0\"\nhttp = \"{http}\"\n"),
        ),
    )
    .expect("edit");
    let output = witness(&config);
    assert_refused(&output, &[&format!("cannot listen on {http} (HTTP)")]);
    let _ = std::fs::remove_dir_all(&dir);
}
