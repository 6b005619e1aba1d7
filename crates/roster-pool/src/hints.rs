//! Where a node believes each group's replicas and leader are: hints for forwarding requests
//! of groups it may hold no replica of. A wrong hint costs a hop, never correctness.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use roster_raft::GroupKey;
use roster_topology::NodeId;

use crate::placement::Assignment;

/// A node's hints about leaders, replicas and peers.
#[derive(Default)]
pub(crate) struct Hints {
    /// A `std` lock around short sections without `.await`.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The node that last answered for the group as its leader.
    leaders: HashMap<GroupKey, NodeId>,
    /// The replicas of the assignment the node started with, updated by the moves it ran.
    replicas: Assignment,
    /// Every node this node has heard of.
    peers: BTreeSet<NodeId>,
}

impl Hints {
    /// Hints from the assignment a node starts with: its replicas, and every node in it.
    pub(crate) fn new(assignment: &Assignment) -> Hints {
        Hints {
            inner: Mutex::new(Inner {
                leaders: HashMap::new(),
                replicas: assignment.clone(),
                peers: assignment.values().flatten().copied().collect(),
            }),
        }
    }

    /// The nodes that may lead `group`, likeliest first: the last leader seen, the replicas
    /// of the hinted assignment, then every other node heard of. Never `own`.
    pub(crate) fn candidates(&self, group: GroupKey, own: NodeId) -> Vec<NodeId> {
        let inner = self.lock();
        let mut candidates: Vec<NodeId> = Vec::new();
        let ordered = inner
            .leaders
            .get(&group)
            .into_iter()
            .chain(inner.replicas.get(&group).into_iter().flatten())
            .chain(inner.peers.iter());
        for node in ordered {
            if *node != own && !candidates.contains(node) {
                candidates.push(*node);
            }
        }
        candidates
    }

    /// `leader` answered for `group` as its leader.
    pub(crate) fn note_leader(&self, group: GroupKey, leader: NodeId) {
        let mut inner = self.lock();
        inner.leaders.insert(group, leader);
        inner.peers.insert(leader);
    }

    /// `group`'s voters after a move this node ran.
    pub(crate) fn note_replicas(&self, group: GroupKey, voters: Vec<NodeId>) {
        self.lock().replicas.insert(group, voters);
    }

    /// Adds `peers` to the nodes this node knows of.
    pub(crate) fn learn_peers(&self, peers: impl IntoIterator<Item = NodeId>) {
        self.lock().peers.extend(peers);
    }

    /// Every node this node knows of, ascending.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.lock().peers.iter().copied().collect()
    }

    /// How many nodes this node knows of.
    pub(crate) fn peer_count(&self) -> usize {
        self.lock().peers.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere mid-update; hints are only hints.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
