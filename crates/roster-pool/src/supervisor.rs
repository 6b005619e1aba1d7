//! Keeping a node's replicas running. openraft stops a group for good on a storage error, and
//! a failed flush poisons the node's store (`roster-store`'s flusher), so a full disk leaves
//! the node's replicas stopped until something opens them again: the supervisor, a task per
//! node. Every [`SUPERVISE_INTERVAL`] it looks for trouble (`Replicas::trouble`: a poisoned
//! store, stopped replicas, replicas that failed to open again). Once it finds some, it probes
//! the disk (`StoreOpener::probe_disk`) with a back-off from [`RETRY_MIN`] to [`RETRY_MAX`]
//! until the disk takes writes, then drops the dead Raft instances and opens the replicas
//! again from disk, the store first when it is poisoned. Meanwhile the node reports itself
//! unhealthy (`PoolNode::healthy`) and sends requests for the groups it cannot serve to their
//! leaders elsewhere (`route`).
//!
//! Nothing acknowledged is lost: an append is acknowledged only after its flush succeeded, and
//! a replica opened again reads the disk, which holds every flush that succeeded (after a
//! failed `fsync`, reading the disk again is the only safe way on; what the failed flushes
//! carried was never acknowledged, and Raft treats it as a crash would).
//!
//! Recoveries are bounded: after [`RECOVERIES_MAX`] of them without [`HEALTHY_SETTLE`] of
//! health in between (a store that will not open, a replica that stops again at once), the
//! supervisor gives up with an error in the log, and the node stays unhealthy until restarted.

use std::sync::{Arc, Weak};
use std::time::Duration;

use roster_net::Network;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::node::{PoolError, PoolNode};
use crate::replicas::Trouble;

/// How often a healthy node looks for stopped replicas: a stopped replica is found within
/// half a second, well inside a client's transaction timeout, and looking costs a read of
/// each replica's metrics.
pub(crate) const SUPERVISE_INTERVAL: Duration = Duration::from_millis(500);

/// First pause between disk probes (and recoveries) once there is trouble; it doubles after
/// each one up to [`RETRY_MAX`].
pub(crate) const RETRY_MIN: Duration = Duration::from_millis(250);

/// Longest pause between disk probes: space freed on a full disk is found within a second. A
/// probe on a disk that is still full fails at its first write; one on a disk with room
/// writes and syncs a few MiB.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(1);

/// Recoveries (after a probe found the disk taking writes) without [`HEALTHY_SETTLE`] of
/// health in between, before the supervisor gives up: enough for a disk that fills up again a
/// few times, few enough that a store that cannot be opened is left to the operator within
/// about a minute.
pub(crate) const RECOVERIES_MAX: u32 = 30;

/// Health for this long resets the count of recoveries.
pub(crate) const HEALTHY_SETTLE: Duration = Duration::from_secs(60);

/// The supervisor's stop signal, kept by the node.
pub(crate) struct Supervision {
    stop: watch::Sender<bool>,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            stop: watch::Sender::new(false),
        }
    }
}

impl Supervision {
    /// Starts `node`'s supervisor, which holds the node only while it looks (a `Weak`
    /// between rounds), and ends when the node stops or goes.
    pub(crate) fn start<N: Network>(node: &Arc<PoolNode<N>>) {
        let stop = node.supervision.stop.subscribe();
        tokio::spawn(supervise(Arc::downgrade(node), stop));
    }

    /// Stops the supervisor after its current round.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Where a node's recovery stands.
#[derive(Debug, Default)]
struct Recovery {
    /// When the current trouble was first seen.
    since: Option<Instant>,
    /// Probes since then: the back-off.
    probes: u32,
    /// Recoveries since the node was last healthy for [`HEALTHY_SETTLE`].
    recoveries: u32,
    /// Since when the node is healthy.
    healthy_since: Option<Instant>,
}

impl Recovery {
    /// The pause before the next round.
    fn pause(&self) -> Duration {
        if self.since.is_none() {
            return SUPERVISE_INTERVAL;
        }
        let doublings = self.probes.min(16);
        RETRY_MIN.saturating_mul(1 << doublings).min(RETRY_MAX)
    }
}

async fn supervise<N: Network>(node: Weak<PoolNode<N>>, mut stop: watch::Receiver<bool>) {
    let mut recovery = Recovery::default();
    loop {
        tokio::select! {
            // In order, not at random: a simulation's run is a function of its seed.
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            () = tokio::time::sleep(recovery.pause()) => {}
        }
        if *stop.borrow() {
            return;
        }
        let Some(node) = node.upgrade() else {
            return;
        };
        let go_on = node.supervise_once(&mut recovery).await;
        drop(node);
        if !go_on {
            return;
        }
    }
}

impl<N: Network> PoolNode<N> {
    /// One round: finds trouble, probes the disk, recovers. `false` when the supervisor gives
    /// up.
    async fn supervise_once(&self, recovery: &mut Recovery) -> bool {
        let node = self.options.node_id;
        let Some(trouble) = self.replicas.trouble() else {
            if let Some(since) = recovery.since.take() {
                info!(
                    node,
                    after_ms = since.elapsed().as_millis() as u64,
                    "every replica runs again: the node is healthy"
                );
            }
            recovery.probes = 0;
            let healthy_since = *recovery.healthy_since.get_or_insert_with(Instant::now);
            if healthy_since.elapsed() >= HEALTHY_SETTLE {
                recovery.recoveries = 0;
            }
            return true;
        };
        recovery.healthy_since = None;
        if recovery.since.is_none() {
            recovery.since = Some(Instant::now());
            warn!(
                node,
                %trouble,
                "replicas cannot serve: the node reports itself unhealthy, forwards their \
                 requests, and opens them again once the disk takes writes"
            );
        }
        recovery.probes = recovery.probes.saturating_add(1);
        let opener = self.replicas.opener().clone();
        let probed = opener.io().run_blocking(move || opener.probe_disk()).await;
        let probed = probed
            .map_err(|error| error.to_string())
            .and_then(|probed| probed.map_err(|error| error.to_string()));
        if let Err(error) = probed {
            // Logged at the first probes, then at powers of two: a disk full for an hour
            // leaves a dozen lines, not thousands.
            if recovery.probes.is_power_of_two() {
                warn!(
                    node,
                    probes = recovery.probes,
                    %error,
                    "the disk does not take writes yet"
                );
            }
            return true;
        }
        if recovery.recoveries >= RECOVERIES_MAX {
            error!(
                node,
                recoveries = recovery.recoveries,
                %trouble,
                "giving up reopening the replicas: restart the node"
            );
            return false;
        }
        recovery.recoveries += 1;
        info!(
            node,
            attempt = recovery.recoveries,
            %trouble,
            "the disk takes writes: opening the replicas again from disk"
        );
        let started = Instant::now();
        match self.recover(trouble).await {
            Ok(groups) => {
                info!(
                    node,
                    groups,
                    took_ms = started.elapsed().as_millis() as u64,
                    "replicas opened again"
                );
                // Look again soon: the next round confirms the node is healthy.
                recovery.probes = 0;
            }
            Err(error) => warn!(node, %error, "opening the replicas again failed; retrying"),
        }
        true
    }

    /// Drops the dead Raft instances and opens their replicas again: all of them, with the
    /// store, when the store is in trouble. Returns how many were opened.
    async fn recover(&self, trouble: Trouble) -> Result<usize, PoolError> {
        let lifecycle = self.replicas.lifecycle().await;
        let groups = match trouble {
            Trouble::Store(_) => self.replicas.reopen_store(&lifecycle).await?,
            Trouble::Stopped(stopped) => {
                // The store says it is sound; a flush through it proves sled takes writes
                // too. If it does not, the store is poisoned now and the next round reopens it.
                self.replicas
                    .store()?
                    .flush()
                    .await
                    .map_err(|error| PoolError::Internal(error.to_string()))?;
                let mut groups = Vec::with_capacity(stopped.len());
                for (group, replica) in stopped {
                    if self.replicas.take_stopped(&lifecycle, group, replica).await {
                        groups.push(group);
                    }
                }
                groups
            }
            // Read again under the lock: a move may have closed one meanwhile.
            Trouble::Missing(_) => self.replicas.missing(),
        };
        let mut failed = Vec::new();
        for &group in &groups {
            if let Err(error) = self.open_replica_locked(&lifecycle, group).await {
                warn!(node = self.options.node_id, group = %group, %error, "replica not opened again");
                failed.push(group);
            }
        }
        if failed.is_empty() {
            Ok(groups.len())
        } else {
            Err(PoolError::Internal(format!(
                "groups {failed:?} not opened again"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_backs_off_from_the_minimum_to_the_cap() {
        let mut recovery = Recovery::default();
        assert_eq!(recovery.pause(), SUPERVISE_INTERVAL);
        recovery.since = Some(Instant::now());
        let pauses: Vec<u128> = (0..6)
            .map(|probes| {
                recovery.probes = probes;
                recovery.pause().as_millis()
            })
            .collect();
        assert_eq!(pauses, [250, 500, 1_000, 1_000, 1_000, 1_000]);
        recovery.probes = u32::MAX;
        assert_eq!(recovery.pause(), RETRY_MAX);
    }
}
