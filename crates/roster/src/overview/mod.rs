//! The deployment as one node sees it, for the operator's status page (`/`), its JSON
//! (`/api/v1/deployment`) and `roster node status` / `roster pool status --url`: every node of
//! both pools up or down with what it holds and leads, groups without a leader or a quorum,
//! replication per direction (the backup report), ownership and epochs (this node's copy of
//! the CMS), registrations per pool.
//!
//! [`model`] builds it without I/O; [`Gatherer`] asks every other node's `/status` over HTTP
//! and the backup report over the cluster, each within a short timeout (a dead node is down,
//! the page never hangs), and keeps the result for a second so that many open pages cost one
//! gathering.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_net::QuicNetwork;
use roster_pool::PoolNode;
use serde_json::Value;

use crate::clock::now_ms;
use crate::http_client;
use crate::topology::read_topology;

pub mod model;

/// How long another node's `/status` may take: a dead node costs the page this much, once.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1_500);

/// How long the backup report may take (it asks every node of both pools itself, 2 s each,
/// the partner's in turn); past it the page shows replication as unknown.
const BACKUP_TIMEOUT: Duration = Duration::from_millis(2_500);

/// Largest status document read from a node (a node's status lists its groups: about 250
/// bytes each, 2,049 groups at most).
const STATUS_SIZE_MAX: u64 = 4 * 1024 * 1024;

/// An overview younger than this is answered again instead of gathered anew.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// This node's own status document.
pub type OwnStatus = Arc<dyn Fn() -> Value + Send + Sync>;

/// Gathers the overview for one node of a pool.
pub struct Gatherer {
    node: Arc<PoolNode<QuicNetwork>>,
    topology: PathBuf,
    own_status: OwnStatus,
    quorum_ack_limit_ms: u64,
    /// Single flight: callers wait for the one gathering and share its result.
    last: tokio::sync::Mutex<Option<(Instant, Value)>>,
}

impl Gatherer {
    /// A gatherer for `node`, reading the deployment from `topology` (at each gathering: a node
    /// added to it shows up), its own status from `own_status`; a leader that has not heard
    /// from a quorum for `quorum_ack_limit_ms` has lost it.
    pub fn new(
        node: Arc<PoolNode<QuicNetwork>>,
        topology: PathBuf,
        own_status: OwnStatus,
        quorum_ack_limit_ms: u64,
    ) -> Gatherer {
        Gatherer {
            node,
            topology,
            own_status,
            quorum_ack_limit_ms,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The overview as JSON (an `error` object when the topology cannot be read).
    pub async fn overview(&self) -> Value {
        let mut last = self.last.lock().await;
        if let Some((at, overview)) = &*last {
            if at.elapsed() < FRESH_FOR {
                return overview.clone();
            }
        }
        let overview = self.gather().await;
        *last = Some((Instant::now(), overview.clone()));
        overview
    }

    /// The deployment's layout as this node knows it, without asking any other node: the
    /// pools, their nodes and addresses, ownership and the CMS's place as this node's copy of
    /// the CMS has them; every other node shows as not asked (not up). For commands that only
    /// need to find a pool's nodes: a failover must not wait on the dead ones.
    pub fn layout(&self) -> Value {
        let deployment = match read_topology(&self.topology) {
            Ok(deployment) => deployment,
            Err(error) => return serde_json::json!({ "error": format!("{error:#}") }),
        };
        let own = self.node.node_id();
        let statuses = deployment
            .node
            .iter()
            .map(|node| {
                let status = if node.id == own {
                    Ok((self.own_status)())
                } else {
                    Err("not asked (the layout only)".to_string())
                };
                (node.id, status)
            })
            .collect();
        self.encode(&deployment, statuses, None)
    }

    async fn gather(&self) -> Value {
        let deployment = match read_topology(&self.topology) {
            Ok(deployment) => deployment,
            Err(error) => return serde_json::json!({ "error": format!("{error:#}") }),
        };
        let own = self.node.node_id();
        let asks = deployment.node.iter().map(|node| {
            let own_status = self.own_status.clone();
            let (id, http) = (node.id, node.http);
            async move {
                let status = if id == own {
                    Ok(own_status())
                } else {
                    match http {
                        Some(http) => fetch_status(http).await,
                        None => Err("no http address in the topology".to_string()),
                    }
                };
                (id, status)
            }
        });
        let backup = tokio::time::timeout(BACKUP_TIMEOUT, self.node.backup_report());
        let (statuses, backup) = tokio::join!(futures_util::future::join_all(asks), backup);
        self.encode(&deployment, statuses.into_iter().collect(), backup.ok())
    }

    /// The overview of `deployment` from what was gathered, as JSON.
    fn encode(
        &self,
        deployment: &roster_topology::Deployment,
        statuses: BTreeMap<roster_topology::NodeId, Result<Value, String>>,
        backup: Option<roster_pool::report::BackupReport>,
    ) -> Value {
        let overview = model::build(model::Gathered {
            deployment,
            seen_by: self.node.node_id(),
            statuses,
            backup,
            cms: self.cms_view(),
            quorum_ack_limit_ms: self.quorum_ack_limit_ms,
            now_ms: now_ms(),
        });
        serde_json::to_value(overview).unwrap_or_else(
            |error| serde_json::json!({ "error": format!("cannot encode the overview: {error}") }),
        )
    }

    /// What this node's copy of the CMS says.
    fn cms_view(&self) -> Option<model::CmsView> {
        let pool = self.node.options().cms?;
        let state = self.node.cms_state()?;
        // The node's merged view: its CMS copy, and what its partner reported (a pool back
        // after a failover shows the new owner before its own copy catches up).
        let ownership: BTreeMap<_, _> = self
            .node
            .ownership_view()
            .pools
            .iter()
            .map(|(&pool, ownership)| (pool, (ownership.owner, ownership.epoch)))
            .collect();
        state
            .read(|state| {
                let applied = roster_raft::ReplicatedState::last_applied(state).map(|id| id.index);
                let cms = state.cms_state()?;
                let mut users_homed = BTreeMap::new();
                for user in cms.users() {
                    *users_homed.entry(user.home).or_insert(0) += 1;
                }
                Some(model::CmsView {
                    pool,
                    users: cms.user_count(),
                    users_homed,
                    ownership,
                    applied,
                })
            })
            .ok()
            .flatten()
    }
}

/// Another node's `/status`, or why not.
async fn fetch_status(address: SocketAddr) -> Result<Value, String> {
    let request = format!("GET /status HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let (status, body) =
        http_client::exchange(address, &request, STATUS_SIZE_MAX, STATUS_TIMEOUT).await?;
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    serde_json::from_str(&body).map_err(|error| format!("bad status document: {error}"))
}
