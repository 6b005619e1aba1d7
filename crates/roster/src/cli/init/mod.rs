//! `roster init`: turns a deployment's topology (sites, pools, pairs, nodes) into what each node
//! needs to start: one CA for the deployment and a certificate per node naming its pool and id,
//! a shared digest nonce key, a database directory and a `roster.toml` per node.
//!
//! ```text
//! DIR/topology.toml        the deployment (copied)
//! DIR/tls/ca.pem, ca.key   the deployment's CA (kept if present: re-running init adds, never replaces)
//! DIR/nonce.key            the digest nonce key shared by the nodes
//! DIR/node-ids.toml        every node id the deployment has had; removed ones are never reused
//! DIR/users.toml           the users that seed the CMS's directory (copied from --users)
//! DIR/node-N/roster.toml   node N's configuration: `roster start --config DIR/node-N/roster.toml`
//! DIR/node-N/node.pem/.key node N's certificate (cluster transport and SIP over TLS)
//! DIR/node-N/data/         node N's database
//! DIR/witness-W/witness.toml, witness.pem/.key   the witness's configuration and certificate,
//!                          when the topology has a [witness]: `roster witness --config ...`
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::distr::{Alphanumeric, SampleString as _};
use roster::topology::read_topology;
use roster_net::pki::{Ca, NodeCertificate};
use roster_net::Peer;
use roster_topology::{Deployment, NodeSpec};

use node_ids::NodeIds;

pub use merge::Given;

mod merge;
mod node_ids;

/// What `roster init` was asked for.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The topology file.
    pub topology: PathBuf,
    /// Where to write.
    pub dir: PathBuf,
    /// SIP domains served; empty: `example.com` for a new node, kept for an existing one.
    pub domains: Vec<String>,
    /// The users file to copy; `None` with `no_auth`.
    pub users: Option<PathBuf>,
    /// Accept any user of the domains without authentication (benchmarks).
    pub no_auth: bool,
    /// Digest challenge order, e.g. `["SHA-256", "MD5"]`.
    pub algorithms: Vec<String>,
    /// `[node] worker_threads` of every node; `None` leaves the default (one per CPU).
    pub worker_threads: Option<usize>,
    /// `[sip] trusted_networks` of every node: sources exempt from per-source limits that may
    /// look users up without authenticating (load drivers, an SBC). Default none.
    pub trusted_networks: Vec<String>,
    /// Which settings of an existing node's configuration this run replaces (the others an
    /// operator may have edited are kept); `None`: all of them (the demo owns its files).
    pub given: Option<Given>,
}

/// The domain a new node serves when `roster init` is given none.
const DOMAIN_DEFAULT: &str = "example.com";

/// Writes every node's files; returns the path of each node's configuration, by node id.
pub fn init(options: &InitOptions) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let text = std::fs::read_to_string(&options.topology)
        .with_context(|| format!("cannot read topology file {}", options.topology.display()))?;
    let deployment = Deployment::parse(&text)
        .with_context(|| format!("in topology file {}", options.topology.display()))?;
    anyhow::ensure!(
        options.no_auth || options.users.is_some(),
        "--users FILE is needed unless --no-auth"
    );
    for node in &deployment.node {
        anyhow::ensure!(
            node.sip.is_some(),
            "node {} has no sip address in the topology (sip = \"ADDR:PORT\")",
            node.id
        );
    }
    let dir = &options.dir;
    // Before anything is written: a topology that changes a pool's routing groups or reuses a
    // removed node's id changes nothing.
    let previous = previous_deployment(dir)?;
    if let Some(previous) = &previous {
        check_groups_unchanged(dir, previous, &deployment)?;
    }
    let node_ids = NodeIds::read(dir)?
        .update(&deployment.node.iter().map(|node| node.id).collect())
        .with_context(|| format!("in topology file {}", options.topology.display()))?;
    std::fs::create_dir_all(dir.join("tls"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    node_ids.write(dir)?;
    write(&dir.join("topology.toml"), &text)?;
    let ca = load_or_create_ca(dir, &deployment.deployment.name)?;
    let nonce_path = dir.join("nonce.key");
    if !nonce_path.exists() {
        let mut key = [0u8; 32];
        rand::Fill::fill(&mut key, &mut rand::rng());
        roster::secret::write_secret(&nonce_path, format!("{}\n", hex::encode(key)).as_bytes())?;
    }
    let token_path = dir.join(ADMIN_TOKEN_FILE);
    if !token_path.exists() {
        let token = Alphanumeric.sample_string(&mut rand::rng(), 48);
        roster::secret::write_secret(&token_path, format!("{token}\n").as_bytes())?;
    }
    if let Some(users) = &options.users {
        // Not fs::copy, which would copy the source's mode: the file holds HA1 hashes.
        let text = std::fs::read(users)
            .with_context(|| format!("cannot read users file {}", users.display()))?;
        roster::secret::write_secret(&dir.join("users.toml"), &text)?;
    }
    let mut configs = Vec::new();
    for node in &deployment.node {
        let pool = deployment
            .pool_by_name(&node.pool)
            .context("the node's pool was checked with the topology")?;
        let node_dir = dir.join(format!("node-{}", node.id));
        std::fs::create_dir_all(node_dir.join("data"))
            .with_context(|| format!("cannot create {}", node_dir.display()))?;
        let sip = node.sip.context("sip address checked above")?;
        let cert_path = node_dir.join("node.pem");
        let key_path = node_dir.join("node.key");
        // Nodes added to a pool that existed before this run join it; the nodes of a new pool
        // create it.
        let existing_pool = previous
            .as_ref()
            .is_some_and(|previous| previous.pool(pool.id).is_some());
        let joins =
            existing_pool && (!cert_path.exists() || config_joins(&node_dir.join("roster.toml")));
        if !cert_path.exists() {
            let peer = Peer {
                pool: pool.id,
                node: node.id,
            };
            let certificate: NodeCertificate = ca.issue_node(peer, certificate_addresses(node))?;
            certificate.write_files(&cert_path, &key_path)?;
        }
        let config_path = node_dir.join("roster.toml");
        let fresh = node_config(options, node.id, sip, node.http, joins);
        let text = match (options.given, std::fs::read_to_string(&config_path)) {
            (Some(given), Ok(existing)) => merge::merge(&existing, &fresh, given)
                .with_context(|| format!("cannot update {}", config_path.display()))?,
            _ => fresh,
        };
        write(&config_path, &text)?;
        configs.push((node.id, config_path));
    }
    if let Some(witness) = deployment.witness.as_deref() {
        write_witness(dir, &deployment, witness, &ca)?;
    }
    Ok(configs)
}

/// The addresses a node's certificate names besides its identity: its cluster, SIP and WAN
/// IP addresses (`roster cert rotate issue` names the same).
pub(super) fn certificate_addresses(node: &NodeSpec) -> Vec<String> {
    let mut addresses = vec![node.cluster.ip().to_string()];
    addresses.extend(node.sip.map(|sip| sip.ip().to_string()));
    addresses.extend(node.wan.map(|wan| wan.ip().to_string()));
    addresses.dedup();
    addresses
}

/// The addresses the witness's certificate names besides its identity: its QUIC and HTTP IP
/// addresses (`roster cert rotate issue` names the same).
pub(super) fn witness_certificate_addresses(witness: &roster_topology::WitnessSpec) -> Vec<String> {
    let mut addresses = vec![witness.address.ip().to_string()];
    addresses.extend(witness.http.map(|http| http.ip().to_string()));
    addresses.dedup();
    addresses
}

/// The directory `roster init` writes witness `id`'s files into, under `dir`.
pub(super) fn witness_dir(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("witness-{id}"))
}

/// The witness's configuration `roster init` wrote into `dir`, if its topology has a witness.
pub fn witness_config(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let Some(deployment) = previous_deployment(dir)? else {
        return Ok(None);
    };
    Ok(deployment
        .witness
        .map(|witness| witness_dir(dir, witness.id).join("witness.toml")))
}

/// Writes the witness's certificate (once, like a node's) and its configuration.
fn write_witness(
    dir: &Path,
    deployment: &Deployment,
    witness: &roster_topology::WitnessSpec,
    ca: &Ca,
) -> anyhow::Result<PathBuf> {
    let witness_dir = witness_dir(dir, witness.id);
    std::fs::create_dir_all(&witness_dir)
        .with_context(|| format!("cannot create {}", witness_dir.display()))?;
    let cert_path = witness_dir.join("witness.pem");
    if !cert_path.exists() {
        ca.issue_witness(witness.id, witness_certificate_addresses(witness))?
            .write_files(&cert_path, &witness_dir.join("witness.key"))?;
    }
    let pool_id = |name: &str| {
        deployment
            .pool_by_name(name)
            .map(|pool| pool.id)
            .context("the witness's pools were checked with the topology")
    };
    let config = roster::witness::WitnessConfig {
        id: witness.id,
        listen: witness.address,
        pools: [pool_id(&witness.pools[0])?, pool_id(&witness.pools[1])?],
        http: witness.http,
        ca_certificate: PathBuf::from("../tls/ca.pem"),
        certificate: PathBuf::from("witness.pem"),
        private_key: PathBuf::from("witness.key"),
        topology: Some(PathBuf::from("../topology.toml")),
        names: Default::default(),
    };
    let path = witness_dir.join("witness.toml");
    write(&path, &config.to_toml())?;
    Ok(path)
}

/// The deployment an earlier run of `roster init` copied into `dir`, if any.
fn previous_deployment(dir: &Path) -> anyhow::Result<Option<Deployment>> {
    let path = dir.join("topology.toml");
    if !path.exists() {
        return Ok(None);
    }
    read_topology(&path).map(Some)
}

/// `hash(AOR) mod G` places every AOR: a pool keeps the `groups` it was created with, or
/// its bindings would be looked for in the wrong groups.
fn check_groups_unchanged(
    dir: &Path,
    previous: &Deployment,
    deployment: &Deployment,
) -> anyhow::Result<()> {
    for before in &previous.pool {
        let Some(now) = deployment.pool(before.id) else {
            continue;
        };
        anyhow::ensure!(
            before.groups == now.groups,
            "the topology says groups = {} for pool {}, but it was created with {} routing \
             groups in {}: the number of groups is fixed for a pool's life (every AOR's group \
             is hash(AOR) mod groups)",
            now.groups,
            before.name,
            before.groups,
            dir.display(),
        );
    }
    Ok(())
}

fn load_or_create_ca(dir: &Path, pool_name: &str) -> anyhow::Result<Ca> {
    let cert = dir.join("tls/ca.pem");
    let key = dir.join("tls/ca.key");
    if cert.exists() {
        return Ok(Ca::read_files(&cert, &key)?);
    }
    let ca = Ca::generate(pool_name)?;
    ca.write_files(&cert, &key)?;
    Ok(ca)
}

fn node_config(
    options: &InitOptions,
    id: u64,
    sip: SocketAddr,
    http: Option<SocketAddr>,
    joins: bool,
) -> String {
    let tls = SocketAddr::new(sip.ip(), sip.port().saturating_add(1));
    let domains: Vec<String> = if options.domains.is_empty() {
        vec![format!("\"{DOMAIN_DEFAULT}\"")]
    } else {
        options.domains.iter().map(|d| format!("\"{d}\"")).collect()
    };
    let algorithms: Vec<String> = options
        .algorithms
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let mut text = String::new();
    let _ = writeln!(text, "# Written by `roster init` for node {id}.");
    let _ = writeln!(text, "[node]\nname = \"node-{id}\"");
    if let Some(threads) = options.worker_threads {
        let _ = writeln!(text, "worker_threads = {threads}");
    }
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "[sip]\ndomains = [{}]\nudp = [\"{sip}\"]\ntcp = [\"{sip}\"]\ntls = [\"{tls}\"]\n\
         tls_certificate = \"node.pem\"\ntls_private_key = \"node.key\"",
        domains.join(", ")
    );
    if !options.trusted_networks.is_empty() {
        let trusted: Vec<String> = options
            .trusted_networks
            .iter()
            .map(|network| format!("{network:?}"))
            .collect();
        let _ = writeln!(text, "trusted_networks = [{}]", trusted.join(", "));
    }
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "[auth]\nenabled = {}\nopen_directory = {}\nnonce_key_file = \"../nonce.key\"\nalgorithms = [{}]",
        !options.no_auth,
        options.no_auth,
        algorithms.join(", ")
    );
    if options.users.is_some() {
        let _ = writeln!(text, "users_file = \"../users.toml\"");
    }
    if let Some(http) = http {
        let _ = writeln!(
            text,
            "\n[http]\nlisten = \"{http}\"\nadmin_token_file = \"../{ADMIN_TOKEN_FILE}\""
        );
    }
    let _ = writeln!(
        text,
        "\n[pool]\ntopology = \"../topology.toml\"\nnode_id = {id}\ndata_dir = \"data\"\n\
         ca_certificate = \"../tls/ca.pem\"\nnode_certificate = \"node.pem\"\nnode_private_key = \"node.key\""
    );
    if joins {
        let _ = writeln!(text, "join = true");
    }
    text
}

/// Whether the node configuration at `path` (written by an earlier `roster init`) joins.
fn config_joins(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|config| config.get("pool")?.get("join")?.as_bool())
        .unwrap_or(false)
}

/// The pool admin token, in the directory `roster init` writes: `roster node drain` and
/// `roster pool rebalance` present it.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}
