//! The source side of the backup stream: every group this node leads that has a copy in the
//! partner pool (its routing groups, and the CMS on the CMS's pool) ships its committed entries,
//! in log order and in batches, to that copy; a copy that needs entries the source has purged
//! gets the source's state instead, in pieces. See `roster_raft::stream` for what the copy
//! does with them.
//!
//! One task per group this node leads ([`PoolNode::ship_forever`] starts and ends them as
//! leadership moves). Each keeps the copy's position: learned from the copy when the task
//! starts, then from every answer; a refusal for a gap names the position to send from. The
//! stream survives leader changes at both ends (a new source leader asks the copy where it
//! stands; the partner routes to the copy's current leader), restarts (positions are in the
//! copies' replicated state) and cut links (it backs off and resumes where the copy stands).
//!
//! Lag is measured on the source: when the shipper first saw each applied index, against the
//! copy's position. A stream is *steady* while its lag stays under [`STEADY_LAG`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use roster_net::Network;
use roster_raft::stream::{batch_of, restore_chunks, ReplicaRefusal};
use roster_raft::{GroupKey, GroupRequest, GroupResponse, ReplicatedState};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
// Tokio's clock: the real one in a node, the paused one of a simulation.
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::node::{PoolError, PoolNode};
use crate::replicas::Replica;

/// How often the supervisor looks at which groups this node leads: a new leader starts shipping
/// within this (the partner's copy waits no longer than an election plus this).
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(200);

/// Longest a shipper waits for new entries before it refreshes its status and checks its
/// leadership again.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Entries read from the log at once: a batch carries at most this many (and at most what fits
/// one entry of the copy's log).
const ENTRIES_PER_READ_MAX: u64 = 512;

/// How long one batch or piece may take to be applied in the partner pool: a commit there plus
/// a WAN round trip, with room for a leader election at the partner.
const SHIP_TIMEOUT: Duration = Duration::from_secs(5);

/// First pause after a failed send; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Longest pause between attempts while the partner cannot be reached: a cut link is noticed
/// again within this once it heals.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long a stream the copy refuses outright (another source, a higher epoch) waits before
/// asking again: an operator's failover or failback is under way.
const STOPPED_RETRY: Duration = Duration::from_secs(5);

/// A stream whose lag stays under this is steady (the RPO target is 1 s at the 99th percentile).
pub const STEADY_LAG: Duration = Duration::from_secs(1);

/// Bytes of state in one restore piece (estimated), well under a log entry of the copy.
const RESTORE_PIECE_BYTES: usize = 48 * 1024;

/// Attempts to ship one restore piece before the restore starts over.
const PIECE_ATTEMPTS_MAX: u32 = 5;

/// Observations of applied indexes kept for the lag, at most: when more arrive, the oldest not
/// yet at the partner are kept and the newest are merged, so the lag is never understated.
const OBSERVATIONS_MAX: usize = 4_096;

/// Metric: entries the partner's copy of a group lacks, by group (on the source's leader).
pub const BACKUP_LAG_ENTRIES: &str = "roster_backup_lag_entries";
/// Metric: age of the oldest entry the partner's copy lacks, in seconds, by group.
pub const BACKUP_LAG_SECONDS: &str = "roster_backup_lag_seconds";
/// Metric: restores (whole-state sends) started, by group.
pub const BACKUP_RESTORES: &str = "roster_backup_restores_total";
/// Metric (histogram, on the source's leader): for every shipped entry, the time from its
/// proposal (the source leader's timestamp) to the partner's acknowledgement that its copy
/// holds it: the replication delay, the RPO each entry was exposed to.
pub const BACKUP_REPLICATION_DELAY: &str = "roster_backup_replication_delay_seconds";

/// One stream's state as its source's leader sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// The source group (here).
    pub source: String,
    /// The copy (in the partner pool).
    pub copy: String,
    /// The node shipping it (the source's leader).
    pub leader: u64,
    /// The source's last applied index.
    pub source_index: u64,
    /// When the source applied it (milliseconds since the Unix epoch, as first seen here).
    pub source_time_ms: u64,
    /// The copy's position, once known.
    pub partner_index: Option<u64>,
    /// Entries the copy lacks.
    pub lag_entries: u64,
    /// Age of the oldest entry the copy lacks, in milliseconds.
    pub lag_ms: u64,
    /// `steady`, `behind` or `stopped`.
    pub state: StreamState,
    /// Why the stream is behind or stopped, when it is.
    pub detail: Option<String>,
    /// Whole-state sends (restores) since this node began shipping the group.
    pub restores: u64,
}

/// A stream's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// The copy is within [`STEADY_LAG`] of the source.
    Steady,
    /// The copy lags more, or the partner is slow or unreachable for now.
    Behind,
    /// The copy refuses the stream (it follows another source, or is at a higher epoch), or the
    /// partner has been unreachable for long.
    Stopped,
}

/// The streams this node ships, for status.
///
/// A status is set when its shipper looks at the stream (before each step); a step may take a
/// WAN round trip or, with the partner unreachable, a timeout. So each status keeps when the
/// oldest entry the copy lacked was first seen, and [`Shipping::list`] ages the lag to the
/// moment it is asked: a stream stuck in a step shows its lag growing, not the lag it had when
/// the step began.
#[derive(Default)]
pub(crate) struct Shipping {
    /// A `std` lock around map operations without `.await`.
    streams: Mutex<BTreeMap<GroupKey, (StreamStatus, Option<Instant>)>>,
}

impl Shipping {
    fn set(&self, source: GroupKey, (status, oldest): (StreamStatus, Option<Instant>)) {
        self.lock().insert(source, (status, oldest));
    }

    fn forget(&self, source: GroupKey) {
        self.lock().remove(&source);
    }

    pub(crate) fn list(&self) -> Vec<StreamStatus> {
        self.lock()
            .values()
            .map(|(status, oldest)| aged(status.clone(), *oldest))
            .collect()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<GroupKey, (StreamStatus, Option<Instant>)>> {
        // A poisoned lock only means a panic elsewhere mid-insert; statuses are refreshed.
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<N: Network> PoolNode<N> {
    /// Ships every group this node leads to its partner copy, until the returned future is
    /// dropped (the node aborts the task running it at shutdown). Does nothing without a partner.
    pub async fn ship_forever(self: Arc<Self>) {
        if self.options.partner.is_none() {
            return std::future::pending().await;
        }
        let hosted = self.options.keys();
        // Dropping the set (with this future) aborts every shipper.
        let mut shippers: JoinSet<()> = JoinSet::new();
        let mut running: HashMap<GroupKey, tokio::task::AbortHandle> = HashMap::new();
        // Copies whose resiliency overlay this node is bringing home (see `resilience`).
        let mut homing: HashMap<GroupKey, tokio::task::AbortHandle> = HashMap::new();
        let mut tick = tokio::time::interval(SUPERVISE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            while shippers.try_join_next().is_some() {}
            running.retain(|_, handle| !handle.is_finished());
            homing.retain(|_, handle| !handle.is_finished());
            for &copy in &hosted {
                if homing.contains_key(&copy) || !self.homecoming_due(copy) {
                    continue;
                }
                let node = self.clone();
                let handle = shippers.spawn(async move { node.bring_home(copy).await });
                homing.insert(copy, handle);
            }
            for &source in &hosted {
                if running.contains_key(&source) || !self.ships(source) || !self.leads(source) {
                    continue;
                }
                let node = self.clone();
                let handle = shippers.spawn(async move { node.ship_group(source).await });
                running.insert(source, handle);
            }
        }
    }

    /// The streams this node ships now.
    pub fn streams(&self) -> Vec<StreamStatus> {
        self.shipping.list()
    }

    /// Whether `key` is a source here: this pool owns it (it proposes its writes), and the
    /// partner holds its counterpart.
    pub fn ships(&self, key: GroupKey) -> bool {
        counterpart(key).is_some() && self.key_owner(key) == Some(self.options.pool)
    }

    pub(crate) fn leads(&self, group: GroupKey) -> bool {
        self.replica(group).is_some_and(|replica| {
            replica.raft.metrics().borrow_watched().current_leader == Some(self.options.node_id)
        })
    }

    /// Ships `source` while this node leads it.
    async fn ship_group(&self, source: GroupKey) {
        let Some(copy) = counterpart(source) else {
            return;
        };
        info!(group = %source, node = self.options.node_id, "shipping to the partner's copy");
        let mut stream = Stream::new(source, copy, self.options.node_id);
        let mut backoff = BACKOFF_MIN;
        loop {
            let Some(replica) = self
                .replica(source)
                .filter(|_| self.leads(source) && self.ships(source))
            else {
                break;
            };
            let applied = applied_index(&replica);
            stream.observe(applied, (self.clock)());
            self.shipping.set(source, stream.status(applied));
            match self.ship_step(&replica, &mut stream, applied).await {
                Ok(Step::Shipped) => backoff = BACKOFF_MIN,
                Ok(Step::Idle) => {
                    let waiter = replica.raft.wait(Some(IDLE_WAIT));
                    let wait =
                        waiter.applied_index_at_least(Some(applied + 1), "new entries to ship");
                    let _ = Box::pin(wait).await;
                }
                Ok(Step::Stopped) => tokio::time::sleep(STOPPED_RETRY).await,
                Err(error) => {
                    stream.fail(error.to_string());
                    self.shipping.set(source, stream.status(applied));
                    debug!(group = %source, %error, "backup stream: partner not reached");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.shipping.forget(source);
        let label = source.to_string();
        metrics::gauge!(BACKUP_LAG_ENTRIES, "group" => label.clone()).set(0.0);
        metrics::gauge!(BACKUP_LAG_SECONDS, "group" => label).set(0.0);
        info!(group = %source, node = self.options.node_id, "stopped shipping (no longer the leader, or no longer the owner)");
    }

    /// One step: learn the copy's position, then send what it lacks (a batch, or the whole
    /// state when the log no longer has it).
    async fn ship_step(
        &self,
        replica: &Replica,
        stream: &mut Stream,
        applied: u64,
    ) -> Result<Step, PoolError> {
        let position = match stream.partner {
            Some(position) => position,
            None => match self
                .partner_position(stream.copy, SHIP_TIMEOUT)
                .await?
                .stream
            {
                Some(at) if at.source == stream.source => stream.learn(at.index),
                Some(at) => {
                    stream.stop(format!("the copy follows {}", at.source));
                    return Ok(Step::Stopped);
                }
                // A copy that never followed anything: from the start of the log.
                None => stream.learn(0),
            },
        };
        if position >= applied {
            stream.clear_failure();
            return Ok(Step::Idle);
        }
        let mut log = replica.log.clone();
        let purged = log
            .get_log_state()
            .await
            .map_err(|error| PoolError::Internal(error.to_string()))?
            .last_purged_log_id
            .map_or(0, |id| id.index);
        if position < purged || stream.needs_restore {
            return self.restore(replica, stream).await;
        }
        let last = applied.min(position + ENTRIES_PER_READ_MAX);
        let entries = log
            .try_get_log_entries(position + 1..=last)
            .await
            .map_err(|error| PoolError::Internal(error.to_string()))?;
        let epoch = replica
            .state
            .read(|state| state.epoch())
            .map_err(|error| PoolError::Internal(error.to_string()))?;
        let Some(batch) = batch_of(stream.source, epoch, position, &entries) else {
            // The log moved under the read (a purge): ask again from the copy's position.
            stream.partner = None;
            return Ok(Step::Shipped);
        };
        let proposed_ms: Vec<(u64, u64)> = batch
            .entries
            .iter()
            .map(|entry| (entry.index, entry.request.timestamp_ms))
            .collect();
        let request = GroupRequest::replicate(batch);
        let answer = self
            .ship_to_partner(stream.copy, request, SHIP_TIMEOUT)
            .await?;
        if let GroupResponse::Replicated { position } = answer {
            record_delays(&proposed_ms, position, (self.clock)());
        }
        Ok(self.on_answer(stream, answer))
    }

    /// What the copy's answer means for the stream.
    fn on_answer(&self, stream: &mut Stream, answer: GroupResponse) -> Step {
        match answer {
            GroupResponse::Replicated { position }
            | GroupResponse::ReplicaRefused(ReplicaRefusal::Gap { position }) => {
                stream.learn(position);
                stream.clear_failure();
                Step::Shipped
            }
            GroupResponse::ReplicaRefused(ReplicaRefusal::NotPristine) => {
                // The copy has a history of its own: only a restore can start the stream.
                stream.needs_restore = true;
                Step::Shipped
            }
            GroupResponse::StaleEpoch { current } => {
                stream.stop(format!(
                    "the copy is at epoch {current}: the partner owns these users now"
                ));
                Step::Stopped
            }
            other => {
                stream.stop(format!("the copy refused: {other:?}"));
                Step::Stopped
            }
        }
    }

    /// Sends the source's whole state, in pieces, then resumes the stream after it.
    async fn restore(&self, replica: &Replica, stream: &mut Stream) -> Result<Step, PoolError> {
        stream.needs_restore = false;
        stream.restores += 1;
        let internal = |error: roster_store::StoreError| PoolError::Internal(error.to_string());
        let (content, epoch, at, last_time_ms) = replica
            .state
            .read(|state| {
                let at = state.last_applied().map_or(0, |id| id.index);
                (
                    state.content().clone(),
                    state.epoch(),
                    at,
                    state.last_time_ms(),
                )
            })
            .map_err(internal)?;
        let source = stream.source;
        metrics::counter!(BACKUP_RESTORES, "group" => source.to_string()).increment(1);
        info!(group = %source, at, "backup stream: sending the whole state (the log no longer has what the copy needs)");
        let chunks = self
            .replicas
            .opener()
            .io()
            .run_blocking(move || {
                restore_chunks(
                    source,
                    &content,
                    epoch,
                    at,
                    last_time_ms,
                    RESTORE_PIECE_BYTES,
                )
            })
            .await
            .map_err(|error| PoolError::Internal(error.to_string()))?;
        for chunk in chunks {
            let part = chunk.part;
            let mut attempts = 0;
            loop {
                let request = GroupRequest::restore(chunk.clone());
                match self
                    .ship_to_partner(stream.copy, request, SHIP_TIMEOUT)
                    .await
                {
                    Ok(GroupResponse::Restoring { next_part }) if next_part == part + 1 => break,
                    Ok(GroupResponse::Replicated { position }) => {
                        stream.learn(position);
                        return Ok(Step::Shipped);
                    }
                    Ok(other) => {
                        warn!(group = %source, part, ?other, "restore piece refused; starting over");
                        stream.partner = None;
                        return Ok(Step::Shipped);
                    }
                    Err(error) => {
                        attempts += 1;
                        if attempts >= PIECE_ATTEMPTS_MAX {
                            return Err(error);
                        }
                        tokio::time::sleep(BACKOFF_MIN * attempts).await;
                    }
                }
            }
        }
        // The last piece answers `Replicated`; a restore that ended without it starts over.
        stream.partner = None;
        Ok(Step::Shipped)
    }
}

/// What one step did.
enum Step {
    /// Something was sent (or the position learned); go on at once.
    Shipped,
    /// The copy has everything: wait for new entries.
    Idle,
    /// The copy refuses the stream: wait long, then ask again.
    Stopped,
}

/// One stream's bookkeeping on its source's leader.
struct Stream {
    source: GroupKey,
    copy: GroupKey,
    leader: u64,
    /// The copy's position, once known.
    partner: Option<u64>,
    /// When this node first saw each applied index (monotonic, and wall-clock milliseconds).
    observed: VecDeque<(u64, Instant, u64)>,
    /// Why the last attempt failed, and since when the stream has been failing.
    failure: Option<(String, Instant)>,
    /// The copy refuses the stream outright.
    stopped: Option<String>,
    /// The copy asked for the whole state.
    needs_restore: bool,
    /// Restores started.
    restores: u64,
}

impl Stream {
    fn new(source: GroupKey, copy: GroupKey, leader: u64) -> Stream {
        Stream {
            source,
            copy,
            leader,
            partner: None,
            observed: VecDeque::new(),
            failure: None,
            stopped: None,
            needs_restore: false,
            restores: 0,
        }
    }

    /// Records that the source has applied `index`, first seen at `now_ms`.
    fn observe(&mut self, index: u64, now_ms: u64) {
        if self
            .observed
            .back()
            .is_some_and(|(last, _, _)| *last >= index)
        {
            return;
        }
        if self.observed.len() >= OBSERVATIONS_MAX {
            // Merge into the newest: its time stays the newest's, which is later than the
            // merged entries' first sightings, so ages are only ever overstated for them.
            if let Some(newest) = self.observed.back_mut() {
                newest.0 = index;
            }
            return;
        }
        self.observed.push_back((index, Instant::now(), now_ms));
    }

    /// The copy stands at `position`.
    fn learn(&mut self, position: u64) -> u64 {
        self.partner = Some(position);
        self.stopped = None;
        while self
            .observed
            .front()
            .is_some_and(|(index, _, _)| *index <= position)
        {
            self.observed.pop_front();
        }
        position
    }

    fn fail(&mut self, reason: String) {
        let since = self
            .failure
            .take()
            .map_or_else(Instant::now, |(_, since)| since);
        self.failure = Some((reason, since));
        // The copy may have moved meanwhile (an answer lost): ask again next time.
        self.partner = None;
    }

    fn clear_failure(&mut self) {
        self.failure = None;
    }

    fn stop(&mut self, reason: String) {
        warn!(group = %self.source, %reason, "backup stream stopped");
        self.stopped = Some(reason);
        self.partner = None;
    }

    /// The stream's status now, and when the oldest entry the copy lacks was first seen (none
    /// when it lacks nothing).
    fn status(&self, applied: u64) -> (StreamStatus, Option<Instant>) {
        let partner = self.partner;
        let lag_entries = applied.saturating_sub(partner.unwrap_or(0));
        let oldest = self
            .observed
            .iter()
            .find(|(index, _, _)| partner.is_none_or(|position| *index > position))
            .map(|(_, seen, _)| *seen)
            .filter(|_| lag_entries > 0);
        let lag = oldest.map_or(Duration::ZERO, |seen| seen.elapsed());
        let (state, detail) = match (&self.stopped, &self.failure) {
            (Some(reason), _) => (StreamState::Stopped, Some(reason.clone())),
            (None, Some((reason, since))) if since.elapsed() > STOPPED_AFTER => {
                (StreamState::Stopped, Some(reason.clone()))
            }
            (None, Some((reason, _))) => (StreamState::Behind, Some(reason.clone())),
            (None, None) if lag >= STEADY_LAG => (StreamState::Behind, None),
            (None, None) => (StreamState::Steady, None),
        };
        let label = self.source.to_string();
        metrics::gauge!(BACKUP_LAG_ENTRIES, "group" => label.clone()).set(lag_entries as f64);
        metrics::gauge!(BACKUP_LAG_SECONDS, "group" => label.clone()).set(lag.as_secs_f64());
        let status = StreamStatus {
            source: label,
            copy: self.copy.to_string(),
            leader: self.leader,
            source_index: applied,
            source_time_ms: self.observed.back().map_or(0, |(_, _, wall)| *wall),
            partner_index: partner,
            lag_entries,
            lag_ms: u64::try_from(lag.as_millis()).unwrap_or(u64::MAX),
            state,
            detail,
            restores: self.restores,
        };
        (status, oldest)
    }
}

/// `status` with its lag aged to now: the oldest entry the copy lacked was first seen at
/// `oldest`; a steady stream whose lag has since reached [`STEADY_LAG`] is behind.
fn aged(mut status: StreamStatus, oldest: Option<Instant>) -> StreamStatus {
    if let Some(seen) = oldest {
        let lag_ms = u64::try_from(seen.elapsed().as_millis()).unwrap_or(u64::MAX);
        status.lag_ms = status.lag_ms.max(lag_ms);
        if status.state == StreamState::Steady && seen.elapsed() >= STEADY_LAG {
            status.state = StreamState::Behind;
        }
    }
    status
}

/// Records [`BACKUP_REPLICATION_DELAY`] for each shipped entry the copy now holds.
fn record_delays(proposed_ms: &[(u64, u64)], position: u64, now_ms: u64) {
    for delay_s in delays_held(proposed_ms, position, now_ms) {
        metrics::histogram!(BACKUP_REPLICATION_DELAY).record(delay_s);
    }
}

/// The replication delays, in seconds, of the shipped entries (source index, proposal time)
/// the copy holds at `position`, acknowledged at `now_ms`. An entry stamped in the future
/// (another leader's clock ahead) counts as no delay; one without a stamp is left out.
fn delays_held(proposed_ms: &[(u64, u64)], position: u64, now_ms: u64) -> Vec<f64> {
    proposed_ms
        .iter()
        .filter(|&&(index, at_ms)| index <= position && at_ms > 0)
        .map(|&(_, at_ms)| now_ms.saturating_sub(at_ms) as f64 / 1000.0)
        .collect()
}

/// The partner's group that follows `key`, or that `key` follows: a routing group's backup
/// copy and back, the CMS and its copy.
pub fn counterpart(key: GroupKey) -> Option<GroupKey> {
    key.copy().or_else(|| key.source())
}

/// A stream failing for longer than this is stopped (in status), not merely behind.
const STOPPED_AFTER: Duration = Duration::from_secs(10);

/// The last applied index of `replica`.
fn applied_index(replica: &Replica) -> u64 {
    replica
        .raft
        .metrics()
        .borrow_watched()
        .last_applied
        .map_or(0, |id| id.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(lag_ms: u64) -> StreamStatus {
        StreamStatus {
            source: "1/routing-0".into(),
            copy: "1/backup-0".into(),
            leader: 1,
            source_index: 10,
            source_time_ms: 0,
            partner_index: Some(9),
            lag_entries: 1,
            lag_ms,
            state: StreamState::Steady,
            detail: None,
            restores: 0,
        }
    }

    #[test]
    fn a_status_ages_while_its_step_is_in_flight() {
        let Some(seen) = Instant::now().checked_sub(Duration::from_millis(1500)) else {
            return; // A clock younger than 1.5 s: nothing to age.
        };
        let status = aged(steady(0), Some(seen));
        assert!(status.lag_ms >= 1500, "lag {} ms", status.lag_ms);
        assert_eq!(status.state, StreamState::Behind);
        // A copy that lacks nothing stays as it was.
        assert_eq!(aged(steady(0), None), steady(0));
    }

    #[test]
    fn replication_delays_count_only_what_the_copy_holds() {
        let shipped = [(1, 1_000), (2, 0), (3, 5_000), (9, 1_000)];
        // Index 2 has no stamp, 9 is past the copy's position, 3 is stamped in the future.
        assert_eq!(delays_held(&shipped, 3, 2_000), vec![1.0, 0.0]);
    }
}
