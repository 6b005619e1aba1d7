//! The witness: a small process in a third site that both pools of a pair send heartbeats to,
//! and what a pool's nodes do with it (automatic failover, and fencing themselves when cut off).
//!
//! - [`Witness`] is the witness's side, a [`Handler`]: it answers each [`WitnessRequest`]
//!   heartbeat of a node of either pool it watches with a [`WitnessReport`]: for each pool, how
//!   long since it last heard any of its nodes, and whether it has told the partner that pool
//!   is lost (then it latches: it grants the lost pool no lease until one of the pools says it
//!   hears its partner again). It also relays ownership: every heartbeat carries the sender's
//!   [`OwnershipView`] and every answer the highest epochs the witness has seen, so a pool cut
//!   from its partner but not from the witness learns a failover.
//! - A pool's node ([`PoolNode::watch_witness_forever`], run by `watch_partner_forever` when
//!   [`PoolOptions::witness`](crate::PoolOptions) is set) sends a heartbeat every
//!   [`PARTNER_PING_INTERVAL`]. An answer that does not report its own pool lost is a *lease*,
//!   counted from the moment the heartbeat was sent; so is an answered ping of the partner.
//! - **Self-fencing**: a node whose pool owns users and has a witness acknowledges no write for
//!   them once it holds no lease younger than [`PoolNode::lease_term`] (the detection interval
//!   less two ping intervals): it has heard neither its partner nor the witness. It answers
//!   `503` instead ([`PoolNode::refuse_when_fenced`]) and does not serve as backup registrar.
//! - **Automatic failover**: the node of B that leads B's CMS group (the CMS or its copy) fails A
//!   over by itself when B has not heard A for the detection interval, the witness answers
//!   (B holds a lease) and reports that it has not heard A for the detection interval either,
//!   and A still owns its users. Only a pool that was heard and then went silent: one that
//!   this node never heard since it started, or the witness never heard since it started, is
//!   not failed over by itself (it may be starting; a deployment is often brought up site by
//!   site): `fail_over_cms` first when the CMS lived on A, then the disaster
//!   failover, recorded in the CMS as an operation (a compare-and-set: it never runs twice).
//!
//! Why no write is acknowledged by both pools at once (the timing argument, in ARCHITECTURE.md):
//! B acts only after the witness has heard no node of A for the detection interval D, measured
//! on the witness from the arrival of A's last heartbeat; every lease of A counts from the
//! *sending* of a heartbeat or ping (before its arrival), and ends after D less two ping
//! intervals, so every node of A stopped acknowledging before the witness's silence reached D.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use roster_net::{Handler, Network, Peer};
use roster_raft::GroupKey;
use roster_topology::PoolId;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::node::{PoolError, PoolNode};
use crate::ownership::{OwnershipView, PARTNER_PING_INTERVAL};
use crate::protocol::{decode, encode};

/// How long a node waits for the witness's answer to one heartbeat: below the heartbeat
/// interval, so heartbeats never queue.
const WITNESS_TIMEOUT: Duration = Duration::from_millis(900);

/// How old the witness's last report may be for the automatic failover to act on it: two
/// heartbeats.
const REPORT_FRESH_MAX: Duration = Duration::from_secs(2);

/// The shortest detection interval that leaves a lease ([`PoolNode::lease_term`]) longer than
/// a heartbeat and its timeout, so that a pool that hears the witness never fences itself
/// between two heartbeats.
pub const WITNESS_DETECTION_INTERVAL_MIN: Duration = Duration::from_secs(4);

/// Metric: 1 while this node refuses its pool's users' writes because it hears neither its
/// partner nor the witness, else 0.
pub const SELF_FENCED: &str = "roster_witness_fenced";

/// Metric: automatic failovers this node began, by home pool and outcome.
pub const AUTOMATIC_FAILOVERS: &str = "roster_automatic_failovers_total";

/// What a pool's node sends the witness.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WitnessRequest {
    /// "I am here": renews the sender's pool at the witness and asks for its report.
    Heartbeat(Heartbeat),
}

/// One heartbeat of a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Whether the sender hears its partner pool now (a latched loss ends then).
    pub hears_partner: bool,
    /// The sender's detection interval in milliseconds: the witness latches a pool lost when
    /// it reports it silent this long to its partner.
    pub detection_ms: u64,
    /// The ownership the sender knows.
    pub view: OwnershipView,
}

/// The witness's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WitnessResponse {
    /// What the witness has heard.
    Heard(WitnessReport),
    /// The request was refused (a pool the witness does not watch) or could not be decoded.
    Error(String),
}

/// What the witness has heard of each pool it watches, and the ownership it knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessReport {
    /// One entry per watched pool.
    pub pools: Vec<PoolHeard>,
    /// The highest-epoch ownership any heartbeat carried.
    pub view: OwnershipView,
}

/// What the witness has heard of one pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolHeard {
    /// The pool.
    pub pool: PoolId,
    /// Milliseconds since a heartbeat of any of its nodes arrived (since the witness started,
    /// when none has).
    pub silent_ms: u64,
    /// Whether any of its nodes has sent a heartbeat since the witness started.
    pub heard: bool,
    /// Whether the witness has told the partner this pool is lost, and no pool has said since
    /// that it hears its partner: the pool holds no lease from the witness meanwhile.
    pub reported_lost: bool,
}

impl WitnessReport {
    /// The entry of `pool`.
    pub fn of(&self, pool: PoolId) -> Option<&PoolHeard> {
        self.pools.iter().find(|heard| heard.pool == pool)
    }
}

/// The witness's side: answers the heartbeats of the nodes of the two pools it watches.
pub struct Witness {
    pools: [PoolId; 2],
    started: Instant,
    /// A `std` lock around short sections without `.await`.
    state: Mutex<WitnessState>,
}

#[derive(Default)]
struct WitnessState {
    last_heard: [Option<Instant>; 2],
    reported_lost: [bool; 2],
    view: OwnershipView,
}

impl Witness {
    /// A witness of `pools` (a pair) that has heard nothing yet.
    pub fn new(pools: [PoolId; 2]) -> Witness {
        Witness {
            pools,
            started: Instant::now(),
            state: Mutex::new(WitnessState::default()),
        }
    }

    /// The pools it watches.
    pub fn pools(&self) -> [PoolId; 2] {
        self.pools
    }

    /// What it has heard, now.
    pub fn report(&self) -> WitnessReport {
        let state = self.lock();
        self.report_of(&state, Instant::now())
    }

    /// Serves one heartbeat of `from`.
    pub fn heartbeat(&self, from: Peer, heartbeat: Heartbeat) -> WitnessResponse {
        let Some(index) = self.pools.iter().position(|&pool| pool == from.pool) else {
            return WitnessResponse::Error(format!("{from} is of no pool this witness watches"));
        };
        let other = 1 - index;
        let now = Instant::now();
        let mut state = self.lock();
        state.last_heard[index] = Some(now);
        state.view.merge(&heartbeat.view);
        if heartbeat.hears_partner {
            state.reported_lost = [false, false];
        }
        let detection = Duration::from_millis(heartbeat.detection_ms);
        // Only a pool heard since this witness started can go silent: one that never spoke
        // may be still starting (a deployment brought up site by site), not lost.
        let went_silent =
            state.last_heard[other].is_some() && self.silent(&state, other, now) >= detection;
        if went_silent && !state.reported_lost[other] {
            warn!(
                pool = self.pools[other],
                told = %from,
                "witness: reporting a silent pool lost to its partner"
            );
            state.reported_lost[other] = true;
        }
        WitnessResponse::Heard(self.report_of(&state, now))
    }

    fn silent(&self, state: &WitnessState, index: usize, now: Instant) -> Duration {
        now - state.last_heard[index].unwrap_or(self.started)
    }

    fn report_of(&self, state: &WitnessState, now: Instant) -> WitnessReport {
        let pools = (0..2)
            .map(|index| PoolHeard {
                pool: self.pools[index],
                silent_ms: millis(self.silent(state, index, now)),
                heard: state.last_heard[index].is_some(),
                reported_lost: state.reported_lost[index],
            })
            .collect();
        WitnessReport {
            pools,
            view: state.view.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WitnessState> {
        // A poisoned lock only means a panic elsewhere mid-update; the values are still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Handler for Witness {
    async fn handle(&self, from: Peer, body: Vec<u8>) -> Vec<u8> {
        let response = match decode::<WitnessRequest>(&body) {
            Ok(WitnessRequest::Heartbeat(heartbeat)) => self.heartbeat(from, heartbeat),
            Err(error) => WitnessResponse::Error(format!("undecodable request: {error}")),
        };
        encode(&response).unwrap_or_default()
    }
}

/// What a node knows of its witness, as its status document shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessLease {
    /// The witness's id.
    pub witness: roster_topology::NodeId,
    /// How long ago the witness last answered this node's heartbeat; `None`: not since the
    /// node started.
    pub heard_ms_ago: Option<u64>,
    /// How much longer the node's newest lease (from the witness or its partner) lets it
    /// acknowledge its users' writes; 0 when it holds none.
    pub lease_left_ms: u64,
    /// Whether the node has fenced itself (no lease left): it answers its users' writes `503`.
    pub self_fenced: bool,
}

/// What a node knows from the witness: its last lease and report.
#[derive(Default)]
pub(crate) struct WitnessWatch {
    /// A `std` lock around short sections without `.await`.
    inner: Mutex<Watching>,
    /// Whether an automatic failover runs on this node now.
    acting: AtomicBool,
}

#[derive(Default)]
struct Watching {
    /// When the last heartbeat that the witness answered with a lease was sent.
    lease_sent: Option<Instant>,
    /// The last report, and when it arrived.
    report: Option<(Instant, WitnessReport)>,
    /// Whether this node reported itself fenced last (for the log and the gauge).
    fenced: bool,
}

impl WitnessWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Watching> {
        // A poisoned lock only means a panic elsewhere mid-update; the values are still whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<N: Network> PoolNode<N> {
    /// How long a lease (an answered heartbeat or ping) lets this node acknowledge its users'
    /// writes: the detection interval less two ping intervals, so that it has stopped before
    /// the partner and the witness can have counted a whole detection interval of silence.
    pub fn lease_term(&self) -> Duration {
        self.options
            .detection_interval
            .saturating_sub(PARTNER_PING_INTERVAL * 2)
    }

    /// Whether this node has fenced itself: its pool has a witness, and the node holds no
    /// lease (it has heard neither its partner nor the witness for [`PoolNode::lease_term`]).
    /// Always false without a witness.
    pub fn self_fenced(&self) -> bool {
        self.options.witness.is_some() && self.lease_left().is_zero()
    }

    /// How much longer this node's newest lease (from the witness or its partner) lets it
    /// acknowledge its users' writes; zero when it holds none.
    fn lease_left(&self) -> Duration {
        let lease = [self.witness_watch.lock().lease_sent, self.partner_lease()]
            .into_iter()
            .flatten()
            .max();
        lease.map_or(Duration::ZERO, |sent| {
            self.lease_term().saturating_sub(sent.elapsed())
        })
    }

    /// What this node knows of its witness, for its status document; `None` without one.
    pub fn witness_lease(&self) -> Option<WitnessLease> {
        let witness = self.options.witness?;
        let heard = self
            .witness_watch
            .lock()
            .report
            .as_ref()
            .map(|(received, _)| millis(received.elapsed()));
        let lease_left = self.lease_left();
        Some(WitnessLease {
            witness,
            heard_ms_ago: heard,
            lease_left_ms: millis(lease_left),
            self_fenced: lease_left.is_zero(),
        })
    }

    /// The refusal of a write for users this pool owns while it is fenced; `None` otherwise.
    pub(crate) fn refuse_when_fenced(&self, group: GroupKey) -> Option<PoolError> {
        if !self.self_fenced() {
            return None;
        }
        Some(PoolError::Unavailable {
            group,
            reason: format!(
                "this pool hears neither its partner nor the witness (no lease for {} s): it \
                 acknowledges no write, since its partner may be taking its users over",
                self.lease_term().as_secs()
            ),
            retry_after_s: 5,
        })
    }

    /// The witness's last report, if one arrived.
    pub fn witness_report(&self) -> Option<WitnessReport> {
        self.witness_watch
            .lock()
            .report
            .as_ref()
            .map(|(_, report)| report.clone())
    }

    /// Sends the witness a heartbeat every [`PARTNER_PING_INTERVAL`] and acts on its answers
    /// (see the module doc), until the returned future is dropped. Does nothing without a
    /// witness.
    pub async fn watch_witness_forever(self: Arc<Self>) {
        let Some(witness) = self.options.witness else {
            return std::future::pending().await;
        };
        let mut tick = tokio::time::interval(PARTNER_PING_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answering = true;
        loop {
            tick.tick().await;
            let heartbeat = Heartbeat {
                hears_partner: self.partner_heard() && self.partner_silent_for().is_none(),
                detection_ms: millis(self.options.detection_interval),
                view: self.ownership_view(),
            };
            let sent = Instant::now();
            match self.ask_witness(witness, heartbeat).await {
                Ok(report) => {
                    if !answering {
                        info!(witness, "the witness answers again");
                    }
                    answering = true;
                    self.take_report(sent, report);
                }
                Err(error) => {
                    if answering {
                        warn!(witness, %error, "the witness does not answer");
                    }
                    answering = false;
                }
            }
            self.report_fence();
            if self.failover_due() && !self.witness_watch.acting.swap(true, Ordering::SeqCst) {
                let node = Arc::clone(&self);
                tokio::spawn(async move {
                    node.fail_over_automatically().await;
                    node.witness_watch.acting.store(false, Ordering::SeqCst);
                });
            }
        }
    }

    async fn ask_witness(
        &self,
        witness: roster_topology::NodeId,
        heartbeat: Heartbeat,
    ) -> Result<WitnessReport, String> {
        let body = encode(&WitnessRequest::Heartbeat(heartbeat)).map_err(|e| e.to_string())?;
        let reply = self
            .router
            .network()
            .request(witness, body, WITNESS_TIMEOUT)
            .await
            .map_err(|error| error.to_string())?;
        match decode::<WitnessResponse>(&reply).map_err(|error| error.to_string())? {
            WitnessResponse::Heard(report) => Ok(report),
            WitnessResponse::Error(reason) => Err(format!("the witness refused: {reason}")),
        }
    }

    /// Keeps `report` (answering a heartbeat sent at `sent`): a lease unless it reports this
    /// pool lost, and the ownership the witness relays.
    fn take_report(&self, sent: Instant, report: WitnessReport) {
        let lost = report
            .of(self.options.pool)
            .is_some_and(|heard| heard.reported_lost);
        self.learn_ownership(&report.view);
        let mut watching = self.witness_watch.lock();
        if !lost {
            watching.lease_sent = Some(sent);
        }
        watching.report = Some((Instant::now(), report));
    }

    /// Logs and reports (gauge [`SELF_FENCED`]) when this node fences itself or stops.
    fn report_fence(&self) {
        let fenced = self.self_fenced();
        let changed = {
            let mut watching = self.witness_watch.lock();
            std::mem::replace(&mut watching.fenced, fenced) != fenced
        };
        if !changed {
            return;
        }
        metrics::gauge!(SELF_FENCED).set(if fenced { 1.0 } else { 0.0 });
        if fenced {
            warn!(
                node = self.options.node_id,
                lease_s = self.lease_term().as_secs(),
                "fenced: this node hears neither its partner pool nor the witness, and \
                 acknowledges no write for its pool's users until it hears one of them"
            );
        } else {
            info!(node = self.options.node_id, "no longer fenced");
        }
    }

    /// Whether this node should fail its partner over now (see the module doc).
    fn failover_due(&self) -> bool {
        let (Some(partner), Some(cms_key)) =
            (self.options.partner.as_ref(), self.options.cms_key())
        else {
            return false;
        };
        if self.owner_of(partner.pool).owner != partner.pool || !self.leads(cms_key) {
            return false;
        }
        let detection = self.options.detection_interval;
        // A partner this node never heard since it started is not failed over by itself: it
        // may be still starting (a deployment brought up site by site, or this node restarted
        // while the partner was down); the operator's word is needed then.
        if !self.partner_heard()
            || self
                .partner_silent_for()
                .is_none_or(|silent| silent < detection)
        {
            return false;
        }
        let watching = self.witness_watch.lock();
        let Some((received, report)) = &watching.report else {
            return false;
        };
        let own_lost = report
            .of(self.options.pool)
            .is_none_or(|heard| heard.reported_lost);
        let partner_lost = report
            .of(partner.pool)
            .is_some_and(|heard| heard.heard && heard.silent_ms >= millis(detection));
        received.elapsed() <= REPORT_FRESH_MAX && !own_lost && partner_lost
    }

    /// Fails the partner over: the CMS first when it lived there, then its users (a disaster
    /// failover, recorded in the CMS as an operation).
    async fn fail_over_automatically(&self) {
        let Some(partner) = self.options.partner.as_ref().map(|partner| partner.pool) else {
            return;
        };
        warn!(
            partner,
            node = self.options.node_id,
            "automatic failover: neither this pool nor the witness has heard the partner pool \
             for the detection interval"
        );
        if self.cms_owner().is_some_and(|owner| owner.owner == partner) {
            match self.fail_over_cms().await {
                Ok(report) => info!(?report, "automatic failover: the CMS is here now"),
                Err(error) => {
                    warn!(%error, "automatic failover: the CMS failover did not happen");
                    metrics::counter!(AUTOMATIC_FAILOVERS, "home" => partner.to_string(), "outcome" => "refused")
                        .increment(1);
                    return;
                }
            }
        }
        let outcome = match self.fail_over(partner, true).await {
            Ok(report) => {
                info!(?report, "automatic failover done");
                "done"
            }
            Err(error) => {
                warn!(%error, "automatic failover did not happen");
                "refused"
            }
        };
        metrics::counter!(AUTOMATIC_FAILOVERS, "home" => partner.to_string(), "outcome" => outcome)
            .increment(1);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(hears_partner: bool, detection_ms: u64) -> Heartbeat {
        Heartbeat {
            hears_partner,
            detection_ms,
            view: OwnershipView::default(),
        }
    }

    #[test]
    fn a_pool_never_heard_is_silent_but_not_lost() {
        let witness = Witness::new([1, 2]);
        let from_b = Peer { pool: 2, node: 4 };
        // Detection 0: a has been silent "long enough", but was never heard: it may be
        // starting, so it is not reported lost (no automatic failover of it).
        let WitnessResponse::Heard(report) = witness.heartbeat(from_b, heartbeat(false, 0)) else {
            panic!("refused");
        };
        let a = report.of(1).expect("a is watched");
        assert!(!a.heard && !a.reported_lost, "{a:?}");
    }

    #[test]
    fn a_silent_pool_is_latched_lost_until_a_pool_hears_its_partner() {
        let witness = Witness::new([1, 2]);
        let from_b = Peer { pool: 2, node: 4 };
        let from_a = Peer { pool: 1, node: 1 };
        // a is heard once (long detection: b is not reported lost to it).
        let WitnessResponse::Heard(_) = witness.heartbeat(from_a, heartbeat(false, 60_000)) else {
            panic!("refused");
        };
        // Detection 0: b's heartbeat finds a silent "long enough" at once.
        let WitnessResponse::Heard(report) = witness.heartbeat(from_b, heartbeat(false, 0)) else {
            panic!("refused");
        };
        assert!(report.of(1).is_some_and(|heard| heard.reported_lost));
        assert!(report
            .of(2)
            .is_some_and(|heard| heard.heard && !heard.reported_lost));
        // a comes back hearing nobody: still lost, no lease.
        let WitnessResponse::Heard(report) = witness.heartbeat(from_a, heartbeat(false, 60_000))
        else {
            panic!("refused");
        };
        assert!(report.of(1).is_some_and(|heard| heard.reported_lost));
        // a pool that hears its partner ends the latch.
        let WitnessResponse::Heard(report) = witness.heartbeat(from_a, heartbeat(true, 60_000))
        else {
            panic!("refused");
        };
        assert!(report.pools.iter().all(|heard| !heard.reported_lost));
        let stranger = Peer { pool: 3, node: 9 };
        assert!(matches!(
            witness.heartbeat(stranger, heartbeat(true, 0)),
            WitnessResponse::Error(_)
        ));
    }
}
