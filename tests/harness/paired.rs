//! Two paired pools of real `roster start` processes on loopback: pools `east` (nodes 1–3, the
//! CMS's pool) and `west` (nodes 4–6) in two sites, written as a deployment topology and
//! created with `roster init`; every node on free ports; with [`Paired::start_with_witness`],
//! a `roster witness` process in a third site too. Killed on drop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::{
    await_directory_users, free_ports, roster_bin, run_with_deadline, run_with_input, spawn_node,
    TempDir, Users,
};

/// Nodes per pool.
pub const NODES_PER_POOL: u64 = 3;

/// How long a node may take to print `roster: ready` (six debug-build nodes start at once on
/// shared CPUs).
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// The witness's id in [`Paired::start_with_witness`].
pub const WITNESS_ID: u64 = 100;

/// How long a command (`roster user`, `roster backup`) may run.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

/// Two paired pools.
pub struct Paired {
    /// Their files: `topology.toml`, `users.toml`, `pool/` (what `roster init` wrote).
    pub dir: TempDir,
    /// Routing groups per pool.
    pub groups: u32,
    /// SIP address (UDP and TCP) of each node, by id.
    pub sip: BTreeMap<u64, SocketAddr>,
    /// HTTP address of each node, by id.
    pub http: BTreeMap<u64, SocketAddr>,
    /// The witness's HTTP address, when there is one.
    pub witness_http: Option<SocketAddr>,
    children: BTreeMap<u64, Child>,
}

impl Paired {
    /// Writes the topology (`groups` routing groups per pool), runs `roster init` with `users`
    /// (homed on the CMS's pool) and digest authentication, starts the six nodes and waits
    /// until every node's directory holds the users.
    pub fn start(users: &Users, groups: u32) -> Paired {
        Paired::start_named(users, groups, ["east", "west"])
    }

    /// [`Paired::start`] with the pools named `names` (the first holds the CMS and the users).
    pub fn start_named(users: &Users, groups: u32, names: [&str; 2]) -> Paired {
        Paired::start_with(users, groups, names, None)
    }

    /// [`Paired::start`] with a witness ([`WITNESS_ID`], site `dc3`) watching both pools, and
    /// every node's `[pool] detection_interval_s` set to `detection_s`.
    pub fn start_with_witness(users: &Users, groups: u32, detection_s: u64) -> Paired {
        Paired::start_with(users, groups, ["east", "west"], Some(detection_s))
    }

    fn start_with(
        users: &Users,
        groups: u32,
        names: [&str; 2],
        witness_detection_s: Option<u64>,
    ) -> Paired {
        let [first, second] = names;
        let dir = TempDir::new("paired");
        users.write(dir.path());
        let nodes = 2 * NODES_PER_POOL;
        let count = u16::try_from(nodes).expect("six nodes");
        // Per node: SIP UDP/TCP and TLS (two ports), then the HTTP ports; QUIC at base+101.
        let base = free_ports(3 * count, 101, count);
        let mut topology = format!(
            "[deployment]\nname = \"test\"\ncms = \"{first}\"\n\
             [[site]]\nname = \"dc1\"\n[[site]]\nname = \"dc2\"\n",
        );
        for (id, name, site) in [(1, first, "dc1"), (2, second, "dc2")] {
            topology.push_str(&format!(
                "[[pool]]\nid = {id}\nname = \"{name}\"\nsite = \"{site}\"\ngroups = {groups}\n"
            ));
        }
        topology.push_str(&format!("[[pair]]\npools = [\"{first}\", \"{second}\"]\n"));
        let mut sip = BTreeMap::new();
        let mut http = BTreeMap::new();
        for id in 1..=nodes {
            let index = u16::try_from(id - 1).expect("small");
            let pool = if id <= NODES_PER_POOL { first } else { second };
            let sip_address = SocketAddr::from(([127, 0, 0, 1], base + 2 * index));
            let http_address = SocketAddr::from(([127, 0, 0, 1], base + 2 * count + index));
            let cluster = SocketAddr::from(([127, 0, 0, 1], base + 101 + index));
            topology.push_str(&format!(
                "[[node]]\nid = {id}\npool = \"{pool}\"\ncluster = \"{cluster}\"\n\
                 sip = \"{sip_address}\"\nhttp = \"{http_address}\"\n"
            ));
            sip.insert(id, sip_address);
            http.insert(id, http_address);
        }
        if witness_detection_s.is_some() {
            let witness = free_ports(2, 0, 0);
            topology.push_str(&format!(
                "[[site]]\nname = \"dc3\"\n[witness]\nid = {WITNESS_ID}\nsite = \"dc3\"\n\
                 address = \"127.0.0.1:{witness}\"\nhttp = \"127.0.0.1:{}\"\n\
                 pools = [\"{first}\", \"{second}\"]\n",
                witness + 1
            ));
        }
        let topology_path = dir.path().join("topology.toml");
        std::fs::write(&topology_path, topology).expect("write topology");
        let init = Command::new(roster_bin())
            .arg("init")
            .arg("--topology")
            .arg(&topology_path)
            .arg("--dir")
            .arg(dir.path().join("pool"))
            .arg("--users")
            .arg(dir.path().join("users.toml"))
            .args(["--trusted", "127.0.0.1"])
            .output()
            .expect("run roster init");
        assert!(
            init.status.success(),
            "roster init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut paired = Paired {
            dir,
            groups,
            sip,
            http: BTreeMap::new(),
            witness_http: None,
            children: BTreeMap::new(),
        };
        if let Some(detection_s) = witness_detection_s {
            for id in 1..=nodes {
                let config = paired.config(id);
                let text = std::fs::read_to_string(&config).expect("node config");
                // `[pool]` is the last table roster init writes.
                std::fs::write(
                    &config,
                    format!("{text}detection_interval_s = {detection_s}\n"),
                )
                .expect("write node config");
            }
            paired.witness_http = Some(paired.spawn_witness());
        }
        let waits: Vec<_> = (1..=nodes).map(|id| (id, paired.spawn(id))).collect();
        for (id, ready) in waits {
            match ready.recv_timeout(READY_DEADLINE) {
                Ok(Some(address)) => {
                    paired.http.insert(id, address);
                }
                _ => panic!(
                    "node {id} not ready within {READY_DEADLINE:?}; its log ends:\n{}",
                    paired.log_tail(id)
                ),
            }
        }
        paired.await_directory(users.count);
        paired
    }

    /// Starts `roster witness` from the configuration `roster init` wrote; its HTTP address.
    fn spawn_witness(&mut self) -> SocketAddr {
        let config = self
            .dir
            .path()
            .join(format!("pool/witness-{WITNESS_ID}/witness.toml"));
        let log = std::fs::File::create(self.log_path(WITNESS_ID)).expect("witness log");
        let mut child = Command::new(roster_bin())
            .arg("witness")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn roster witness");
        let stdout = child.stdout.take().expect("stdout piped");
        self.children.insert(WITNESS_ID, child);
        match crate::watch_ready(stdout).recv_timeout(READY_DEADLINE) {
            Ok(Some(address)) => address,
            _ => panic!(
                "the witness not ready within {READY_DEADLINE:?}; its log ends:\n{}",
                self.log_tail(WITNESS_ID)
            ),
        }
    }

    fn spawn(&mut self, id: u64) -> mpsc::Receiver<Option<SocketAddr>> {
        let (child, ready) = spawn_node(&self.config(id), &self.log_path(id));
        self.children.insert(id, child);
        ready
    }

    /// Kills node `id` with SIGKILL and waits for it to end.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `id` again (after [`Paired::kill`]) and waits until it is ready.
    pub fn restart(&mut self, id: u64) {
        let ready = self.spawn(id);
        match ready.recv_timeout(READY_DEADLINE) {
            Ok(Some(address)) => {
                self.http.insert(id, address);
            }
            _ => panic!(
                "node {id} not ready again within {READY_DEADLINE:?}; its log ends:\n{}",
                self.log_tail(id)
            ),
        }
    }

    /// Node `id`'s configuration file.
    pub fn config(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("pool/node-{id}/roster.toml"))
    }

    /// The deployment's topology file.
    pub fn topology(&self) -> PathBuf {
        self.dir.path().join("topology.toml")
    }

    /// The admin token file `roster init` wrote.
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("pool/admin.token")
    }

    /// `http://ADDR` of node `id`.
    pub fn url(&self, id: u64) -> String {
        format!("http://{}", self.http[&id])
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// The last lines of node `id`'s log.
    pub fn log_tail(&self, id: u64) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits (at most 90 s) until every node's directory holds at least `count` users.
    pub fn await_directory(&self, count: usize) {
        await_directory_users(&self.http, count, Duration::from_secs(90), |id| {
            format!("; its log:\n{}", self.log_tail(id))
        });
    }

    /// Runs `roster ARGS` with `stdin` on its standard input, within [`COMMAND_DEADLINE`].
    pub fn roster(&self, args: &[&str], stdin: &str) -> Output {
        roster_command(args, stdin, self.dir.path())
    }
}

/// Runs `roster ARGS` in `dir` with `stdin` on its standard input, within
/// [`COMMAND_DEADLINE`].
pub fn roster_command(args: &[&str], stdin: &str, dir: &Path) -> Output {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let input = dir.join(format!("stdin-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&input, stdin).expect("write stdin");
    let file = std::fs::File::open(&input).expect("open stdin file");
    let mut command = Command::new(roster_bin());
    command.args(args).current_dir(dir).env("RUST_LOG", "warn");
    let output = run_with_input(&mut command, Stdio::from(file), COMMAND_DEADLINE);
    let _ = std::fs::remove_file(&input);
    output
}

/// A command's outcome as text, for assertion messages.
pub fn shown(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `roster load` against `target` with `args`, within [`COMMAND_DEADLINE`].
pub fn load(target: SocketAddr, args: &[&str]) -> Output {
    let mut command = Command::new(roster_bin());
    command
        .arg("load")
        .arg(target.to_string())
        .args(args)
        .env("RUST_LOG", "warn");
    run_with_deadline(&mut command, COMMAND_DEADLINE)
}

impl Drop for Paired {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
