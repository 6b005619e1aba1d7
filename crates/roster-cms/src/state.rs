//! [`CmsState`]: the deployment, the directory and ownership, changed only by [`CmsCommand`]s.

use std::collections::{BTreeMap, BTreeSet};

use roster_topology::{Deployment, PoolId};
use serde::{Deserialize, Serialize};

use crate::command::{CmsCommand, CmsOutcome, CmsRefusal, USERS_PER_COMMAND_MAX};
use crate::ownership::{Operation, OperationKind, Ownership};
use crate::user::UserRecord;

/// The CMS's state: pure and deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmsState {
    deployment: Option<Deployment>,
    users: BTreeMap<String, UserRecord>,
    /// Digest user name → AOR.
    usernames: BTreeMap<String, String>,
    ownership: BTreeMap<PoolId, Ownership>,
    /// Which pool holds the authoritative CMS, at which epoch: the deployment's CMS pool at
    /// first; its partner after `roster cms failover`.
    cms_owner: Option<Ownership>,
    /// Failovers and failbacks under way, by the home pool whose users they move.
    operations: BTreeMap<PoolId, Operation>,
}

impl CmsState {
    /// Applies one command. Refused, it changes nothing.
    pub fn apply(&mut self, command: &CmsCommand) -> CmsOutcome {
        let result = match command {
            CmsCommand::SetDeployment(deployment) => self.set_deployment(deployment),
            CmsCommand::PutUsers { users, replace } => self.put_users(users, *replace),
            CmsCommand::RemoveUsers { aors } => self.remove_users(aors),
            CmsCommand::SetEnabled { aor, enabled } => self.set_enabled(aor, *enabled),
            CmsCommand::SetOwnership { pool, ownership } => self.set_ownership(*pool, *ownership),
            CmsCommand::SetCmsOwner(ownership) => self.set_cms_owner(*ownership),
            CmsCommand::BeginOperation { pool, operation } => {
                self.begin_operation(*pool, operation.clone())
            }
            CmsCommand::EndOperation { pool } => self.end_operation(*pool, None),
            CmsCommand::EndOperationOf { pool, kind } => self.end_operation(*pool, Some(*kind)),
        };
        result.unwrap_or_else(CmsOutcome::Refused)
    }

    /// The published deployment.
    pub fn deployment(&self) -> Option<&Deployment> {
        self.deployment.as_ref()
    }

    /// The user of `aor`.
    pub fn user(&self, aor: &str) -> Option<&UserRecord> {
        self.users.get(aor)
    }

    /// The user whose digest user name is `username`.
    pub fn user_by_username(&self, username: &str) -> Option<&UserRecord> {
        self.usernames
            .get(username)
            .and_then(|aor| self.users.get(aor))
    }

    /// Every user, by AOR.
    pub fn users(&self) -> impl Iterator<Item = &UserRecord> {
        self.users.values()
    }

    /// How many users there are.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// How many users are homed on `pool`.
    pub fn users_homed_on(&self, pool: PoolId) -> usize {
        self.users.values().filter(|user| user.home == pool).count()
    }

    /// Who owns `pool`'s users now.
    pub fn ownership(&self, pool: PoolId) -> Option<Ownership> {
        self.ownership.get(&pool).copied()
    }

    /// Every pool's ownership.
    pub fn ownerships(&self) -> &BTreeMap<PoolId, Ownership> {
        &self.ownership
    }

    /// Which pool holds the authoritative CMS, once a deployment is published.
    pub fn cms_owner(&self) -> Option<Ownership> {
        self.cms_owner
    }

    /// The failover or failback under way for `pool`'s users, if any.
    pub fn operation(&self, pool: PoolId) -> Option<&Operation> {
        self.operations.get(&pool)
    }

    /// Every operation under way.
    pub fn operations(&self) -> &BTreeMap<PoolId, Operation> {
        &self.operations
    }

    /// The state without its users: what a restore sends first ([`CmsState::restore_begin`]).
    pub fn head(&self) -> CmsState {
        CmsState {
            deployment: self.deployment.clone(),
            users: BTreeMap::new(),
            usernames: BTreeMap::new(),
            ownership: self.ownership.clone(),
            cms_owner: self.cms_owner,
            operations: self.operations.clone(),
        }
    }

    /// The state of `head` (see [`CmsState::head`]) with no users yet: the first step of
    /// filling a copy from its source (`roster-raft`'s restore), users following with
    /// [`CmsState::restore_users`].
    pub fn restore_begin(head: CmsState) -> CmsState {
        CmsState {
            users: BTreeMap::new(),
            usernames: BTreeMap::new(),
            ..head
        }
    }

    /// Stores `users` exactly as given, replacing users of the same AOR: filling a copy from its
    /// source's [`CmsState::users`], which were checked when they were put.
    pub fn restore_users(&mut self, users: &[UserRecord]) {
        for user in users {
            if let Some(previous) = self.users.insert(user.aor.clone(), user.clone()) {
                self.usernames.remove(&previous.credentials.username);
            }
            self.usernames
                .insert(user.credentials.username.clone(), user.aor.clone());
        }
    }

    fn set_deployment(&mut self, deployment: &Deployment) -> Result<CmsOutcome, CmsRefusal> {
        deployment
            .validate()
            .map_err(|error| CmsRefusal::InvalidDeployment(error.to_string()))?;
        if let Some(current) = &self.deployment {
            for pool in &current.pool {
                match deployment.pool(pool.id) {
                    Some(next) if next.groups != pool.groups => {
                        return Err(CmsRefusal::GroupsChanged {
                            pool: pool.id,
                            from: pool.groups,
                            to: next.groups,
                        })
                    }
                    Some(_) => {}
                    None => {
                        let users = self.users_homed_on(pool.id);
                        if users > 0 {
                            return Err(CmsRefusal::PoolHasUsers {
                                pool: pool.id,
                                users,
                            });
                        }
                    }
                }
            }
        }
        let pools: BTreeSet<PoolId> = deployment.pool.iter().map(|pool| pool.id).collect();
        self.ownership.retain(|pool, _| pools.contains(pool));
        for &pool in &pools {
            self.ownership.entry(pool).or_insert(Ownership {
                owner: pool,
                epoch: 1,
            });
        }
        self.cms_owner.get_or_insert(Ownership {
            owner: deployment.cms_pool(),
            epoch: 1,
        });
        self.deployment = Some(deployment.clone());
        Ok(CmsOutcome::DeploymentSet { pools: pools.len() })
    }

    fn put_users(&mut self, users: &[UserRecord], replace: bool) -> Result<CmsOutcome, CmsRefusal> {
        let deployment = self.deployment.as_ref().ok_or(CmsRefusal::NoDeployment)?;
        if users.len() > USERS_PER_COMMAND_MAX {
            return Err(CmsRefusal::TooMany { count: users.len() });
        }
        // Check everything first: the command is all-or-nothing.
        let mut seen = BTreeSet::new();
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        for user in users {
            user.validate()
                .map_err(|error| CmsRefusal::InvalidUser(error.to_string()))?;
            if deployment.pool(user.home).is_none() {
                return Err(CmsRefusal::UnknownPool(user.home));
            }
            if !seen.insert(user.aor.as_str()) {
                return Err(CmsRefusal::Duplicate(user.aor.clone()));
            }
            if !replace && self.users.contains_key(&user.aor) {
                return Err(CmsRefusal::Exists(user.aor.clone()));
            }
            let username = user.credentials.username.as_str();
            let holder = self
                .usernames
                .get(username)
                .map(String::as_str)
                .or_else(|| names.get(username).copied());
            if let Some(holder) = holder.filter(|holder| *holder != user.aor) {
                return Err(CmsRefusal::UsernameTaken {
                    username: username.to_string(),
                    aor: holder.to_string(),
                });
            }
            names.insert(username, &user.aor);
        }
        let mut added = 0;
        let mut replaced = 0;
        for user in users {
            match self.users.insert(user.aor.clone(), user.clone()) {
                Some(previous) => {
                    replaced += 1;
                    self.usernames.remove(&previous.credentials.username);
                }
                None => added += 1,
            }
            self.usernames
                .insert(user.credentials.username.clone(), user.aor.clone());
        }
        Ok(CmsOutcome::UsersPut { added, replaced })
    }

    fn remove_users(&mut self, aors: &[String]) -> Result<CmsOutcome, CmsRefusal> {
        if aors.len() > USERS_PER_COMMAND_MAX {
            return Err(CmsRefusal::TooMany { count: aors.len() });
        }
        let mut removed = 0;
        let mut not_found = 0;
        for aor in aors {
            match self.users.remove(aor) {
                Some(user) => {
                    self.usernames.remove(&user.credentials.username);
                    removed += 1;
                }
                None => not_found += 1,
            }
        }
        Ok(CmsOutcome::UsersRemoved { removed, not_found })
    }

    fn set_enabled(&mut self, aor: &str, enabled: bool) -> Result<CmsOutcome, CmsRefusal> {
        let user = self
            .users
            .get_mut(aor)
            .ok_or_else(|| CmsRefusal::NotFound(aor.to_string()))?;
        user.enabled = enabled;
        Ok(CmsOutcome::UserUpdated)
    }

    fn set_ownership(
        &mut self,
        pool: PoolId,
        ownership: Ownership,
    ) -> Result<CmsOutcome, CmsRefusal> {
        let deployment = self.deployment.as_ref().ok_or(CmsRefusal::NoDeployment)?;
        for id in [pool, ownership.owner] {
            if deployment.pool(id).is_none() {
                return Err(CmsRefusal::UnknownPool(id));
            }
        }
        if self.ownership.get(&pool) == Some(&ownership) {
            // The same change again (a step retried after its answer was lost): done already.
            return Ok(CmsOutcome::OwnershipSet {
                epoch: ownership.epoch,
            });
        }
        let current = self.ownership.get(&pool).map_or(0, |current| current.epoch);
        if ownership.epoch <= current {
            return Err(CmsRefusal::StaleEpoch {
                asked: ownership.epoch,
                current,
            });
        }
        self.ownership.insert(pool, ownership);
        self.operations.remove(&pool);
        Ok(CmsOutcome::OwnershipSet {
            epoch: ownership.epoch,
        })
    }

    fn set_cms_owner(&mut self, ownership: Ownership) -> Result<CmsOutcome, CmsRefusal> {
        let deployment = self.deployment.as_ref().ok_or(CmsRefusal::NoDeployment)?;
        if deployment.pool(ownership.owner).is_none() {
            return Err(CmsRefusal::UnknownPool(ownership.owner));
        }
        if self.cms_owner == Some(ownership) {
            // The same change again (a step retried after its answer was lost): done already.
            return Ok(CmsOutcome::OwnershipSet {
                epoch: ownership.epoch,
            });
        }
        let current = self.cms_owner.map_or(0, |current| current.epoch);
        if ownership.epoch <= current {
            return Err(CmsRefusal::StaleEpoch {
                asked: ownership.epoch,
                current,
            });
        }
        self.cms_owner = Some(ownership);
        Ok(CmsOutcome::OwnershipSet {
            epoch: ownership.epoch,
        })
    }

    fn begin_operation(
        &mut self,
        pool: PoolId,
        operation: Operation,
    ) -> Result<CmsOutcome, CmsRefusal> {
        let deployment = self.deployment.as_ref().ok_or(CmsRefusal::NoDeployment)?;
        if deployment.pool(pool).is_none() {
            return Err(CmsRefusal::UnknownPool(pool));
        }
        if self.operations.get(&pool) == Some(&operation) {
            // The same operation again (its begin retried after the answer was lost; a second
            // operator's has its own start time): begun already.
            return Ok(CmsOutcome::OperationBegun);
        }
        let cms_failback = operation.kind == OperationKind::CmsFailback;
        if let Some(running) = self.operations.get(&pool) {
            if cms_failback
                && running.kind == OperationKind::CmsFailback
                && running.by == operation.by
            {
                // A CMS failback that stopped after its fence, run again by its pool: it goes
                // on from where it stopped.
                return Ok(CmsOutcome::OperationBegun);
            }
        }
        let current = if cms_failback {
            self.cms_owner
        } else {
            self.ownership.get(&pool).copied()
        };
        if current != Some(operation.from) {
            return Err(CmsRefusal::OwnershipChanged {
                pool,
                seen: operation.from,
                current,
            });
        }
        // A CMS failback fences the CMS, which every other operation writes to: it runs alone.
        let blocking = self.operations.iter().find(|(other, running)| {
            **other == pool || cms_failback || running.kind == OperationKind::CmsFailback
        });
        if let Some((other, running)) = blocking {
            return Err(CmsRefusal::OperationInFlight {
                pool: *other,
                running: running.clone(),
            });
        }
        self.operations.insert(pool, operation);
        Ok(CmsOutcome::OperationBegun)
    }

    /// Ends `pool`'s operation, of `kind` when given.
    fn end_operation(
        &mut self,
        pool: PoolId,
        kind: Option<OperationKind>,
    ) -> Result<CmsOutcome, CmsRefusal> {
        match self.operations.get(&pool) {
            Some(running) if kind.is_none_or(|kind| kind == running.kind) => {
                self.operations.remove(&pool);
                Ok(CmsOutcome::OperationEnded)
            }
            _ => Err(CmsRefusal::NoOperation(pool)),
        }
    }
}

#[cfg(test)]
mod tests;
