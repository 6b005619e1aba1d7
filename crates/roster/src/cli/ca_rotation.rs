//! `roster cert rotate begin|issue|finish`: replaces the deployment's CA in a `roster init`
//! directory in three steps, each rolled out to the nodes one at a time (the Ansible
//! `upgrade.yml`), so that every pair of nodes trusts each other at every moment:
//!
//! ```text
//! step    tls/ca.pem       tls/ca.key   node certificates   then
//! begin   old + new        old          old                 every node trusts both CAs
//! issue   old + new        new          new                 every node presents a new one
//! finish  new              new          new                 the old CA is trusted no more
//! ```
//!
//! The witness (`witness-W/`, when the topology has a `[witness]`) is one more holder of a
//! certificate and of `tls/ca.pem` (its `witness.toml` names `../tls/ca.pem`): `issue`
//! re-issues its certificate with the node certificates, `finish` refuses while it is not from
//! the new CA, and every step's roll-out restarts it too.
//!
//! Where a rotation stands is read from the files: `tls/ca-next.key` (and `ca-next.pem`) exist
//! between `begin` and `issue`, `tls/ca-previous.key` between `issue` and `finish`. Each step
//! refuses to run out of turn, naming the step that is due.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use roster::topology::read_topology;
use roster_net::pki::{self, Ca, NodeCertificate};
use roster_net::Peer;
use roster_topology::{Deployment, WITNESS_POOL};

use super::args::RotationStep;
use super::init::{certificate_addresses, witness_certificate_addresses, witness_dir};

/// Runs one step of a CA rotation on the `roster init` directory `dir`.
pub fn rotate(step: RotationStep, dir: &Path) -> anyhow::Result<()> {
    let files = Files::of(dir);
    let phase = files.phase()?;
    match (step, phase) {
        (RotationStep::Begin, Phase::Steady) => begin(dir, &files),
        (RotationStep::Issue, Phase::Begun) => issue(dir, &files),
        (RotationStep::Finish, Phase::Issued) => finish(dir, &files),
        (step, phase) => anyhow::bail!(
            "cannot {} now: {}",
            step.verb(),
            phase.describe(&files.ca_pem)
        ),
    }
}

/// The files of a rotation in a `roster init` directory.
struct Files {
    /// What the nodes trust (copied to every node).
    ca_pem: PathBuf,
    /// The key that signs (stays on the control machine).
    ca_key: PathBuf,
    /// The next CA, from `begin` to `issue`.
    next_pem: PathBuf,
    next_key: PathBuf,
    /// The old CA's key, from `issue` to `finish`.
    previous_key: PathBuf,
}

/// Where a rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No rotation under way: one CA.
    Steady,
    /// `begin` ran: the nodes are to trust both CAs.
    Begun,
    /// `issue` ran: the nodes are to present certificates of the new CA.
    Issued,
}

impl Files {
    fn of(dir: &Path) -> Files {
        let tls = dir.join("tls");
        Files {
            ca_pem: tls.join("ca.pem"),
            ca_key: tls.join("ca.key"),
            next_pem: tls.join("ca-next.pem"),
            next_key: tls.join("ca-next.key"),
            previous_key: tls.join("ca-previous.key"),
        }
    }

    fn phase(&self) -> anyhow::Result<Phase> {
        anyhow::ensure!(
            self.ca_pem.exists() && self.ca_key.exists(),
            "{} or {} is missing: not a `roster init` directory, or its CA key is kept elsewhere",
            self.ca_pem.display(),
            self.ca_key.display()
        );
        match (self.next_key.exists(), self.previous_key.exists()) {
            (false, false) => Ok(Phase::Steady),
            (true, false) => Ok(Phase::Begun),
            (false, true) => Ok(Phase::Issued),
            (true, true) => anyhow::bail!(
                "both {} and {} exist: a rotation step was cut short; keep the key that signed \
                 the node certificates as ca.key and remove the other",
                self.next_key.display(),
                self.previous_key.display()
            ),
        }
    }
}

impl Phase {
    fn describe(self, ca_pem: &Path) -> String {
        match self {
            Phase::Steady => format!(
                "no rotation is under way ({} holds one CA): `roster cert rotate begin` starts one",
                ca_pem.display()
            ),
            Phase::Begun => "the rotation has begun: once every node trusts both CAs (roll out \
                 tls/ca.pem), `roster cert rotate issue` is next"
                .into(),
            Phase::Issued => "the new certificates are issued: once every node presents its \
                 new one (roll them out), `roster cert rotate finish` is next"
                .into(),
        }
    }
}

impl RotationStep {
    fn verb(self) -> &'static str {
        match self {
            RotationStep::Begin => "begin a rotation",
            RotationStep::Issue => "issue the new certificates",
            RotationStep::Finish => "finish the rotation",
        }
    }
}

/// A new CA beside the old one; `ca.pem` trusts both.
fn begin(dir: &Path, files: &Files) -> anyhow::Result<()> {
    let trusted = pki::split_certificates(&pki::read_pem_file(&files.ca_pem)?)?;
    anyhow::ensure!(
        trusted.len() == 1,
        "{} holds {} CA certificates: a rotation begins from one (remove the ones no node \
         certificate needs)",
        files.ca_pem.display(),
        trusted.len()
    );
    let old = Ca::read_files(&files.ca_pem, &files.ca_key)?;
    let deployment = read_topology(&dir.join("topology.toml"))?;
    let next = Ca::generate(&deployment.deployment.name)?;
    next.write_files(&files.next_pem, &files.next_key)?;
    replace_public(
        &files.ca_pem,
        &format!("{}{}", old.cert_pem(), next.cert_pem()),
    )?;
    println!(
        "made the next CA ({} and {}); {} now trusts the current CA and the next one",
        files.next_pem.display(),
        files.next_key.display(),
        files.ca_pem.display()
    );
    println!(
        "next: roll tls/ca.pem out to every node (ansible-playbook upgrade.yml){}, then \
         `roster cert rotate issue --dir {}`",
        and_the_witness(dir, &deployment),
        dir.display()
    );
    Ok(())
}

/// Every node's certificate re-issued by the new CA, which signs from now on.
fn issue(dir: &Path, files: &Files) -> anyhow::Result<()> {
    let next = Ca::read_files(&files.next_pem, &files.next_key)?;
    let trusted = pki::read_pem_file(&files.ca_pem)?;
    anyhow::ensure!(
        pki::split_certificates(&trusted)?.contains(&normalized(next.cert_pem())?),
        "{} does not trust the next CA {}: run `roster cert rotate begin` again after removing \
         {} and {}",
        files.ca_pem.display(),
        files.next_pem.display(),
        files.next_pem.display(),
        files.next_key.display()
    );
    let deployment = read_topology(&dir.join("topology.toml"))?;
    let holders = Holder::all(dir, &deployment)?;
    for holder in &holders {
        let certificate = match holder.peer.pool {
            WITNESS_POOL => next.issue_witness(holder.peer.node, &holder.addresses)?,
            _ => next.issue_node(holder.peer, &holder.addresses)?,
        };
        replace_certificate(&holder.dir, holder.stem, &certificate)?;
    }
    std::fs::rename(&files.ca_key, &files.previous_key).with_context(|| {
        format!(
            "cannot keep the old CA key as {}",
            files.previous_key.display()
        )
    })?;
    std::fs::rename(&files.next_key, &files.ca_key)
        .with_context(|| format!("cannot make {} the signing key", files.next_key.display()))?;
    std::fs::remove_file(&files.next_pem)
        .with_context(|| format!("cannot remove {}", files.next_pem.display()))?;
    let witnesses = holders
        .iter()
        .filter(|holder| holder.peer.pool == WITNESS_POOL)
        .count();
    let witness = if witnesses > 0 {
        " and the witness's"
    } else {
        ""
    };
    println!(
        "re-issued {} node certificate(s){witness} with the new CA, which signs from now on \
         (the old key is kept as {} until the rotation finishes)",
        holders.len() - witnesses,
        files.previous_key.display()
    );
    println!(
        "next: roll the certificates out to every node (ansible-playbook upgrade.yml){}, then \
         `roster cert rotate finish --dir {}`",
        and_the_witness(dir, &deployment),
        dir.display()
    );
    Ok(())
}

/// `ca.pem` trusts the new CA alone; the old key is deleted.
fn finish(dir: &Path, files: &Files) -> anyhow::Result<()> {
    let signer = Ca::read_files(&files.ca_pem, &files.ca_key)?;
    let deployment = read_topology(&dir.join("topology.toml"))?;
    for holder in Holder::all(dir, &deployment)? {
        let cert_path = holder.certificate();
        pki::verify_node_certificate(signer.cert_pem(), &pki::read_pem_file(&cert_path)?)
            .with_context(|| {
                format!(
                    "{} ({}) is not from the new CA: issue it (remove it and its key, then \
                     run `roster init` again) before the old CA is dropped",
                    cert_path.display(),
                    holder.peer
                )
            })?;
    }
    replace_public(&files.ca_pem, signer.cert_pem())?;
    std::fs::remove_file(&files.previous_key)
        .with_context(|| format!("cannot remove {}", files.previous_key.display()))?;
    println!(
        "{} trusts the new CA alone; the old CA's key is deleted",
        files.ca_pem.display()
    );
    println!(
        "next: roll tls/ca.pem out to every node (ansible-playbook upgrade.yml){}; the \
         rotation of {} is then complete",
        and_the_witness(dir, &deployment),
        dir.display()
    );
    Ok(())
}

/// A certificate's PEM as [`pki::split_certificates`] writes it, to compare certificates.
fn normalized(cert_pem: &str) -> anyhow::Result<String> {
    pki::split_certificates(cert_pem)?
        .pop()
        .context("a CA certificate without a certificate")
}

/// Replaces `path` (readable by all) with `text` in one rename, so a reader never sees half.
fn replace_public(path: &Path, text: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension("pem.new");
    std::fs::write(&temporary, text)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// A certificate `roster init` wrote, of a node or of the witness, that a rotation re-issues.
struct Holder {
    /// Whose it is.
    peer: Peer,
    /// The directory holding `<stem>.pem` and `<stem>.key`.
    dir: PathBuf,
    /// `node` or `witness`.
    stem: &'static str,
    /// The addresses the certificate names besides its identity.
    addresses: Vec<String>,
}

impl Holder {
    /// Every node of `deployment` and its witness whose certificate is in `dir` (a node whose
    /// files `roster init` has not written yet gets the new CA's when it does).
    fn all(dir: &Path, deployment: &Deployment) -> anyhow::Result<Vec<Holder>> {
        let mut holders = Vec::new();
        for node in &deployment.node {
            let pool = deployment.pool_by_name(&node.pool).with_context(|| {
                format!(
                    "node {}'s pool {} is not in the topology",
                    node.id, node.pool
                )
            })?;
            holders.push(Holder {
                peer: Peer {
                    pool: pool.id,
                    node: node.id,
                },
                dir: dir.join(format!("node-{}", node.id)),
                stem: "node",
                addresses: certificate_addresses(node),
            });
        }
        if let Some(witness) = deployment.witness.as_deref() {
            holders.push(Holder {
                peer: Peer {
                    pool: WITNESS_POOL,
                    node: witness.id,
                },
                dir: witness_dir(dir, witness.id),
                stem: "witness",
                addresses: witness_certificate_addresses(witness),
            });
        }
        holders.retain(|holder| holder.certificate().exists());
        Ok(holders)
    }

    fn certificate(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.stem))
    }
}

/// What a step's roll-out covers besides the nodes: the witness, restarted from `dir`'s
/// `witness-W/` (it reads `tls/ca.pem` and its certificate when it starts).
fn and_the_witness(dir: &Path, deployment: &Deployment) -> String {
    match deployment.witness.as_deref() {
        Some(witness) => format!(
            " and to the witness (copy {}, tls/ca.pem and topology.toml to its machine, \
             restart `roster witness --config {}`)",
            witness_dir(dir, witness.id).display(),
            witness_dir(dir, witness.id).join("witness.toml").display()
        ),
        None => String::new(),
    }
}

/// Replaces `dir`'s `<stem>.pem` and `<stem>.key` with `certificate`'s (each in one rename;
/// the key first, so that a cut leaves a pair `--check-config` refuses rather than one that
/// works).
fn replace_certificate(
    dir: &Path,
    stem: &str,
    certificate: &NodeCertificate,
) -> anyhow::Result<()> {
    let (cert_name, key_name) = (format!("{stem}.pem"), format!("{stem}.key"));
    let (cert_new, key_new) = (
        dir.join(format!("{cert_name}.new")),
        dir.join(format!("{key_name}.new")),
    );
    for stale in [&cert_new, &key_new] {
        if stale.exists() {
            std::fs::remove_file(stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
        }
    }
    certificate.write_files(&cert_new, &key_new)?;
    for (new, name) in [(&key_new, &key_name), (&cert_new, &cert_name)] {
        let path = dir.join(name);
        std::fs::rename(new, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
    }
    Ok(())
}
