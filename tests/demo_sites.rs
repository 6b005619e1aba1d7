//! The two-site `roster demo` as a newcomer meets it, through its WAN relay (20 ms one way):
//! `demo.json` says everything true (pools, nodes running at their addresses, admin URLs that
//! answer, files that exist, the commands); users of pool a registered through pool b's nodes
//! are served by a (a's routing groups hold them, a query at a finds the contact) and reach b's
//! backup copies of a's groups; after `kill -9` of one node the demo reports it and both pools
//! serve both pools' users; Ctrl-C stops every node and `demo.json` says so.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use roster_tests::sip_client::{Credentials, SipClient};
use roster_tests::{http_get, process_runs, send_signal, Demo};
use serde_json::Value;

/// Users of each kind registered per check: enough to reach every one of the 4 routing groups.
const USERS: usize = 12;

/// How long a registration may take to be answered `200`: a node's first request to the
/// partner pool dials it through the relay, and after a kill the dead node's groups elect new
/// leaders (0.7–1.4 s) while other tests share the CPUs.
const SERVE_DEADLINE: Duration = Duration::from_secs(90);

/// How long b's backup copies may take to hold what a's groups hold (the stream's lag, a
/// debug build on a busy machine).
const COPY_DEADLINE: Duration = Duration::from_secs(60);

/// How long the demo may take to stop its six nodes on SIGINT.
const STOP_DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn two_sites_forward_to_the_home_pool_copy_to_the_partner_and_serve_on_after_a_kill() {
    let mut demo = Demo::start_two_sites(&["--groups", "4"]);
    let password = demo
        .output
        .lines()
        .find_map(|line| line.strip_prefix("password: "))
        .expect("the banner prints the password")
        .to_string();
    let marker = demo.dir.path().display().to_string();
    let manifest = read_manifest(&demo);
    check_manifest(&demo, &manifest, &marker);
    assert_eq!(manifest["state"], "ready", "{manifest:#}");
    let node = |id: u64| node_entry(&manifest, id);

    // Users of pool a (u0 …), registered through pool b's node 4: forwarded to a.
    let node_4 = sip_of(&node(4));
    for user in 0..USERS {
        register(&demo, node_4, user, &password, "via-b");
    }
    // a's routing groups hold them, and b's own groups nothing.
    let a_held = wait_count(http_of(&node(1)), "1/routing-", USERS, SERVE_DEADLINE);
    assert_eq!(a_held, USERS);
    assert_eq!(
        count(http_of(&node(4)), "2/routing-"),
        0,
        "b holds a's users"
    );
    // A query at a's node 1 finds the contact registered at b.
    let node_1 = sip_of(&node(1));
    for user in 0..USERS {
        let name = format!("u{user}");
        let mut client = SipClient::new(IpAddr::from([127, 0, 0, 1]), node_1);
        let (status, contacts) = client.bindings(&Credentials {
            user: &name,
            password: &password,
        });
        assert_eq!(status, 200, "query of {name} at pool a");
        assert!(
            contacts.iter().any(|contact| contact.contains("via-b")),
            "{name} at pool a: {contacts:?}"
        );
    }
    // Within the lag, every node of b holds them in its backup copies of a's groups.
    for id in [4, 5, 6] {
        wait_count(http_of(&node(id)), "1/backup-", USERS, COPY_DEADLINE);
    }

    // kill -9 of node 2 (pool a): reported, and the demo serves on.
    let victim = node(2);
    let pid = u32::try_from(victim["pid"].as_u64().expect("pid")).expect("pid");
    send_signal(pid, "KILL");
    let report = demo.wait_for_line("roster demo: node 2", Duration::from_secs(30));
    assert!(
        report.contains(&format!(
            "node 2 of pool a (pid {pid}) was killed by signal 9"
        )),
        "{report}"
    );
    assert!(demo.is_running(), "the demo runs on after a node died");
    // Both pools serve both pools' users: a's at node 3 (a) and node 5 (b, forwarded),
    // b's at node 1 (a, forwarded) and node 6 (b).
    for (id, first_user, tag) in [
        (3, USERS, "at-3"),
        (5, 2 * USERS, "at-5"),
        (1, 5_000, "at-1"),
        (6, 5_000 + USERS, "at-6"),
    ] {
        let target = sip_of(&node(id));
        for user in first_user..first_user + USERS {
            register(&demo, target, user, &password, tag);
        }
    }
    wait_count(http_of(&node(4)), "2/routing-", 2 * USERS, SERVE_DEADLINE);
    wait_count(http_of(&node(1)), "1/routing-", 3 * USERS, SERVE_DEADLINE);
    // demo.json says node 2 is down and the others run.
    let after = read_manifest(&demo);
    for id in 1..=6 {
        let running = node_entry(&after, id)["running"].as_bool();
        assert_eq!(running, Some(id != 2), "node {id} in {after:#}");
    }

    // Ctrl-C stops every node; demo.json says so.
    demo.signal("INT");
    demo.wait_exit(STOP_DEADLINE)
        .expect("SIGINT stops the demo");
    let pids: Vec<u32> = (1..=6)
        .map(|id| u32::try_from(node(id)["pid"].as_u64().expect("pid")).expect("pid"))
        .collect();
    let started = Instant::now();
    while pids.iter().any(|pid| process_runs(*pid, &marker)) {
        assert!(started.elapsed() < STOP_DEADLINE, "nodes outlived the demo");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = read_manifest(&demo);
    assert_eq!(stopped["state"], "stopped", "{stopped:#}");
}

/// `DIR/demo.json`, parsed.
fn read_manifest(demo: &Demo) -> Value {
    let text = std::fs::read_to_string(demo.dir.path().join("demo.json")).expect("demo.json");
    serde_json::from_str(&text).expect("demo.json is JSON")
}

/// Node `id`'s entry in the manifest.
fn node_entry(manifest: &Value, id: u64) -> Value {
    manifest["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|pool| pool["nodes"].as_array().into_iter().flatten())
        .find(|node| node["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("node {id} in {manifest:#}"))
}

/// Checks everything `demo.json` says against the banner, the processes, the files and the
/// nodes' HTTP.
fn check_manifest(demo: &Demo, manifest: &Value, marker: &str) {
    assert_eq!(manifest["version"], 1);
    assert_eq!(manifest["sites"], 2);
    assert_eq!(manifest["wan_latency_ms"], 20, "the default WAN latency");
    assert_eq!(manifest["domain"], "example.com");
    assert_eq!(manifest["auth"], true);
    assert_eq!(manifest["cms_pool"], "a");
    assert_eq!(manifest["groups"], 4);
    assert_eq!(manifest["demo_pid"], demo.pid());
    for file in [
        "credentials_file",
        "users_csv",
        "ca_file",
        "admin_token_file",
        "topology_file",
        "roster",
    ] {
        let path = manifest[file].as_str().unwrap_or_else(|| panic!("{file}"));
        assert!(std::path::Path::new(path).is_file(), "{file}: {path}");
    }
    let pools = manifest["pools"].as_array().expect("pools");
    let shape: Vec<(&str, &str, &str, bool, u64, u64)> = pools
        .iter()
        .map(|pool| {
            let users = &pool["users"][0];
            (
                pool["name"].as_str().unwrap_or(""),
                pool["site"].as_str().unwrap_or(""),
                pool["partner"].as_str().unwrap_or(""),
                pool["cms"].as_bool().unwrap_or(false),
                users["first"].as_u64().unwrap_or(u64::MAX),
                users["last"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("a", "dc1", "b", true, 0, 4_999),
            ("b", "dc2", "a", false, 5_000, 9_999)
        ]
    );
    let mut addresses = std::collections::BTreeSet::new();
    for (pool, ids) in pools.iter().zip([[1, 2, 3], [4, 5, 6]]) {
        let nodes = pool["nodes"].as_array().expect("nodes");
        let listed: Vec<u64> = nodes
            .iter()
            .filter_map(|node| node["id"].as_u64())
            .collect();
        assert_eq!(listed, ids, "{pool:#}");
        for node in nodes {
            let id = node["id"].as_u64().expect("id");
            let pid = u32::try_from(node["pid"].as_u64().expect("pid")).expect("pid");
            assert_eq!(node["running"], true, "{node:#}");
            assert_eq!(node["started_by_demo"], true, "{node:#}");
            assert!(process_runs(pid, marker), "node {id}'s pid {pid} runs");
            assert_eq!(demo.nodes[&id].pid, pid, "the banner's pid of node {id}");
            let sip = sip_of(node);
            assert_eq!(demo.nodes[&id].sip, sip, "the banner's SIP of node {id}");
            assert!(addresses.insert(sip.ip()), "node {id} has its own address");
            for field in ["sip_tcp", "sip_tls", "cluster", "wan"] {
                let address: SocketAddr = node[field]
                    .as_str()
                    .and_then(|text| text.parse().ok())
                    .unwrap_or_else(|| panic!("{field} of node {id}: {node:#}"));
                assert_eq!(address.ip(), sip.ip(), "{field} of node {id}");
            }
            let (status, body) = http_get(http_of(node), "/health");
            assert_eq!(status, 200, "node {id}'s /health: {body}");
            let admin_url = node["admin_url"].as_str().expect("admin_url");
            assert_eq!(admin_url, format!("http://{}", http_of(node)));
            for path in ["config", "data_dir", "log"] {
                let path = node[path].as_str().unwrap_or_else(|| panic!("{path}"));
                assert!(std::path::Path::new(path).exists(), "node {id}: {path}");
            }
        }
    }
    let commands: Vec<&str> = manifest["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|command| command["command"].as_str())
        .collect();
    let url_b = node_entry(manifest, 4)["admin_url"]
        .as_str()
        .expect("admin_url")
        .to_string();
    for wanted in [
        "backup status --url http://".to_string(),
        format!("pool failover a --url {url_b} --token-file "),
        format!("pool failover a --disaster --url {url_b} --token-file "),
        format!("pool failback a --url {url_b} --token-file "),
        format!("cms failover --url {url_b} --token-file "),
        format!("kill -9 {}", demo.nodes[&2].pid),
        format!("sipp {} -sf", demo.nodes[&4].sip),
    ] {
        assert!(
            commands.iter().any(|command| command.contains(&wanted)),
            "{wanted:?} in {commands:#?}"
        );
        assert!(
            demo.output.contains(&wanted),
            "the banner prints {wanted:?}"
        );
    }
}

/// A node entry's SIP UDP address.
fn sip_of(node: &Value) -> SocketAddr {
    node["sip_udp"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("sip_udp of {node:#}"))
}

/// A node entry's HTTP address.
fn http_of(node: &Value) -> SocketAddr {
    node["http"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("http of {node:#}"))
}

/// Registers `u{user}` at `target` with a contact tagged `tag`, retrying until `200`.
fn register(demo: &Demo, target: SocketAddr, user: usize, password: &str, tag: &str) {
    let name = format!("u{user}");
    let aor = format!("sip:{name}@example.com");
    let contact = format!("Contact: <sip:{name}-{tag}@127.0.0.1:5999>\r\nExpires: 3600\r\n");
    let credentials = Credentials {
        user: &name,
        password,
    };
    let started = Instant::now();
    loop {
        // A new client (and Call-ID) per attempt: a retry is a new registration.
        let mut client = SipClient::new(IpAddr::from([127, 0, 0, 1]), target);
        let answer =
            client.send_authenticated("REGISTER", "sip:example.com", &aor, &credentials, &contact);
        let status = answer.as_ref().map(|(response, _)| response.status);
        if status == Some(200) {
            return;
        }
        assert!(
            started.elapsed() < SERVE_DEADLINE,
            "{name} at {target} not registered within {SERVE_DEADLINE:?}: {status:?}\n{}",
            demo.output
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The AORs a node's replicas of the groups whose key starts with `prefix` hold.
fn count(http: SocketAddr, prefix: &str) -> usize {
    let (status, body) = http_get(http, "/status");
    assert_eq!(status, 200, "{http}/status: {body}");
    let document: Value = serde_json::from_str(&body).expect("status is JSON");
    document["store"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|group| {
            group["key"]
                .as_str()
                .is_some_and(|key| key.starts_with(prefix))
        })
        .filter_map(|group| group["aors"].as_u64())
        .map(|aors| usize::try_from(aors).unwrap_or(usize::MAX))
        .sum()
}

/// Waits until the node's groups under `prefix` hold `wanted` AORs; returns the count.
fn wait_count(http: SocketAddr, prefix: &str, wanted: usize, deadline: Duration) -> usize {
    let started = Instant::now();
    loop {
        let held = count(http, prefix);
        if held == wanted {
            return held;
        }
        assert!(
            started.elapsed() < deadline,
            "{http}: {prefix}* hold {held} AORs, not {wanted}, after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
