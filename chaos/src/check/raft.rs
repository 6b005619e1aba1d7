//! Raft's own rules, from every node's `/status` sampled during the run ([`StatusSample`]):
//!
//! - election safety: at most one leader per group and leader id. With openraft's standard
//!   leader ids that is one leader per term; Roster declares `leader_id_adv`
//!   ([`leader_ids_are_per_node`]), where a term may have several leaders, ordered by node id
//!   (a vote for (term 4, node 3) refuses (term 4, node 2)), so what holds is the next rule;
//! - a node's view of a group's leader id, (term, leader), never goes back (the vote is
//!   durable, restarts included);
//! - within one life of a replica, its applied index never goes back. A life is one process
//!   start and, inside it, one opening of the replica: a node opens a replica again from its
//!   disk after its Raft stopped (a full disk), and the status names each opening by its
//!   `generation`;
//! - health: a node that reports a group `Shutdown` (its replica stopped for good, e.g. on a
//!   storage error) must not answer `/health` with 200;
//! - recovery: once everything is healed, no replica stays `Shutdown` (a node recovers by
//!   itself when its disk has room again).
//!
//! Fed sample by sample ([`RaftChecker::observe`]), so a long run keeps only the claims, not
//! the samples.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::check::CheckerResult;
use crate::history::Deployment;

/// One group as one node reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupSample {
    /// The routing group.
    pub group: u32,
    /// openraft's server state: `Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`.
    pub state: String,
    /// The current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// The last applied index.
    pub applied: Option<u64>,
    /// Which opening of a replica on the node this is (0 when the node does not say).
    pub generation: u64,
}

/// One node's status at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusSample {
    /// When, from the run's start.
    pub at: Duration,
    /// The node (index into the deployment).
    pub node: usize,
    /// Which start of the node's process this is (0 for the first).
    pub incarnation: u64,
    /// The node's pool epoch.
    pub epoch: Option<u64>,
    /// Whether `/health` answered 200; `None` when it did not answer.
    pub healthy: Option<bool>,
    /// Its replicas.
    pub groups: Vec<GroupSample>,
}

/// Whether the pool's Raft groups use openraft's advanced leader ids, (term, node id), under
/// which one term may have several leaders: read from `roster_raft`'s type configuration, so
/// the checker follows a change there.
pub fn leader_ids_are_per_node() -> bool {
    std::any::type_name::<roster_raft::typ::LeaderId>().contains("leader_id_adv")
}

/// The accumulated claims and findings.
#[derive(Debug, Default)]
pub struct RaftChecker {
    /// (node, group) → the highest (term, leader) the node reported.
    votes: BTreeMap<(usize, u32), (u64, u64)>,
    /// (pool, group, term) → the nodes that claimed to lead it, with the first time.
    leaders: BTreeMap<(String, u32, u64), BTreeMap<usize, Duration>>,
    /// (node, group) → highest term seen.
    terms: BTreeMap<(usize, u32), u64>,
    /// (node, incarnation, group, generation) → highest applied index seen.
    applied: BTreeMap<(usize, u64, u32, u64), u64>,
    /// Nodes found claiming health while a group was shut down, with the first time.
    lying_health: BTreeMap<usize, (Duration, u32)>,
    /// Nodes that reported a group shut down at all (first time, group).
    shutdown: BTreeMap<usize, (Duration, u32)>,
    /// Per node: its latest sample's time and the groups it reported `Shutdown` then.
    latest_shutdown: BTreeMap<usize, (Duration, Vec<u32>)>,
    regressions: Vec<String>,
    samples: u64,
    /// Latest leader of each (pool, group) by the newest sample.
    latest_leaders: BTreeMap<(String, u32), (Duration, usize)>,
}

impl RaftChecker {
    /// Takes in one sample.
    pub fn observe(&mut self, sample: &StatusSample, deployment: &Deployment) {
        self.samples += 1;
        let pool = deployment
            .nodes
            .get(sample.node)
            .map(|node| node.pool.clone())
            .unwrap_or_default();
        let mut shut_down = None;
        let mut shut_down_groups = Vec::new();
        for group in &sample.groups {
            if group.state == "Leader" {
                self.leaders
                    .entry((pool.clone(), group.group, group.term))
                    .or_default()
                    .entry(sample.node)
                    .or_insert(sample.at);
                self.latest_leaders
                    .insert((pool.clone(), group.group), (sample.at, sample.node));
            }
            if group.state == "Shutdown" {
                shut_down.get_or_insert(group.group);
                shut_down_groups.push(group.group);
            }
            // A replica opened a moment ago (a node's start, or its reopening after a full
            // disk) reports openraft's initial metrics, term 0, until its core has loaded the
            // durable vote: that says nothing of the vote. A vote lost would show as a lower
            // non-zero term or leader id, or an applied index going back, all checked.
            if group.term > 0 {
                let term = self.terms.entry((sample.node, group.group)).or_insert(0);
                if group.term < *term {
                    self.regressions.push(format!(
                        "node {} group {}: term went back from {} to {} at {:.3} s",
                        sample.node,
                        group.group,
                        term,
                        group.term,
                        sample.at.as_secs_f64()
                    ));
                }
                *term = (*term).max(group.term);
                if let Some(leader) = group.leader {
                    let vote = (group.term, leader);
                    let known = self.votes.entry((sample.node, group.group)).or_insert(vote);
                    if vote < *known {
                        self.regressions.push(format!(
                            "node {} group {}: leader id went back from (term {}, node {}) to (term {}, node {leader}) at {:.3} s",
                            sample.node,
                            group.group,
                            known.0,
                            known.1,
                            group.term,
                            sample.at.as_secs_f64()
                        ));
                    }
                    *known = (*known).max(vote);
                }
            }
            if let Some(applied) = group.applied {
                let known = self
                    .applied
                    .entry((
                        sample.node,
                        sample.incarnation,
                        group.group,
                        group.generation,
                    ))
                    .or_insert(0);
                if applied < *known {
                    self.regressions.push(format!(
                        "node {} group {}: applied index went back from {} to {applied} at {:.3} s",
                        sample.node,
                        group.group,
                        known,
                        sample.at.as_secs_f64()
                    ));
                }
                *known = (*known).max(applied);
            }
        }
        self.latest_shutdown
            .insert(sample.node, (sample.at, shut_down_groups));
        if let Some(group) = shut_down {
            self.shutdown
                .entry(sample.node)
                .or_insert((sample.at, group));
            if sample.healthy == Some(true) {
                self.lying_health
                    .entry(sample.node)
                    .or_insert((sample.at, group));
            }
        }
    }

    /// Every group's latest known leader, for the nemesis.
    pub fn leaders(&self) -> Vec<(u32, usize)> {
        self.latest_leaders
            .iter()
            .map(|((_, group), (_, node))| (*group, *node))
            .collect()
    }

    /// The findings; `healed_at` is when the last fault was healed (and the load settled):
    /// replicas still `Shutdown` in a later sample did not recover.
    pub fn result(&self, deployment: &Deployment, healed_at: Duration) -> CheckerResult {
        let mut result = CheckerResult::new("raft");
        let name = |node: usize| {
            deployment
                .nodes
                .get(node)
                .map_or_else(|| node.to_string(), ToString::to_string)
        };
        let per_node = leader_ids_are_per_node();
        let mut shared_terms = 0u64;
        for ((pool, group, term), claims) in &self.leaders {
            if claims.len() > 1 && per_node {
                // Allowed: distinct leader ids (term, node); the vote order is checked per node.
                shared_terms += 1;
            } else if claims.len() > 1 {
                let who: BTreeSet<String> = claims
                    .iter()
                    .map(|(node, at)| format!("{} at {:.3} s", name(*node), at.as_secs_f64()))
                    .collect();
                result.anomaly(format!(
                    "pool {pool} group {group} term {term}: two leaders ({})",
                    who.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for regression in &self.regressions {
            result.anomaly(regression.clone());
        }
        for (node, (at, group)) in &self.lying_health {
            result.anomaly(format!(
                "node {} answered /health 200 at {:.3} s while its group {group} was Shutdown",
                name(*node),
                at.as_secs_f64()
            ));
        }
        for (node, (at, groups)) in &self.latest_shutdown {
            if *at >= healed_at && !groups.is_empty() {
                result.anomaly(format!(
                    "node {}: groups {groups:?} still Shutdown at {:.3} s, after the last heal at {:.3} s",
                    name(*node),
                    at.as_secs_f64(),
                    healed_at.as_secs_f64()
                ));
            }
        }
        result.checked = format!(
            "{} status samples, {} (group, term) leaderships",
            self.samples,
            self.leaders.len()
        );
        result.figures.insert("samples".into(), self.samples as f64);
        result
            .figures
            .insert("terms_with_leader".into(), self.leaders.len() as f64);
        result
            .figures
            .insert("terms_with_several_leaders".into(), shared_terms as f64);
        result.figures.insert(
            "nodes_with_shutdown_groups".into(),
            self.shutdown.len() as f64,
        );
        result
    }
}

/// A status document (`GET /status`) as samples of its groups, with the epoch.
/// The number a replica is checked under: a routing group's own number (what one pool's
/// reports have always said), a backup copy of the partner's group `g` as `1000 + g`, the CMS as
/// 2000 and its copy as 2001, so that a pool's routing group and the copy of its partner's
/// group of the same number, on one node, are never taken for one group. From the status's
/// `key` (`1/routing-7`), else its `group` number.
pub fn sample_group(group: &serde_json::Value) -> Option<u32> {
    use roster_raft::GroupKind;
    let Some(key) = group["key"]
        .as_str()
        .and_then(|key| key.parse::<roster_raft::GroupKey>().ok())
    else {
        return u32::try_from(group["group"].as_u64()?).ok();
    };
    Some(match key.kind {
        GroupKind::Routing(number) => number,
        GroupKind::Backup(number) => BACKUP_COPY_OFFSET + number,
        GroupKind::Cms => BACKUP_COPY_OFFSET * 2,
        GroupKind::CmsBackup => BACKUP_COPY_OFFSET * 2 + 1,
    })
}

/// See [`sample_group`]; above any pool's routing groups (at most 64 in a scenario).
pub const BACKUP_COPY_OFFSET: u32 = 1000;

/// Reads a node's `/status`: (its pool's epoch, its replicas).
pub fn parse_status(body: &str) -> Option<(Option<u64>, Vec<GroupSample>)> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let store = &value["store"];
    let epoch = store["epoch"].as_u64();
    let groups = store["groups"]
        .as_array()?
        .iter()
        .filter_map(|group| {
            Some(GroupSample {
                group: sample_group(group)?,
                state: group["state"].as_str()?.to_owned(),
                term: group["term"].as_u64().unwrap_or(0),
                leader: group["leader"].as_u64(),
                applied: group["applied"].as_u64(),
                generation: group["generation"].as_u64().unwrap_or(0),
            })
        })
        .collect();
    Some((epoch, groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{NodeName, PoolView};

    fn deployment() -> Deployment {
        Deployment {
            pools: vec![PoolView {
                id: 1,
                name: "p".into(),
                groups: 2,
                epoch: 1,
            }],
            nodes: (1..=3)
                .map(|id| NodeName {
                    pool: "p".into(),
                    id,
                })
                .collect(),
        }
    }

    fn sample(node: usize, at_ms: u64, state: &str, term: u64, healthy: bool) -> StatusSample {
        StatusSample {
            at: Duration::from_millis(at_ms),
            node,
            incarnation: 0,
            epoch: Some(1),
            healthy: Some(healthy),
            groups: vec![GroupSample {
                group: 0,
                state: state.into(),
                term,
                leader: None,
                applied: Some(at_ms),
                generation: 1,
            }],
        }
    }

    #[test]
    fn two_leaders_in_one_term_are_caught_and_successive_leaders_are_not() {
        let deployment = deployment();
        let mut checker = RaftChecker::default();
        checker.observe(&sample(0, 0, "Leader", 3, true), &deployment);
        checker.observe(&sample(1, 100, "Leader", 4, true), &deployment);
        assert_eq!(
            checker
                .result(&deployment, Duration::from_secs(3600))
                .anomalies,
            0
        );
        assert_eq!(checker.leaders(), [(0, 1)]);
        checker.observe(&sample(2, 200, "Leader", 4, true), &deployment);
        let expected = if leader_ids_are_per_node() { 0 } else { 1 };
        assert_eq!(
            checker
                .result(&deployment, Duration::from_secs(3600))
                .anomalies,
            expected
        );
        assert!(
            leader_ids_are_per_node(),
            "roster-raft declares leader_id_adv"
        );
    }

    #[test]
    fn a_term_going_back_and_lying_health_are_caught() {
        let deployment = deployment();
        let mut checker = RaftChecker::default();
        checker.observe(&sample(0, 0, "Follower", 5, true), &deployment);
        checker.observe(&sample(0, 100, "Follower", 4, true), &deployment);
        checker.observe(&sample(1, 100, "Shutdown", 5, false), &deployment);
        assert_eq!(
            checker
                .result(&deployment, Duration::from_secs(3600))
                .anomalies,
            1
        );
        checker.observe(&sample(2, 100, "Shutdown", 5, true), &deployment);
        assert_eq!(
            checker
                .result(&deployment, Duration::from_secs(3600))
                .anomalies,
            2
        );
        // Still shut down after the heal at 50 ms: two nodes did not recover.
        assert_eq!(
            checker
                .result(&deployment, Duration::from_millis(50))
                .anomalies,
            4
        );
    }

    #[test]
    fn a_replica_just_opened_reports_term_zero_without_an_anomaly() {
        let deployment = deployment();
        let mut checker = RaftChecker::default();
        checker.observe(&sample(1, 0, "Follower", 3, true), &deployment);
        // Reopened after a full disk: openraft's initial metrics, then the durable vote.
        checker.observe(&sample(1, 100, "Follower", 0, true), &deployment);
        checker.observe(&sample(1, 200, "Follower", 3, true), &deployment);
        let result = checker.result(&deployment, Duration::from_secs(3600));
        assert_eq!(result.anomalies, 0, "{result:?}");
        // A lower term that is not zero is still a vote gone back.
        checker.observe(&sample(1, 300, "Follower", 2, true), &deployment);
        let result = checker.result(&deployment, Duration::from_secs(3600));
        assert_eq!(result.anomalies, 1, "{result:?}");
    }

    #[test]
    fn a_leader_id_going_back_on_one_node_is_caught() {
        let deployment = deployment();
        let mut checker = RaftChecker::default();
        let mut seen = |at_ms: u64, term: u64, leader: u64| {
            let mut s = sample(0, at_ms, "Follower", term, true);
            s.groups[0].leader = Some(leader);
            checker.observe(&s, &deployment);
        };
        seen(0, 4, 2);
        seen(100, 4, 3);
        seen(200, 5, 1);
        seen(300, 5, 0);
        let result = checker.result(&deployment, Duration::from_secs(3600));
        assert_eq!(result.anomalies, 1, "{result:?}");
    }

    #[test]
    fn an_applied_index_may_start_over_only_in_a_new_life_of_the_replica() {
        let deployment = deployment();
        let mut checker = RaftChecker::default();
        let seen = |checker: &mut RaftChecker, at_ms: u64, applied: u64, generation: u64| {
            let mut s = sample(0, at_ms, "Follower", 3, true);
            s.groups[0].applied = Some(applied);
            s.groups[0].generation = generation;
            checker.observe(&s, &deployment);
        };
        seen(&mut checker, 0, 50, 1);
        // Opened again from disk (generation 2): it replays from its snapshot.
        seen(&mut checker, 100, 40, 2);
        seen(&mut checker, 200, 60, 2);
        let result = checker.result(&deployment, Duration::from_secs(3600));
        assert_eq!(result.anomalies, 0, "{result:?}");
        seen(&mut checker, 300, 55, 2);
        let result = checker.result(&deployment, Duration::from_secs(3600));
        assert_eq!(result.anomalies, 1, "{result:?}");
    }

    #[test]
    fn a_status_document_parses() {
        let body = r#"{"node":"n","store":{"epoch":1,"groups":[{"group":0,"state":"Leader",
            "term":2,"leader":1,"applied":7,"generation":3},{"group":1,"state":"Follower",
            "term":2,"leader":null,"applied":null}]}}"#;
        let (epoch, groups) = parse_status(body).expect("parses");
        assert_eq!(epoch, Some(1));
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].leader, Some(1));
        assert_eq!(groups[0].generation, 3);
        assert_eq!(groups[1].applied, None);
        assert_eq!(groups[1].generation, 0);
    }
}
