//! The backup service's status as this node serves it: `PoolNode::backup_report` (every
//! stream of both directions, gathered from both pools) shaped into the documented JSON of
//! `admin_api::backup` ([`BackupStatus`], `GET /api/v1/backup`), and the per-direction summary
//! gauges (`roster_backup_direction_*`) alerting reads instead of per-group series.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use roster_net::Network;
use roster_pool::ownership::OwnershipView;
use roster_pool::report::BackupReport;
use roster_pool::shipper::{StreamState, StreamStatus, STEADY_LAG};
use roster_pool::PoolNode;
use roster_raft::GroupKey;
use roster_topology::{Deployment, NodeId, PoolId};

use crate::admin_api::backup::{state, BackupStatus, Direction, StreamView};
use crate::admin_api::users::PoolName;
use crate::clock::now_ms;
use crate::http::BackupSource;
use crate::telemetry;

/// Detail of a stream no node reported: its source's pool did not answer, or none of its
/// nodes leads the source and none of the partner's leads the copy.
const UNREPORTED: &str = "no node reported this stream (its pools did not answer, or are electing)";

/// [`BackupSource`] over a pool node.
pub struct Backup<N: Network> {
    node: Arc<PoolNode<N>>,
    deployment: Arc<Deployment>,
}

impl<N: Network> Backup<N> {
    /// The backup status of `node`'s pool and its partner, as `deployment` lays them out.
    pub fn new(node: Arc<PoolNode<N>>, deployment: Deployment) -> Backup<N> {
        Backup {
            node,
            deployment: Arc::new(deployment),
        }
    }

    /// Gathers the status now (within `roster_pool`'s per-node timeouts).
    pub async fn status(&self) -> BackupStatus {
        let report = self.node.backup_report().await;
        status(
            &report,
            &self.deployment,
            &self.node.ownership_view(),
            self.node.pool(),
            self.node.node_id(),
            now_ms(),
        )
    }
}

impl<N: Network> BackupSource for Backup<N> {
    fn backup(&self) -> Pin<Box<dyn Future<Output = serde_json::Value> + Send>> {
        let backup = Backup {
            node: self.node.clone(),
            deployment: self.deployment.clone(),
        };
        Box::pin(async move {
            let status = backup.status().await;
            serde_json::to_value(status).unwrap_or_else(
                |error| serde_json::json!({ "error": format!("cannot encode: {error}") }),
            )
        })
    }
}

/// The document for `pool` (whose node `node` answers) from `report`: this pool's groups to
/// its partner, then the partner's here, each listing every source group it should have as
/// `ownership` says (after a failover a pool ships its copies of the partner's groups, and
/// after a CMS failover its copy of the CMS, back to the partner).
pub fn status(
    report: &BackupReport,
    deployment: &Deployment,
    ownership: &OwnershipView,
    pool: PoolId,
    node: NodeId,
    generated_at_ms: u64,
) -> BackupStatus {
    let mut reported: BTreeMap<GroupKey, &StreamStatus> = BTreeMap::new();
    for stream in &report.streams {
        if let Ok(key) = stream.source.parse::<GroupKey>() {
            reported.insert(key, stream);
        }
    }
    let directions = match deployment.partner(pool) {
        None => Vec::new(),
        Some(partner) => [(pool, partner), (partner, pool)]
            .into_iter()
            .map(|(source, copy)| direction(deployment, ownership, source, copy, &reported))
            .collect(),
    };
    BackupStatus {
        pool: PoolName::of(deployment, pool),
        node,
        generated_at_ms,
        steady_lag_s: STEADY_LAG.as_secs_f64(),
        directions,
        unreachable: report.unreachable.clone(),
    }
}

/// Every stream from `source` to `copy`: one per routing group of each pool whose users
/// `source` owns (its own, or its partner's after a failover: shipped from its copies), and the
/// CMS's when `source` holds it (at home, or its copy after a CMS failover).
fn direction(
    deployment: &Deployment,
    ownership: &OwnershipView,
    source: PoolId,
    copy: PoolId,
    reported: &BTreeMap<GroupKey, &StreamStatus>,
) -> Direction {
    let mut keys: Vec<GroupKey> = Vec::new();
    for home in [source, copy] {
        let owner = ownership.pools.get(&home).map_or(home, |owned| owned.owner);
        if owner != source {
            continue;
        }
        let groups = deployment.pool(home).map_or(0, |spec| spec.groups);
        keys.extend((0..groups).map(|group| GroupKey::routing(home, group).held_in(source)));
    }
    let cms = deployment.cms_pool();
    let cms_owner = ownership.cms.map_or(cms, |owned| owned.owner);
    if cms_owner == source && (cms == source || cms == copy) {
        keys.push(GroupKey::cms(cms).held_in(source));
    }
    // A stream reported that the layout does not name (a deployment or an owner changed since)
    // is shown too: nothing reported is hidden.
    for key in reported.keys() {
        if shipping_pool(deployment, *key) == Some(source) && !keys.contains(key) {
            keys.push(*key);
        }
    }
    keys.sort();
    let views: Vec<StreamView> = keys
        .iter()
        .map(|key| match reported.get(key) {
            Some(stream) => view(stream),
            None => unreported(*key),
        })
        .collect();
    let count = |state: &str| views.iter().filter(|view| view.state == state).count();
    Direction {
        source: PoolName::of(deployment, source),
        copy: PoolName::of(deployment, copy),
        streams: views.len(),
        steady: count(state::STEADY),
        behind: count(state::BEHIND),
        stopped: count(state::STOPPED),
        lag_entries_max: views.iter().map(|view| view.lag_entries).max().unwrap_or(0),
        lag_seconds_max: views
            .iter()
            .map(|view| view.lag_seconds)
            .fold(0.0, f64::max),
        groups: views,
    }
}

/// The pool that holds group `key`, and ships it when it is a source: its home pool, or for a
/// copy the home pool's partner.
fn shipping_pool(deployment: &Deployment, key: GroupKey) -> Option<PoolId> {
    if key.is_home() {
        Some(key.pool)
    } else {
        deployment.partner(key.pool)
    }
}

/// A reported stream as the document shows it. A shipper's leader is never node 0: 0 marks a
/// line built from a copy's position alone, whose source nobody reported.
fn view(stream: &StreamStatus) -> StreamView {
    let shipped = stream.leader != 0;
    StreamView {
        source: stream.source.clone(),
        copy: stream.copy.clone(),
        leader: shipped.then_some(stream.leader),
        source_index: shipped.then_some(stream.source_index),
        source_time_ms: (stream.source_time_ms != 0).then_some(stream.source_time_ms),
        partner_index: stream.partner_index,
        lag_entries: stream.lag_entries,
        lag_seconds: stream.lag_ms as f64 / 1000.0,
        state: match stream.state {
            StreamState::Steady => state::STEADY,
            StreamState::Behind => state::BEHIND,
            StreamState::Stopped => state::STOPPED,
        }
        .to_string(),
        detail: stream.detail.clone(),
        restores: stream.restores,
    }
}

/// A stream no node reported: stopped.
fn unreported(source: GroupKey) -> StreamView {
    StreamView {
        source: source.to_string(),
        copy: roster_pool::shipper::counterpart(source)
            .map_or_else(String::new, |copy| copy.to_string()),
        leader: None,
        source_index: None,
        source_time_ms: None,
        partner_index: None,
        lag_entries: 0,
        lag_seconds: 0.0,
        state: state::STOPPED.to_string(),
        detail: Some(UNREPORTED.to_string()),
        restores: 0,
    }
}

/// Sets the per-direction summary gauges from `status`: every node reports the whole
/// deployment's view, so alerts aggregate them with `max`, not `sum`.
pub fn record_gauges(status: &BackupStatus) {
    for direction in &status.directions {
        let (source, copy) = (&direction.source.name, &direction.copy.name);
        metrics::gauge!(telemetry::BACKUP_DIRECTION_LAG_SECONDS,
            "source_pool" => source.clone(), "copy_pool" => copy.clone())
        .set(direction.lag_seconds_max);
        metrics::gauge!(telemetry::BACKUP_DIRECTION_LAG_ENTRIES,
            "source_pool" => source.clone(), "copy_pool" => copy.clone())
        .set(direction.lag_entries_max as f64);
        for (state, count) in [
            (state::STEADY, direction.steady),
            (state::BEHIND, direction.behind),
            (state::STOPPED, direction.stopped),
        ] {
            metrics::gauge!(telemetry::BACKUP_DIRECTION_STREAMS,
                "source_pool" => source.clone(), "copy_pool" => copy.clone(), "state" => state)
            .set(count as f64);
        }
    }
    metrics::gauge!(telemetry::BACKUP_UNREACHABLE_NODES).set(status.unreachable.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::paired_deployment;

    fn stream(source: GroupKey, leader: u64, lag_ms: u64, state: StreamState) -> StreamStatus {
        StreamStatus {
            source: source.to_string(),
            copy: source.copy().expect("a source").to_string(),
            leader,
            source_index: 1_000,
            source_time_ms: 1_700_000_000_000,
            partner_index: Some(1_000 - lag_ms / 10),
            lag_entries: lag_ms / 10,
            lag_ms,
            state,
            detail: None,
            restores: 0,
        }
    }

    #[test]
    fn both_directions_list_every_group_and_sum_up() {
        let report = BackupReport {
            streams: vec![
                stream(GroupKey::routing(1, 0), 1, 0, StreamState::Steady),
                stream(GroupKey::routing(1, 1), 2, 40, StreamState::Steady),
                stream(GroupKey::routing(1, 2), 3, 2_500, StreamState::Behind),
                stream(GroupKey::cms(1), 1, 0, StreamState::Steady),
                stream(GroupKey::routing(2, 0), 4, 10, StreamState::Steady),
            ],
            unreachable: vec!["pool 2 node 6: timed out".into()],
        };
        let status = status(
            &report,
            &paired_deployment("east"),
            &OwnershipView::default(),
            2,
            5,
            42,
        );
        assert_eq!((status.pool.name.as_str(), status.node), ("west", 5));
        assert_eq!(status.directions.len(), 2);
        let here = &status.directions[0];
        assert_eq!(
            (here.source.name.as_str(), here.copy.name.as_str()),
            ("west", "east")
        );
        assert_eq!((here.streams, here.steady, here.stopped), (2, 1, 1));
        let missing = &here.groups[1];
        assert_eq!(missing.source, "2/routing-1");
        assert_eq!(missing.copy, "2/backup-1");
        assert_eq!((missing.state.as_str(), missing.leader), ("stopped", None));
        let there = &status.directions[1];
        assert_eq!(there.source.name, "east");
        assert_eq!(
            (there.streams, there.steady, there.behind, there.stopped),
            (4, 3, 1, 0)
        );
        assert_eq!(there.lag_entries_max, 250);
        assert!((there.lag_seconds_max - 2.5).abs() < 1e-9);
        let sources: Vec<&str> = there.groups.iter().map(|g| g.source.as_str()).collect();
        assert_eq!(
            sources,
            ["1/routing-0", "1/routing-1", "1/routing-2", "1/cms"]
        );
        assert_eq!(status.unreachable, ["pool 2 node 6: timed out"]);
    }

    #[test]
    fn a_copy_without_a_shipper_shows_its_position_and_no_source() {
        let mut lone = stream(GroupKey::routing(2, 0), 0, 0, StreamState::Stopped);
        lone.source_index = 0;
        lone.source_time_ms = 0;
        lone.partner_index = Some(77);
        let report = BackupReport {
            streams: vec![lone],
            unreachable: Vec::new(),
        };
        let status = status(
            &report,
            &paired_deployment("east"),
            &OwnershipView::default(),
            1,
            1,
            42,
        );
        let view = &status.directions[1].groups[0];
        assert_eq!(
            (view.leader, view.source_index, view.partner_index),
            (None, None, Some(77))
        );
        assert_eq!(view.state, "stopped");
        // The CMS lives on east: west's direction has no CMS line.
        assert!(status.directions[1]
            .groups
            .iter()
            .all(|g| !g.source.ends_with("cms")));
    }

    #[test]
    fn after_failovers_the_partner_ships_its_copies_and_the_cms_home() {
        use roster_cms::Ownership;
        // West owns east's users and holds the CMS (a CMS failover, then east's failover).
        let ownership = OwnershipView {
            pools: BTreeMap::from([
                (1, Ownership { owner: 2, epoch: 2 }),
                (2, Ownership { owner: 2, epoch: 1 }),
            ]),
            cms: Some(Ownership { owner: 2, epoch: 2 }),
        };
        let cms_copy = GroupKey::cms(1).copy().expect("the CMS has a copy");
        let mut home = stream(GroupKey::routing(1, 0), 0, 0, StreamState::Steady);
        home.copy = "1/routing-0".into();
        home.source = "1/backup-0".into();
        home.leader = 4;
        let mut cms = home.clone();
        cms.source = cms_copy.to_string();
        cms.copy = "1/cms".into();
        let report = BackupReport {
            streams: vec![home, cms],
            unreachable: Vec::new(),
        };
        let status = status(&report, &paired_deployment("east"), &ownership, 2, 4, 42);
        let back = &status.directions[0];
        assert_eq!(
            (back.source.name.as_str(), back.copy.name.as_str()),
            ("west", "east")
        );
        let sources: Vec<&str> = back.groups.iter().map(|g| g.source.as_str()).collect();
        assert_eq!(
            sources,
            [
                "1/backup-0",
                "1/backup-1",
                "1/backup-2",
                "1/cms-backup",
                "2/routing-0",
                "2/routing-1"
            ]
        );
        let cms_line = &back.groups[3];
        assert_eq!(
            (cms_line.copy.as_str(), cms_line.state.as_str()),
            ("1/cms", "steady")
        );
        // The copies' own streams back are not shipped yet: listed, stopped.
        assert_eq!(back.groups[1].copy, "1/routing-1");
        assert_eq!(back.groups[1].state, "stopped");
        // East owns nothing now: its direction is empty.
        assert_eq!(status.directions[1].streams, 0);
    }

    #[test]
    fn a_pool_without_a_partner_has_no_directions() {
        let text = "[deployment]\nname = \"t\"\n[[site]]\nname = \"a\"\n\
                    [[pool]]\nid = 1\nname = \"solo\"\nsite = \"a\"\n\
                    [[node]]\nid = 1\npool = \"solo\"\ncluster = \"127.0.0.1:7001\"\n\
                    [[node]]\nid = 2\npool = \"solo\"\ncluster = \"127.0.0.1:7002\"\n\
                    [[node]]\nid = 3\npool = \"solo\"\ncluster = \"127.0.0.1:7003\"\n";
        let deployment = Deployment::parse(text).expect("valid");
        let status = status(
            &BackupReport::default(),
            &deployment,
            &OwnershipView::default(),
            1,
            1,
            42,
        );
        assert!(status.directions.is_empty());
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["directions"], serde_json::json!([]));
    }
}
