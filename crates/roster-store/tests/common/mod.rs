//! Helpers shared by the store's integration tests: entries, appends that wait for
//! durability, and a canonical view of a group's state.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderIdExt;
use openraft::EntryPayload;
use roster_raft::{typ, GroupRequest, GroupState, ReplicatedState, TypeConfig};
use roster_registrar::{
    Binding, BindingKey, Command, ContactChange, ContactUpdate, Policy, RegisterCommand,
};
use roster_store::{LogStore, StateMachineStore};

/// A fixed past instant: nothing in these tests depends on the machine's clock.
pub const T0: u64 = 1_700_000_000_000;

pub fn log_id(term: u64, index: u64) -> typ::LogId {
    typ::LogId::new(typ::LeaderId::new_committed(term, 1), index)
}

pub fn membership_entry(index: u64) -> typ::Entry {
    typ::Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Membership(typ::Membership::new_with_defaults(
            vec![BTreeSet::from([1, 2, 3])],
            [],
        )),
    }
}

pub fn blank_entry(index: u64) -> typ::Entry {
    typ::Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Blank,
    }
}

/// A REGISTER of `sip:user<n>@x` (n = index % 7) with a fresh CSeq, stamped `T0 + index` s.
pub fn register_entry(index: u64) -> typ::Entry {
    let user = index % 7;
    let uri = format!("sip:phone{index}@h");
    let command = Command::Register(RegisterCommand {
        aor: format!("sip:user{user}@x"),
        call_id: format!("call-{index}"),
        cseq: 1,
        change: ContactChange::Update(vec![ContactUpdate {
            key: BindingKey::Uri(uri.clone()),
            contact: format!("<{uri}>"),
            q_milli: None,
            expires_s: 3600,
            instance: None,
            reg_id: None,
        }]),
        path: vec![],
        received: None,
        user_agent: None,
        bindings_max: None,
    });
    typ::Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(GroupRequest::registrar(1, T0 + index * 1000, command)),
    }
}

/// Appends and waits until the store reports the entries durable.
pub async fn append_durably(log: &mut LogStore, entries: Vec<typ::Entry>) {
    let (sender, receiver) = TypeConfig::oneshot();
    log.append(entries, typ::IOFlushed::signal(sender))
        .await
        .unwrap();
    receiver.await.unwrap().unwrap();
}

/// Applies entries to a state machine, without responders (as on a follower).
pub async fn apply(state_machine: &mut StateMachineStore<GroupState>, entries: Vec<typ::Entry>) {
    let stream = futures_util::stream::iter(entries.into_iter().map(|entry| Ok((entry, None))));
    state_machine.apply(stream).await.unwrap();
}

/// A group's state with the registry's map sorted, so that two states compare.
#[derive(Debug, PartialEq)]
pub struct Canonical {
    aors: BTreeMap<String, Vec<Binding>>,
    epoch: u64,
    last_applied: Option<typ::LogId>,
    last_membership: typ::StoredMembership,
    last_time_ms: u64,
}

/// A routing group's state with its registry sorted: comparable across runs, unlike the
/// registry's hash map.
pub fn canonical(state: &GroupState) -> Canonical {
    let aors = state
        .registry()
        .map(|registry| registry.sorted_entries().into_iter().collect())
        .unwrap_or_default();
    Canonical {
        aors,
        epoch: state.epoch(),
        last_applied: state.last_applied(),
        last_membership: state.last_membership().clone(),
        last_time_ms: state.last_time_ms(),
    }
}

/// The state a replica reaches by applying `entries` from scratch.
pub fn reference_state(entries: &[typ::Entry]) -> GroupState {
    let mut state = GroupState::new(Policy::default());
    for entry in entries {
        state.apply(entry).unwrap();
    }
    state
}
