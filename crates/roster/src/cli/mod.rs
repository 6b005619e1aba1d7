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
//! logging       the log on standard error: text without colours off a terminal, or JSON
//! user          roster user add|remove|show|list|enable|disable: a pool's directory through
//!               a node's admin routes, or a users file (add --users-file)
//! user_import   roster user import FILE.csv: checked, then sent in commands, with progress
//! backup_status roster backup status: GET /api/v1/backup as tables
//! cert          roster cert ca | node
//! ca_rotation   roster cert rotate begin | issue | finish: a new CA without an outage
//! access        --url or --topology: how a command reaches the deployment's overview
//! status        roster node status, roster pool status: tables or JSON from the overview
//! pool_admin    roster node drain | handover, roster pool rebalance: calls to a node's admin
//!               routes
//! failover      roster pool failover | failback, roster cms failover: step by step
//! node_client   the JSON client of user and backup_status (--url or --topology)
//! witness       roster witness --config FILE: the witness in the foreground; roster witness
//!               status --http ADDR
//! ```

use args::{BackupCommand, Cli, CmsOperation, Command, NodeCommand, PoolCommand, WitnessCommand};
use demo::DemoOptions;
use runtime::Runtime;

pub mod args;

mod access;
mod backup_status;
mod ca_rotation;
mod cert;
mod demo;
mod failover;
mod init;
mod logging;
mod node_client;
mod pool_admin;
mod runtime;
mod start;
mod status;
mod user;
mod user_import;
mod witness;

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        command,
        log_format,
    } = cli;
    // `roster start` knows its format once it has read its configuration.
    if !matches!(command, Command::Start { .. }) {
        logging::init(log_format.unwrap_or_default());
    }
    match command {
        Command::Start {
            config,
            check_config,
        } => start::start(&config, log_format, check_config),
        Command::Demo {
            sip,
            dir,
            no_auth,
            http,
            groups,
            trusted_networks,
            sites,
            wan_latency_ms,
            witness,
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
                sites,
                witness,
                wan_latency: std::time::Duration::from_millis(wan_latency_ms.unwrap_or(
                    match sites {
                        1 => 0,
                        _ => demo::WAN_LATENCY_MS_DEFAULT,
                    },
                )),
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
            let (domains_given, trusted_given) = (domains.clone(), trusted_networks.clone());
            let dir_given = dir.clone();
            let configs = init::init(&init::InitOptions {
                topology,
                dir,
                domains,
                users,
                no_auth,
                trusted_networks,
                algorithms: vec!["SHA-256".into(), "MD5".into()],
                worker_threads: None,
                given: Some(init::Given {
                    domains: !domains_given.is_empty(),
                    trusted_networks: !trusted_given.is_empty(),
                    no_auth,
                }),
            })?;
            for (id, config) in configs {
                println!("node {id}: roster start --config {}", config.display());
            }
            if let Some(witness) = init::witness_config(&dir_given)? {
                println!("witness: roster witness --config {}", witness.display());
            }
            Ok(())
        }
        Command::Cert { command } => cert::cert(command),
        Command::Witness {
            config: Some(config),
            command: None,
        } => witness::run(&config),
        Command::Witness {
            command: Some(WitnessCommand::Status { http, format }),
            ..
        } => witness::status(http, format),
        Command::Witness { .. } => Err(anyhow::anyhow!(
            "roster witness needs --config FILE (to run one) or `status --http ADDR`"
        )),
        // One thread: the generator's driver and its sockets' tasks wake each other without
        // crossing threads (on a multi-threaded runtime every answer cost a futex wake-up),
        // and it leaves the other CPUs to the system it measures.
        Command::Load(args) => runtime::serve(Runtime::CurrentThread, |shutdown| async move {
            roster_load::run_command(*args, shutdown).await?;
            Ok(())
        }),
        Command::Pool {
            command:
                PoolCommand::Status {
                    access,
                    pool,
                    format,
                },
        } => status::pool_status(&access, pool.as_deref(), format),
        Command::Pool {
            command:
                PoolCommand::Rebalance {
                    access,
                    token_file,
                    pool,
                    format,
                },
        } => pool_admin::rebalance(&access, &token_file, pool.as_deref(), format),
        Command::Pool {
            command:
                PoolCommand::Failover {
                    pool,
                    disaster,
                    access,
                    token_file,
                },
        } => failover::fail_over(&access, &token_file, &pool, disaster),
        Command::Pool {
            command:
                PoolCommand::Failback {
                    pool,
                    access,
                    token_file,
                },
        } => failover::fail_back(&access, &token_file, &pool),
        Command::Cms {
            command: CmsOperation::Failover { access, token_file },
        } => failover::fail_over_cms(&access, &token_file),
        Command::Cms {
            command: CmsOperation::Failback { access, token_file },
        } => failover::fail_back_cms(&access, &token_file),
        Command::Node {
            command: NodeCommand::Status { access, format },
        } => status::node_status(&access, format),
        Command::Node {
            command: NodeCommand::Handover { on },
        } => pool_admin::handover(&on),
        Command::Node {
            command: NodeCommand::Drain { on },
        } => pool_admin::drain(&on),
        Command::User { command } => user::user(command),
        Command::Backup {
            command: BackupCommand::Status { node, json, format },
        } => {
            let format = if json { args::Format::Json } else { format };
            backup_status::print(&node, format)
        }
    }
}
