//! `DIR/demo.json`: what a script needs to drive the demo without parsing its text: every
//! pool (name, site, partner, the users homed on it, whether the CMS lives there), every node
//! (addresses, admin URL, process id, data directory, log, configuration), the witness with
//! `--witness` (id, addresses, process id), the files a client needs, the WAN latency and the
//! commands to try. Rewritten whole (a new file renamed over the old) whenever it changes: a
//! node ends, a node started again outside the demo is found, the demo stops.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::commands::{commands, DemoCommand};
use super::files::{CREDENTIALS_FILE, USERS_CSV_FILE};
use super::layout::{Layout, PoolPlan};
use super::nodes::DemoNode;
use super::{DemoOptions, DEMO_DOMAIN, DEMO_USER_PREFIX};

/// The file's name in the demo's directory.
pub const MANIFEST_FILE: &str = "demo.json";

/// The format's version: a script can refuse a layout it does not know.
const MANIFEST_VERSION: u32 = 1;

/// Where the demo is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DemoState {
    /// Nodes started, not all ready yet.
    Starting,
    /// Every node was ready and knew the users: the demo serves.
    Ready,
    /// The demo has stopped the nodes it started.
    Stopped,
}

/// The whole document.
#[derive(Debug, Serialize)]
pub struct Manifest {
    version: u32,
    state: DemoState,
    /// The demo process.
    demo_pid: u32,
    domain: &'static str,
    sites: usize,
    /// One-way delay between the sites (the relay); 0: direct on loopback.
    wan_latency_ms: u64,
    /// Digest authentication on (off with `--no-auth`).
    auth: bool,
    /// The pool the CMS lives on.
    cms_pool: &'static str,
    /// Routing groups of each pool.
    groups: u32,
    /// `domain:`, `users:` and `password:` lines (`roster load --password-file`).
    credentials_file: PathBuf,
    /// SIPp's injection file (`sipp -inf`).
    users_csv: PathBuf,
    /// The CA of the nodes' TLS certificates (`roster load --tls-ca`).
    ca_file: PathBuf,
    /// The bearer token of the nodes' admin routes.
    admin_token_file: PathBuf,
    /// The deployment's topology (`roster pool status --topology`).
    topology_file: PathBuf,
    /// The `roster` executable the demo runs.
    roster: PathBuf,
    pools: Vec<PoolEntry>,
    /// The witness in the third site, with `--witness`.
    witness: Option<WitnessEntry>,
    /// What to try, ready to copy (the banner's "try" list).
    commands: Vec<DemoCommand>,
}

/// One pool.
#[derive(Debug, Serialize)]
struct PoolEntry {
    id: u64,
    name: &'static str,
    site: &'static str,
    /// The pool that backs this one up, and that it backs up.
    partner: Option<&'static str>,
    /// Whether the CMS lives here (its backup copy is on the partner).
    cms: bool,
    /// The demo users homed here.
    users: Vec<UserRange>,
    nodes: Vec<NodeEntry>,
}

/// The witness.
#[derive(Debug, Serialize)]
struct WitnessEntry {
    id: u64,
    site: &'static str,
    /// Whether it runs, as far as the demo knows.
    running: bool,
    /// Its process id.
    pid: u32,
    /// Its QUIC address, which every node dials.
    address: String,
    /// Its HTTP address (`roster witness status --http`); `None` when unknown.
    http: Option<String>,
    /// The pools it watches.
    pools: Vec<&'static str>,
    config: PathBuf,
    log: PathBuf,
}

/// Users `{prefix}{first}` … `{prefix}{last}` of the demo domain.
#[derive(Debug, Serialize)]
struct UserRange {
    prefix: &'static str,
    first: usize,
    last: usize,
    count: usize,
}

/// One node.
#[derive(Debug, Serialize)]
struct NodeEntry {
    id: u64,
    /// Whether it runs, as far as the demo knows.
    running: bool,
    /// Its process id: the demo's child, or the process started again outside the demo.
    pid: u32,
    /// Whether the demo started it (else it was started again by someone else).
    started_by_demo: bool,
    sip_udp: String,
    sip_tcp: String,
    sip_tls: String,
    /// Its HTTP address (`/status`, `/metrics`, `/health`); `None` when unknown.
    http: Option<String>,
    /// Its admin and status URL (`--url` of the `roster` commands); `None` when unknown.
    admin_url: Option<String>,
    /// Its cluster transport (QUIC).
    cluster: String,
    /// What the other site dials for it (the relay's front), when there is a WAN latency.
    wan: Option<String>,
    config: PathBuf,
    data_dir: PathBuf,
    /// Its log (standard error); `None` for a node started outside the demo.
    log: Option<PathBuf>,
}

impl Manifest {
    /// The document for `nodes` laid out as `layout`.
    pub fn new(
        options: &DemoOptions,
        layout: &Layout,
        nodes: &[DemoNode],
        witness: Option<&DemoNode>,
        state: DemoState,
        roster: &Path,
    ) -> Manifest {
        let dir = &options.dir;
        let pools = layout
            .pools
            .iter()
            .map(|pool| pool_entry(layout, pool, nodes))
            .collect();
        Manifest {
            version: MANIFEST_VERSION,
            state,
            demo_pid: std::process::id(),
            domain: DEMO_DOMAIN,
            sites: layout.pools.len(),
            wan_latency_ms: u64::try_from(options.wan_latency.as_millis()).unwrap_or(u64::MAX),
            auth: !options.no_auth,
            cms_pool: layout.cms_pool().map_or("", |pool| pool.name),
            groups: options.groups,
            credentials_file: dir.join(CREDENTIALS_FILE),
            users_csv: dir.join(USERS_CSV_FILE),
            ca_file: dir.join("pool/tls/ca.pem"),
            admin_token_file: dir.join("pool").join(super::super::init::ADMIN_TOKEN_FILE),
            topology_file: dir.join("pool/topology.toml"),
            roster: roster.to_path_buf(),
            pools,
            witness: witness_entry(layout, witness),
            commands: commands(options, layout, nodes, witness, roster),
        }
    }

    /// Writes the document to `DIR/demo.json`: a new file renamed over the old, so that a
    /// reader never sees half of it.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let fresh = dir.join(format!("{MANIFEST_FILE}.new"));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&fresh, format!("{text}\n"))
            .with_context(|| format!("cannot write {}", fresh.display()))?;
        std::fs::rename(&fresh, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

fn pool_entry(layout: &Layout, pool: &PoolPlan, nodes: &[DemoNode]) -> PoolEntry {
    let users = UserRange {
        prefix: DEMO_USER_PREFIX,
        first: *pool.users.start(),
        last: *pool.users.end(),
        count: pool.users.clone().count(),
    };
    PoolEntry {
        id: pool.id,
        name: pool.name,
        site: pool.site,
        partner: layout.partner_of(pool).map(|partner| partner.name),
        cms: layout.cms_pool().map(|cms| cms.id) == Some(pool.id),
        users: vec![users],
        nodes: pool
            .nodes
            .iter()
            .filter_map(|plan| {
                let node = nodes.iter().find(|node| node.id == plan.id)?;
                Some(node_entry(plan, node))
            })
            .collect(),
    }
}

fn witness_entry(layout: &Layout, witness: Option<&DemoNode>) -> Option<WitnessEntry> {
    let (plan, witness) = (layout.witness?, witness?);
    Some(WitnessEntry {
        id: plan.id,
        site: plan.site,
        running: witness.running(),
        pid: witness.pid,
        address: plan.address.to_string(),
        http: witness
            .http
            .clone()
            .or_else(|| (plan.http.port() != 0).then(|| plan.http.to_string())),
        pools: layout.pools.iter().map(|pool| pool.name).collect(),
        config: witness.config.clone(),
        log: witness.log.clone(),
    })
}

fn node_entry(plan: &super::layout::NodePlan, node: &DemoNode) -> NodeEntry {
    let tls = std::net::SocketAddr::new(plan.sip.ip(), plan.sip.port() + 1);
    let announced = |transport: &str| {
        node.sip
            .iter()
            .find(|(name, _)| name == transport)
            .map(|(_, address)| address.clone())
    };
    let http = node
        .http
        .clone()
        .or_else(|| (plan.http.port() != 0).then(|| plan.http.to_string()));
    NodeEntry {
        id: node.id,
        running: node.running(),
        pid: node.pid,
        started_by_demo: node.started_by_demo(),
        sip_udp: announced("udp").unwrap_or_else(|| plan.sip.to_string()),
        sip_tcp: announced("tcp").unwrap_or_else(|| plan.sip.to_string()),
        sip_tls: announced("tls").unwrap_or_else(|| tls.to_string()),
        admin_url: http.as_ref().map(|http| format!("http://{http}")),
        http,
        cluster: plan.cluster.to_string(),
        wan: plan.wan.map(|wan| wan.to_string()),
        config: node.config.clone(),
        data_dir: node.data_dir(),
        log: node.started_by_demo().then(|| node.log.clone()),
    }
}
