//! Per-AOR linearizability of register, unregister, query and lookup.
//!
//! The model of one AOR is the set of its contacts (no binding expires within a run: every
//! REGISTER asks for [`crate::workload::EXPIRES_S`]). `register(c)` adds `c` and answers the
//! whole set, `unregister(c)` removes it and answers the set, `query` and `lookup` answer it.
//!
//! The search is Wing and Gong's, done in time order with memoization (the "just in time"
//! form Lowe describes, as in Knossos' linear checker): a set of configurations (model state,
//! which open operations are already linearized, which undecided writes are still unspent) is
//! carried from event to event; at each return, the configurations that can linearize the
//! returning operation are kept, and none left is a violation. Duplicate configurations merge,
//! so the cost is bounded by the distinct configurations, not by the interleavings.
//!
//! A successful write is two steps inside its window: its effect, then the answer's listing,
//! which must equal the state at some moment after the effect. Usually they are one moment;
//! they are two when a UDP retransmission reaches a node that restarted after applying the
//! first copy (the new process has no transaction to answer from, so it applies the request
//! again, a no-op for the contact, and lists the AOR as it is then). Only the writing client
//! touches its contact, so the contact's bit cannot change between the two steps.
//!
//! An operation whose outcome is unknown (a timeout, a `5xx`) may take effect at any moment
//! after its invocation, or never. Such writes are only tokens: "`c` may be added" or "`c` may
//! be removed" from their invocation on. Two tokens of the same kind on the same contact are
//! interchangeable once both are invoked (their windows both run to the end of the history),
//! so a configuration counts unspent tokens instead of naming them; and of two configurations
//! alike but for their tokens, one holding at least as many of each is kept and the other
//! dropped (it can explain nothing more). That keeps long histories with many timeouts (a node
//! answering `503` for minutes) tractable. Reads whose outcome is unknown say nothing and are dropped,
//! as are refusals (`4xx`), which changed nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::history::{Op, OpKind, OpOutcome};

/// Most configurations carried at once for one AOR; past it the AOR is reported unchecked
/// (inconclusive), never passed. A few hundred thousand small configurations is tens of
/// megabytes and well under a second of work.
pub const CONFIGURATIONS_MAX: usize = 200_000;

/// Most contacts of one AOR the model tracks: a state is a 64-bit set.
pub const CONTACTS_PER_AOR_MAX: usize = 64;

/// Most operations of one AOR open at the same moment: the linearized ones are a 64-bit set.
pub const OPEN_OPERATIONS_MAX: usize = 64;

/// Why one AOR's history is not linearizable.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// The AOR.
    pub aor: String,
    /// The operation that no order of the others explains.
    pub op: u64,
    /// Its kind.
    pub kind: OpKind,
    /// When it was invoked and answered, seconds.
    pub invoke_s: f64,
    /// When it was answered, seconds.
    pub complete_s: f64,
    /// What it answered.
    pub listed: Vec<String>,
    /// The contact sets the AOR could hold just before the answer (at most a few).
    pub possible: Vec<Vec<String>>,
}

/// The verdict on one AOR.
#[derive(Clone, Debug, PartialEq)]
pub enum AorVerdict {
    /// Some order of the operations, within their windows, explains every answer.
    Linearizable,
    /// None does.
    Violation(Violation),
    /// The search passed [`CONFIGURATIONS_MAX`], or the AOR has more contacts or open
    /// operations than the model holds.
    Unchecked(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Configuration {
    /// The AOR's contacts, as bits of the contact index.
    state: u64,
    /// Open writes (by slot) whose effect has taken place.
    effected: u64,
    /// Open operations (by slot) already linearized (for a write: its listing too).
    linearized: u64,
    /// Unspent unknown writes per contact.
    tokens: Tokens,
}

#[derive(Clone, Copy)]
enum Event {
    /// A known operation was invoked.
    Call(usize),
    /// An operation of unknown outcome was invoked: its token becomes usable.
    Token(usize),
    /// A known operation answered.
    Return(usize),
}

/// Checks one AOR's operations (of any order).
pub fn check_aor(aor: &str, ops: &[&Op]) -> AorVerdict {
    // The contact universe: every contact written, plus any listed (a listed contact nobody
    // wrote can only be explained by nothing, which the search reports).
    let mut contacts: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops {
        let named = op.contact.iter().map(String::as_str);
        for contact in named.chain(op.listed.iter().map(String::as_str)) {
            let next = contacts.len();
            contacts.entry(contact).or_insert(next);
        }
    }
    if contacts.len() > CONTACTS_PER_AOR_MAX {
        return AorVerdict::Unchecked(format!(
            "{} contacts, the model holds {CONTACTS_PER_AOR_MAX}",
            contacts.len()
        ));
    }
    let bits = |listed: &[String]| -> u64 {
        listed
            .iter()
            .filter_map(|contact| contacts.get(contact.as_str()))
            .fold(0, |set, index| set | (1 << index))
    };
    let relevant: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| match op.outcome {
            OpOutcome::Ok => true,
            OpOutcome::Unknown => op.kind.is_write(),
            OpOutcome::Fail => false,
        })
        .collect();
    let mut events: Vec<(Duration, u8, Event)> = Vec::with_capacity(relevant.len() * 2);
    for (index, op) in relevant.iter().enumerate() {
        match op.outcome {
            // Calls sort before returns at the same instant: operations touching in time are
            // taken as concurrent, the permissive reading.
            OpOutcome::Ok => {
                events.push((op.invoke, 0, Event::Call(index)));
                events.push((op.complete, 1, Event::Return(index)));
            }
            _ => events.push((op.invoke, 0, Event::Token(index))),
        }
    }
    events.sort_by_key(|event| (event.0, event.1));

    let contact_of = |op: &Op| op.contact.as_deref().and_then(|c| contacts.get(c)).copied();
    let mut slots: Vec<Option<usize>> = Vec::new();
    let mut slot_of: HashMap<usize, usize> = HashMap::new();
    let mut configurations: HashSet<Configuration> = HashSet::new();
    configurations.insert(Configuration {
        state: 0,
        effected: 0,
        linearized: 0,
        tokens: vec![[0, 0]; contacts.len()],
    });
    for (_, _, event) in events {
        match event {
            Event::Call(index) => {
                let slot = match slots.iter().position(Option::is_none) {
                    Some(slot) => slot,
                    None if slots.len() < OPEN_OPERATIONS_MAX => {
                        slots.push(None);
                        slots.len() - 1
                    }
                    None => {
                        return AorVerdict::Unchecked(format!(
                            "more than {OPEN_OPERATIONS_MAX} operations open at once"
                        ))
                    }
                };
                slots[slot] = Some(index);
                slot_of.insert(index, slot);
            }
            Event::Token(index) => {
                let op = relevant[index];
                let Some(contact) = contact_of(op) else {
                    continue;
                };
                let kind = usize::from(op.kind == OpKind::Unregister);
                configurations = configurations
                    .into_iter()
                    .map(|mut configuration| {
                        configuration.tokens[contact][kind] =
                            configuration.tokens[contact][kind].saturating_add(1);
                        configuration
                    })
                    .collect();
            }
            Event::Return(index) => {
                let Some(slot) = slot_of.remove(&index) else {
                    continue;
                };
                let open: Vec<(usize, &Op)> = slots
                    .iter()
                    .enumerate()
                    .filter_map(|(slot, op)| op.map(|op| (slot, relevant[op])))
                    .collect();
                let closed = match closure(&configurations, &open, &bits, &contact_of) {
                    Some(closed) => closed,
                    None => {
                        return AorVerdict::Unchecked(format!(
                            "more than {CONFIGURATIONS_MAX} configurations"
                        ))
                    }
                };
                let mask = 1u64 << slot;
                let kept: HashSet<Configuration> = closed
                    .iter()
                    .filter(|configuration| configuration.linearized & mask != 0)
                    .map(|configuration| Configuration {
                        linearized: configuration.linearized & !mask,
                        effected: configuration.effected & !mask,
                        ..configuration.clone()
                    })
                    .collect();
                slots[slot] = None;
                if kept.is_empty() {
                    let op = relevant[index];
                    let names: Vec<&str> = contacts.keys().copied().collect();
                    let mut possible: Vec<Vec<String>> = closed
                        .iter()
                        .map(|configuration| set_names(configuration.state, &names))
                        .collect::<HashSet<_>>()
                        .into_iter()
                        .collect();
                    possible.sort();
                    possible.truncate(8);
                    return AorVerdict::Violation(Violation {
                        aor: aor.to_owned(),
                        op: op.id,
                        kind: op.kind,
                        invoke_s: op.invoke.as_secs_f64(),
                        complete_s: op.complete.as_secs_f64(),
                        listed: op.listed.clone(),
                        possible,
                    });
                }
                configurations = kept;
            }
        }
    }
    AorVerdict::Linearizable
}

/// Unspent unknown writes per contact: `[adds, removes]`.
type Tokens = Vec<[u16; 2]>;

/// Configurations without the dominated ones: by (state, effected, linearized), only token
/// vectors no other one covers (at least as many of every kind).
#[derive(Default)]
struct Pareto {
    by_key: HashMap<(u64, u64, u64), Vec<Tokens>>,
    len: usize,
}

impl Pareto {
    /// Adds `configuration` unless one already held covers it; drops those it covers.
    fn insert(&mut self, configuration: &Configuration) -> bool {
        let key = (
            configuration.state,
            configuration.effected,
            configuration.linearized,
        );
        let held = self.by_key.entry(key).or_default();
        let covers = |a: &[[u16; 2]], b: &[[u16; 2]]| {
            a.iter().zip(b).all(|(a, b)| a[0] >= b[0] && a[1] >= b[1])
        };
        if held
            .iter()
            .any(|tokens| covers(tokens, &configuration.tokens))
        {
            return false;
        }
        let before = held.len();
        held.retain(|tokens| !covers(&configuration.tokens, tokens));
        self.len = self.len + held.len() - before;
        held.push(configuration.tokens.clone());
        self.len += 1;
        true
    }

    fn into_set(self) -> HashSet<Configuration> {
        self.by_key
            .into_iter()
            .flat_map(|((state, effected, linearized), all)| {
                all.into_iter().map(move |tokens| Configuration {
                    state,
                    effected,
                    linearized,
                    tokens,
                })
            })
            .collect()
    }
}

/// Every configuration reachable from `start` by linearizing open operations (whose answers
/// must match) and spending tokens, dominated ones dropped; `None` past
/// [`CONFIGURATIONS_MAX`].
fn closure(
    start: &HashSet<Configuration>,
    open: &[(usize, &Op)],
    bits: &dyn Fn(&[String]) -> u64,
    contact_of: &dyn Fn(&Op) -> Option<usize>,
) -> Option<HashSet<Configuration>> {
    let mut seen = Pareto::default();
    let mut frontier: Vec<Configuration> = Vec::new();
    for configuration in start {
        if seen.insert(configuration) {
            frontier.push(configuration.clone());
        }
    }
    let answers: Vec<(usize, OpKind, Option<usize>, u64)> = open
        .iter()
        .map(|(slot, op)| (*slot, op.kind, contact_of(op), bits(&op.listed)))
        .collect();
    while let Some(configuration) = frontier.pop() {
        let mut next = Vec::new();
        for &(slot, kind, contact, listed) in &answers {
            let mask = 1u64 << slot;
            if configuration.linearized & mask != 0 {
                continue;
            }
            let effect = match (kind, contact) {
                (OpKind::Register, Some(contact)) => Some(configuration.state | (1 << contact)),
                (OpKind::Unregister, Some(contact)) => Some(configuration.state & !(1 << contact)),
                _ => None,
            };
            match effect {
                // A write's effect first, at once with its listing when they match now.
                Some(state) if configuration.effected & mask == 0 => {
                    next.push(Configuration {
                        state,
                        effected: configuration.effected | mask,
                        linearized: configuration.linearized
                            | if state == listed { mask } else { 0 },
                        tokens: configuration.tokens.clone(),
                    });
                    if state == listed {
                        // Also keep the effect without its listing: a later listing may be
                        // the one that matches after other operations.
                        next.push(Configuration {
                            state,
                            effected: configuration.effected | mask,
                            linearized: configuration.linearized,
                            tokens: configuration.tokens.clone(),
                        });
                    }
                }
                // A write's listing, after its effect; or a read.
                _ if configuration.state == listed => next.push(Configuration {
                    state: configuration.state,
                    effected: configuration.effected,
                    linearized: configuration.linearized | mask,
                    tokens: configuration.tokens.clone(),
                }),
                _ => {}
            }
        }
        for (contact, [adds, removes]) in configuration.tokens.iter().copied().enumerate() {
            let bit = 1u64 << contact;
            // Spending a token that changes nothing only wastes it.
            if adds > 0 && configuration.state & bit == 0 {
                let mut tokens = configuration.tokens.clone();
                tokens[contact][0] -= 1;
                next.push(Configuration {
                    state: configuration.state | bit,
                    effected: configuration.effected,
                    linearized: configuration.linearized,
                    tokens,
                });
            }
            if removes > 0 && configuration.state & bit != 0 {
                let mut tokens = configuration.tokens.clone();
                tokens[contact][1] -= 1;
                next.push(Configuration {
                    state: configuration.state & !bit,
                    effected: configuration.effected,
                    linearized: configuration.linearized,
                    tokens,
                });
            }
        }
        for candidate in next {
            if seen.insert(&candidate) {
                if seen.len > CONFIGURATIONS_MAX {
                    return None;
                }
                frontier.push(candidate);
            }
        }
    }
    Some(seen.into_set())
}

fn set_names(state: u64, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .filter(|(index, _)| state & (1 << index) != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Phase;

    fn op(id: u64, kind: OpKind, contact: &str, span: (u64, u64), outcome: OpOutcome) -> Op {
        Op {
            id,
            client: 0,
            node: 0,
            aor: "sip:a@example.com".into(),
            group: 0,
            home: 0,
            served: None,
            kind,
            contact: (!contact.is_empty()).then(|| contact.to_owned()),
            invoke: Duration::from_millis(span.0),
            complete: Duration::from_millis(span.1),
            outcome,
            status: None,
            listed: Vec::new(),
            phase: Phase::Load,
        }
    }

    fn listing(mut op: Op, listed: &[&str]) -> Op {
        op.listed = listed.iter().map(|c| (*c).to_owned()).collect();
        op
    }

    fn verdict(ops: &[Op]) -> AorVerdict {
        let refs: Vec<&Op> = ops.iter().collect();
        check_aor("sip:a@example.com", &refs)
    }

    use OpKind::{Lookup, Query, Register, Unregister};
    use OpOutcome::{Fail, Ok as Done, Unknown};

    #[test]
    fn sequential_registers_and_reads_pass() {
        let ops = [
            listing(op(1, Register, "x", (0, 10), Done), &["x"]),
            listing(op(2, Register, "y", (20, 30), Done), &["x", "y"]),
            listing(op(3, Query, "", (40, 50), Done), &["x", "y"]),
            listing(op(4, Unregister, "x", (60, 70), Done), &["y"]),
            listing(op(5, Lookup, "", (80, 90), Done), &["y"]),
        ];
        assert_eq!(verdict(&ops), AorVerdict::Linearizable);
    }

    #[test]
    fn a_lost_acknowledged_register_is_a_violation() {
        let ops = [
            listing(op(1, Register, "x", (0, 10), Done), &["x"]),
            listing(op(2, Query, "", (20, 30), Done), &[]),
        ];
        match verdict(&ops) {
            AorVerdict::Violation(violation) => {
                assert_eq!(violation.op, 2);
                assert_eq!(violation.possible, [vec!["x".to_owned()]]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        // The register and the query overlap: the query may see the binding or not.
        for seen in [&["x"][..], &[][..]] {
            let ops = [
                listing(op(1, Register, "x", (0, 50), Done), &["x"]),
                listing(op(2, Query, "", (10, 40), Done), seen),
            ];
            assert_eq!(verdict(&ops), AorVerdict::Linearizable, "{seen:?}");
        }
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        // Two readers: the first sees the binding, a later one (invoked after the first
        // answered) does not: reads went back in time.
        let ops = [
            listing(op(1, Register, "x", (0, 100), Done), &["x"]),
            listing(op(2, Query, "", (10, 20), Done), &["x"]),
            listing(op(3, Query, "", (30, 40), Done), &[]),
        ];
        assert!(matches!(verdict(&ops), AorVerdict::Violation(v) if v.op == 3));
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never() {
        // Timed out at 100; not seen at 200, nor after an unregister at 260, but seen at 500:
        // the timed-out register landed late, after the unregister (its window never closes).
        let ops = [
            op(1, Register, "x", (0, 100), Unknown),
            listing(op(2, Query, "", (150, 200), Done), &[]),
            listing(op(3, Unregister, "x", (250, 260), Done), &[]),
            listing(op(4, Query, "", (290, 300), Done), &[]),
            listing(op(5, Query, "", (490, 500), Done), &["x"]),
        ];
        assert_eq!(verdict(&ops), AorVerdict::Linearizable);
        // But it applies once: seen, removed, seen again needs two.
        assert!(matches!(
            verdict(&[
                op(1, Register, "x", (0, 100), Unknown),
                listing(op(2, Query, "", (150, 200), Done), &["x"]),
                listing(op(3, Unregister, "x", (250, 260), Done), &[]),
                listing(op(4, Query, "", (490, 500), Done), &["x"]),
            ]),
            AorVerdict::Violation(v) if v.op == 4
        ));
    }

    #[test]
    fn an_unregister_answered_503_may_remove_a_later_registration() {
        // chaos35 of `majority-partition` (seed 5, 2026-12-06): the client's unregister went
        // through node 4, which forwarded it to the leader, node 2, over a link the partition
        // cut; the hop timed out (0.80 s) and the client got 503. The client registered again
        // through node 5 (another Call-ID: a registrar orders CSeqs per Call-ID only), and a
        // lookup saw the binding. The partition healed at 29.2 s, QUIC delivered the forwarded
        // unregister (its connection outlives a 6 s cut), the leader applied it, and every
        // final read answered no binding. Linearizable: a 5xx write may apply at any time
        // after its invocation.
        let ops = [
            listing(op(2162, Register, "c35", (21_621, 21_629), Done), &["c35"]),
            op(2495, Unregister, "c35", (24_951, 25_753), Unknown),
            listing(op(2714, Register, "c35", (27_141, 27_151), Done), &["c35"]),
            listing(op(2831, Lookup, "", (28_311, 28_319), Done), &["c35"]),
            listing(op(3477, Query, "", (36_463, 36_542), Done), &[]),
            listing(op(3790, Query, "", (37_061, 37_318), Done), &[]),
        ];
        assert_eq!(verdict(&ops), AorVerdict::Linearizable);
        // Without that unknown unregister the same reads are a lost binding.
        let without: Vec<Op> = ops.iter().filter(|op| op.id != 2495).cloned().collect();
        assert!(matches!(verdict(&without), AorVerdict::Violation(v) if v.op == 3477));
    }

    #[test]
    fn a_write_answered_by_a_restarted_node_lists_a_later_state() {
        // The unregister of y took effect at once (the query at 20-30 no longer sees it), but
        // its answer came from a retransmission applied again after x was added.
        let ops = [
            listing(op(1, Register, "y", (0, 5), Done), &["y"]),
            listing(op(2, Unregister, "y", (10, 100), Done), &["x"]),
            listing(op(3, Query, "", (20, 30), Done), &[]),
            listing(op(4, Register, "x", (40, 50), Done), &["x"]),
        ];
        assert_eq!(verdict(&ops), AorVerdict::Linearizable);
        // The listing still has to be true at some moment after the effect.
        let never = [
            listing(op(1, Register, "y", (0, 5), Done), &["y"]),
            listing(op(2, Unregister, "y", (10, 100), Done), &["y"]),
        ];
        assert!(matches!(verdict(&never), AorVerdict::Violation(v) if v.op == 2));
    }

    #[test]
    fn an_unknown_write_cannot_apply_before_it_was_sent() {
        let ops = [
            listing(op(1, Query, "", (0, 10), Done), &["x"]),
            op(2, Register, "x", (20, 30), Unknown),
        ];
        assert!(matches!(verdict(&ops), AorVerdict::Violation(v) if v.op == 1));
    }

    #[test]
    fn refusals_change_nothing_and_a_phantom_contact_is_caught() {
        let ops = [
            op(1, Register, "x", (0, 10), Fail),
            listing(op(2, Query, "", (20, 30), Done), &[]),
        ];
        assert_eq!(verdict(&ops), AorVerdict::Linearizable);
        let phantom = [listing(op(1, Query, "", (0, 10), Done), &["ghost"])];
        assert!(matches!(verdict(&phantom), AorVerdict::Violation(_)));
    }

    #[test]
    fn a_long_outage_of_unknown_writes_stays_tractable() {
        // Six clients of a hot AOR whose writes all time out for a long while (a node
        // answering 503), with reads seeing every subset in turn: each contact holds many
        // tokens of both kinds, and only the undominated token counts are kept.
        let mut ops = Vec::new();
        let mut id = 0;
        for round in 0..300u64 {
            for client in 0..6u64 {
                id += 1;
                let at = round * 100 + client * 10;
                let kind = if round == 0 || (round > 1 && (round + client) % 2 == 0) {
                    Register
                } else {
                    Unregister
                };
                ops.push(op(id, kind, &format!("c{client}"), (at, at + 5), Unknown));
            }
            if round < 2 {
                // Before every contact holds a token of each kind, not any subset can show.
                continue;
            }
            id += 1;
            let seen: Vec<String> = (0..6u64)
                .filter(|client| (round * 7 + client * 3) % 5 < 2)
                .map(|client| format!("c{client}"))
                .collect();
            let seen: Vec<&str> = seen.iter().map(String::as_str).collect();
            let at = round * 100 + 80;
            ops.push(listing(op(id, Query, "", (at, at + 5), Done), &seen));
        }
        let started = std::time::Instant::now();
        assert_eq!(verdict(&ops), AorVerdict::Linearizable);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn many_timeouts_stay_tractable() {
        // Four clients of one hot AOR, each with 200 writes of which every third timed out,
        // and reads in between: the tokens merge, so this is quick.
        let mut ops = Vec::new();
        let mut id = 0;
        let mut state: std::collections::BTreeSet<String> = Default::default();
        for round in 0..200u64 {
            for client in 0..4u64 {
                id += 1;
                let contact = format!("c{client}");
                let at = round * 100 + client * 20;
                let register = (round + client) % 2 == 0;
                let (kind, listed) = if register {
                    state.insert(contact.clone());
                    (Register, state.clone())
                } else {
                    state.remove(&contact);
                    (Unregister, state.clone())
                };
                let outcome = if id % 3 == 0 { Unknown } else { Done };
                let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
                ops.push(listing(
                    op(id, kind, &contact, (at, at + 10), outcome),
                    &listed,
                ));
            }
        }
        assert_eq!(verdict(&ops), AorVerdict::Linearizable);
    }
}
