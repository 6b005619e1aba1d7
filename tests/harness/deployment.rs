//! A deployment of two paired pools in two sites, three `roster start` processes each, made by
//! `roster init` on loopback: what the operator's page, the metrics and the CLI are tested on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use crate::{free_port_range, roster_bin, spawn_node, TempDir, Users};

/// How long a node of the deployment may take to print `roster: ready` (a debug build; six
/// nodes starting on two shared CPUs).
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// Nodes per pool.
pub const NODES_PER_POOL: u64 = 3;

/// Two pools, `a` (site dc1, nodes 1–3) and `b` (site dc2, nodes 4–6), each the other's backup,
/// with `users` homed on `a` (the CMS's pool) and digest authentication on.
pub struct Deployment {
    /// Its files: users, topology, and `roster init`'s output in `pool/`.
    pub dir: TempDir,
    /// Each node's SIP address (UDP and TCP), by id.
    pub sip: BTreeMap<u64, SocketAddr>,
    /// Each node's HTTP address, by id.
    pub http: BTreeMap<u64, SocketAddr>,
    children: BTreeMap<u64, Child>,
}

impl Deployment {
    /// Creates the deployment with `groups` routing groups per pool and starts every node.
    pub fn start(users: &Users, groups: u32) -> Deployment {
        let dir = TempDir::new("deployment");
        users.write(dir.path());
        let count = 2 * NODES_PER_POOL;
        let count16 = u16::try_from(count).expect("six nodes");
        let base = free_port_range(3 * count16, count16);
        let mut topology = format!(
            "[deployment]\nname = \"test\"\ncms = \"a\"\n[[site]]\nname = \"dc1\"\n[[site]]\nname = \"dc2\"\n\
             [[pool]]\nid = 1\nname = \"a\"\nsite = \"dc1\"\ngroups = {groups}\n\
             [[pool]]\nid = 2\nname = \"b\"\nsite = \"dc2\"\ngroups = {groups}\n\
             [[pair]]\npools = [\"a\", \"b\"]\n"
        );
        let mut sip = BTreeMap::new();
        let mut http = BTreeMap::new();
        for id in 1..=count {
            let index = u16::try_from(id - 1).expect("small");
            let pool = if id <= NODES_PER_POOL { "a" } else { "b" };
            let sip_address = SocketAddr::from(([127, 0, 0, 1], base + 2 * index));
            let http_address = SocketAddr::from(([127, 0, 0, 1], base + 2 * count16 + index));
            let cluster = SocketAddr::from(([127, 0, 0, 1], base + 101 + index));
            topology.push_str(&format!(
                "[[node]]\nid = {id}\npool = \"{pool}\"\ncluster = \"{cluster}\"\n\
                 sip = \"{sip_address}\"\nhttp = \"{http_address}\"\n"
            ));
            sip.insert(id, sip_address);
            http.insert(id, http_address);
        }
        let topology_path = dir.path().join("topology.toml");
        std::fs::write(&topology_path, topology).expect("write topology");
        let output = Command::new(roster_bin())
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
            output.status.success(),
            "roster init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut deployment = Deployment {
            dir,
            sip,
            http,
            children: BTreeMap::new(),
        };
        let waits: Vec<_> = (1..=count).map(|id| (id, deployment.spawn(id))).collect();
        for (id, ready) in waits {
            deployment.await_ready(id, ready);
        }
        deployment
    }

    /// Node `id`'s configuration file.
    pub fn config(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("pool/node-{id}/roster.toml"))
    }

    /// Node `id`'s log file.
    pub fn log(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    fn spawn(&mut self, id: u64) -> mpsc::Receiver<Option<SocketAddr>> {
        let (child, ready) = spawn_node(&self.config(id), &self.log(id));
        self.children.insert(id, child);
        ready
    }

    fn await_ready(&self, id: u64, ready: mpsc::Receiver<Option<SocketAddr>>) {
        if ready.recv_timeout(READY_DEADLINE).is_err() {
            let log = std::fs::read_to_string(self.log(id)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!("node {id} not ready within {READY_DEADLINE:?}; log: {tail:?}");
        }
    }

    /// `kill -9` node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `id` again from its disk and waits until it is ready.
    pub fn restart(&mut self, id: u64) {
        let ready = self.spawn(id);
        self.await_ready(id, ready);
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every query of the Grafana dashboard (`deploy/grafana/roster.json`).
pub fn dashboard_queries() -> Vec<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/roster.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/roster.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_string))
        .collect()
}

/// The Roster metric names a PromQL query reads (`roster_…`; `_bucket`, `_sum`, `_count` kept,
/// as the exposition names them).
pub fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(start) = rest.find("roster_") {
        let preceded = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The metric names a `/metrics` exposition has samples of.
pub fn exposed_names(exposition: &str) -> std::collections::BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}
