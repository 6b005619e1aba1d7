//! Running a node as a member of a pool: read the deployment, open its database, join the
//! cluster network (QUIC with mutual TLS: its own pool, and its partner pool's nodes at their
//! WAN addresses), start the replicas placement gives it (its routing groups, the partner's
//! backup copies, the CMS or its copy), bootstrap them once, ship the backup stream, and serve
//! SIP from them with the pool's admin operations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use roster_cms::{CmsCommand, CmsOutcome, USERS_PER_COMMAND_MAX};
use roster_net::pki::NodeCertificate;
use roster_net::{AddressBook, Peer, QuicConfig, QuicNetwork};
use roster_pool::placement::{self, Assignment};
use roster_pool::{Partner, PoolHandler, PoolNode, PoolOptions};
use roster_raft::config::GroupConfigOptions;
use roster_store::{NodeStore, StoreOptions};
use roster_topology::{Deployment, PoolId};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{listeners, service, tasks, Listening};
use crate::admin_api::AdminToken;
use crate::backup::Backup;
use crate::clock::now_ms;
use crate::config::{Config, PoolConfig};
use crate::http::admin::{Admin, AdminAccess, UsersAdmin};
use crate::http::{OverviewSource, PoolEndpoints};
use crate::pool_admin::PoolAdmin;
use crate::store::PoolStore;
use crate::topology::read_topology;
use crate::user_admin::{DirectorySettings, UserAdmin};

/// How long a pool write or read may take before the client gets `503`: a leader election
/// (0.7–1.4 s) fits, a lost quorum does not hang the client.
const POOL_REQUEST_TIMEOUT: Duration = Duration::from_millis(2_500);

/// How long a request waits for a group with no known leader to elect one.
const LEADER_WAIT: Duration = Duration::from_millis(2_000);

/// The file in a node's data directory that says it has bootstrapped its groups once.
const BOOTSTRAPPED_MARKER: &str = "bootstrapped";

/// How long the node that creates the CMS keeps trying to seed its directory from the users
/// file (the CMS elects and commits within a few seconds of the pool's start).
const SEED_DEADLINE: Duration = Duration::from_secs(30);

/// Runs this node of the pool until `shutdown`.
pub(super) async fn run(
    config: Config,
    pool: PoolConfig,
    admin_token: Option<AdminToken>,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    let deployment = read_topology(&pool.topology)?;
    let Identity {
        pool: pool_id,
        cluster: own_cluster,
        ca,
        certificate,
    } = identity(&pool, &deployment)?;
    let partner = deployment.partner(pool_id);
    let store = open_store(&pool)?;
    let handler = Arc::new(PoolHandler::default());
    let mut quic = QuicConfig::new(own_cluster, ca, &certificate, peers(&deployment, pool_id));
    quic.partner = partner;
    let server =
        roster_net::bind(quic, handler.clone(), shutdown.child_token()).map_err(|error| {
            match crate::diagnose::port_holder(own_cluster, crate::diagnose::Protocol::Udp) {
                Some(process) => anyhow::anyhow!(
                    "cannot bind the cluster transport on {own_cluster} (UDP): the address is in \
                 use by {process}; stop that process, or give this node another cluster address \
                 in the topology"
                ),
                None => {
                    anyhow::anyhow!("cannot bind the cluster transport on {own_cluster}: {error}")
                }
            }
        })?;
    let options = options(&config, &pool, &deployment, pool_id);
    anyhow::ensure!(
        options.witness.is_none()
            || options.detection_interval >= roster_pool::witness::WITNESS_DETECTION_INTERVAL_MIN,
        "[pool] detection_interval_s = {} is too short with a witness: at least {} s (a node's \
         lease is the interval less two heartbeats, and must outlast a heartbeat's round trip)",
        options.detection_interval.as_secs(),
        roster_pool::witness::WITNESS_DETECTION_INTERVAL_MIN.as_secs()
    );
    let assignment = placement::initial(&deployment.node_ids_of(pool_id), &options.keys());
    let node = PoolNode::start(options, store, server.network(), &assignment, now_ms)
        .await
        .context("cannot start the routing groups")?;
    handler.attach(&node);
    let created = bootstrap_once(&node, &pool, &deployment, &assignment).await?;
    info!(
        node = pool.node_id,
        pool = pool_id,
        partner = ?partner,
        groups = node.groups().len(),
        cluster = %own_cluster,
        "pool node started"
    );
    let service = Arc::new(service::build(&config, PoolStore::new(node.clone()))?);
    let settings = DirectorySettings {
        deployment: deployment.clone(),
        realm: config.auth.as_ref().map(|auth| auth.realm.clone()),
        domains: config.domains.clone(),
    };
    let admin = admin_token.map(|token| AdminAccess {
        admin: Arc::new(PoolAdmin::new(
            node.clone(),
            server.network(),
            pool.topology.clone(),
        )) as Arc<dyn Admin>,
        users: Arc::new(UserAdmin::new(node.clone(), settings)) as Arc<dyn UsersAdmin>,
        token,
    });
    // A leader cut off from its quorum for two election timeouts refuses requests.
    let quorum_ack_limit_ms = 2 * pool.election_timeout_ms.1;
    let gauges = tokio::spawn(tasks::record_gauges(
        node.clone(),
        quorum_ack_limit_ms,
        shutdown.clone(),
    ));
    let backup = Arc::new(Backup::new(node.clone(), deployment.clone()));
    let backup_gauges = tokio::spawn(tasks::record_backup_gauges(
        backup.clone(),
        shutdown.clone(),
    ));
    let balancer = pool.leader_balance_interval.map(|period| {
        tokio::spawn(tasks::balance_leaders(
            node.clone(),
            period,
            shutdown.clone(),
        ))
    });
    let shipper = tokio::spawn(node.clone().ship_forever());
    let watcher = tokio::spawn(node.clone().watch_partner_forever());
    let directory = tokio::spawn(tasks::sync_directory(
        node.clone(),
        service.clone(),
        shutdown.clone(),
    ));
    if created && config.users_file.is_some() {
        let node = node.clone();
        let users_file = config.users_file.clone();
        tokio::spawn(async move {
            if let Some(path) = users_file {
                seed_directory(&node, &path, &deployment).await;
            }
        });
    }
    let own_service = service.clone();
    let gatherer = crate::overview::Gatherer::new(
        node.clone(),
        pool.topology.clone(),
        Arc::new(move || own_service.status()),
        quorum_ack_limit_ms,
    );
    let endpoints = PoolEndpoints {
        admin,
        overview: Some(Arc::new(Overview(gatherer))),
        backup: Some(backup),
    };
    let result = listeners::serve(&config, service, endpoints, shutdown, on_ready).await;
    for task in [gauges, backup_gauges, shipper, watcher, directory] {
        task.abort();
    }
    if let Some(balancer) = balancer {
        balancer.abort();
    }
    node.shutdown().await;
    server.shutdown().await;
    result
}

/// The overview the status page and `/api/v1/deployment` show.
struct Overview(crate::overview::Gatherer);

impl OverviewSource for Overview {
    fn overview(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send + '_>> {
        Box::pin(self.0.overview())
    }

    fn layout(&self) -> serde_json::Value {
        self.0.layout()
    }
}

/// Who this node is in the deployment, and the files that prove it.
pub(super) struct Identity {
    /// Its pool.
    pub(super) pool: PoolId,
    /// Its cluster address.
    pub(super) cluster: std::net::SocketAddr,
    /// The deployment's CA certificate (PEM).
    pub(super) ca: String,
    /// Its certificate and key.
    pub(super) certificate: NodeCertificate,
}

/// Reads the node's certificate and the CA, and checks that the certificate names this node of
/// its pool in `deployment`.
pub(super) fn identity(pool: &PoolConfig, deployment: &Deployment) -> anyhow::Result<Identity> {
    let own = deployment
        .node(pool.node_id)
        .with_context(|| format!("node id {} is not in the topology", pool.node_id))?;
    let pool_id = deployment
        .pool_of(pool.node_id)
        .context("the node's pool is not in the topology")?;
    let ca = roster_net::pki::read_pem_file(&pool.ca_certificate)?;
    let certificate = NodeCertificate::read_files(&pool.node_certificate, &pool.node_private_key)?;
    let expected = Peer {
        pool: pool_id,
        node: pool.node_id,
    };
    anyhow::ensure!(
        certificate.peer == expected,
        "certificate {} is for {}, this node is {expected}",
        pool.node_certificate.display(),
        certificate.peer,
    );
    Ok(Identity {
        pool: pool_id,
        cluster: own.cluster,
        ca,
        certificate,
    })
}

/// Opens the node's database; a data directory another process holds (a node already running
/// from it) is named with that process.
fn open_store(pool: &PoolConfig) -> anyhow::Result<NodeStore> {
    NodeStore::open_with(&StoreOptions {
        path: pool.data_dir.clone(),
        cache_capacity_bytes: pool.cache_bytes,
        ..StoreOptions::default()
    })
    .map_err(|error| match crate::diagnose::lock_holder(&pool.data_dir) {
        Some(process) => anyhow::anyhow!(
            "the data directory {} is in use by {process}: a node is already running from it; \
             stop it first (or give this node its own [pool] data_dir)",
            pool.data_dir.display()
        ),
        None => anyhow::anyhow!("cannot open database {}: {error}", pool.data_dir.display()),
    })
}

/// Every node this one talks to: its own pool's at their cluster addresses, the partner's at
/// the addresses the other site dials (`wan`), and the witness watching the pool, if any.
fn peers(deployment: &Deployment, pool: PoolId) -> AddressBook {
    let book = AddressBook::new();
    for node in deployment.nodes_of(pool) {
        book.insert(
            Peer {
                pool,
                node: node.id,
            },
            node.cluster,
        );
    }
    if let Some(partner) = deployment.partner(pool) {
        for node in deployment.nodes_of(partner) {
            book.insert(
                Peer {
                    pool: partner,
                    node: node.id,
                },
                node.wan_address(),
            );
        }
    }
    if let Some(witness) = deployment.witness_of(pool) {
        book.insert(
            Peer {
                pool: roster_topology::WITNESS_POOL,
                node: witness.id,
            },
            witness.address,
        );
    }
    book
}

/// The pool node's options from its configuration and the deployment.
fn options(config: &Config, pool: &PoolConfig, deployment: &Deployment, id: PoolId) -> PoolOptions {
    let spec = deployment.pool(id);
    let partner = deployment.partner(id).and_then(|partner| {
        Some(Partner {
            pool: partner,
            groups: deployment.pool(partner)?.groups,
            nodes: deployment.node_ids_of(partner),
        })
    });
    // This pool takes part in the CMS when the CMS lives here or on its partner.
    let cms = deployment.cms_pool();
    let takes_part = cms == id || partner.as_ref().is_some_and(|partner| partner.pool == cms);
    PoolOptions {
        node_id: pool.node_id,
        pool: id,
        groups: spec.map_or(roster_topology::GROUPS_DEFAULT, |spec| spec.groups),
        partner,
        cms: takes_part.then_some(cms),
        raft: GroupConfigOptions {
            cluster_name: spec.map_or_else(String::new, |spec| spec.name.clone()),
            heartbeat_interval_ms: pool.heartbeat_interval_ms,
            election_timeout_min_ms: pool.election_timeout_ms.0,
            election_timeout_max_ms: pool.election_timeout_ms.1,
            ..GroupConfigOptions::default()
        },
        policy: config.policy.clone(),
        request_timeout: POOL_REQUEST_TIMEOUT,
        leader_wait: LEADER_WAIT,
        detection_interval: pool.detection_interval,
        witness: deployment.witness_of(id).map(|witness| witness.id),
    }
}

/// Initializes the groups of `assignment` when the pool is created, and never again; returns
/// whether this node created the CMS just now (it seeds the directory then).
///
/// A node that has ever bootstrapped keeps a marker, and never initializes groups again
/// (after moves, `placement::initial` is not the live layout, and initializing a group there
/// would create a second copy of it). A joining node writes the marker at once: it must never
/// initialize, even if its configuration later loses `join`.
async fn bootstrap_once(
    node: &PoolNode<QuicNetwork>,
    pool: &PoolConfig,
    deployment: &Deployment,
    assignment: &Assignment,
) -> anyhow::Result<bool> {
    let marker = pool.data_dir.join(BOOTSTRAPPED_MARKER);
    if pool.join && !marker.exists() {
        info!(
            node = pool.node_id,
            "joining a running pool: replicas come by moves"
        );
        write_marker(&marker)?;
    }
    if marker.exists() {
        return Ok(false);
    }
    let own_pool = node.pool();
    let addresses: BTreeMap<u64, String> = deployment
        .nodes_of(own_pool)
        .iter()
        .map(|n| (n.id, n.cluster.to_string()))
        .collect();
    node.bootstrap(assignment, &addresses, Some(deployment))
        .await
        .context("cannot initialize the routing groups")?;
    write_marker(&marker)?;
    let creates_cms = node
        .options()
        .cms_key()
        .filter(|key| key.is_home())
        .and_then(|key| assignment.get(&key))
        .and_then(|voters| voters.first())
        == Some(&node.node_id());
    Ok(creates_cms)
}

/// Puts the users of `path` (the users file `roster init` copied) into the CMS, in commands of
/// at most [`USERS_PER_COMMAND_MAX`]: the directory's first users. Retries while the new CMS
/// elects; gives up (logged) after [`SEED_DEADLINE`]: `roster user import` does the same later.
async fn seed_directory(node: &PoolNode<QuicNetwork>, path: &Path, deployment: &Deployment) {
    let records = match crate::users::records(path, deployment, deployment.cms_pool()) {
        Ok(records) => records,
        Err(error) => {
            warn!(%error, "the users file cannot seed the directory");
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + SEED_DEADLINE;
    let total = records.len();
    for chunk in records.chunks(USERS_PER_COMMAND_MAX) {
        let command = CmsCommand::PutUsers {
            users: chunk.to_vec(),
            replace: true,
        };
        loop {
            match node.cms_write(command.clone()).await {
                Ok(CmsOutcome::Refused(refusal)) => {
                    warn!(%refusal, "the CMS refused users of the users file");
                    break;
                }
                Ok(_) => break,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%error, "CMS not ready for the seed yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    warn!(%error, "gave up seeding the directory; run roster user import");
                    return;
                }
            }
        }
    }
    info!(users = total, "directory seeded from the users file");
}

/// Writes the marker durably (file and directory synced).
fn write_marker(path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
