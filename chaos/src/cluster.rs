//! The deployment under test: its address plan, its topology, `roster init`, and the `roster
//! start` processes (start, SIGKILL, SIGTERM, SIGSTOP/SIGCONT).
//!
//! This is the one module that knows `roster init`'s topology format and how a node is
//! started; the rest of the suite names nodes by index and asks this module for addresses.
//! One pool in one site, or (`[cluster] sites = 2`) two paired pools of `nodes` nodes each in
//! two sites: `pool-a` in `dc1` (nodes 1..=n, holding the CMS) and `pool-b` in `dc2` (nodes
//! n+1..=2n), with a users file that homes every AOR of the workload on one of them.
//! Every packet between the sites goes through a relay (see below), so that the inter-site link
//! can be delayed, cut and flapped without touching the links inside a site.
//!
//! Addresses: node `i` of the run owns the loopback address `127.77.P.i` (`P` picked per run
//! so that runs and tests do not meet), with the same ports on every node from a base `B`
//! (5060 unless something listens there on the wildcard address): SIP `B` (UDP and TCP), TLS
//! `B+1`, HTTP `B+2`, cluster (QUIC) `B+3`. A node's cluster traffic therefore comes from and
//! goes to its own address, which is what the firewall matches. With relays, node `i` reaches
//! peer `j` at `127.77.P.i:B+10+j` (a relay that forwards from `127.77.P.i:B+20+j` to `j`'s
//! cluster port): each node gets its own copy of the topology naming the relays, and the
//! packets still carry the two nodes' addresses.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::cleanup;
use crate::history::{Deployment, NodeName, PoolView};
use crate::monitor::http_get;
use crate::workload::DOMAIN;

/// The pools' names, by site (one pool per site).
pub const POOL_NAMES: [&str; SITES_MAX] = ["pool-a", "pool-b"];

/// The sites' names.
const SITE_NAMES: [&str; SITES_MAX] = ["dc1", "dc2"];

/// Sites a run may have: one pool, or two paired pools in two sites.
pub const SITES_MAX: usize = 2;

/// The HA1 every user of a two-site run gets: the nodes run without authentication
/// (`--no-auth`), but a directory entry needs one, and the directory is what homes a user.
const UNUSED_HA1_MD5: &str = "00000000000000000000000000000000";

/// How long every node may take to hold the whole directory (users homed on both pools).
const DIRECTORY_DEADLINE: Duration = Duration::from_secs(60);

/// Port bases tried, in order: a listener on the wildcard address (a SIP server on `*:5060`,
/// anything on `*:8080`) takes its port on every loopback address too, so the ports move.
const PORT_BASES: [u16; 8] = [5060, 27060, 29060, 31060, 33060, 35060, 37060, 39060];

/// Offsets from a plan's port base, the same on every node's address.
const SIP_OFFSET: u16 = 0;
/// TLS is SIP's port plus one (`roster init`'s rule).
const TLS_OFFSET: u16 = 1;
/// HTTP: status, health, metrics.
const HTTP_OFFSET: u16 = 2;
/// The cluster transport (QUIC).
const CLUSTER_OFFSET: u16 = 3;
/// Relay for peer `j` listens on `base + RELAY_OFFSET + j` of the sending node's address.
const RELAY_OFFSET: u16 = 10;
/// Relay for peer `j` sends from `base + RELAY_UPSTREAM_OFFSET + j` of the sending node's
/// address.
const RELAY_UPSTREAM_OFFSET: u16 = 20;

/// Nodes a pool of the suite may have (a pool has 3 to 16; 5 is what two cores carry).
pub const NODES_MIN: usize = 3;
/// See [`NODES_MIN`].
pub const NODES_MAX: usize = 5;

/// How long a node may take to print `roster: ready`.
pub const NODE_READY_DEADLINE: Duration = Duration::from_secs(60);

/// How long a node may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// The `[cluster]` of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Sites, one pool each: 1, or 2 (two paired pools, the CMS on the first). Default 1.
    pub sites: usize,
    /// Nodes of each pool, 3 to 5. Default 3.
    pub nodes: usize,
    /// Routing groups. Default 8.
    pub groups: u32,
    /// Route every node-to-node packet through a userspace relay (needed for delay faults).
    pub relay: bool,
    /// Put this node's data directory (1-based id) on a tmpfs of `disk_mb` (full-disk faults).
    pub disk_node: Option<usize>,
    /// Size of that tmpfs, MiB. Default 64.
    pub disk_mb: u64,
    /// Extra lines for every node's `[pool]` table, e.g. `leader_balance_interval_s = 5`.
    pub pool_lines: Vec<String>,
}

impl Default for ClusterSpec {
    fn default() -> ClusterSpec {
        ClusterSpec {
            sites: 1,
            nodes: 3,
            groups: 8,
            relay: false,
            disk_node: None,
            disk_mb: 64,
            pool_lines: Vec::new(),
        }
    }
}

impl ClusterSpec {
    /// Checks the bounds.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=SITES_MAX).contains(&self.sites),
            "cluster.sites must be 1..={SITES_MAX}"
        );
        anyhow::ensure!(
            (NODES_MIN..=NODES_MAX).contains(&self.nodes),
            "cluster.nodes must be {NODES_MIN}..={NODES_MAX}"
        );
        anyhow::ensure!(
            self.sites == 1 || self.nodes == 3,
            "two sites have 3 nodes per pool (six processes are what two cores carry)"
        );
        anyhow::ensure!(
            (1..=64).contains(&self.groups),
            "cluster.groups must be 1..=64"
        );
        if let Some(node) = self.disk_node {
            anyhow::ensure!(
                (1..=self.total_nodes()).contains(&node),
                "cluster.disk_node must name a node, 1..={}",
                self.total_nodes()
            );
            anyhow::ensure!(
                (16..=1024).contains(&self.disk_mb),
                "cluster.disk_mb must be 16..=1024"
            );
        }
        Ok(())
    }

    /// Nodes of every pool.
    pub fn total_nodes(&self) -> usize {
        self.nodes * self.sites
    }

    /// The site (and pool) of node `index`.
    pub fn site_of(&self, index: usize) -> usize {
        index / self.nodes.max(1)
    }

    /// Whether node `from` reaches node `to` through a relay: every path with `relay`, and
    /// every path between the sites.
    pub fn relayed(&self, from: usize, to: usize) -> bool {
        from != to && (self.relay || self.site_of(from) != self.site_of(to))
    }
}

/// Where a run's nodes live: addresses `127.77.P.N`, and the same ports on each from `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPlan {
    /// The third octet.
    pub block: u8,
    /// The first port (SIP); see the offsets.
    pub base: u16,
}

impl AddressPlan {
    /// A block and port base whose addresses and ports are free for `nodes` nodes, blocks
    /// tried from one derived from the process id.
    pub fn pick(nodes: usize) -> anyhow::Result<AddressPlan> {
        let first = (std::process::id() % 200) as u8;
        for base in PORT_BASES {
            for step in 0..50u8 {
                let plan = AddressPlan {
                    block: 20u8.saturating_add(first.wrapping_add(step) % 200),
                    base,
                };
                if (0..nodes).all(|node| plan.is_free(node, nodes)) {
                    return Ok(plan);
                }
            }
        }
        anyhow::bail!(
            "no free 127.77.x.0/24 block with free ports at any of {PORT_BASES:?} for the nodes"
        )
    }

    /// Node `index`'s address (index 0 is id 1).
    pub fn ip(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 77, self.block, (index + 1) as u8)
    }

    /// SIP (UDP and TCP) on every node.
    pub fn sip_port(&self) -> u16 {
        self.base + SIP_OFFSET
    }

    /// HTTP on every node.
    pub fn http_port(&self) -> u16 {
        self.base + HTTP_OFFSET
    }

    /// The cluster transport on every node.
    pub fn cluster_port(&self) -> u16 {
        self.base + CLUSTER_OFFSET
    }

    /// Where node `from`'s relay towards node `to` listens (on `from`'s address).
    pub fn relay_listen(&self, from: usize, to: usize) -> SocketAddr {
        SocketAddr::from((self.ip(from), self.base + RELAY_OFFSET + to as u16 + 1))
    }

    /// Where node `from`'s relay towards node `to` sends from (on `from`'s address).
    pub fn relay_upstream(&self, from: usize, to: usize) -> SocketAddr {
        SocketAddr::from((
            self.ip(from),
            self.base + RELAY_UPSTREAM_OFFSET + to as u16 + 1,
        ))
    }

    fn is_free(&self, index: usize, nodes: usize) -> bool {
        let ip = IpAddr::V4(self.ip(index));
        let relays =
            (1..=nodes as u16).flat_map(|peer| [RELAY_OFFSET + peer, RELAY_UPSTREAM_OFFSET + peer]);
        [SIP_OFFSET, CLUSTER_OFFSET]
            .into_iter()
            .chain(relays)
            .all(|offset| std::net::UdpSocket::bind((ip, self.base + offset)).is_ok())
            && [SIP_OFFSET, TLS_OFFSET, HTTP_OFFSET]
                .iter()
                .all(|&offset| std::net::TcpListener::bind((ip, self.base + offset)).is_ok())
    }
}

enum NodeState {
    Running(Child),
    Paused(Child),
    Stopped,
}

struct Node {
    state: NodeState,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// Processes started so far.
    starts: u64,
}

/// A running deployment.
pub struct Cluster {
    spec: ClusterSpec,
    plan: AddressPlan,
    roster: PathBuf,
    nodes: Vec<Node>,
    deployment: Deployment,
    dir: PathBuf,
}

impl Cluster {
    /// Writes the topology, runs `roster init` and, for relays, each node's own topology;
    /// starts nothing (a full-disk scenario mounts its tmpfs on a data directory first).
    /// With two sites, `users` are the workload's AORs (user part) and the index of each one's
    /// home pool: the users file of `roster init`.
    pub async fn create(
        spec: &ClusterSpec,
        roster: &Path,
        dir: &Path,
        users: &[(String, usize)],
    ) -> anyhow::Result<Cluster> {
        spec.validate()?;
        let plan = AddressPlan::pick(spec.total_nodes())?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let topology_path = dir.join("topology.toml");
        std::fs::write(&topology_path, topology(spec, &plan, None))?;
        let pool_dir = dir.join("pool");
        let mut init = Command::new(roster);
        init.arg("init")
            .arg("--topology")
            .arg(&topology_path)
            .arg("--dir")
            .arg(&pool_dir)
            .arg("--no-auth");
        if spec.sites > 1 {
            let users_path = dir.join("users.toml");
            std::fs::write(&users_path, users_file(users))?;
            init.arg("--users").arg(&users_path);
        }
        let output = init
            .output()
            .await
            .with_context(|| format!("cannot run {} init", roster.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "roster init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut nodes = Vec::new();
        for index in 0..spec.total_nodes() {
            let node_dir = pool_dir.join(format!("node-{}", index + 1));
            let config = node_dir.join("roster.toml");
            let mut text = std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            if spec.relay || spec.sites > 1 {
                std::fs::write(
                    node_dir.join("peers.toml"),
                    topology(spec, &plan, Some(index)),
                )?;
                text = text.replacen(
                    "topology = \"../topology.toml\"",
                    "topology = \"peers.toml\"",
                    1,
                );
            }
            let extra: String = spec.pool_lines.iter().map(|l| format!("{l}\n")).collect();
            text = text.replacen("[pool]\n", &format!("[pool]\n{extra}"), 1);
            std::fs::write(&config, text)?;
            nodes.push(Node {
                state: NodeState::Stopped,
                config,
                data: node_dir.join("data"),
                log: dir.join(format!("node-{}.log", index + 1)),
                starts: 0,
            });
        }
        let deployment = Deployment {
            pools: (0..spec.sites)
                .map(|site| PoolView {
                    id: site as u64 + 1,
                    name: POOL_NAMES[site].to_owned(),
                    groups: spec.groups,
                    epoch: 1,
                })
                .collect(),
            nodes: (0..spec.total_nodes())
                .map(|index| NodeName {
                    pool: POOL_NAMES[spec.site_of(index)].to_owned(),
                    id: index as u64 + 1,
                })
                .collect(),
        };
        Ok(Cluster {
            spec: spec.clone(),
            plan,
            roster: roster.to_path_buf(),
            nodes,
            deployment,
            dir: dir.to_path_buf(),
        })
    }

    /// Runs the admin command `roster ARGS` against the deployment (`--url` of node `via`,
    /// the admin token), within `deadline`: (success, stdout and stderr).
    pub async fn operate(
        &self,
        args: &[&str],
        via: usize,
        deadline: Duration,
    ) -> anyhow::Result<(bool, String)> {
        let url = format!("http://{}", self.http(via));
        let token = self.dir.join("pool").join("admin.token");
        let mut command = Command::new(&self.roster);
        command
            .args(args)
            .arg("--url")
            .arg(&url)
            .arg("--token-file")
            .arg(&token)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(deadline, command.output())
            .await
            .map_err(|_| {
                anyhow::anyhow!("roster {} did not end within {deadline:?}", args.join(" "))
            })?
            .with_context(|| format!("cannot run roster {}", args.join(" ")))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status.success(), text))
    }

    /// Waits until every running node's directory holds `users` users.
    async fn await_directory(&self, users: usize, deadline: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + deadline;
        for index in self.running() {
            loop {
                let known =
                    match http_get(self.http(index), "/status", Duration::from_secs(2)).await {
                        Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|status| status["directory_users"].as_u64())
                            .unwrap_or(0),
                        _ => 0,
                    };
                if known >= users as u64 {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < until,
                    "node {} knows {known} of {users} users after {deadline:?}",
                    index + 1
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Starts every node and waits until each is ready, every routing group of every pool has
    /// a leader and (two sites) every node holds the `users` users of the directory.
    pub async fn start_all(&mut self, users: usize) -> anyhow::Result<()> {
        let mut waits = Vec::new();
        for index in 0..self.nodes.len() {
            waits.push(self.spawn(index)?);
        }
        for (index, stdout) in waits.into_iter().enumerate() {
            self.await_ready(index, stdout).await?;
        }
        self.await_leaders(Duration::from_secs(60)).await?;
        if self.spec.sites > 1 {
            self.await_directory(users, DIRECTORY_DEADLINE).await?;
        }
        Ok(())
    }

    /// The nodes (indexes) of site `site`.
    pub fn site_nodes(&self, site: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&index| self.spec.site_of(index) == site)
            .collect()
    }

    /// What the checkers are told.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The spec it was made from.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Node `index`'s loopback address.
    pub fn ip(&self, index: usize) -> Ipv4Addr {
        self.plan.ip(index)
    }

    /// Node `index`'s SIP address (UDP).
    pub fn sip(&self, index: usize) -> SocketAddr {
        SocketAddr::from((self.plan.ip(index), self.plan.sip_port()))
    }

    /// The address plan (relays need it).
    pub fn plan(&self) -> &AddressPlan {
        &self.plan
    }

    /// Node `index`'s HTTP address.
    pub fn http(&self, index: usize) -> SocketAddr {
        SocketAddr::from((self.plan.ip(index), self.plan.http_port()))
    }

    /// Node `index`'s data directory.
    pub fn data_dir(&self, index: usize) -> &Path {
        &self.nodes[index].data
    }

    /// How many times node `index`'s process has been started, minus one.
    pub fn incarnation(&self, index: usize) -> u64 {
        self.nodes[index].starts.saturating_sub(1)
    }

    /// Whether node `index` runs (not paused, not stopped).
    pub fn is_running(&self, index: usize) -> bool {
        matches!(self.nodes[index].state, NodeState::Running(_))
    }

    /// Whether node `index` is stopped.
    pub fn is_stopped(&self, index: usize) -> bool {
        matches!(self.nodes[index].state, NodeState::Stopped)
    }

    /// The nodes that run now.
    pub fn running(&self) -> BTreeSet<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .collect()
    }

    /// Starts node `index` (stopped) and waits until it is ready.
    pub async fn start(&mut self, index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.is_stopped(index), "node {} is not stopped", index + 1);
        let stdout = self.spawn(index)?;
        self.await_ready(index, stdout).await
    }

    /// SIGKILL.
    pub async fn kill(&mut self, index: usize) {
        let state = std::mem::replace(&mut self.nodes[index].state, NodeState::Stopped);
        if let NodeState::Running(child) | NodeState::Paused(child) = state {
            reap(child, Some(libc::SIGKILL), Duration::from_secs(10)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 15 s.
    pub async fn stop(&mut self, index: usize) {
        let state = std::mem::replace(&mut self.nodes[index].state, NodeState::Stopped);
        match state {
            NodeState::Running(child) => {
                reap(child, Some(libc::SIGTERM), STOP_DEADLINE).await;
            }
            NodeState::Paused(child) => {
                signal(&child, libc::SIGCONT);
                reap(child, Some(libc::SIGTERM), STOP_DEADLINE).await;
            }
            NodeState::Stopped => {}
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self, index: usize) {
        let state = std::mem::replace(&mut self.nodes[index].state, NodeState::Stopped);
        self.nodes[index].state = match state {
            NodeState::Running(child) => {
                signal(&child, libc::SIGSTOP);
                NodeState::Paused(child)
            }
            other => other,
        };
    }

    /// SIGCONT.
    pub fn resume(&mut self, index: usize) {
        let state = std::mem::replace(&mut self.nodes[index].state, NodeState::Stopped);
        self.nodes[index].state = match state {
            NodeState::Paused(child) => {
                signal(&child, libc::SIGCONT);
                NodeState::Running(child)
            }
            other => other,
        };
    }

    /// Whether a running node's process has exited by itself (crashed); it is then marked
    /// stopped.
    pub fn reap_exited(&mut self) -> Vec<usize> {
        let mut exited = Vec::new();
        for (index, node) in self.nodes.iter_mut().enumerate() {
            if let NodeState::Running(child) = &mut node.state {
                if let Ok(Some(_)) = child.try_wait() {
                    if let Some(pid) = child.id() {
                        cleanup::forget_process(pid);
                    }
                    node.state = NodeState::Stopped;
                    exited.push(index);
                }
            }
        }
        exited
    }

    /// Stops every node (SIGKILL: the run is over).
    pub async fn shutdown(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index).await;
        }
    }

    /// The last lines of node `index`'s log, for error messages.
    pub fn log_tail(&self, index: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[index].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The first panic of node `index`'s latest process, from its log: the `panicked at` line
    /// and the message after it.
    pub fn last_panic(&self, index: usize) -> Option<String> {
        let text = std::fs::read_to_string(&self.nodes[index].log).ok()?;
        // The latest process's lines: after the last "pool node started".
        let latest = text
            .rfind("pool node started")
            .map_or(text.as_str(), |at| &text[at..]);
        let mut lines = latest.lines();
        let panicked = lines.find(|line| line.contains("panicked at"))?;
        let message = lines.next().unwrap_or_default();
        Some(format!("{} {}", panicked.trim(), message.trim()))
    }

    /// Waits until every routing group of every pool has a leader that some node reports.
    pub async fn await_leaders(&self, deadline: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + deadline;
        let wanted = self.spec.groups as usize * self.spec.sites;
        loop {
            let mut led = BTreeSet::new();
            for index in self.running() {
                let site = self.spec.site_of(index);
                let Ok((200, body)) =
                    http_get(self.http(index), "/status", Duration::from_secs(2)).await
                else {
                    continue;
                };
                if let Some((_, groups)) = crate::check::raft::parse_status(&body) {
                    led.extend(
                        groups
                            .iter()
                            .filter(|g| g.state == "Leader" && g.group < self.spec.groups)
                            .map(|g| (site, g.group)),
                    );
                }
            }
            if led.len() >= wanted {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < until,
                "only {} of {wanted} routing groups have a leader after {deadline:?}",
                led.len(),
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<tokio::process::ChildStdout> {
        let node = &mut self.nodes[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("cannot open {}", node.log.display()))?;
        let mut command = Command::new(&self.roster);
        command
            .arg("start")
            .arg("--config")
            .arg(&node.config)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child
        // when the runner's thread that spawned it dies (the runner's one main thread).
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.roster.display()))?;
        if let Some(pid) = child.id() {
            cleanup::register_process(pid);
        }
        let stdout = child.stdout.take().context("the child's stdout is piped")?;
        if !matches!(node.state, NodeState::Stopped) {
            anyhow::bail!("node {} started twice", index + 1);
        }
        node.starts += 1;
        node.state = NodeState::Running(child);
        Ok(stdout)
    }

    async fn await_ready(
        &mut self,
        index: usize,
        stdout: tokio::process::ChildStdout,
    ) -> anyhow::Result<()> {
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(NODE_READY_DEADLINE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "roster: ready" {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            // Closed stdout: the process ended (say how); otherwise the deadline passed.
            let exited = match &mut self.nodes[index].state {
                NodeState::Running(child) => {
                    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                        Ok(Ok(status)) => Some(status.to_string()),
                        _ => None,
                    }
                }
                _ => None,
            };
            self.kill(index).await;
            let why = match (ready, exited) {
                (Err(_), _) => format!("not ready within {NODE_READY_DEADLINE:?}"),
                (Ok(_), Some(status)) => format!("it exited before it was ready ({status})"),
                (Ok(_), None) => "it closed its stdout before it was ready".to_owned(),
            };
            anyhow::bail!(
                "node {}: {why}; its log ends:\n{}",
                index + 1,
                self.log_tail(index, 15)
            );
        }
        // Keep reading, so that the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(())
    }
}

/// The topology `roster init` reads; with `view = Some(i)`, node `i`'s own copy naming a
/// relay for every peer.
fn topology(spec: &ClusterSpec, plan: &AddressPlan, view: Option<usize>) -> String {
    let first = POOL_NAMES[0];
    let mut text = format!("# Written by roster-chaos.\n[deployment]\nname = \"{first}\"\n");
    if spec.sites > 1 {
        text.push_str(&format!("cms = \"{first}\"\n"));
    }
    for site in SITE_NAMES.iter().take(spec.sites) {
        text.push_str(&format!("[[site]]\nname = \"{site}\"\n"));
    }
    for site in 0..spec.sites {
        text.push_str(&format!(
            "[[pool]]\nid = {}\nname = \"{}\"\nsite = \"{}\"\ngroups = {}\n",
            site + 1,
            POOL_NAMES[site],
            SITE_NAMES[site],
            spec.groups
        ));
    }
    if spec.sites > 1 {
        text.push_str(&format!(
            "[[pair]]\npools = [\"{}\", \"{}\"]\n",
            POOL_NAMES[0], POOL_NAMES[1]
        ));
    }
    for index in 0..spec.total_nodes() {
        let ip = plan.ip(index);
        let cluster = match view {
            Some(own) if spec.relayed(own, index) => plan.relay_listen(own, index),
            _ => SocketAddr::from((ip, plan.cluster_port())),
        };
        text.push_str(&format!(
            "\n[[node]]\nid = {}\npool = \"{}\"\ncluster = \"{cluster}\"\nsip = \"{ip}:{}\"\nhttp = \"{ip}:{}\"\n",
            index + 1,
            POOL_NAMES[spec.site_of(index)],
            plan.sip_port(),
            plan.http_port()
        ));
    }
    text
}

/// The users file of a two-site run: every AOR homed on its pool, with a placeholder HA1 (the
/// nodes do not authenticate).
fn users_file(users: &[(String, usize)]) -> String {
    let mut text = String::from("# Written by roster-chaos.\n");
    for (user, home) in users {
        text.push_str(&format!(
            "[[user]]\naor = \"sip:{user}@{DOMAIN}\"\nusername = \"{user}\"\nha1_md5 = \"{UNUSED_HA1_MD5}\"\npool = \"{}\"\n",
            POOL_NAMES[(*home).min(SITES_MAX - 1)]
        ));
    }
    text
}

fn signal(child: &Child, signal: libc::c_int) {
    if let Some(pid) = child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()) {
        // SAFETY: a signal to our own child, which has not been reaped (we hold it).
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Signals `child` (if asked), waits up to `deadline` for it to exit, then kills it.
async fn reap(mut child: Child, first: Option<libc::c_int>, deadline: Duration) {
    let pid = child.id();
    if let Some(first) = first {
        signal(&child, first);
    }
    if tokio::time::timeout(deadline, child.wait()).await.is_err() {
        signal(&child, libc::SIGCONT);
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    if let Some(pid) = pid {
        cleanup::forget_process(pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_sees_its_peers_through_its_own_relays() {
        let spec = ClusterSpec {
            relay: true,
            ..ClusterSpec::default()
        };
        let plan = AddressPlan {
            block: 42,
            base: 5060,
        };
        let shared = topology(&spec, &plan, None);
        assert!(shared.contains("cluster = \"127.77.42.2:5063\""));
        let own = topology(&spec, &plan, Some(0));
        assert!(own.contains("cluster = \"127.77.42.1:5063\""), "{own}");
        assert!(own.contains("cluster = \"127.77.42.1:5072\""), "{own}");
        assert!(own.contains("cluster = \"127.77.42.1:5073\""), "{own}");
        assert_eq!(plan.relay_upstream(0, 2).to_string(), "127.77.42.1:5083");
        assert!(own.contains("sip = \"127.77.42.3:5060\""), "{own}");
    }

    #[test]
    fn two_sites_pair_two_pools_and_relay_only_the_link_between_them() {
        let spec = ClusterSpec {
            sites: 2,
            ..ClusterSpec::default()
        };
        let plan = AddressPlan {
            block: 42,
            base: 5060,
        };
        let own = topology(&spec, &plan, Some(0));
        assert!(own.contains("cms = \"pool-a\""), "{own}");
        assert!(own.contains("pools = [\"pool-a\", \"pool-b\"]"), "{own}");
        // Node 2 (same site) directly, node 4 (the other site) through node 1's relay.
        assert!(own.contains("cluster = \"127.77.42.2:5063\""), "{own}");
        assert!(own.contains("cluster = \"127.77.42.1:5074\""), "{own}");
        assert!(own.contains("id = 6\npool = \"pool-b\""), "{own}");
        assert!(!spec.relayed(0, 2) && spec.relayed(0, 3) && spec.relayed(5, 1));
        let users = users_file(&[("chaos1".into(), 1)]);
        assert!(users.contains("pool = \"pool-b\""), "{users}");
    }
}
