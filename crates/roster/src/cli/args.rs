//! The command line as clap parses it: every subcommand and flag of `roster`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::access::{Access, Format};

/// Roster: a geo-redundant SIP registrar cluster.
#[derive(Parser)]
#[command(name = "roster", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How the log on standard error is written: `text` (colours only on a terminal) or `json`
    /// (one object per line). Default: `[node] log_format` for `roster start`, else text.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<roster::config::LogFormat>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a node from a TOML configuration file.
    Start {
        /// The node's configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Check the configuration and every file it names (certificates, keys, topology,
        /// users, tokens, data directory) without starting; exit 0 when the node could start.
        #[arg(long)]
        check_config: bool,
    },
    /// Start a ready local deployment in the foreground, with demo users u0 … u9999: two sites
    /// with a pool of three nodes each, paired (or one pool with --sites 1).
    Demo {
        /// Node 1's SIP address for UDP and TCP; TLS listens on the next port. With two sites
        /// node N listens on the address N-1 above, same ports (127.0.0.1 … 127.0.0.6); with
        /// one, node N's port is 2(N-1) above.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5060")]
        sip: SocketAddr,
        /// Directory for the generated files (credentials, users, config, certificates), each
        /// node's data and log.
        #[arg(long, value_name = "DIR", default_value = super::demo::DEMO_DIR_DEFAULT)]
        dir: PathBuf,
        /// Accept any user of the demo domain without a challenge (benchmarks only).
        #[arg(long)]
        no_auth: bool,
        /// Node 1's HTTP address for metrics, health and the status page; node N's is the
        /// address N-1 above with two sites, the port N-1 above with one (port 0: any free
        /// port for each).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Routing groups of each demo pool (1 to 1024; fewer groups cost less CPU per request
        /// on a small machine, more spread a larger pool).
        #[arg(long, value_name = "N", default_value_t = roster_topology::GROUPS_DEFAULT,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(roster_topology::GROUPS_MAX)))]
        groups: u32,
        /// A source the nodes trust (repeatable; `127.0.0.1`, `10.0.0.0/8`): exempt from the
        /// per-source limits and allowed to look users up without credentials. For
        /// benchmark drivers sending thousands of requests a second from one address.
        #[arg(long = "trusted", value_name = "NETWORK")]
        trusted_networks: Vec<String>,
        /// Sites: 2, a pool of three nodes in each, paired (each backs the other up), the CMS
        /// on the first; or 1, one pool of three nodes (what the benchmarks run).
        #[arg(long, value_name = "N", default_value_t = super::demo::SITES_DEFAULT,
              value_parser = clap::value_parser!(u8).range(1..=2))]
        sites: u8,
        /// One-way delay in milliseconds of everything between the two sites (QUIC), through
        /// a UDP relay on loopback (0 to 10000; 0: direct; default 20 with two sites, two
        /// data centres in one continent).
        #[arg(long = "wan-latency", value_name = "MS",
              value_parser = clap::value_parser!(u64).range(0..=super::demo::WAN_LATENCY_MS_MAX))]
        wan_latency_ms: Option<u64>,
    },
    /// Manage the users file.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Create a deployment from a topology file: the CA, node certificates, a shared nonce
    /// key and each node's configuration (start each with `roster start --config`). Run again
    /// after changing the topology: new nodes get their files, existing nodes' configurations
    /// follow the topology and keep every other setting an operator made.
    Init {
        /// The deployment's topology (TOML: [deployment], [[site]], [[pool]], [[pair]], [[node]];
        /// see README).
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        /// Where to write the pool's files.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The users file that seeds the directory (see `roster user add`); required unless
        /// --no-auth. An entry's `pool` names its home pool (default: the CMS's pool).
        #[arg(long, value_name = "FILE")]
        users: Option<PathBuf>,
        /// SIP domain served (repeat for several). Default: example.com for new nodes; run
        /// again without it, existing nodes keep theirs.
        #[arg(long = "domain", value_name = "DOMAIN")]
        domains: Vec<String>,
        /// Accept any user of the domains without authentication (benchmarks only).
        #[arg(long)]
        no_auth: bool,
        /// A source the nodes trust (repeatable; `10.0.0.0/8`): exempt from the per-source
        /// limits and allowed to look users up without credentials (an SBC, a load driver).
        #[arg(long = "trusted", value_name = "NETWORK")]
        trusted_networks: Vec<String>,
    },
    /// Cluster certificates: a CA, and node certificates issued by it.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Pool operations.
    Pool {
        #[command(subcommand)]
        command: PoolCommand,
    },
    /// The CMS: `roster cms failover` when the pool holding it is lost.
    Cms {
        #[command(subcommand)]
        command: CmsOperation,
    },
    /// Node operations in a pool.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Load any SIP registrar: N users × M endpoints over UDP, TCP or TLS, with digest,
    /// refreshes and a mix of operations at an open-loop rate; latency table, JSON report,
    /// and `--verify` that every acknowledged registration is still there.
    Load(Box<roster_load::LoadArgs>),
}

#[derive(Subcommand)]
pub enum CertCommand {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca.key (never overwritten).
    Ca {
        /// Where to write.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The cluster's name, in the CA's subject.
        #[arg(long, default_value = "roster")]
        cluster: String,
    },
    /// Issue the certificate of node ID of pool POOL: DIR/node-ID.pem and DIR/node-ID.key, from
    /// DIR/ca.pem/.key. It names node-ID.pool-POOL.roster.invalid.
    Node {
        /// The directory holding the CA; the node's files are written there too.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The node id.
        #[arg(long)]
        id: u64,
        /// The id of the node's pool (`[pool] id` of its topology); nodes trust their own pool.
        #[arg(long, value_name = "ID")]
        pool: roster_topology::PoolId,
        /// An address (IP or DNS name) the node is reached at; repeat for several.
        #[arg(long = "address", value_name = "ADDR")]
        addresses: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum PoolCommand {
    /// Each pool's nodes up or down, groups without a leader or quorum, registrations, owner
    /// and epoch, and each group's leader, term, commit index and replicas.
    Status {
        #[command(flatten)]
        access: Access,
        /// Only this pool (by name).
        #[arg(long, value_name = "NAME")]
        pool: Option<String>,
        /// `table` (default) or `json`.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Spread replicas and leaders over every node of the topology (after adding a node to
    /// it and starting the node).
    Rebalance {
        #[command(flatten)]
        access: Access,
        /// The admin token file `roster init` wrote (admin.token).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// The pool to rebalance, by name (default: the --url node's pool, or the only one).
        #[arg(long, value_name = "NAME")]
        pool: Option<String>,
        /// `table` (default: a sentence) or `json`.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Move pool POOL's users to its partner pool, which serves them from its backup copies.
    /// Planned (POOL answers): POOL stops taking writes, the partner catches up, nothing is
    /// lost. With --disaster (POOL is lost): the partner serves what its copies hold.
    Failover {
        /// The pool whose users move, by name.
        #[arg(value_name = "POOL")]
        pool: String,
        /// POOL is lost: fail over from what the copies hold (refused while POOL answers).
        #[arg(long)]
        disaster: bool,
        #[command(flatten)]
        access: Access,
        /// The admin token file `roster init` wrote (admin.token).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
    },
    /// Give pool POOL's users back to it after a failover, once it is back and caught up; its
    /// users' writes pause for the final catch-up only (503, Retry-After: 1).
    Failback {
        /// The pool that takes its users back, by name.
        #[arg(value_name = "POOL")]
        pool: String,
        #[command(flatten)]
        access: Access,
        /// The admin token file `roster init` wrote (admin.token).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum CmsOperation {
    /// Promote the CMS's backup copy in the partner pool when the CMS's pool is lost (a
    /// disaster failover of that pool needs it first).
    Failover {
        #[command(flatten)]
        access: Access,
        /// The admin token file `roster init` wrote (admin.token).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Every node of the deployment: up or down, version, replicas held, groups led, bindings,
    /// apply lag; the problems seen and replication per direction.
    Status {
        #[command(flatten)]
        access: Access,
        /// `table` (default) or `json` (the node's /api/v1/deployment).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Hand every leadership of a node to the other nodes of its pool (before stopping it for
    /// an upgrade); waits until it leads no group.
    Handover {
        #[command(flatten)]
        on: NodeAdmin,
    },
    /// Move every replica off a node and its leaders to the others; then the node can be
    /// stopped and removed from the topology. Never give a removed node's id to a new node.
    Drain {
        #[command(flatten)]
        on: NodeAdmin,
    },
}

/// What an admin command on one node needs: where the deployment is, the token, the node.
#[derive(clap::Args)]
pub struct NodeAdmin {
    #[command(flatten)]
    pub access: Access,
    /// The admin token file `roster init` wrote (admin.token).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// The node.
    #[arg(long, value_name = "ID")]
    pub node: u64,
    /// `table` (default: a sentence) or `json`.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user to a users file (created if missing); the password is read from standard
    /// input and only its HA1 hashes are stored.
    Add {
        /// The users file.
        #[arg(long, value_name = "FILE")]
        users_file: PathBuf,
        /// The address of record, e.g. sip:alice@example.com.
        #[arg(long)]
        aor: String,
        /// Digest user name (default: the AOR's user part).
        #[arg(long)]
        username: Option<String>,
        /// Digest realm (default: the AOR's domain).
        #[arg(long)]
        realm: Option<String>,
    },
}
