//! The command line as clap parses it: every subcommand and flag of `roster`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::access::Access;
pub use super::access::Format;

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
        /// Also run a witness in a third site (dc3), on the address after the nodes'
        /// (127.0.0.7 by default): a pool whose site is lost is then failed over by its
        /// partner by itself. Two sites only.
        #[arg(long)]
        witness: bool,
    },
    /// Users: in a pool's directory (the CMS, through any node: --url or --topology), or in
    /// a users file (a single node's `auth.users_file`, or the file `roster init --users`
    /// seeds a new pool's directory from).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The backup service between paired pools.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
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
    /// The CMS: `roster cms failover` when the pool holding it is lost, `roster cms failback`
    /// to bring it home.
    Cms {
        #[command(subcommand)]
        command: CmsOperation,
    },
    /// Node operations in a pool.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// The witness of a pair of pools, in a third site: `roster witness --config FILE` runs it
    /// (`roster init` writes FILE when the topology has a [witness]); with it, a pool fails a
    /// lost partner over by itself. `roster witness status --http ADDR` shows what it heard.
    #[command(args_conflicts_with_subcommands = true)]
    Witness {
        /// The witness's configuration (DIR/witness-ID/witness.toml from `roster init`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: Option<WitnessCommand>,
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
    /// Replace the deployment's CA in a `roster init` directory without an outage, in three
    /// steps, each rolled out to the nodes one at a time before the next: `begin` (a new CA;
    /// tls/ca.pem trusts both), `issue` (the new CA signs; every node's certificate re-issued),
    /// `finish` (tls/ca.pem trusts the new CA alone). deploy/runbooks/certificate-rotation.md.
    Rotate {
        /// The step to run.
        #[arg(value_enum)]
        step: RotationStep,
        /// The directory `roster init` wrote (tls/ca.pem, tls/ca.key, node-N/).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// A step of `roster cert rotate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RotationStep {
    /// Make the next CA; tls/ca.pem trusts the current one and the next.
    Begin,
    /// Sign with the next CA from now on and re-issue every node's certificate with it.
    Issue,
    /// Trust the new CA alone; delete the old CA's key.
    Finish,
}

#[derive(Subcommand)]
pub enum PoolCommand {
    /// Each pool's nodes up or down and their witness (last heard, lease left, fenced),
    /// groups without a leader or quorum, registrations, owner and epoch, and each group's
    /// leader, term, commit index and replicas.
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
pub enum WitnessCommand {
    /// What a running witness has heard of each pool it watches, and the ownership it relays.
    Status {
        /// The witness's HTTP address (`http` in its witness.toml).
        #[arg(long, value_name = "ADDR")]
        http: std::net::SocketAddr,
        /// `table` (default) or `json`.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
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
    /// Bring the CMS home after a CMS failover, once its pool has returned and its copy there
    /// has caught up (`roster backup status`): CMS writes pause only for the final catch-up.
    Failback {
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
    /// apply lag, witness lease; the problems seen and replication per direction.
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

/// Which node a command asks: `--url` (repeatable, tried in order) or any node of
/// `--topology` that answers.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NodeTarget {
    /// A node's HTTP address, `http://HOST:PORT` (repeat to name fallbacks); no topology file
    /// needed.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// The deployment's topology: its nodes' `http` addresses are tried in turn.
    #[arg(long, value_name = "FILE", conflicts_with = "urls")]
    pub topology: Option<PathBuf>,
}

/// A node of the pool and the admin token, for the directory commands.
#[derive(clap::Args, Clone, Debug)]
pub struct AdminTarget {
    #[command(flatten)]
    pub node: NodeTarget,
    /// The admin token file `roster init` wrote (admin.token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// `table` (default: tables and sentences) or `json`.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user (or with --replace change one). The password is read from standard input
    /// (one line); only its HA1 hashes (MD5 and SHA-256) are computed and stored, never the
    /// password.
    ///
    /// With --url or --topology the user goes into the pool's directory (the CMS) through a
    /// node, and every node of both paired pools knows it within a second. With --users-file
    /// it is written to a users file instead: a single node's `auth.users_file` (a node
    /// without `[pool]`, read at its start), or the file `roster init --users` seeds a new
    /// pool's directory from.
    Add {
        /// The users file to write (created if missing), instead of a pool's directory.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["urls", "topology", "token_file", "bindings_max", "replace"])]
        users_file: Option<PathBuf>,
        #[command(flatten)]
        target: AdminTarget,
        /// The address of record, e.g. sip:alice@example.com.
        #[arg(long)]
        aor: String,
        /// Digest user name (default: the AOR's user part).
        #[arg(long)]
        username: Option<String>,
        /// Digest realm the hashes are computed in (default: the realm the node challenges in;
        /// with --users-file, the AOR's domain).
        #[arg(long)]
        realm: Option<String>,
        /// The user's home pool, by name (default: the CMS's pool).
        #[arg(long, value_name = "NAME")]
        pool: Option<String>,
        /// Bindings the user may hold at once (default: the registrar's policy; a lower value
        /// of either wins).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        bindings_max: Option<u32>,
        /// Replace the user if the AOR exists (a password change).
        #[arg(long)]
        replace: bool,
    },
    /// Remove users from the pool's directory: they can no longer register.
    Remove {
        #[command(flatten)]
        target: AdminTarget,
        /// An address of record (repeat for several).
        #[arg(long = "aor", value_name = "AOR", required = true)]
        aors: Vec<String>,
        /// Succeed even when a user is not in the directory (like `rm -f`).
        #[arg(long)]
        missing_ok: bool,
    },
    /// Show one user of the pool's directory (never its hashes: which algorithms it has).
    Show {
        #[command(flatten)]
        target: AdminTarget,
        /// The address of record.
        #[arg(long)]
        aor: String,
    },
    /// List users of the pool's directory by AOR, a page at a time.
    List {
        #[command(flatten)]
        target: AdminTarget,
        /// Only users homed on this pool, by name.
        #[arg(long, value_name = "NAME")]
        pool: Option<String>,
        /// Skip this many users first.
        #[arg(long, value_name = "N", default_value_t = 0)]
        offset: usize,
        /// Users to list.
        #[arg(long, value_name = "N", default_value_t = 100, conflicts_with = "all")]
        limit: usize,
        /// List every user.
        #[arg(long)]
        all: bool,
    },
    /// Let a user of the pool's directory register again.
    Enable {
        #[command(flatten)]
        target: AdminTarget,
        /// The address of record.
        #[arg(long)]
        aor: String,
    },
    /// Stop a user of the pool's directory from registering (the nodes no longer know it)
    /// until enabled again.
    Disable {
        #[command(flatten)]
        target: AdminTarget,
        /// The address of record.
        #[arg(long)]
        aor: String,
    },
    /// Import users from a CSV file into the pool's directory, checking every line before
    /// anything is sent.
    ///
    /// The first line names the columns, in any order: `aor` (required); `password` (hashed
    /// here with the realm, never sent) or `ha1_md5` and/or `ha1_sha256` (hex, computed in the
    /// realm the nodes challenge in); `username` (default: the AOR's user part); `pool` (home
    /// pool by name, default: the CMS's pool); `bindings_max` (default: the policy's);
    /// `enabled` (true/false, default true). Fields are separated by commas; a field with a
    /// comma or a quote is quoted ("a ""b"""). Blank lines are skipped.
    Import {
        #[command(flatten)]
        target: AdminTarget,
        /// The CSV file.
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
        /// Digest realm passwords are hashed in (default: the realm the node challenges in).
        #[arg(long)]
        realm: Option<String>,
        /// Replace users whose AOR exists (without it, any existing AOR stops the import
        /// before anything is sent).
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Every backup stream of both directions between two paired pools, as a node of either
    /// sees it (a table per direction and its largest lag); exit 0 once printed.
    Status {
        #[command(flatten)]
        node: NodeTarget,
        /// Print the JSON document (`GET /api/v1/backup`) instead of tables.
        #[arg(long)]
        json: bool,
        /// Output: human (default) or json (the same as --json).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}
