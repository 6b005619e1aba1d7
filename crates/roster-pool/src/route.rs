//! Routing a group's operation to its leader: here, or forwarded over the network to the node
//! that leads it, following the leader as it moves, within the request's deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use roster_net::{NetError, Network};
use roster_raft::{GroupKey, GroupRequest, GroupResponse, GroupState};
use roster_registrar::Binding;
use roster_topology::NodeId;
use tracing::debug;

use crate::node::{PoolError, PoolNode};
use crate::protocol::{GroupMembers, Peek, PoolRequest, PoolResponse, ServeError};
use crate::router::CallFailure;

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

/// What the write, read and membership paths route to a group's leader.
#[derive(Clone, Debug)]
pub(crate) enum Operation {
    Write(GroupRequest),
    Read {
        aor: String,
        now_ms: u64,
    },
    Members,
    Position,
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
            Operation::Position => PoolRequest::Position { group },
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
    Position(Peek),
    Moved(Vec<NodeId>),
    Done,
}

impl Answer {
    fn from_response(response: PoolResponse) -> Result<Answer, ServeError> {
        match response {
            PoolResponse::Write(result) => result.map(Answer::Written),
            PoolResponse::Read(result) => result.map(Answer::Bindings),
            PoolResponse::Members(result) => result.map(Answer::Members),
            PoolResponse::Position(result) => result.map(Answer::Position),
            PoolResponse::Moved(result) => result.map(Answer::Moved),
            PoolResponse::Done(result) => result.map(|()| Answer::Done),
            other => Err(ServeError::Unavailable(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }
}

impl<N: Network> PoolNode<N> {
    /// Runs `operation` on the leader of `group`: here, or forwarded, following the leader as
    /// it moves, within the request timeout.
    pub(crate) async fn routed(
        &self,
        group: GroupKey,
        operation: Operation,
    ) -> Result<Answer, PoolError> {
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
        let hops_max = FORWARD_HOPS_MAX + self.hints.peer_count() + ELECTION_HOPS_MAX;
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
                    // The leader is behind on its requests already: refuse now (503 with
                    // Retry-After) rather than pile more on it or on its peers.
                    Err(ForwardFailure::Overloaded(reason)) => {
                        Err(ServeError::Unavailable(reason))
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
                    self.hints.note_leader(group, target);
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
                    let next = self.next_target(group, &mut tried, deadline).await?;
                    // The same node again: a leader whose replica stopped (a full disk), still
                    // named by its followers until they elect another; give the election a
                    // moment.
                    if next == target {
                        if tokio::time::Instant::now() + LEADER_POLL >= deadline {
                            break;
                        }
                        tokio::time::sleep(LEADER_POLL).await;
                    }
                    target = next;
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
        // that has not reached it yet) knows nothing, and a stopped one (a full disk) can
        // serve nothing and may still name itself leader: both ask like a node without a
        // replica. Read in place, not cloned: this runs on every request (the borrow ends
        // here, before any await).
        let knows_group = self.replicas.live(group).is_some_and(|replica| {
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
        let candidates = self.hints.candidates(group, self.options.node_id);
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
            Operation::Position => Box::pin(self.position_local(group))
                .await
                .map(Answer::Position),
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
        match self.replicas.live(group) {
            // Cloned out at once (see `status`).
            Some(replica) => replica.raft.metrics().borrow_watched().current_leader,
            // No running replica here: `next_target` asks the nodes the hints name.
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
                full @ CallFailure::QueueFull { .. } => {
                    ForwardFailure::Overloaded(full.to_string())
                }
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

    /// Proposes `request` on this node's replica of `group`, which believes it leads. A
    /// replica whose Raft stopped answers as if absent, so the caller asks the group's other
    /// nodes (its metrics may still name it leader).
    pub(crate) async fn write_local(
        &self,
        group: GroupKey,
        request: GroupRequest,
    ) -> Result<GroupResponse, ServeError> {
        let replica = self
            .replicas
            .live(group)
            .ok_or(ServeError::UnknownGroup(group))?;
        replica.write_as_leader(request, &self.leadership()).await
    }

    /// A linearizable lookup on this node's replica of `group`, which believes it leads.
    pub(crate) async fn read_local(
        &self,
        group: GroupKey,
        aor: &str,
        now_ms: u64,
    ) -> Result<Vec<Binding>, ServeError> {
        let replica = self
            .replicas
            .live(group)
            .ok_or(ServeError::UnknownGroup(group))?;
        replica
            .read_as_leader(&self.leadership(), |state| state.lookup(aor, now_ms))
            .await
    }

    /// The epoch of this node's replica of `group`, which believes it leads, and where it
    /// stands in its source's history (a linearizable read).
    pub(crate) async fn position_local(&self, group: GroupKey) -> Result<Peek, ServeError> {
        let replica = self
            .replicas
            .live(group)
            .ok_or(ServeError::UnknownGroup(group))?;
        replica
            .read_as_leader(&self.leadership(), |state: &GroupState| Peek {
                epoch: state.epoch(),
                stream: state.stream(),
                applied: roster_raft::ReplicatedState::last_applied(state).map_or(0, |id| id.index),
            })
            .await
    }

    /// `group`'s [`Peek`], from its leader in this pool.
    pub async fn peek(&self, group: GroupKey) -> Result<Peek, PoolError> {
        match self.routed(group, Operation::Position).await? {
            Answer::Position(peek) => Ok(peek),
            _ => Err(self.unavailable(group, "unexpected answer to a peek".into())),
        }
    }
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
    /// Too many requests already wait for the peer; this one was not sent.
    Overloaded(String),
}
