//! The deployment's CA replaced while the pool serves: `roster cert rotate begin`, `issue` and
//! `finish` on a pool of three `roster start` processes, each step rolled out by restarting
//! the nodes one at a time (leaderships handed over first, the next node only once the pool is
//! healthy again), while `roster load --verify` registers through node 1; every acknowledged
//! registration is still there at the end, and each step run out of turn is refused. A node
//! whose certificate its trust file does not cover is refused by `--check-config`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use roster_tests::{http_get, output_text, roster_bin, run_with_deadline, Pool, TempDir, Users};

/// How long `roster load` runs: longer than the three rolls (nine restarts) take.
const LOAD_SECONDS: u64 = 150;

/// Longest wait for a restarted node to see a pool without problems.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(60);

/// Longest a command (a rotation step, a handover) may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

fn users() -> Users {
    Users {
        count: 100,
        password: "unused".into(),
    }
}

fn rotate(step: &str, dir: &Path) -> Output {
    run_with_deadline(
        Command::new(roster_bin())
            .args(["cert", "rotate", step, "--dir"])
            .arg(dir),
        COMMAND_DEADLINE,
    )
}

/// The CA certificates `ca.pem` holds.
fn trusted_count(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("tls/ca.pem"))
        .expect("read ca.pem")
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// Waits until node `http` answers `/health` and sees its pool without problems.
fn await_healthy(http: SocketAddr) {
    let deadline = Instant::now() + HEALTHY_DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let (status, body) = http_get(http, "/api/v1/deployment");
        if status == 200 {
            let overview: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            // `healthy`: no problem, and a node down or a group without quorum is one.
            if overview["healthy"] == true {
                return;
            }
            last = overview["problems"].to_string();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{http} saw problems for {HEALTHY_DEADLINE:?}: {last}");
}

/// Restarts every node in turn: its leaderships handed to the others, stopped, started from
/// its disk with the files as they are now, and healthy before the next.
fn roll(pool: &mut Pool, token: &Path) {
    for id in 1..=3 {
        let url = format!("http://{}", pool.http[&id]);
        let handover = run_with_deadline(
            Command::new(roster_bin())
                .args(["node", "handover", "--url", &url, "--node", &id.to_string()])
                .arg("--token-file")
                .arg(token),
            COMMAND_DEADLINE,
        );
        assert!(
            handover.status.success(),
            "handover: {}",
            output_text(&handover)
        );
        pool.kill(id);
        pool.restart(id);
        await_healthy(pool.http[&id]);
    }
}

#[test]
fn the_ca_rotates_under_load_with_rolling_restarts_and_nothing_is_lost() {
    let mut pool = Pool::start(&users());
    let dir = pool.dir.path().join("pool");
    let token = dir.join("admin.token");
    await_healthy(pool.http[&1]);
    let refused = rotate("issue", &dir);
    assert!(!refused.status.success(), "{}", output_text(&refused));
    assert!(
        output_text(&refused).contains("no rotation is under way"),
        "{}",
        output_text(&refused)
    );

    let target = pool.sip[&1].to_string();
    let load = std::thread::spawn(move || {
        run_with_deadline(
            Command::new(roster_bin())
                .args([
                    "load", &target, "--users", "100", "--rate", "40", "--verify",
                ])
                .args(["--duration", &format!("{LOAD_SECONDS}s")])
                .env("RUST_LOG", "warn"),
            Duration::from_secs(LOAD_SECONDS + 120),
        )
    });
    let started = Instant::now();
    for (step, trusted, said) in [
        ("begin", 2, "now trusts the current CA and the next one"),
        (
            "issue",
            2,
            "re-issued 3 node certificate(s) with the new CA",
        ),
        ("finish", 1, "trusts the new CA alone"),
    ] {
        let output = rotate(step, &dir);
        assert!(output.status.success(), "{step}: {}", output_text(&output));
        assert!(
            output_text(&output).contains(said),
            "{step}: {}",
            output_text(&output)
        );
        assert_eq!(trusted_count(&dir), trusted, "after {step}");
        roll(&mut pool, &token);
    }
    let rotation = started.elapsed();
    assert!(!dir.join("tls/ca-previous.key").exists());
    assert!(!dir.join("tls/ca-next.key").exists());
    let again = rotate("finish", &dir);
    assert!(!again.status.success(), "{}", output_text(&again));
    // Every node presents a certificate of the new CA and trusts that CA alone.
    for id in 1..=3 {
        let config = dir.join(format!("node-{id}/roster.toml"));
        let checked = run_with_deadline(
            Command::new(roster_bin())
                .args(["start", "--check-config", "--config"])
                .arg(&config),
            COMMAND_DEADLINE,
        );
        assert!(
            output_text(&checked).contains("(1 CA certificate)"),
            "{}",
            output_text(&checked)
        );
    }
    assert!(
        rotation < Duration::from_secs(LOAD_SECONDS),
        "the rotation took {rotation:?}, longer than the load"
    );
    let load = load.join().expect("load thread");
    let report = output_text(&load);
    eprintln!("rotation rolled in {rotation:?}\n{report}");
    assert!(load.status.success(), "{report}");
    assert!(report.contains("0 missing"), "{report}");
    assert!(report.contains("PASS"), "{report}");
}

/// After `issue` the nodes' certificates are the new CA's: a trust file naming the old CA alone
/// (a `finish` rolled out too early, a file restored from a backup) is caught before the node
/// starts, by the same check its peers would make in the handshake.
#[test]
fn check_config_refuses_a_certificate_its_trust_file_does_not_cover() {
    let dir = TempDir::new("ca-trust");
    let mut topology = String::from(
        "[deployment]\nname = \"trust\"\n[[site]]\nname = \"s1\"\n\
         [[pool]]\nid = 1\nname = \"a\"\nsite = \"s1\"\ngroups = 8\n",
    );
    for id in 1..=3 {
        topology.push_str(&format!(
            "[[node]]\nid = {id}\npool = \"a\"\ncluster = \"127.0.0.1:{}\"\nsip = \"127.0.0.1:{}\"\n",
            7100 + id,
            5100 + 2 * id
        ));
    }
    let topology_path = dir.path().join("topology.toml");
    std::fs::write(&topology_path, topology).expect("write topology");
    let pool = dir.path().join("pool");
    let init = run_with_deadline(
        Command::new(roster_bin())
            .args(["init", "--no-auth", "--topology"])
            .arg(&topology_path)
            .arg("--dir")
            .arg(&pool),
        COMMAND_DEADLINE,
    );
    assert!(init.status.success(), "{}", output_text(&init));
    let old_ca = std::fs::read_to_string(pool.join("tls/ca.pem")).expect("ca.pem");
    for step in ["begin", "issue"] {
        let output = rotate(step, &pool);
        assert!(output.status.success(), "{step}: {}", output_text(&output));
    }
    let check = || {
        run_with_deadline(
            Command::new(roster_bin())
                .args(["start", "--check-config", "--config"])
                .arg(pool.join("node-1/roster.toml")),
            COMMAND_DEADLINE,
        )
    };
    let both = check();
    assert!(both.status.success(), "{}", output_text(&both));
    assert!(output_text(&both).contains("(2 CA certificates)"));
    std::fs::write(pool.join("tls/ca.pem"), old_ca).expect("write the old CA alone");
    let refused = check();
    assert!(!refused.status.success(), "{}", output_text(&refused));
    assert!(
        output_text(&refused).contains("is not signed by a CA in"),
        "{}",
        output_text(&refused)
    );
}
