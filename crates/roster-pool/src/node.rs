//! A node of a pool: the replicas of the routing groups placed on it, the handler that serves
//! its peers, and the write and read paths the SIP front calls.
//!
//! Writes go to the group's leader (locally, or forwarded over the network) and are answered
//! once applied; reads are linearizable (read index on the leader). A group without a leader,
//! or whose leader has not heard from a quorum within the election timeout, is refused at once
//! ([`PoolError::Unavailable`]; the SIP front answers `503` with `Retry-After`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ReadPolicy;
use roster_net::{Handler, NetError, Network, Peer};
use roster_raft::config::{group_config, GroupConfigOptions};
use roster_raft::{group_of, typ, GroupKey, GroupKind, GroupRequest, GroupResponse, GroupState};
use roster_registrar::{Binding, Command, Policy};
use roster_store::{GroupRaft, GroupStateHandle, NodeStore};
use roster_topology::{NodeId, PoolId};
use tracing::{debug, info, warn};

use crate::placement::Assignment;
use crate::protocol::{
    decode, encode, CodecError, Frame, GroupMembers, PoolRequest, PoolResponse, ServeError,
};
use crate::router::{CallFailure, GroupNetworks, PoolRouter};

/// Forwarding hops a write or read may take before it gives up: the leader can change under
/// it, but more than a few hops means the group is electing; the client retries.
const FORWARD_HOPS_MAX: usize = 4;

/// Longest wait for one forwarded write or read: a live leader answers within a commit round
/// (milliseconds to tens of milliseconds on a loaded pool), so 800 ms marks a leader that is
/// gone, and leaves time in the request timeout to find the new one.
const FORWARD_HOP_TIMEOUT: Duration = Duration::from_millis(800);

/// Extra hops a request may take while views of the leader disagree (an election): with a
/// [`LEADER_POLL`] pause before each, 40 cover a second, an election's length.
const ELECTION_HOPS_MAX: usize = 40;

/// How often the write path looks for a leader while a group is electing.
const LEADER_POLL: Duration = Duration::from_millis(25);

/// How long [`PoolNode::bootstrap`] waits for the groups it created to commit their first
/// entries on a majority. Until then a created group exists only on this node: losing it would
/// leave the group without a leader until it returns. Peers started much later are not waited
/// for past this.
const BOOTSTRAP_COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Attempts to delete a closed group's data while requests in flight still hold its storage:
/// 200 × [`LEADER_POLL`] = 5 s, far more than any request holds a handle.
const CLOSE_ATTEMPTS_MAX: usize = 200;

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

/// How a node runs its groups.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// This node.
    pub node_id: NodeId,
    /// The pool this node belongs to.
    pub pool: PoolId,
    /// Routing groups of the pool (G).
    pub groups: u32,
    /// The ownership epoch every write carries.
    pub epoch: u64,
    /// Raft timings and snapshot policy.
    pub raft: GroupConfigOptions,
    /// Registrar limits of a new group.
    pub policy: Policy,
    /// How long a write or read may take before it is refused.
    pub request_timeout: Duration,
    /// How long a request waits for a leader to be elected before it is refused.
    pub leader_wait: Duration,
}

impl PoolOptions {
    /// The groups this pool hosts, in a fixed order: its routing groups.
    pub fn keys(&self) -> Vec<GroupKey> {
        (0..self.groups)
            .map(|group| GroupKey::routing(self.pool, group))
            .collect()
    }

    /// Where `key` stands in [`PoolOptions::keys`], if this pool hosts it.
    pub fn position(&self, key: GroupKey) -> Option<usize> {
        match key.kind {
            GroupKind::Routing(group) if key.pool == self.pool && group < self.groups => {
                usize::try_from(group).ok()
            }
            _ => None,
        }
    }
}

pub(crate) struct Replica {
    pub(crate) raft: GroupRaft<GroupState>,
    pub(crate) state: GroupStateHandle<GroupState>,
}

/// What the write, read and membership paths route to a group's leader.
#[derive(Clone, Debug)]
pub(crate) enum Operation {
    Write(GroupRequest),
    Read {
        aor: String,
        now_ms: u64,
    },
    Members,
    Move {
        add: NodeId,
        remove: Option<NodeId>,
        addresses: BTreeMap<NodeId, String>,
    },
    TransferLeader {
        to: NodeId,
    },
}

impl Operation {
    fn request(&self, group: GroupKey) -> PoolRequest {
        match self {
            Operation::Write(request) => PoolRequest::Write {
                group,
                request: request.clone(),
            },
            Operation::Read { aor, now_ms } => PoolRequest::Read {
                group,
                aor: aor.clone(),
                now_ms: *now_ms,
            },
            Operation::Members => PoolRequest::Members { group },
            Operation::Move {
                add,
                remove,
                addresses,
            } => PoolRequest::MoveReplica {
                group,
                add: *add,
                remove: *remove,
                addresses: addresses.clone(),
            },
            Operation::TransferLeader { to } => PoolRequest::TransferLeader { group, to: *to },
        }
    }
}

/// What an [`Operation`] returns.
pub(crate) enum Answer {
    Written(GroupResponse),
    Bindings(Vec<Binding>),
    Members(GroupMembers),
    Moved(Vec<NodeId>),
    Done,
}

impl Answer {
    fn from_response(response: PoolResponse) -> Result<Answer, ServeError> {
        match response {
            PoolResponse::Write(result) => result.map(Answer::Written),
            PoolResponse::Read(result) => result.map(Answer::Bindings),
            PoolResponse::Members(result) => result.map(Answer::Members),
            PoolResponse::Moved(result) => result.map(Answer::Moved),
            PoolResponse::Done(result) => result.map(|()| Answer::Done),
            other => Err(ServeError::Unavailable(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }
}

/// Where this node believes each group's replicas and leader are, for groups it holds no
/// replica of (it must still forward their writes and reads). Hints only: a wrong one costs a
/// hop, never correctness.
#[derive(Default)]
pub(crate) struct Hints {
    /// The node that last answered for the group as its leader.
    leaders: HashMap<GroupKey, NodeId>,
    /// The replicas of the assignment the node started with, updated by the moves it ran.
    pub(crate) replicas: Assignment,
    /// Every node this node has heard of.
    peers: BTreeSet<NodeId>,
}

/// One node of a pool.
pub struct PoolNode<N: Network> {
    pub(crate) options: PoolOptions,
    pub(crate) router: PoolRouter<N>,
    pub(crate) store: NodeStore,
    /// A `std` lock: held only to clone a replica handle out, never across an `.await`.
    replicas: RwLock<HashMap<GroupKey, Arc<Replica>>>,
    /// A `std` lock around short sections without `.await`.
    pub(crate) hints: Mutex<Hints>,
    /// Serializes opening and closing replicas (a `tokio` lock: held across the awaits of
    /// starting and stopping a Raft group).
    lifecycle: tokio::sync::Mutex<()>,
    clock: fn() -> u64,
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
        store: NodeStore,
        network: N,
        assignment: &Assignment,
        clock: fn() -> u64,
    ) -> Result<Arc<PoolNode<N>>, PoolError> {
        let mut groups: BTreeSet<GroupKey> = store.group_keys();
        let peers: BTreeSet<NodeId> = assignment.values().flatten().copied().collect();
        let node = Arc::new(PoolNode {
            router: PoolRouter::new(network),
            store,
            replicas: RwLock::new(HashMap::new()),
            hints: Mutex::new(Hints {
                leaders: HashMap::new(),
                replicas: assignment.clone(),
                peers,
            }),
            lifecycle: tokio::sync::Mutex::new(()),
            clock,
            options,
        });
        for (&group, replicas) in assignment {
            if replicas.contains(&node.options.node_id) {
                groups.insert(group);
            }
        }
        for group in groups {
            node.open_replica(group).await?;
        }
        Ok(node)
    }

    /// Initializes the groups whose first replica is this node and that have never been
    /// initialized, with the voters `assignment` gives them, then waits (at most
    /// `BOOTSTRAP_COMMIT_WAIT`) until each has committed its first entries on a majority, so
    /// that the pool survives the loss of any one node from then on. Idempotent.
    pub async fn bootstrap(
        &self,
        assignment: &Assignment,
        addresses: &BTreeMap<NodeId, String>,
    ) -> Result<(), PoolError> {
        self.learn_peers(addresses.keys().copied());
        let mut created: Vec<GroupKey> = Vec::new();
        for (&group, voters) in assignment {
            if voters.first() != Some(&self.options.node_id) {
                continue;
            }
            let Some(replica) = self.replica(group) else {
                continue;
            };
            let initialized = replica
                .raft
                .is_initialized()
                .await
                .map_err(|error| PoolError::Internal(error.to_string()))?;
            if initialized {
                continue;
            }
            let members: BTreeMap<NodeId, typ::Node> = voters
                .iter()
                .map(|id| {
                    let addr = addresses.get(id).cloned().unwrap_or_default();
                    (*id, typ::Node { addr })
                })
                .collect();
            match replica.raft.initialize(members).await {
                Ok(()) => {
                    info!(group = %group, "initialized routing group");
                    created.push(group);
                }
                // Another run got there first: fine.
                Err(error) => debug!(group = %group, %error, "initialize skipped"),
            }
        }
        self.await_first_commits(created).await;
        Ok(())
    }

    /// Waits until every group of `groups` has applied an entry (so a majority holds its
    /// membership), all at once and for at most `BOOTSTRAP_COMMIT_WAIT`; then logs those still
    /// waiting.
    async fn await_first_commits(&self, groups: Vec<GroupKey>) {
        let waits = groups.into_iter().filter_map(|group| {
            let replica = self.replica(group)?;
            Some(async move {
                let applied = replica
                    .raft
                    .wait(Some(BOOTSTRAP_COMMIT_WAIT))
                    .applied_index_at_least(Some(0), "first commit")
                    .await;
                applied.is_err().then_some(group)
            })
        });
        let waiting: Vec<GroupKey> = futures_util::future::join_all(waits)
            .await
            .into_iter()
            .flatten()
            .collect();
        if !waiting.is_empty() {
            warn!(
                node = self.options.node_id,
                groups = ?waiting,
                "created groups not yet replicated (peers not started?): until they are, \
                 losing this node stops them"
            );
        }
    }

    /// Stops every Raft group of this node and closes their storage.
    pub async fn shutdown(&self) {
        let replicas: Vec<Arc<Replica>> = match self.replicas.write() {
            Ok(mut replicas) => replicas.drain().map(|(_, r)| r).collect(),
            Err(_) => Vec::new(),
        };
        for replica in replicas {
            if let Err(error) = replica.raft.shutdown().await {
                warn!(%error, "raft shutdown failed");
            }
        }
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

    /// The groups with a replica here.
    pub fn groups(&self) -> Vec<GroupKey> {
        let mut groups: Vec<GroupKey> = self.replicas_read().keys().copied().collect();
        groups.sort_unstable();
        groups
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
        let request = GroupRequest::registrar(self.options.epoch, 0, command);
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

    /// Runs `operation` on the leader of `group`: here, or forwarded, following the leader as
    /// it moves, within the request timeout.
    async fn routed(&self, group: GroupKey, operation: Operation) -> Result<Answer, PoolError> {
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        self.routed_until(group, operation, deadline).await
    }

    /// [`PoolNode::routed`] with its own deadline. A node without a replica of `group` asks
    /// the nodes its hints name, in turn.
    pub(crate) async fn routed_until(
        &self,
        group: GroupKey,
        operation: Operation,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, PoolError> {
        let mut tried: Vec<NodeId> = Vec::new();
        let mut target = self.next_target(group, &mut tried, deadline).await?;
        let hops_max = FORWARD_HOPS_MAX + self.peer_count() + ELECTION_HOPS_MAX;
        for _ in 0..hops_max {
            tried.push(target);
            let result = if target == self.options.node_id {
                self.serve_operation(group, operation.clone()).await
            } else {
                let hop_deadline = match operation {
                    // A move runs long on the leader: it gets all the time there is.
                    Operation::Move { .. } => deadline,
                    // Others get half the request timeout per hop, at most
                    // FORWARD_HOP_TIMEOUT, so that a message lost to a leader that is gone
                    // leaves time to try the next one.
                    _ => deadline.min(
                        tokio::time::Instant::now()
                            + (self.options.request_timeout / 2).min(FORWARD_HOP_TIMEOUT),
                    ),
                };
                match Box::pin(self.forward(target, operation.request(group), hop_deadline))
                    .await
                {
                    Ok(response) => Answer::from_response(response),
                    Err(ForwardFailure::Deadline) => {
                        Err(ServeError::Unavailable("deadline passed".into()))
                    }
                    // A write that may have reached the leader must not be sent again: if both
                    // copies committed, the second would find its own CSeq already applied and
                    // answer 500. Its outcome is unknown; the client retries with a new CSeq.
                    Err(ForwardFailure::Unanswered(reason))
                        if matches!(operation, Operation::Write(_)) =>
                    {
                        Err(ServeError::Unavailable(format!(
                            "the write's outcome is unknown: node {target} did not answer ({reason})"
                        )))
                    }
                    // Nothing was done there (or it is safe to repeat): ask the next node.
                    Err(_) => Err(ServeError::NotLeader { leader: None }),
                }
            };
            match result {
                Ok(answer) => {
                    self.note_leader(group, target);
                    return Ok(answer);
                }
                Err(ServeError::NotLeader {
                    leader: Some(leader),
                }) if leader != target => {
                    // Back to a node already asked: views of the leader disagree while the
                    // group elects; give the election a moment.
                    if tried.contains(&leader) {
                        if tokio::time::Instant::now() + LEADER_POLL >= deadline {
                            break;
                        }
                        tokio::time::sleep(LEADER_POLL).await;
                    }
                    target = leader;
                }
                Err(ServeError::NotLeader { .. }) | Err(ServeError::UnknownGroup(_)) => {
                    target = self.next_target(group, &mut tried, deadline).await?;
                }
                Err(error) => return Err(self.unavailable(group, error.to_string())),
            }
        }
        Err(self.unavailable(group, "leader changed too often".into()))
    }

    /// Where to send a request for `group` next: the leader this node's replica knows (waiting
    /// while it elects), or, without a replica here, the next node the hints name that was not
    /// `tried` yet (starting again after a pause when all were).
    async fn next_target(
        &self,
        group: GroupKey,
        tried: &mut Vec<NodeId>,
        deadline: tokio::time::Instant,
    ) -> Result<NodeId, PoolError> {
        // A replica that knows its group follows its leader; an empty one (opened for a move
        // that has not reached it yet) knows nothing, and asks like a node without a replica.
        // Read in place, not cloned: this runs on every request (the borrow ends here, before
        // any await).
        let knows_group = self.replica(group).is_some_and(|replica| {
            let metrics = replica.raft.metrics();
            let metrics = metrics.borrow_watched();
            let knows = metrics
                .membership_config
                .membership()
                .voter_ids()
                .next()
                .is_some();
            knows
        });
        if knows_group {
            return self.leader_of(group, deadline).await;
        }
        let candidates = self.candidates(group);
        if let Some(next) = candidates.iter().find(|n| !tried.contains(n)) {
            return Ok(*next);
        }
        // Every candidate said no: the group is electing. Pause, then start over.
        if tokio::time::Instant::now() + LEADER_POLL >= deadline || candidates.is_empty() {
            return Err(self.unavailable(group, "no node leads the group".into()));
        }
        tokio::time::sleep(LEADER_POLL).await;
        tried.clear();
        candidates
            .first()
            .copied()
            .ok_or_else(|| self.unavailable(group, "no node to ask".into()))
    }

    /// The nodes that may lead `group`, likeliest first: the last leader seen, the replicas
    /// of the hinted assignment, then every other node heard of. Never this node.
    fn candidates(&self, group: GroupKey) -> Vec<NodeId> {
        let hints = self.hints_lock();
        let mut candidates: Vec<NodeId> = Vec::new();
        let ordered = hints
            .leaders
            .get(&group)
            .into_iter()
            .chain(hints.replicas.get(&group).into_iter().flatten())
            .chain(hints.peers.iter());
        for node in ordered {
            if *node != self.options.node_id && !candidates.contains(node) {
                candidates.push(*node);
            }
        }
        candidates
    }

    fn note_leader(&self, group: GroupKey, leader: NodeId) {
        let mut hints = self.hints_lock();
        hints.leaders.insert(group, leader);
        hints.peers.insert(leader);
    }

    /// Adds `peers` to the nodes this node knows of.
    pub(crate) fn learn_peers(&self, peers: impl IntoIterator<Item = NodeId>) {
        self.hints_lock().peers.extend(peers);
    }

    fn peer_count(&self) -> usize {
        self.hints_lock().peers.len()
    }

    pub(crate) fn hints_lock(&self) -> std::sync::MutexGuard<'_, Hints> {
        // A poisoned lock only means a panic elsewhere mid-update; hints are only hints.
        self.hints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn serve_operation(
        &self,
        group: GroupKey,
        operation: Operation,
    ) -> Result<Answer, ServeError> {
        match operation {
            Operation::Write(request) => {
                self.write_local(group, request).await.map(Answer::Written)
            }
            Operation::Read { aor, now_ms } => self
                .read_local(group, &aor, now_ms)
                .await
                .map(Answer::Bindings),
            // The rare operations are boxed (here and in `serve`): membership futures are many
            // kilobytes, and inline, every request's future would carry their space and be
            // moved with it.
            Operation::Members => Box::pin(self.members_local(group))
                .await
                .map(Answer::Members),
            Operation::Move {
                add,
                remove,
                addresses,
            } => Box::pin(self.move_local(group, add, remove, &addresses))
                .await
                .map(Answer::Moved),
            Operation::TransferLeader { to } => Box::pin(self.transfer_local(group, to))
                .await
                .map(|()| Answer::Done),
        }
    }

    /// Purges expired bindings in every group this node leads (an ordinary command, so every
    /// replica removes the same bindings at the same log position).
    pub async fn purge_expired(&self, now_ms: u64) -> Result<(), PoolError> {
        for group in self.groups() {
            let Some(replica) = self.replica(group) else {
                continue;
            };
            if !replica.raft.is_leader() {
                continue;
            }
            let expired = replica
                .state
                .read(|state| state.registry().has_expired(now_ms))
                .map_err(|error| PoolError::Internal(error.to_string()))?;
            if expired {
                self.write(group, Command::PurgeExpired).await?;
            }
        }
        Ok(())
    }

    /// A status document: per group, this replica's view.
    pub fn status(&self) -> serde_json::Value {
        let mut replicas = self.replica_list();
        replicas.sort_by_key(|(key, _)| *key);
        let mut groups = Vec::with_capacity(replicas.len());
        for (group, replica) in replicas {
            // Cloned out at once: holding the borrow across an await can deadlock.
            let metrics = replica.raft.metrics().borrow_watched().clone();
            let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
            groups.push(serde_json::json!({
                "key": group.to_string(),
                "group": group.routing_group(),
                "state": format!("{:?}", metrics.state),
                "leader": metrics.current_leader,
                "term": metrics.current_term,
                "last_log_index": metrics.last_log_index,
                "committed": metrics.cluster_committed.map(|id| id.index),
                "applied": metrics.last_applied.map(|id| id.index),
                "voters": voters,
                "millis_since_quorum_ack": millis_since_quorum_ack(&metrics),
            }));
        }
        serde_json::json!({
            "node": self.options.node_id,
            "pool": self.options.pool,
            "epoch": self.options.epoch,
            "groups": groups,
        })
    }

    /// Opens this node's replica of `group` and starts its Raft group, without initializing
    /// it: an empty replica waits, as a learner-to-be, for the leader to replicate to it.
    /// Idempotent: a replica already open is left as it is.
    pub async fn open_replica(&self, group: GroupKey) -> Result<(), PoolError> {
        let Some(position) = self.options.position(group) else {
            return Err(PoolError::Internal(format!(
                "group {group} is not a group of pool {}",
                self.options.pool
            )));
        };
        let _lifecycle = self.lifecycle.lock().await;
        if self.replica(group).is_some() {
            return Ok(());
        }
        let (log, state_machine) = self
            .store
            .group(group, GroupState::new(self.options.policy.clone()))
            .map_err(|error| PoolError::Internal(error.to_string()))?;
        let state = state_machine.state_handle();
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
        let raft = GroupRaft::new(
            self.options.node_id,
            Arc::new(config),
            networks,
            log,
            state_machine,
        )
        .await
        .map_err(|error| PoolError::Internal(error.to_string()))?;
        let replica = Arc::new(Replica { raft, state });
        match self.replicas.write() {
            Ok(mut replicas) => {
                replicas.insert(group, replica);
                Ok(())
            }
            Err(_) => Err(PoolError::Internal("replica table lock poisoned".into())),
        }
    }

    /// Stops this node's replica of `group` and deletes its data: the node has been removed
    /// from the group. Idempotent: without a replica it only makes sure no data is left.
    ///
    /// The caller must know the node is no longer a member (the group's leader does, once the
    /// membership change is committed); see [`PoolRequest::CloseReplica`].
    pub async fn close_replica(&self, group: GroupKey) -> Result<(), PoolError> {
        let _lifecycle = self.lifecycle.lock().await;
        let replica = match self.replicas.write() {
            Ok(mut replicas) => replicas.remove(&group),
            Err(_) => return Err(PoolError::Internal("replica table lock poisoned".into())),
        };
        if let Some(replica) = replica {
            if let Err(error) = replica.raft.shutdown().await {
                warn!(group = %group, %error, "raft shutdown failed");
            }
            info!(group = %group, node = self.options.node_id, "closed replica");
        }
        // The storage is released when the last handle of the stopped group goes; requests in
        // flight may hold one for a moment.
        for _ in 0..CLOSE_ATTEMPTS_MAX {
            match self.store.remove_group(group).await {
                Ok(()) => return Ok(()),
                Err(roster_store::StoreError::GroupOpen(_)) => {
                    tokio::time::sleep(LEADER_POLL).await;
                }
                Err(error) => return Err(PoolError::Internal(error.to_string())),
            }
        }
        Err(PoolError::Internal(format!(
            "group {group} still open after its replica stopped"
        )))
    }

    /// Every replica this node holds, copied out of the lock.
    pub(crate) fn replica_list(&self) -> Vec<(GroupKey, Arc<Replica>)> {
        self.replicas_read()
            .iter()
            .map(|(group, replica)| (*group, replica.clone()))
            .collect()
    }

    pub(crate) fn replicas_read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<GroupKey, Arc<Replica>>> {
        // A poisoned lock only means a panic elsewhere while inserting; the map is still whole.
        self.replicas
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn replica(&self, group: GroupKey) -> Option<Arc<Replica>> {
        self.replicas_read().get(&group).cloned()
    }

    /// The leader of `group` as far as this node knows, waiting (until `deadline`, at most
    /// `leader_wait`) while the group elects one.
    async fn leader_of(
        &self,
        group: GroupKey,
        deadline: tokio::time::Instant,
    ) -> Result<NodeId, PoolError> {
        let wait_until = deadline.min(tokio::time::Instant::now() + self.options.leader_wait);
        loop {
            if let Some(leader) = self.known_leader(group) {
                return Ok(leader);
            }
            if tokio::time::Instant::now() >= wait_until {
                return Err(self.unavailable(group, "no leader".into()));
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    fn known_leader(&self, group: GroupKey) -> Option<NodeId> {
        match self.replica(group) {
            // Cloned out at once (see `status`).
            Some(replica) => replica.raft.metrics().borrow_watched().current_leader,
            // No replica here: `next_target` asks the nodes the hints name.
            None => None,
        }
    }

    pub(crate) async fn forward(
        &self,
        target: NodeId,
        request: PoolRequest,
        deadline: tokio::time::Instant,
    ) -> Result<PoolResponse, ForwardFailure> {
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        if timeout.is_zero() {
            return Err(ForwardFailure::Deadline);
        }
        let mut result = self.router.call_typed(target, &request, timeout).await;
        // A node this one has no address for (added to the pool after this node started):
        // its address is in the membership of a group it belongs to. Nothing was sent.
        if let Err(CallFailure::Net(NetError::UnknownPeer(_))) = &result {
            if self.learn_address_from_memberships(target) {
                let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
                result = self.router.call_typed(target, &request, timeout).await;
            }
        }
        result
            .map_err(|failure| match failure {
                CallFailure::Net(NetError::UnknownPeer(_)) => ForwardFailure::NotSent,
                other => ForwardFailure::Unanswered(other.to_string()),
            })
            .inspect_err(|_| debug!(target, "forward failed"))
    }

    /// Looks for `node`'s cluster address in the memberships of this node's replicas and
    /// gives it to the network; `true` when found.
    fn learn_address_from_memberships(&self, node: NodeId) -> bool {
        for group in self.groups() {
            let Some(replica) = self.replica(group) else {
                continue;
            };
            let address = {
                let metrics = replica.raft.metrics();
                let metrics = metrics.borrow_watched();
                metrics
                    .membership_config
                    .membership()
                    .get_node(&node)
                    .map(|member| member.addr.clone())
            };
            if let Some(address) = address {
                self.router.network().learn_address(node, &address);
                return true;
            }
        }
        false
    }

    /// Proposes on this node, which believes it leads `group`.
    async fn write_local(
        &self,
        group: GroupKey,
        mut request: GroupRequest,
    ) -> Result<GroupResponse, ServeError> {
        let replica = self.replica(group).ok_or(ServeError::UnknownGroup(group))?;
        self.check_leadership(&replica)?;
        request.timestamp_ms = (self.clock)();
        // Boxed: openraft's futures are kilobytes; see `serve`.
        let write = Box::pin(replica.raft.client_write(request));
        match tokio::time::timeout(self.options.request_timeout, write).await {
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(error)) => match error.forward_to_leader() {
                Some(forward) => Err(ServeError::NotLeader {
                    leader: forward.leader_id,
                }),
                None => Err(ServeError::Unavailable(error.to_string())),
            },
            Err(_) => Err(ServeError::Unavailable(
                "write not committed in time".into(),
            )),
        }
    }

    async fn read_local(
        &self,
        group: GroupKey,
        aor: &str,
        now_ms: u64,
    ) -> Result<Vec<Binding>, ServeError> {
        let replica = self.replica(group).ok_or(ServeError::UnknownGroup(group))?;
        self.check_leadership(&replica)?;
        let read = Box::pin(replica.raft.ensure_linearizable(ReadPolicy::ReadIndex));
        match tokio::time::timeout(self.options.request_timeout, read).await {
            Ok(Ok(_)) => replica
                .state
                .read(|state| state.lookup(aor, now_ms))
                .map_err(|error| ServeError::Unavailable(error.to_string())),
            Ok(Err(error)) => match error.forward_to_leader() {
                Some(forward) => Err(ServeError::NotLeader {
                    leader: forward.leader_id,
                }),
                None => Err(ServeError::Unavailable(error.to_string())),
            },
            Err(_) => Err(ServeError::Unavailable(
                "read index not confirmed in time".into(),
            )),
        }
    }

    /// Refuses at once when this replica is not the leader, or leads without having heard
    /// from a quorum for longer than two election timeouts (it is cut off: a write would
    /// hang).
    pub(crate) fn check_leadership(&self, replica: &Replica) -> Result<(), ServeError> {
        // Two fields read in place: cloning the whole metrics on every write costs more.
        let (leader, since_quorum_ack_ms) = {
            let metrics = replica.raft.metrics();
            let metrics = metrics.borrow_watched();
            (metrics.current_leader, millis_since_quorum_ack(&metrics))
        };
        if leader != Some(self.options.node_id) {
            return Err(ServeError::NotLeader { leader });
        }
        // Twice the longest election timeout: a leader whose followers are only slow (busy
        // catching up a new replica, a loaded machine) keeps serving; one that is cut off
        // refuses well before a client's transaction times out.
        let cut_off_ms = 2 * self.options.raft.election_timeout_max_ms;
        match since_quorum_ack_ms {
            Some(millis) if millis > cut_off_ms => Err(ServeError::Unavailable(format!(
                "leader has not heard from a quorum for {millis} ms"
            ))),
            _ => Ok(()),
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

    /// Serves one request. Every large future it awaits (openraft's, snapshots, membership)
    /// is boxed: futures nest by value, so inline they would make each append's future many
    /// kilobytes, copied whenever it moves (10 KiB per request before; memcpy was a tenth of
    /// a loaded node's CPU).
    async fn serve(&self, request: PoolRequest) -> PoolResponse {
        match request {
            PoolRequest::Append { group, rpc } => match self.replica(group) {
                Some(replica) => PoolResponse::Append(
                    Box::pin(replica.raft.append_entries(rpc))
                        .await
                        .map_err(|e| e.to_string()),
                ),
                None => PoolResponse::Error(format!("no replica of group {group}")),
            },
            PoolRequest::Vote { group, rpc } => match self.replica(group) {
                Some(replica) => PoolResponse::Vote(
                    Box::pin(replica.raft.vote(rpc))
                        .await
                        .map_err(|e| e.to_string()),
                ),
                None => PoolResponse::Error(format!("no replica of group {group}")),
            },
            PoolRequest::PreVote { group, rpc } => match self.replica(group) {
                Some(replica) => PoolResponse::Vote(
                    Box::pin(replica.raft.pre_vote(rpc))
                        .await
                        .map_err(|e| e.to_string()),
                ),
                None => PoolResponse::Error(format!("no replica of group {group}")),
            },
            PoolRequest::Snapshot {
                group,
                vote,
                meta,
                data,
            } => match self.replica(group) {
                Some(replica) => {
                    let snapshot = typ::Snapshot {
                        meta,
                        snapshot: data,
                    };
                    PoolResponse::Snapshot(
                        Box::pin(replica.raft.install_full_snapshot(vote, snapshot))
                            .await
                            .map_err(|e| e.to_string()),
                    )
                }
                None => PoolResponse::Error(format!("no replica of group {group}")),
            },
            PoolRequest::Write { group, request } => {
                PoolResponse::Write(self.write_local(group, request).await)
            }
            PoolRequest::Read { group, aor, now_ms } => {
                PoolResponse::Read(self.read_local(group, &aor, now_ms).await)
            }
            PoolRequest::OpenReplica { group } => PoolResponse::Done(
                Box::pin(self.open_replica(group))
                    .await
                    .map_err(|error| ServeError::Unavailable(error.to_string())),
            ),
            PoolRequest::CloseReplica { group, members } => {
                PoolResponse::Done(Box::pin(self.serve_close(group, &members)).await)
            }
            PoolRequest::Groups => PoolResponse::Groups(self.groups()),
            PoolRequest::LeaderTransfer { group, rpc } => match self.replica(group) {
                Some(replica) => PoolResponse::LeaderTransfer(
                    Box::pin(replica.raft.handle_transfer_leader(rpc))
                        .await
                        .map_err(|e| e.to_string()),
                ),
                None => PoolResponse::Error(format!("no replica of group {group}")),
            },
            PoolRequest::Members { group } => {
                PoolResponse::Members(Box::pin(self.members_local(group)).await)
            }
            PoolRequest::MoveReplica {
                group,
                add,
                remove,
                addresses,
            } => {
                PoolResponse::Moved(Box::pin(self.move_local(group, add, remove, &addresses)).await)
            }
            PoolRequest::TransferLeader { group, to } => {
                PoolResponse::Done(Box::pin(self.transfer_local(group, to)).await)
            }
            // `handle` unpacks batches; one inside another is refused there.
            PoolRequest::Batch(_) => PoolResponse::Error("a batch inside a batch".into()),
        }
    }
}

/// The snapshot interval of the group at `position` of the node's `groups`: `base` entries, plus
/// up to `base` more spread over them. Groups under an even load reach the same entry count together; with
/// one interval they would all snapshot at once, and the burst of snapshot writes and flushes
/// would stall every group's appends on the node.
fn staggered_snapshot_interval(base: u64, position: usize, groups: usize) -> u64 {
    let groups = u64::try_from(groups.max(1)).unwrap_or(u64::MAX);
    let position = u64::try_from(position).unwrap_or(0);
    base + base * (position % groups) / groups
}

/// Why a forwarded request got no answer; what the sender may do next depends on whether the
/// peer may have acted on it.
#[derive(Debug)]
pub(crate) enum ForwardFailure {
    /// The deadline had passed before anything was sent.
    Deadline,
    /// Nothing reached the peer (no address is known for it).
    NotSent,
    /// The request may have reached the peer, which may have acted on it.
    Unanswered(String),
}

/// How long ago a leader last heard from a quorum; `None` when not a leader.
fn millis_since_quorum_ack(metrics: &typ::RaftMetrics) -> Option<u64> {
    metrics.last_quorum_acked.as_ref().map(|acked| {
        let elapsed = openraft::async_runtime::Instant::elapsed(&**acked);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    })
}

impl<N: Network> PoolNode<N> {
    /// Serves one decoded request (never a batch) and encodes its answer.
    async fn handle_one(&self, from: Peer, request: Result<PoolRequest, CodecError>) -> Vec<u8> {
        let response = match request {
            Ok(request) => {
                let kind = request.kind();
                let started = std::time::Instant::now();
                let response = self.serve(request).await;
                metrics::histogram!(crate::RPC_DURATION, "kind" => kind)
                    .record(started.elapsed().as_secs_f64());
                response
            }
            Err(error) => {
                warn!(%from, %error, "undecodable pool request");
                PoolResponse::Error(error.to_string())
            }
        };
        encode_response(&response)
    }
}

/// Encodes `response`. One that cannot be encoded is a bug in this crate's types; the peer
/// gets an error it can decode instead.
fn encode_response(response: &PoolResponse) -> Vec<u8> {
    encode(response)
        .unwrap_or_else(|error| encode(&PoolResponse::Error(error.to_string())).unwrap_or_default())
}

impl<N: Network> Handler for PoolNode<N> {
    async fn handle(&self, from: Peer, body: Vec<u8>) -> Vec<u8> {
        // Every request a pool serves today comes from a node of the same pool; the network
        // may also let the partner pool's nodes through, and those are refused here, unread.
        if from.pool != self.options.pool {
            warn!(%from, pool = self.options.pool, "request from a node of another pool refused");
            return encode_response(&PoolResponse::Error(format!(
                "{from} is not a node of pool {}",
                self.options.pool
            )));
        }
        match decode::<PoolRequest>(&body) {
            // The requests of a batch are served concurrently, answered together in order.
            Ok(PoolRequest::Batch(frames)) => {
                let answers = futures_util::future::join_all(
                    frames
                        .iter()
                        .map(|frame| self.handle_one(from, decode::<PoolRequest>(&frame.0))),
                )
                .await;
                encode_response(&PoolResponse::Batch(
                    answers.into_iter().map(Frame).collect(),
                ))
            }
            request => self.handle_one(from, request).await,
        }
    }
}

/// The handler a node's network is built with before the node exists (the network is an
/// argument of [`PoolNode::start`]); it serves requests once [`PoolHandler::attach`] is called
/// and answers "starting" before.
pub struct PoolHandler<N: Network> {
    node: std::sync::OnceLock<std::sync::Weak<PoolNode<N>>>,
}

impl<N: Network> Default for PoolHandler<N> {
    fn default() -> Self {
        PoolHandler {
            node: std::sync::OnceLock::new(),
        }
    }
}

impl<N: Network> PoolHandler<N> {
    /// Serves `node` from now on. A second call is ignored.
    pub fn attach(&self, node: &Arc<PoolNode<N>>) {
        let _ = self.node.set(Arc::downgrade(node));
    }
}

impl<N: Network> Handler for PoolHandler<N> {
    async fn handle(&self, from: Peer, body: Vec<u8>) -> Vec<u8> {
        match self.node.get().and_then(std::sync::Weak::upgrade) {
            Some(node) => node.handle(from, body).await,
            None => encode(&PoolResponse::Error("node starting".into())).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod snapshot_interval_tests {
    use super::staggered_snapshot_interval;

    #[test]
    fn intervals_spread_over_one_base() {
        let intervals: Vec<u64> = (0..32)
            .map(|group| staggered_snapshot_interval(5_000, group, 32))
            .collect();
        assert_eq!(intervals[0], 5_000);
        assert_eq!(intervals[16], 7_500);
        assert!(intervals.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(intervals[31] < 10_000);
    }
}
