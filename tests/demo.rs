//! `roster demo` as a newcomer meets it: `kill -9` of one node is reported (which node, how it
//! ended, its log, the command that starts it again) while the demo and the other nodes serve
//! on; Ctrl-C (SIGINT) stops every node; a demo killed by SIGKILL takes its nodes with it.

use std::time::{Duration, Instant};

use roster_tests::{process_runs, register_udp, send_signal, status_of, Demo};

/// How long the surviving nodes may take to answer every registration with `200`: the dead
/// node's groups elect new leaders (0.7–1.4 s) and a request caught by the election gets `503`.
const SERVE_ON_DEADLINE: Duration = Duration::from_secs(60);

/// How long the demo may take to stop its nodes: each drains within 5 s, and is killed past 8.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// Users registered through each surviving node: enough to reach every one of the 8 routing
/// groups.
const USERS: usize = 24;

#[test]
fn a_killed_node_is_reported_and_the_others_serve_until_ctrl_c_stops_them() {
    let mut demo = Demo::start(&["--no-auth", "--groups", "8"]);
    let marker = demo.dir.path().display().to_string();
    let nodes = demo.nodes.clone();
    for (id, node) in &nodes {
        assert!(process_runs(node.pid, &marker), "node {id} runs");
    }

    let victim = &nodes[&1];
    send_signal(victim.pid, "KILL");
    let report = demo.wait_for_line("roster demo: node 1", Duration::from_secs(30));
    assert!(
        report.contains(&format!(
            "(pid {}) was killed by signal 9 (SIGKILL)",
            victim.pid
        )),
        "{report}"
    );
    let log = demo.dir.path().join("node-1.log");
    assert!(report.contains(&log.display().to_string()), "{report}");
    let serving = demo.wait_for_line("serve on", Duration::from_secs(5));
    assert!(serving.contains("nodes 2 and 3 serve on"), "{serving}");
    let restart = demo.wait_for_line(" start --config ", Duration::from_secs(5));
    let config = demo.dir.path().join("pool/node-1/roster.toml");
    assert!(
        restart.ends_with(&format!(" start --config {}", config.display())),
        "{restart}"
    );
    assert!(demo.is_running(), "the demo runs on after a node died");

    for id in [2, 3] {
        let node = &nodes[&id];
        let started = Instant::now();
        for user in 0..USERS {
            let name = format!("u{user}");
            let call_id = format!("demo-{id}-{user}");
            let mut cseq = 1;
            loop {
                let answer = register_udp(
                    node.sip,
                    &name,
                    &call_id,
                    cseq,
                    Some(&format!("sip:{name}@127.0.0.1:5999")),
                    Duration::from_secs(5),
                );
                if answer.as_deref().map(status_of) == Some(200) {
                    break;
                }
                assert!(demo.is_running(), "the demo ended:\n{}", demo.output);
                assert!(
                    started.elapsed() < SERVE_ON_DEADLINE,
                    "node {id} did not register {name} within {SERVE_ON_DEADLINE:?}: {answer:?}"
                );
                cseq += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        assert!(process_runs(node.pid, &marker), "node {id} still runs");
    }
    assert!(demo.is_running(), "the demo runs on");

    demo.signal("INT");
    let status = demo
        .wait_exit(STOP_DEADLINE)
        .expect("the demo stops on SIGINT");
    assert!(status.success(), "the demo ends well on SIGINT: {status}");
    for (id, node) in &nodes {
        assert!(!process_runs(node.pid, &marker), "node {id} is gone");
    }
}

#[test]
fn the_nodes_die_with_a_demo_killed_by_sigkill() {
    let mut demo = Demo::start(&["--no-auth", "--groups", "4"]);
    let marker = demo.dir.path().display().to_string();
    let nodes = demo.nodes.clone();
    demo.signal("KILL");
    demo.wait_exit(STOP_DEADLINE)
        .expect("SIGKILL ends the demo");
    let started = Instant::now();
    while nodes.values().any(|node| process_runs(node.pid, &marker)) {
        assert!(
            started.elapsed() < STOP_DEADLINE,
            "nodes outlived the demo: {:?}",
            nodes
                .iter()
                .filter(|(_, node)| process_runs(node.pid, &marker))
                .map(|(id, node)| (id, node.pid))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
