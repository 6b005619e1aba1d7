//! `roster demo`: a ready deployment in the foreground, with generated users, password and
//! certificate, for a first look and for benchmarks.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::distr::{Alphanumeric, SampleString};
use roster_registrar::Transport;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::node::{self, Listening};
use crate::users::{UserEntry, UsersFile};

/// The demo's SIP domain.
pub const DEMO_DOMAIN: &str = "example.com";

/// Users the demo creates: `u0` … `u9999`.
pub const DEMO_USERS: usize = 10_000;

/// What `roster demo` was asked for.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// UDP and TCP address; TLS listens on the next port.
    pub sip: SocketAddr,
    /// Where the generated files go.
    pub dir: PathBuf,
    /// Accept any user of the demo domain without a challenge.
    pub no_auth: bool,
    /// Metrics, health and status.
    pub http: SocketAddr,
}

/// Writes the demo's files and runs its node until `shutdown`.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tls_port = options
        .sip
        .port()
        .checked_add(1)
        .filter(|_| options.sip.port() != 0)
        .context("--sip needs a port below 65535 (TLS listens on the next one)")?;
    let tls_address = SocketAddr::new(options.sip.ip(), tls_port);
    std::fs::create_dir_all(&options.dir)
        .with_context(|| format!("cannot create demo directory {}", options.dir.display()))?;
    let password = Alphanumeric.sample_string(&mut rand::rng(), 20);
    write_files(&options, &password)?;
    let config_text = format!(
        "# Written by `roster demo`.\n[node]\nname = \"demo-1\"\n\n[sip]\n\
         domains = [\"{DEMO_DOMAIN}\"]\nudp = [\"{sip}\"]\ntcp = [\"{sip}\"]\ntls = [\"{tls_address}\"]\n\
         tls_certificate = \"tls/cert.pem\"\ntls_private_key = \"tls/key.pem\"\n\n[auth]\n\
         enabled = {auth}\nopen_directory = {open}\nusers_file = \"users.toml\"\n\
         # MD5 first: SIPp 3.6 and many phones answer only the first challenge, and only MD5.\n\
         # A production pool should list SHA-256 first (RFC 8760 section 2.4).\n\
         algorithms = [\"MD5\", \"SHA-256\"]\n\n[http]\nlisten = \"{http}\"\n",
        http = options.http,
        sip = options.sip,
        auth = !options.no_auth,
        open = options.no_auth,
    );
    let config_path = options.dir.join("roster.toml");
    write(&config_path, &config_text)?;
    let config = Config::load(&config_path)?;
    node::run(config, shutdown, |listening| {
        print!("{}", banner(&options, listening, &password));
    })
    .await
}

fn write_files(options: &DemoOptions, password: &str) -> anyhow::Result<()> {
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
    write(&dir.join("users.toml"), &toml::to_string(&users)?)?;
    write(
        &dir.join("credentials"),
        &format!(
            "domain: {DEMO_DOMAIN}\nusers: u0 … u{}\npassword: {password}\n",
            DEMO_USERS - 1
        ),
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
    write(&dir.join("users.csv"), &csv)?;
    let names = vec![
        options.sip.ip().to_string(),
        "localhost".to_string(),
        DEMO_DOMAIN.to_string(),
    ];
    let (certificate, key) = crate::tls::self_signed(&names)?;
    std::fs::create_dir_all(dir.join("tls"))?;
    write(&dir.join("tls/cert.pem"), &certificate)?;
    write(&dir.join("tls/key.pem"), &key)?;
    Ok(())
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn banner(options: &DemoOptions, listening: &Listening, password: &str) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "Roster demo: one registrar node, bindings in memory.");
    for (transport, address) in &listening.sip {
        let _ = writeln!(
            text,
            "  SIP {:<4} {address}",
            transport.as_str().to_uppercase()
        );
    }
    if let Some(http) = listening.http {
        let _ = writeln!(
            text,
            "  HTTP     http://{http}/ (status, /metrics, /health)"
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
    let _ = writeln!(
        text,
        "  files: {} (credentials, users.csv for SIPp, roster.toml, tls/)",
        options.dir.display()
    );
    let udp = listening
        .sip
        .iter()
        .find(|(transport, _)| *transport == Transport::Udp)
        .map(|(_, address)| address.to_string())
        .unwrap_or_default();
    let _ = writeln!(
        text,
        "  try: point a SIP client at {udp} as u0@{DEMO_DOMAIN}, or run\n       \
         sipp -sn uac ... (see README.md). Ctrl-C stops the demo."
    );
    text
}
