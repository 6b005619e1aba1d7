//! The files `roster demo` writes before `roster init`: the users (HA1 hashes), the
//! credentials in clear for the user, SIPp's injection file, and the pool's topology.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use roster::users::{UserEntry, UsersFile};

use super::{DemoOptions, DEMO_DOMAIN, DEMO_NODES, DEMO_USERS};

/// The credentials file: domain, users and password in clear (`roster load --password-file`
/// reads its `password:` line).
pub const CREDENTIALS_FILE: &str = "credentials";

/// SIPp's injection file (`sipp -inf`).
pub const USERS_CSV_FILE: &str = "users.csv";

/// The users file the nodes read (HA1 hashes only).
pub const USERS_FILE: &str = "users.toml";

/// The pool's topology, which `roster init` turns into every node's files.
pub const TOPOLOGY_FILE: &str = "topology.toml";

/// Writes the users of `password` (users file, credentials, SIPp's CSV) and the topology
/// into the demo's directory.
pub fn write_all(options: &DemoOptions, password: &str) -> anyhow::Result<()> {
    let dir = &options.dir;
    let users = UsersFile {
        user: (0..DEMO_USERS)
            .map(|i| {
                let name = format!("u{i}");
                let aor = format!("sip:{name}@{DEMO_DOMAIN}");
                UserEntry::from_password(&aor, &name, DEMO_DOMAIN, password)
            })
            .collect(),
    };
    let secret = roster::secret::write_secret;
    secret(&dir.join(USERS_FILE), toml::to_string(&users)?.as_bytes())?;
    secret(
        &dir.join(CREDENTIALS_FILE),
        format!(
            "domain: {DEMO_DOMAIN}\nusers: u0 … u{}\npassword: {password}\n",
            DEMO_USERS - 1
        )
        .as_bytes(),
    )?;
    // SIPp reads users from a CSV injection file: user;domain;[authentication ...]. SIPp 3.6
    // expands a whole keyword held in a field, but not [field] inside [authentication].
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..DEMO_USERS {
        let _ = writeln!(
            csv,
            "u{i};{DEMO_DOMAIN};[authentication username=u{i} password={password}]"
        );
    }
    secret(&dir.join(USERS_CSV_FILE), csv.as_bytes())?;
    write(&dir.join(TOPOLOGY_FILE), &topology(options))
}

/// The demo pool's topology: node N's SIP two ports above node N-1's (TLS one above each),
/// its cluster transport at SIP + 1000 + N, its HTTP one port above node N-1's (or any free
/// port with `--http ADDR:0`).
pub fn topology(options: &DemoOptions) -> String {
    let ip = options.sip.ip();
    let base = options.sip.port();
    let mut text = format!(
        "[deployment]\nname = \"demo\"\n\n[[site]]\nname = \"site1\"\n\n\
         [[pool]]\nid = 1\nname = \"demo\"\nsite = \"site1\"\ngroups = {}\n",
        options.groups
    );
    for id in 1..=DEMO_NODES {
        let sip = SocketAddr::new(ip, base + 2 * (id as u16 - 1));
        let cluster = SocketAddr::new(ip, base + 1000 + id as u16);
        let http = if options.http.port() == 0 {
            options.http
        } else {
            SocketAddr::new(options.http.ip(), options.http.port() + (id as u16 - 1))
        };
        let _ = writeln!(
            text,
            "\n[[node]]\nid = {id}\npool = \"demo\"\ncluster = \"{cluster}\"\nsip = \"{sip}\"\nhttp = \"{http}\""
        );
    }
    text
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}
