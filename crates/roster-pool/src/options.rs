//! [`PoolOptions`]: how a node runs its groups, and which groups its pool hosts.

use std::time::Duration;

use roster_raft::config::GroupConfigOptions;
use roster_raft::{GroupKey, GroupState};
use roster_registrar::Policy;
use roster_topology::{NodeId, PoolId};

/// How a node runs its groups.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// This node.
    pub node_id: NodeId,
    /// The pool this node belongs to.
    pub pool: PoolId,
    /// Routing groups of the pool (G).
    pub groups: u32,
    /// The pool this one is paired with, if any: this pool holds backup copies of its routing
    /// groups (and of the CMS, when the CMS lives there), and ships its own to it.
    pub partner: Option<Partner>,
    /// The pool the CMS lives on, if the deployment has one this pool takes part in: this pool
    /// holds the CMS (its own pool) or the CMS's backup copy (its partner).
    pub cms: Option<PoolId>,
    /// Raft timings and snapshot policy.
    pub raft: GroupConfigOptions,
    /// Registrar limits of a new group.
    pub policy: Policy,
    /// How long a write or read may take before it is refused.
    pub request_timeout: Duration,
    /// How long a request waits for a leader to be elected before it is refused.
    pub leader_wait: Duration,
    /// How long the partner pool must have been silent (no answer to a ping) before this pool
    /// serves the partner's users as their backup registrar (resiliency mode). Default
    /// [`DETECTION_INTERVAL_DEFAULT`]; a silence counts from two missed pings (over 2 s), so a
    /// shorter interval acts as about 2 s.
    pub detection_interval: Duration,
    /// The deployment's witness watching this pool and its partner, if any (its id; the
    /// network knows its address): with it, this pool fails a lost partner over by itself and
    /// fences itself when it hears neither (see `witness`). The detection interval must then be
    /// at least [`crate::witness::WITNESS_DETECTION_INTERVAL_MIN`].
    pub witness: Option<NodeId>,
}

/// Default [`PoolOptions::detection_interval`]: ten pings in a row unanswered. A partner pool
/// that is only slow (a loaded WAN link, a long election) answers within that; Lync Server took
/// 120 to 300 s.
pub const DETECTION_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);

/// The paired pool, as a node of this one sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    /// Its id.
    pub pool: PoolId,
    /// Its routing groups (its G, which may differ from this pool's).
    pub groups: u32,
    /// Its nodes: where this node sends the partner's requests (the network knows their
    /// addresses).
    pub nodes: Vec<NodeId>,
}

impl PoolOptions {
    /// The groups this pool hosts, in a fixed order: its routing groups, the backup copies of
    /// its partner's, then the CMS or the CMS's copy.
    pub fn keys(&self) -> Vec<GroupKey> {
        let own = (0..self.groups).map(|group| GroupKey::routing(self.pool, group));
        let copies = self.partner.iter().flat_map(|partner| {
            (0..partner.groups).map(|group| GroupKey::backup(partner.pool, group))
        });
        own.chain(copies).chain(self.cms_key()).collect()
    }

    /// The CMS group this pool hosts: the CMS itself, or its backup copy.
    pub fn cms_key(&self) -> Option<GroupKey> {
        let cms = self.cms?;
        if cms == self.pool {
            return Some(GroupKey::cms(cms));
        }
        let partner = self.partner.as_ref()?;
        (partner.pool == cms)
            .then(|| GroupKey::cms(cms))
            .and_then(|key| key.copy())
    }

    /// Where `key` stands in [`PoolOptions::keys`], if this pool hosts it.
    pub fn position(&self, key: GroupKey) -> Option<usize> {
        self.keys().iter().position(|hosted| *hosted == key)
    }

    /// The state of a group of kind `key` that has nothing applied yet.
    pub fn fresh(&self, key: GroupKey) -> GroupState {
        if key.is_cms() {
            GroupState::cms()
        } else {
            GroupState::new(self.policy.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pool: PoolId, partner: Option<Partner>, cms: Option<PoolId>) -> PoolOptions {
        PoolOptions {
            node_id: 1,
            pool,
            groups: 2,
            partner,
            cms,
            raft: GroupConfigOptions::default(),
            policy: Policy::default(),
            request_timeout: Duration::from_secs(1),
            leader_wait: Duration::from_secs(1),
            detection_interval: DETECTION_INTERVAL_DEFAULT,
            witness: None,
        }
    }

    #[test]
    fn a_paired_pool_hosts_its_groups_the_partners_copies_and_the_cms() {
        let partner = Partner {
            pool: 2,
            groups: 3,
            nodes: vec![4, 5, 6],
        };
        let a = options(1, Some(partner), Some(1));
        assert_eq!(
            a.keys(),
            [
                GroupKey::routing(1, 0),
                GroupKey::routing(1, 1),
                GroupKey::backup(2, 0),
                GroupKey::backup(2, 1),
                GroupKey::backup(2, 2),
                GroupKey::cms(1),
            ]
        );
        let b = options(
            2,
            Some(Partner {
                pool: 1,
                groups: 2,
                nodes: vec![1, 2, 3],
            }),
            Some(1),
        );
        assert_eq!(b.cms_key(), GroupKey::cms(1).copy());
        assert_eq!(b.position(GroupKey::backup(1, 1)), Some(3));
        assert!(b.fresh(GroupKey::cms(1)).cms_state().is_some());
        assert!(b.fresh(GroupKey::backup(1, 1)).registry().is_some());
    }

    #[test]
    fn a_lone_pool_hosts_its_routing_groups() {
        let lone = options(1, None, None);
        assert_eq!(
            lone.keys(),
            [GroupKey::routing(1, 0), GroupKey::routing(1, 1)]
        );
        assert_eq!(lone.position(GroupKey::routing(1, 5)), None);
    }
}
