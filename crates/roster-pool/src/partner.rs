//! The link to the partner pool: calling it (any of its nodes, preferring the last that
//! answered), and serving its calls. Writes and lookups of users homed on either pool, and CMS
//! changes, go where their group lives; see `pair` for the messages and `shipper` for the
//! backup stream that uses this link.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use roster_cms::{CmsCommand, CmsOutcome, Ownership};
use roster_net::{NetError, Network, Peer};
use roster_raft::{group_of, GroupKey, GroupRequest, GroupResponse};
use roster_registrar::{Binding, Command};
use roster_topology::{NodeId, PoolId};
use tracing::debug;

use crate::node::{PoolError, PoolNode};
use crate::pair::{decode_pair, encode_pair, PairRequest, PairResponse};
use crate::protocol::{Peek, ServeError};
use crate::route::{Answer, Operation};

/// Longest wait for one partner node's answer: a commit in the partner pool plus a WAN round
/// trip take tens to hundreds of milliseconds; past 2 s the node is gone, and the next one is
/// tried.
const PARTNER_HOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for a partner node's status: a status page must not hang on a dead site.
const PARTNER_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Which partner node a node calls first: the last that answered, so that calls stay on one
/// connection while it works.
#[derive(Debug, Default)]
pub(crate) struct PartnerLink {
    preferred: AtomicUsize,
}

impl<N: Network> PoolNode<N> {
    /// Sends `request` to the partner pool and returns its answer, trying its nodes in turn
    /// within `timeout`. A request that may have reached a node and is not idempotent is never
    /// sent to a second one: its outcome is unknown, and it is refused as unavailable.
    pub(crate) async fn call_partner(
        &self,
        about: GroupKey,
        request: &PairRequest,
        timeout: Duration,
    ) -> Result<PairResponse, PoolError> {
        let Some(partner) = &self.options.partner else {
            return Err(self.unavailable(about, "this pool has no partner".into()));
        };
        let nodes = &partner.nodes;
        if nodes.is_empty() {
            return Err(self.unavailable(about, "the partner pool has no nodes".into()));
        }
        let body = encode_pair(request).map_err(|error| {
            PoolError::Internal(format!("cannot encode a pair request: {error}"))
        })?;
        let deadline = tokio::time::Instant::now() + timeout;
        let first = self.partner_link.preferred.load(Ordering::Relaxed);
        let mut failures: Vec<String> = Vec::new();
        for attempt in 0..nodes.len() {
            let index = (first + attempt) % nodes.len();
            let node: NodeId = nodes[index];
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                break;
            }
            let hop = remaining.min(PARTNER_HOP_TIMEOUT);
            match self.router.network().request(node, body.clone(), hop).await {
                Ok(reply) => {
                    self.partner_link.preferred.store(index, Ordering::Relaxed);
                    return match decode_pair::<PairResponse>(&reply) {
                        Ok(PairResponse::Error(reason)) => Err(self
                            .unavailable(about, format!("partner node {node} refused: {reason}"))),
                        Ok(response) => Ok(response),
                        Err(error) => Err(self.unavailable(
                            about,
                            format!("partner node {node} answered badly: {error}"),
                        )),
                    };
                }
                Err(error) => {
                    debug!(node, %error, kind = request.kind(), "partner node did not answer");
                    let not_sent = matches!(
                        error,
                        NetError::UnknownPeer(_) | NetError::Untrusted { .. } | NetError::Closed
                    );
                    if !request.is_idempotent() && !not_sent {
                        return Err(self.unavailable(
                            about,
                            format!("the outcome is unknown: partner node {node} did not answer ({error})"),
                        ));
                    }
                    failures.push(format!("node {node}: {error}"));
                }
            }
        }
        Err(self.unavailable(
            about,
            format!(
                "no node of partner pool {} answered: {}",
                partner.pool,
                failures.join("; ")
            ),
        ))
    }

    /// Sends `request` to partner node `node` alone (status: every node is asked).
    pub(crate) async fn ask_partner_node(
        &self,
        node: NodeId,
        request: &PairRequest,
    ) -> Result<PairResponse, String> {
        self.ask_partner_node_within(node, request, PARTNER_STATUS_TIMEOUT)
            .await
    }

    /// Sends `request` to partner node `node` alone, within `timeout`.
    pub(crate) async fn ask_partner_node_within(
        &self,
        node: NodeId,
        request: &PairRequest,
        timeout: Duration,
    ) -> Result<PairResponse, String> {
        let body = encode_pair(request).map_err(|error| error.to_string())?;
        let reply = self
            .router
            .network()
            .request(node, body, timeout)
            .await
            .map_err(|error| error.to_string())?;
        decode_pair::<PairResponse>(&reply).map_err(|error| error.to_string())
    }

    /// How many routing groups pool `home` has (this pool or its partner); `None` for another.
    pub(crate) fn groups_of(&self, home: PoolId) -> Option<u32> {
        if home == self.options.pool {
            return Some(self.options.groups);
        }
        self.options
            .partner
            .as_ref()
            .filter(|partner| partner.pool == home)
            .map(|partner| partner.groups)
    }

    /// The routing group of `aor` among the users homed on pool `home` (this pool or its
    /// partner, each with its own G); `None` for another pool.
    pub fn routing_key_for(&self, home: PoolId, aor: &str) -> Option<GroupKey> {
        let groups = self.groups_of(home)?;
        Some(GroupKey::routing(home, group_of(aor, groups)))
    }

    /// This pool's group holding the users of `group` (a routing group in its home pool's
    /// terms): the routing group itself on its home pool, its backup copy on the partner.
    pub fn local_key(&self, group: GroupKey) -> GroupKey {
        group.held_in(self.options.pool)
    }

    /// Applies `command` in routing group `group` (in its home pool's terms), wherever its
    /// users are served now: here when this pool owns them (its own users, or its partner's
    /// after a failover), else in the partner pool.
    pub async fn write_home(
        &self,
        group: GroupKey,
        command: Command,
    ) -> Result<GroupResponse, PoolError> {
        if let Some(refusal) = self.refuse_misrouted(group, &command) {
            return Err(refusal);
        }
        let owner = self.owner_of(group.pool).owner;
        if owner == self.options.pool {
            if !self.ownership_settled() {
                return Err(PoolError::Unavailable {
                    reason: "this node has just started and is learning from its partner pool \
                             who owns these users"
                        .into(),
                    retry_after_s: 1,
                    group,
                });
            }
            if let Some(refusal) = self.refuse_when_fenced(group) {
                return Err(refusal);
            }
            return self.write(self.local_key(group), command).await;
        }
        if self.in_resiliency_mode(group.pool) {
            return self.write_resilient(group, command).await;
        }
        let request = PairRequest::Write { group, command };
        match self
            .call_partner(group, &request, self.options.request_timeout)
            .await?
        {
            PairResponse::Applied(result) => {
                result.map_err(|error| self.served_elsewhere(group, error))
            }
            other => Err(self.unexpected(group, &other)),
        }
    }

    /// The refusal of a write routed to `group` for an AOR that this node's directory homes on
    /// another pool; `None` otherwise (the directory agrees, or does not know the AOR). A
    /// sender that could not read its directory yet (just restarted) guesses its own pool:
    /// written there, the binding would sit in groups nothing reads for that user (the chaos
    /// suite's `site-loss` lost a partner's user's binding so, through a node of the returning
    /// pool during its failback). The client's retry finds the right pool once the sender
    /// reads its directory.
    pub(crate) fn refuse_misrouted(&self, group: GroupKey, command: &Command) -> Option<PoolError> {
        let Command::Register(register) = command else {
            return None;
        };
        let home = self.home_in_directory(&register.aor)?;
        (home != group.pool).then(|| PoolError::Unavailable {
            reason: format!(
                "{} is homed on pool {home}, not pool {}: routed by a node whose directory is not \
                 read yet",
                register.aor, group.pool
            ),
            retry_after_s: 1,
            group,
        })
    }

    /// The live bindings of `aor` in routing group `group` (in its home pool's terms), read
    /// where its users are served now.
    pub async fn read_home(
        &self,
        group: GroupKey,
        aor: &str,
        now_ms: u64,
    ) -> Result<Vec<Binding>, PoolError> {
        let owner = self.owner_of(group.pool).owner;
        // In resiliency mode the copy answers: its lookups merge the overlay over the registry.
        if owner == self.options.pool || self.in_resiliency_mode(group.pool) {
            return self.read(self.local_key(group), aor, now_ms).await;
        }
        let request = PairRequest::Read {
            group,
            aor: aor.to_string(),
            now_ms,
        };
        match self
            .call_partner(group, &request, self.options.request_timeout)
            .await?
        {
            PairResponse::Read(result) => {
                result.map_err(|error| self.served_elsewhere(group, error))
            }
            other => Err(self.unexpected(group, &other)),
        }
    }

    /// Applies `command` in the CMS: on its group in this pool when this pool holds the
    /// authoritative CMS (its home, or the copy promoted by a CMS failover), else through the
    /// partner. A directory change for the partner's users (or any, when the CMS lives there)
    /// is refused while this node is in resiliency mode (see `resilience`), and so is any
    /// change while a node that has just started has not yet learned from its partner who
    /// holds the CMS (its own replica, from before a CMS failover, would take it at the old
    /// epoch, and the restore from the partner's CMS would then discard it).
    pub async fn cms_write(&self, command: CmsCommand) -> Result<CmsOutcome, PoolError> {
        if let Some(refusal) = self.refuse_in_resiliency_mode(&command) {
            return Err(refusal);
        }
        let (Some(key), Some(owner)) = (self.options.cms_key(), self.cms_owner()) else {
            return Err(PoolError::Internal(
                "this pool holds no CMS and no copy of it".into(),
            ));
        };
        if owner.owner == self.options.pool && !self.ownership_settled() {
            return Err(PoolError::Unavailable {
                reason: "this node has just started and is learning from its partner pool who \
                         holds the CMS"
                    .into(),
                retry_after_s: 1,
                group: key,
            });
        }
        self.cms_write_as(key, owner, command).await
    }

    /// [`PoolNode::cms_write`] once the CMS's owner is known: here (`owner` is this pool) or
    /// through the partner. The bootstrap of a new deployment writes its first entry so: the
    /// group it has just created has no history anyone could hold newer.
    pub(crate) async fn cms_write_as(
        &self,
        key: GroupKey,
        owner: Ownership,
        command: CmsCommand,
    ) -> Result<CmsOutcome, PoolError> {
        if owner.owner != self.options.pool {
            let request = PairRequest::Cms { command };
            return match self
                .call_partner(key, &request, self.options.request_timeout)
                .await?
            {
                PairResponse::Cms(result) => {
                    result.map_err(|error| self.served_elsewhere(key, error))
                }
                other => Err(self.unexpected(key, &other)),
            };
        }
        let request = GroupRequest::cms(owner.epoch, 0, command);
        match self.routed(key, Operation::Write(request)).await? {
            Answer::Written(GroupResponse::Cms(outcome)) => Ok(outcome),
            Answer::Written(GroupResponse::StaleEpoch { current }) => Err(self.unavailable(
                key,
                format!("the CMS is at epoch {current}: this pool no longer holds it"),
            )),
            _ => Err(self.unavailable(key, "unexpected answer to a CMS change".into())),
        }
    }

    /// Proposes a backup batch or restore piece on `copy` in the partner pool.
    pub(crate) async fn ship_to_partner(
        &self,
        copy: GroupKey,
        request: GroupRequest,
        timeout: Duration,
    ) -> Result<GroupResponse, PoolError> {
        let request = PairRequest::Stream { copy, request };
        match self.call_partner(copy, &request, timeout).await? {
            PairResponse::Applied(result) => {
                result.map_err(|error| self.served_elsewhere(copy, error))
            }
            other => Err(self.unexpected(copy, &other)),
        }
    }

    /// The epoch of `copy` in the partner pool and where it stands in its source's history.
    pub(crate) async fn partner_position(
        &self,
        copy: GroupKey,
        timeout: Duration,
    ) -> Result<Peek, PoolError> {
        let request = PairRequest::Position { copy };
        match self.call_partner(copy, &request, timeout).await? {
            PairResponse::Position(result) => {
                result.map_err(|error| self.served_elsewhere(copy, error))
            }
            other => Err(self.unexpected(copy, &other)),
        }
    }

    /// Serves a request of a node of the partner pool.
    pub(crate) async fn serve_pair(&self, from: Peer, request: PairRequest) -> PairResponse {
        let as_serve = |error: PoolError| ServeError::Unavailable(error.to_string());
        match request {
            PairRequest::Stream { copy, request } => {
                if !self.holds_copy_for(from.pool, copy) {
                    return refused(from, copy, "is not a copy this pool holds for you");
                }
                match self.routed(copy, Operation::Write(request)).await {
                    Ok(Answer::Written(response)) => PairResponse::Applied(Ok(response)),
                    Ok(_) => PairResponse::Error("unexpected answer to a stream request".into()),
                    Err(error) => PairResponse::Applied(Err(as_serve(error))),
                }
            }
            PairRequest::Position { copy } => {
                if self.options.position(copy).is_none() {
                    return refused(from, copy, "is not a group of this pool");
                }
                match self.routed(copy, Operation::Position).await {
                    Ok(Answer::Position(position)) => PairResponse::Position(Ok(position)),
                    Ok(_) => PairResponse::Error("unexpected answer to a position request".into()),
                    Err(error) => PairResponse::Position(Err(as_serve(error))),
                }
            }
            PairRequest::Write { group, command } => {
                let Some(local) = self.serves_users_of(group) else {
                    return refused(from, group, "is not served by this pool now");
                };
                if let Some(refusal) = self.refuse_misrouted(group, &command) {
                    return PairResponse::Applied(Err(as_serve(refusal)));
                }
                PairResponse::Applied(self.write(local, command).await.map_err(as_serve))
            }
            PairRequest::Read { group, aor, now_ms } => {
                let Some(local) = self.serves_users_of(group) else {
                    return refused(from, group, "is not served by this pool now");
                };
                PairResponse::Read(self.read(local, &aor, now_ms).await.map_err(as_serve))
            }
            PairRequest::Homecoming { group, merge } => {
                let Some(local) = self.serves_users_of(group) else {
                    return refused(from, group, "is not served by this pool now");
                };
                PairResponse::Applied(self.merge_home(local, merge).await.map_err(as_serve))
            }
            PairRequest::Cms { command } => {
                if self.cms_owner().map(|owner| owner.owner) != Some(self.options.pool) {
                    return PairResponse::Error("the CMS is not held by this pool".into());
                }
                PairResponse::Cms(self.cms_write(command).await.map_err(as_serve))
            }
            PairRequest::Fence { group, epoch } => {
                if self.options.position(group).is_none() {
                    return refused(from, group, "is not a group of this pool");
                }
                let request = GroupRequest::set_epoch(epoch, 0);
                match self.routed(group, Operation::Write(request)).await {
                    Ok(Answer::Written(response)) => PairResponse::Applied(Ok(response)),
                    Ok(_) => PairResponse::Error("unexpected answer to a fence".into()),
                    Err(error) => PairResponse::Applied(Err(as_serve(error))),
                }
            }
            PairRequest::TakeCms { ownership } => match self.take_cms(from.pool, ownership).await {
                Ok(response) => PairResponse::Applied(Ok(response)),
                Err(crate::failover::TakeCmsError::Refused(why)) => {
                    PairResponse::Error(format!("{from}: {why}"))
                }
                Err(crate::failover::TakeCmsError::Pool(error)) => {
                    PairResponse::Applied(Err(as_serve(error)))
                }
            },
            PairRequest::Ping => PairResponse::Pong(self.ownership_view()),
            PairRequest::Streams => PairResponse::Streams(self.node_streams()),
        }
    }

    /// Whether `copy` is a group this pool holds as the copy of a group owned by `pool` (the
    /// partner): it follows the partner's stream only then.
    fn holds_copy_for(&self, pool: PoolId, copy: GroupKey) -> bool {
        self.options.position(copy).is_some() && self.key_owner(copy) == Some(pool)
    }

    /// This pool's group serving the users of routing group `group` (home pool terms), when
    /// this pool owns them now.
    fn serves_users_of(&self, group: GroupKey) -> Option<GroupKey> {
        if group.routing_group().is_none() || !group.is_home() {
            return None;
        }
        if self.owner_of(group.pool).owner != self.options.pool {
            return None;
        }
        let local = self.local_key(group);
        self.options.position(local).map(|_| local)
    }

    /// A partner's answer that the request could not be served there.
    fn served_elsewhere(&self, group: GroupKey, error: ServeError) -> PoolError {
        self.unavailable(group, format!("partner pool: {error}"))
    }

    fn unexpected(&self, group: GroupKey, response: &PairResponse) -> PoolError {
        self.unavailable(
            group,
            format!("unexpected answer from the partner: {response:?}"),
        )
    }
}

fn refused(from: Peer, group: GroupKey, why: &str) -> PairResponse {
    PairResponse::Error(format!("{from}: group {group} {why}"))
}
