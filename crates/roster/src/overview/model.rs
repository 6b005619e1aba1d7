//! The deployment as one node sees it, built without I/O from what was gathered: every node's
//! status document (or why it could not be had), the backup report and this node's copy of the
//! CMS. [`build`] is pure, so what the operator's page says about a dead node, a group without
//! quorum or a lagging stream is tested on made-up inputs.

use std::collections::BTreeMap;

use roster_pool::report::BackupReport;
use roster_pool::shipper::StreamState;
use roster_pool::witness::WitnessLease;
use roster_topology::{Deployment, NodeId, PoolId};
use serde::Serialize;
use serde_json::Value;

/// The recovery point objective the page and the alerts hold replication to: a stream whose
/// lag is over it puts the deployment at risk (DESIGN.md: RPO = the lag at loss).
pub const RPO_TARGET_MS: u64 = 1_000;

/// What was gathered for one overview.
pub struct Gathered<'a> {
    /// The deployment (this node's topology file).
    pub deployment: &'a Deployment,
    /// The node that gathered.
    pub seen_by: NodeId,
    /// Every node's `/status` document, or why it could not be had.
    pub statuses: BTreeMap<NodeId, Result<Value, String>>,
    /// The backup service's report, when it could be had in time.
    pub backup: Option<BackupReport>,
    /// This node's copy of the CMS.
    pub cms: Option<CmsView>,
    /// A leader that has not heard from a quorum for longer than this has lost it.
    pub quorum_ack_limit_ms: u64,
    /// When, in milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// What this node's copy of the CMS says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CmsView {
    /// The CMS's home pool.
    pub pool: PoolId,
    /// Users in the directory.
    pub users: usize,
    /// Users per home pool.
    pub users_homed: BTreeMap<PoolId, usize>,
    /// Owner and epoch of each pool's users.
    pub ownership: BTreeMap<PoolId, (PoolId, u64)>,
    /// The copy's last applied index.
    pub applied: Option<u64>,
}

/// The overview: what `/api/v1/deployment` answers and the status page shows.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    /// The deployment's name.
    pub deployment: String,
    /// The node that gathered it.
    pub seen_by: NodeId,
    /// When, in milliseconds since the Unix epoch.
    pub generated_ms: u64,
    /// The replication lag target.
    pub rpo_target_ms: u64,
    /// No problem seen.
    pub healthy: bool,
    /// What needs an operator, one sentence each, worst first.
    pub problems: Vec<String>,
    /// Sites and their pools' names.
    pub sites: Vec<SiteView>,
    /// Every pool.
    pub pools: Vec<PoolView>,
    /// Replication, one line per direction.
    pub replication: Vec<DirectionView>,
    /// The streams of the backup report, and the nodes it could not ask.
    pub backup: Option<BackupReport>,
    /// The CMS as this node's copy has it.
    pub cms: Option<CmsSummary>,
}

/// A site.
#[derive(Clone, Debug, Serialize)]
pub struct SiteView {
    /// Its name.
    pub name: String,
    /// Its pools' names.
    pub pools: Vec<String>,
}

/// A pool.
#[derive(Clone, Debug, Serialize)]
pub struct PoolView {
    /// Its id.
    pub id: PoolId,
    /// Its name.
    pub name: String,
    /// Its site.
    pub site: String,
    /// Its partner's name.
    pub partner: Option<String>,
    /// Its routing groups.
    pub groups: u32,
    /// The pool serving its users (its own name unless failed over), from the CMS.
    pub owner: Option<String>,
    /// The epoch its users' writes carry, from the CMS.
    pub epoch: Option<u64>,
    /// Users homed on it, from the CMS.
    pub users: Option<usize>,
    /// AORs registered in its routing groups (each group counted at its leader).
    pub aors: u64,
    /// Bindings in its routing groups (each group counted at its leader).
    pub bindings: u64,
    /// Its nodes.
    pub nodes: Vec<NodeView>,
    /// Groups hosted on its nodes that no reachable replica knows a leader of.
    pub groups_without_leader: Vec<String>,
    /// Groups hosted on its nodes without a quorum: fewer than a majority of voters up, or a
    /// leader that has not heard from a quorum lately.
    pub groups_without_quorum: Vec<String>,
    /// Every group hosted on its nodes.
    pub group_table: Vec<GroupView>,
}

/// A node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeView {
    /// Its id.
    pub id: NodeId,
    /// Its status document answered.
    pub up: bool,
    /// Why not, when down.
    pub error: Option<String>,
    /// Its HTTP address.
    pub http: Option<String>,
    /// Its SIP address.
    pub sip: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// Users in its directory.
    pub directory_users: Option<u64>,
    /// Replicas it holds.
    pub replicas: usize,
    /// Groups it leads, by kind: routing, backup, cms.
    pub leads: BTreeMap<String, usize>,
    /// Bindings in its replicas of routing groups.
    pub bindings: u64,
    /// The highest entries its replicas lack behind their commit index.
    pub apply_lag_entries: u64,
    /// What it knows of its witness (last heard, lease left, fenced); `None` without one.
    pub witness: Option<WitnessLease>,
}

/// A group, as the replicas that answered see it.
#[derive(Clone, Debug, Serialize)]
pub struct GroupView {
    /// Its key (`1/routing-7`).
    pub key: String,
    /// Its leader, when one is known.
    pub leader: Option<NodeId>,
    /// Its term (the highest reported).
    pub term: u64,
    /// Its commit index (the leader's, else the highest reported).
    pub committed: Option<u64>,
    /// Its voters.
    pub voters: Vec<NodeId>,
    /// Each replica that answered: node, Raft state, applied index.
    pub replicas: Vec<ReplicaView>,
    /// AORs at the leader (or the first replica).
    pub aors: u64,
    /// Bindings at the leader (or the first replica).
    pub bindings: u64,
}

/// One replica of a group.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaView {
    /// Its node.
    pub node: NodeId,
    /// `Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`.
    pub state: String,
    /// Its applied index.
    pub applied: Option<u64>,
}

/// Replication from one pool to its partner.
#[derive(Clone, Debug, Serialize)]
pub struct DirectionView {
    /// The source pool's name.
    pub from: String,
    /// The copy's pool's name.
    pub to: String,
    /// Streams (source groups) in this direction.
    pub streams: usize,
    /// Steady ones.
    pub steady: usize,
    /// Behind.
    pub behind: usize,
    /// Stopped.
    pub stopped: usize,
    /// The largest lag in time.
    pub lag_ms_max: u64,
    /// The largest lag in entries.
    pub lag_entries_max: u64,
    /// Every stream steady and under the RPO target.
    pub within_rpo: bool,
}

/// The CMS for the page.
#[derive(Clone, Debug, Serialize)]
pub struct CmsSummary {
    /// Its home pool's name.
    pub pool: String,
    /// Users in the directory.
    pub users: usize,
    /// This node's copy's applied index.
    pub applied: Option<u64>,
    /// Each pool's owner and epoch.
    pub ownership: Vec<OwnershipView>,
}

/// Who serves a pool's users.
#[derive(Clone, Debug, Serialize)]
pub struct OwnershipView {
    /// The users' home pool.
    pub pool: String,
    /// The pool that serves them.
    pub owner: String,
    /// The epoch.
    pub epoch: u64,
}

/// Builds the overview from what was gathered.
pub fn build(gathered: Gathered<'_>) -> Overview {
    let deployment = gathered.deployment;
    let name = |id: PoolId| {
        deployment
            .pool(id)
            .map_or_else(|| format!("pool {id}"), |pool| pool.name.clone())
    };
    let mut problems = Vec::new();
    let mut pools = Vec::new();
    for spec in &deployment.pool {
        let pool = pool_view(&gathered, spec.id, &name);
        for node in pool.nodes.iter().filter(|node| !node.up) {
            problems.push(format!(
                "node {} of pool {} is down: {}",
                node.id,
                pool.name,
                node.error.as_deref().unwrap_or("no answer")
            ));
        }
        for node in &pool.nodes {
            if let Some(witness) = node.witness.as_ref().filter(|w| w.self_fenced) {
                problems.push(format!(
                    "node {} of pool {} has fenced itself: it hears neither its partner nor \
                     witness {}, and answers its users' writes 503",
                    node.id, pool.name, witness.witness
                ));
            }
        }
        for group in &pool.groups_without_quorum {
            problems.push(format!(
                "group {group} (on pool {}) has no quorum: its users get 503",
                pool.name
            ));
        }
        for group in &pool.groups_without_leader {
            if !pool.groups_without_quorum.contains(group) {
                problems.push(format!(
                    "group {group} (on pool {}) has no leader",
                    pool.name
                ));
            }
        }
        pools.push(pool);
    }
    let replication = directions(&gathered, &name);
    for direction in replication.iter().filter(|d| !d.within_rpo) {
        problems.push(format!(
            "replication {} → {}: {} behind, {} stopped, lag up to {} ms (target {} ms)",
            direction.from,
            direction.to,
            direction.behind,
            direction.stopped,
            direction.lag_ms_max,
            RPO_TARGET_MS
        ));
    }
    let sites = deployment
        .site
        .iter()
        .map(|site| SiteView {
            name: site.name.clone(),
            pools: deployment
                .pool
                .iter()
                .filter(|pool| pool.site == site.name)
                .map(|pool| pool.name.clone())
                .collect(),
        })
        .collect();
    let cms = gathered.cms.as_ref().map(|cms| CmsSummary {
        pool: name(cms.pool),
        users: cms.users,
        applied: cms.applied,
        ownership: cms
            .ownership
            .iter()
            .map(|(&pool, &(owner, epoch))| OwnershipView {
                pool: name(pool),
                owner: name(owner),
                epoch,
            })
            .collect(),
    });
    Overview {
        deployment: deployment.deployment.name.clone(),
        seen_by: gathered.seen_by,
        generated_ms: gathered.now_ms,
        rpo_target_ms: RPO_TARGET_MS,
        healthy: problems.is_empty(),
        problems,
        sites,
        pools,
        replication,
        backup: gathered.backup.clone(),
        cms,
    }
}

fn pool_view(gathered: &Gathered<'_>, id: PoolId, name: &impl Fn(PoolId) -> String) -> PoolView {
    let deployment = gathered.deployment;
    let mut nodes = Vec::new();
    // Per group key: (node, that node's JSON view of the group).
    let mut groups: BTreeMap<String, Vec<(NodeId, &Value)>> = BTreeMap::new();
    for spec in deployment.nodes_of(id) {
        let mut node = NodeView {
            id: spec.id,
            http: spec.http.map(|a| a.to_string()),
            sip: spec.sip.map(|a| a.to_string()),
            ..NodeView::default()
        };
        match gathered.statuses.get(&spec.id) {
            Some(Ok(status)) => {
                node.up = true;
                node.version = status["version"].as_str().map(str::to_string);
                node.directory_users = status["directory_users"].as_u64();
                node.witness = serde_json::from_value(status["store"]["witness"].clone()).ok();
                for group in status["store"]["groups"].as_array().into_iter().flatten() {
                    let Some(key) = group["key"].as_str() else {
                        continue;
                    };
                    node.replicas += 1;
                    if group["state"] == "Leader" {
                        *node.leads.entry(kind_of(key).to_string()).or_default() += 1;
                    }
                    if kind_of(key) == "routing" {
                        node.bindings += group["bindings"].as_u64().unwrap_or(0);
                    }
                    let lag = group["committed"]
                        .as_u64()
                        .unwrap_or(0)
                        .saturating_sub(group["applied"].as_u64().unwrap_or(0));
                    node.apply_lag_entries = node.apply_lag_entries.max(lag);
                    groups
                        .entry(key.to_string())
                        .or_default()
                        .push((spec.id, group));
                }
            }
            Some(Err(error)) => node.error = Some(error.clone()),
            None => node.error = Some("not asked".into()),
        }
        nodes.push(node);
    }
    let up: Vec<NodeId> = nodes.iter().filter(|n| n.up).map(|n| n.id).collect();
    let group_table: Vec<GroupView> = groups
        .iter()
        .map(|(key, replicas)| group_view(key, replicas))
        .collect();
    let groups_without_leader = group_table
        .iter()
        .filter(|group| group.leader.is_none())
        .map(|group| group.key.clone())
        .collect();
    let groups_without_quorum = groups
        .iter()
        .zip(&group_table)
        .filter(|((_, replicas), group)| {
            !has_quorum(group, replicas, &up, gathered.quorum_ack_limit_ms)
        })
        .map(|(_, group)| group.key.clone())
        .collect();
    let home = |key: &str| kind_of(key) == "routing" && key.starts_with(&format!("{id}/"));
    let (aors, bindings) = group_table
        .iter()
        .filter(|group| home(&group.key))
        .fold((0, 0), |(a, b), group| (a + group.aors, b + group.bindings));
    let spec = deployment.pool(id);
    let cms = gathered.cms.as_ref();
    PoolView {
        id,
        name: name(id),
        site: spec.map_or_else(String::new, |s| s.site.clone()),
        partner: deployment.partner(id).map(name),
        groups: spec.map_or(0, |s| s.groups),
        owner: cms
            .and_then(|c| c.ownership.get(&id))
            .map(|(owner, _)| name(*owner)),
        epoch: cms.and_then(|c| c.ownership.get(&id)).map(|(_, e)| *e),
        users: cms.map(|c| c.users_homed.get(&id).copied().unwrap_or(0)),
        aors,
        bindings,
        nodes,
        groups_without_leader,
        groups_without_quorum,
        group_table,
    }
}

/// A group from its replicas' reports: the leader is the one a replica in the highest term
/// names (a `Leader` replica confirms it).
fn group_view(key: &str, replicas: &[(NodeId, &Value)]) -> GroupView {
    let term = replicas
        .iter()
        .filter_map(|(_, g)| g["term"].as_u64())
        .max()
        .unwrap_or(0);
    let leader = replicas
        .iter()
        .find(|(_, g)| g["state"] == "Leader" && g["term"].as_u64() == Some(term))
        .map(|(node, _)| *node)
        .or_else(|| {
            replicas
                .iter()
                .filter(|(_, g)| g["term"].as_u64() == Some(term))
                .find_map(|(_, g)| g["leader"].as_u64())
        });
    let at_leader = replicas
        .iter()
        .find(|(node, _)| Some(*node) == leader)
        .or(replicas.first())
        .map(|(_, g)| *g);
    let number = |field: &str| at_leader.and_then(|g| g[field].as_u64());
    GroupView {
        key: key.to_string(),
        leader,
        term,
        committed: number("committed"),
        voters: at_leader
            .and_then(|g| g["voters"].as_array())
            .map(|voters| voters.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default(),
        replicas: replicas
            .iter()
            .map(|(node, g)| ReplicaView {
                node: *node,
                state: g["state"].as_str().unwrap_or("?").to_string(),
                applied: g["applied"].as_u64(),
            })
            .collect(),
        aors: number("aors").unwrap_or(0),
        bindings: number("bindings").unwrap_or(0),
    }
}

/// A majority of the group's voters answered, and its leader (if it answered) heard from a
/// quorum lately.
fn has_quorum(
    group: &GroupView,
    replicas: &[(NodeId, &Value)],
    up: &[NodeId],
    ack_limit_ms: u64,
) -> bool {
    if group.leader.is_none() {
        return false;
    }
    let voters_up = group.voters.iter().filter(|v| up.contains(v)).count();
    if !group.voters.is_empty() && voters_up * 2 <= group.voters.len() {
        return false;
    }
    let leader_report = replicas
        .iter()
        .find(|(node, g)| Some(*node) == group.leader && g["state"] == "Leader");
    match leader_report.and_then(|(_, g)| g["millis_since_quorum_ack"].as_u64()) {
        Some(millis) => millis <= ack_limit_ms,
        None => true,
    }
}

/// `routing`, `backup` or `cms` for a group key's text.
pub fn kind_of(key: &str) -> &'static str {
    let kind = key.split_once('/').map_or(key, |(_, kind)| kind);
    if kind.starts_with("routing-") {
        "routing"
    } else if kind.starts_with("backup-") {
        "backup"
    } else {
        "cms"
    }
}

/// One line per direction of the backup report: a stream's source pool is its key's pool.
fn directions(gathered: &Gathered<'_>, name: &impl Fn(PoolId) -> String) -> Vec<DirectionView> {
    let deployment = gathered.deployment;
    let mut lines = Vec::new();
    for pair in &deployment.pair {
        for (from, to) in [
            (&pair.pools[0], &pair.pools[1]),
            (&pair.pools[1], &pair.pools[0]),
        ] {
            let Some(source) = deployment.pool_by_name(from) else {
                continue;
            };
            let streams: Vec<_> = gathered
                .backup
                .iter()
                .flat_map(|report| &report.streams)
                .filter(|s| s.source.starts_with(&format!("{}/", source.id)))
                .collect();
            let count = |state: StreamState| streams.iter().filter(|s| s.state == state).count();
            let lag_ms_max = streams.iter().map(|s| s.lag_ms).max().unwrap_or(0);
            let (steady, behind, stopped) = (
                count(StreamState::Steady),
                count(StreamState::Behind),
                count(StreamState::Stopped),
            );
            // No report at all (it timed out) is not "within" anything.
            let reported = gathered.backup.is_some();
            lines.push(DirectionView {
                from: name(source.id),
                to: to.clone(),
                streams: streams.len(),
                steady,
                behind,
                stopped,
                lag_ms_max,
                lag_entries_max: streams.iter().map(|s| s.lag_entries).max().unwrap_or(0),
                within_rpo: reported && behind == 0 && stopped == 0 && lag_ms_max <= RPO_TARGET_MS,
            });
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOPOLOGY: &str = "[deployment]\nname = \"acme\"\n[[site]]\nname = \"dc1\"\n\
        [[site]]\nname = \"dc2\"\n\
        [[pool]]\nid = 1\nname = \"a\"\nsite = \"dc1\"\ngroups = 2\n\
        [[pool]]\nid = 2\nname = \"b\"\nsite = \"dc2\"\ngroups = 2\n\
        [[pair]]\npools = [\"a\", \"b\"]\n\
        [[node]]\nid = 1\npool = \"a\"\ncluster = \"127.0.0.1:7001\"\n\
        [[node]]\nid = 2\npool = \"a\"\ncluster = \"127.0.0.1:7002\"\n\
        [[node]]\nid = 3\npool = \"a\"\ncluster = \"127.0.0.1:7003\"\n\
        [[node]]\nid = 4\npool = \"b\"\ncluster = \"127.0.0.1:7004\"\n\
        [[node]]\nid = 5\npool = \"b\"\ncluster = \"127.0.0.1:7005\"\n\
        [[node]]\nid = 6\npool = \"b\"\ncluster = \"127.0.0.1:7006\"\n";

    fn group(key: &str, state: &str, leader: u64, bindings: u64) -> Value {
        json!({"key": key, "state": state, "leader": leader, "term": 2, "committed": 10,
               "applied": 10, "voters": [1, 2, 3], "millis_since_quorum_ack": 20,
               "aors": bindings, "bindings": bindings})
    }

    fn status(groups: Vec<Value>) -> Result<Value, String> {
        Ok(json!({"version": "0.1.0", "directory_users": 5, "store": {"groups": groups}}))
    }

    /// The overview of `statuses` as node 1 sees it, without the CMS or a backup report.
    fn without_cms(
        deployment: &Deployment,
        statuses: BTreeMap<NodeId, Result<Value, String>>,
    ) -> Overview {
        build(Gathered {
            deployment,
            seen_by: 1,
            statuses,
            backup: None,
            cms: None,
            quorum_ack_limit_ms: 1_400,
            now_ms: 1,
        })
    }

    #[test]
    fn a_dead_node_a_lost_quorum_and_registrations_are_shown() {
        let deployment = Deployment::parse(TOPOLOGY).expect("topology");
        let mut statuses = BTreeMap::new();
        // Pool a: node 1 leads routing-0 (7 bindings), node 2 follows; node 3 is down; node 2
        // names node 3 as routing-1's leader, and of its voters {2, 3, 9} only node 2 is up.
        statuses.insert(
            1,
            status(vec![
                group("1/routing-0", "Leader", 1, 7),
                group("1/cms", "Leader", 1, 0),
            ]),
        );
        let mut lonely = group("1/routing-1", "Follower", 3, 4);
        lonely["voters"] = json!([2, 3, 9]);
        statuses.insert(
            2,
            status(vec![group("1/routing-0", "Follower", 1, 7), lonely]),
        );
        statuses.insert(3, Err("connection refused".into()));
        for id in 4..=6 {
            statuses.insert(id, status(vec![]));
        }
        let overview = build(Gathered {
            deployment: &deployment,
            seen_by: 1,
            statuses,
            backup: None,
            cms: Some(CmsView {
                pool: 1,
                users: 5,
                users_homed: BTreeMap::from([(1, 3), (2, 2)]),
                ownership: BTreeMap::from([(1, (1, 1)), (2, (2, 3))]),
                applied: Some(9),
            }),
            quorum_ack_limit_ms: 1_400,
            now_ms: 1,
        });
        let a = &overview.pools[0];
        assert!(!a.nodes[2].up);
        assert_eq!(a.nodes[0].leads.get("routing"), Some(&1));
        assert_eq!(a.nodes[0].leads.get("cms"), Some(&1));
        assert_eq!(a.bindings, 7 + 4);
        assert_eq!(a.groups_without_quorum, vec!["1/routing-1".to_string()]);
        assert!(a.groups_without_leader.is_empty());
        assert_eq!(overview.pools[1].epoch, Some(3));
        assert_eq!(overview.pools[1].users, Some(2));
        assert!(!overview.healthy);
        assert!(overview.problems[0].contains("node 3 of pool a is down"));
        assert!(overview.problems.iter().any(|p| p.contains("1/routing-1")));
        // No backup report: neither direction counts as within the RPO.
        assert_eq!(overview.replication.len(), 2);
        assert!(overview.replication.iter().all(|d| !d.within_rpo));
        assert_eq!(overview.sites[1].pools, vec!["b".to_string()]);
    }

    #[test]
    fn a_leader_cut_off_from_its_quorum_has_none() {
        let deployment = Deployment::parse(TOPOLOGY).expect("topology");
        let mut cut_off = group("1/routing-0", "Leader", 1, 0);
        cut_off["millis_since_quorum_ack"] = json!(5_000);
        let mut statuses: BTreeMap<NodeId, Result<Value, String>> =
            (1..=6).map(|id| (id, status(vec![]))).collect();
        statuses.insert(1, status(vec![cut_off]));
        let overview = without_cms(&deployment, statuses);
        assert_eq!(overview.pools[0].groups_without_quorum, ["1/routing-0"]);
        assert_eq!(kind_of("2/backup-3"), "backup");
        assert_eq!(kind_of("1/cms-backup"), "cms");
    }

    #[test]
    fn each_node_shows_its_witness_and_a_fenced_one_is_a_problem() {
        let deployment = Deployment::parse(TOPOLOGY).expect("topology");
        let mut statuses: BTreeMap<NodeId, Result<Value, String>> =
            (1..=6).map(|id| (id, status(vec![]))).collect();
        let with_witness = |heard: Option<u64>, lease: u64, fenced: bool| {
            Ok(
                json!({"version": "0.1.0", "store": {"groups": [], "witness": {
                "witness": 100, "heard_ms_ago": heard, "lease_left_ms": lease,
                "self_fenced": fenced}}}),
            )
        };
        statuses.insert(1, with_witness(Some(400), 7_600, false));
        statuses.insert(2, with_witness(Some(9_000), 0, true));
        statuses.insert(3, with_witness(None, 0, true));
        let overview = without_cms(&deployment, statuses);
        let a = &overview.pools[0];
        assert_eq!(
            a.nodes[0].witness,
            Some(WitnessLease {
                witness: 100,
                heard_ms_ago: Some(400),
                lease_left_ms: 7_600,
                self_fenced: false,
            })
        );
        assert_eq!(
            a.nodes[2].witness.as_ref().map(|w| w.heard_ms_ago),
            Some(None)
        );
        assert_eq!(overview.pools[1].nodes[0].witness, None, "no witness");
        let fenced: Vec<&String> = overview
            .problems
            .iter()
            .filter(|problem| problem.contains("has fenced itself"))
            .collect();
        assert_eq!(fenced.len(), 2, "{:?}", overview.problems);
        assert!(
            fenced[0].contains("node 2 of pool a") && fenced[0].contains("witness 100"),
            "{fenced:?}"
        );
    }
}
