//! `roster start --check-config`: reads and checks everything a node reads when it starts
//! (certificates, keys, the topology and the node's place in it, the users file, the nonce key,
//! the admin token, the data directory), without binding an address or opening the database,
//! so that a deployment can check each rendered configuration before it restarts a node.

use std::path::Path;

use anyhow::Context as _;

use super::{pool, read_admin_token, service};
use crate::config::{Config, PoolConfig};
use crate::diagnose::{self, Protocol};
use crate::store::MemoryStore;
use crate::topology::read_topology;

/// Checks `config` and every file it names; returns one line per thing checked (notes start
/// with `note:`), or the first problem, named.
pub fn check(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut checked = vec![format!(
        "configuration of node {:?}: domains {}",
        config.node_name,
        config.domains.join(", ")
    )];
    if read_admin_token(config)?.is_some() {
        checked.push("admin token readable".into());
    }
    if let (Some((certificate, key)), false) = (&config.tls_files, config.tls.is_empty()) {
        crate::sip::tls::acceptor(certificate, key)
            .with_context(|| format!("TLS certificate {}", certificate.display()))?;
        checked.push(format!("TLS certificate {}", certificate.display()));
    }
    // The request path as `roster start` builds it: auth settings, nonce key, a single node's
    // users file.
    service::build(config, MemoryStore::new(config.policy.clone()))?;
    if config.auth.is_some() {
        checked.push("digest authentication settings and nonce key".into());
    }
    match &config.pool {
        None => {
            if let Some(users) = &config.users_file {
                checked.push(format!("users file {}", users.display()));
            }
        }
        Some(pool) => check_pool(config, pool, &mut checked)?,
    }
    checked.extend(listen_notes(config));
    Ok(checked)
}

fn check_pool(config: &Config, pool: &PoolConfig, checked: &mut Vec<String>) -> anyhow::Result<()> {
    let deployment = read_topology(&pool.topology)?;
    checked.push(format!("topology {}", pool.topology.display()));
    let identity = pool::identity(pool, &deployment)?;
    let pool_name = deployment
        .pool(identity.pool)
        .map_or_else(String::new, |spec| spec.name.clone());
    checked.push(format!(
        "certificate {} names node {} of pool {pool_name} (id {})",
        pool.node_certificate.display(),
        pool.node_id,
        identity.pool
    ));
    // What the node's peers will check in the handshake: a certificate from a CA they trust
    // (the same file on every node; during a CA rotation it names the old CA and the new one).
    let trusted = roster_net::pki::split_certificates(&identity.ca)
        .with_context(|| format!("CA certificates {}", pool.ca_certificate.display()))?;
    roster_net::pki::verify_node_certificate(&identity.ca, &identity.certificate.cert_pem)
        .with_context(|| {
            format!(
                "certificate {} is not signed by a CA in {}: a node whose certificate its \
                 peers do not trust cannot join them",
                pool.node_certificate.display(),
                pool.ca_certificate.display()
            )
        })?;
    checked.push(format!(
        "certificate {} chains to a CA in {} ({} CA certificate{})",
        pool.node_certificate.display(),
        pool.ca_certificate.display(),
        trusted.len(),
        if trusted.len() == 1 { "" } else { "s" }
    ));
    if let Some(users) = &config.users_file {
        let records = crate::users::records(users, &deployment, deployment.cms_pool())?;
        checked.push(format!(
            "users file {} ({} users)",
            users.display(),
            records.len()
        ));
    }
    checked.push(check_data_dir(&pool.data_dir)?);
    Ok(())
}

/// The data directory exists and is a writable directory, or can be created; a process holding
/// it is a note (the node itself, when the check runs beside it).
fn check_data_dir(dir: &Path) -> anyhow::Result<String> {
    if !dir.exists() {
        let parent = dir.parent().unwrap_or(Path::new("."));
        anyhow::ensure!(
            parent.is_dir(),
            "data directory {} does not exist and neither does its parent: create it (owned by \
             the node's user)",
            dir.display()
        );
        return Ok(format!(
            "data directory {} (created at the first start)",
            dir.display()
        ));
    }
    anyhow::ensure!(
        dir.is_dir(),
        "data directory {} is not a directory",
        dir.display()
    );
    let probe = dir.join(".roster-check-config");
    std::fs::write(&probe, b"")
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(match diagnose::lock_holder(dir) {
        Some(process) => format!(
            "note: data directory {} is in use by {process} (a running node: stop it before \
             starting another)",
            dir.display()
        ),
        None => format!("data directory {}", dir.display()),
    })
}

/// Listen addresses another process holds now (the running node itself, during an upgrade).
fn listen_notes(config: &Config) -> Vec<String> {
    let addresses = config
        .udp
        .iter()
        .map(|address| (*address, Protocol::Udp, "SIP UDP"))
        .chain(config.tcp.iter().map(|a| (*a, Protocol::Tcp, "SIP TCP")))
        .chain(config.tls.iter().map(|a| (*a, Protocol::Tcp, "SIP TLS")))
        .chain(config.http.map(|a| (a, Protocol::Tcp, "HTTP")));
    addresses
        .filter_map(|(address, protocol, what)| {
            diagnose::port_holder(address, protocol)
                .map(|process| format!("note: {what} {address} is in use by {process}"))
        })
        .collect()
}
