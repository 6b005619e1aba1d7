//! A node's periodic work: purging expired bindings, and for a pool node refreshing its
//! per-group and backup gauges, balancing the pool's leaders and following the CMS's directory.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use roster_pool::PoolNode;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backup::Backup;
use crate::clock::now_ms;
use crate::sip::service::Service;
use crate::store::Store;

/// How often the per-group gauges (`roster_group_*`) and the per-node ones (`roster_node_*`)
/// are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Removes expired bindings every `interval`, with an ordinary command, until `shutdown`.
pub(super) async fn purge_expired<S: Store>(
    service: Arc<Service<S>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    every(Instant::now(), interval, &shutdown, || async {
        if let Err(error) = service.store().purge_expired(now_ms()).await {
            warn!(%error, "purge failed");
        }
    })
    .await;
}

/// Refreshes the node's per-group gauges and its per-node ones (`roster_node_*`: a leader
/// that has not heard from a quorum for `quorum_ack_limit_ms` has lost it) until `shutdown`.
pub(super) async fn record_gauges<N: roster_net::Network>(
    node: Arc<PoolNode<N>>,
    quorum_ack_limit_ms: u64,
    shutdown: CancellationToken,
) {
    every(Instant::now(), GAUGE_INTERVAL, &shutdown, || async {
        node.record_gauges();
        crate::telemetry::NodeGauges::count(&node.status(), quorum_ack_limit_ms).record();
    })
    .await;
}

/// How often the per-direction backup gauges (`roster_backup_direction_*`) are refreshed:
/// each refresh asks every node of both pools what it ships (a few small RPCs), and alerting
/// on a lag bound of seconds needs no finer grain.
const BACKUP_GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Refreshes the backup service's per-direction gauges until `shutdown`.
pub(super) async fn record_backup_gauges<N: roster_net::Network>(
    backup: Arc<Backup<N>>,
    shutdown: CancellationToken,
) {
    every(Instant::now(), BACKUP_GAUGE_INTERVAL, &shutdown, || async {
        crate::backup::record_gauges(&backup.status().await);
    })
    .await;
}

/// Every `period`, balances the leaders of the pool's groups when this node leads routing
/// group 0 (see `PoolNode::balance_leaders_if_coordinator`): after a node restarts, elections
/// have left its share of leaderships on the others, and one node leading most groups does
/// most of the pool's work.
pub(super) async fn balance_leaders<N: roster_net::Network>(
    node: Arc<PoolNode<N>>,
    period: Duration,
    shutdown: CancellationToken,
) {
    every(Instant::now() + period, period, &shutdown, || async {
        match node.balance_leaders_if_coordinator().await {
            Ok(Some(transfers)) if transfers > 0 => {
                info!(node = node.node_id(), transfers, "leaders balanced");
            }
            Ok(_) => {}
            // A group without a leader right now: the next run tries again.
            Err(error) => debug!(node = node.node_id(), %error, "leader balancing skipped"),
        }
    })
    .await;
}

/// Runs `work` at `start` and every `period` after, until `shutdown`; a run that overruns
/// delays the next one instead of bunching them.
async fn every<F, Fut>(start: Instant, period: Duration, shutdown: &CancellationToken, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval_at(start, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        work().await;
    }
}

/// Pause after the CMS changes before the directory is rebuilt, so that a burst of changes (an
/// import of thousands of users, hundreds of commands) costs one rebuild, not hundreds.
const DIRECTORY_SETTLE: Duration = Duration::from_millis(250);

/// Longest wait for a CMS change before looking again (and noticing a shutdown).
const DIRECTORY_POLL: Duration = Duration::from_secs(1);

/// Keeps the request path's directory (who may register, with which credentials) equal to this
/// node's copy of the CMS: rebuilt whenever the copy applies new entries, until `shutdown`.
pub(super) async fn sync_directory<S: Store>(
    node: Arc<PoolNode<roster_net::QuicNetwork>>,
    service: Arc<Service<S>>,
    shutdown: CancellationToken,
) {
    let Some(cms) = node.options().cms_key() else {
        return;
    };
    let mut seen: Option<u64> = None;
    loop {
        let Some(raft) = node.raft(cms) else {
            return;
        };
        let next = seen.map_or(Some(0), |index| Some(index + 1));
        let waiter = raft.wait(Some(DIRECTORY_POLL));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = waiter.applied_index_at_least(next, "a CMS change") => {
                if changed.is_err() {
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(DIRECTORY_SETTLE) => {}
        }
        let Some(state) = node.cms_state() else {
            return;
        };
        let built = state.read(|state| {
            let applied = roster_raft::ReplicatedState::last_applied(state).map(|id| id.index);
            let users: Vec<roster_registrar::User> = state
                .cms_state()
                .map(|cms| {
                    cms.users()
                        .filter(|user| user.enabled)
                        .map(|user| roster_registrar::User {
                            aor: user.aor.clone(),
                            credentials: user.credentials.clone(),
                            bindings_max: user.bindings_max,
                        })
                        .collect()
                })
                .unwrap_or_default();
            (applied, users)
        });
        let Ok((applied, users)) = built else {
            return;
        };
        seen = applied;
        let count = users.len();
        match roster_registrar::Directory::new(users) {
            Ok(directory) => {
                service.set_directory(directory);
                debug!(users = count, "directory rebuilt from the CMS");
            }
            Err(error) => warn!(%error, "the CMS's directory does not build; keeping the last one"),
        }
    }
}
