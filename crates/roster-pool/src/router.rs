//! Raft traffic of every routing group over one `roster-net` network: the
//! [`openraft_multi::GroupRouter`] of a node, and the per-group network factory openraft asks
//! for connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory};
use openraft::OptionalSend;
use openraft_multi::{GroupNetworkAdapter, GroupRouter};
use roster_net::{NetError, Network};
use roster_raft::{typ, GroupKey, TypeConfig};
use roster_topology::NodeId;

use crate::batch::{Batcher, Lane, LaneError, LANE_QUEUE_MAX};
use crate::protocol::{decode, encode, PoolRequest, PoolResponse};

/// Pause before retrying a peer that was unreachable: long enough not to spin on a dead node,
/// short against the election timeout (0.45–0.7 s), so a returning node is heard from quickly.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// Shortest wait for a Raft RPC's answer (see [`PoolRouter::exchange`]): below the election
/// timeout minimum (450 ms), so a dead follower is still noticed in time.
const RPC_TIMEOUT_MIN: Duration = Duration::from_millis(400);

/// Sends the Raft RPCs of every group of a node, and the requests it forwards, over one
/// network, batching small requests to the same peer (see `batch`).
#[derive(Clone)]
pub struct PoolRouter<N> {
    network: N,
    batcher: Arc<Batcher<N>>,
}

impl<N: Network> PoolRouter<N> {
    /// A router over `network`.
    pub fn new(network: N) -> PoolRouter<N> {
        PoolRouter {
            batcher: Arc::new(Batcher::new(network.clone())),
            network,
        }
    }

    /// The network underneath.
    pub fn network(&self) -> &N {
        &self.network
    }

    /// Sends `request` to `target` and decodes the answer, within `timeout`.
    pub async fn call(
        &self,
        target: NodeId,
        request: &PoolRequest,
        timeout: Duration,
    ) -> Result<PoolResponse, String> {
        self.call_typed(target, request, timeout)
            .await
            .map_err(|failure| failure.to_string())
    }

    pub(crate) async fn call_typed(
        &self,
        target: NodeId,
        request: &PoolRequest,
        timeout: Duration,
    ) -> Result<PoolResponse, CallFailure> {
        let body = encode(request).map_err(|error| CallFailure::Codec(error.to_string()))?;
        let reply = match Lane::of(request) {
            Some(lane) => self
                .batcher
                .request(target, lane, body, timeout)
                .await
                .map_err(|error| match error {
                    LaneError::Net(error) => CallFailure::Net(error),
                    LaneError::Full { to } => CallFailure::QueueFull { to },
                })?,
            None => self
                .network
                .request(target, body, timeout)
                .await
                .map_err(CallFailure::Net)?,
        };
        decode(&reply).map_err(|error| CallFailure::Codec(error.to_string()))
    }
}

/// Why an RPC got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallFailure {
    #[error(transparent)]
    Net(NetError),
    #[error("{0}")]
    Codec(String),
    /// The lane's queue to the peer was full; nothing was sent.
    #[error("{LANE_QUEUE_MAX} requests already wait for node {to}: it answers too slowly")]
    QueueFull { to: NodeId },
}

/// An RPC that failed, in the two kinds openraft treats differently: a timeout is transient
/// (the peer is slow, e.g. flushing under load: retry at once), anything else means the peer
/// is gone or broken (back off before retrying).
enum RpcFailure {
    Slow(NetworkError<TypeConfig>),
    Gone(Unreachable<TypeConfig>),
}

impl RpcFailure {
    fn gone(message: impl ToString) -> RpcFailure {
        RpcFailure::Gone(Unreachable::from_string(message))
    }
}

impl From<CallFailure> for RpcFailure {
    fn from(failure: CallFailure) -> RpcFailure {
        match failure {
            CallFailure::Net(error @ NetError::Timeout { .. }) => {
                RpcFailure::Slow(NetworkError::new(&error))
            }
            other => RpcFailure::gone(other),
        }
    }
}

impl From<RpcFailure> for typ::RPCError {
    fn from(failure: RpcFailure) -> typ::RPCError {
        match failure {
            RpcFailure::Slow(error) => RPCError::Network(error),
            RpcFailure::Gone(error) => RPCError::Unreachable(error),
        }
    }
}

impl From<RpcFailure> for typ::StreamingError {
    fn from(failure: RpcFailure) -> typ::StreamingError {
        match failure {
            RpcFailure::Slow(error) => StreamingError::Network(error),
            RpcFailure::Gone(error) => StreamingError::Unreachable(error),
        }
    }
}

fn unexpected(response: &PoolResponse) -> String {
    format!("unexpected answer: {response:?}")
}

impl<N: Network> GroupRouter<TypeConfig, GroupKey> for PoolRouter<N> {
    type SnapshotData = typ::SnapshotData;

    async fn append_entries(
        &self,
        target: NodeId,
        group: GroupKey,
        rpc: typ::AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<typ::AppendEntriesResponse, typ::RPCError> {
        let request = PoolRequest::Append { group, rpc };
        self.exchange(target, &request, option, |response| match response {
            PoolResponse::Append(result) => Ok(result),
            other => Err(other),
        })
        .await
        .map_err(Into::into)
    }

    async fn vote(
        &self,
        target: NodeId,
        group: GroupKey,
        rpc: typ::VoteRequest,
        option: RPCOption,
    ) -> Result<typ::VoteResponse, typ::RPCError> {
        let request = PoolRequest::Vote { group, rpc };
        self.exchange(target, &request, option, vote_answer)
            .await
            .map_err(Into::into)
    }

    async fn pre_vote(
        &self,
        target: NodeId,
        group: GroupKey,
        rpc: typ::VoteRequest,
        option: RPCOption,
    ) -> Result<typ::VoteResponse, typ::RPCError> {
        let request = PoolRequest::PreVote { group, rpc };
        self.exchange(target, &request, option, vote_answer)
            .await
            .map_err(Into::into)
    }

    async fn full_snapshot(
        &self,
        target: NodeId,
        group: GroupKey,
        vote: typ::Vote,
        snapshot: typ::Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<typ::SnapshotResponse, typ::StreamingError> {
        let request = PoolRequest::Snapshot {
            group,
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        self.exchange(target, &request, option, |response| match response {
            PoolResponse::Snapshot(result) => Ok(result),
            other => Err(other),
        })
        .await
        .map_err(Into::into)
    }

    async fn transfer_leader(
        &self,
        target: NodeId,
        group: GroupKey,
        rpc: typ::TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<typ::TransferLeaderResponse, typ::RPCError> {
        let request = PoolRequest::LeaderTransfer { group, rpc };
        self.exchange(target, &request, option, |response| match response {
            PoolResponse::LeaderTransfer(result) => Ok(result),
            other => Err(other),
        })
        .await
        .map_err(Into::into)
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF)))
    }
}

impl<N: Network> PoolRouter<N> {
    /// Sends a Raft RPC and picks its answer out of the response with `pick` (which hands
    /// back any other response as unexpected). A timeout is a transient failure that openraft
    /// retries at once; every other failure, local or remote, is `Unreachable`, which openraft
    /// backs off from.
    async fn exchange<T>(
        &self,
        target: NodeId,
        request: &PoolRequest,
        option: RPCOption,
        pick: impl FnOnce(PoolResponse) -> Result<Result<T, String>, PoolResponse>,
    ) -> Result<T, RpcFailure> {
        // openraft asks for a heartbeat interval (150 ms); a follower flushing to disk under
        // load may take longer, and giving up only makes the leader send the same entries
        // again. Wait at least RPC_TIMEOUT_MIN: a dead peer still fails, a slow one answers.
        let response = self
            .call_typed(target, request, option.hard_ttl().max(RPC_TIMEOUT_MIN))
            .await
            .map_err(RpcFailure::from)?;
        match pick(response) {
            Ok(result) => result.map_err(RpcFailure::gone),
            Err(other) => Err(RpcFailure::gone(unexpected(&other))),
        }
    }
}

fn vote_answer(response: PoolResponse) -> Result<Result<typ::VoteResponse, String>, PoolResponse> {
    match response {
        PoolResponse::Vote(result) => Ok(result),
        other => Err(other),
    }
}

/// The network factory openraft holds for one group: a router and the group's id.
#[derive(Clone)]
pub struct GroupNetworks<N> {
    router: PoolRouter<N>,
    group: GroupKey,
}

impl<N: Network> GroupNetworks<N> {
    /// The factory of `group` over `router`.
    pub fn new(router: PoolRouter<N>, group: GroupKey) -> GroupNetworks<N> {
        GroupNetworks { router, group }
    }
}

impl<N: Network> RaftNetworkFactory<TypeConfig> for GroupNetworks<N> {
    type Network = GroupNetworkAdapter<TypeConfig, GroupKey, PoolRouter<N>>;

    async fn new_client(&mut self, target: NodeId, node: &typ::Node) -> Self::Network {
        // The membership carries each member's cluster address: a node added to the pool is
        // reachable before this node's topology file lists it.
        self.router.network().learn_address(target, &node.addr);
        GroupNetworkAdapter::new(self.router.clone(), target, self.group)
    }
}
