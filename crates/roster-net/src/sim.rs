//! A simulated network for tests: many nodes in one process, with faults controlled at run time.
//!
//! Main types: [`SimNetwork`], the router shared by all simulated nodes, and [`SimEndpoint`], one
//! node's [`Network`], made by [`SimNetwork::endpoint`].
//!
//! **Trust**: each endpoint is a node of a pool ([`Peer`]) and trusts its own pool and at most
//! one partner ([`SimNetwork::endpoint_with_partner`]), as over QUIC: a request between two
//! nodes of which one does not trust the other's pool fails at once with
//! [`NetError::Untrusted`] and reaches no handler.
//!
//! Faults: [`SimNetwork::partition`], [`SimNetwork::isolate`] and [`SimNetwork::heal`] cut and
//! restore links between nodes, [`SimNetwork::partition_pools`] and [`SimNetwork::heal_pools`]
//! every link between two pools (an inter-site link); [`SimNetwork::set_drop_probability`] loses
//! requests and replies;
//! [`SimNetwork::set_reply_drop_probability`] loses replies only (the request is executed, the
//! caller never hears); [`SimNetwork::set_delay`] delays each message; [`SimNetwork::remove`]
//! takes a node down. As on a real network, a lost message is noticed only when the request's
//! timeout passes: the caller then gets [`NetError::Timeout`], or [`NetError::Unreachable`] when
//! the node is down. Requests to a node itself are never faulted.
//!
//! **Determinism**: every random choice for a message (drop the request, drop the reply, the two
//! delays) is a pure function of the seed, the ordered pair of nodes and the number of messages
//! sent before on that link. Given one seed and the same order of requests on each link, a run
//! has the same faults, whatever the interleaving across links. Delays use Tokio's clock, so
//! tests can run under paused time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use roster_topology::{NodeId, PoolId};

use crate::peer::Trust;
use crate::{check_size, ErasedHandler, Handler, NetError, Network, Peer, MESSAGE_SIZE_MAX};

/// The router shared by all simulated nodes in one process. Cheap to clone.
#[derive(Clone)]
pub struct SimNetwork {
    inner: Arc<SimInner>,
}

/// One simulated node's client side, made by [`SimNetwork::endpoint`].
#[derive(Clone)]
pub struct SimEndpoint {
    identity: Peer,
    trust: Trust,
    network: SimNetwork,
}

/// Counts of what the simulated network did, for tests to check their faults took effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Requests sent by any endpoint (after the size check).
    pub requests_sent: u64,
    /// Requests that reached a handler.
    pub requests_delivered: u64,
    /// Requests lost to a cut link, a drop or a node that is down.
    pub requests_lost: u64,
    /// Requests refused because one of the two nodes does not trust the other's pool.
    pub requests_refused: u64,
    /// Replies lost after the handler ran.
    pub replies_lost: u64,
}

impl SimNetwork {
    /// A network with no faults whose random choices all derive from `seed`.
    pub fn new(seed: u64) -> SimNetwork {
        SimNetwork {
            inner: Arc::new(SimInner {
                seed,
                state: Mutex::new(SimState::default()),
            }),
        }
    }

    /// Connects node `identity.node` of pool `identity.pool`, with no partner pool, served by
    /// `handler`, and returns its client side; see [`SimNetwork::endpoint_with_partner`].
    pub fn endpoint<H: Handler>(&self, identity: Peer, handler: Arc<H>) -> SimEndpoint {
        self.endpoint_with_partner(identity, None, handler)
    }

    /// Connects node `identity.node` of pool `identity.pool`, which trusts its own pool and
    /// `partner`, served by `handler`, and returns its client side. Handlers see `identity` as
    /// the `from` of its requests. Connecting an id again replaces its handler and identity, as
    /// when a node restarts.
    ///
    /// # Panics
    ///
    /// If `partner` is the node's own pool: a bug in the test.
    pub fn endpoint_with_partner<H: Handler>(
        &self,
        identity: Peer,
        partner: Option<PoolId>,
        handler: Arc<H>,
    ) -> SimEndpoint {
        assert_ne!(
            partner,
            Some(identity.pool),
            "a pool is not its own partner"
        );
        self.connect(identity, Trust::new(identity.pool, partner), handler)
    }

    /// Connects witness `identity.node` (of pool [`roster_topology::WITNESS_POOL`]), which
    /// talks to the nodes of `pools` only, served by `handler`; the pools' nodes trust it as
    /// the witness, as over QUIC.
    pub fn witness_endpoint<H: Handler>(
        &self,
        identity: Peer,
        pools: [PoolId; 2],
        handler: Arc<H>,
    ) -> SimEndpoint {
        self.connect(identity, Trust::witness(pools), handler)
    }

    fn connect<H: Handler>(&self, identity: Peer, trust: Trust, handler: Arc<H>) -> SimEndpoint {
        let mut state = self.inner.lock();
        state.identities.insert(identity.node, (identity, trust));
        state
            .handlers
            .insert(identity.node, ErasedHandler::new(handler));
        SimEndpoint {
            identity,
            trust,
            network: self.clone(),
        }
    }

    /// Takes node `node_id` down: requests to it are lost and its in-flight replies too. Its
    /// identity is kept, as in an address book.
    pub fn remove(&self, node_id: NodeId) {
        self.inner.lock().handlers.remove(&node_id);
    }

    /// Cuts every link between a node of `side_a` and a node of `side_b`, both directions.
    /// Adds to earlier cuts.
    pub fn partition(&self, side_a: &[NodeId], side_b: &[NodeId]) {
        let mut state = self.inner.lock();
        for &a in side_a {
            for &b in side_b {
                if a != b {
                    state.cut_links.insert(link_key(a, b));
                }
            }
        }
    }

    /// Cuts every link of node `node_id`, both directions.
    pub fn isolate(&self, node_id: NodeId) {
        self.inner.lock().isolated.insert(node_id);
    }

    /// Cuts every link between a node of pool `pool_a` and a node of pool `pool_b`, both
    /// directions, including nodes connected later: the link between two sites. Adds to earlier
    /// cuts.
    pub fn partition_pools(&self, pool_a: PoolId, pool_b: PoolId) {
        if pool_a != pool_b {
            self.inner.lock().cut_pools.insert(pool_key(pool_a, pool_b));
        }
    }

    /// Restores the links between pools `pool_a` and `pool_b` cut by
    /// [`SimNetwork::partition_pools`]; cuts between nodes stay.
    pub fn heal_pools(&self, pool_a: PoolId, pool_b: PoolId) {
        self.inner
            .lock()
            .cut_pools
            .remove(&pool_key(pool_a, pool_b));
    }

    /// Restores every link cut by [`SimNetwork::partition`], [`SimNetwork::isolate`] and
    /// [`SimNetwork::partition_pools`]. Drop probabilities and delays stay as set.
    pub fn heal(&self) {
        let mut state = self.inner.lock();
        state.cut_links.clear();
        state.isolated.clear();
        state.cut_pools.clear();
    }

    /// Loses each request, and independently each reply, with `probability` (0 to 1).
    ///
    /// # Panics
    ///
    /// If `probability` is not in `0.0..=1.0`: a bug in the test.
    pub fn set_drop_probability(&self, probability: f64) {
        assert!(
            (0.0..=1.0).contains(&probability),
            "probability {probability}"
        );
        let mut state = self.inner.lock();
        state.request_drop_probability = probability;
        state.reply_drop_probability = probability;
    }

    /// Loses each reply with `probability` (0 to 1), after its request was executed.
    ///
    /// # Panics
    ///
    /// If `probability` is not in `0.0..=1.0`: a bug in the test.
    pub fn set_reply_drop_probability(&self, probability: f64) {
        assert!(
            (0.0..=1.0).contains(&probability),
            "probability {probability}"
        );
        self.inner.lock().reply_drop_probability = probability;
    }

    /// Delays each request and each reply by a time drawn uniformly from `min..=max`.
    ///
    /// # Panics
    ///
    /// If `min > max`: a bug in the test.
    pub fn set_delay(&self, min: Duration, max: Duration) {
        assert!(min <= max, "delay min {min:?} above max {max:?}");
        let mut state = self.inner.lock();
        state.delay_min = min;
        state.delay_max = max;
    }

    /// What the network has done so far.
    pub fn stats(&self) -> SimStats {
        self.inner.lock().stats
    }
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SimNetwork")
            .field("seed", &self.inner.seed)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SimEndpoint {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.identity.node
    }

    /// This node's pool and id.
    pub fn identity(&self) -> Peer {
        self.identity
    }

    /// The network this endpoint belongs to.
    pub fn network(&self) -> &SimNetwork {
        &self.network
    }
}

impl Network for SimEndpoint {
    async fn request(
        &self,
        to: NodeId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, NetError> {
        check_size(body.len())?;
        let deadline = Instant::now() + timeout;
        let from = self.identity;
        let (reply_sender, reply_receiver) = oneshot::channel();
        match self.network.inner.plan(from, self.trust, to) {
            Plan::Down => {
                tokio::time::sleep_until(deadline).await;
                return Err(NetError::Unreachable {
                    to,
                    reason: "the node is down".into(),
                });
            }
            Plan::Lost => {
                tokio::time::sleep_until(deadline).await;
                return Err(NetError::Timeout { to });
            }
            // Over QUIC either side refuses within a handshake: at once, next to a timeout.
            Plan::Refused(reason) => return Err(NetError::Untrusted { to, reason }),
            Plan::Deliver(delivery) => {
                let inner = Arc::clone(&self.network.inner);
                tokio::spawn(inner.deliver(from, to, body, delivery, reply_sender));
            }
        }
        match tokio::time::timeout_at(deadline, reply_receiver).await {
            Ok(Ok(reply)) => reply,
            // The reply was lost: the caller only notices when its timeout passes.
            Ok(Err(_)) => {
                tokio::time::sleep_until(deadline).await;
                Err(NetError::Timeout { to })
            }
            Err(_) => Err(NetError::Timeout { to }),
        }
    }
}

impl std::fmt::Debug for SimEndpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SimEndpoint")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

struct SimInner {
    seed: u64,
    // A std lock: every section reads or edits the fault tables, with no `.await` inside.
    state: Mutex<SimState>,
}

#[derive(Default)]
struct SimState {
    /// The nodes that are up.
    handlers: HashMap<NodeId, ErasedHandler>,
    /// Every node ever connected, up or down, and the pools it trusts: the address book.
    identities: HashMap<NodeId, (Peer, Trust)>,
    /// Cut links, each as (smaller id, larger id).
    cut_links: HashSet<(NodeId, NodeId)>,
    /// Pools cut from each other, each as (smaller id, larger id).
    cut_pools: HashSet<(PoolId, PoolId)>,
    isolated: HashSet<NodeId>,
    request_drop_probability: f64,
    reply_drop_probability: f64,
    delay_min: Duration,
    delay_max: Duration,
    /// Messages sent so far on each ordered link: the position in that link's random stream.
    link_sequences: HashMap<(NodeId, NodeId), u64>,
    stats: SimStats,
}

impl SimState {
    fn link_cut(&self, from: Peer, to: Peer) -> bool {
        if from.node == to.node {
            return false;
        }
        self.isolated.contains(&from.node)
            || self.isolated.contains(&to.node)
            || self.cut_links.contains(&link_key(from.node, to.node))
            || self.cut_pools.contains(&pool_key(from.pool, to.pool))
    }
}

/// What happens to one request, decided when it is sent.
enum Plan {
    Down,
    Lost,
    /// One of the two nodes does not trust the other's pool; why.
    Refused(String),
    Deliver(Delivery),
}

struct Delivery {
    /// The node the request goes to.
    to: Peer,
    request_delay: Duration,
    reply_delay: Duration,
    reply_dropped: bool,
}

impl SimInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        // A panic while holding the lock cannot leave the tables half-edited in a way that
        // matters to a test, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn plan(&self, from: Peer, trust: Trust, to: NodeId) -> Plan {
        let mut state = self.lock();
        state.stats.requests_sent += 1;
        let sequence = state.link_sequences.entry((from.node, to)).or_insert(0);
        let position = *sequence;
        *sequence += 1;
        let draws = Draws::new(self.seed, from.node, to, position);
        let Some(&(target, target_trust)) = state.identities.get(&to) else {
            state.stats.requests_lost += 1;
            return Plan::Down;
        };
        // Like a QUIC client reading its address book: never sent to a pool it does not trust.
        if !trust.allows(target.pool) {
            state.stats.requests_refused += 1;
            return Plan::Refused(trust.refusal(target));
        }
        if !state.handlers.contains_key(&to) {
            state.stats.requests_lost += 1;
            return Plan::Down;
        }
        let faulted = from.node != to;
        if state.link_cut(from, target)
            || (faulted && draws.fraction(Draw::RequestDrop) < state.request_drop_probability)
        {
            state.stats.requests_lost += 1;
            return Plan::Lost;
        }
        // Like a QUIC server closing the connection after the handshake.
        if !target_trust.allows(from.pool) {
            state.stats.requests_refused += 1;
            return Plan::Refused(format!(
                "node {to} does not trust this node's pool ({})",
                target_trust.refusal(from)
            ));
        }
        let (delay_min, delay_max) = if faulted {
            (state.delay_min, state.delay_max)
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        Plan::Deliver(Delivery {
            to: target,
            request_delay: draws.duration(Draw::RequestDelay, delay_min, delay_max),
            reply_delay: draws.duration(Draw::ReplyDelay, delay_min, delay_max),
            reply_dropped: faulted
                && draws.fraction(Draw::ReplyDrop) < state.reply_drop_probability,
        })
    }

    /// Carries one request to its handler and the reply back, checking the links again at
    /// each hop, since faults may change while a message is in flight.
    async fn deliver(
        self: Arc<Self>,
        from: Peer,
        to: NodeId,
        body: Vec<u8>,
        delivery: Delivery,
        reply_sender: oneshot::Sender<Result<Vec<u8>, NetError>>,
    ) {
        tokio::time::sleep(delivery.request_delay).await;
        let handler = {
            let mut state = self.lock();
            match state.handlers.get(&to).cloned() {
                Some(handler) if !state.link_cut(from, delivery.to) => {
                    state.stats.requests_delivered += 1;
                    handler
                }
                _ => {
                    state.stats.requests_lost += 1;
                    return;
                }
            }
        };
        // Its own task, so that a panicking handler fails this request only, as over QUIC.
        let reply = match tokio::spawn(handler.handle(from, body)).await {
            Ok(response) if response.len() > MESSAGE_SIZE_MAX => {
                Err(NetError::Remote("response too large".into()))
            }
            Ok(response) => Ok(response),
            Err(_) => Err(NetError::Remote("handler failed".into())),
        };
        tokio::time::sleep(delivery.reply_delay).await;
        {
            let mut state = self.lock();
            let node_up = state.handlers.contains_key(&to);
            if delivery.reply_dropped || !node_up || state.link_cut(delivery.to, from) {
                state.stats.replies_lost += 1;
                return;
            }
        }
        // The caller may have given up already; then nobody is listening.
        let _ = reply_sender.send(reply);
    }
}

fn link_key(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

fn pool_key(a: PoolId, b: PoolId) -> (PoolId, PoolId) {
    (a.min(b), a.max(b))
}

/// The independent random choices made for one message.
#[derive(Clone, Copy)]
enum Draw {
    RequestDrop = 1,
    ReplyDrop = 2,
    RequestDelay = 3,
    ReplyDelay = 4,
}

/// The random stream position of one message: the seed, the ordered link and the message's
/// sequence number on it.
struct Draws {
    base: u64,
}

impl Draws {
    fn new(seed: u64, from: NodeId, to: NodeId, sequence: u64) -> Draws {
        let mut base = split_mix(seed);
        for word in [from, to, sequence] {
            base = split_mix(base ^ word);
        }
        Draws { base }
    }

    fn bits(&self, draw: Draw) -> u64 {
        split_mix(self.base ^ (draw as u64))
    }

    /// A fraction in `0.0..1.0`.
    fn fraction(&self, draw: Draw) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.bits(draw) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn duration(&self, draw: Draw, min: Duration, max: Duration) -> Duration {
        let span = max.saturating_sub(min).as_nanos();
        if span == 0 {
            return min;
        }
        let offset = u128::from(self.bits(draw)) % (span + 1);
        // `offset` is at most `span`, which came from a Duration, so it fits back into one.
        min + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
    }
}

/// SplitMix64's output function: a fast, well-mixed, portable hash of a 64-bit word.
fn split_mix(word: u64) -> u64 {
    let mut z = word.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_spread_and_repeatable() {
        let below_half = (0..10_000)
            .filter(|&sequence| Draws::new(7, 1, 2, sequence).fraction(Draw::RequestDrop) < 0.5)
            .count();
        assert!((4_700..5_300).contains(&below_half), "{below_half}");
        let a = Draws::new(7, 1, 2, 3).bits(Draw::ReplyDrop);
        assert_eq!(a, Draws::new(7, 1, 2, 3).bits(Draw::ReplyDrop));
        assert_ne!(a, Draws::new(8, 1, 2, 3).bits(Draw::ReplyDrop));
        assert_ne!(a, Draws::new(7, 2, 1, 3).bits(Draw::ReplyDrop));
    }

    #[test]
    fn durations_stay_in_bounds() {
        let (min, max) = (Duration::from_millis(5), Duration::from_millis(9));
        for sequence in 0..1_000 {
            let delay = Draws::new(1, 1, 2, sequence).duration(Draw::RequestDelay, min, max);
            assert!(min <= delay && delay <= max, "{delay:?}");
        }
    }
}
