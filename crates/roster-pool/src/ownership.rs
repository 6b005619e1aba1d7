//! Who owns which users (and the CMS), as this node knows it, and whether the partner pool
//! answers.
//!
//! A node's knowledge is its copy of the CMS, merged with what the partner pool reported in
//! its last answer to a ping (the higher epoch wins, entry by entry): a pool that comes back
//! after its partner took its users over learns the new epoch from the partner before its own
//! copy of the CMS has caught up, and stops serving them. [`PoolNode::watch_partner_forever`]
//! pings the partner every [`PARTNER_PING_INTERVAL`] and keeps the last time it answered: the
//! backup registrar (resiliency mode, see `resilience`) and automatic failover count from it;
//! it also logs when this node enters and leaves resiliency mode.
//!
//! Every group has an *owner*: the pool that proposes its users' writes. A routing group and
//! its copy have the owner of their home pool's users; the CMS and its copy have the CMS's
//! owner. The owner's group is the one that ships (the backup stream's source); the other
//! pool's is its copy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use roster_cms::Ownership;
use roster_net::Network;
use roster_raft::GroupKey;
use roster_topology::PoolId;
use serde::{Deserialize, Serialize};
// Tokio's clock: the real one in a node, the paused one of a simulation (detection intervals
// then pass in simulated time).
use tokio::time::Instant;
use tracing::{info, warn};

use crate::node::PoolNode;
use crate::pair::{PairRequest, PairResponse};

/// How often a node pings its partner pool: the detection interval (10 s by default) counts in
/// these.
pub const PARTNER_PING_INTERVAL: Duration = Duration::from_secs(1);

/// How long a node that has just started waits to hear its partner before it serves its own
/// users' writes on its own copy of the CMS: a pool coming back after a failover learns the new
/// owner from the first ping (within a second), before it acknowledges anything.
pub const OWNERSHIP_LEARN_WAIT: Duration = Duration::from_secs(3);

/// How long a node waits for its partner's answer to one ping.
const PARTNER_PING_TIMEOUT: Duration = Duration::from_millis(900);

/// Ownership of every home pool's users and of the CMS, as one node knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipView {
    /// Per home pool.
    pub pools: BTreeMap<PoolId, Ownership>,
    /// The CMS's owner.
    pub cms: Option<Ownership>,
}

impl OwnershipView {
    /// Takes every entry of `other` whose epoch is higher than this view's.
    pub fn merge(&mut self, other: &OwnershipView) {
        for (&pool, &theirs) in &other.pools {
            let ours = self.pools.entry(pool).or_insert(theirs);
            if theirs.epoch > ours.epoch {
                *ours = theirs;
            }
        }
        if let Some(theirs) = other.cms {
            match &mut self.cms {
                Some(ours) if ours.epoch >= theirs.epoch => {}
                slot => *slot = Some(theirs),
            }
        }
    }
}

/// What a node knows of its partner: its last reported ownership, and when it last answered.
#[derive(Default)]
pub(crate) struct PartnerWatch {
    /// A `std` lock around short sections without `.await`.
    inner: Mutex<Watched>,
}

#[derive(Default)]
struct Watched {
    view: OwnershipView,
    last_heard: Option<Instant>,
    /// When the last ping the partner answered was sent: a lease (see `witness`).
    last_answered_sent: Option<Instant>,
    started: Option<Instant>,
}

impl PartnerWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        // A poisoned lock only means a panic elsewhere mid-update; the values are still whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<N: Network> PoolNode<N> {
    /// Ownership as this node knows it: its copy of the CMS merged with the partner's report.
    pub fn ownership_view(&self) -> OwnershipView {
        let mut view = self.local_ownership();
        view.merge(&self.partner_watch.lock().view);
        view
    }

    /// Who owns `home`'s users (a home pool owns its own until the CMS says otherwise).
    pub fn owner_of(&self, home: PoolId) -> Ownership {
        self.ownership_view()
            .pools
            .get(&home)
            .copied()
            .unwrap_or(Ownership {
                owner: home,
                epoch: 1,
            })
    }

    /// Which pool holds the authoritative CMS (the deployment's CMS pool until a CMS failover).
    pub fn cms_owner(&self) -> Option<Ownership> {
        let cms = self.options.cms?;
        Some(self.ownership_view().cms.unwrap_or(Ownership {
            owner: cms,
            epoch: 1,
        }))
    }

    /// The pool that proposes the writes of group `key`: its users' owner, or the CMS's owner.
    pub fn key_owner(&self, key: GroupKey) -> Option<PoolId> {
        if key.is_cms() {
            self.cms_owner().map(|ownership| ownership.owner)
        } else {
            Some(self.owner_of(key.pool).owner)
        }
    }

    /// The epoch writes of group `key` carry now.
    pub fn key_epoch(&self, key: GroupKey) -> u64 {
        if key.is_cms() {
            self.cms_owner().map_or(1, |ownership| ownership.epoch)
        } else {
            self.owner_of(key.pool).epoch
        }
    }

    /// How long the partner pool has not answered a ping: since this node's start when it never
    /// has; `None` while it answers, or without a partner.
    pub fn partner_silent_for(&self) -> Option<Duration> {
        self.options.partner.as_ref()?;
        let watched = self.partner_watch.lock();
        let since = watched.last_heard.or(watched.started)?;
        let silent = since.elapsed();
        (silent > PARTNER_PING_INTERVAL * 2).then_some(silent)
    }

    /// Whether this node may act on its view of ownership: it has no partner, or has heard it
    /// since it started, or waited [`OWNERSHIP_LEARN_WAIT`] in vain (the partner is down too,
    /// or cut off: the view is the node's own CMS copy).
    pub fn ownership_settled(&self) -> bool {
        if self.options.partner.is_none() {
            return true;
        }
        let watched = self.partner_watch.lock();
        watched.last_heard.is_some()
            || watched
                .started
                .is_some_and(|started| started.elapsed() >= OWNERSHIP_LEARN_WAIT)
    }

    /// Whether the partner has answered a ping since this node started.
    pub fn partner_heard(&self) -> bool {
        self.partner_watch.lock().last_heard.is_some()
    }

    /// When the last ping the partner answered was sent (a lease, see `witness`).
    pub(crate) fn partner_lease(&self) -> Option<Instant> {
        self.partner_watch.lock().last_answered_sent
    }

    /// Merges ownership reported by another than this node's CMS copy (the witness relays
    /// the partner's): the higher epoch wins, entry by entry.
    pub(crate) fn learn_ownership(&self, view: &OwnershipView) {
        let before = self.ownership_view();
        self.partner_watch.lock().view.merge(view);
        let after = self.ownership_view();
        if after != before {
            info!(?after, "learned newer ownership through the witness");
        }
    }

    /// Pings the partner pool every [`PARTNER_PING_INTERVAL`], merging the ownership it reports,
    /// until the returned future is dropped, and beside it sends the witness its heartbeats
    /// when the pool has one (`witness`). Does nothing without a partner.
    pub async fn watch_partner_forever(self: Arc<Self>) {
        let Some(partner) = self.options.partner.clone() else {
            return std::future::pending().await;
        };
        let witness = Arc::clone(&self).watch_witness_forever();
        let partner_watch = self.watch_partner_only(partner);
        tokio::join!(witness, partner_watch);
    }

    async fn watch_partner_only(&self, partner: crate::Partner) {
        self.partner_watch.lock().started = Some(Instant::now());
        let mut tick = tokio::time::interval(PARTNER_PING_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answering = true;
        let mut resilient = false;
        loop {
            tick.tick().await;
            let request = PairRequest::Ping;
            let mut heard = None;
            for &node in &partner.nodes {
                let sent = Instant::now();
                if let Ok(PairResponse::Pong(view)) = self
                    .ask_partner_node_within(node, &request, PARTNER_PING_TIMEOUT)
                    .await
                {
                    heard = Some((sent, view));
                    break;
                }
            }
            match heard {
                Some((sent, view)) => {
                    let before = self.ownership_view();
                    {
                        let mut watched = self.partner_watch.lock();
                        watched.view.merge(&view);
                        watched.last_heard = Some(Instant::now());
                        watched.last_answered_sent = Some(sent);
                    }
                    let after = self.ownership_view();
                    if after != before {
                        info!(?after, "the partner reported newer ownership");
                    }
                    if !answering {
                        info!(partner = partner.pool, "the partner pool answers again");
                    }
                    answering = true;
                }
                None => {
                    if answering {
                        warn!(partner = partner.pool, "the partner pool does not answer");
                    }
                    answering = false;
                }
            }
            self.report_resiliency_mode(partner.pool, &mut resilient);
        }
    }

    /// Ownership from this node's copy of the CMS alone.
    pub(crate) fn local_ownership(&self) -> OwnershipView {
        self.cms_state()
            .and_then(|state| {
                state
                    .read(|state| {
                        state.cms_state().map(|cms| OwnershipView {
                            pools: cms.ownerships().clone(),
                            cms: cms.cms_owner(),
                        })
                    })
                    .ok()
                    .flatten()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(owner: PoolId, epoch: u64) -> Ownership {
        Ownership { owner, epoch }
    }

    #[test]
    fn the_higher_epoch_wins_entry_by_entry() {
        let mut ours = OwnershipView {
            pools: BTreeMap::from([(1, own(1, 1)), (2, own(2, 3))]),
            cms: Some(own(1, 1)),
        };
        let theirs = OwnershipView {
            pools: BTreeMap::from([(1, own(2, 2)), (2, own(1, 2)), (3, own(3, 1))]),
            cms: Some(own(2, 2)),
        };
        ours.merge(&theirs);
        assert_eq!(
            ours.pools,
            BTreeMap::from([(1, own(2, 2)), (2, own(2, 3)), (3, own(3, 1))])
        );
        assert_eq!(ours.cms, Some(own(2, 2)));
        let stale = OwnershipView {
            pools: BTreeMap::new(),
            cms: Some(own(1, 1)),
        };
        ours.merge(&stale);
        assert_eq!(ours.cms, Some(own(2, 2)));
    }
}
