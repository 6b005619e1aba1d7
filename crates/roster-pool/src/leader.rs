//! Serving on a group's leader: proposing a write and answering a linearizable read on the
//! local replica, once it has checked that it leads with a quorum behind it.

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ReadPolicy;
use roster_raft::{typ, GroupRequest, GroupResponse, GroupState};
use roster_topology::NodeId;

use crate::protocol::ServeError;
use crate::replicas::Replica;

/// What a replica needs to know to serve as its group's leader.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Leadership {
    /// This node.
    pub(crate) node_id: NodeId,
    /// A leader that has not heard from a quorum for longer than this refuses at once: it is
    /// cut off, and a write would hang. Twice the longest election timeout: a leader whose
    /// followers are only slow (busy catching up a new replica, a loaded machine) keeps serving;
    /// one that is cut off refuses well before a client's transaction times out.
    pub(crate) cut_off_ms: u64,
    /// How long a write may wait for its commit, or a read for its read index.
    pub(crate) request_timeout: Duration,
    /// Milliseconds since the Unix epoch: the leader's timestamp of a write.
    pub(crate) clock: fn() -> u64,
}

impl Replica {
    /// Proposes `request` on this replica, which believes it leads its group; the leader stamps
    /// the time.
    pub(crate) async fn write_as_leader(
        &self,
        mut request: GroupRequest,
        leadership: &Leadership,
    ) -> Result<GroupResponse, ServeError> {
        self.check_leadership(leadership)?;
        request
            .check_fits()
            .map_err(|error| ServeError::Refused(error.to_string()))?;
        request.timestamp_ms = (leadership.clock)();
        // Boxed: openraft's futures are kilobytes; see `handler`.
        let write = Box::pin(self.raft.client_write(request));
        match tokio::time::timeout(leadership.request_timeout, write).await {
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

    /// Runs `read` on the applied state after a read-index round confirms this replica still
    /// leads: a linearizable read.
    pub(crate) async fn read_as_leader<R>(
        &self,
        leadership: &Leadership,
        read: impl FnOnce(&GroupState) -> R,
    ) -> Result<R, ServeError> {
        self.check_leadership(leadership)?;
        let confirm = Box::pin(self.raft.ensure_linearizable(ReadPolicy::ReadIndex));
        match tokio::time::timeout(leadership.request_timeout, confirm).await {
            Ok(Ok(_)) => self
                .state
                .read(read)
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
    /// from a quorum for longer than `leadership.cut_off_ms`.
    pub(crate) fn check_leadership(&self, leadership: &Leadership) -> Result<(), ServeError> {
        // Two fields read in place: cloning the whole metrics on every write costs more.
        let (leader, since_quorum_ack_ms) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            (metrics.current_leader, millis_since_quorum_ack(&metrics))
        };
        if leader != Some(leadership.node_id) {
            return Err(ServeError::NotLeader { leader });
        }
        match since_quorum_ack_ms {
            Some(millis) if millis > leadership.cut_off_ms => Err(ServeError::Unavailable(
                format!("leader has not heard from a quorum for {millis} ms"),
            )),
            _ => Ok(()),
        }
    }
}

/// How long ago a leader last heard from a quorum; `None` when not a leader.
pub(crate) fn millis_since_quorum_ack(metrics: &typ::RaftMetrics) -> Option<u64> {
    metrics.last_quorum_acked.as_ref().map(|acked| {
        let elapsed = openraft::async_runtime::Instant::elapsed(&**acked);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    })
}
