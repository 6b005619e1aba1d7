//! What `roster demo` prints once its nodes are ready: each node's addresses, process id and
//! log, the users and password, the files a client needs, and what to try.

use std::fmt::Write as _;
use std::path::Path;

use super::files::{CREDENTIALS_FILE, USERS_CSV_FILE};
use super::nodes::DemoNode;
use super::{DemoOptions, DEMO_DOMAIN, DEMO_USERS};

/// The banner of a demo whose `nodes` are ready; `roster` is the executable.
pub fn banner(options: &DemoOptions, nodes: &[DemoNode], password: &str, roster: &Path) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Roster demo: a pool of {} nodes on one machine, every registration in one of {} Raft groups on disk.",
        nodes.len(),
        options.groups
    );
    for node in nodes {
        let sip: Vec<String> = node
            .sip
            .iter()
            .map(|(transport, address)| format!("{} {address}", transport.to_uppercase()))
            .collect();
        let _ = writeln!(text, "  node {}  SIP {}", node.id, sip.join("  "));
        if let Some(http) = &node.http {
            let _ = writeln!(
                text,
                "          HTTP http://{http}/ (status, /metrics, /health)"
            );
        }
        let _ = writeln!(
            text,
            "          pid {}, log {}",
            node.pid,
            node.log.display()
        );
    }
    let _ = writeln!(
        text,
        "  domain: {DEMO_DOMAIN}   users: u0 … u{}",
        DEMO_USERS - 1
    );
    if options.no_auth {
        let _ = writeln!(text, "  !!! --no-auth: AUTHENTICATION IS OFF. Any user of {DEMO_DOMAIN} registers without a password. For benchmarks only. !!!");
    }
    let _ = writeln!(text, "password: {password}");
    let dir = &options.dir;
    let credentials = dir.join(CREDENTIALS_FILE);
    let _ = writeln!(
        text,
        "  files: {} (the password: roster load --password-file)",
        credentials.display()
    );
    let _ = writeln!(
        text,
        "         {} (the users for SIPp: sipp -inf)",
        dir.join(USERS_CSV_FILE).display()
    );
    let _ = writeln!(
        text,
        "         {} (the CA of the nodes' TLS certificates: roster load --tls-ca)",
        dir.join("pool/tls/ca.pem").display()
    );
    let _ = writeln!(
        text,
        "         {} (the topology, certificates, each node's configuration and data)",
        dir.join("pool").display()
    );
    let first_sip = nodes
        .first()
        .and_then(|node| node.sip.first())
        .map_or("127.0.0.1:5060", |(_, address)| address.as_str());
    let password_file = if options.no_auth {
        String::new()
    } else {
        format!(" --password-file {}", credentials.display())
    };
    let _ = writeln!(
        text,
        "  try: {} load {first_sip} --duration 10s{password_file}",
        roster.display()
    );
    let _ = writeln!(
        text,
        "       or point a SIP client at any node's SIP address as u0@{DEMO_DOMAIN}; README.md has more."
    );
    let _ = writeln!(
        text,
        "  kill a node (kill -9 PID) and the others serve on; Ctrl-C stops the demo and its nodes."
    );
    text
}
