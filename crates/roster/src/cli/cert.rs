//! `roster cert ca` and `roster cert node`: a cluster CA and node certificates issued by it,
//! for operators who place the files themselves; `roster cert rotate` is `ca_rotation`.

use std::path::Path;

use anyhow::Context as _;
use roster_net::pki::Ca;

use super::args::CertCommand;

/// Runs a `roster cert` subcommand.
pub fn cert(command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::Ca { dir, cluster } => {
            let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
            refuse_existing(
                &[&cert, &key],
                "a CA is never overwritten: every certificate it issued would stop being \
                 trusted. Use another --dir for a new CA, or keep this one",
            )?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let ca = Ca::generate(&cluster)?;
            ca.write_files(&cert, &key)?;
            println!("wrote {0}/ca.pem and {0}/ca.key", dir.display());
        }
        CertCommand::Node {
            dir,
            id,
            pool,
            addresses,
        } => {
            anyhow::ensure!(id > 0, "--id must be 1 or more");
            anyhow::ensure!(pool > 0, "--pool must be 1 or more");
            let ca = Ca::read_files(&dir.join("ca.pem"), &dir.join("ca.key"))?;
            let peer = roster_net::Peer { pool, node: id };
            let certificate = ca.issue_node(peer, &addresses)?;
            let cert = dir.join(format!("node-{id}.pem"));
            let key = dir.join(format!("node-{id}.key"));
            refuse_existing(
                &[&cert, &key],
                "a node's certificate is not overwritten: remove both files to issue a new one \
                 (then restart the node)",
            )?;
            certificate.write_files(&cert, &key)?;
            println!("wrote {} and {}", cert.display(), key.display());
        }
        CertCommand::Rotate { step, dir } => super::ca_rotation::rotate(step, &dir)?,
    }
    Ok(())
}

/// Fails, naming the first of `paths` that exists and saying `what_to_do`.
fn refuse_existing(paths: &[&Path], what_to_do: &str) -> anyhow::Result<()> {
    match paths.iter().find(|path| path.exists()) {
        Some(path) => anyhow::bail!("{} exists: {what_to_do}", path.display()),
        None => Ok(()),
    }
}
