use roster_auth::Credentials;

use crate::ownership::{Operation, OperationKind};

use super::*;

fn deployment(groups_b: u32) -> Deployment {
    let mut text = String::from(
        "[deployment]\nname = \"t\"\n[[site]]\nname = \"s1\"\n[[site]]\nname = \"s2\"\n\
         [[pool]]\nid = 1\nname = \"a\"\nsite = \"s1\"\n",
    );
    text += &format!("[[pool]]\nid = 2\nname = \"b\"\nsite = \"s2\"\ngroups = {groups_b}\n");
    text += "[[pair]]\npools = [\"a\", \"b\"]\n";
    for id in 1..=6 {
        let pool = if id <= 3 { "a" } else { "b" };
        text += &format!(
            "[[node]]\nid = {id}\npool = \"{pool}\"\ncluster = \"127.0.0.1:{}\"\n",
            7000 + id
        );
    }
    Deployment::parse(&text).expect("valid deployment")
}

fn user(name: &str, home: PoolId) -> UserRecord {
    UserRecord {
        aor: format!("sip:{name}@example.com"),
        home,
        credentials: Credentials::from_password(name, "example.com", "pw"),
        bindings_max: None,
        enabled: true,
    }
}

fn with_deployment() -> CmsState {
    let mut state = CmsState::default();
    assert_eq!(
        state.apply(&CmsCommand::SetDeployment(deployment(8))),
        CmsOutcome::DeploymentSet { pools: 2 }
    );
    state
}

#[test]
fn users_need_a_deployment_and_a_known_home() {
    let mut state = CmsState::default();
    let put = CmsCommand::PutUsers {
        users: vec![user("alice", 1)],
        replace: false,
    };
    assert_eq!(
        state.apply(&put),
        CmsOutcome::Refused(CmsRefusal::NoDeployment)
    );
    let mut state = with_deployment();
    let stray = CmsCommand::PutUsers {
        users: vec![user("alice", 9)],
        replace: false,
    };
    assert_eq!(
        state.apply(&stray),
        CmsOutcome::Refused(CmsRefusal::UnknownPool(9))
    );
    assert_eq!(
        state.apply(&put),
        CmsOutcome::UsersPut {
            added: 1,
            replaced: 0
        }
    );
    assert_eq!(state.user("sip:alice@example.com").map(|u| u.home), Some(1));
    assert_eq!(
        state.user_by_username("alice").map(|u| u.aor.as_str()),
        Some("sip:alice@example.com")
    );
}

#[test]
fn a_refused_batch_changes_nothing() {
    let mut state = with_deployment();
    let mut bob = user("bob", 2);
    bob.credentials.username = "alice".into();
    let before = state.clone();
    let refused = state.apply(&CmsCommand::PutUsers {
        users: vec![user("alice", 1), bob],
        replace: false,
    });
    assert!(
        matches!(
            refused,
            CmsOutcome::Refused(CmsRefusal::UsernameTaken { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(state, before);
    let twice = state.apply(&CmsCommand::PutUsers {
        users: vec![user("carol", 1), user("carol", 2)],
        replace: false,
    });
    assert!(matches!(
        twice,
        CmsOutcome::Refused(CmsRefusal::Duplicate(_))
    ));
    assert_eq!(state, before);
}

#[test]
fn replace_and_remove_keep_the_username_index() {
    let mut state = with_deployment();
    state.apply(&CmsCommand::PutUsers {
        users: vec![user("alice", 1)],
        replace: false,
    });
    let again = CmsCommand::PutUsers {
        users: vec![user("alice", 2)],
        replace: false,
    };
    assert!(matches!(
        state.apply(&again),
        CmsOutcome::Refused(CmsRefusal::Exists(_))
    ));
    let mut renamed = user("alice", 2);
    renamed.credentials.username = "alice2".into();
    assert_eq!(
        state.apply(&CmsCommand::PutUsers {
            users: vec![renamed],
            replace: true
        }),
        CmsOutcome::UsersPut {
            added: 0,
            replaced: 1
        }
    );
    assert!(state.user_by_username("alice").is_none());
    assert_eq!(state.user_by_username("alice2").map(|u| u.home), Some(2));
    assert_eq!(
        state.apply(&CmsCommand::RemoveUsers {
            aors: vec![
                "sip:alice@example.com".into(),
                "sip:nobody@example.com".into()
            ]
        }),
        CmsOutcome::UsersRemoved {
            removed: 1,
            not_found: 1
        }
    );
    assert!(state.user_by_username("alice2").is_none());
    assert_eq!(state.user_count(), 0);
}

#[test]
fn a_pool_keeps_its_groups_and_its_users() {
    let mut state = with_deployment();
    assert_eq!(
        state.apply(&CmsCommand::SetDeployment(deployment(16))),
        CmsOutcome::Refused(CmsRefusal::GroupsChanged {
            pool: 2,
            from: 8,
            to: 16
        })
    );
    assert_eq!(state.ownership(2), Some(Ownership { owner: 2, epoch: 1 }));
}

#[test]
fn ownership_epochs_only_rise() {
    let mut state = with_deployment();
    let failover = CmsCommand::SetOwnership {
        pool: 1,
        ownership: Ownership { owner: 2, epoch: 2 },
    };
    assert_eq!(
        state.apply(&failover),
        CmsOutcome::OwnershipSet { epoch: 2 }
    );
    // The same change again (a retried step whose answer was lost) is done already.
    assert_eq!(
        state.apply(&failover),
        CmsOutcome::OwnershipSet { epoch: 2 }
    );
    // Another owner at the same epoch is not.
    let other = CmsCommand::SetOwnership {
        pool: 1,
        ownership: Ownership { owner: 1, epoch: 2 },
    };
    assert_eq!(
        state.apply(&other),
        CmsOutcome::Refused(CmsRefusal::StaleEpoch {
            asked: 2,
            current: 2
        })
    );
    assert_eq!(state.ownership(1), Some(Ownership { owner: 2, epoch: 2 }));
}

#[test]
fn malformed_users_are_refused() {
    let mut state = with_deployment();
    let mut bad = user("x", 1);
    bad.aor = "tel:+123".into();
    assert!(matches!(
        state.apply(&CmsCommand::PutUsers {
            users: vec![bad],
            replace: false
        }),
        CmsOutcome::Refused(CmsRefusal::InvalidUser(_))
    ));
    let mut no_hash = user("y", 1);
    no_hash.credentials.ha1_md5 = None;
    no_hash.credentials.ha1_sha256 = None;
    assert!(matches!(
        state.apply(&CmsCommand::PutUsers {
            users: vec![no_hash],
            replace: false
        }),
        CmsOutcome::Refused(CmsRefusal::InvalidUser(_))
    ));
}

#[test]
fn the_cms_owner_starts_on_its_pool_and_moves_only_forward() {
    let mut state = with_deployment();
    assert_eq!(state.cms_owner(), Some(Ownership { owner: 1, epoch: 1 }));
    let failover = CmsCommand::SetCmsOwner(Ownership { owner: 2, epoch: 2 });
    assert_eq!(
        state.apply(&failover),
        CmsOutcome::OwnershipSet { epoch: 2 }
    );
    assert_eq!(
        state.apply(&failover),
        CmsOutcome::OwnershipSet { epoch: 2 }
    );
    assert_eq!(
        state.apply(&CmsCommand::SetCmsOwner(Ownership { owner: 1, epoch: 2 })),
        CmsOutcome::Refused(CmsRefusal::StaleEpoch {
            asked: 2,
            current: 2
        })
    );
    // A restore carries it.
    assert_eq!(
        CmsState::restore_begin(state.head()).cms_owner(),
        state.cms_owner()
    );
}

#[test]
fn one_operation_at_a_time_per_pool() {
    let mut state = with_deployment();
    let operation = Operation {
        kind: OperationKind::Failover,
        by: 2,
        from: Ownership { owner: 1, epoch: 1 },
        started_ms: 5,
    };
    let begin = CmsCommand::BeginOperation {
        pool: 1,
        operation: operation.clone(),
    };
    assert_eq!(state.apply(&begin), CmsOutcome::OperationBegun);
    // The same begin again (retried after its answer was lost) is begun already; another
    // operation (its own start time) is refused while this one runs.
    assert_eq!(state.apply(&begin), CmsOutcome::OperationBegun);
    let second = CmsCommand::BeginOperation {
        pool: 1,
        operation: Operation {
            started_ms: 6,
            ..operation.clone()
        },
    };
    assert!(matches!(
        state.apply(&second),
        CmsOutcome::Refused(CmsRefusal::OperationInFlight { pool: 1, .. })
    ));
    // The other pool's users are another matter.
    let other = CmsCommand::BeginOperation {
        pool: 2,
        operation: Operation {
            from: Ownership { owner: 2, epoch: 1 },
            ..operation.clone()
        },
    };
    assert_eq!(state.apply(&other), CmsOutcome::OperationBegun);
    // The ownership change ends pool 1's operation.
    state.apply(&CmsCommand::SetOwnership {
        pool: 1,
        ownership: Ownership { owner: 2, epoch: 2 },
    });
    assert!(state.operation(1).is_none());
    // An operation asked from the old ownership (a stale view) is refused.
    assert!(matches!(
        state.apply(&begin),
        CmsOutcome::Refused(CmsRefusal::OwnershipChanged {
            pool: 1,
            current: Some(Ownership { owner: 2, epoch: 2 }),
            ..
        })
    ));
    assert_eq!(
        state.apply(&CmsCommand::EndOperation { pool: 2 }),
        CmsOutcome::OperationEnded
    );
    assert_eq!(
        state.apply(&CmsCommand::EndOperation { pool: 2 }),
        CmsOutcome::Refused(CmsRefusal::NoOperation(2))
    );
}

#[test]
fn a_cms_failback_runs_alone() {
    let mut state = with_deployment();
    // The CMS failed over to pool 2.
    let moved = Ownership { owner: 2, epoch: 2 };
    state.apply(&CmsCommand::SetCmsOwner(moved));
    let failover = |by, pool, started_ms| CmsCommand::BeginOperation {
        pool,
        operation: Operation {
            kind: OperationKind::Failover,
            by,
            from: Ownership {
                owner: pool,
                epoch: 1,
            },
            started_ms,
        },
    };
    let cms_failback = |started_ms, from| CmsCommand::BeginOperation {
        pool: 1,
        operation: Operation {
            kind: OperationKind::CmsFailback,
            by: 2,
            from,
            started_ms,
        },
    };
    // Not while a pool failover of either pool runs.
    assert_eq!(state.apply(&failover(1, 2, 5)), CmsOutcome::OperationBegun);
    assert!(matches!(
        state.apply(&cms_failback(6, moved)),
        CmsOutcome::Refused(CmsRefusal::OperationInFlight { pool: 2, .. })
    ));
    state.apply(&CmsCommand::EndOperation { pool: 2 });
    // Asked from a stale view of the CMS's owner: refused.
    assert!(matches!(
        state.apply(&cms_failback(6, Ownership { owner: 1, epoch: 1 })),
        CmsOutcome::Refused(CmsRefusal::OwnershipChanged { pool: 1, .. })
    ));
    assert_eq!(
        state.apply(&cms_failback(7, moved)),
        CmsOutcome::OperationBegun
    );
    // While it runs, no failover or failback of either pool begins.
    for pool in [1, 2] {
        let other = 3 - pool;
        assert!(
            matches!(
                state.apply(&failover(other, pool, 8)),
                CmsOutcome::Refused(CmsRefusal::OperationInFlight { pool: 1, .. })
            ),
            "pool {pool}"
        );
    }
    // An end of another kind (sent late, or from a stale view) ends nothing.
    assert_eq!(
        state.apply(&CmsCommand::EndOperationOf {
            pool: 1,
            kind: OperationKind::Failover,
        }),
        CmsOutcome::Refused(CmsRefusal::NoOperation(1))
    );
    // Run again by its pool after it stopped (its own start time): it goes on.
    assert_eq!(
        state.apply(&cms_failback(9, moved)),
        CmsOutcome::OperationBegun
    );
    assert_eq!(
        state.apply(&CmsCommand::EndOperationOf {
            pool: 1,
            kind: OperationKind::CmsFailback,
        }),
        CmsOutcome::OperationEnded
    );
    assert_eq!(state.apply(&failover(1, 2, 10)), CmsOutcome::OperationBegun);
}
