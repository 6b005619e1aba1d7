//! `roster demo`: a ready deployment in the foreground, with generated users, password and
//! certificate, for a first look and for benchmarks.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rand::distr::{Alphanumeric, SampleString};
use tokio_util::sync::CancellationToken;

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
    /// Routing groups of the pool.
    pub groups: u32,
    /// Sources the nodes trust (`[sip] trusted_networks`): no per-source limits, lookups
    /// without credentials. For benchmark drivers; default none.
    pub trusted_networks: Vec<String>,
}

/// Nodes of the demo pool.
pub const DEMO_NODES: u64 = 3;

/// How long the demo waits for its nodes to report ready.
const NODES_READY_DEADLINE: Duration = Duration::from_secs(60);

/// One started node of the demo.
struct DemoNode {
    id: u64,
    child: tokio::process::Child,
    sip: Vec<(String, String)>,
    http: Option<String>,
}

/// Writes the demo's files, starts a pool of three `roster start` processes on the loopback
/// address, and runs until `shutdown`; then stops them.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let base = options.sip.port();
    anyhow::ensure!(
        base != 0 && base <= 60_000,
        "--sip needs a fixed port of 60000 or below (the pool uses the ports above it)"
    );
    std::fs::create_dir_all(&options.dir)
        .with_context(|| format!("cannot create demo directory {}", options.dir.display()))?;
    let password = Alphanumeric.sample_string(&mut rand::rng(), 20);
    write_files(&options, &password)?;
    let topology_path = options.dir.join("topology.toml");
    write(&topology_path, &topology(&options))?;
    let configs = crate::init::init(&crate::init::InitOptions {
        topology: topology_path,
        dir: options.dir.join("pool"),
        domains: vec![DEMO_DOMAIN.to_string()],
        users: (!options.no_auth).then(|| options.dir.join("users.toml")),
        no_auth: options.no_auth,
        // SHA-256 preferred; a challenge offers MD5 alone unless the client asks for SHA-256
        // ([auth] challenge = "single", the default), so SIPp 3.6 and baresip 1.0 register.
        algorithms: vec!["SHA-256".into(), "MD5".into()],
        worker_threads: Some(demo_worker_threads()),
        trusted_networks: options.trusted_networks.clone(),
    })?;
    let mut nodes = Vec::new();
    for (id, config) in configs {
        nodes.push(start_node(&options, id, &config)?);
    }
    let ready = tokio::time::timeout(NODES_READY_DEADLINE, wait_ready(&mut nodes)).await;
    match ready {
        Ok(Ok(())) => print!("{}", banner(&options, &nodes, &password)),
        Ok(Err(error)) => {
            stop(&mut nodes).await;
            return Err(error);
        }
        Err(_) => {
            stop(&mut nodes).await;
            anyhow::bail!(
                "the demo nodes were not ready within {NODES_READY_DEADLINE:?}; see {}/node-*.log",
                options.dir.display()
            );
        }
    }
    let outcome = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        exited = first_exit(&mut nodes) => Err(anyhow::anyhow!(
            "{exited}; see {}/node-*.log",
            options.dir.display()
        )),
    };
    stop(&mut nodes).await;
    outcome
}

fn topology(options: &DemoOptions) -> String {
    let ip = options.sip.ip();
    let base = options.sip.port();
    let mut text = format!("[pool]\nname = \"demo\"\ngroups = {}\n", options.groups);
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
            "\n[[node]]\nid = {id}\ncluster = \"{cluster}\"\nsip = \"{sip}\"\nhttp = \"{http}\""
        );
    }
    text
}

fn start_node(options: &DemoOptions, id: u64, config: &Path) -> anyhow::Result<DemoNode> {
    let log_path = options.dir.join(format!("node-{id}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the roster executable")?;
    let mut command = tokio::process::Command::new(exe);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it runs in the
    // child between fork and exec. It makes a node stop when the demo dies, even by SIGKILL.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = command
        .arg("start")
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start demo node {id}"))?;
    Ok(DemoNode {
        id,
        child,
        sip: Vec::new(),
        http: None,
    })
}

/// Reads each node's announcements until it says `roster: ready`.
async fn wait_ready(nodes: &mut [DemoNode]) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    for node in nodes.iter_mut() {
        let stdout = node
            .child
            .stdout
            .take()
            .context("demo node stdout not captured")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        loop {
            let Some(line) = lines.next_line().await? else {
                anyhow::bail!("demo node {} exited before it was ready", node.id);
            };
            if let Some(rest) = line.strip_prefix("roster: sip ") {
                if let Some((transport, address)) = rest.split_once(' ') {
                    node.sip.push((transport.to_string(), address.to_string()));
                }
            } else if let Some(address) = line.strip_prefix("roster: http ") {
                node.http = Some(address.to_string());
            } else if line == "roster: ready" {
                break;
            }
        }
        // Keep draining its stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    }
    Ok(())
}

async fn first_exit(nodes: &mut [DemoNode]) -> String {
    let waits = nodes.iter_mut().map(|node| {
        Box::pin(async move {
            let status = node.child.wait().await;
            format!("demo node {} exited ({status:?})", node.id)
        })
    });
    futures_util::future::select_all(waits).await.0
}

async fn stop(nodes: &mut [DemoNode]) {
    for node in nodes.iter_mut() {
        if let Some(pid) = node.child.id() {
            // SIGTERM first: the node drains in-flight requests.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
    for node in nodes.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(8), node.child.wait())
            .await
            .is_err()
        {
            let _ = node.child.kill().await;
        }
    }
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
    let secret = crate::secret::write_secret;
    secret(&dir.join("users.toml"), toml::to_string(&users)?.as_bytes())?;
    secret(
        &dir.join("credentials"),
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
    secret(&dir.join("users.csv"), csv.as_bytes())?;
    Ok(())
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn banner(options: &DemoOptions, nodes: &[DemoNode], password: &str) -> String {
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
        "  files: {} (credentials, users.csv for SIPp, topology.toml, pool/, node-N.log)",
        options.dir.display()
    );
    let _ = writeln!(
        text,
        "  try: point a SIP client at any node's SIP address as u0@{DEMO_DOMAIN}, or see README.md. Ctrl-C stops the demo."
    );
    text
}

/// Worker threads per demo node: the demo's three nodes share this machine's CPUs, so each
/// gets a third of them (at least one) instead of one thread per CPU each, which would only
/// add context switches.
fn demo_worker_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let nodes = usize::try_from(DEMO_NODES).unwrap_or(usize::MAX);
    (cpus / nodes).max(1)
}
