//! Real phones register with `roster demo` and with `roster start` as configured by default:
//! baresip 1.0 (Debian `baresip-core`) over UDP, TCP and TLS, and linphonec (Debian
//! `linphone-cli`) over UDP. Each test checks, by authenticated lookups, that the registrar
//! holds the client's binding, that the client's refresh renews it, and that it is gone once
//! the client unregistered.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use roster_tests::clients::{Account, Baresip, Demo, Linphonec};
use roster_tests::sip_client::{contact_expires, Credentials, SipClient};
use roster_tests::{Node, NodeOptions, Users};

/// Registration interval asked by the clients: the registrar's default minimum, so that a
/// refresh comes within a minute.
const EXPIRES_S: u32 = 60;

/// How long a client may take to register (the demo's groups may still be electing their
/// first leaders), or a binding to go after an unregistration.
const SETTLE: Duration = Duration::from_secs(40);

/// How long the client runs: long enough to refresh once (clients refresh before 90 % of
/// the interval has passed).
const RUN_S: u32 = 100;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One user's binding as seen through lookups at `registrar`.
struct Watched<'a> {
    user: &'a str,
    password: &'a str,
    registrar: SocketAddr,
}

impl Watched<'_> {
    /// The user's bindings; `None` while the registrar cannot say (a `503` while the
    /// demo's groups elect their first leaders).
    fn contacts(&self) -> Option<Vec<String>> {
        let mut client = SipClient::new(LOOPBACK, self.registrar);
        let (status, contacts) = client.bindings(&Credentials {
            user: self.user,
            password: self.password,
        });
        if status != 200 {
            eprintln!("lookup of {}'s bindings: {status}", self.user);
        }
        (status == 200).then_some(contacts)
    }

    /// The remaining expiry of the user's one binding, if it has one.
    fn expires(&self) -> Option<u32> {
        let contacts = self.contacts()?;
        assert!(contacts.len() <= 1, "{}: {contacts:?}", self.user);
        let expires = contacts
            .first()
            .and_then(|contact| contact_expires(contact));
        eprintln!("{}: {contacts:?}", self.user);
        expires
    }
}

/// Polls `check` every 500 ms until it holds or `deadline` passes.
fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Registered, refreshed while running (each binding's remaining expiry falls below two
/// thirds, then rises again), and gone after `stop` (the client's unregistration).
fn check_lifecycle(watched: &[Watched<'_>], stop: impl FnOnce()) {
    for binding in watched {
        assert!(
            eventually(SETTLE, || binding.expires().is_some()),
            "{} never registered",
            binding.user
        );
    }
    // Every binding at once: the client refreshes them on its own schedule.
    let mut aged = vec![false; watched.len()];
    let mut refreshed = vec![false; watched.len()];
    let refresh_deadline = Duration::from_secs(u64::from(EXPIRES_S) + 10);
    eventually(refresh_deadline, || {
        for (index, binding) in watched.iter().enumerate() {
            let Some(expires) = binding.expires() else {
                continue;
            };
            aged[index] |= expires < EXPIRES_S * 2 / 3;
            refreshed[index] |= aged[index] && expires >= EXPIRES_S * 5 / 6;
        }
        refreshed.iter().all(|done| *done)
    });
    for (index, binding) in watched.iter().enumerate() {
        assert!(
            aged[index],
            "{}'s binding lapsed instead of ageing",
            binding.user
        );
        assert!(
            refreshed[index],
            "{} did not refresh its binding",
            binding.user
        );
    }
    stop();
    for binding in watched {
        assert!(
            eventually(SETTLE, || binding.contacts().is_some_and(|c| c.is_empty())),
            "{}'s binding outlived its unregistration",
            binding.user
        );
    }
}

/// Runs baresip with one account per (user, transport, registrar) and checks every binding's
/// life through lookups at `lookup_at`.
fn check_baresip(
    accounts: &[(&str, &'static str, SocketAddr)],
    password: &str,
    ca: &std::path::Path,
    lookup_at: SocketAddr,
) {
    let accounts: Vec<Account> = accounts
        .iter()
        .map(|&(user, transport, registrar)| Account {
            user: user.into(),
            transport,
            registrar,
        })
        .collect();
    let mut baresip = Baresip::start(&accounts, password, ca, EXPIRES_S, RUN_S);
    let watched: Vec<Watched> = accounts
        .iter()
        .map(|account| Watched {
            user: &account.user,
            password,
            registrar: lookup_at,
        })
        .collect();
    check_lifecycle(&watched, || {
        assert!(
            baresip.wait(Duration::from_secs(u64::from(RUN_S) + 20)),
            "baresip did not quit"
        );
    });
}

/// baresip over UDP, TCP and TLS, one node of the demo each; bindings looked up at node 1.
#[test]
fn baresip_registers_refreshes_and_unregisters_with_the_demo() {
    let demo = Demo::start(&[]);
    let tls = SocketAddr::new(LOOPBACK, demo.sip(3).port() + 1);
    let accounts = [
        ("u1", "udp", demo.sip(1)),
        ("u2", "tcp", demo.sip(2)),
        ("u3", "tls", tls),
    ];
    check_baresip(&accounts, &demo.password, &demo.ca(), demo.sip(1));
}

fn users() -> Users {
    Users {
        count: 10,
        password: "phone-pw".into(),
    }
}

/// baresip over UDP, TCP and TLS against `roster start` with its default `[auth]`.
#[test]
fn baresip_registers_refreshes_and_unregisters_with_a_default_node() {
    let users = users();
    let node = Node::start(&users, NodeOptions::default());
    let certificate = node.dir.path().join("cert.pem");
    let accounts = [
        ("t1", "udp", node.sip()),
        ("t2", "tcp", node.sip()),
        ("t3", "tls", node.sip_tls()),
    ];
    check_baresip(&accounts, &users.password, &certificate, node.sip());
}

/// linphonec over UDP with the demo (node 2), looked up at node 3.
#[test]
fn linphonec_registers_refreshes_and_unregisters_with_the_demo() {
    let demo = Demo::start(&[]);
    let mut linphonec = Linphonec::start("u4", &demo.password, demo.sip(2), EXPIRES_S);
    let watched = [Watched {
        user: "u4",
        password: &demo.password,
        registrar: demo.sip(3),
    }];
    check_lifecycle(&watched, || {
        assert!(linphonec.quit(SETTLE), "linphonec did not quit");
    });
}

/// linphonec over UDP against `roster start` with its default `[auth]`.
#[test]
fn linphonec_registers_refreshes_and_unregisters_with_a_default_node() {
    let users = users();
    let node = Node::start(&users, NodeOptions::default());
    let mut linphonec = Linphonec::start("t4", &users.password, node.sip(), EXPIRES_S);
    let watched = [Watched {
        user: "t4",
        password: &users.password,
        registrar: node.sip(),
    }];
    check_lifecycle(&watched, || {
        assert!(linphonec.quit(SETTLE), "linphonec did not quit");
    });
}

/// SIPp's registrar flow (register, refresh, second contact, query, unregister, 423,
/// unregister `*`) with the injection file the demo writes, as README shows.
#[test]
fn sipp_runs_the_registrar_flow_against_the_demo() {
    let demo = Demo::start(&[]);
    let csv = demo.dir.path().join("users.csv");
    let args = [
        "-sf",
        &roster_tests::scenario("registrar_flow.xml")
            .display()
            .to_string(),
        "-inf",
        &csv.display().to_string(),
        "-m",
        "10",
        "-l",
        "5",
        "-r",
        "20",
    ]
    .map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The demo's groups may still be electing their first leaders: a 503 fails a call.
    let passed = eventually(SETTLE, || {
        roster_tests::sipp(demo.sip(1), &args, Duration::from_secs(60)).code == Some(0)
    });
    assert!(passed, "SIPp's registrar flow failed against the demo");
}
