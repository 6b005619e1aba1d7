//! `roster`: the Roster daemon and its commands.

use std::io::{BufRead as _, IsTerminal as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use roster::config::Config;
use roster::demo::DemoOptions;
use roster::users::{UserEntry, UsersFile};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: under load, allocation and free were about a sixth of
/// a pool node's CPU with glibc (perf), most of it in `_int_malloc`, `free` and
/// `malloc_consolidate`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Roster: a geo-redundant SIP registrar cluster.
#[derive(Parser)]
#[command(name = "roster", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from a TOML configuration file.
    Start {
        /// The node's configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Start a ready local deployment in the foreground, with demo users u0 … u9999.
    Demo {
        /// SIP address for UDP and TCP; TLS listens on the next port.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5060")]
        sip: SocketAddr,
        /// Directory for the generated files (credentials, users, config, certificates).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Accept any user of the demo domain without a challenge (benchmarks only).
        #[arg(long)]
        no_auth: bool,
        /// HTTP address for metrics, health and the status page.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Routing groups of the demo pool (1 to 1024; fewer groups cost less CPU per request
        /// on a small machine, more spread a larger pool).
        #[arg(long, value_name = "N", default_value_t = roster_pool::topology::GROUPS_DEFAULT,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(roster_pool::topology::GROUPS_MAX)))]
        groups: u32,
        /// A source the nodes trust (repeatable; `127.0.0.1`, `10.0.0.0/8`): exempt from the
        /// per-source limits and allowed to look users up without credentials. For
        /// benchmark drivers sending thousands of requests a second from one address.
        #[arg(long = "trusted", value_name = "NETWORK")]
        trusted_networks: Vec<String>,
    },
    /// Manage the users file.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Create a pool from a topology file: the cluster CA, node certificates, a shared nonce
    /// key and each node's configuration (start each with `roster start --config`).
    Init {
        /// The pool's topology (TOML: [pool] name, groups; [[node]] id, cluster, sip, http).
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        /// Where to write the pool's files.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The users file (see `roster user add`); required unless --no-auth.
        #[arg(long, value_name = "FILE")]
        users: Option<PathBuf>,
        /// SIP domain served (repeat for several).
        #[arg(long = "domain", value_name = "DOMAIN", default_value = "example.com")]
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
enum CertCommand {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca.key (never overwritten).
    Ca {
        /// Where to write.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The cluster's name, in the CA's subject.
        #[arg(long, default_value = "roster")]
        cluster: String,
    },
    /// Issue node ID's certificate: DIR/node-ID.pem and DIR/node-ID.key, from DIR/ca.pem/.key.
    Node {
        /// The directory holding the CA; the node's files are written there too.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The node id.
        #[arg(long)]
        id: u64,
        /// An address (IP or DNS name) the node is reached at; repeat for several.
        #[arg(long = "address", value_name = "ADDR")]
        addresses: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PoolCommand {
    /// Each node up or down, and each routing group's leader, term, commit and applied index
    /// and replicas, from the nodes' HTTP status.
    Status {
        /// The pool's topology (nodes need their `http` address).
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
    },
    /// Spread replicas and leaders over every node of the topology (after adding a node to
    /// it and starting the node).
    Rebalance {
        /// The pool's topology (nodes need their `http` address).
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        /// The admin token file `roster init` wrote (admin.token).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Move every replica off a node and its leaders to the others; then the node can be
    /// stopped and removed from the topology. Never give a removed node's id to a new node.
    Drain {
        /// The pool's topology (nodes need their `http` address).
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        /// The admin token file `roster init` wrote (admin.token).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// The node to drain.
        #[arg(long, value_name = "ID")]
        node: u64,
    },
}

#[derive(Subcommand)]
enum UserCommand {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("roster: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Start { config } => {
            let config = Config::load(&config)?;
            serve(
                Runtime::MultiThread(config.worker_threads),
                |shutdown| async move {
                    roster::node::run_any(config, shutdown, |listening| {
                        for (transport, address) in &listening.sip {
                            println!("roster: sip {} {address}", transport.as_str());
                        }
                        if let Some(address) = listening.http {
                            println!("roster: http {address}");
                        }
                        println!("roster: ready");
                    })
                    .await
                },
            )
        }
        Command::Demo {
            sip,
            dir,
            no_auth,
            http,
            groups,
            trusted_networks,
        } => {
            roster_registrar::Networks::parse(&trusted_networks)
                .map_err(|error| anyhow::anyhow!("--trusted: {error}"))?;
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("roster-demo"));
            let options = DemoOptions {
                sip,
                dir,
                no_auth,
                http,
                groups,
                trusted_networks,
            };
            serve(Runtime::MultiThread(None), |shutdown| {
                roster::demo::run(options, shutdown)
            })
        }
        Command::Init {
            topology,
            dir,
            users,
            domains,
            no_auth,
            trusted_networks,
        } => {
            roster_registrar::Networks::parse(&trusted_networks)
                .map_err(|error| anyhow::anyhow!("--trusted: {error}"))?;
            let configs = roster::init::init(&roster::init::InitOptions {
                topology,
                dir,
                domains,
                users,
                no_auth,
                algorithms: vec!["SHA-256".into(), "MD5".into()],
                worker_threads: None,
                trusted_networks,
            })?;
            for (id, config) in configs {
                println!("node {id}: roster start --config {}", config.display());
            }
            Ok(())
        }
        Command::Cert { command } => cert(command),
        // One thread: the generator's driver and its sockets' tasks wake each other without
        // crossing threads (on a multi-threaded runtime every answer cost a futex wake-up),
        // and it leaves the other CPUs to the system it measures.
        Command::Load(args) => serve(Runtime::CurrentThread, |shutdown| async move {
            roster_load::run_command(*args, shutdown).await?;
            Ok(())
        }),
        Command::Pool {
            command: PoolCommand::Status { topology },
        } => {
            let topology = roster::pool::read_topology(&topology)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let report = runtime.block_on(roster::status::pool_status(&topology));
            print!("{report}");
            Ok(())
        }
        Command::Pool {
            command:
                PoolCommand::Rebalance {
                    topology,
                    token_file,
                },
        } => admin_call(&topology, &token_file, None, "/admin/rebalance"),
        Command::Node {
            command:
                NodeCommand::Drain {
                    topology,
                    token_file,
                    node,
                },
        } => admin_call(
            &topology,
            &token_file,
            Some(node),
            &format!("/admin/drain/{node}"),
        ),
        Command::User { command } => match command {
            UserCommand::Add {
                users_file,
                aor,
                username,
                realm,
            } => add_user(users_file, aor, username, realm),
        },
    }
}

/// The async runtime a long-running command runs on.
enum Runtime {
    /// Worker threads: the given number, default one per CPU.
    MultiThread(Option<usize>),
    /// Everything on the calling thread.
    CurrentThread,
}

/// Runs `job` on `runtime` until it ends or a termination signal arrives.
fn serve<F, Fut>(runtime: Runtime, job: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut builder = match runtime {
        Runtime::MultiThread(worker_threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = worker_threads {
                builder.worker_threads(threads);
            }
            builder
        }
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal_shutdown = shutdown.clone();
        tokio::spawn(async move {
            roster::node::termination_signal().await;
            signal_shutdown.cancel();
        });
        job(shutdown).await
    })
}

/// Runs a pool admin operation on a node of `topology` (not `avoid`) and prints its answer.
fn admin_call(
    topology: &std::path::Path,
    token_file: &std::path::Path,
    avoid: Option<u64>,
    path: &str,
) -> anyhow::Result<()> {
    let topology = roster::pool::read_topology(topology)?;
    let token = roster::admin::read_token(token_file)?;
    if let Some(node) = avoid {
        anyhow::ensure!(
            topology.node.iter().any(|n| n.id == node),
            "node {node} is not in the topology"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answer = runtime.block_on(roster::admin::call(&topology, avoid, path, &token))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

fn cert(command: CertCommand) -> anyhow::Result<()> {
    use roster_net::pki::Ca;
    match command {
        CertCommand::Ca { dir, cluster } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let ca = Ca::generate(&cluster)?;
            ca.write_files(&dir.join("ca.pem"), &dir.join("ca.key"))?;
            println!("wrote {0}/ca.pem and {0}/ca.key", dir.display());
        }
        CertCommand::Node { dir, id, addresses } => {
            anyhow::ensure!(id > 0, "--id must be 1 or more");
            let ca = Ca::read_files(&dir.join("ca.pem"), &dir.join("ca.key"))?;
            let certificate = ca.issue_node(id, &addresses)?;
            let cert = dir.join(format!("node-{id}.pem"));
            let key = dir.join(format!("node-{id}.key"));
            certificate.write_files(&cert, &key)?;
            println!("wrote {} and {}", cert.display(), key.display());
        }
    }
    Ok(())
}

fn add_user(
    users_file: PathBuf,
    aor: String,
    username: Option<String>,
    realm: Option<String>,
) -> anyhow::Result<()> {
    let uri = roster_sip::Uri::parse(&aor).with_context(|| format!("invalid --aor {aor:?}"))?;
    let user_part = uri
        .user
        .clone()
        .with_context(|| format!("--aor {aor:?} has no user part"))?;
    let username = username.unwrap_or(user_part);
    let realm = realm.unwrap_or_else(|| uri.host.to_ascii_lowercase());
    let mut file: UsersFile = match std::fs::read_to_string(&users_file) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("invalid users file {}", users_file.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => UsersFile::default(),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", users_file.display()))
        }
    };
    if std::io::stdin().is_terminal() {
        eprintln!("password for {username} (one line):");
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "empty password on standard input");
    file.user.push(UserEntry::from_password(
        &uri.aor(),
        &username,
        &realm,
        password,
    ));
    // Check the whole file (duplicates included) before writing it.
    roster::users::directory(toml::from_str(&toml::to_string(&file)?)?)
        .map_err(|message| anyhow::anyhow!("{message}"))?;
    roster::secret::write_secret(&users_file, toml::to_string(&file)?.as_bytes())?;
    println!(
        "added {} (digest user {username}, realm {realm})",
        uri.aor()
    );
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // openraft narrates every election and heartbeat at info; its warnings are enough.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
