//! A pool of three real `roster start` processes: `kill -9` a group's leader under SIPp load
//! and lose no acknowledged registration; lose two of three nodes and get `503` quickly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roster_raft::group_of;
use roster_tests::{register_udp, scenario, sipp, status_of, Pool, Users};

const GROUPS: u32 = 8;

fn users() -> Users {
    Users {
        count: 3000,
        password: "unused".into(),
    }
}

/// Registers `w{index}` through `target` until a final answer; `true` on `200 OK`.
fn register_once(target: SocketAddr, index: usize) -> bool {
    let user = format!("w{index}");
    let contact = format!("sip:{user}@192.0.2.9:5060");
    matches!(
        register_udp(
            target,
            &user,
            &format!("w-{index}"),
            1,
            Some(&contact),
            Duration::from_secs(3)
        )
        .map(|r| status_of(&r)),
        Some(200)
    )
}

#[test]
fn kill_leader_under_load_loses_no_acknowledged_registration() {
    let mut pool = Pool::start(&users());
    let entry = pool.sip[&1];
    // SIPp load on node 1 for the whole test.
    let csv = pool.dir.path().join("users.csv");
    let load = std::thread::spawn(move || {
        sipp(
            entry,
            &[
                "-sf",
                scenario("register_load.xml").to_str().expect("utf-8 path"),
                "-inf",
                csv.to_str().expect("utf-8 path"),
                "-r",
                "150",
                "-m",
                "2500",
                "-l",
                "500",
            ],
            Duration::from_secs(90),
        )
    });
    // Our own writer records every acknowledged registration.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let acknowledged = acknowledged.clone();
        std::thread::spawn(move || {
            for index in 0..300 {
                if register_once(entry, index) {
                    if let Ok(mut list) = acknowledged.lock() {
                        list.push(index);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    // Kill the leader of a group node 1 does not lead.
    let groups = pool.groups(1);
    let (victim_group, victim) = groups
        .iter()
        .find_map(|row| match row.leader {
            Some(leader) if leader != 1 => Some((row.group as u32, leader)),
            _ => None,
        })
        .expect("a group led by node 2 or 3");
    pool.kill(victim);
    let killed_at = Instant::now();
    // A user of that group: its writes come back when the group has a new leader.
    let probe = (0..10_000)
        .find(|i| group_of(&format!("sip:p{i}@example.com"), GROUPS) == victim_group)
        .expect("a user in the group");
    let mut attempt = 0;
    let unavailable = loop {
        attempt += 1;
        let answer = register_udp(
            entry,
            &format!("p{probe}"),
            &format!("probe-{attempt}"),
            1,
            Some("sip:probe@192.0.2.8"),
            Duration::from_secs(3),
        );
        if answer.as_deref().map(status_of) == Some(200) {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "group {victim_group} never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("group {victim_group}: writes back {unavailable:?} after kill -9 of node {victim}");
    // The figure (target under 2 s) is measured in release on an idle machine; here the bound
    // only says the group comes back, on a CI machine that may be busy.
    assert!(
        unavailable < Duration::from_secs(15),
        "writes back after {unavailable:?}"
    );
    writer.join().expect("writer");
    let run = load.join().expect("load");
    println!("SIPp during the kill: exit {:?}", run.code);
    // Every acknowledged registration is still there, read through node 1.
    let acknowledged = acknowledged.lock().expect("list").clone();
    assert!(
        acknowledged.len() > 100,
        "too few acknowledged: {}",
        acknowledged.len()
    );
    for index in &acknowledged {
        let user = format!("w{index}");
        let answer = register_udp(
            entry,
            &user,
            &format!("q-{index}"),
            1,
            None,
            Duration::from_secs(3),
        )
        .unwrap_or_default();
        assert_eq!(status_of(&answer), 200, "query of {user}: {answer}");
        assert!(
            answer.contains(&format!("<sip:{user}@192.0.2.9:5060>;expires=")),
            "{user} lost its binding: {answer}"
        );
    }
    // The killed node restarts from its disk and catches up with every group's leader.
    pool.restart(victim);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leaders = pool.groups(1);
        let restarted = pool.groups(victim);
        let caught_up = !restarted.is_empty()
            && restarted.iter().all(|row| {
                leaders
                    .iter()
                    .find(|leader| leader.group == row.group)
                    .is_some_and(|leader| row.applied >= leader.committed)
            });
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {victim} did not catch up: {restarted:?} vs {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn losing_two_of_three_nodes_answers_503_quickly() {
    let mut pool = Pool::start(&users());
    let survivor = pool.sip[&3];
    assert!(
        register_once(survivor, 1),
        "the pool serves before the loss"
    );
    pool.kill(1);
    pool.kill(2);
    for index in 0..5 {
        let started = Instant::now();
        let answer = register_udp(
            survivor,
            &format!("x{index}"),
            &format!("x-{index}"),
            1,
            Some("sip:x@192.0.2.7"),
            Duration::from_secs(10),
        )
        .expect("an answer, not silence");
        let took = started.elapsed();
        assert_eq!(status_of(&answer), 503, "{answer}");
        assert!(answer.contains("Retry-After: "), "{answer}");
        // Leader wait (2 s) plus one request timeout (2.5 s), with room for a busy machine.
        assert!(took < Duration::from_secs(10), "503 took {took:?}");
    }
}
