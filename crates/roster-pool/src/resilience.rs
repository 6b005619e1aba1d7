//! The backup registrar (resiliency mode): while the partner pool has not answered a ping for
//! [`PoolOptions::detection_interval`](crate::PoolOptions) and still owns its users (no failover),
//! this pool answers their REGISTERs and lookups from its backup copies, and brings what it
//! acknowledged home when the partner answers again.
//!
//! - Writes: [`PoolNode::write_home`] for a partner's user in resiliency mode proposes a
//!   `ResilientCommand::Register` on the user's copy group (Raft-replicated here, so it
//!   survives the loss of a node of this pool). It changes the copy's overlay, never its
//!   registry: the copy stays a prefix of its source's history and keeps applying the stream.
//!   The answer is the registrar's usual one; the write is logged `resilient` and counted in
//!   [`RESILIENCY_WRITES`].
//! - Reads: [`PoolNode::read_home`] reads the copy, whose lookups merge the overlay over the
//!   registry.
//! - Directory changes for the partner's users are refused ([`PoolNode::cms_write`]).
//! - Homecoming: once the partner answers again and owns its users, the leader of each copy
//!   with an overlay (started beside the shippers, [`PoolNode::ship_forever`]) sends each AOR
//!   home as a `PairRequest::Homecoming` (a merge there: newest per binding wins), then clears
//!   what was sent with a `ResilientCommand::Clear` on the copy, each AOR at the version sent.
//!   Meanwhile the partner's users are routed to the partner again. A merge is idempotent, so
//!   an AOR sent twice (a lost answer, a leader change before the clear) changes nothing more.
//! - Failover: when this pool takes the partner's users over, the promotion (an epoch raised
//!   on each copy) folds the copy's overlay into its own registry in the same apply step
//!   (`GroupState`'s fold: a merge per AOR); the promoted group's state, folded, is what the
//!   failback ships to the partner. The task here then finds nothing left to fold.

use std::time::Duration;

use roster_cms::CmsCommand;
use roster_net::Network;
use roster_raft::overlay::{ResilientCommand, SentAor, CLEAR_AORS_MAX};
use roster_raft::{GroupKey, GroupRequest, GroupResponse};
use roster_registrar::{Command, MergeCommand};
use roster_topology::PoolId;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::node::{PoolError, PoolNode};
use crate::pair::{PairRequest, PairResponse};
use crate::route::{Answer, Operation};

/// Metric: REGISTERs for a partner's users acknowledged in resiliency mode, by home pool.
pub const RESILIENCY_WRITES: &str = "roster_resiliency_writes_total";

/// Metric: 1 while this node serves the partner's users in resiliency mode, else 0, by home
/// pool.
pub const RESILIENCY_MODE: &str = "roster_resiliency_mode";

/// Metric: AORs sent home (merged at the partner) after resiliency mode, by home pool.
pub const RESILIENCY_HOMECOMING_AORS: &str = "roster_resiliency_homecoming_aors_total";

/// How long one AOR's merge may take at the partner: a commit there plus a WAN round trip.
const HOMECOMING_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after a homecoming round that could not send everything (the partner slow again, or
/// a leader changing): the next round tries again.
const HOMECOMING_RETRY: Duration = Duration::from_millis(500);

impl<N: Network> PoolNode<N> {
    /// Whether this node serves the users of `home` (its partner pool) as their backup
    /// registrar now: the partner has not answered for the detection interval, and still owns
    /// its users as far as this node knows (after a failover this pool owns them outright),
    /// and this node has not fenced itself (with a witness: it hears it, see `witness`).
    pub fn in_resiliency_mode(&self, home: PoolId) -> bool {
        let is_partner = self
            .options
            .partner
            .as_ref()
            .is_some_and(|partner| partner.pool == home);
        is_partner
            && self.owner_of(home).owner == home
            && self
                .partner_silent_for()
                .is_some_and(|silent| silent >= self.options.detection_interval)
            && !self.self_fenced()
    }

    /// Logs and reports (gauge [`RESILIENCY_MODE`]) when this node enters or leaves
    /// resiliency mode for `home`; `serving` is what it reported last, updated.
    pub(crate) fn report_resiliency_mode(&self, home: PoolId, serving: &mut bool) {
        let now = self.in_resiliency_mode(home);
        if now == *serving {
            return;
        }
        *serving = now;
        metrics::gauge!(RESILIENCY_MODE, "home" => home.to_string()).set(if now {
            1.0
        } else {
            0.0
        });
        if now {
            let silent_s = self
                .partner_silent_for()
                .map_or(0, |silent| silent.as_secs());
            warn!(
                partner = home,
                silent_s,
                "resiliency mode: serving the partner pool's users as their backup registrar"
            );
        } else {
            info!(partner = home, "resiliency mode over");
        }
    }

    /// The refusal of a directory change while this node is in resiliency mode for users the
    /// change touches (or for the CMS's pool, when the CMS lives on the silent partner);
    /// `None` when it may go ahead.
    pub(crate) fn refuse_in_resiliency_mode(&self, command: &CmsCommand) -> Option<PoolError> {
        let partner = self.options.partner.as_ref()?.pool;
        if !self.in_resiliency_mode(partner) {
            return None;
        }
        let cms_on_partner = self.cms_owner().map(|owner| owner.owner) == Some(partner);
        let local = self.cms_state();
        let home_of = |aor: &str| {
            local.as_ref().and_then(|state| {
                state
                    .read(|state| {
                        state
                            .cms_state()
                            .and_then(|cms| cms.user(aor).map(|user| user.home))
                    })
                    .ok()
                    .flatten()
            })
        };
        let touches_partner = match command {
            CmsCommand::PutUsers { users, .. } => users.iter().any(|user| user.home == partner),
            CmsCommand::RemoveUsers { aors } => {
                aors.iter().any(|aor| home_of(aor) == Some(partner))
            }
            CmsCommand::SetEnabled { aor, .. } => home_of(aor) == Some(partner),
            _ => return None,
        };
        if !touches_partner && !cms_on_partner {
            return None;
        }
        let silent_s = self
            .partner_silent_for()
            .map_or(0, |silent| silent.as_secs());
        let key = self.options.cms_key()?;
        Some(PoolError::Unavailable {
            group: key,
            reason: format!(
                "resiliency mode: partner pool {partner} has not answered for {silent_s} s; \
                 this pool serves its users' registrations as their backup registrar, and \
                 directory changes are refused until it answers again"
            ),
            retry_after_s: 5,
        })
    }

    /// Applies a partner's user's REGISTER in resiliency mode: on the user's copy group, in
    /// its overlay (see the module doc).
    pub(crate) async fn write_resilient(
        &self,
        group: GroupKey,
        command: Command,
    ) -> Result<GroupResponse, PoolError> {
        let copy = self.local_key(group);
        let Command::Register(register) = command else {
            return Err(PoolError::Internal(format!(
                "resiliency mode takes REGISTERs only, not {command:?} for {group}"
            )));
        };
        let aor = register.aor.clone();
        let request = GroupRequest::resilient(
            self.key_epoch(copy),
            0,
            ResilientCommand::Register(register),
        );
        let span = info_span!("resilient", group = %copy, aor = %aor);
        let answer = self
            .routed(copy, Operation::Write(request))
            .instrument(span)
            .await?;
        match answer {
            Answer::Written(GroupResponse::OverlayFull) => Err(self.unavailable(
                copy,
                "resiliency mode: the copy's overlay is full; the partner's users wait for it"
                    .into(),
            )),
            Answer::Written(response) => {
                if let GroupResponse::Registered { changed, .. } = &response {
                    metrics::counter!(RESILIENCY_WRITES, "home" => group.pool.to_string())
                        .increment(1);
                    debug!(resilient = true, group = %copy, %aor, changed, "acknowledged in resiliency mode");
                }
                Ok(response)
            }
            _ => Err(self.unavailable(copy, "unexpected answer to a resilient write".into())),
        }
    }

    /// Whether this node should bring `copy`'s overlay home now: `copy` is a copy of the
    /// partner's routing group, this node leads it, the overlay here is not empty, and either
    /// the partner answers and owns its users, or this pool owns them now (a failover promoted
    /// the copy: the overlay is folded into the copy's own registry, which then ships).
    pub(crate) fn homecoming_due(&self, copy: GroupKey) -> bool {
        let Some(partner) = self.options.partner.as_ref() else {
            return false;
        };
        if copy.pool != partner.pool || copy.routing_group().is_none() || copy.is_home() {
            return false;
        }
        let owner = self.owner_of(partner.pool).owner;
        let home_answers =
            owner == partner.pool && self.partner_heard() && self.partner_silent_for().is_none();
        if !(home_answers || owner == self.options.pool) || !self.leads(copy) {
            return false;
        }
        self.state(copy).is_some_and(|state| {
            state
                .read(|state| !state.overlay().is_empty())
                .unwrap_or(false)
        })
    }

    /// Sends `copy`'s overlay home while it is due, a round of at most [`CLEAR_AORS_MAX`] AORs
    /// at a time, each round cleared once its AORs were merged at home.
    pub(crate) async fn bring_home(&self, copy: GroupKey) {
        let Some(source) = copy.source() else {
            return;
        };
        info!(group = %copy, node = self.options.node_id, "resiliency mode over: bringing the overlay home");
        let mut sent_home = 0usize;
        while self.homecoming_due(copy) {
            let Some(state) = self.state(copy) else {
                break;
            };
            let Ok(round) = state.read(|state| state.overlay().home_bound(CLEAR_AORS_MAX)) else {
                break;
            };
            let mut sent: Vec<SentAor> = Vec::with_capacity(round.len());
            for (merge, version) in round {
                match self.send_home(source, copy, merge).await {
                    Ok(()) => sent.push(version),
                    // One AOR refused (too large for an entry, say) must not hold the others
                    // back; a partner gone silent again ends the round.
                    Err(error) => {
                        debug!(group = %copy, %error, "homecoming: a merge was not taken");
                        if !self.homecoming_due(copy) {
                            break;
                        }
                    }
                }
            }
            let complete = !sent.is_empty();
            if complete {
                let count = sent.len();
                let request =
                    GroupRequest::resilient(self.key_epoch(copy), 0, ResilientCommand::Clear(sent));
                match self.routed(copy, Operation::Write(request)).await {
                    Ok(Answer::Written(GroupResponse::OverlayCleared { .. })) => {
                        sent_home += count;
                        metrics::counter!(RESILIENCY_HOMECOMING_AORS, "home" => source.pool.to_string())
                            .increment(count as u64);
                    }
                    Ok(_) | Err(_) => {
                        tokio::time::sleep(HOMECOMING_RETRY).await;
                    }
                }
            } else {
                tokio::time::sleep(HOMECOMING_RETRY).await;
            }
        }
        info!(group = %copy, node = self.options.node_id, aors = sent_home, "homecoming round ended");
    }

    /// Merges one AOR's resiliency writes into `source`, its routing group at home; into
    /// `copy` itself when this pool owns the users now (a failover promoted it).
    async fn send_home(
        &self,
        source: GroupKey,
        copy: GroupKey,
        merge: MergeCommand,
    ) -> Result<(), PoolError> {
        if self.owner_of(source.pool).owner == self.options.pool {
            return match self.merge_home(copy, merge).await? {
                GroupResponse::Registered { .. } => Ok(()),
                other => Err(self.unavailable(copy, format!("the copy did not merge: {other:?}"))),
            };
        }
        let request = PairRequest::Homecoming {
            group: source,
            merge,
        };
        match self
            .call_partner(source, &request, HOMECOMING_TIMEOUT)
            .await?
        {
            PairResponse::Applied(Ok(GroupResponse::Registered { .. })) => Ok(()),
            PairResponse::Applied(Ok(other)) => {
                Err(self.unavailable(source, format!("the partner did not merge: {other:?}")))
            }
            PairResponse::Applied(Err(error)) => {
                Err(self.unavailable(source, format!("partner pool: {error}")))
            }
            other => Err(self.unavailable(source, format!("unexpected answer: {other:?}"))),
        }
    }

    /// Serves a partner's homecoming: merges `merge` into routing group `group`, which this
    /// pool serves (its own users).
    pub(crate) async fn merge_home(
        &self,
        local: GroupKey,
        merge: MergeCommand,
    ) -> Result<GroupResponse, PoolError> {
        let request = GroupRequest::merge(self.key_epoch(local), 0, merge);
        match self.routed(local, Operation::Write(request)).await? {
            Answer::Written(response) => Ok(response),
            _ => Err(self.unavailable(local, "unexpected answer to a merge".into())),
        }
    }
}
