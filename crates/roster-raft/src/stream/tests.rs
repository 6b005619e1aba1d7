//! The copy side of the stream: a copy fed its source's log in batches, or restored from its
//! source's state, equals the source at the same index; gaps, other sources and stale epochs
//! are refused without a change.

use std::collections::BTreeSet;

use openraft::vote::RaftLeaderIdExt;
use roster_cms::{CmsCommand, Ownership, UserRecord};
use roster_registrar::{
    BindingKey, Command, ContactChange, ContactUpdate, Policy, RegisterCommand,
};

use super::*;
use crate::{GroupResponse, GroupState, ReplicatedState};

const T0: u64 = 1_700_000_000_000;
const SOURCE: GroupKey = GroupKey {
    pool: 1,
    kind: crate::GroupKind::Routing(3),
};

fn log_id(index: u64) -> typ::LogId {
    typ::LogId::new(typ::LeaderId::new_committed(1, 1), index)
}

fn register(user: u64, cseq: u32, expires_s: u32) -> Command {
    let uri = format!("sip:u{user}@192.0.2.{}:5060", user % 250);
    Command::Register(RegisterCommand {
        aor: format!("sip:u{user}@example.com"),
        call_id: format!("call-{user}"),
        cseq,
        change: ContactChange::Update(vec![ContactUpdate {
            key: BindingKey::Uri(uri.clone()),
            contact: format!("<{uri}>"),
            q_milli: None,
            expires_s,
            instance: None,
            reg_id: None,
        }]),
        path: vec![],
        received: None,
        user_agent: Some("test".into()),
        bindings_max: None,
    })
}

/// A source's log: a membership, a blank, then `count` registrations (some users twice, some
/// expiring soon, a purge) with leader timestamps that sometimes step back.
fn source_log(count: u64) -> Vec<typ::Entry> {
    let members = typ::Membership::new_with_defaults(vec![BTreeSet::from([1, 2, 3])], []);
    let mut entries = vec![
        typ::Entry {
            log_id: log_id(1),
            payload: EntryPayload::Membership(members),
        },
        typ::Entry {
            log_id: log_id(2),
            payload: EntryPayload::Blank,
        },
    ];
    for n in 0..count {
        let index = 3 + n;
        let timestamp = T0 + n * 1000 - (n % 7) * 1500;
        let request = if n % 50 == 49 {
            GroupRequest::registrar(1, timestamp, Command::PurgeExpired)
        } else {
            let user = n % 40;
            let cseq = u32::try_from(n / 40 + 1).unwrap_or(u32::MAX);
            GroupRequest::registrar(
                1,
                timestamp,
                register(user, cseq, if n % 3 == 0 { 60 } else { 3600 }),
            )
        };
        entries.push(typ::Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(request),
        });
    }
    entries
}

/// The source's state after applying `entries`.
fn source_state(entries: &[typ::Entry]) -> GroupState {
    let mut state = GroupState::new(Policy::default());
    for entry in entries {
        state.apply(entry).expect("in order");
    }
    state
}

/// A copy's log applies `request` at the copy's next index.
fn propose(copy: &mut GroupState, request: GroupRequest) -> GroupResponse {
    let index = copy.last_applied().map_or(1, |id| id.index + 1);
    copy.apply(&typ::Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(request),
    })
    .expect("in order")
}

/// Every AOR's stored bindings, sorted: equal registries, whatever their hash order.
fn bindings(state: &GroupState) -> Vec<(String, roster_registrar::Binding)> {
    state
        .registry()
        .expect("a routing group")
        .sorted_entries()
        .into_iter()
        .flat_map(|(aor, bindings)| {
            bindings
                .into_iter()
                .map(move |binding| (aor.clone(), binding))
        })
        .collect()
}

fn assert_same(copy: &GroupState, source: &GroupState) {
    assert_eq!(bindings(copy), bindings(source));
    assert_eq!(copy.epoch(), source.epoch());
    assert_eq!(copy.last_time_ms(), source.last_time_ms());
}

/// Ships `log` (from `after`) in batches into `copy`, returning how many batches it took.
fn ship(copy: &mut GroupState, log: &[typ::Entry], mut after: u64) -> usize {
    let mut batches = 0;
    while let Some(batch) = batch_of(
        SOURCE,
        1,
        after,
        log.iter()
            .skip_while(|entry| entry.log_id.index <= after)
            .take(37),
    ) {
        let through = batch.through;
        assert_eq!(
            propose(copy, GroupRequest::replicate(batch)),
            GroupResponse::Replicated { position: through }
        );
        after = through;
        batches += 1;
    }
    batches
}

#[test]
fn a_copy_fed_in_batches_equals_its_source_at_every_index() {
    let log = source_log(400);
    let mut copy = GroupState::new(Policy::default());
    let mut after = 0;
    for cut in [5, 60, 61, 250, log.len()] {
        ship(&mut copy, &log[..cut], after);
        after = log[cut - 1].log_id.index;
        assert_same(&copy, &source_state(&log[..cut]));
        assert_eq!(
            copy.stream(),
            Some(StreamPosition {
                source: SOURCE,
                index: after
            })
        );
    }
}

#[test]
fn duplicates_change_nothing_and_gaps_are_refused() {
    let log = source_log(100);
    let mut copy = GroupState::new(Policy::default());
    ship(&mut copy, &log[..50], 0);
    let before = bindings(&copy);
    // A batch already applied: the copy says where it stands, and nothing changes.
    let old = batch_of(SOURCE, 1, 10, &log[10..20]).expect("batch");
    assert_eq!(
        propose(&mut copy, GroupRequest::replicate(old)),
        GroupResponse::Replicated { position: 50 }
    );
    // A batch past the copy's position: refused with the position to send from.
    let ahead = batch_of(SOURCE, 1, 60, &log[60..70]).expect("batch");
    assert_eq!(
        propose(&mut copy, GroupRequest::replicate(ahead)),
        GroupResponse::ReplicaRefused(ReplicaRefusal::Gap { position: 50 })
    );
    assert_eq!(bindings(&copy), before);
    // An overlapping batch applies only what is new.
    let overlap = batch_of(SOURCE, 1, 40, &log[40..80]).expect("batch");
    assert_eq!(
        propose(&mut copy, GroupRequest::replicate(overlap)),
        GroupResponse::Replicated { position: 80 }
    );
    assert_same(&copy, &source_state(&log[..80]));
}

#[test]
fn another_source_and_a_history_of_its_own_are_refused() {
    let log = source_log(20);
    let mut copy = GroupState::new(Policy::default());
    ship(&mut copy, &log, 0);
    let mut other = batch_of(SOURCE, 1, 0, &log[..3]).expect("batch");
    other.source = GroupKey::routing(1, 4);
    assert_eq!(
        propose(&mut copy, GroupRequest::replicate(other)),
        GroupResponse::ReplicaRefused(ReplicaRefusal::OtherSource { followed: SOURCE })
    );
    // A group that served writes of its own cannot start following a stream from scratch.
    let mut own = GroupState::new(Policy::default());
    propose(
        &mut own,
        GroupRequest::registrar(1, T0, register(1, 1, 3600)),
    );
    let first = batch_of(SOURCE, 1, 0, &log[..5]).expect("batch");
    assert_eq!(
        propose(&mut own, GroupRequest::replicate(first)),
        GroupResponse::ReplicaRefused(ReplicaRefusal::NotPristine)
    );
}

#[test]
fn a_promoted_copy_refuses_the_old_owners_batches() {
    let log = source_log(60);
    let mut copy = GroupState::new(Policy::default());
    ship(&mut copy, &log[..30], 0);
    // Failover: the copy's pool owns the users now, at epoch 2.
    assert_eq!(
        propose(&mut copy, GroupRequest::set_epoch(2, T0)),
        GroupResponse::EpochSet { epoch: 2 }
    );
    let late = batch_of(SOURCE, 1, 30, &log[30..]).expect("batch");
    assert_eq!(
        propose(&mut copy, GroupRequest::replicate(late)),
        GroupResponse::StaleEpoch { current: 2 }
    );
    assert_eq!(copy.stream().map(|stream| stream.index), Some(30));
}

#[test]
fn a_restore_in_small_pieces_then_the_stream_equals_the_source() {
    let log = source_log(300);
    let at = 200;
    let source = source_state(&log[..at]);
    let at_index = log[at - 1].log_id.index;
    let chunks = restore_chunks(
        SOURCE,
        source.content(),
        source.epoch(),
        at_index,
        source.last_time_ms(),
        1_000,
    );
    assert!(chunks.len() > 3, "small pieces: {}", chunks.len());
    let mut copy = GroupState::new(Policy::default());
    // A piece out of order before part 0 is refused.
    assert!(matches!(
        propose(&mut copy, GroupRequest::restore(chunks[1].clone())),
        GroupResponse::ReplicaRefused(ReplicaRefusal::RestoreOrder { .. })
    ));
    for chunk in &chunks {
        let response = propose(&mut copy, GroupRequest::restore(chunk.clone()));
        if chunk.last {
            assert_eq!(response, GroupResponse::Replicated { position: at_index });
        } else {
            assert_eq!(
                response,
                GroupResponse::Restoring {
                    next_part: chunk.part + 1
                }
            );
            // Staged only: the copy is not a mix of two histories.
            assert!(bindings(&copy).is_empty());
            // The same piece again (its answer lost): answered as the first time.
            assert_eq!(
                propose(&mut copy, GroupRequest::restore(chunk.clone())),
                GroupResponse::Restoring {
                    next_part: chunk.part + 1
                }
            );
        }
    }
    assert_same(&copy, &source);
    ship(&mut copy, &log, at_index);
    assert_same(&copy, &source_state(&log));
}

#[test]
fn a_cms_copy_follows_its_source() {
    let key = GroupKey::cms(1);
    let deployment = roster_topology::Deployment::parse(
        "[deployment]\nname = \"t\"\n[[site]]\nname = \"s\"\n[[pool]]\nid = 1\nname = \"a\"\nsite = \"s\"\n\
         [[node]]\nid = 1\npool = \"a\"\ncluster = \"127.0.0.1:1\"\n\
         [[node]]\nid = 2\npool = \"a\"\ncluster = \"127.0.0.1:2\"\n\
         [[node]]\nid = 3\npool = \"a\"\ncluster = \"127.0.0.1:3\"\n",
    )
    .expect("deployment");
    let user = |name: &str| UserRecord {
        aor: format!("sip:{name}@example.com"),
        home: 1,
        credentials: roster_auth::Credentials::from_password(name, "example.com", "pw"),
        bindings_max: None,
        enabled: true,
    };
    let commands = [
        CmsCommand::SetDeployment(deployment),
        CmsCommand::PutUsers {
            users: vec![user("a"), user("b")],
            replace: false,
        },
        CmsCommand::SetOwnership {
            pool: 1,
            ownership: Ownership { owner: 1, epoch: 2 },
        },
        CmsCommand::RemoveUsers {
            aors: vec!["sip:a@example.com".into()],
        },
    ];
    let log: Vec<typ::Entry> = commands
        .into_iter()
        .enumerate()
        .map(|(n, command)| typ::Entry {
            log_id: log_id(n as u64 + 1),
            payload: EntryPayload::Normal(GroupRequest::cms(1, T0 + n as u64, command)),
        })
        .collect();
    let mut source = GroupState::cms();
    for entry in &log {
        source.apply(entry).expect("in order");
    }
    let mut copy = GroupState::cms();
    let batch = batch_of(key, 1, 0, &log).expect("batch");
    assert_eq!(
        propose(&mut copy, GroupRequest::replicate(batch)),
        GroupResponse::Replicated { position: 4 }
    );
    assert_eq!(copy.cms_state(), source.cms_state());
    // And by restore.
    let chunks = restore_chunks(key, source.content(), 1, 4, source.last_time_ms(), 100);
    let mut restored = GroupState::cms();
    for chunk in chunks {
        propose(&mut restored, GroupRequest::restore(chunk));
    }
    assert_eq!(restored.cms_state(), source.cms_state());
}
