//! The operator's surface of real processes: logs (text without escape codes in a file, JSON
//! lines on request, every request line with AOR, group, node, pool and epoch), errors that name
//! the problem and what to do (a data directory in use, an address in use, files that exist),
//! `roster start --check-config`, and `roster init` run again keeping what an operator set.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roster_tests::{
    register_udp, roster_bin, run_with_deadline, status_of, Node, NodeOptions, Pool, TempDir, Users,
};

/// How long a command that should fail at once may take (a debug build on busy CPUs).
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

fn users() -> Users {
    Users {
        count: 10,
        password: "secret".into(),
    }
}

fn roster(args: &[&str]) -> std::process::Output {
    run_with_deadline(Command::new(roster_bin()).args(args), COMMAND_DEADLINE)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn pool_node_errors_check_config_logs_and_init_again() {
    let mut pool = Pool::start(&users());
    let dir = pool.dir.path().to_path_buf();
    let config = dir.join("pool/node-1/roster.toml");
    let config_arg = config.to_str().expect("utf-8 path");

    // A second node on node 1's data directory names the process running from it.
    let second = roster(&["start", "--config", config_arg]);
    let stderr = text(&second.stderr);
    assert!(!second.status.success(), "a second node started: {stderr}");
    assert!(
        stderr.contains("is in use by pid")
            && stderr.contains(&format!("roster start --config {config_arg}"))
            && stderr.contains("stop it first"),
        "{stderr}"
    );
    assert!(!stderr.contains("WouldBlock"), "{stderr}");

    // The configuration checks out while the node runs, with notes on what it holds.
    let check = roster(&["start", "--config", config_arg, "--check-config"]);
    let stdout = text(&check.stdout);
    assert!(check.status.success(), "{stdout}{}", text(&check.stderr));
    for expected in [
        "ok: topology",
        "names node 1 of pool test (id 1)",
        "ok: note: data directory",
        "the node can start",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }
    // A missing certificate is named.
    let broken = dir.join("pool/node-1/broken.toml");
    let original = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &broken,
        original.replace(
            "node_certificate = \"node.pem\"",
            "node_certificate = \"gone.pem\"",
        ),
    )
    .expect("write");
    let check = roster(&[
        "start",
        "--config",
        broken.to_str().expect("utf-8"),
        "--check-config",
    ]);
    assert!(!check.status.success());
    assert!(
        text(&check.stderr).contains("gone.pem"),
        "{}",
        text(&check.stderr)
    );

    // The nodes' log files are text without escape codes.
    let log = std::fs::read_to_string(dir.join("node-1.log")).expect("node log");
    assert!(log.contains("pool node started"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a log file");

    // Node 3 again with JSON logs: a request's lines carry AOR, group, node, pool and epoch.
    pool.kill(3);
    let json_log = dir.join("node-3.json.log");
    let sip = json_node_register(
        &dir.join("pool/node-3/roster.toml"),
        &json_log,
        pool.sip[&3],
    );
    assert_eq!(sip, 200);
    let lines = std::fs::read_to_string(&json_log).expect("json log");
    let mut request_lines = 0;
    for line in lines.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        if value["span"]["name"] == "request" {
            let span = &value["span"];
            assert_eq!(span["aor"], "sip:t1@example.com", "{line}");
            assert!(
                span["group"]
                    .as_str()
                    .is_some_and(|g| g.starts_with("1/routing-")),
                "{line}"
            );
            assert_eq!(span["pool"], 1, "{line}");
            assert_eq!(span["epoch"], 1, "{line}");
            assert_eq!(span["node"], "node-3", "{line}");
            request_lines += 1;
        }
    }
    assert!(request_lines > 0, "no request line in {lines}");

    // `roster init` again keeps what an operator set in a node's configuration.
    let edited = original.replace(
        "algorithms = [\"SHA-256\", \"MD5\"]",
        "# MD5 off\nalgorithms = [\"SHA-256\"]",
    ) + "\n[registrar]\nexpires_max_s = 3600\n";
    std::fs::write(&config, &edited).expect("edit");
    let again = roster(&[
        "init",
        "--topology",
        dir.join("pool/topology.toml").to_str().expect("utf-8"),
        "--dir",
        dir.join("pool").to_str().expect("utf-8"),
        "--no-auth",
    ]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let rewritten = std::fs::read_to_string(&config).expect("config");
    for kept in [
        "algorithms = [\"SHA-256\"]",
        "# MD5 off",
        "expires_max_s = 3600",
        "trusted_networks = [\"127.0.0.1\"]",
    ] {
        assert!(rewritten.contains(kept), "{kept:?} lost: {rewritten}");
    }
}

/// Starts the node of `config` with `--log-format json` (debug lines of the request path) and
/// its log in `log`, REGISTERs t1 through it at `sip`, stops it; the status of the answer.
fn json_node_register(config: &Path, log: &Path, sip: std::net::SocketAddr) -> u16 {
    let mut child = Command::new(roster_bin())
        .args(["start", "--log-format", "json", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn,roster::sip=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "roster: ready" {
                let _ = ready_tx.send(());
            }
        }
    });
    let ready = ready_rx.recv_timeout(Duration::from_secs(60)).is_ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    while ready && Instant::now() < deadline {
        let call_id = format!("json-{}", deadline.elapsed().as_nanos());
        let answer = register_udp(
            sip,
            "t1",
            &call_id,
            1,
            Some("sip:t1@127.0.0.1:5999"),
            Duration::from_secs(3),
        );
        status = answer.as_deref().map_or(0, status_of);
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    status
}

#[test]
fn an_address_in_use_names_the_process_holding_it() {
    let node = Node::start(
        &users(),
        NodeOptions {
            auth: false,
            ..NodeOptions::default()
        },
    );
    let config = node.dir.path().join("roster.toml");
    let config_arg = config.to_str().expect("utf-8");
    let output = roster(&["start", "--config", config_arg]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("cannot bind SIP UDP on 127.0.0.1:{}", node.port))
            && stderr.contains("in use by pid")
            && stderr.contains(&format!("roster start --config {config_arg}"))
            && stderr.contains("stop that process"),
        "{stderr}"
    );
}

#[test]
fn cert_commands_name_a_file_that_exists_once() {
    let dir = TempDir::new("cert");
    let tls = dir.path().join("tls");
    let tls_arg = tls.to_str().expect("utf-8");
    assert!(roster(&["cert", "ca", "--dir", tls_arg]).status.success());
    let again = roster(&["cert", "ca", "--dir", tls_arg]);
    let stderr = text(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.contains("ca.pem exists: a CA is never overwritten"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("exists").count(), 1, "{stderr}");
    let node = ["cert", "node", "--dir", tls_arg, "--id", "1", "--pool", "1"];
    assert!(roster(&node).status.success());
    let again = roster(&node);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("node-1.pem exists"),
        "{}",
        text(&again.stderr)
    );
}
