//! Tests of the resiliency overlay, through the group's apply step: resiliency writes change
//! the overlay and never the copy's registry, epoch or time, the stream and a restore keep
//! working beside it, and the homecoming sends what was written and clears only what was sent.

use openraft::vote::RaftLeaderIdExt;
use openraft::EntryPayload;
use roster_registrar::{
    BindingKey, Command, ContactChange, ContactUpdate, Policy, RegisterCommand,
};

use super::*;
use crate::stream::{batch_of, restore_chunks};
use crate::{typ, GroupKey, GroupRequest, GroupResponse, GroupState, ReplicatedState};

const T0: u64 = 1_700_000_000_000;
const AOR: &str = "sip:alice@example.com";

fn source_key() -> GroupKey {
    GroupKey::routing(1, 0)
}

fn log_id(index: u64) -> typ::LogId {
    typ::LogId::new(typ::LeaderId::new_committed(1, 1), index)
}

fn facts(call_id: &str, cseq: u32, contacts: &[(&str, u32)]) -> RegisterCommand {
    RegisterCommand {
        aor: AOR.into(),
        call_id: call_id.into(),
        cseq,
        change: ContactChange::Update(
            contacts
                .iter()
                .map(|(uri, expires_s)| ContactUpdate {
                    key: BindingKey::Uri((*uri).into()),
                    contact: format!("<{uri}>"),
                    q_milli: None,
                    expires_s: *expires_s,
                    instance: None,
                    reg_id: None,
                })
                .collect(),
        ),
        path: vec![],
        received: None,
        user_agent: None,
        bindings_max: None,
    }
}

/// Applies `request` as the next entry of `state`'s log.
fn propose(state: &mut GroupState, request: GroupRequest) -> GroupResponse {
    let index = state.last_applied().map_or(1, |id| id.index + 1);
    state
        .apply(&typ::Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(request),
        })
        .expect("in order")
}

fn resilient(state: &mut GroupState, at_ms: u64, register: RegisterCommand) -> GroupResponse {
    let request = GroupRequest::resilient(1, at_ms, ResilientCommand::Register(register));
    propose(state, request)
}

/// The source's log so far, and a copy that has applied all of it through the stream.
struct Pair {
    log: Vec<typ::Entry>,
    source: GroupState,
    copy: GroupState,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            log: Vec::new(),
            source: GroupState::new(Policy::default()),
            copy: GroupState::new(Policy::default()),
        }
    }

    /// The source applies `request`, and (when `ship`) the copy gets it in a batch.
    fn source_writes(&mut self, request: GroupRequest, ship: bool) -> GroupResponse {
        let index = self.log.len() as u64 + 1;
        let entry = typ::Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(request),
        };
        let response = self.source.apply(&entry).expect("in order");
        self.log.push(entry);
        if ship {
            self.ship();
        }
        response
    }

    fn ship(&mut self) {
        let after = self.copy.stream().map_or(0, |position| position.index);
        let batch = batch_of(
            source_key(),
            1,
            after,
            self.log.iter().filter(|entry| entry.log_id.index > after),
        );
        if let Some(batch) = batch {
            let through = batch.through;
            assert_eq!(
                propose(&mut self.copy, GroupRequest::replicate(batch)),
                GroupResponse::Replicated { position: through }
            );
        }
    }

    /// The copy's registry equals the source's, as a prefix of its history must.
    fn assert_copy_is_source(&self) {
        let registry = |state: &GroupState| state.registry().expect("routing").sorted_entries();
        assert_eq!(registry(&self.copy), registry(&self.source));
        assert_eq!(self.copy.epoch(), self.source.epoch());
        assert_eq!(self.copy.last_time_ms(), self.source.last_time_ms());
    }
}

fn contacts(bindings: &[roster_registrar::Binding]) -> Vec<String> {
    let mut contacts: Vec<String> = bindings.iter().map(|b| b.contact.clone()).collect();
    contacts.sort();
    contacts
}

#[test]
fn a_resiliency_write_changes_the_overlay_and_never_the_copys_history() {
    let mut pair = Pair::new();
    let home = Command::Register(facts(
        "phone",
        5,
        &[("sip:desk@h", 3600), ("sip:old@h", 3600)],
    ));
    pair.source_writes(GroupRequest::registrar(1, T0, home), true);
    let before = pair.copy.registry().expect("routing").sorted_entries();

    // The rules run on the copy's bindings: the same Call-ID needs a higher CSeq.
    let stale = resilient(
        &mut pair.copy,
        T0 + 10,
        facts("phone", 5, &[("sip:desk@h", 60)]),
    );
    assert!(matches!(stale, GroupResponse::Refused(_)), "{stale:?}");
    assert!(pair.copy.overlay().is_empty());

    // Refresh desk, remove old, add mobile: the answer lists the AOR's bindings after it.
    let written = resilient(
        &mut pair.copy,
        T0 + 20,
        facts(
            "phone",
            6,
            &[("sip:desk@h", 600), ("sip:old@h", 0), ("sip:mobile@h", 600)],
        ),
    );
    let GroupResponse::Registered {
        bindings,
        changed,
        at_ms,
        epoch,
    } = written
    else {
        panic!("{written:?}");
    };
    assert!(changed);
    assert_eq!((at_ms, epoch), (T0 + 20, 1));
    assert_eq!(contacts(&bindings), ["<sip:desk@h>", "<sip:mobile@h>"]);
    assert_eq!(
        contacts(&pair.copy.lookup(AOR, T0 + 30)),
        ["<sip:desk@h>", "<sip:mobile@h>"]
    );

    // The copy's registry, epoch and time are the source's, untouched.
    assert_eq!(
        pair.copy.registry().expect("routing").sorted_entries(),
        before
    );
    pair.assert_copy_is_source();
    let entry = pair.copy.overlay().get(AOR).expect("in the overlay");
    assert_eq!(entry.written.len(), 2);
    assert_eq!(entry.tombstones.len(), 1);
    assert_eq!(entry.tombstones[0].key, BindingKey::Uri("sip:old@h".into()));

    // A resiliency write below the copy's epoch (a failover raised it) is refused.
    propose(&mut pair.copy, GroupRequest::set_epoch(2, T0 + 40));
    let refused = propose(
        &mut pair.copy,
        GroupRequest::resilient(
            1,
            T0 + 50,
            ResilientCommand::Register(facts("phone", 9, &[])),
        ),
    );
    assert_eq!(refused, GroupResponse::StaleEpoch { current: 2 });
}

#[test]
fn the_stream_and_a_restore_keep_working_beside_the_overlay() {
    let mut pair = Pair::new();
    // A fresh copy with only an overlay still takes its source's stream from the start.
    resilient(&mut pair.copy, T0, facts("phone", 1, &[("sip:b@h", 600)]));
    let other = Command::Register(RegisterCommand {
        aor: "sip:bob@example.com".into(),
        ..facts("bob", 1, &[("sip:bob@h", 600)])
    });
    pair.source_writes(GroupRequest::registrar(1, T0 + 5, other), true);
    pair.assert_copy_is_source();
    assert_eq!(pair.copy.overlay().len(), 1);

    // A restore replaces the registry and keeps the overlay.
    let home = Command::Register(facts("phone", 3, &[("sip:home@h", 600)]));
    pair.source_writes(GroupRequest::registrar(1, T0 + 10, home), false);
    let at = pair.log.len() as u64;
    let chunks = restore_chunks(
        source_key(),
        pair.source.content(),
        pair.source.epoch(),
        at,
        pair.source.last_time_ms(),
        64,
    );
    for chunk in chunks {
        propose(&mut pair.copy, GroupRequest::restore(chunk));
    }
    assert_eq!(pair.copy.stream().map(|position| position.index), Some(at));
    pair.assert_copy_is_source();
    // Lookups merge: the overlay's binding and the home's newer one (another key) both show.
    assert_eq!(
        contacts(&pair.copy.lookup(AOR, T0 + 20)),
        ["<sip:b@h>", "<sip:home@h>"]
    );

    // The overlay is in the snapshot.
    let bytes = pair.copy.encode_snapshot().expect("encode");
    let decoded = GroupState::decode_snapshot(&bytes).expect("decode");
    assert_eq!(decoded.overlay(), pair.copy.overlay());
}

#[test]
fn homecoming_sends_what_was_written_and_clears_only_what_was_sent() {
    let mut pair = Pair::new();
    let home = Command::Register(facts(
        "phone",
        1,
        &[("sip:seen@h", 3600), ("sip:gone@h", 3600)],
    ));
    pair.source_writes(GroupRequest::registrar(1, T0, home), true);
    resilient(
        &mut pair.copy,
        T0 + 10,
        facts("phone", 2, &[("sip:new@h", 600), ("sip:gone@h", 0)]),
    );

    let sent = pair.copy.overlay().home_bound(CLEAR_AORS_MAX);
    assert_eq!(sent.len(), 1);
    let (merge, version) = sent[0].clone();
    // Only what was written in resiliency mode goes home, with the removal.
    assert_eq!(contacts(&merge.bindings), ["<sip:new@h>"]);
    assert_eq!(merge.tombstones.len(), 1);

    // Home merges it: the source gets the new binding and loses the removed one.
    pair.source_writes(GroupRequest::merge(1, T0 + 20, merge.clone()), true);
    assert_eq!(
        contacts(&pair.source.lookup(AOR, T0 + 30)),
        ["<sip:new@h>", "<sip:seen@h>"]
    );
    pair.assert_copy_is_source();

    // Written again before the clear: the clear of the older version leaves it.
    resilient(
        &mut pair.copy,
        T0 + 40,
        facts("phone", 3, &[("sip:new@h", 900)]),
    );
    let cleared = propose(
        &mut pair.copy,
        GroupRequest::resilient(1, T0 + 50, ResilientCommand::Clear(vec![version])),
    );
    assert_eq!(cleared, GroupResponse::OverlayCleared { aors: 0 });
    let (again, version) = pair.copy.overlay().home_bound(CLEAR_AORS_MAX)[0].clone();
    assert_eq!(again.bindings[0].cseq, 3);
    let cleared = propose(
        &mut pair.copy,
        GroupRequest::resilient(1, T0 + 60, ResilientCommand::Clear(vec![version])),
    );
    assert_eq!(cleared, GroupResponse::OverlayCleared { aors: 1 });
    assert!(pair.copy.overlay().is_empty());
    // The copy's registry never held the resiliency writes; the merge came by the stream.
    pair.assert_copy_is_source();
}

#[test]
fn a_promotion_folds_the_overlay_at_once_and_an_epoch_shipped_from_the_source_does_not() {
    let mut pair = Pair::new();
    let home = Command::Register(facts("phone", 5, &[("sip:desk@h", 3600)]));
    pair.source_writes(GroupRequest::registrar(1, T0, home), true);
    resilient(
        &mut pair.copy,
        T0 + 20,
        facts("phone", 6, &[("sip:desk@h", 600), ("sip:mobile@h", 600)]),
    );

    // The source raises its own epoch (a planned failover's fence), shipped to the copy: the
    // copy stays a prefix of the source, its overlay apart.
    pair.source_writes(GroupRequest::set_epoch(2, T0 + 25), true);
    assert!(!pair.copy.overlay().is_empty());
    pair.assert_copy_is_source();

    // The copy itself is raised (a failover promotes it): the overlay is its registry's now.
    propose(&mut pair.copy, GroupRequest::set_epoch(3, T0 + 30));
    assert!(pair.copy.overlay().is_empty());
    let registry = pair.copy.registry().expect("routing");
    assert_eq!(
        contacts(&registry.lookup(AOR, T0 + 40)),
        ["<sip:desk@h>", "<sip:mobile@h>"]
    );

    // The first write at the new epoch answers with what the backup registrar acknowledged.
    let refresh = Command::Register(facts("phone", 7, &[("sip:desk@h", 600)]));
    let answer = propose(&mut pair.copy, GroupRequest::registrar(3, T0 + 50, refresh));
    let GroupResponse::Registered { bindings, .. } = answer else {
        panic!("{answer:?}");
    };
    assert_eq!(contacts(&bindings), ["<sip:desk@h>", "<sip:mobile@h>"]);
}
