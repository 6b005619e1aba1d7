//! Serving the requests a node's peers send it: Raft's RPCs for each group, forwarded writes
//! and reads, and membership operations, decoded (batches unpacked) and answered.

use std::sync::Arc;

use roster_net::{Handler, Network, Peer};
use roster_raft::typ;
use tracing::warn;

use crate::node::PoolNode;
use crate::pair::{decode_pair, encode_pair, PairRequest, PairResponse};
use crate::protocol::{decode, encode, CodecError, Frame, PoolRequest, PoolResponse, ServeError};

impl<N: Network> PoolNode<N> {
    /// Serves one request. Raft's RPCs for a group whose replica here has stopped (a full
    /// disk) are answered as for a group without one: the stopped Raft would only log an error
    /// per message until the supervisor opens it again. Every large future it awaits
    /// (openraft's, snapshots, membership) is boxed: futures nest by value, so inline they would make each append's future many
    /// kilobytes, copied whenever it moves (10 KiB per request before; memcpy was a tenth of
    /// a loaded node's CPU).
    async fn serve(&self, request: PoolRequest) -> PoolResponse {
        match request {
            PoolRequest::Append { group, rpc } => match self.replicas.live(group) {
                Some(replica) => PoolResponse::Append(
                    Box::pin(replica.raft.append_entries(rpc))
                        .await
                        .map_err(|e| e.to_string()),
                ),
                None => PoolResponse::Error(format!("no running replica of group {group}")),
            },
            PoolRequest::Vote { group, rpc } => match self.replicas.live(group) {
                Some(replica) => PoolResponse::Vote(
                    Box::pin(replica.raft.vote(rpc))
                        .await
                        .map_err(|e| e.to_string()),
                ),
                None => PoolResponse::Error(format!("no running replica of group {group}")),
            },
            PoolRequest::PreVote { group, rpc } => match self.replicas.live(group) {
                Some(replica) => PoolResponse::Vote(
                    Box::pin(replica.raft.pre_vote(rpc))
                        .await
                        .map_err(|e| e.to_string()),
                ),
                None => PoolResponse::Error(format!("no running replica of group {group}")),
            },
            PoolRequest::Snapshot {
                group,
                vote,
                meta,
                data,
            } => match self.replicas.live(group) {
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
                None => PoolResponse::Error(format!("no running replica of group {group}")),
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
            PoolRequest::LeaderTransfer { group, rpc } => match self.replicas.live(group) {
                Some(replica) => PoolResponse::LeaderTransfer(
                    Box::pin(replica.raft.handle_transfer_leader(rpc))
                        .await
                        .map_err(|e| e.to_string()),
                ),
                None => PoolResponse::Error(format!("no running replica of group {group}")),
            },
            PoolRequest::Streams => PoolResponse::Streams(self.node_streams()),
            PoolRequest::Position { group } => {
                PoolResponse::Position(Box::pin(self.position_local(group)).await)
            }
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

impl<N: Network> PoolNode<N> {
    /// Serves one pair request of a partner node and encodes its answer.
    async fn handle_pair(&self, from: Peer, body: &[u8]) -> Vec<u8> {
        let response = match decode_pair::<PairRequest>(body) {
            Ok(request) => {
                let kind = request.kind();
                let started = std::time::Instant::now();
                let response = Box::pin(self.serve_pair(from, request)).await;
                metrics::histogram!(crate::RPC_DURATION, "kind" => kind)
                    .record(started.elapsed().as_secs_f64());
                response
            }
            Err(error) => {
                warn!(%from, %error, "undecodable pair request");
                PairResponse::Error(error.to_string())
            }
        };
        encode_pair(&response).unwrap_or_else(|error| {
            encode_pair(&PairResponse::Error(error.to_string())).unwrap_or_default()
        })
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
        // A pool's own nodes speak the pool's protocol; the partner's nodes speak only the
        // pair protocol (the network lets no other pool through, and anything else from
        // another pool is refused here, unread).
        if from.pool != self.options.pool {
            let partner = self.options.partner.as_ref().map(|partner| partner.pool);
            if partner == Some(from.pool) {
                return self.handle_pair(from, &body).await;
            }
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
