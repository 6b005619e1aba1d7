//! Moving a pool's users to its partner and back: pool failover (planned, or after a disaster),
//! failback, and CMS failover. Each runs on a node of the pool that acts (the partner taking
//! over, the owner giving back), records itself in the CMS first (so that a second one is
//! refused), and reports every step with its duration.
//!
//! Fencing is by epoch (see `ownership`): the CMS records the new owner at epoch e + 1, and the
//! groups that must no longer take writes are raised to that epoch, so that a writer still
//! holding e is refused.
//!
//! - **Planned failover** of A to B (A answers): A's groups are fenced at e + 1 (A stops taking
//!   writes), B's copies catch up to the fence (their epoch reaches e + 1 when they apply it, so
//!   they hold everything A acknowledged), then the CMS records B at e + 1. Nothing is lost.
//! - **Disaster failover** (A does not answer): the CMS records B at e + 1 and B raises its
//!   copies to e + 1, which refuses whatever A may still ship. What the copies had is what B
//!   serves: the loss is the lag at the moment A was lost.
//! - **Failback**: B, the owner, has been streaming A's groups back to A (restore, then
//!   stream) since A answered again; once A is caught up, B fences its copies at e + 2 (B's
//!   writes for A's users pause: `503` with `Retry-After: 1`), waits until A's groups have
//!   applied the fence, and the CMS records A at e + 2. A's divergent suffix, if it was alive
//!   and cut off during the failover, was discarded by the restore.
//! - **CMS failover**: the partner of the CMS's pool raises its copy of the CMS to a new epoch
//!   and records itself as the CMS's owner in it. From then on it ships the CMS to the home
//!   pool's old replica (the shipper follows ownership), which becomes a copy when its pool
//!   returns: restored (it has a history of its own), then streamed.
//! - **CMS failback**: the pool holding the CMS, once the home pool's copy has caught up,
//!   fences its CMS at e + 1 (CMS writes answer unavailable), waits until the home pool's copy
//!   has applied the fence, asks the home pool to record itself as the CMS's owner at e + 1
//!   (`PairRequest::TakeCms`), and records the same in its own group, which follows the home
//!   pool's CMS again.

use std::time::{Duration, Instant};

use roster_cms::{CmsCommand, CmsOutcome, CmsRefusal, Operation, OperationKind, Ownership};
use roster_net::Network;
use roster_raft::{GroupKey, GroupRequest, GroupResponse};
use roster_topology::PoolId;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::node::{PoolError, PoolNode};
use crate::pair::{PairRequest, PairResponse};
use crate::route::{Answer, Operation as RouteOperation};
use crate::shipper::counterpart;

/// How long a planned failover waits for the copies to catch up to the fence, and a failback
/// for the home pool to apply it: they are a round trip behind when the streams are steady.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(30);

/// How long a failback waits for the home pool's groups to catch up (a restore of its state,
/// then the stream) before it pauses writes; past it the failback is refused, nothing changed.
const FAILBACK_CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

/// A failback pauses the owner's writes only once every stream to the home pool lags at most
/// this many entries: the final catch-up is then a few milliseconds of work.
const FAILBACK_LAG_ENTRIES_MAX: u64 = 64;

/// How long a CMS failback waits for this node's replica of the CMS to apply what its leader
/// has (a follower is a heartbeat or two behind): a command run again right after another
/// node finished it then sees the CMS home, not a fenced CMS it still holds.
const OWNER_SETTLE_WAIT: Duration = Duration::from_secs(2);

/// Pause between looks while waiting for a catch-up.
const POLL: Duration = Duration::from_millis(20);

/// How long one step keeps trying against groups that elect or miss a quorum ack meanwhile
/// (a busy or recovering pool): an operation should not stop halfway for a hiccup.
const STEP_RETRY_DEADLINE: Duration = Duration::from_secs(30);

/// How long an operation waits for each of the partner's nodes to answer the ping that tells
/// whether the partner answers (all asked at once).
const PARTNER_PING_TIMEOUT: Duration = Duration::from_millis(800);

/// Which group reached an epoch last, and after how long: a step that waits on every group
/// names its straggler, so an operator sees where a slow step spent its time.
struct Slowest(Option<(GroupKey, Duration)>);

impl std::fmt::Display for Slowest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((group, after)) => {
                write!(f, " (last: {group}, after {:.3} s)", after.as_secs_f64())
            }
            None => Ok(()),
        }
    }
}

/// One step of an operation and how long it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What was done.
    pub what: String,
    /// How long it took, in milliseconds.
    pub millis: u64,
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationReport {
    /// `failover`, `disaster failover`, `failback` or `cms failover`.
    pub operation: String,
    /// The home pool whose users moved (the CMS's pool for a CMS failover).
    pub pool: PoolId,
    /// Who owns them now.
    pub owner: PoolId,
    /// At which epoch.
    pub epoch: u64,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// For a failback, how long the owner's writes for the users were paused, in milliseconds.
    pub paused_ms: Option<u64>,
    /// In all, in milliseconds.
    pub total_ms: u64,
}

/// Why an operation did not happen, or stopped halfway.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// It would be unsafe or makes no sense now; nothing was changed.
    #[error("refused: {0}")]
    Refused(String),
    /// It began and could not finish; the message says what state it left.
    #[error("failed: {0}")]
    Failed(String),
}

/// Why a pool refused to take the CMS back ([`PairRequest::TakeCms`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TakeCmsError {
    /// Not safe or not this pool's to do; nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The CMS group could not be reached or written.
    #[error(transparent)]
    Pool(#[from] PoolError),
}

impl From<PoolError> for OperationError {
    fn from(error: PoolError) -> OperationError {
        OperationError::Failed(error.to_string())
    }
}

/// Times the steps of one operation.
struct Steps {
    started: Instant,
    last: Instant,
    done: Vec<Step>,
}

impl Steps {
    fn new() -> Steps {
        let now = Instant::now();
        Steps {
            started: now,
            last: now,
            done: Vec::new(),
        }
    }

    fn mark(&mut self, what: impl Into<String>) {
        let now = Instant::now();
        let what = what.into();
        let millis = millis(now - self.last);
        info!(step = %what, millis, "operation step done");
        self.done.push(Step { what, millis });
        self.last = now;
    }
}

/// The refusal of a CMS operation on a pool that takes no part in the CMS.
fn no_cms() -> OperationError {
    OperationError::Refused("this pool holds neither the CMS nor its copy".into())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl<N: Network> PoolNode<N> {
    /// Fails `home`'s users over to this pool, its partner: planned (`disaster = false`, the
    /// home pool must answer; nothing is lost) or after a disaster (it must not answer; the copies
    /// serve what they have).
    pub async fn fail_over(
        &self,
        home: PoolId,
        disaster: bool,
    ) -> Result<OperationReport, OperationError> {
        let own = self.options.pool;
        self.check_partner(home)?;
        let current = self.owner_of(home);
        if current.owner != home {
            return Err(OperationError::Refused(format!(
                "pool {home}'s users are owned by pool {} already (epoch {})",
                current.owner, current.epoch
            )));
        }
        let answers = self.partner_answers().await;
        match (disaster, answers) {
            (true, true) => {
                return Err(OperationError::Refused(format!(
                    "pool {home} answers: a disaster failover would serve its users from what \
                     the copies have while it still takes writes; use the planned failover \
                     (without --disaster), which loses nothing"
                )))
            }
            (false, false) => {
                return Err(OperationError::Refused(format!(
                    "pool {home} does not answer: a planned failover needs it to stop its writes \
                     and hand over; if it is lost, use --disaster (the loss is the replication \
                     lag at the moment it was lost)"
                )))
            }
            _ => {}
        }
        self.check_cms_writable(home)?;
        let kind = if disaster {
            OperationKind::DisasterFailover
        } else {
            OperationKind::Failover
        };
        let mut steps = Steps::new();
        self.begin_operation(home, kind, current).await?;
        steps.mark(format!("recorded the {kind} of pool {home} in the CMS"));
        let epoch = current.epoch + 1;
        let result = async {
            if !disaster {
                self.fence_partner_groups(home, epoch).await?;
                steps.mark(format!(
                    "fenced pool {home}'s routing groups at epoch {epoch} (it takes no more writes)"
                ));
                let slowest = self.await_copies_at(home, epoch, CATCH_UP_DEADLINE).await?;
                steps.mark(format!(
                    "this pool's copies caught up to the fence (nothing lost){slowest}"
                ));
            }
            self.set_ownership(home, Ownership { owner: own, epoch })
                .await?;
            steps.mark(format!(
                "the CMS records pool {own} as the owner at epoch {epoch}"
            ));
            self.raise_local_copies(home, epoch).await?;
            steps.mark(format!(
                "promoted this pool's copies of pool {home}'s groups (epoch {epoch})"
            ));
            Ok::<(), OperationError>(())
        }
        .await;
        self.finish(home, kind, result, steps, own, epoch, None)
            .await
    }

    /// Gives `home`'s users back to it: this pool owns them after a failover, and `home`
    /// answers and has caught up.
    pub async fn fail_back(&self, home: PoolId) -> Result<OperationReport, OperationError> {
        let own = self.options.pool;
        self.check_partner(home)?;
        let current = self.owner_of(home);
        if current.owner != own {
            return Err(OperationError::Refused(format!(
                "pool {home}'s users are owned by pool {} (epoch {}), not by this pool: nothing \
                 to fail back",
                current.owner, current.epoch
            )));
        }
        if !self.partner_answers().await {
            return Err(OperationError::Refused(format!(
                "pool {home} does not answer: it cannot take its users back now"
            )));
        }
        self.check_cms_writable(home)?;
        let mut steps = Steps::new();
        self.begin_operation(home, OperationKind::Failback, current)
            .await?;
        steps.mark(format!("recorded the failback of pool {home} in the CMS"));
        let sources: Vec<GroupKey> = self
            .routing_groups_of(home)
            .into_iter()
            .map(|group| self.local_key(group))
            .collect();
        let behind = self
            .streams_behind(&sources, FAILBACK_LAG_ENTRIES_MAX)
            .await;
        if !behind.is_empty() {
            let _ = self
                .cms_command(CmsCommand::EndOperationOf {
                    pool: home,
                    kind: OperationKind::Failback,
                })
                .await;
            return Err(OperationError::Refused(format!(
                "pool {home} is behind after {FAILBACK_CATCH_UP_DEADLINE:?}: {}; nothing was \
                 changed; wait until `roster backup status` shows its streams steady",
                behind.join("; ")
            )));
        }
        steps.mark(format!(
            "pool {home} caught up with this pool's groups of its users"
        ));
        let epoch = current.epoch + 1;
        let mut paused_ms = None;
        let result = async {
            let paused = Instant::now();
            self.raise_local_copies(home, epoch).await?;
            steps.mark(format!(
                "paused this pool's writes for pool {home}'s users (its groups fenced at epoch {epoch})"
            ));
            let slowest = self
                .await_partner_groups_at(home, epoch, CATCH_UP_DEADLINE)
                .await?;
            steps.mark(format!(
                "pool {home}'s groups applied everything up to the fence{slowest}"
            ));
            self.set_ownership(home, Ownership { owner: home, epoch }).await?;
            paused_ms = Some(millis(paused.elapsed()));
            steps.mark(format!("the CMS records pool {home} as the owner at epoch {epoch}"));
            Ok::<(), OperationError>(())
        }
        .await;
        self.finish(
            home,
            OperationKind::Failback,
            result,
            steps,
            home,
            epoch,
            paused_ms,
        )
        .await
    }

    /// Promotes this pool's copy of the CMS when the CMS's pool (its partner) is lost: the copy
    /// becomes the CMS.
    pub async fn fail_over_cms(&self) -> Result<OperationReport, OperationError> {
        let own = self.options.pool;
        let (Some(key), Some(current)) = (self.options.cms_key(), self.cms_owner()) else {
            return Err(no_cms());
        };
        if current.owner == own {
            return Err(OperationError::Refused(format!(
                "this pool holds the CMS already (epoch {})",
                current.epoch
            )));
        }
        if self.partner_answers().await {
            return Err(OperationError::Refused(format!(
                "pool {}, which holds the CMS, answers: a CMS failover is for a lost pool",
                current.owner
            )));
        }
        let mut steps = Steps::new();
        // Above the copy's own epoch too: a CMS failback that stopped after fencing its CMS
        // leaves the group above the owner this pool records.
        let fenced = self.peek_retrying(key).await?.epoch;
        let epoch = current.epoch.max(fenced) + 1;
        self.fence_cms(key, epoch).await?;
        steps.mark(format!(
            "fenced this pool's copy of the CMS at epoch {epoch} (the lost pool's stream is refused)"
        ));
        self.record_cms_owner(key, Ownership { owner: own, epoch })
            .await?;
        steps.mark(format!(
            "the CMS (here now) records pool {own} as its owner at epoch {epoch}"
        ));
        let total_ms = millis(steps.started.elapsed());
        Ok(OperationReport {
            operation: "cms failover".into(),
            pool: key.pool,
            owner: own,
            epoch,
            steps: steps.done,
            paused_ms: None,
            total_ms,
        })
    }

    /// Brings the CMS home after a CMS failover (`roster cms failback`): this pool holds it
    /// (its copy was promoted), the CMS's home pool answers again, and its old replica, a copy
    /// of this pool's CMS since it returned, has caught up. CMS writes pause only while the
    /// home pool applies the last entries; nothing is lost.
    pub async fn fail_back_cms(&self) -> Result<OperationReport, OperationError> {
        let own = self.options.pool;
        let (Some(key), Some(home)) = (self.options.cms_key(), self.options.cms) else {
            return Err(no_cms());
        };
        let Some(current) = self.settled_cms_owner(key).await else {
            return Err(no_cms());
        };
        if current.owner == home {
            return self.end_stopped_cms_failback(home, current).await;
        }
        if current.owner != own {
            return Err(OperationError::Refused(format!(
                "the CMS is held by pool {} (epoch {}), not by this pool: run the command on a \
                 node of pool {}",
                current.owner, current.epoch, current.owner
            )));
        }
        let Some(copy) = counterpart(key) else {
            return Err(OperationError::Refused(format!(
                "{key} has no copy in pool {home}"
            )));
        };
        if !self.partner_answers().await {
            return Err(OperationError::Refused(format!(
                "pool {home} does not answer: the CMS cannot go home now; nothing was changed"
            )));
        }
        let mut steps = Steps::new();
        let behind = self.streams_behind(&[key], FAILBACK_LAG_ENTRIES_MAX).await;
        if !behind.is_empty() {
            return Err(OperationError::Refused(format!(
                "pool {home}'s copy of the CMS is behind after {FAILBACK_CATCH_UP_DEADLINE:?}: \
                 {}; nothing was changed; wait until `roster backup status` shows it steady",
                behind.join("; ")
            )));
        }
        steps.mark(format!(
            "pool {home}'s copy of the CMS caught up with the CMS here"
        ));
        // A failback that stopped after handing the CMS over (its outcome unknown) left the
        // CMS here fenced, with its record: running it again goes on from there.
        let fenced = self.peek_retrying(key).await?.epoch;
        if fenced > current.epoch {
            steps.mark(format!(
                "went on with the CMS failback that stopped after its fence at epoch {fenced}"
            ));
        } else {
            self.begin_operation(home, OperationKind::CmsFailback, current)
                .await?;
            steps.mark(
                "recorded the CMS failback in the CMS (no pool failover or failback can begin)",
            );
        }
        let epoch = (current.epoch + 1).max(fenced);
        let ownership = Ownership { owner: home, epoch };
        let paused = Instant::now();
        let mut handing = false;
        let result = async {
            self.fence_cms(key, epoch).await?;
            steps.mark(format!(
                "paused CMS writes (the CMS here fenced at epoch {epoch})"
            ));
            self.await_partner_at(vec![copy], epoch, CATCH_UP_DEADLINE)
                .await
                .map_err(|group| {
                    OperationError::Failed(format!(
                        "{group} in pool {home} did not reach epoch {epoch} within \
                     {CATCH_UP_DEADLINE:?}"
                    ))
                })?;
            steps.mark(format!(
                "pool {home}'s copy applied everything up to the fence"
            ));
            handing = true;
            self.hand_cms_to(home, copy, ownership).await?;
            let paused_ms = millis(paused.elapsed());
            steps.mark(format!(
                "the CMS (home again) records pool {home} as its owner at epoch {epoch}"
            ));
            self.record_cms_owner(key, ownership).await?;
            steps.mark(format!(
                "this pool's group records it too, and follows pool {home}'s CMS again"
            ));
            Ok::<u64, OperationError>(paused_ms)
        }
        .await;
        match result {
            Ok(paused_ms) => {
                match self
                    .cms_command(CmsCommand::EndOperationOf {
                        pool: home,
                        kind: OperationKind::CmsFailback,
                    })
                    .await
                {
                    Ok(
                        CmsOutcome::OperationEnded
                        | CmsOutcome::Refused(CmsRefusal::NoOperation(_)),
                    ) => {}
                    other => {
                        return Err(OperationError::Failed(format!(
                            "the CMS is home on pool {home} at epoch {epoch}, but its record of \
                             this failback was not ended ({other:?}): run `roster cms failback` \
                             again to end it"
                        )))
                    }
                }
                steps.mark("ended the CMS failback's record in the CMS");
                Ok(OperationReport {
                    operation: "cms failback".into(),
                    pool: home,
                    owner: home,
                    epoch,
                    total_ms: millis(steps.started.elapsed()),
                    steps: steps.done,
                    paused_ms: Some(paused_ms),
                })
            }
            Err(error) => Err(self
                .cms_failback_stopped(key, home, epoch, handing, error, steps)
                .await),
        }
    }

    /// `roster cms failback` when the CMS is home already: nothing to do, unless a failback
    /// stopped after handing the CMS over (its answer lost) left its record, which blocks every
    /// other operation; that record is ended.
    async fn end_stopped_cms_failback(
        &self,
        home: PoolId,
        current: Ownership,
    ) -> Result<OperationReport, OperationError> {
        let nothing = || {
            OperationError::Refused(format!(
                "the CMS is home on pool {home} already (epoch {}): nothing to fail back",
                current.epoch
            ))
        };
        let stopped = self
            .cms_state()
            .and_then(|state| {
                state
                    .read(|state| {
                        state
                            .cms_state()
                            .and_then(|cms| cms.operation(home).cloned())
                    })
                    .ok()
                    .flatten()
            })
            .filter(|operation| operation.kind == OperationKind::CmsFailback);
        if stopped.is_none() {
            return Err(nothing());
        }
        let mut steps = Steps::new();
        match self
            .cms_command(CmsCommand::EndOperationOf {
                pool: home,
                kind: OperationKind::CmsFailback,
            })
            .await
        {
            Ok(CmsOutcome::OperationEnded) => {}
            // This node's replica had not heard that the failback ended it.
            Ok(CmsOutcome::Refused(CmsRefusal::NoOperation(_))) => return Err(nothing()),
            other => {
                return Err(OperationError::Failed(format!(
                    "the CMS is home on pool {home} (epoch {}), but the record of the failback \
                     that brought it there was not ended: {other:?}",
                    current.epoch
                )))
            }
        }
        steps.mark(format!(
            "the CMS was home on pool {home} already (epoch {}): ended the record of the failback \
             that stopped after handing it over",
            current.epoch
        ));
        Ok(OperationReport {
            operation: "cms failback".into(),
            pool: home,
            owner: home,
            epoch: current.epoch,
            total_ms: millis(steps.started.elapsed()),
            steps: steps.done,
            paused_ms: None,
        })
    }

    /// The CMS's owner as this node knows it, once its replica of the CMS group `key` has
    /// caught up with a fence its leader applied (a failback that just finished through
    /// another node), or after [`OWNER_SETTLE_WAIT`] (a failback that stopped after its fence:
    /// running it again goes on from there).
    async fn settled_cms_owner(&self, key: GroupKey) -> Option<Ownership> {
        let deadline = tokio::time::Instant::now() + OWNER_SETTLE_WAIT;
        let fenced = self.peek(key).await.map_or(0, |peek| peek.epoch);
        loop {
            let current = self.cms_owner()?;
            if current.epoch >= fenced || tokio::time::Instant::now() >= deadline {
                return Some(current);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A CMS failback that stopped: before the home pool was asked to take the CMS, this pool
    /// takes it again at the fence's epoch (its writes resume; the home pool never owned it at
    /// that epoch); after, the outcome of the ask is unknown, and writes stay paused until the
    /// command runs again.
    async fn cms_failback_stopped(
        &self,
        key: GroupKey,
        home: PoolId,
        epoch: u64,
        handing: bool,
        error: OperationError,
        steps: Steps,
    ) -> OperationError {
        let own = self.options.pool;
        warn!(%error, "cms failback stopped");
        let done: Vec<String> = steps.done.iter().map(|step| step.what.clone()).collect();
        let state = if handing {
            "CMS writes stay paused: run `roster cms failback` again (the home pool may hold the \
             CMS already)"
                .to_string()
        } else {
            match self
                .record_cms_owner(key, Ownership { owner: own, epoch })
                .await
            {
                Ok(()) => {
                    let _ = self
                        .cms_command(CmsCommand::EndOperationOf {
                            pool: home,
                            kind: OperationKind::CmsFailback,
                        })
                        .await;
                    format!("pool {own} holds the CMS still, at epoch {epoch}; its writes resumed")
                }
                Err(resume) => {
                    format!("CMS writes stay paused ({resume}): run `roster cms failback` again")
                }
            }
        };
        OperationError::Failed(format!(
            "{error}; done before it stopped: [{}]; {state}",
            done.join("; ")
        ))
    }

    /// Raises this pool's CMS group `key` to `epoch`: writes at the epoch before are refused.
    async fn fence_cms(&self, key: GroupKey, epoch: u64) -> Result<(), OperationError> {
        match self
            .write_group(key, GroupRequest::set_epoch(epoch, 0))
            .await?
        {
            GroupResponse::EpochSet { .. } => Ok(()),
            other => Err(OperationError::Failed(format!(
                "the CMS here did not take the fence at epoch {epoch}: {other:?}"
            ))),
        }
    }

    /// Records `ownership` as the CMS's owner in this pool's CMS group `key`.
    async fn record_cms_owner(
        &self,
        key: GroupKey,
        ownership: Ownership,
    ) -> Result<(), OperationError> {
        let command = CmsCommand::SetCmsOwner(ownership);
        match self
            .write_group(key, GroupRequest::cms(ownership.epoch, 0, command))
            .await?
        {
            GroupResponse::Cms(CmsOutcome::OwnershipSet { .. }) => Ok(()),
            other => Err(OperationError::Failed(format!(
                "{key} did not record pool {} as the CMS's owner at epoch {}: {other:?}",
                ownership.owner, ownership.epoch
            ))),
        }
    }

    /// Asks the CMS's home pool (the partner) to record itself as its owner in `copy`, its
    /// replica, retried while its group elects.
    async fn hand_cms_to(
        &self,
        home: PoolId,
        copy: GroupKey,
        ownership: Ownership,
    ) -> Result<(), OperationError> {
        let request = PairRequest::TakeCms { ownership };
        self.call_partner_until(copy, &request, |answer| {
            matches!(
                answer,
                PairResponse::Applied(Ok(GroupResponse::Cms(CmsOutcome::OwnershipSet { .. })))
            )
        })
        .await
        .map_err(|why| OperationError::Failed(format!("pool {home} did not take the CMS: {why}")))
    }

    /// Sends `request` about `about` to the partner until `done` accepts its answer, retrying
    /// while its groups elect or miss a quorum ack (an operation should not stop halfway for a
    /// hiccup); past [`STEP_RETRY_DEADLINE`], the last answer or error.
    async fn call_partner_until(
        &self,
        about: GroupKey,
        request: &PairRequest,
        done: impl Fn(&PairResponse) -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + STEP_RETRY_DEADLINE;
        loop {
            let last = tokio::time::Instant::now() >= deadline;
            match self
                .call_partner(about, request, self.options.request_timeout)
                .await
            {
                Ok(answer) if done(&answer) => return Ok(()),
                Ok(other) if last => return Err(format!("{other:?}")),
                Err(error) if last => return Err(error.to_string()),
                _ => tokio::time::sleep(POLL * 5).await,
            }
        }
    }

    /// Serves [`PairRequest::TakeCms`] from pool `from`: this pool is the CMS's home, `from`
    /// holds the CMS now, and this pool's copy has applied `from`'s fence at
    /// `ownership.epoch` (so it holds everything `from` acknowledged): record this pool as
    /// the owner there. Asked again after it was done, it records the same again (a no-op).
    pub(crate) async fn take_cms(
        &self,
        from: PoolId,
        ownership: Ownership,
    ) -> Result<GroupResponse, TakeCmsError> {
        let own = self.options.pool;
        let key = match self.options.cms_key() {
            Some(key) if key.is_home() && key.pool == own && ownership.owner == own => key,
            _ => {
                return Err(TakeCmsError::Refused(
                    "the CMS's home is not this pool".into(),
                ))
            }
        };
        match self.cms_owner() {
            Some(current) if current == ownership || current.owner == from => {}
            current => {
                return Err(TakeCmsError::Refused(format!(
                    "the CMS is held by {}, not by pool {from}",
                    current.map_or_else(
                        || "no pool".to_string(),
                        |c| format!("pool {} at epoch {}", c.owner, c.epoch)
                    )
                )))
            }
        }
        let at = self.peek(key).await?.epoch;
        if at < ownership.epoch {
            return Err(TakeCmsError::Refused(format!(
                "this pool's copy of the CMS is at epoch {at}, below the fence at {}: it has \
                 not applied everything yet",
                ownership.epoch
            )));
        }
        let request = GroupRequest::cms(ownership.epoch, 0, CmsCommand::SetCmsOwner(ownership));
        match self.routed(key, RouteOperation::Write(request)).await? {
            Answer::Written(response) => {
                info!(epoch = ownership.epoch, from, "took the CMS back");
                Ok(response)
            }
            _ => Err(TakeCmsError::Pool(PoolError::Internal(format!(
                "unexpected answer from {key}"
            )))),
        }
    }

    /// `home` must be this pool's partner.
    fn check_partner(&self, home: PoolId) -> Result<(), OperationError> {
        match &self.options.partner {
            Some(partner) if partner.pool == home => Ok(()),
            Some(partner) => Err(OperationError::Refused(format!(
                "pool {home} is not this pool's partner (pool {}): run the command on a node of \
                 pool {home}'s partner",
                partner.pool
            ))),
            None => Err(OperationError::Refused(
                "this pool has no partner: there is nothing to fail over to".into(),
            )),
        }
    }

    /// The CMS must be held by a pool that can take writes now: this one, or the partner when
    /// it answers (a pool failover of the CMS's pool needs a CMS failover first).
    fn check_cms_writable(&self, home: PoolId) -> Result<(), OperationError> {
        let Some(cms) = self.cms_owner() else {
            return Err(OperationError::Refused(
                "this pool takes no part in the CMS: failover needs it".into(),
            ));
        };
        if cms.owner == self.options.pool || self.partner_silent_for().is_none() {
            return Ok(());
        }
        Err(OperationError::Refused(format!(
            "the CMS lives on pool {}, which does not answer: run `roster cms failover` first \
             (a pool failover of the CMS's pool needs it, as in Lync)",
            if cms.owner == home { home } else { cms.owner }
        )))
    }

    /// Whether the partner answers a ping now: every node asked afresh at once, so a lost
    /// pool costs one [`PARTNER_PING_TIMEOUT`], not one per node.
    async fn partner_answers(&self) -> bool {
        let Some(partner) = self.options.partner.clone() else {
            return false;
        };
        if partner.nodes.is_empty() {
            return false;
        }
        let pings = partner.nodes.into_iter().map(|node| {
            Box::pin(async move {
                match self
                    .ask_partner_node_within(node, &PairRequest::Ping, PARTNER_PING_TIMEOUT)
                    .await
                {
                    Ok(PairResponse::Pong(_)) => Ok(()),
                    _ => Err(()),
                }
            })
        });
        futures_util::future::select_ok(pings).await.is_ok()
    }

    async fn begin_operation(
        &self,
        home: PoolId,
        kind: OperationKind,
        from: Ownership,
    ) -> Result<(), OperationError> {
        let operation = Operation {
            kind,
            by: self.options.pool,
            from,
            started_ms: (self.clock)(),
        };
        match self
            .cms_command(CmsCommand::BeginOperation {
                pool: home,
                operation,
            })
            .await
        {
            Ok(CmsOutcome::OperationBegun) => Ok(()),
            Ok(CmsOutcome::Refused(refusal)) => Err(OperationError::Refused(refusal.to_string())),
            Ok(other) => Err(OperationError::Failed(format!(
                "unexpected CMS answer {other:?}"
            ))),
            Err(error) => Err(OperationError::Refused(format!(
                "the CMS cannot record the operation: {error}"
            ))),
        }
    }

    /// Writes `command` to the CMS, retried while its group elects or has just lost a quorum
    /// ack (a busy moment): an operation should not be refused for a hiccup.
    async fn cms_command(&self, command: CmsCommand) -> Result<CmsOutcome, PoolError> {
        let deadline = tokio::time::Instant::now() + STEP_RETRY_DEADLINE;
        loop {
            let last = tokio::time::Instant::now() >= deadline;
            match self.cms_write(command.clone()).await {
                Err(PoolError::Unavailable { .. }) if !last => tokio::time::sleep(POLL * 5).await,
                other => return other,
            }
        }
    }

    async fn set_ownership(
        &self,
        home: PoolId,
        ownership: Ownership,
    ) -> Result<(), OperationError> {
        match self
            .cms_command(CmsCommand::SetOwnership {
                pool: home,
                ownership,
            })
            .await?
        {
            CmsOutcome::OwnershipSet { .. } => Ok(()),
            other => Err(OperationError::Failed(format!(
                "the CMS did not record the new owner: {other:?}"
            ))),
        }
    }

    /// Ends an operation: on success, its report; on failure, the operation is ended in the CMS
    /// (so that it can be run again) and the error says where it stopped.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        home: PoolId,
        kind: OperationKind,
        result: Result<(), OperationError>,
        steps: Steps,
        owner: PoolId,
        epoch: u64,
        paused_ms: Option<u64>,
    ) -> Result<OperationReport, OperationError> {
        match result {
            Ok(()) => Ok(OperationReport {
                operation: kind.to_string(),
                pool: home,
                owner,
                epoch,
                total_ms: millis(steps.started.elapsed()),
                steps: steps.done,
                paused_ms,
            }),
            Err(error) => {
                warn!(%error, pool = home, "operation stopped; ending it in the CMS");
                let done: Vec<String> = steps.done.iter().map(|step| step.what.clone()).collect();
                let _ = self
                    .cms_command(CmsCommand::EndOperationOf { pool: home, kind })
                    .await;
                Err(OperationError::Failed(format!(
                    "{error}; done before it stopped: [{}]; run the command again",
                    done.join("; ")
                )))
            }
        }
    }

    /// The routing groups of pool `home`, in their home pool's terms.
    fn routing_groups_of(&self, home: PoolId) -> Vec<GroupKey> {
        (0..self.groups_of(home).unwrap_or(0))
            .map(|group| GroupKey::routing(home, group))
            .collect()
    }

    /// Raises the epoch of every routing group of the partner (`home`) to `epoch`, there, all
    /// at once.
    async fn fence_partner_groups(&self, home: PoolId, epoch: u64) -> Result<(), OperationError> {
        let fences = self
            .routing_groups_of(home)
            .into_iter()
            .map(|group| self.fence_partner_group(home, group, epoch));
        futures_util::future::try_join_all(fences).await.map(|_| ())
    }

    async fn fence_partner_group(
        &self,
        home: PoolId,
        group: GroupKey,
        epoch: u64,
    ) -> Result<(), OperationError> {
        let request = PairRequest::Fence { group, epoch };
        self.call_partner_until(group, &request, |answer| {
            matches!(
                answer,
                PairResponse::Applied(Ok(
                    GroupResponse::EpochSet { .. } | GroupResponse::StaleEpoch { .. }
                ))
            )
        })
        .await
        .map_err(|why| OperationError::Failed(format!("pool {home} did not fence {group}: {why}")))
    }

    /// Raises this pool's groups holding `home`'s users (its copies, or its own groups) to
    /// `epoch`, all at once.
    async fn raise_local_copies(&self, home: PoolId, epoch: u64) -> Result<(), OperationError> {
        let raises = self.routing_groups_of(home).into_iter().map(|group| {
            let local = self.local_key(group);
            self.write_group(local, GroupRequest::set_epoch(epoch, 0))
        });
        futures_util::future::try_join_all(raises).await.map(|_| ())
    }

    /// Proposes `request` on this pool's group `key` (through its leader), retrying while it
    /// elects.
    async fn write_group(
        &self,
        key: GroupKey,
        request: GroupRequest,
    ) -> Result<GroupResponse, OperationError> {
        let deadline = tokio::time::Instant::now() + STEP_RETRY_DEADLINE;
        loop {
            let last = tokio::time::Instant::now() >= deadline;
            match self
                .routed(key, RouteOperation::Write(request.clone()))
                .await
            {
                Ok(Answer::Written(response)) => return Ok(response),
                Ok(_) => {
                    return Err(OperationError::Failed(format!(
                        "unexpected answer from {key}"
                    )))
                }
                Err(error) if last => return Err(error.into()),
                Err(_) => tokio::time::sleep(POLL * 5).await,
            }
        }
    }

    /// The epoch and position of this pool's group `key` (through its leader), retrying while
    /// it elects or its leader misses a quorum ack.
    async fn peek_retrying(&self, key: GroupKey) -> Result<crate::protocol::Peek, OperationError> {
        let deadline = tokio::time::Instant::now() + STEP_RETRY_DEADLINE;
        loop {
            match self.peek(key).await {
                Ok(peek) => return Ok(peek),
                Err(error) if tokio::time::Instant::now() >= deadline => return Err(error.into()),
                Err(_) => tokio::time::sleep(POLL * 5).await,
            }
        }
    }

    /// Waits until every copy of `home`'s groups in this pool is at `epoch` or above: it has
    /// applied the home pool's fence, and so everything before it.
    async fn await_copies_at(
        &self,
        home: PoolId,
        epoch: u64,
        within: Duration,
    ) -> Result<Slowest, OperationError> {
        self.await_epoch(
            self.routing_groups_of(home),
            epoch,
            within,
            |group| async move { self.peek(self.local_key(group)).await.ok() },
        )
        .await
        .map_err(|group| {
            OperationError::Failed(format!(
                "{} did not reach epoch {epoch} within {within:?} (is the backup stream from \
                 pool {home} flowing? see roster backup status)",
                self.local_key(group)
            ))
        })
    }

    /// Waits until every routing group of `home` (the partner) is at `epoch` or above there.
    async fn await_partner_groups_at(
        &self,
        home: PoolId,
        epoch: u64,
        within: Duration,
    ) -> Result<Slowest, OperationError> {
        self.await_partner_at(self.routing_groups_of(home), epoch, within)
            .await
            .map_err(|group| {
                OperationError::Failed(format!(
                    "{group} in pool {home} did not reach epoch {epoch} within {within:?}: this \
                 pool's writes for its users stay paused until a failback completes or a \
                 failover is run again"
                ))
            })
    }

    /// Waits until every group of `groups` in the partner pool is at `epoch` or above there
    /// (asked of the partner, as `PairRequest::Position`).
    async fn await_partner_at(
        &self,
        groups: Vec<GroupKey>,
        epoch: u64,
        within: Duration,
    ) -> Result<Slowest, GroupKey> {
        let timeout = self.options.request_timeout;
        self.await_epoch(groups, epoch, within, |group| async move {
            self.partner_position(group, timeout).await.ok()
        })
        .await
    }

    /// Waits, for every group of `groups` at once, until `position` shows it at `epoch` or
    /// above; the first group still below it at the deadline is the error.
    async fn await_epoch<F, Fut>(
        &self,
        groups: Vec<GroupKey>,
        epoch: u64,
        within: Duration,
        position: F,
    ) -> Result<Slowest, GroupKey>
    where
        F: Fn(GroupKey) -> Fut,
        Fut: std::future::Future<Output = Option<crate::protocol::Peek>>,
    {
        let started = tokio::time::Instant::now();
        let deadline = started + within;
        let waits = groups.into_iter().map(|group| {
            let position = &position;
            async move {
                loop {
                    match position(group).await {
                        Some(peek) if peek.epoch >= epoch => return Ok((group, started.elapsed())),
                        _ if tokio::time::Instant::now() >= deadline => return Err(group),
                        _ => tokio::time::sleep(POLL).await,
                    }
                }
            }
        });
        let reached = futures_util::future::try_join_all(waits).await?;
        Ok(Slowest(reached.into_iter().max_by_key(|(_, after)| *after)))
    }

    /// The streams from this pool's groups `sources` to their copies in the partner pool that
    /// lag more than `entries_max` (or are not shipped at all), named; waits a while for them
    /// to catch up first.
    async fn streams_behind(&self, sources: &[GroupKey], entries_max: u64) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + FAILBACK_CATCH_UP_DEADLINE;
        loop {
            let report = self.backup_report().await;
            let mut behind = Vec::new();
            for group in sources {
                let source = group.to_string();
                match report.streams.iter().find(|stream| stream.source == source) {
                    Some(stream)
                        if stream.partner_index.is_some() && stream.lag_entries <= entries_max => {}
                    Some(stream) => behind.push(format!(
                        "{source} lags {} entries ({:?})",
                        stream.lag_entries, stream.state
                    )),
                    None => behind.push(format!("{source} is not shipped")),
                }
            }
            if behind.is_empty() || tokio::time::Instant::now() >= deadline {
                return behind;
            }
            tokio::time::sleep(POLL * 10).await;
        }
    }
}
