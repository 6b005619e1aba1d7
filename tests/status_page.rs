//! The operator's status page and its JSON on a deployment of two paired pools: the overview
//! lists every node of both pools, a killed node is down within seconds while the page still
//! answers, and in a real browser (Debian's chromium driven by playwright-core,
//! `tests/browser/status_page.mjs`) the page loads, lists every node and shows the killed one
//! DOWN. `scripts/test` installs chromium, Node.js and playwright-core.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use roster_tests::deployment::{dashboard_queries, exposed_names, metric_names};
use roster_tests::paired::Paired;
use roster_tests::prometheus::Prometheus;
use roster_tests::sip_client::{Credentials, SipClient};
use roster_tests::{http_get, run_with_deadline, Users};

/// How long the deployment may take to show every node up with replication going (six debug
/// nodes electing and seeding the CMS on two shared CPUs).
const SETTLE_DEADLINE: Duration = Duration::from_secs(90);

/// How long the browser check may take, the browser's start included.
const BROWSER_DEADLINE: Duration = Duration::from_secs(120);

fn overview(deployment: &Paired, node: u64) -> serde_json::Value {
    let started = Instant::now();
    let (status, body) = http_get(deployment.http[&node], "/api/v1/deployment");
    // A dead node costs the gathering its status timeout, never more than a few seconds.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the overview took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("overview JSON")
}

fn nodes_up(overview: &serde_json::Value) -> Vec<(u64, bool)> {
    overview["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|pool| pool["nodes"].as_array().cloned().unwrap_or_default())
        .map(|node| (node["id"].as_u64().unwrap_or(0), node["up"] == true))
        .collect()
}

/// Runs `roster ARGS`.
fn roster_run(args: &[&str]) -> std::process::Output {
    run_with_deadline(
        Command::new(roster_tests::roster_bin()).args(args),
        Duration::from_secs(60),
    )
}

/// `roster ARGS`' standard output; panics when it fails.
fn roster(args: &[&str]) -> String {
    let output = roster_run(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "roster {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Registers one user through node 1 from an untrusted address, after a wrong password once
/// (so that the request and authentication counters exist), then waits until every Roster
/// metric the Grafana dashboard and the alert rules read is exported by some node.
fn check_dashboard_metrics(deployment: &Paired) {
    let mut client = SipClient::new([127, 0, 0, 2].into(), deployment.sip[&1]);
    let aor = "sip:t0@example.com";
    let contact = "Contact: <sip:t0@192.0.2.7:5060>;expires=600\r\n";
    let wrong = Credentials {
        user: "t0",
        password: "not-the-password",
    };
    let right = Credentials {
        user: "t0",
        password: "secret",
    };
    // The node's directory follows the CMS a moment after the CMS has the users.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered =
            client.send_authenticated("REGISTER", "sip:example.com", aor, &right, contact);
        let status = answered.map(|(r, _)| r.status);
        if status == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "t0 not registered: {status:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let answered = client.send_authenticated("REGISTER", "sip:example.com", aor, &wrong, contact);
    assert_eq!(answered.map(|(r, _)| r.status), Some(401));

    let queries = dashboard_queries();
    let rules_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/roster.rules.yml");
    let rules = std::fs::read_to_string(&rules_path).expect("deploy/prometheus/roster.rules.yml");
    let mut wanted: Vec<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    // Counted only when it happens (no overload here): the rules may read it unexported.
    const EVENT_COUNTERS: [&str; 2] = ["roster_sip_shed_total", "roster_auth_guess_limits_total"];
    wanted.extend(
        metric_names(&rules)
            .into_iter()
            .filter(|name| !EVENT_COUNTERS.contains(&name.as_str())),
    );
    wanted.sort();
    wanted.dedup();
    assert!(wanted.len() >= 12, "{wanted:?}");
    // The gauges are refreshed every 5 s; a stream's lag once the shipper has run.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut exposed = std::collections::BTreeSet::new();
        for http in deployment.http.values() {
            let (status, text) = http_get(*http, "/metrics");
            assert_eq!(status, 200);
            exposed.extend(exposed_names(&text));
        }
        let missing: Vec<&String> = wanted.iter().filter(|n| !exposed.contains(*n)).collect();
        if missing.is_empty() {
            println!(
                "dashboard and rules: {} metric names, all exported",
                wanted.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard or the rules read metrics no node exports: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every query of the dashboard, run by a real Prometheus scraping the six nodes, answers
    // with at least one series.
    let targets: Vec<std::net::SocketAddr> = deployment.http.values().copied().collect();
    let prometheus = Prometheus::start(&targets, &rules_path);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = queries.clone();
    while !pending.is_empty() {
        let mut failures = Vec::new();
        pending.retain(|query| match prometheus.query(query) {
            Ok(result) if result.as_array().is_some_and(|r| !r.is_empty()) => false,
            Ok(result) => {
                failures.push(format!("{query}: no series ({result})"));
                true
            }
            Err(error) => {
                failures.push(format!("{query}: {error}"));
                true
            }
        });
        assert!(
            pending.is_empty() || Instant::now() < deadline,
            "dashboard queries without an answer: {failures:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The alert rules evaluate without error on the real series.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        let rules = prometheus.rule_health();
        if rules.len() == 8 && rules.iter().all(|(_, health, _)| health == "ok") {
            break rules;
        }
        assert!(
            Instant::now() < deadline,
            "alert rules not healthy: {rules:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    println!(
        "dashboard: {} queries answered by Prometheus scraping 6 nodes; {} alert rules evaluate",
        queries.len(),
        rules.len()
    );
}

/// `roster node handover` (a rolling upgrade's first step) leaves node 2 leading nothing while
/// every group keeps a leader.
fn check_handover(deployment: &Paired) {
    let url = format!("http://{}", deployment.http[&1]);
    let token = deployment.dir.path().join("pool/admin.token");
    let token = token.to_string_lossy();
    let handover = |node: &str| {
        let args = [
            "node",
            "handover",
            "--url",
            &url,
            "--token-file",
            &token,
            "--node",
            node,
        ];
        roster_run(&args)
    };
    let said = handover("2");
    let said = String::from_utf8_lossy(&said.stdout);
    assert!(said.contains("node 2 leads no group now"), "{said}");
    let seen = overview(deployment, 1);
    let node2 = seen["pools"][0]["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == 2))
        .cloned()
        .unwrap_or_default();
    let leads: u64 = ["routing", "backup", "cms"]
        .iter()
        .map(|kind| node2["leads"][kind].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(leads, 0, "node 2 still leads: {node2:#}");
    assert_eq!(
        seen["pools"][0]["groups_without_leader"],
        serde_json::json!([])
    );
    let refused = handover("9");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("node 9 is not in the topology"), "{stderr}");
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Runs the browser check against `url`; panics with its output when it fails.
fn browser_check(url: &str, down: &[u64], screenshot: &Path) {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test does)"
    );
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .arg("status_page.mjs")
        .args([
            "--url",
            url,
            "--nodes",
            "1,2,3,4,5,6",
            "--timeout-ms",
            "60000",
        ])
        .arg("--screenshot")
        .arg(screenshot);
    if !down.is_empty() {
        let list: Vec<String> = down.iter().map(u64::to_string).collect();
        command.args(["--down", &list.join(",")]);
    }
    let output = run_with_deadline(&mut command, BROWSER_DEADLINE);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "browser check failed: {text}");
    println!("{}; screenshot {}", text.trim(), screenshot.display());
}

#[test]
fn the_status_page_lists_every_node_and_shows_a_killed_one_down() {
    let users = Users {
        count: 20,
        password: "secret".into(),
    };
    let mut deployment = Paired::start_named(&users, 4, ["a", "b"]);
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let settled = loop {
        let seen = overview(&deployment, 1);
        let up = nodes_up(&seen);
        let all_up = up.len() == 6 && up.iter().all(|(_, up)| *up);
        let led = seen["pools"].as_array().is_some_and(|pools| {
            pools
                .iter()
                .all(|p| p["groups_without_leader"] == serde_json::json!([]))
        });
        if all_up && led && seen["cms"]["users"] == 20 {
            break seen;
        }
        assert!(Instant::now() < deadline, "not settled: {seen:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(settled["sites"][1]["pools"][0], "b");
    assert_eq!(settled["pools"][0]["partner"], "b");
    assert_eq!(settled["pools"][0]["epoch"], 1);
    assert_eq!(settled["replication"].as_array().map(Vec::len), Some(2));

    check_dashboard_metrics(&deployment);
    check_handover(&deployment);

    let screenshots = std::env::temp_dir();
    let url = format!("http://{}/", deployment.http[&1]);
    browser_check(
        &url,
        &[],
        &screenshots.join("roster-status-page-all-up.png"),
    );

    deployment.kill(5);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = overview(&deployment, 1);
        if nodes_up(&seen).contains(&(5, false)) {
            let problems = seen["problems"].to_string();
            assert!(problems.contains("node 5 of pool b is down"), "{problems}");
            break;
        }
        assert!(Instant::now() < deadline, "node 5 not shown down: {seen:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Node 4 of the other pool sees the same.
    assert!(nodes_up(&overview(&deployment, 4)).contains(&(5, false)));
    // So does `roster node status` from a laptop without the topology: one node's URL.
    let url4 = format!("http://{}", deployment.http[&4]);
    let table = roster(&["node", "status", "--url", &url4]);
    let down_row = table
        .lines()
        .find(|line| line.trim_start().starts_with("5 "))
        .unwrap_or_else(|| panic!("no row for node 5: {table}"));
    assert!(down_row.contains("DOWN"), "{table}");
    let up_rows = table.lines().filter(|line| line.contains(" up ")).count();
    assert_eq!(up_rows, 5, "{table}");
    assert!(table.contains("! node 5 of pool b is down"), "{table}");
    let pools = roster(&[
        "pool", "status", "--url", &url4, "--pool", "b", "--format", "json",
    ]);
    let pools: serde_json::Value = serde_json::from_str(&pools).expect("pool status JSON");
    assert_eq!(pools[0]["name"], "b");
    assert_eq!(
        pools[0]["group_table"].as_array().map(Vec::len),
        Some(4 + 4 + 1)
    );
    browser_check(
        &url,
        &[5],
        &screenshots.join("roster-status-page-node-5-down.png"),
    );
}
