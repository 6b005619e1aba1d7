//! Many RPCs to one peer in one message.
//!
//! Under load a node sends thousands of small RPCs a second to each peer: Raft appends of every
//! group it leads, heartbeats, forwarded writes. Each one as its own QUIC stream costs packets,
//! acknowledgements, wake-ups and syscalls on both nodes. A [`Batcher`] keeps, per peer and
//! per [`Lane`], a few batches in flight; requests that arrive while those are all out wait
//! and leave together in the next one ([`PoolRequest::Batch`]), whose answers come back in
//! one [`PoolResponse::Batch`]. Nothing waits on a timer: a lone request leaves at once, and
//! batches grow only when the peer is the bottleneck (group commit, for RPCs).
//!
//! Lanes keep fast requests from waiting for slow ones in the same message: a follower answers
//! an append only once its log is on disk, a forwarded write only once it is committed, while
//! heartbeats and votes are answered at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use roster_net::{NetError, Network};
use roster_topology::NodeId;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::protocol::{decode, encode, Frame, PoolRequest, PoolResponse};

/// Batches a lane may have in flight to one peer before requests wait to form the next one.
const BATCHES_IN_FLIGHT_MAX: usize = 2;

/// Most requests in one batch.
const BATCH_LEN_MAX: usize = 256;

/// Most request bytes in one batch (well under the network's message limit).
const BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Requests one lane to one peer may hold waiting for a batch. They wait only while
/// [`BATCHES_IN_FLIGHT_MAX`] batches are out, so a full queue means the peer answers more slowly
/// than requests arrive: 4,096 is 16 full batches (a second or more of a loaded peer's work, a
/// few MiB of bodies), past which waiting longer only adds latency and memory. A request that
/// finds the queue full is refused at once ([`LaneError::Full`]): a forwarded write becomes a
/// `503` with `Retry-After`, a Raft RPC is retried after openraft's back-off.
pub(crate) const LANE_QUEUE_MAX: usize = 4_096;

// A full queue must hold more than what two batches take out of it.
const _: () = assert!(LANE_QUEUE_MAX >= BATCHES_IN_FLIGHT_MAX * BATCH_LEN_MAX);

/// Metric: requests per message a node sends to a peer (1 for a request sent alone).
pub const BATCH_SIZE: &str = "roster_pool_batch_requests";

/// Metric: requests refused because their lane's queue to a peer was full.
pub const LANE_FULL: &str = "roster_pool_lane_full_total";

/// Which requests may share a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// Answered at once: heartbeats (appends without entries), votes, pre-votes.
    Control,
    /// Answered once durable: appends that carry entries.
    Replicate,
    /// Answered once committed or read: forwarded writes and reads.
    Forward,
}

impl Lane {
    /// The lane of `request`; `None` for requests that always travel alone (snapshots,
    /// membership operations: rare, large or long).
    pub(crate) fn of(request: &PoolRequest) -> Option<Lane> {
        match request {
            PoolRequest::Append { rpc, .. } if rpc.entries.is_empty() => Some(Lane::Control),
            PoolRequest::Append { .. } => Some(Lane::Replicate),
            PoolRequest::Vote { .. }
            | PoolRequest::PreVote { .. }
            | PoolRequest::LeaderTransfer { .. } => Some(Lane::Control),
            PoolRequest::Write { .. } | PoolRequest::Read { .. } => Some(Lane::Forward),
            _ => None,
        }
    }
}

/// One request waiting for a batch.
struct Pending {
    body: Vec<u8>,
    deadline: Instant,
    reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
}

/// Why a request through a lane got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LaneError {
    /// The network failed, or the peer did not answer in time.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The lane's queue to the peer was full: nothing was sent.
    #[error("{LANE_QUEUE_MAX} requests already wait for node {to}: it answers too slowly")]
    Full {
        /// The peer.
        to: NodeId,
    },
}

/// The lanes of a node's peers, each a task that forms and sends batches.
pub(crate) struct Batcher<N> {
    network: N,
    lanes: Mutex<HashMap<(NodeId, Lane), mpsc::Sender<Pending>>>,
}

impl<N: Network> Batcher<N> {
    pub(crate) fn new(network: N) -> Batcher<N> {
        Batcher {
            network,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Sends the encoded request `body` to `target` in `lane`, alone or in a batch, and waits
    /// for its encoded answer until `timeout` has passed.
    pub(crate) async fn request(
        &self,
        target: NodeId,
        lane: Lane,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, LaneError> {
        let deadline = Instant::now() + timeout;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            body,
            deadline,
            reply,
        };
        match self.lane(target, lane).try_send(pending) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!(LANE_FULL).increment(1);
                return Err(LaneError::Full { to: target });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(NetError::Closed.into()),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result.map_err(LaneError::Net),
            // The lane's task ended (the runtime is shutting down).
            Ok(Err(_)) => Err(NetError::Closed.into()),
            Err(_) => Err(NetError::Timeout { to: target }.into()),
        }
    }

    fn lane(&self, target: NodeId, lane: Lane) -> mpsc::Sender<Pending> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = lanes.get(&(target, lane)).filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel(LANE_QUEUE_MAX);
        tokio::spawn(run_lane(self.network.clone(), target, receiver));
        lanes.insert((target, lane), sender.clone());
        sender
    }
}

/// Forms batches from `queue` while at most [`BATCHES_IN_FLIGHT_MAX`] are out.
async fn run_lane<N: Network>(network: N, target: NodeId, mut queue: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut bytes = first.body.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_LEN_MAX && bytes < BATCH_BYTES_MAX {
            match queue.try_recv() {
                Ok(pending) => {
                    bytes += pending.body.len();
                    batch.push(pending);
                }
                Err(_) => break,
            }
        }
        tokio::spawn(send(network.clone(), target, batch, permit));
    }
}

/// Sends `batch` as one message (a lone request as itself) and hands each request its answer.
async fn send<N: Network>(
    network: N,
    target: NodeId,
    mut batch: Vec<Pending>,
    _permit: OwnedSemaphorePermit,
) {
    // Requests whose caller gave up need no answer.
    batch.retain(|pending| !pending.reply.is_closed());
    let Some(deadline) = batch.iter().map(|pending| pending.deadline).max() else {
        return;
    };
    let timeout = deadline.saturating_duration_since(Instant::now());
    metrics::histogram!(BATCH_SIZE).record(batch.len() as f64);
    if batch.len() == 1 {
        if let Some(pending) = batch.pop() {
            let result = network.request(target, pending.body, timeout).await;
            let _ = pending.reply.send(result);
        }
        return;
    }
    let (bodies, replies): (Vec<Vec<u8>>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.body, pending.reply))
        .unzip();
    match exchange(&network, target, bodies, timeout).await {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// One batch round trip: `bodies` out, as many answers back, in order.
async fn exchange<N: Network>(
    network: &N,
    target: NodeId,
    bodies: Vec<Vec<u8>>,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, NetError> {
    let count = bodies.len();
    let request = PoolRequest::Batch(bodies.into_iter().map(Frame).collect());
    let body = encode(&request).map_err(|error| NetError::Io(error.to_string()))?;
    let reply = network.request(target, body, timeout).await?;
    match decode::<PoolResponse>(&reply) {
        Ok(PoolResponse::Batch(answers)) if answers.len() == count => {
            Ok(answers.into_iter().map(|frame| frame.0).collect())
        }
        Ok(PoolResponse::Batch(answers)) => Err(NetError::Remote(format!(
            "{} answers to a batch of {count}",
            answers.len()
        ))),
        Ok(PoolResponse::Error(reason)) => Err(NetError::Remote(reason)),
        Ok(other) => Err(NetError::Remote(format!(
            "unexpected answer to a batch: {other:?}"
        ))),
        Err(error) => Err(NetError::Remote(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A peer that answers after `delay`: a lone request with its body followed by `!`, a
    /// batch with each body followed by `!` (or, when `short`, with no answers at all); it
    /// counts the messages it gets.
    #[derive(Clone)]
    struct EchoPeer {
        delay: Duration,
        short: bool,
        messages: Arc<AtomicUsize>,
        batches: Arc<AtomicUsize>,
    }

    impl EchoPeer {
        fn new(delay_ms: u64) -> EchoPeer {
            EchoPeer {
                delay: Duration::from_millis(delay_ms),
                short: false,
                messages: Arc::default(),
                batches: Arc::default(),
            }
        }
    }

    fn answer(body: &[u8]) -> Vec<u8> {
        let mut answer = body.to_vec();
        answer.push(b'!');
        answer
    }

    impl Network for EchoPeer {
        async fn request(
            &self,
            _to: NodeId,
            body: Vec<u8>,
            _timeout: Duration,
        ) -> Result<Vec<u8>, NetError> {
            self.messages.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            match decode::<PoolRequest>(&body) {
                Ok(PoolRequest::Batch(frames)) => {
                    self.batches.fetch_add(1, Ordering::SeqCst);
                    let answers = frames
                        .iter()
                        .take(if self.short { 0 } else { frames.len() })
                        .map(|frame| Frame(answer(&frame.0)));
                    Ok(encode(&PoolResponse::Batch(answers.collect())).unwrap_or_default())
                }
                _ => Ok(answer(&body)),
            }
        }
    }

    fn body(i: usize) -> Vec<u8> {
        format!("request {i}").into_bytes()
    }

    type Call = tokio::task::JoinHandle<Result<Vec<u8>, LaneError>>;

    /// Requests `0..count` to `target` in `lane`, each from its own task.
    fn spawn_requests<N: Network>(
        batcher: &Arc<Batcher<N>>,
        target: NodeId,
        lane: Lane,
        count: usize,
    ) -> Vec<Call> {
        (0..count)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move {
                    batcher
                        .request(target, lane, body(i), Duration::from_secs(5))
                        .await
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn concurrent_requests_share_messages_and_each_gets_its_own_answer() {
        let peer = EchoPeer::new(20);
        let batcher = Arc::new(Batcher::new(peer.clone()));
        let calls = spawn_requests(&batcher, 2, Lane::Replicate, 50);
        for (i, call) in calls.into_iter().enumerate() {
            let answer = call.await.expect("task");
            assert_eq!(answer, Ok(super::tests::answer(&body(i))));
        }
        let messages = peer.messages.load(Ordering::SeqCst);
        // At most two messages in flight: the 50 leave in a few batches, not 50 messages.
        assert!(messages <= 4, "50 requests took {messages} messages");
        assert!(peer.batches.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn a_lone_request_leaves_at_once_unwrapped() {
        let peer = EchoPeer::new(0);
        let batcher = Batcher::new(peer.clone());
        let answer = batcher
            .request(2, Lane::Control, body(1), Duration::from_secs(5))
            .await;
        assert_eq!(answer, Ok(super::tests::answer(&body(1))));
        assert_eq!(peer.batches.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn lanes_and_peers_do_not_share_messages() {
        let peer = EchoPeer::new(20);
        let batcher = Arc::new(Batcher::new(peer.clone()));
        let mut calls = Vec::new();
        for (target, lane) in [(2, Lane::Control), (2, Lane::Forward), (3, Lane::Control)] {
            calls.extend(spawn_requests(&batcher, target, lane, 2));
        }
        for call in calls {
            assert!(call.await.expect("task").is_ok());
        }
        // The two requests of each lane and peer were queued together: one batch each, and
        // none mixed with another lane's or peer's.
        assert_eq!(peer.messages.load(Ordering::SeqCst), 3);
        assert_eq!(peer.batches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_request_times_out_on_its_own_deadline() {
        let peer = EchoPeer::new(200);
        let batcher = Batcher::new(peer);
        let answer = batcher
            .request(2, Lane::Forward, body(1), Duration::from_millis(20))
            .await;
        assert_eq!(answer, Err(LaneError::Net(NetError::Timeout { to: 2 })));
    }

    #[tokio::test]
    async fn a_batch_answered_with_the_wrong_count_fails_every_member() {
        let peer = EchoPeer {
            short: true,
            ..EchoPeer::new(20)
        };
        let batcher = Arc::new(Batcher::new(peer));
        let mut failed = 0;
        for call in spawn_requests(&batcher, 2, Lane::Forward, 10) {
            if let Err(LaneError::Net(NetError::Remote(reason))) = call.await.expect("task") {
                assert!(reason.contains("answers to a batch of"), "{reason}");
                failed += 1;
            }
        }
        // All were queued before the lane's task ran: one batch, failed as a whole.
        assert_eq!(failed, 10);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_sends_nothing_more() {
        // A peer that takes far longer than the test: its two batches stay out, and the
        // lane's queue fills.
        let peer = EchoPeer::new(60_000);
        let batcher = Arc::new(Batcher::new(peer.clone()));
        let mut waiting = Vec::new();
        let mut refused = None;
        for i in 0..(LANE_QUEUE_MAX + 3 * BATCH_LEN_MAX) {
            let batcher = batcher.clone();
            let call = tokio::spawn(async move {
                batcher
                    .request(2, Lane::Forward, body(i), Duration::from_secs(120))
                    .await
            });
            // Let the lane's task take what it can before the next request.
            tokio::task::yield_now().await;
            if call.is_finished() {
                refused = Some((i, call.await.expect("task")));
                break;
            }
            waiting.push(call);
        }
        let (accepted, answer) = refused.expect("a request is refused once the queue is full");
        assert_eq!(answer, Err(LaneError::Full { to: 2 }));
        assert!(
            (LANE_QUEUE_MAX..=LANE_QUEUE_MAX + BATCHES_IN_FLIGHT_MAX * BATCH_LEN_MAX)
                .contains(&accepted),
            "{accepted} requests accepted"
        );
        assert!(peer.messages.load(Ordering::SeqCst) <= BATCHES_IN_FLIGHT_MAX);
        for call in waiting {
            call.abort();
        }
    }
}
