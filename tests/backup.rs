//! Two paired pools of real processes: users imported through the partner pool's node (the
//! CMS lives on the other), registrations at both pools, then `roster backup status` showing
//! every group of both directions steady, as JSON, as tables, and as per-direction gauges.

use std::time::{Duration, Instant};

use roster_tests::paired::{load, shown, Paired};
use roster_tests::{http_get, Users};

const PASSWORD: &str = "p4ired-pw";
const GROUPS: u32 = 4;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// Attempts of [`register_all`]: six debug-build nodes on shared CPUs, just started, may shed
/// a few REGISTERs with `503` (a leader behind on its requests); a second pass registers them.
const REGISTER_ATTEMPTS: usize = 3;

/// Registers `count` users `PREFIX0…` at `target` with digest, each once per attempt, until an
/// attempt has every registration acknowledged (at most [`REGISTER_ATTEMPTS`]).
fn register_all(paired: &Paired, target: std::net::SocketAddr, prefix: &str, count: usize) {
    let count = count.to_string();
    let report = paired.dir.path().join(format!("load-{prefix}.json"));
    let mut reports = Vec::new();
    for _ in 0..REGISTER_ATTEMPTS {
        let output = load(
            target,
            &[
                "--users",
                &count,
                "--user-prefix",
                prefix,
                "--password",
                PASSWORD,
                "--rate",
                "100",
                "--count",
                &count,
                "--mix",
                "register=1",
                "--json",
                report.to_str().expect("utf-8 path"),
            ],
        );
        assert!(output.status.success(), "{}", shown(&output));
        let report = json(&std::fs::read_to_string(&report).expect("load report"));
        if report["errors"] == 0 && report["acks"].as_u64() >= count.parse().ok() {
            return;
        }
        reports.push(report);
    }
    panic!("{REGISTER_ATTEMPTS} attempts left registrations unacknowledged: {reports:#?}");
}

/// Whether every stream of both directions is steady and caught up.
fn all_steady(status: &serde_json::Value) -> bool {
    let directions = status["directions"].as_array().cloned().unwrap_or_default();
    directions.len() == 2
        && directions.iter().all(|direction| {
            direction["stopped"] == 0
                && direction["behind"] == 0
                && direction["groups"].as_array().is_some_and(|groups| {
                    groups.iter().all(|group| {
                        group["state"] == "steady"
                            && group["lag_entries"] == 0
                            && group["partner_index"] == group["source_index"]
                    })
                })
        })
}

#[test]
fn backup_status_shows_both_directions_steady_after_registrations() {
    let paired = Paired::start(
        &Users {
            count: 40,
            password: PASSWORD.into(),
        },
        GROUPS,
    );
    let token = paired.token_file();
    let token = token.to_str().expect("utf-8 path");
    let west = paired.url(5);
    let east = paired.url(1);

    // Users homed on west, imported through a west node: the CMS lives on east.
    let mut csv = String::from("aor,password,pool\n");
    for i in 0..120 {
        csv.push_str(&format!("sip:w{i}@example.com,{PASSWORD},west\n"));
    }
    let file = paired.dir.path().join("west.csv");
    std::fs::write(&file, csv).expect("write csv");
    let file = file.to_str().expect("utf-8 path");
    let output = paired.roster(
        &[
            "user",
            "import",
            "--url",
            &west,
            "--token-file",
            token,
            file,
        ],
        "",
    );
    assert!(output.status.success(), "{}", shown(&output));
    // `user add` through the partner too, and `show` through the CMS's pool.
    let output = paired.roster(
        &[
            "user",
            "add",
            "--url",
            &west,
            "--token-file",
            token,
            "--aor",
            "sip:walter@example.com",
            "--pool",
            "west",
            "--bindings-max",
            "2",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(output.status.success(), "{}", shown(&output));
    // A node reads its own replica of the CMS: east's node 1 may apply the change a moment
    // after the leader answered.
    let deadline = Instant::now() + Duration::from_secs(20);
    let output = loop {
        let output = paired.roster(
            &[
                "user",
                "show",
                "--url",
                &east,
                "--token-file",
                token,
                "--aor",
                "sip:walter@example.com",
                "--format",
                "json",
            ],
            "",
        );
        if output.status.success() || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(output.status.success(), "{}", shown(&output));
    let walter = json(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(
        (
            walter["pool"]["name"].clone(),
            walter["bindings_max"].clone()
        ),
        ("west".into(), 2.into())
    );
    paired.await_directory(40 + 121);

    // Registrations into both pools: east's users at east, west's at west (and a few of
    // east's at west, forwarded to their home).
    register_all(&paired, paired.sip[&1], "t", 40);
    register_all(&paired, paired.sip[&4], "w", 120);

    // Every group of both directions steady and caught up, as any node of either pool sees it.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let (code, body) = http_get(paired.http[&6], "/api/v1/backup");
        assert_eq!(code, 200, "{body}");
        let status = json(&body);
        if all_steady(&status) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "not steady after 90 s: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status["pool"]["name"], "west");
    let directions = status["directions"].as_array().expect("directions");
    assert_eq!(directions[0]["source"]["name"], "west");
    assert_eq!(directions[0]["streams"], GROUPS, "{status:#}");
    assert_eq!(directions[1]["source"]["name"], "east");
    assert_eq!(
        directions[1]["streams"],
        GROUPS + 1,
        "east ships its groups and the CMS"
    );
    for direction in directions {
        let shipped: u64 = direction["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .filter_map(|group| group["source_index"].as_u64())
            .sum();
        assert!(shipped > 0, "nothing shipped: {direction:#}");
    }

    // The command: a table per direction and a summary, exit 0; JSON with --json.
    let topology = paired.topology();
    let topology = topology.to_str().expect("utf-8 path");
    let output = paired.roster(&["backup", "status", "--topology", topology], "");
    assert!(output.status.success(), "{}", shown(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        format!(
            "east → west: {} streams: {} steady, 0 behind, 0 stopped",
            GROUPS + 1,
            GROUPS + 1
        ),
        format!("west → east: {GROUPS} streams: {GROUPS} steady, 0 behind, 0 stopped"),
        "1/cms".to_string(),
        "2/routing-3".to_string(),
        "summary: east → west max lag".to_string(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in\n{text}");
    }
    let output = paired.roster(&["backup", "status", "--url", &west, "--json"], "");
    assert!(output.status.success(), "{}", shown(&output));
    let document = json(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(document["directions"].as_array().map(Vec::len), Some(2));

    // The per-direction gauges, on a node of either pool (refreshed every 5 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in [2, 4] {
        let wanted = [
            format!(
                "roster_backup_direction_streams{{source_pool=\"east\",copy_pool=\"west\",state=\"steady\"}} {}",
                GROUPS + 1
            ),
            format!(
                "roster_backup_direction_streams{{source_pool=\"west\",copy_pool=\"east\",state=\"steady\"}} {GROUPS}"
            ),
            "roster_backup_direction_streams{source_pool=\"west\",copy_pool=\"east\",state=\"stopped\"} 0".to_string(),
        ];
        loop {
            let (_, metrics) = http_get(paired.http[&id], "/metrics");
            let missing: Vec<&String> = wanted
                .iter()
                .filter(|line| !metrics.lines().any(|metric| metric == line.as_str()))
                .collect();
            if missing.is_empty() {
                assert!(
                    metrics.contains("roster_backup_direction_lag_seconds{"),
                    "{metrics}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: {missing:?} not in\n{}",
                metrics
                    .lines()
                    .filter(|line| line.contains("roster_backup"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
