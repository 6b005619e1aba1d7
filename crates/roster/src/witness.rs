//! `roster witness`: the witness of a pair of pools, run in a third site. It answers the
//! heartbeats of both pools' nodes over the cluster transport (QUIC, mutual TLS with the
//! deployment's CA, its certificate naming it `witness-<id>.roster.invalid`) with
//! `roster_pool::witness::Witness`, and serves what it has heard as JSON on `GET /status` when
//! its configuration names an HTTP address (`roster witness status` reads it).
//!
//! Its configuration (`roster init` writes it as `DIR/witness-<id>/witness.toml` when the
//! topology has a `[witness]`; relative paths are from the file's directory):
//!
//! ```toml
//! [witness]
//! id = 100
//! listen = "10.0.3.1:7000"     # QUIC, dialled by the nodes of both pools
//! pools = [1, 2]               # the pair it watches, by pool id
//! http = "10.0.3.1:8080"       # optional: GET /status
//! ca_certificate = "../tls/ca.pem"
//! certificate = "witness.pem"
//! private_key = "witness.key"
//! topology = "../topology.toml" # optional: the deployment, to check `id` and `pools` against
//! ```
//!
//! The witness keeps nothing on disk: after a restart it has heard nobody, and reports both
//! pools silent since its start until their heartbeats arrive (within a second); it reports a
//! pool lost only once it has heard it and then not for the detection interval.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use axum::routing::get;
use axum::{Json, Router};
use roster_net::pki::{read_pem_file, NodeCertificate};
use roster_net::{AddressBook, Peer, QuicConfig};
use roster_pool::witness::{Witness, WitnessReport};
use roster_topology::{Deployment, NodeId, PoolId, WITNESS_POOL};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::topology::read_topology;

/// The path of the witness's status document.
pub const WITNESS_STATUS_PATH: &str = "/status";

/// `witness.toml`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    witness: RawWitness,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    id: NodeId,
    listen: SocketAddr,
    pools: [PoolId; 2],
    #[serde(default)]
    http: Option<SocketAddr>,
    ca_certificate: PathBuf,
    certificate: PathBuf,
    private_key: PathBuf,
    #[serde(default)]
    topology: Option<PathBuf>,
}

/// A witness's configuration, checked, paths resolved.
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    /// Its id (its certificate names it).
    pub id: NodeId,
    /// Its QUIC address.
    pub listen: SocketAddr,
    /// The pair it watches.
    pub pools: [PoolId; 2],
    /// Where `GET /status` answers, if anywhere.
    pub http: Option<SocketAddr>,
    /// The deployment's CA certificate.
    pub ca_certificate: PathBuf,
    /// Its certificate.
    pub certificate: PathBuf,
    /// Its private key.
    pub private_key: PathBuf,
    /// The deployment file its `id` and `pools` were checked against, if it names one
    /// (`roster init` writes `../topology.toml`).
    pub topology: Option<PathBuf>,
    /// The names of its pools, from that file (empty without one): its status shows them.
    pub names: BTreeMap<PoolId, String>,
}

impl WitnessConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<WitnessConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read witness configuration {}", path.display()))?;
        let raw: RawFile =
            toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        let raw = raw.witness;
        anyhow::ensure!(
            raw.id != 0,
            "{}: witness.id must be positive",
            path.display()
        );
        let [first, second] = raw.pools;
        anyhow::ensure!(
            first != second && first != WITNESS_POOL && second != WITNESS_POOL,
            "{}: witness.pools must name two different pools (ids from 1)",
            path.display()
        );
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = WitnessConfig {
            id: raw.id,
            listen: raw.listen,
            pools: raw.pools,
            http: raw.http,
            ca_certificate: base.join(raw.ca_certificate),
            certificate: base.join(raw.certificate),
            private_key: base.join(raw.private_key),
            topology: raw.topology.map(|topology| base.join(topology)),
            names: BTreeMap::new(),
        };
        if let Some(topology) = &config.topology {
            let deployment = read_topology(topology)?;
            config.check_against(&deployment).with_context(|| {
                format!("{} does not match {}", path.display(), topology.display())
            })?;
            config.names = config
                .pools
                .iter()
                .filter_map(|&id| Some((id, deployment.pool(id)?.name.clone())))
                .collect();
        }
        Ok(config)
    }

    /// Refuses a configuration its deployment does not have: pools it does not have, or not
    /// the pair its `[witness]` watches, or another witness id. A witness watching the wrong
    /// pools would refuse the heartbeats of the pair's nodes, which would then fence
    /// themselves whenever they lost each other.
    fn check_against(&self, deployment: &Deployment) -> anyhow::Result<()> {
        let known = || {
            deployment
                .pool
                .iter()
                .map(|pool| format!("{} ({})", pool.id, pool.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for pool in self.pools {
            anyhow::ensure!(
                deployment.pool(pool).is_some(),
                "witness.pools names pool {pool}, which is not in the topology (its pools: {})",
                known()
            );
        }
        let witness = deployment
            .witness
            .as_deref()
            .context("the topology has no [witness]: add one and run `roster init` again")?;
        anyhow::ensure!(
            witness.id == self.id,
            "witness.id is {}, and the topology's [witness] has id {}",
            self.id,
            witness.id
        );
        let watched: Vec<PoolId> = witness
            .pools
            .iter()
            .filter_map(|name| deployment.pool_by_name(name).map(|pool| pool.id))
            .collect();
        anyhow::ensure!(
            self.pools.iter().all(|pool| watched.contains(pool)),
            "witness.pools is {:?}, and the topology's [witness] watches pools {watched:?} ({})",
            self.pools,
            witness.pools.join(", ")
        );
        Ok(())
    }

    /// The configuration file's text for these values (paths as given).
    pub fn to_toml(&self) -> String {
        let http = self
            .http
            .map_or_else(String::new, |http| format!("http = \"{http}\"\n"));
        format!(
            "# Written by `roster init` for the witness: roster witness --config THIS_FILE\n\
             [witness]\nid = {}\nlisten = \"{}\"\npools = [{}, {}]\n{http}\
             ca_certificate = \"{}\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
            self.id,
            self.listen,
            self.pools[0],
            self.pools[1],
            self.ca_certificate.display(),
            self.certificate.display(),
            self.private_key.display(),
        ) + &self.topology.as_ref().map_or_else(String::new, |topology| {
            format!("topology = \"{}\"\n", topology.display())
        })
    }
}

/// The status document of `GET /status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WitnessStatus {
    /// The witness's id.
    pub id: NodeId,
    /// What it has heard.
    pub report: WitnessReport,
    /// Its pools' names, by id, when its configuration names the topology.
    #[serde(default)]
    pub names: BTreeMap<PoolId, String>,
}

impl WitnessStatus {
    /// Pool `id` as an operator names it: "a (1)", or "1" without a name.
    pub fn pool_name(&self, id: PoolId) -> String {
        match self.names.get(&id) {
            Some(name) => format!("{name} ({id})"),
            None => id.to_string(),
        }
    }
}

/// Where a running witness listens.
#[derive(Clone, Debug)]
pub struct WitnessListening {
    /// QUIC.
    pub quic: SocketAddr,
    /// HTTP, if configured.
    pub http: Option<SocketAddr>,
}

/// Runs the witness until `shutdown`; `announce` is called once it listens.
pub async fn run(
    config: WitnessConfig,
    shutdown: CancellationToken,
    announce: impl FnOnce(&WitnessListening),
) -> anyhow::Result<()> {
    let ca = read_pem_file(&config.ca_certificate)?;
    let certificate = NodeCertificate::read_files(&config.certificate, &config.private_key)?;
    let expected = Peer {
        pool: WITNESS_POOL,
        node: config.id,
    };
    anyhow::ensure!(
        certificate.peer == expected,
        "certificate {} is for {}, not {expected}: issue the witness's with `roster init` (a \
         [witness] in the topology)",
        config.certificate.display(),
        certificate.peer,
    );
    let witness = Arc::new(Witness::new(config.pools));
    let mut quic = QuicConfig::new(config.listen, ca, &certificate, AddressBook::new());
    quic.witnessed = Some(config.pools);
    let server = roster_net::bind(quic, witness.clone(), shutdown.child_token())
        .map_err(|error| anyhow::anyhow!("cannot listen on {} (UDP): {error}", config.listen))?;
    let http = match config.http {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (HTTP)"))?;
            let bound = listener.local_addr()?;
            let id = config.id;
            let status = witness.clone();
            let names = config.names.clone();
            let app = Router::new().route(
                WITNESS_STATUS_PATH,
                get(move || {
                    let report = status.report();
                    let names = names.clone();
                    async move { Json(WitnessStatus { id, report, names }) }
                }),
            );
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            });
            Some(bound)
        }
        None => None,
    };
    let listening = WitnessListening {
        quic: server.local_addr(),
        http,
    };
    info!(id = config.id, pools = ?config.pools, quic = %listening.quic, "witness listening");
    announce(&listening);
    shutdown.cancelled().await;
    server.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_names_its_pools_when_it_can() {
        let text = r#"{"id":100,"report":{"pools":[],"view":{"pools":{},"cms":null}}}"#;
        let mut status: WitnessStatus =
            serde_json::from_str(text).expect("a status without names (an older witness)");
        assert_eq!(status.pool_name(1), "1");
        status.names.insert(1, "a".into());
        assert_eq!(status.pool_name(1), "a (1)");
        assert_eq!(status.pool_name(2), "2");
        let again: WitnessStatus =
            serde_json::from_str(&serde_json::to_string(&status).expect("json")).expect("back");
        assert_eq!(again.names, status.names);
    }
}
