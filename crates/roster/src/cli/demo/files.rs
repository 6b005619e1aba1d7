//! The files `roster demo` writes before `roster init`: the users (HA1 hashes, each homed on
//! its pool), the credentials in clear for the user, SIPp's injection file, and the
//! deployment's topology.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use roster::users::{UserEntry, UsersFile};

use super::layout::Layout;
use super::{DemoOptions, DEMO_DOMAIN, DEMO_USERS, DEMO_USER_PREFIX};

/// The credentials file: domain, users and password in clear (`roster load --password-file`
/// reads its `password:` line).
pub const CREDENTIALS_FILE: &str = "credentials";

/// SIPp's injection file (`sipp -inf`).
pub const USERS_CSV_FILE: &str = "users.csv";

/// The users file the nodes read (HA1 hashes only).
pub const USERS_FILE: &str = "users.toml";

/// The deployment's topology, which `roster init` turns into every node's files.
pub const TOPOLOGY_FILE: &str = "topology.toml";

/// Writes the users of `password` (users file, credentials, SIPp's CSV) and the topology of
/// `layout` into the demo's directory. With two pools, each user's entry names its home pool.
pub fn write_all(options: &DemoOptions, layout: &Layout, password: &str) -> anyhow::Result<()> {
    let dir = &options.dir;
    let paired = layout.pools.len() > 1;
    let users = UsersFile {
        user: (0..DEMO_USERS)
            .map(|i| {
                let name = format!("{DEMO_USER_PREFIX}{i}");
                let aor = format!("sip:{name}@{DEMO_DOMAIN}");
                let mut entry = UserEntry::from_password(&aor, &name, DEMO_DOMAIN, password);
                if paired {
                    entry.pool = layout.home_of(i).map(|pool| pool.name.to_string());
                }
                entry
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
    write(&dir.join(TOPOLOGY_FILE), &layout.topology(options.groups))
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}
