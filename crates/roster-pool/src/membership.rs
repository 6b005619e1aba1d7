//! Membership changes of routing groups: moving a replica from node to node (learner → catch
//! up → voter → the old one removed), rebalancing a pool after a node joins or drains, and
//! balancing leaders.
//!
//! The leader of a group runs each move ([`PoolNode::move_replica`] routes it there):
//!
//! 1. it asks the node gaining the replica to open an empty one (`PoolRequest::OpenReplica`;
//!    an empty replica never initializes, it waits for the leader);
//! 2. `add_learner(add, blocking = true)`: replication starts, and the call returns once the
//!    learner has caught up (by log, or by snapshot when the log was purged);
//! 3. `change_membership(new voters, retain = false)`: openraft goes through the joint
//!    configuration to the new one, and the removed node leaves the membership;
//! 4. it tells the removed node to close its replica and delete its data
//!    (`PoolRequest::CloseReplica`, carrying the members, so that a member never closes), or,
//!    when it removed itself, waits for openraft to hand leadership over, then closes its own.
//!
//! **Failing halfway.** Every step is idempotent and every decision is taken again from the
//! group's membership, as its leader sees it after a read-index round: re-running
//! [`PoolNode::rebalance`] after a failure (a timeout, a leader change, the orchestrator's
//! crash) resumes where the pool is. A node opened but never added keeps an empty replica that
//! the sweep closes; a learner that never became a voter is removed by the next move of its
//! group; a change cut short in joint consensus is completed first; a removed node that did not
//! hear `CloseReplica` is closed by the sweep. Only one orchestrator may run at a time (the
//! operator's command); openraft refuses a second membership change while one is in progress.
//!
//! Node ids are never reused: a node removed from the pool keeps its id retired.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{ChangeMembers, ReadPolicy};
use roster_net::Network;
use roster_raft::{typ, GroupKey};
use roster_topology::NodeId;
use tracing::{info, warn};

use crate::node::{PoolError, PoolNode};
use crate::placement::{self, Assignment, Move};
use crate::protocol::{GroupMembers, PoolRequest, PoolResponse, ServeError};
use crate::replicas::Replica;
use crate::route::{Answer, Operation};

/// The routing group whose leader runs the pool's own leader balancing
/// ([`PoolNode::balance_leaders_if_coordinator`]): one node at a time, moving with it.
pub const BALANCER_GROUP: u32 = 0;

/// How long a node has to answer before leader balancing counts it as down.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one move may take: a learner catching up by snapshot over a LAN takes seconds;
/// one that cannot catch up in a minute would not keep up as a voter either.
const MOVE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a leader that removed itself waits for openraft to hand leadership over (it
/// steps down 150 ms after the change commits) before it closes its replica anyway.
const STEP_DOWN_WAIT: Duration = Duration::from_secs(3);

/// Pause between looks at a leader's metrics while it steps down.
const STEP_DOWN_POLL: Duration = Duration::from_millis(25);

/// Entries a node may lag behind the leader and still be handed the leadership: a node that
/// lags more would make writes wait while it catches up.
const TRANSFER_LAG_MAX: u64 = 64;

impl<N: Network> PoolNode<N> {
    /// The members of `group`, as its leader sees them after a read-index round.
    pub async fn members(&self, group: GroupKey) -> Result<GroupMembers, PoolError> {
        match self.routed_for(group, Operation::Members).await? {
            Answer::Members(members) => Ok(members),
            _ => Err(self.unavailable(group, "unexpected answer to members".into())),
        }
    }

    /// The pool's current assignment, read from every group's leader: voters, the leader
    /// first.
    pub async fn assignment(&self) -> Result<Assignment, PoolError> {
        let members = self.all_members().await?;
        Ok(assignment_of(&members))
    }

    /// Moves a replica of `group`: `add` joins (learner, catches up, voter), then `remove`, if
    /// any, leaves and deletes its data. Runs on the group's leader (routed there). Returns the
    /// voters after the move. Idempotent: a move already done does nothing more.
    pub async fn move_replica(
        &self,
        group: GroupKey,
        add: NodeId,
        remove: Option<NodeId>,
        addresses: &BTreeMap<NodeId, String>,
    ) -> Result<Vec<NodeId>, PoolError> {
        self.learn_peers(addresses.keys().copied());
        let deadline = tokio::time::Instant::now() + MOVE_TIMEOUT;
        let operation = Operation::Move {
            add,
            remove,
            addresses: addresses.clone(),
        };
        match self.routed_until(group, operation, deadline).await? {
            Answer::Moved(voters) => {
                self.hints.note_replicas(group, voters.clone());
                Ok(voters)
            }
            _ => Err(self.unavailable(group, "unexpected answer to a move".into())),
        }
    }

    /// Moves replicas until the pool is balanced over `target_nodes` (placement's
    /// `rebalance`), then closes replicas left on nodes that are no longer members. Drain a
    /// node: all nodes but it; add a node: all nodes with it (started, with an address in
    /// `addresses`). Returns the moves made. Safe to run again after a failure: it starts from
    /// the memberships as they are.
    pub async fn rebalance(
        &self,
        target_nodes: &[NodeId],
        addresses: &BTreeMap<NodeId, String>,
    ) -> Result<Vec<Move>, PoolError> {
        self.learn_peers(addresses.keys().copied());
        self.learn_peers(target_nodes.iter().copied());
        let members = self.all_members().await?;
        // A change cut short in joint consensus is completed first (a move that adds a voter
        // already there only flattens the configuration).
        for (&group, group_members) in &members {
            if let (true, Some(&voter)) = (group_members.joint, group_members.voters.first()) {
                self.move_replica(group, voter, None, addresses).await?;
            }
        }
        let current = assignment_of(&self.all_members().await?);
        let moves = placement::rebalance(&current, target_nodes);
        for step in &moves {
            info!(group = %step.group, add = step.add, remove = ?step.remove, "moving replica");
            self.move_replica(step.group, step.add, step.remove, addresses)
                .await?;
        }
        self.sweep(addresses).await;
        Ok(moves)
    }

    /// Hands the leadership of each group to its preferred leader (placement's `leaders`:
    /// spread evenly, current leaders kept where the spread allows) when that node has caught
    /// up. Returns how many transfers were asked for; they complete asynchronously.
    pub async fn balance_leaders(&self) -> Result<usize, PoolError> {
        let members = self.all_members().await?;
        let current: BTreeMap<GroupKey, NodeId> =
            members.iter().map(|(g, m)| (*g, m.leader)).collect();
        let wanted = placement::leaders(&assignment_of(&members), &current);
        Ok(self.transfer_leaders(&wanted, &current).await)
    }

    /// Hands every leadership `node` holds to another voter of the group (placement's
    /// `leaders` over the replicas without `node`), before `node` is stopped for an upgrade.
    /// Returns how many groups `node` led when asked and how many transfers were asked for;
    /// they complete asynchronously (a voter that has not caught up is refused: ask again
    /// until `node` leads none).
    pub async fn hand_over_leaderships(&self, node: NodeId) -> Result<(usize, usize), PoolError> {
        let members = self.all_members().await?;
        let current: BTreeMap<GroupKey, NodeId> =
            members.iter().map(|(g, m)| (*g, m.leader)).collect();
        let mut assignment = assignment_of(&members);
        for replicas in assignment.values_mut() {
            replicas.retain(|&replica| replica != node);
        }
        let wanted: BTreeMap<GroupKey, NodeId> = placement::leaders(&assignment, &current)
            .into_iter()
            .filter(|(group, _)| current.get(group) == Some(&node))
            .collect();
        let led = current.values().filter(|&&leader| leader == node).count();
        Ok((led, self.transfer_leaders(&wanted, &current).await))
    }

    /// The pool's own leader balancing, run periodically on every node: it acts only on the
    /// node that leads routing group [`BALANCER_GROUP`] (one node at a time, whichever it is),
    /// and only when no group is changing membership (a move or drain owns the pool then).
    /// Leaders are spread over the nodes that answer now, so a node that restarted (and lost
    /// its leaderships to elections) gets its share back once caught up, and a node that is
    /// down is never chosen. Returns the transfers asked for, `None` when it did not act.
    pub async fn balance_leaders_if_coordinator(&self) -> Result<Option<usize>, PoolError> {
        let leads_balancer_group = self
            .replica(GroupKey::routing(self.options.pool, BALANCER_GROUP))
            .is_some_and(|replica| replica.check_leadership(&self.leadership()).is_ok());
        if !leads_balancer_group {
            return Ok(None);
        }
        let members = self.all_members().await?;
        if members
            .values()
            .any(|m| m.joint || !m.learners.is_empty() || !m.outgoing.is_empty())
        {
            return Ok(None);
        }
        let voters: BTreeSet<NodeId> = members.values().flat_map(|m| m.voters.clone()).collect();
        let live = self.answering(&voters).await;
        let current: BTreeMap<GroupKey, NodeId> =
            members.iter().map(|(g, m)| (*g, m.leader)).collect();
        let mut assignment = assignment_of(&members);
        for replicas in assignment.values_mut() {
            replicas.retain(|node| live.contains(node));
        }
        let wanted = placement::leaders(&assignment, &current);
        Ok(Some(self.transfer_leaders(&wanted, &current).await))
    }

    /// The nodes of `nodes` that answer a cheap request within [`LIVENESS_TIMEOUT`] (this
    /// node always does).
    async fn answering(&self, nodes: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
        let own = self.options.node_id;
        let probes = nodes.iter().filter(|&&n| n != own).map(|&peer| async move {
            let answer = self
                .router
                .call(peer, &PoolRequest::Groups, LIVENESS_TIMEOUT)
                .await;
            matches!(answer, Ok(PoolResponse::Groups(_))).then_some(peer)
        });
        let mut live: BTreeSet<NodeId> = futures_util::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        live.insert(own);
        live
    }

    /// Asks each group's leader to hand over to the `wanted` node where it is not `current`.
    async fn transfer_leaders(
        &self,
        wanted: &BTreeMap<GroupKey, NodeId>,
        current: &BTreeMap<GroupKey, NodeId>,
    ) -> usize {
        let mut transfers = 0;
        for (&group, &to) in wanted {
            if current.get(&group) == Some(&to) {
                continue;
            }
            match self
                .routed_for(group, Operation::TransferLeader { to })
                .await
            {
                Ok(_) => {
                    info!(group = %group, to, "leadership handed over for balance");
                    transfers += 1;
                }
                // Not caught up, or the leader moved: the next run tries again.
                Err(error) => warn!(group = %group, to, %error, "leadership not transferred"),
            }
        }
        transfers
    }

    /// Closes replicas held by nodes that are no longer members of their group (a removed
    /// node that missed `CloseReplica`, an empty replica opened for a move that failed).
    /// Best effort: an unreachable node is skipped and logged.
    async fn sweep(&self, addresses: &BTreeMap<NodeId, String>) {
        for &peer in addresses.keys() {
            let groups = if peer == self.options.node_id {
                self.groups()
            } else {
                match self
                    .router
                    .call(peer, &PoolRequest::Groups, self.options.request_timeout)
                    .await
                {
                    Ok(PoolResponse::Groups(groups)) => groups,
                    Ok(other) => {
                        warn!(peer, ?other, "unexpected answer to groups");
                        continue;
                    }
                    Err(error) => {
                        warn!(peer, %error, "sweep skipped an unreachable node");
                        continue;
                    }
                }
            };
            for group in groups {
                let members = match self.members(group).await {
                    Ok(members) => members.all(),
                    Err(error) => {
                        warn!(group = %group, %error, "sweep skipped a group");
                        continue;
                    }
                };
                if members.contains(&peer) {
                    continue;
                }
                let result = if peer == self.options.node_id {
                    self.serve_close(group, &members).await
                } else {
                    self.remote_close(peer, group, members).await
                };
                match result {
                    Ok(()) => info!(group = %group, peer, "swept a replica of a non-member"),
                    Err(error) => {
                        warn!(group = %group, peer, %error, "sweep could not close a replica")
                    }
                }
            }
        }
    }

    async fn routed_for(&self, group: GroupKey, operation: Operation) -> Result<Answer, PoolError> {
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        self.routed_until(group, operation, deadline).await
    }

    async fn all_members(&self) -> Result<BTreeMap<GroupKey, GroupMembers>, PoolError> {
        let mut members = BTreeMap::new();
        for group in self.options.keys() {
            members.insert(group, self.members(group).await?);
        }
        Ok(members)
    }

    /// Serves `Members` on the leader: a read-index round proves it still leads, so the
    /// membership it reports includes every committed change.
    pub(crate) async fn members_local(&self, group: GroupKey) -> Result<GroupMembers, ServeError> {
        let replica = self.replica(group).ok_or(ServeError::UnknownGroup(group))?;
        replica.check_leadership(&self.leadership())?;
        let read = replica.raft.ensure_linearizable(ReadPolicy::ReadIndex);
        match tokio::time::timeout(self.options.request_timeout, read).await {
            Ok(Ok(_)) => Ok(members_of(self.options.node_id, &replica)),
            Ok(Err(error)) => Err(match error.forward_to_leader() {
                Some(forward) => ServeError::NotLeader {
                    leader: forward.leader_id,
                },
                None => ServeError::Unavailable(error.to_string()),
            }),
            Err(_) => Err(ServeError::Unavailable(
                "read index not confirmed in time".into(),
            )),
        }
    }

    /// Runs a move on the leader of `group` (see the module documentation).
    pub(crate) async fn move_local(
        &self,
        group: GroupKey,
        add: NodeId,
        remove: Option<NodeId>,
        addresses: &BTreeMap<NodeId, String>,
    ) -> Result<Vec<NodeId>, ServeError> {
        if remove == Some(add) {
            return Err(ServeError::Unavailable(format!(
                "a move cannot add and remove node {add}"
            )));
        }
        let replica = self.replica(group).ok_or(ServeError::UnknownGroup(group))?;
        replica.check_leadership(&self.leadership())?;
        let deadline = tokio::time::Instant::now() + MOVE_TIMEOUT;
        let before = members_of(self.options.node_id, &replica);
        let mut voters: BTreeSet<NodeId> = before.voters.iter().copied().collect();
        voters.insert(add);
        if let Some(removed) = remove {
            voters.remove(&removed);
        }
        // 1. The new node: an empty replica, then a learner that has caught up. Learners left
        //    by moves that failed halfway go first.
        if !before.voters.contains(&add) {
            let strays: BTreeSet<NodeId> = before
                .learners
                .iter()
                .copied()
                .filter(|n| *n != add)
                .collect();
            if !strays.is_empty() {
                let change = replica
                    .raft
                    .change_membership(ChangeMembers::RemoveNodes(strays), false);
                within(deadline, change, "stray learners not removed in time").await?;
            }
            self.remote_open(add, group, deadline).await?;
            let node = typ::Node {
                addr: addresses.get(&add).cloned().unwrap_or_default(),
            };
            let learner = replica.raft.add_learner(add, node, true);
            within(deadline, learner, "learner did not catch up in time").await?;
        }
        // 2. Promote and remove: openraft goes through the joint configuration.
        let current: BTreeSet<NodeId> = before.voters.iter().copied().collect();
        if before.joint || current != voters {
            let change = replica.raft.change_membership(voters.clone(), false);
            within(deadline, change, "membership change not committed in time").await?;
            info!(group = %group, add, remove = ?remove, voters = ?voters, "membership changed");
        }
        // 3. The removed node closes its replica.
        if let Some(removed) = remove {
            let members: Vec<NodeId> = voters.iter().copied().collect();
            if removed == self.options.node_id {
                self.wait_step_down(&replica).await;
                drop(replica);
                self.close_replica(group)
                    .await
                    .map_err(|error| ServeError::Unavailable(error.to_string()))?;
            } else if let Err(error) = self.remote_close(removed, group, members).await {
                // The move itself is done; the sweep closes the replica later.
                warn!(group = %group, removed, %error, "removed node did not close its replica");
            }
        }
        Ok(voters.into_iter().collect())
    }

    /// Serves `TransferLeader` on the leader: hands over only to a voter that has caught up.
    pub(crate) async fn transfer_local(
        &self,
        group: GroupKey,
        to: NodeId,
    ) -> Result<(), ServeError> {
        let replica = self.replica(group).ok_or(ServeError::UnknownGroup(group))?;
        replica.check_leadership(&self.leadership())?;
        if to == self.options.node_id {
            return Ok(());
        }
        // Cloned out at once: never held across an await.
        let metrics = replica.raft.metrics().borrow_watched().clone();
        let is_voter = metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|n| n == to);
        if !is_voter {
            return Err(ServeError::Unavailable(format!("node {to} is not a voter")));
        }
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&to).cloned())
            .flatten()
            .map(|log_id| log_id.index);
        if matched.is_none_or(|matched| matched.saturating_add(TRANSFER_LAG_MAX) < last) {
            return Err(ServeError::Unavailable(format!(
                "node {to} lags: matched {matched:?}, last {last}"
            )));
        }
        replica
            .raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|error| ServeError::Unavailable(error.to_string()))
    }

    /// Serves `CloseReplica`: refuses when this node is among `members` or leads the group.
    pub(crate) async fn serve_close(
        &self,
        group: GroupKey,
        members: &[NodeId],
    ) -> Result<(), ServeError> {
        if members.contains(&self.options.node_id) {
            return Err(ServeError::Unavailable(format!(
                "node {} is still a member of group {group}",
                self.options.node_id
            )));
        }
        if let Some(replica) = self.replica(group) {
            let leader = replica.raft.metrics().borrow_watched().current_leader;
            if leader == Some(self.options.node_id) {
                return Err(ServeError::Unavailable(format!(
                    "node {} leads group {group}",
                    self.options.node_id
                )));
            }
        }
        self.close_replica(group)
            .await
            .map_err(|error| ServeError::Unavailable(error.to_string()))
    }

    async fn remote_open(
        &self,
        node: NodeId,
        group: GroupKey,
        deadline: tokio::time::Instant,
    ) -> Result<(), ServeError> {
        if node == self.options.node_id {
            return self
                .open_replica(group)
                .await
                .map_err(|error| ServeError::Unavailable(error.to_string()));
        }
        let request = PoolRequest::OpenReplica { group };
        match self.forward(node, request, deadline).await {
            Ok(PoolResponse::Done(result)) => result,
            Ok(other) => Err(ServeError::Unavailable(format!(
                "node {node} answered {other:?} to OpenReplica"
            ))),
            Err(_) => Err(ServeError::Unavailable(format!(
                "node {node} did not open its replica"
            ))),
        }
    }

    async fn remote_close(
        &self,
        node: NodeId,
        group: GroupKey,
        members: Vec<NodeId>,
    ) -> Result<(), ServeError> {
        let request = PoolRequest::CloseReplica { group, members };
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        match self.forward(node, request, deadline).await {
            Ok(PoolResponse::Done(result)) => result,
            Ok(other) => Err(ServeError::Unavailable(format!(
                "node {node} answered {other:?} to CloseReplica"
            ))),
            Err(_) => Err(ServeError::Unavailable(format!(
                "node {node} did not close its replica"
            ))),
        }
    }

    /// Waits (at most [`STEP_DOWN_WAIT`]) until this node no longer leads: openraft hands the
    /// leadership of a group that removed its leader to the most up-to-date voter.
    async fn wait_step_down(&self, replica: &Replica) {
        let until = tokio::time::Instant::now() + STEP_DOWN_WAIT;
        while tokio::time::Instant::now() < until {
            let leader = replica.raft.metrics().borrow_watched().current_leader;
            if leader != Some(self.options.node_id) {
                return;
            }
            tokio::time::sleep(STEP_DOWN_POLL).await;
        }
        warn!(
            node = self.options.node_id,
            "removed leader did not step down in time"
        );
    }
}

/// Runs a membership call until `deadline`, mapping its errors to what the orchestrator acts
/// on: another leader (follow it) or unavailable (run again later).
async fn within<T>(
    deadline: tokio::time::Instant,
    call: impl std::future::Future<Output = Result<T, typ::RaftError<typ::ClientWriteError>>>,
    late: &str,
) -> Result<T, ServeError> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(match error.forward_to_leader() {
            Some(forward) => ServeError::NotLeader {
                leader: forward.leader_id,
            },
            None => ServeError::Unavailable(error.to_string()),
        }),
        Err(_) => Err(ServeError::Unavailable(late.to_string())),
    }
}

/// The members of `replica`'s group as its metrics show them.
fn members_of(leader: NodeId, replica: &Replica) -> GroupMembers {
    // Cloned out at once: never held across an await.
    let metrics = replica.raft.metrics().borrow_watched().clone();
    let membership = metrics.membership_config.membership();
    let configs = membership.get_joint_config();
    let voters: BTreeSet<NodeId> = configs.last().cloned().unwrap_or_default();
    let outgoing: BTreeSet<NodeId> = configs
        .iter()
        .flatten()
        .copied()
        .filter(|n| !voters.contains(n))
        .collect();
    GroupMembers {
        leader,
        voters: voters.into_iter().collect(),
        outgoing: outgoing.into_iter().collect(),
        learners: membership.learner_ids().collect(),
        joint: configs.len() > 1,
    }
}

/// The assignment the memberships describe: each group's voters, its leader first.
fn assignment_of(members: &BTreeMap<GroupKey, GroupMembers>) -> Assignment {
    members
        .iter()
        .map(|(group, m)| {
            let mut voters: Vec<NodeId> = m.voters.clone();
            voters.sort_by_key(|n| (*n != m.leader, *n));
            (*group, voters)
        })
        .collect()
}
