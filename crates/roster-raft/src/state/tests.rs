//! Tests of [`GroupState`]: determinism, time from the log only, fencing, snapshots.

use std::collections::{BTreeMap, BTreeSet};

use openraft::vote::RaftLeaderIdExt;
use roster_registrar::{
    BindingKey, Command, ContactChange, ContactUpdate, Policy, RegisterCommand, Registry,
};
use serde::Deserialize;

use super::*;
use crate::codec;
use crate::request::GroupRefusal;

/// A fixed past instant (2023-11-14), far from any real clock reading.
const T0: u64 = 1_700_000_000_000;

fn log_id(term: u64, index: u64) -> typ::LogId {
    typ::LogId::new(typ::LeaderId::new_committed(term, 1), index)
}

fn normal(index: u64, request: GroupRequest) -> typ::Entry {
    typ::Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(request),
    }
}

fn register(aor: &str, cseq: u32, uri: &str, expires_s: u32) -> Command {
    Command::Register(RegisterCommand {
        aor: aor.into(),
        call_id: "call-1".into(),
        cseq,
        change: ContactChange::Update(vec![ContactUpdate {
            key: BindingKey::Uri(uri.into()),
            contact: format!("<{uri}>"),
            q_milli: None,
            expires_s,
            instance: None,
            reg_id: None,
        }]),
        path: vec![],
        received: None,
        user_agent: None,
        bindings_max: None,
    })
}

/// A membership entry followed by commands for three AORs, with timestamps that step back.
fn history() -> Vec<typ::Entry> {
    let members = typ::Membership::new_with_defaults(vec![BTreeSet::from([1, 2, 3])], []);
    let mut entries = vec![
        typ::Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Membership(members),
        },
        typ::Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Blank,
        },
    ];
    let requests = [
        GroupRequest::registrar(1, T0, register("sip:a@x", 1, "sip:a1@h", 3600)),
        GroupRequest::registrar(1, T0 + 10, register("sip:b@x", 1, "sip:b1@h", 60)),
        GroupRequest::registrar(1, T0 - 5_000, register("sip:c@x", 1, "sip:c1@h", 600)),
        GroupRequest::registrar(1, T0 + 20, register("sip:a@x", 2, "sip:a2@h", 120)),
        GroupRequest::registrar(1, T0 + 61_000, Command::PurgeExpired),
    ];
    for (offset, request) in requests.into_iter().enumerate() {
        entries.push(normal(3 + offset as u64, request));
    }
    entries
}

/// The state with its registry's map sorted: comparable across runs, unlike a `HashMap`.
#[derive(Debug, PartialEq, Deserialize)]
struct Canonical {
    content: CanonicalContent,
    epoch: u64,
    last_applied: Option<typ::LogId>,
    last_membership: typ::StoredMembership,
    last_time_ms: u64,
    stream: Option<crate::stream::StreamPosition>,
    /// No restore is under way in these states (a staged one would not be canonical).
    restoring: Option<()>,
    overlay: crate::overlay::Overlay,
}

#[derive(Debug, PartialEq, Deserialize)]
enum CanonicalContent {
    Routing(CanonicalRegistry),
    Cms(Box<roster_cms::CmsState>),
}

#[derive(Debug, PartialEq, Deserialize)]
struct CanonicalRegistry {
    aors: BTreeMap<String, Vec<Binding>>,
    policy: Policy,
}

fn canonical(state: &GroupState) -> Canonical {
    let bytes = state.encode_snapshot().unwrap();
    codec::decode::<_, SNAPSHOT_SIZE_MAX>("canonical", &bytes[1..]).unwrap()
}

fn run(entries: &[typ::Entry]) -> (GroupState, Vec<GroupResponse>) {
    let mut state = GroupState::new(Policy::default());
    let responses = entries
        .iter()
        .map(|entry| state.apply(entry).unwrap())
        .collect();
    (state, responses)
}

#[test]
fn same_entries_same_state_and_responses() {
    let entries = history();
    let (first, first_responses) = run(&entries);
    let (second, second_responses) = run(&entries);
    assert_eq!(first_responses, second_responses);
    assert_eq!(canonical(&first), canonical(&second));
    assert_eq!(first.last_applied(), Some(log_id(1, 7)));
    assert_eq!(
        first
            .registry()
            .map(Registry::aor_count)
            .unwrap_or_default(),
        2,
        "b expired and was purged"
    );
}

#[test]
fn time_comes_from_the_log_never_the_clock() {
    let (state, responses) = run(&history());
    // Expiry is computed from the entry's timestamp (2023), so a binding granted 3600 s there
    // expires exactly then, whatever the machine's clock says today.
    let a = state.lookup("sip:a@x", T0 + 20);
    let a1 = a.iter().find(|b| b.contact == "<sip:a1@h>").unwrap();
    assert_eq!(a1.expires_at_ms, T0 + 3_600_000);
    // The third command's leader clock stepped back 5 s; it is applied at the last time seen.
    let c = state.lookup("sip:c@x", T0 + 10);
    assert_eq!(c[0].updated_at_ms, T0 + 10);
    assert_eq!(c[0].expires_at_ms, T0 + 10 + 600_000);
    assert_eq!(state.last_time_ms(), T0 + 61_000);
    assert_eq!(
        responses[6],
        GroupResponse::Purged {
            bindings_removed: 1
        }
    );
    assert!(
        state.lookup("sip:a@x", u64::MAX).is_empty(),
        "expired bindings are hidden"
    );
}

#[test]
fn stale_epochs_are_refused_and_change_nothing() {
    let mut state = GroupState::new(Policy::default());
    let set = state
        .apply(&normal(1, GroupRequest::set_epoch(5, T0)))
        .unwrap();
    assert_eq!(set, GroupResponse::EpochSet { epoch: 5 });
    let before = canonical(&state);

    let stale = GroupRequest::registrar(4, T0 + 1_000, register("sip:a@x", 1, "sip:a1@h", 3600));
    let refused = state.apply(&normal(2, stale)).unwrap();
    assert_eq!(refused, GroupResponse::StaleEpoch { current: 5 });
    let after = canonical(&state);
    assert_eq!(after.content, before.content);
    assert_eq!(after.epoch, 5);
    assert_eq!(
        after.last_time_ms, T0,
        "a refused request does not move time"
    );
    assert_eq!(state.last_applied(), Some(log_id(1, 2)));

    let stale_set = state
        .apply(&normal(3, GroupRequest::set_epoch(3, T0)))
        .unwrap();
    assert_eq!(stale_set, GroupResponse::StaleEpoch { current: 5 });

    let current = GroupRequest::registrar(5, T0 + 2_000, register("sip:a@x", 1, "sip:a1@h", 3600));
    let applied = state.apply(&normal(4, current)).unwrap();
    assert!(matches!(
        applied,
        GroupResponse::Registered { changed: true, .. }
    ));

    let newer = GroupRequest::registrar(6, T0 + 3_000, register("sip:a@x", 2, "sip:a1@h", 3600));
    state.apply(&normal(5, newer)).unwrap();
    assert_eq!(state.epoch(), 6, "a higher epoch raises the group's");
}

#[test]
fn registrar_refusals_come_back_mirrored() {
    let mut state = GroupState::new(Policy::default());
    state
        .apply(&normal(
            1,
            GroupRequest::registrar(0, T0, register("sip:a@x", 5, "sip:a1@h", 3600)),
        ))
        .unwrap();
    // The same CSeq with other contents (an exact copy is a retransmission, answered 200).
    let replay = GroupRequest::registrar(0, T0 + 1, register("sip:a@x", 5, "sip:a1@h", 1800));
    let response = state.apply(&normal(2, replay)).unwrap();
    assert_eq!(
        response,
        GroupResponse::Refused(GroupRefusal::OutOfOrder { cseq: 5, stored: 5 })
    );
    let outcome = response.into_outcome().unwrap();
    assert!(matches!(
        outcome,
        roster_registrar::CommandOutcome::Refused(_)
    ));
}

#[test]
fn entries_must_follow_the_last_applied() {
    let mut state = GroupState::new(Policy::default());
    let blank = |index| typ::Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Blank,
    };
    assert_eq!(state.apply(&blank(4)).unwrap(), GroupResponse::Blank);
    let behind = state.apply(&blank(3)).unwrap_err();
    assert_eq!(
        behind,
        ApplyError::OutOfOrder {
            entry: log_id(1, 3),
            last_applied: log_id(1, 4)
        }
    );
    assert!(state.apply(&blank(4)).is_err(), "no re-apply");
    let older_leader = typ::Entry {
        log_id: typ::LogId::new(typ::LeaderId::new_committed(0, 1), 5),
        payload: EntryPayload::Blank,
    };
    assert!(state.apply(&older_leader).is_err(), "log ids only grow");
    assert_eq!(state.last_applied(), Some(log_id(1, 4)));
    assert_eq!(state.apply(&blank(5)).unwrap(), GroupResponse::Blank);
}

#[test]
fn snapshot_round_trip() {
    let (state, _) = run(&history());
    let bytes = state.encode_snapshot().unwrap();
    assert_eq!(bytes[0], codec::SNAPSHOT_FORMAT_VERSION);
    let restored = GroupState::decode_snapshot(&bytes).unwrap();
    assert_eq!(canonical(&restored), canonical(&state));
    assert_eq!(restored.snapshot_meta(), state.snapshot_meta());
    assert_eq!(
        restored
            .last_membership()
            .membership()
            .voter_ids()
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    // The restored state goes on applying exactly like the original.
    let next = normal(
        8,
        GroupRequest::registrar(1, T0 + 70_000, register("sip:d@x", 1, "sip:d1@h", 60)),
    );
    let (mut original, mut copy) = (state, restored);
    assert_eq!(original.apply(&next).unwrap(), copy.apply(&next).unwrap());
    assert_eq!(canonical(&original), canonical(&copy));
}

#[test]
fn a_snapshot_from_before_the_overlay_still_decodes() {
    #[derive(serde::Serialize)]
    struct Old<'a> {
        content: &'a GroupContent,
        epoch: u64,
        last_applied: Option<typ::LogId>,
        last_membership: &'a typ::StoredMembership,
        last_time_ms: u64,
        stream: Option<crate::stream::StreamPosition>,
        restoring: Option<Restoring>,
    }
    let (state, _) = run(&history());
    let old = Old {
        content: &state.content,
        epoch: state.epoch,
        last_applied: state.last_applied,
        last_membership: &state.last_membership,
        last_time_ms: state.last_time_ms,
        stream: state.stream,
        restoring: None,
    };
    let mut bytes = vec![SNAPSHOT_FORMAT_VERSION_WITHOUT_OVERLAY];
    bytes.extend(codec::encode::<_, SNAPSHOT_SIZE_MAX>("old", &old).unwrap());
    let restored = GroupState::decode_snapshot(&bytes).unwrap();
    assert_eq!(canonical(&restored), canonical(&state));
    assert!(restored.overlay().is_empty());
}

#[test]
fn snapshot_decode_refuses_damage() {
    let (state, _) = run(&history());
    let bytes = state.encode_snapshot().unwrap();
    assert!(GroupState::decode_snapshot(&[]).is_err());
    let mut foreign = bytes.clone();
    foreign[0] = 99;
    assert!(GroupState::decode_snapshot(&foreign).is_err());
    assert!(GroupState::decode_snapshot(&bytes[..bytes.len() / 2]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(GroupState::decode_snapshot(&longer).is_err());
}

#[test]
fn oversized_requests_fail_the_size_check() {
    let small = GroupRequest::registrar(1, T0, register("sip:a@x", 1, "sip:a1@h", 60));
    assert!(small.check_size().is_ok());
    let huge_uri = format!("sip:{}@h", "a".repeat(crate::ENTRY_SIZE_MAX));
    let huge = GroupRequest::registrar(1, T0, register("sip:a@x", 1, &huge_uri, 60));
    assert!(huge.check_size().is_err());
    let entry = normal(1, small);
    let encoded = codec::encode_entry(&entry).unwrap();
    assert_eq!(codec::decode_entry(&encoded).unwrap(), entry);
}
