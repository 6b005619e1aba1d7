//! A lost site, with real processes: two paired pools (east holds the CMS and its users; west
//! their backup copies). Every east node is killed with SIGKILL; `roster pool failover east
//! --disaster` is refused until `roster cms failover` moved the CMS; then west serves east's
//! users with everything they had registered (the kill comes while `roster load` registers
//! through east). East comes back, learns that west owns its users
//! and sends their requests there; `roster pool failback east` gives them back, `roster cms
//! failback` brings the CMS home with a user added at west meanwhile, and nothing acknowledged
//! at either site is lost.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use roster_tests::paired::{load, roster_command, shown, Paired};
use roster_tests::sip_client::{Credentials, SipClient};
use roster_tests::{http_get, Users};

const PASSWORD: &str = "f4ilover-pw";
const USERS: usize = 24;
const GROUPS: u32 = 4;

fn client(target: SocketAddr) -> SipClient {
    SipClient::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), target)
}

fn contact(user: usize, phase: &str) -> String {
    format!("sip:t{user}-{phase}@127.0.0.1:5999")
}

/// Registers `contact(user, phase)` for every user in `users` at `target`, retrying a `503`
/// (a pool just started or changing owner) for up to 60 s per user.
fn register(target: SocketAddr, users: std::ops::Range<usize>, phase: &str) {
    let mut sip = client(target);
    for user in users {
        let name = format!("t{user}");
        let credentials = Credentials {
            user: &name,
            password: PASSWORD,
        };
        let extra = format!("Contact: <{}>\r\nExpires: 3600\r\n", contact(user, phase));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = sip.send_authenticated(
                "REGISTER",
                "sip:example.com",
                &format!("sip:{name}@example.com"),
                &credentials,
                &extra,
            );
            match answer {
                Some((response, _)) if response.status == 200 => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "REGISTER of {name} ({phase}) at {target} never acknowledged: {:?}",
                        other.map(|(response, _)| response.status)
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
}

/// Asserts every user in `users` has `contact(user, phase)` bound, asked at `target`.
fn assert_bound(target: SocketAddr, users: std::ops::Range<usize>, phase: &str, when: &str) {
    let mut sip = client(target);
    for user in users {
        let name = format!("t{user}");
        let credentials = Credentials {
            user: &name,
            password: PASSWORD,
        };
        let wanted = contact(user, phase);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, contacts) = sip.bindings(&credentials);
            if status == 200 && contacts.iter().any(|c| c.contains(&wanted)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{when}: {name} at {target} answers {status} with {contacts:?}, not {wanted}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Adds user `t{user}` (homed on east) to the directory through `roster user add`.
fn add_user(roster: &dyn Fn(&[&str], &str) -> std::process::Output, user: usize) {
    let aor = format!("sip:t{user}@example.com");
    let added = roster(
        &["user", "add", "--aor", &aor, "--pool", "east"],
        &format!("{PASSWORD}\n"),
    );
    assert!(added.status.success(), "{}", shown(&added));
}

/// Waits (60 s at most) until every backup stream of both directions is steady with no lag.
fn await_steady(paired: &Paired, node: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(paired.http[&node], "/api/v1/backup");
        let steady = status == 200
            && serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|report| {
                report["directions"].as_array().is_some_and(|directions| {
                    directions.iter().all(|direction| {
                        direction["groups"].as_array().is_some_and(|groups| {
                            groups.iter().all(|group| {
                                group["state"] == "steady" && group["lag_entries"] == 0
                            })
                        })
                    })
                })
            });
        if steady {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the backup streams never became steady: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The ownership of pool 1 (east) in node `node`'s status: (owner, epoch).
fn east_ownership(paired: &Paired, node: u64) -> Option<(u64, u64)> {
    let (status, body) = http_get(paired.http[&node], "/status");
    let status_json: serde_json::Value = (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()?;
    let east = &status_json["store"]["ownership"]["pools"]["1"];
    Some((east["owner"].as_u64()?, east["epoch"].as_u64()?))
}

#[test]
fn a_lost_site_fails_over_to_its_partner_and_back_losing_nothing() {
    let mut paired = Paired::start(
        &Users {
            count: USERS,
            password: PASSWORD.into(),
        },
        GROUPS,
    );
    let topology = paired.topology();
    let topology = topology.to_str().expect("utf-8 path");
    let token = paired.token_file();
    let token = token.to_str().expect("utf-8 path");
    let dir = paired.dir.path().to_path_buf();
    let roster_with = |args: &[&str], stdin: &str| {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--topology", topology, "--token-file", token]);
        roster_command(&full, stdin, &dir)
    };
    let roster = |args: &[&str]| roster_with(args, "");

    // East's users register at east; the streams carry everything to west.
    register(paired.sip[&1], 0..USERS, "before");
    await_steady(&paired, 4);

    // While east answers, a disaster failover is refused: nothing changes.
    let refused = roster(&["pool", "failover", "east", "--disaster"]);
    assert_eq!(refused.status.code(), Some(1), "{}", shown(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("answers"),
        "{}",
        shown(&refused)
    );

    // The site is lost under load: `roster load` registers east's users through east's node 2
    // while every east node is killed.
    let target = paired.sip[&2];
    let under_load = std::thread::spawn(move || {
        load(
            target,
            &[
                "--users",
                &USERS.to_string(),
                "--user-prefix",
                "t",
                "--password",
                PASSWORD,
                "--rate",
                "20",
                "--duration",
                "8s",
                "--mix",
                "register=1",
            ],
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    for node in 1..=3 {
        paired.kill(node);
    }
    let loaded = under_load.join().expect("the load thread");
    println!(
        "roster load while east was killed:\n{}",
        String::from_utf8_lossy(&loaded.stdout)
    );
    // The CMS lived on east: the pool failover needs the CMS failover first.
    let refused = roster(&["pool", "failover", "east", "--disaster"]);
    assert_eq!(refused.status.code(), Some(1), "{}", shown(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("roster cms failover"),
        "{}",
        shown(&refused)
    );
    let cms = roster(&["cms", "failover"]);
    assert!(cms.status.success(), "{}", shown(&cms));
    assert!(
        String::from_utf8_lossy(&cms.stdout).contains("pool west holds the CMS now, at epoch 2"),
        "{}",
        shown(&cms)
    );
    let started = Instant::now();
    let failover = roster(&["pool", "failover", "east", "--disaster"]);
    assert!(failover.status.success(), "{}", shown(&failover));
    let printed = String::from_utf8_lossy(&failover.stdout).into_owned();
    assert!(
        printed.contains("pool west serves pool east's users now, at epoch 2"),
        "{printed}"
    );
    println!("{printed}(failover command: {:?})", started.elapsed());

    // West serves east's users with everything they had, and takes new registrations.
    assert_bound(paired.sip[&5], 0..USERS, "before", "after the failover");
    register(paired.sip[&6], 0..USERS / 2, "at-west");
    // The directory changes at west while it holds the CMS: a user of east's is added.
    add_user(&roster_with, USERS);
    register(paired.sip[&5], USERS..USERS + 1, "at-west");

    // East comes back: it learns that west owns its users and sends their requests there.
    for node in 1..=3 {
        paired.restart(node);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (1..=3).any(|node| east_ownership(&paired, node) != Some((2, 2))) {
        assert!(
            Instant::now() < deadline,
            "east never learned that west owns its users: {:?}",
            (1..=3)
                .map(|node| east_ownership(&paired, node))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    register(paired.sip[&1], USERS / 2..USERS, "at-east-returned");
    assert_bound(
        paired.sip[&4],
        USERS / 2..USERS,
        "at-east-returned",
        "a returned east forwards to west",
    );

    // Failback: refused only while east is behind; then east owns its users at epoch 3.
    let deadline = Instant::now() + Duration::from_secs(120);
    let failback = loop {
        let failback = roster(&["pool", "failback", "east"]);
        if failback.status.success() || Instant::now() >= deadline {
            break failback;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(failback.status.success(), "{}", shown(&failback));
    let printed = String::from_utf8_lossy(&failback.stdout).into_owned();
    assert!(
        printed.contains("pool east serves pool east's users now, at epoch 3"),
        "{printed}"
    );
    println!("{printed}");

    // The CMS goes home: east holds it again, with the user added at west.
    let cms_back = roster(&["cms", "failback"]);
    assert!(cms_back.status.success(), "{}", shown(&cms_back));
    let printed = String::from_utf8_lossy(&cms_back.stdout).into_owned();
    assert!(
        printed.contains("pool east holds the CMS now, at epoch 3")
            && printed.contains("directory changes were paused for"),
        "{printed}"
    );
    println!("{printed}");
    let again = roster(&["cms", "failback"]);
    assert_eq!(again.status.code(), Some(1), "{}", shown(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "{}",
        shown(&again)
    );
    register(paired.sip[&1], USERS..USERS + 1, "cms-home");
    // Changes go to east again, and reach west.
    add_user(&roster_with, USERS + 1);
    register(paired.sip[&6], USERS + 1..USERS + 2, "cms-home");

    // Nothing acknowledged at either site is lost, asked at either site.
    for node in [2, 5] {
        let target = paired.sip[&node];
        assert_bound(target, 0..USERS, "before", "after the failback");
        assert_bound(target, 0..USERS / 2, "at-west", "after the failback");
        assert_bound(
            target,
            USERS / 2..USERS,
            "at-east-returned",
            "after the failback",
        );
    }
    // East serves its own again.
    register(paired.sip[&3], 0..2, "home-again");
    assert_bound(paired.sip[&4], 0..2, "home-again", "back home");
}

/// Waits (at most `within`) until node `node` reports that pool `owner` owns east's users;
/// how long it took.
fn await_east_owner(paired: &Paired, node: u64, owner: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let ownership = east_ownership(paired, node);
        if ownership.is_some_and(|(now, _)| now == owner) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "node {node} reports east owned by {ownership:?} after {within:?}; its log ends:\n{}",
            paired.log_tail(node)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn with_a_witness_a_lost_site_fails_over_by_itself() {
    const DETECTION_S: u64 = 4;
    let mut paired = Paired::start_with_witness(
        &Users {
            count: USERS,
            password: PASSWORD.into(),
        },
        GROUPS,
        DETECTION_S,
    );
    register(paired.sip[&1], 0..USERS, "before");
    await_steady(&paired, 4);
    let witness = paired.witness_http.expect("a witness").to_string();
    let status = paired.roster(&["witness", "status", "--http", &witness], "");
    assert!(status.status.success(), "{}", shown(&status));
    println!("{}", String::from_utf8_lossy(&status.stdout));

    for id in 1..=3 {
        paired.kill(id);
    }
    let killed = Instant::now();
    // West fails east over by itself: nobody runs a command.
    let within = Duration::from_secs(DETECTION_S + 60);
    await_east_owner(&paired, 4, 2, within);
    let took_over = killed.elapsed();
    register(paired.sip[&5], 0..1, "after");
    let first_200 = killed.elapsed();
    println!(
        "last east node killed; west owns east's users {took_over:?} later, first 200 for an \
         east user at west {first_200:?} later"
    );
    assert!(
        took_over < Duration::from_secs(DETECTION_S + 20),
        "automatic failover took {took_over:?}"
    );
    assert_eq!(east_ownership(&paired, 6), Some((2, 2)));
    register(paired.sip[&6], 1..USERS, "after");
    assert_bound(
        paired.sip[&4],
        0..USERS,
        "after",
        "after the automatic failover",
    );

    // The witness says it reported east lost.
    let status = paired.roster(
        &["witness", "status", "--http", &witness, "--format", "json"],
        "",
    );
    assert!(status.status.success(), "{}", shown(&status));
    let report: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("witness status JSON");
    let east = report["report"]["pools"]
        .as_array()
        .and_then(|pools| pools.iter().find(|pool| pool["pool"] == 1))
        .cloned()
        .expect("east in the witness's report");
    assert_eq!(east["reported_lost"], true, "{report}");
    assert_eq!(
        report["report"]["view"]["pools"]["1"]["owner"], 2,
        "{report}"
    );
}
