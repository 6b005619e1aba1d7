//! The `roster` commands. Each subcommand has its module; they use the daemon (the `roster`
//! library) to start a node and otherwise share only its types (configuration, topology,
//! users file, admin routes and token). Nothing in the daemon uses this tree.
//!
//! ```text
//! args          the command line (clap)
//! runtime       the async runtime of a command, and SIGINT/SIGTERM
//! start         roster start: a node in the foreground
//! demo          roster demo: a pool of three `roster start` processes, watched
//! init          roster init: CA, certificates, nonce key, admin token, each node's config
//! user          roster user add|remove|show|list|enable|disable: a pool's directory through
//!               a node's admin routes, or a users file (add --users-file)
//! user_import   roster user import FILE.csv: checked, then sent in commands, with progress
//! backup_status roster backup status: GET /api/v1/backup as tables
//! cert          roster cert ca | node
//! pool_status   roster pool status, from every node's HTTP status
//! pool_admin    roster node drain, roster pool rebalance: calls to a node's admin routes
//! node_client   the JSON client of user and backup_status (--url or --topology, failover)
//! http_client   the minimal HTTP/1.0 client of pool_status, pool_admin and node_client
//! ```

use args::{BackupCommand, Cli, Command, NodeCommand, PoolCommand};
use demo::DemoOptions;
use runtime::Runtime;

pub mod args;

mod backup_status;
mod cert;
mod demo;
mod http_client;
mod init;
mod node_client;
mod pool_admin;
mod pool_status;
mod runtime;
mod start;
mod user;
mod user_import;

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Start { config } => start::start(&config),
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
            let options = DemoOptions {
                sip,
                dir,
                no_auth,
                http,
                groups,
                trusted_networks,
            };
            runtime::serve(Runtime::MultiThread(None), |shutdown| {
                demo::run(options, shutdown)
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
            let configs = init::init(&init::InitOptions {
                topology,
                dir,
                domains,
                users,
                no_auth,
                trusted_networks,
                algorithms: vec!["SHA-256".into(), "MD5".into()],
                worker_threads: None,
            })?;
            for (id, config) in configs {
                println!("node {id}: roster start --config {}", config.display());
            }
            Ok(())
        }
        Command::Cert { command } => cert::cert(command),
        // One thread: the generator's driver and its sockets' tasks wake each other without
        // crossing threads (on a multi-threaded runtime every answer cost a futex wake-up),
        // and it leaves the other CPUs to the system it measures.
        Command::Load(args) => runtime::serve(Runtime::CurrentThread, |shutdown| async move {
            roster_load::run_command(*args, shutdown).await?;
            Ok(())
        }),
        Command::Pool {
            command: PoolCommand::Status { topology },
        } => pool_status::print(&topology),
        Command::Pool {
            command:
                PoolCommand::Rebalance {
                    topology,
                    token_file,
                    pool,
                },
        } => pool_admin::rebalance(&topology, &token_file, pool.as_deref()),
        Command::Node {
            command:
                NodeCommand::Drain {
                    topology,
                    token_file,
                    node,
                },
        } => pool_admin::drain(&topology, &token_file, node),
        Command::User { command } => user::user(command),
        Command::Backup {
            command: BackupCommand::Status { node, json, format },
        } => {
            let format = if json { args::Format::Json } else { format };
            backup_status::print(&node, format)
        }
    }
}
