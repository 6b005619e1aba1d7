//! A node of a pool: [`PoolNode`], its options and errors, and the write and read paths the SIP
//! front calls.
//!
//! Writes go to the group's leader (locally, or forwarded over the network) and are answered
//! once applied; reads are linearizable (read index on the leader). A group without a leader,
//! or whose leader has not heard from a quorum within the election timeout, is refused at once
//! ([`PoolError::Unavailable`]; the SIP front answers `503` with `Retry-After`).
//!
//! A node's concerns live in their own modules: `replicas` (opening, listing, closing its Raft
//! groups), `hints` (where leaders are), `route` (an operation to its group's leader, here or
//! forwarded), `leader` (serving on the local leader), `handler` (its peers' requests),
//! `bootstrap` (creating the groups once), `status`, `membership` (moves), `gauges` and
//! `supervisor` (restarting replicas whose Raft stopped, reopening a store a full disk
//! poisoned).

use std::collections::BTreeSet;
use std::sync::Arc;

use roster_net::Network;
use roster_raft::config::{group_config, GroupConfigOptions};
use roster_raft::{group_of, GroupKey, GroupRequest, GroupResponse, GroupState};
use roster_registrar::{Binding, Command};
use roster_store::{GroupRaft, GroupStateHandle};
use roster_topology::{NodeId, PoolId};
use tracing::warn;

use crate::hints::Hints;
use crate::leader::Leadership;
use crate::options::PoolOptions;
use crate::ownership::PartnerWatch;
use crate::partner::PartnerLink;
use crate::placement::Assignment;
use crate::replicas::{staggered_snapshot_interval, Lifecycle, Replica, Replicas};
use crate::route::{Answer, Operation};
use crate::router::{GroupNetworks, PoolRouter};
use crate::shipper::Shipping;
use crate::supervisor::Supervision;
use crate::witness::WitnessWatch;

/// A write or read the pool could not serve.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The group has no leader or no quorum now; try again in `retry_after_s`.
    #[error("routing group {group} unavailable: {reason}")]
    Unavailable {
        /// The group.
        group: GroupKey,
        /// Why.
        reason: String,
        /// When to retry, in seconds.
        retry_after_s: u32,
    },
    /// Starting or storing failed.
    #[error("pool node: {0}")]
    Internal(String),
}

/// One node of a pool.
pub struct PoolNode<N: Network> {
    pub(crate) options: PoolOptions,
    pub(crate) router: PoolRouter<N>,
    pub(crate) replicas: Replicas,
    pub(crate) hints: Hints,
    pub(crate) partner_link: PartnerLink,
    pub(crate) shipping: Shipping,
    pub(crate) partner_watch: PartnerWatch,
    pub(crate) witness_watch: WitnessWatch,
    pub(crate) supervision: Supervision,
    pub(crate) clock: fn() -> u64,
}

impl<N: Network> PoolNode<N> {
    /// Opens the replicas `assignment` places on this node, and those it has data for (it held
    /// them before a restart, or joined them by a move), and starts their Raft groups.
    /// `clock` gives milliseconds since the Unix epoch (the leader's timestamp for writes).
    ///
    /// A node joining a running pool starts with the pool's current assignment (or an empty
    /// one) and must not call [`PoolNode::bootstrap`]: its replicas arrive by moves
    /// ([`PoolNode::rebalance`]).
    pub async fn start(
        options: PoolOptions,
        store: roster_store::NodeStore,
        network: N,
        assignment: &Assignment,
        clock: fn() -> u64,
    ) -> Result<Arc<PoolNode<N>>, PoolError> {
        let mut groups: BTreeSet<GroupKey> = store.group_keys();
        let node = Arc::new(PoolNode {
            router: PoolRouter::new(network),
            replicas: Replicas::new(store),
            hints: Hints::new(assignment),
            partner_link: PartnerLink::default(),
            shipping: Shipping::default(),
            partner_watch: PartnerWatch::default(),
            witness_watch: WitnessWatch::default(),
            supervision: Supervision::default(),
            clock,
            options,
        });
        for (&group, replicas) in assignment {
            if replicas.contains(&node.options.node_id) {
                groups.insert(group);
            }
        }
        // Every node keeps a local copy of the CMS (a voter, or a learner past the first
        // three): it reads credentials, homes and epochs from it.
        groups.extend(node.options.cms_key());
        for group in groups {
            node.open_replica(group).await?;
        }
        Supervision::start(&node);
        Ok(node)
    }

    /// Stops every Raft group of this node and closes their storage.
    pub async fn shutdown(&self) {
        self.supervision.stop();
        self.replicas.shutdown().await;
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.options.node_id
    }

    /// This node's pool.
    pub fn pool(&self) -> PoolId {
        self.options.pool
    }

    /// The routing group of this pool that holds `aor` (`hash(AOR) mod G`).
    pub fn routing_key(&self, aor: &str) -> GroupKey {
        GroupKey::routing(self.options.pool, group_of(aor, self.options.groups))
    }

    /// The epoch writes for the users of home pool `home` carry: their owner's, as this node
    /// knows it (see `ownership`); 1, a pool's first epoch, where nothing says otherwise.
    pub fn epoch_of(&self, home: PoolId) -> u64 {
        self.owner_of(home).epoch
    }

    /// This node's replica of the CMS (or of its copy), if it holds one: its local copy of the
    /// deployment, the directory and ownership. Reads from it may lag the CMS's leader slightly.
    pub fn cms_state(&self) -> Option<GroupStateHandle<GroupState>> {
        self.options.cms_key().and_then(|key| self.state(key))
    }

    /// The home pool of `aor` in this node's copy of the CMS directory; `None` when the
    /// directory is not readable here or does not know the AOR.
    pub fn home_in_directory(&self, aor: &str) -> Option<PoolId> {
        self.cms_state()?
            .read(|state| state.cms_state()?.user(aor).map(|user| user.home))
            .ok()
            .flatten()
    }

    /// The options this node runs with.
    pub fn options(&self) -> &PoolOptions {
        &self.options
    }

    /// The groups with a replica here, ascending.
    pub fn groups(&self) -> Vec<GroupKey> {
        self.replicas.keys()
    }

    /// The Raft handle of `group`, if this node holds a replica.
    pub fn raft(&self, group: GroupKey) -> Option<GroupRaft<GroupState>> {
        self.replica(group).map(|r| r.raft.clone())
    }

    /// The applied state of this node's replica of `group`, if it holds one (status pages and
    /// tests; reads that must be linearizable go through [`PoolNode::read`]).
    pub fn state(&self, group: GroupKey) -> Option<GroupStateHandle<GroupState>> {
        self.replica(group).map(|r| r.state.clone())
    }

    /// Applies `command` in `group`, through the group's leader.
    pub async fn write(
        &self,
        group: GroupKey,
        command: Command,
    ) -> Result<GroupResponse, PoolError> {
        let request = GroupRequest::registrar(self.key_epoch(group), 0, command);
        match self.routed(group, Operation::Write(request)).await? {
            Answer::Written(response) => Ok(response),
            _ => Err(self.unavailable(group, "unexpected answer to a write".into())),
        }
    }

    /// The live bindings of `aor` (in `group`), linearizable: served by the leader after a
    /// read-index round.
    pub async fn read(
        &self,
        group: GroupKey,
        aor: &str,
        now_ms: u64,
    ) -> Result<Vec<Binding>, PoolError> {
        let operation = Operation::Read {
            aor: aor.to_string(),
            now_ms,
        };
        match self.routed(group, operation).await? {
            Answer::Bindings(bindings) => Ok(bindings),
            _ => Err(self.unavailable(group, "unexpected answer to a read".into())),
        }
    }

    /// Purges expired bindings in every group this node leads (an ordinary command, so every
    /// replica removes the same bindings at the same log position) and whose writes this pool
    /// proposes: never in a copy of a group the partner owns, which changes only by the
    /// partner's stream (its source purges, and the purge ships).
    pub async fn purge_expired(&self, now_ms: u64) -> Result<(), PoolError> {
        for group in self.groups() {
            if self.key_owner(group) != Some(self.options.pool) {
                continue;
            }
            let Some(replica) = self.replica(group) else {
                continue;
            };
            if !replica.raft.is_leader() {
                continue;
            }
            let expired = replica
                .state
                .read(|state| {
                    state
                        .registry()
                        .is_some_and(|registry| registry.has_expired(now_ms))
                })
                .map_err(|error| PoolError::Internal(error.to_string()))?;
            if expired {
                self.write(group, Command::PurgeExpired).await?;
            }
        }
        Ok(())
    }

    /// Opens this node's replica of `group` and starts its Raft group, without initializing
    /// it: an empty replica waits, as a learner-to-be, for the leader to replicate to it.
    /// Idempotent: a replica already open is left as it is.
    pub async fn open_replica(&self, group: GroupKey) -> Result<(), PoolError> {
        let lifecycle = self.replicas.lifecycle().await;
        self.open_replica_locked(&lifecycle, group).await
    }

    /// [`PoolNode::open_replica`] under the lifecycle lock.
    pub(crate) async fn open_replica_locked(
        &self,
        lifecycle: &Lifecycle<'_>,
        group: GroupKey,
    ) -> Result<(), PoolError> {
        let Some(position) = self.options.position(group) else {
            return Err(PoolError::Internal(format!(
                "group {group} is not a group of pool {}",
                self.options.pool
            )));
        };
        let fresh = self.options.fresh(group);
        self.replicas
            .open(lifecycle, group, fresh, |log, state_machine| async move {
                let config = group_config(&GroupConfigOptions {
                    cluster_name: format!("group-{group}"),
                    snapshot_logs_since_last: staggered_snapshot_interval(
                        self.options.raft.snapshot_logs_since_last,
                        position,
                        self.options.keys().len(),
                    ),
                    ..self.options.raft.clone()
                })
                .map_err(|error| PoolError::Internal(error.to_string()))?;
                let networks = GroupNetworks::new(self.router.clone(), group);
                GroupRaft::new(
                    self.options.node_id,
                    Arc::new(config),
                    networks,
                    log,
                    state_machine,
                )
                .await
                .map_err(|error| PoolError::Internal(error.to_string()))
            })
            .await
    }

    /// Stops this node's replica of `group` and deletes its data: the node has been removed
    /// from the group. Idempotent: without a replica it only makes sure no data is left.
    ///
    /// The caller must know the node is no longer a member (the group's leader does, once the
    /// membership change is committed); see `PoolRequest::CloseReplica`.
    pub async fn close_replica(&self, group: GroupKey) -> Result<(), PoolError> {
        self.replicas.close(group).await
    }

    /// This node's replica of `group`, if open.
    pub(crate) fn replica(&self, group: GroupKey) -> Option<Arc<Replica>> {
        self.replicas.get(group)
    }

    /// Every replica this node holds.
    pub(crate) fn replica_list(&self) -> Vec<(GroupKey, Arc<Replica>)> {
        self.replicas.list()
    }

    /// Adds `peers` to the nodes this node knows of.
    pub(crate) fn learn_peers(&self, peers: impl IntoIterator<Item = NodeId>) {
        self.hints.learn_peers(peers);
    }

    /// What this node's replicas need to serve as leaders.
    pub(crate) fn leadership(&self) -> Leadership {
        Leadership {
            node_id: self.options.node_id,
            cut_off_ms: 2 * self.options.raft.election_timeout_max_ms,
            request_timeout: self.options.request_timeout,
            clock: self.clock,
        }
    }

    pub(crate) fn unavailable(&self, group: GroupKey, reason: String) -> PoolError {
        warn!(group = %group, node = self.options.node_id, %reason, "group unavailable");
        PoolError::Unavailable {
            group,
            reason,
            retry_after_s: 1,
        }
    }
}
