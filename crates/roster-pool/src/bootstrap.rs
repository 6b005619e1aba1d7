//! Creating a pool's groups once, when the pool is created: the node that is a group's first
//! replica initializes it with its voters, then waits until a majority holds it.

use std::collections::BTreeMap;
use std::time::Duration;

use roster_cms::{CmsCommand, CmsOutcome};
use roster_net::Network;
use roster_raft::{typ, GroupKey};
use roster_topology::Deployment;
use roster_topology::NodeId;
use tracing::{debug, info, warn};

use crate::node::{PoolError, PoolNode};
use crate::placement::Assignment;

/// How long [`PoolNode::bootstrap`] waits for the groups it created to commit their first
/// entries on a majority. Until then a created group exists only on this node: losing it would
/// leave the group without a leader until it returns. Peers started much later are not waited
/// for past this.
const BOOTSTRAP_COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Pause between attempts to publish the deployment while the new CMS elects its leader.
const PUBLISH_RETRY: Duration = Duration::from_millis(100);

impl<N: Network> PoolNode<N> {
    /// Initializes the groups whose first replica is this node and that have never been
    /// initialized, with the voters `assignment` gives them, then waits (at most
    /// `BOOTSTRAP_COMMIT_WAIT`) until each has committed its first entries on a majority, so
    /// that the pool survives the loss of any one node from then on. Idempotent.
    ///
    /// The node that creates the CMS also adds the pool's other nodes to it as learners (every
    /// node keeps a local copy) and publishes `deployment` in it.
    pub async fn bootstrap(
        &self,
        assignment: &Assignment,
        addresses: &BTreeMap<NodeId, String>,
        deployment: Option<&Deployment>,
    ) -> Result<(), PoolError> {
        self.learn_peers(addresses.keys().copied());
        let mut created: Vec<GroupKey> = Vec::new();
        for (&group, voters) in assignment {
            if voters.first() != Some(&self.options.node_id) {
                continue;
            }
            let Some(replica) = self.replica(group) else {
                continue;
            };
            let initialized = replica
                .raft
                .is_initialized()
                .await
                .map_err(|error| PoolError::Internal(error.to_string()))?;
            if initialized {
                continue;
            }
            let members: BTreeMap<NodeId, typ::Node> = voters
                .iter()
                .map(|id| {
                    let addr = addresses.get(id).cloned().unwrap_or_default();
                    (*id, typ::Node { addr })
                })
                .collect();
            match replica.raft.initialize(members).await {
                Ok(()) => {
                    info!(group = %group, "initialized routing group");
                    created.push(group);
                }
                // Another run got there first: fine.
                Err(error) => debug!(group = %group, %error, "initialize skipped"),
            }
        }
        self.await_first_commits(created.clone()).await;
        let cms = self.options.cms_key().filter(|key| key.is_home());
        if let Some(cms) = cms.filter(|cms| created.contains(cms)) {
            self.add_cms_learners(cms, assignment, addresses).await;
            if let Some(deployment) = deployment {
                self.publish_deployment(deployment).await?;
            }
        }
        Ok(())
    }

    /// Adds every node of `addresses` that is not a voter of the CMS as a learner, without
    /// waiting for it to catch up.
    async fn add_cms_learners(
        &self,
        cms: GroupKey,
        assignment: &Assignment,
        addresses: &BTreeMap<NodeId, String>,
    ) {
        let Some(replica) = self.replica(cms) else {
            return;
        };
        let voters = assignment.get(&cms).cloned().unwrap_or_default();
        for (&node, address) in addresses {
            if voters.contains(&node) {
                continue;
            }
            let learner = typ::Node {
                addr: address.clone(),
            };
            if let Err(error) = replica.raft.add_learner(node, learner, false).await {
                warn!(node, %error, "could not add a learner to the CMS");
            }
        }
    }

    /// Records `deployment` in the CMS, retrying while the new group elects (at most
    /// `BOOTSTRAP_COMMIT_WAIT`). The group was created here just now, in this pool: its first
    /// write waits for no word from the partner (which may not run yet).
    async fn publish_deployment(&self, deployment: &Deployment) -> Result<(), PoolError> {
        let (Some(key), Some(owner)) = (self.options.cms_key(), self.cms_owner()) else {
            return Err(PoolError::Internal(
                "this pool holds no CMS and no copy of it".into(),
            ));
        };
        let deadline = tokio::time::Instant::now() + BOOTSTRAP_COMMIT_WAIT;
        loop {
            match self
                .cms_write_as(key, owner, CmsCommand::SetDeployment(deployment.clone()))
                .await
            {
                Ok(CmsOutcome::Refused(refusal)) => {
                    return Err(PoolError::Internal(format!(
                        "the CMS refused the deployment: {refusal}"
                    )))
                }
                Ok(_) => {
                    info!(
                        pools = deployment.pool.len(),
                        "deployment published in the CMS"
                    );
                    return Ok(());
                }
                Err(error) if tokio::time::Instant::now() < deadline => {
                    debug!(%error, "CMS not ready yet");
                    tokio::time::sleep(PUBLISH_RETRY).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Waits until every group of `groups` has applied an entry (so a majority holds its
    /// membership), all at once and for at most `BOOTSTRAP_COMMIT_WAIT`; then logs those still
    /// waiting.
    async fn await_first_commits(&self, groups: Vec<GroupKey>) {
        let waits = groups.into_iter().filter_map(|group| {
            let replica = self.replica(group)?;
            Some(async move {
                let applied = replica
                    .raft
                    .wait(Some(BOOTSTRAP_COMMIT_WAIT))
                    .applied_index_at_least(Some(0), "first commit")
                    .await;
                applied.is_err().then_some(group)
            })
        });
        let waiting: Vec<GroupKey> = futures_util::future::join_all(waits)
            .await
            .into_iter()
            .flatten()
            .collect();
        if !waiting.is_empty() {
            warn!(
                node = self.options.node_id,
                groups = ?waiting,
                "created groups not yet replicated (peers not started?): until they are, \
                 losing this node stops them"
            );
        }
    }
}
