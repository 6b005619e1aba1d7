//! The [`Store`] of a pool node: every command goes to the routing group of its AOR, through
//! that group's Raft leader; lookups are linearizable reads.

use std::sync::Arc;

use roster_net::QuicNetwork;
use roster_pool::{PoolError, PoolNode};
use roster_raft::{GroupKey, GroupResponse};
use roster_registrar::{Binding, Command, CommandOutcome};

use super::{Applied, Store, StoreError};

/// A pool node seen as the registrar's store.
pub struct PoolStore {
    node: Arc<PoolNode<QuicNetwork>>,
}

impl PoolStore {
    /// The store of `node`, a member of a pool.
    pub fn new(node: Arc<PoolNode<QuicNetwork>>) -> PoolStore {
        PoolStore { node }
    }

    /// The routing group holding `aor`: in its home pool (this pool or the partner, from this
    /// node's copy of the CMS directory); a user the directory does not know (a pool without
    /// authentication) is homed here.
    fn group_of(&self, aor: &str) -> GroupKey {
        let home = self
            .node
            .home_in_directory(aor)
            .unwrap_or_else(|| self.node.pool());
        self.node
            .routing_key_for(home, aor)
            .unwrap_or_else(|| self.node.routing_key(aor))
    }

    /// Who serves the users of `group`'s home pool now, as this node sees it: this pool in
    /// resiliency mode, else their owner (this pool, the partner, or the partner's users'
    /// new owner after a failover).
    fn served_in(&self, group: GroupKey) -> super::Served {
        let ownership = self.node.owner_of(group.pool);
        let resilient = self.node.in_resiliency_mode(group.pool);
        let pool = if resilient {
            self.node.pool()
        } else {
            ownership.owner
        };
        super::Served {
            pool: u64::from(pool),
            epoch: ownership.epoch,
            resilient,
        }
    }

    /// The pool node.
    pub fn node(&self) -> &Arc<PoolNode<QuicNetwork>> {
        &self.node
    }
}

fn unavailable(error: PoolError) -> StoreError {
    match error {
        PoolError::Unavailable {
            reason,
            retry_after_s,
            group,
        } => StoreError::Unavailable {
            reason: format!("routing group {group}: {reason}"),
            retry_after_s,
        },
        PoolError::Internal(reason) => StoreError::Unavailable {
            reason,
            retry_after_s: 5,
        },
    }
}

impl Store for PoolStore {
    async fn apply(&self, command: Command, now_ms: u64) -> Result<Applied, StoreError> {
        let group = match &command {
            Command::Register(register) => self.group_of(&register.aor),
            Command::PurgeExpired => {
                // Boxed: rare, and its future would enlarge every REGISTER's.
                Box::pin(self.node.purge_expired(now_ms))
                    .await
                    .map_err(unavailable)?;
                return Ok(Applied {
                    outcome: CommandOutcome::Purged {
                        bindings_removed: 0,
                    },
                    at_ms: now_ms,
                    served: None,
                });
            }
        };
        // Read as `write_home` decides where the write goes, a moment before it does.
        let served = self.served_in(group);
        let response = self
            .node
            .write_home(group, command)
            .await
            .map_err(unavailable)?;
        let (at_ms, served) = match &response {
            GroupResponse::Registered { at_ms, epoch, .. } => (
                *at_ms,
                Some(super::Served {
                    epoch: *epoch,
                    ..served
                }),
            ),
            _ => (now_ms, None),
        };
        match response {
            GroupResponse::StaleEpoch { current } => Err(StoreError::Unavailable {
                // A failover or failback moves these users (the pause of a failback's final
                // catch-up): they are served again within a second or so.
                reason: format!(
                    "routing group {group} is at epoch {current}: its users are changing owner"
                ),
                retry_after_s: 1,
            }),
            other => match other.into_outcome() {
                Some(outcome) => Ok(Applied {
                    outcome,
                    at_ms,
                    served,
                }),
                None => Err(StoreError::Unavailable {
                    reason: format!("routing group {group} gave no registrar outcome"),
                    retry_after_s: 1,
                }),
            },
        }
    }

    async fn lookup(&self, aor: &str, now_ms: u64) -> Result<Vec<Binding>, StoreError> {
        let group = self.group_of(aor);
        // The registry answers highest q first already.
        self.node
            .read_home(group, aor, now_ms)
            .await
            .map_err(unavailable)
    }

    async fn purge_expired(&self, now_ms: u64) -> Result<(), StoreError> {
        self.node.purge_expired(now_ms).await.map_err(unavailable)
    }

    fn served(&self, aor: &str) -> Option<super::Served> {
        Some(self.served_in(self.group_of(aor)))
    }

    fn placement(&self, aor: &str) -> super::Placement {
        let group = self.group_of(aor);
        super::Placement {
            group: group.to_string(),
            pool: Some(u64::from(group.pool)),
            epoch: Some(self.node.epoch_of(group.pool)),
        }
    }

    fn status(&self) -> serde_json::Value {
        let mut status = self.node.status();
        // What each replica holds: registrations per pool on the operator's page.
        for group in status["groups"].as_array_mut().into_iter().flatten() {
            let key = group["key"]
                .as_str()
                .and_then(|key| key.parse::<GroupKey>().ok());
            let counts = key.and_then(|key| self.node.state(key)).and_then(|state| {
                state
                    .read(|state| {
                        state
                            .registry()
                            .map(|registry| (registry.aor_count(), registry.binding_count()))
                    })
                    .ok()
                    .flatten()
            });
            if let Some((aors, bindings)) = counts {
                group["aors"] = serde_json::json!(aors);
                group["bindings"] = serde_json::json!(bindings);
            }
        }
        status["kind"] = serde_json::json!("pool");
        status["groups_total"] = serde_json::json!(self.node.options().groups);
        status
    }

    /// Unhealthy while the node's store is poisoned (a full disk) or being reopened, or one of
    /// its replicas is stopped or not open again yet: it still forwards what it cannot serve.
    fn healthy(&self) -> bool {
        self.node.healthy()
    }
}
