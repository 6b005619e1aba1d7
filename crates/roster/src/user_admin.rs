//! [`UserAdmin`]: the directory's admin operations (`admin_api::users`) over a pool node: reads
//! from its replica of the CMS (or of its backup copy), writes through
//! `PoolNode::cms_write`, which reaches the CMS's leader, in this pool or in the partner.
//!
//! The CMS's refusals become `400`, `404` or `409` naming the user; a CMS without a leader or
//! quorum, or out of reach from the partner, becomes `503` with `Retry-After`.

use std::sync::Arc;

use roster_cms::{CmsCommand, CmsOutcome, CmsRefusal, CmsState, UserRecord, USERS_PER_COMMAND_MAX};
use roster_net::Network;
use roster_pool::{PoolError, PoolNode};
use roster_raft::{GroupRequest, ReplicatedState as _};
use roster_topology::Deployment;

use crate::admin_api::users::{
    canonical_aor, DirectoryInfo, NewUser, PoolName, PoolUsers, PutUsers, PutUsersAnswer,
    RemoveUsers, RemoveUsersAnswer, ReplicaView, SetEnabled, UserPage, UserView,
    USERS_PAGE_DEFAULT, USERS_PAGE_MAX,
};
use crate::http::admin::{AdminError, AdminFuture, UserListQuery, UsersAdmin};

/// What the node's directory operations need besides the pool node.
#[derive(Clone, Debug)]
pub struct DirectorySettings {
    /// The deployment the node started with (used until the CMS holds one).
    pub deployment: Deployment,
    /// The realm the node challenges in; `None` without authentication.
    pub realm: Option<String>,
    /// The SIP domains served.
    pub domains: Vec<String>,
}

/// [`UsersAdmin`] over a pool node.
pub struct UserAdmin<N: Network> {
    node: Arc<PoolNode<N>>,
    settings: Arc<DirectorySettings>,
}

impl<N: Network> UserAdmin<N> {
    /// The directory's operations over `node`.
    pub fn new(node: Arc<PoolNode<N>>, settings: DirectorySettings) -> UserAdmin<N> {
        UserAdmin {
            node,
            settings: Arc::new(settings),
        }
    }

    /// Runs `read` on this node's replica of the CMS (or of its copy) with the deployment it
    /// holds (or the node's, before the CMS has one), and says which replica it was.
    fn read<R>(
        &self,
        read: impl FnOnce(&CmsState, &Deployment) -> Result<R, AdminError>,
    ) -> Result<(R, ReplicaView), AdminError> {
        let key = self.node.options().cms_key().ok_or_else(no_cms)?;
        let handle = self.node.cms_state().ok_or_else(no_cms)?;
        let settings = &self.settings;
        handle
            .read(|state| {
                let empty = CmsState::default();
                let cms = state.cms_state().unwrap_or(&empty);
                let deployment = cms.deployment().unwrap_or(&settings.deployment);
                let replica = ReplicaView {
                    kind: if key.is_home() { "cms" } else { "cms-backup" }.to_string(),
                    applied_index: state.last_applied().map(|id| id.index),
                };
                read(cms, deployment).map(|answer| (answer, replica))
            })
            .map_err(|error| AdminError::unavailable(format!("the CMS replica: {error}"), 1))?
    }

    /// The deployment to resolve pool names in: the CMS's (the one its checks use).
    fn deployment(&self) -> Result<Deployment, AdminError> {
        self.read(|_, deployment| Ok(deployment.clone()))
            .map(|(deployment, _)| deployment)
    }
}

impl<N: Network> UsersAdmin for UserAdmin<N> {
    fn directory(&self) -> AdminFuture {
        let settings = self.settings.clone();
        let pool = self.node.pool();
        let answer = self.read(|cms, deployment| {
            let pools = deployment
                .pool
                .iter()
                .map(|spec| PoolUsers {
                    pool: PoolName::of(deployment, spec.id),
                    users: cms.users_homed_on(spec.id),
                })
                .collect();
            Ok(DirectoryInfo {
                realm: settings.realm.clone(),
                domains: settings.domains.clone(),
                cms_pool: PoolName::of(deployment, deployment.cms_pool()),
                pool: PoolName::of(deployment, pool),
                users: cms.user_count(),
                pools,
                users_per_command_max: USERS_PER_COMMAND_MAX,
                replica: ReplicaView {
                    kind: String::new(),
                    applied_index: None,
                },
            })
        });
        ready(answer.map(|(mut info, replica)| {
            info.replica = replica;
            info
        }))
    }

    fn list(&self, query: UserListQuery) -> AdminFuture {
        let answer = self.read(|cms, deployment| page(cms, deployment, &query));
        ready(answer.map(|(mut page, replica)| {
            page.replica = replica;
            page
        }))
    }

    fn show(&self, aor: String) -> AdminFuture {
        let answer = canonical_aor(&aor)
            .map_err(|error| AdminError::new(400, error).about(aor.clone()))
            .and_then(|aor| {
                self.read(|cms, deployment| {
                    cms.user(&aor)
                        .map(|user| UserView::of(user, PoolName::of(deployment, user.home)))
                        .ok_or_else(|| {
                            AdminError::new(404, format!("no user {aor}")).about(aor.clone())
                        })
                })
            });
        ready(answer.map(|(view, _)| view))
    }

    fn put(&self, request: PutUsers) -> AdminFuture {
        let node = self.node.clone();
        let command = self.deployment().and_then(|deployment| {
            let records = records(&request.users, &deployment)?;
            Ok(CmsCommand::PutUsers {
                users: records,
                replace: request.replace,
            })
        });
        Box::pin(async move {
            let command = fits(command?)?;
            match node.cms_write(command).await.map_err(unavailable)? {
                CmsOutcome::UsersPut { added, replaced } => {
                    json(PutUsersAnswer { added, replaced })
                }
                other => Err(outcome_error(other)),
            }
        })
    }

    fn remove(&self, request: RemoveUsers) -> AdminFuture {
        let node = self.node.clone();
        let command = count_checked(request.aors.len()).and_then(|()| {
            let aors = request
                .aors
                .iter()
                .map(|aor| {
                    canonical_aor(aor).map_err(|error| AdminError::new(400, error).about(aor))
                })
                .collect::<Result<Vec<String>, AdminError>>()?;
            Ok(CmsCommand::RemoveUsers { aors })
        });
        Box::pin(async move {
            match node.cms_write(command?).await.map_err(unavailable)? {
                CmsOutcome::UsersRemoved { removed, not_found } => {
                    json(RemoveUsersAnswer { removed, not_found })
                }
                other => Err(outcome_error(other)),
            }
        })
    }

    fn set_enabled(&self, request: SetEnabled) -> AdminFuture {
        let node = self.node.clone();
        let aor = canonical_aor(&request.aor)
            .map_err(|error| AdminError::new(400, error).about(request.aor.clone()));
        let enabled = request.enabled;
        Box::pin(async move {
            let aor = aor?;
            let command = CmsCommand::SetEnabled {
                aor: aor.clone(),
                enabled,
            };
            match node.cms_write(command).await.map_err(unavailable)? {
                CmsOutcome::UserUpdated => json(SetEnabled { aor, enabled }),
                other => Err(outcome_error(other)),
            }
        })
    }
}

/// A page of `cms`'s users, by AOR: all, or those homed on `query.pool`.
fn page(
    cms: &CmsState,
    deployment: &Deployment,
    query: &UserListQuery,
) -> Result<UserPage, AdminError> {
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(USERS_PAGE_DEFAULT);
    if limit == 0 || limit > USERS_PAGE_MAX {
        return Err(AdminError::new(
            400,
            format!("limit must be between 1 and {USERS_PAGE_MAX}, not {limit}"),
        ));
    }
    let pool = match &query.pool {
        None => None,
        Some(name) => Some(
            deployment
                .pool_by_name(name)
                .map(|spec| PoolName::of(deployment, spec.id))
                .ok_or_else(|| unknown_pool(deployment, name))?,
        ),
    };
    let home = pool.as_ref().map(|pool| pool.id);
    let matching = || {
        cms.users()
            .filter(move |user| home.is_none_or(|home| user.home == home))
    };
    let total = match home {
        None => cms.user_count(),
        Some(home) => cms.users_homed_on(home),
    };
    let users = matching()
        .skip(offset)
        .take(limit)
        .map(|user| UserView::of(user, PoolName::of(deployment, user.home)))
        .collect();
    Ok(UserPage {
        total,
        offset,
        limit,
        pool,
        users,
        replica: ReplicaView {
            kind: String::new(),
            applied_index: None,
        },
    })
}

/// The CMS records of `users`, homed by pool name in `deployment` (default: the CMS's pool);
/// the first that cannot be stored is named.
fn records(users: &[NewUser], deployment: &Deployment) -> Result<Vec<UserRecord>, AdminError> {
    count_checked(users.len())?;
    users
        .iter()
        .map(|user| {
            user.to_record(|pool| match pool {
                None => Ok(deployment.cms_pool()),
                Some(name) => deployment
                    .pool_by_name(name)
                    .map(|spec| spec.id)
                    .ok_or_else(|| unknown_pool(deployment, name).message),
            })
            .map_err(|error| AdminError::new(400, error).about(user.aor.clone()))
        })
        .collect()
}

/// Refuses an empty request or one above [`USERS_PER_COMMAND_MAX`] users.
fn count_checked(count: usize) -> Result<(), AdminError> {
    if count == 0 || count > USERS_PER_COMMAND_MAX {
        return Err(AdminError::new(
            400,
            format!("{count} users in one request; send 1 to {USERS_PER_COMMAND_MAX}"),
        ));
    }
    Ok(())
}

/// `command` if it fits one log entry, else `413`: users with long AORs and names fill an entry
/// before [`USERS_PER_COMMAND_MAX`] of them do.
fn fits(command: CmsCommand) -> Result<CmsCommand, AdminError> {
    let request = GroupRequest::cms(u64::MAX, u64::MAX, command);
    request.check_size().map_err(|error| {
        AdminError::new(
            413,
            format!("the users do not fit one CMS command ({error}); send fewer at once"),
        )
    })?;
    match request.command {
        roster_raft::GroupCommand::Cms(command) => Ok(Arc::unwrap_or_clone(command)),
        _ => Err(AdminError::new(500, "a CMS request without its command")),
    }
}

/// How the routes answer a CMS outcome other than the one asked for: a refusal, by its kind.
fn outcome_error(outcome: CmsOutcome) -> AdminError {
    match outcome {
        CmsOutcome::Refused(refusal) => refused(refusal),
        other => AdminError::new(500, format!("unexpected answer of the CMS: {other:?}")),
    }
}

/// The HTTP error of a CMS refusal: `400` for a malformed request, `404` for a user that does
/// not exist, `409` for a conflict with the directory as it is, `503` before the deployment is
/// published (a pool just created).
pub fn refused(refusal: CmsRefusal) -> AdminError {
    let message = refusal.to_string();
    match refusal {
        CmsRefusal::NoDeployment => AdminError::unavailable(message, 1),
        CmsRefusal::UnknownPool(_)
        | CmsRefusal::InvalidUser(_)
        | CmsRefusal::TooMany { .. }
        | CmsRefusal::InvalidDeployment(_) => AdminError::new(400, message),
        CmsRefusal::Duplicate(aor) => AdminError::new(400, message).about(aor),
        CmsRefusal::NotFound(aor) => AdminError::new(404, message).about(aor),
        CmsRefusal::Exists(aor) => AdminError::new(409, message).about(aor),
        CmsRefusal::UsernameTaken { username, aor } => AdminError::new(409, message)
            .about(aor)
            .about_username(username),
        CmsRefusal::GroupsChanged { .. }
        | CmsRefusal::PoolHasUsers { .. }
        | CmsRefusal::StaleEpoch { .. }
        | CmsRefusal::OwnershipChanged { .. }
        | CmsRefusal::OperationInFlight { .. }
        | CmsRefusal::NoOperation(_) => AdminError::new(409, message),
    }
}

/// The HTTP error of a CMS write that did not reach a decision: `503` with `Retry-After`.
pub fn unavailable(error: PoolError) -> AdminError {
    match error {
        PoolError::Unavailable {
            group,
            reason,
            retry_after_s,
        } => AdminError::unavailable(
            format!("the CMS ({group}) cannot take the change now: {reason}"),
            retry_after_s,
        ),
        PoolError::Internal(reason) => AdminError::unavailable(reason, 5),
    }
}

fn no_cms() -> AdminError {
    AdminError::new(
        409,
        "this node's pool holds neither the CMS nor its backup copy: ask a node of the CMS's \
         pool or of its partner",
    )
}

fn unknown_pool(deployment: &Deployment, name: &str) -> AdminError {
    let names: Vec<&str> = deployment
        .pool
        .iter()
        .map(|pool| pool.name.as_str())
        .collect();
    AdminError::new(
        400,
        format!(
            "no pool {name:?} in the deployment (pools: {})",
            names.join(", ")
        ),
    )
}

fn json(value: impl serde::Serialize) -> Result<serde_json::Value, AdminError> {
    serde_json::to_value(value)
        .map_err(|error| AdminError::new(500, format!("cannot encode the answer: {error}")))
}

fn ready<T: serde::Serialize>(answer: Result<T, AdminError>) -> AdminFuture {
    Box::pin(std::future::ready(answer.and_then(json)))
}

#[cfg(test)]
mod tests {
    use roster_auth::Credentials;

    use super::*;
    use crate::test_support::paired_deployment;

    fn state(users: usize) -> CmsState {
        let mut cms = CmsState::default();
        cms.apply(&CmsCommand::SetDeployment(paired_deployment("east")));
        let records: Vec<UserRecord> = (0..users)
            .map(|i| UserRecord {
                aor: format!("sip:u{i:03}@example.com"),
                home: if i % 2 == 0 { 1 } else { 2 },
                credentials: Credentials::from_password(&format!("u{i}"), "example.com", "pw"),
                bindings_max: None,
                enabled: true,
            })
            .collect();
        for chunk in records.chunks(USERS_PER_COMMAND_MAX) {
            let outcome = cms.apply(&CmsCommand::PutUsers {
                users: chunk.to_vec(),
                replace: false,
            });
            assert!(
                matches!(outcome, CmsOutcome::UsersPut { .. }),
                "{outcome:?}"
            );
        }
        cms
    }

    fn query(offset: Option<usize>, limit: Option<usize>, pool: Option<&str>) -> UserListQuery {
        UserListQuery {
            offset,
            limit,
            pool: pool.map(str::to_string),
        }
    }

    #[test]
    fn pages_go_by_aor_and_by_home_pool() {
        let cms = state(300);
        let deployment = paired_deployment("east");
        let first = page(&cms, &deployment, &query(None, None, None)).expect("page");
        assert_eq!((first.total, first.offset, first.limit), (300, 0, 100));
        assert_eq!(first.users.len(), 100);
        assert_eq!(first.users[0].aor, "sip:u000@example.com");
        let last = page(&cms, &deployment, &query(Some(250), Some(100), None)).expect("page");
        assert_eq!(last.users.len(), 50);
        assert_eq!(last.users[49].aor, "sip:u299@example.com");
        let west = page(&cms, &deployment, &query(Some(10), Some(5), Some("west"))).expect("page");
        assert_eq!(west.total, 150);
        assert_eq!(west.pool.as_ref().map(|pool| pool.id), Some(2));
        let aors: Vec<&str> = west.users.iter().map(|user| user.aor.as_str()).collect();
        assert_eq!(
            aors,
            [
                "sip:u021@example.com",
                "sip:u023@example.com",
                "sip:u025@example.com",
                "sip:u027@example.com",
                "sip:u029@example.com"
            ]
        );
        assert!(west.users.iter().all(|user| user.pool.name == "west"));
    }

    #[test]
    fn bad_pages_are_400_naming_the_problem() {
        let cms = state(3);
        let deployment = paired_deployment("east");
        let error = page(&cms, &deployment, &query(None, Some(0), None)).unwrap_err();
        assert_eq!(error.status, 400);
        let error = page(
            &cms,
            &deployment,
            &query(None, Some(USERS_PAGE_MAX + 1), None),
        )
        .unwrap_err();
        assert_eq!(error.status, 400);
        let error = page(&cms, &deployment, &query(None, None, Some("mars"))).unwrap_err();
        assert_eq!(error.status, 400);
        assert!(error.message.contains("east, west"), "{}", error.message);
    }

    #[test]
    fn new_users_resolve_pools_by_name_and_default_to_the_cms_pool() {
        let deployment = paired_deployment("east");
        let mut west = NewUser::from_password("sip:w@example.com", "w", "example.com", "pw");
        west.pool = Some("west".into());
        let plain = NewUser::from_password("sip:e@example.com", "e", "example.com", "pw");
        let records = records(&[west, plain], &deployment).expect("valid");
        assert_eq!(records[0].home, 2);
        assert_eq!(records[1].home, 1);
        let mut mars = NewUser::from_password("sip:m@example.com", "m", "example.com", "pw");
        mars.pool = Some("mars".into());
        let error = records_error(&[mars], &deployment);
        assert_eq!(
            (error.status, error.aor.as_deref()),
            (400, Some("sip:m@example.com"))
        );
        let error = records_error(&[], &deployment);
        assert_eq!(error.status, 400);
    }

    fn records_error(users: &[NewUser], deployment: &Deployment) -> AdminError {
        match records(users, deployment) {
            Ok(_) => panic!("refused"),
            Err(error) => error,
        }
    }

    #[test]
    fn refusals_map_to_statuses_naming_the_user() {
        let exists = refused(CmsRefusal::Exists("sip:a@x".into()));
        assert_eq!(
            (exists.status, exists.aor.as_deref()),
            (409, Some("sip:a@x"))
        );
        let missing = refused(CmsRefusal::NotFound("sip:a@x".into()));
        assert_eq!(missing.status, 404);
        let taken = refused(CmsRefusal::UsernameTaken {
            username: "a".into(),
            aor: "sip:b@x".into(),
        });
        assert_eq!((taken.status, taken.username.as_deref()), (409, Some("a")));
        assert_eq!(refused(CmsRefusal::Duplicate("sip:a@x".into())).status, 400);
        assert_eq!(refused(CmsRefusal::TooMany { count: 300 }).status, 400);
        let early = refused(CmsRefusal::NoDeployment);
        assert_eq!((early.status, early.retry_after_s), (503, Some(1)));
        let down = unavailable(PoolError::Unavailable {
            group: roster_raft::GroupKey::cms(1),
            reason: "no leader".into(),
            retry_after_s: 2,
        });
        assert_eq!((down.status, down.retry_after_s), (503, Some(2)));
        assert!(down.message.contains("no leader"), "{}", down.message);
    }

    #[test]
    fn a_command_too_large_for_an_entry_is_413() {
        let long = |i: usize| UserRecord {
            aor: format!("sip:{}{i:03}@example.com", "a".repeat(230)),
            home: 1,
            credentials: Credentials::from_password(
                &format!("{}{i:03}", "n".repeat(120)),
                "example.com",
                "pw",
            ),
            bindings_max: Some(3),
            enabled: true,
        };
        let users: Vec<UserRecord> = (0..USERS_PER_COMMAND_MAX).map(long).collect();
        let error = fits(CmsCommand::PutUsers {
            users: users.clone(),
            replace: false,
        })
        .unwrap_err();
        assert_eq!(error.status, 413);
        let command = CmsCommand::PutUsers {
            users: users[..10].to_vec(),
            replace: false,
        };
        assert_eq!(fits(command.clone()).expect("fits"), command);
    }
}
