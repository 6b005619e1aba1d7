//! What `roster demo` prints once its nodes are ready: its pools and the users homed on each,
//! each node's addresses, process id and log, the witness's with `--witness`, the users and password, the files a client
//! needs, and what to try (commands ready to copy).

use std::fmt::Write as _;
use std::path::Path;

use super::commands;
use super::files::{CREDENTIALS_FILE, USERS_CSV_FILE};
use super::layout::{Layout, PoolPlan};
use super::manifest::MANIFEST_FILE;
use super::nodes::DemoNode;
use super::{DemoOptions, DEMO_DOMAIN, DEMO_USERS};

/// The banner of a demo whose `nodes` are ready; `roster` is the executable.
pub fn banner(
    options: &DemoOptions,
    layout: &Layout,
    nodes: &[DemoNode],
    witness: Option<&DemoNode>,
    password: &str,
    roster: &Path,
) -> String {
    let mut text = String::new();
    if let [pool] = layout.pools.as_slice() {
        let _ = writeln!(
            text,
            "Roster demo: a pool of {} nodes on one machine, every registration in one of {} Raft groups on disk.",
            pool.nodes.len(),
            options.groups
        );
        write_nodes(&mut text, nodes, pool, "  ");
    } else {
        write_pools(&mut text, options, layout, nodes);
        write_witness(&mut text, layout, witness);
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
    write_files(&mut text, options, layout);
    let _ = writeln!(text, "try (ready to copy):");
    for command in commands::commands(options, layout, nodes, witness, roster) {
        let _ = writeln!(text, "  # {}\n    {}", command.what, command.command);
    }
    let _ = writeln!(
        text,
        "  or point a SIP client at any node's SIP address as u0@{DEMO_DOMAIN}; README.md has more."
    );
    let _ = writeln!(
        text,
        "  kill a node (kill -9 PID) and the others serve on; Ctrl-C stops the demo and its nodes."
    );
    text
}

/// Two sites: each pool, where it is, whom it serves and backs up, and its nodes.
fn write_pools(text: &mut String, options: &DemoOptions, layout: &Layout, nodes: &[DemoNode]) {
    let nodes_per_pool = layout.pools.first().map_or(0, |pool| pool.nodes.len());
    let _ = writeln!(
        text,
        "Roster demo: two sites, a pool of {nodes_per_pool} nodes in each, paired: every \
         registration in one of {} Raft groups on disk at its home pool, streamed to a backup \
         copy in the other pool.",
        options.groups
    );
    for pool in &layout.pools {
        let partner = layout
            .partner_of(pool)
            .map_or("its partner", |partner| partner.name);
        let cms = if layout.cms_pool().map(|cms| cms.id) == Some(pool.id) {
            "the CMS (users, homes, topology) lives here"
        } else {
            "holds the CMS's backup copy"
        };
        let _ = writeln!(
            text,
            "  pool {} (site {}): users {} are homed here; backs up pool {partner}; {cms}",
            pool.name,
            pool.site,
            pool.users_text()
        );
        write_nodes(text, nodes, pool, "    ");
    }
    let wan = if options.wan_latency.is_zero() {
        "direct on loopback (--wan-latency MS delays it)".to_string()
    } else {
        format!(
            "through a relay delaying every datagram {} ms one way (each node's wan address)",
            options.wan_latency.as_millis()
        )
    };
    let _ = writeln!(text, "  between the sites: {wan}");
    let _ = writeln!(
        text,
        "  any node of either pool takes any user: a user homed on the other pool is served there (forwarded)."
    );
}

/// The witness, where it runs, and what it changes.
fn write_witness(text: &mut String, layout: &Layout, witness: Option<&DemoNode>) {
    let (Some(plan), Some(witness)) = (layout.witness, witness) else {
        return;
    };
    let pools: Vec<&str> = layout.pools.iter().map(|pool| pool.name).collect();
    let _ = writeln!(
        text,
        "  witness {} (site {}): watches pools {}; QUIC {}",
        plan.id,
        plan.site,
        pools.join(" and "),
        plan.address
    );
    if let Some(http) = &witness.http {
        let _ = writeln!(
            text,
            "        HTTP http://{http}/status (roster witness status --http {http})"
        );
    }
    let _ = writeln!(
        text,
        "        pid {}, log {}",
        witness.pid,
        witness.log.display()
    );
    let _ = writeln!(
        text,
        "  with the witness, a pool whose every node is gone is failed over by its partner by \
         itself (no command) once neither has heard it for the detection interval (10 s)."
    );
}

/// The nodes of `pool`, each on three lines starting with `indent`.
fn write_nodes(text: &mut String, nodes: &[DemoNode], pool: &PoolPlan, indent: &str) {
    for plan in &pool.nodes {
        let Some(node) = nodes.iter().find(|node| node.id == plan.id) else {
            continue;
        };
        let sip: Vec<String> = node
            .sip
            .iter()
            .map(|(transport, address)| format!("{} {address}", transport.to_uppercase()))
            .collect();
        let _ = writeln!(text, "{indent}node {}  SIP {}", node.id, sip.join("  "));
        if let Some(http) = &node.http {
            let _ = writeln!(
                text,
                "{indent}        HTTP http://{http}/ (status, /metrics, /health)"
            );
        }
        let _ = writeln!(
            text,
            "{indent}        pid {}, log {}",
            node.pid,
            node.log.display()
        );
    }
}

/// The files a client or a script needs.
fn write_files(text: &mut String, options: &DemoOptions, layout: &Layout) {
    let dir = &options.dir;
    let _ = writeln!(
        text,
        "  files: {} (the password: roster load --password-file)",
        dir.join(CREDENTIALS_FILE).display()
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
    let what = if layout.pools.len() > 1 {
        "pools, users homed on each, nodes, addresses, pids, files: for scripts"
    } else {
        "nodes, addresses, pids, files: for scripts"
    };
    let _ = writeln!(
        text,
        "         {} ({what})",
        dir.join(MANIFEST_FILE).display()
    );
}
