//! RFC 3261 §10.3 steps 6–8 as a pure function: the heart of the apply step.

use crate::binding::Binding;
use crate::command::{ContactChange, ContactUpdate, RegisterCommand};
use crate::policy::{Overflow, Policy};

/// A REGISTER that the rules refused; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// RFC 3261 §10.3 step 7: same Call-ID and a CSeq not higher than the stored one.
    #[error("CSeq {cseq} is not higher than the stored {stored} for this Call-ID")]
    OutOfOrder {
        /// The request's CSeq.
        cseq: u32,
        /// The CSeq stored with the binding.
        stored: u32,
    },
    /// The AOR would hold more bindings than its limit allows, and the policy rejects.
    #[error("the address of record would have {count} bindings, more than the limit of {max}")]
    TooManyBindings {
        /// Bindings the request would leave.
        count: usize,
        /// The limit applied: the policy's, or the user's own when lower.
        max: usize,
    },
}

impl Refusal {
    /// The SIP status code that answers this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::OutOfOrder { .. } => 500,
            Refusal::TooManyBindings { .. } => 403,
        }
    }
}

/// What a successful apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Whether a binding was added, refreshed or removed (dropping expired ones does not count).
    pub changed: bool,
}

/// Applies one REGISTER to one AOR's bindings at `now_ms`, all or nothing.
///
/// `bindings` may hold expired entries; they are dropped. On success `bindings` holds the new
/// live set, the one to list in the `200 OK`; on refusal it is left as it was. Deterministic:
/// same inputs, same outputs.
pub fn apply_register(
    bindings: &mut Vec<Binding>,
    command: &RegisterCommand,
    now_ms: u64,
    policy: &Policy,
) -> Result<Applied, Refusal> {
    let (next, applied) = apply_register_owned(bindings.clone(), command, now_ms, policy)?;
    *bindings = next;
    Ok(applied)
}

/// [`apply_register`] for a caller that keeps the bindings elsewhere ([`crate::Registry`]
/// holds them in stored form): takes them by value and returns the new live set, so nothing
/// is copied; on refusal they are dropped.
pub(crate) fn apply_register_owned(
    mut next: Vec<Binding>,
    command: &RegisterCommand,
    now_ms: u64,
    policy: &Policy,
) -> Result<(Vec<Binding>, Applied), Refusal> {
    next.retain(|binding| binding.is_live(now_ms));
    let changed = match &command.change {
        ContactChange::Query => false,
        ContactChange::RemoveAll => remove_all(&mut next, command)?,
        // The request again: it changes nothing, and is answered with the bindings as they are.
        ContactChange::Update(updates) if applied_already(&next, command, updates) => false,
        ContactChange::Update(updates) => {
            let held = next.len();
            let mut changed = false;
            for update in updates {
                changed |= update_one(&mut next, command, update, now_ms)?;
            }
            enforce_limit(&mut next, held, policy, command.bindings_max)?;
            changed
        }
    };
    Ok((next, Applied { changed }))
}

/// Whether this very request was applied already: every contact it names is as it left it
/// (the binding it made, same Call-ID, CSeq, contact, expiry and facts, written at that
/// binding's time; a removed contact absent), and it made at least one. A client never sends
/// two different REGISTERs with one CSeq in a Call-ID (RFC 3261 §10.2.4 and §8.1.1.5), so this
/// is a retransmission whose server transaction the answering node does not hold: the node
/// that took the first copy restarted (its transactions went with it), or the retransmission
/// reached another node of the pool. Refusing it as out of order (`500`) would fail a
/// registration that succeeded; it is answered as the first copy was. (A `Contact: *`, or a
/// request that only removed, leaves no binding to recognise it by: its retransmission is
/// checked as a new request.)
fn applied_already(
    bindings: &[Binding],
    command: &RegisterCommand,
    updates: &[ContactUpdate],
) -> bool {
    let mut made_one = false;
    for update in updates {
        let held = bindings.iter().find(|binding| binding.key == update.key);
        match (update.expires_s, held) {
            (0, None) => {}
            (0, Some(_)) | (_, None) => return false,
            (_, Some(binding)) => {
                // Another request (the usual refresh, a higher CSeq) is told apart without
                // building the binding it would make: this runs in every REGISTER's apply.
                if binding.cseq != command.cseq
                    || binding.call_id != command.call_id
                    || *binding != new_binding(command, update, binding.updated_at_ms)
                {
                    return false;
                }
                made_one = true;
            }
        }
    }
    made_one
}

/// `Contact: *`: every binding goes, unless one has the same Call-ID and a CSeq not lower.
fn remove_all(next: &mut Vec<Binding>, command: &RegisterCommand) -> Result<bool, Refusal> {
    for binding in next.iter() {
        check_order(binding, command)?;
    }
    let changed = !next.is_empty();
    next.clear();
    Ok(changed)
}

fn update_one(
    next: &mut Vec<Binding>,
    command: &RegisterCommand,
    update: &ContactUpdate,
    now_ms: u64,
) -> Result<bool, Refusal> {
    let existing = next.iter().position(|binding| binding.key == update.key);
    if let Some(index) = existing {
        check_order(&next[index], command)?;
        if update.expires_s == 0 {
            next.remove(index);
        } else {
            next[index] = new_binding(command, update, now_ms);
        }
        return Ok(true);
    }
    if update.expires_s == 0 {
        return Ok(false);
    }
    next.push(new_binding(command, update, now_ms));
    Ok(true)
}

fn check_order(binding: &Binding, command: &RegisterCommand) -> Result<(), Refusal> {
    if binding.call_id == command.call_id && command.cseq <= binding.cseq {
        return Err(Refusal::OutOfOrder {
            cseq: command.cseq,
            stored: binding.cseq,
        });
    }
    Ok(())
}

/// Holds the AOR to `min(policy, user)` bindings: the user's own limit (from its directory
/// record, carried in the command) only ever lowers the policy's. `held` is how many live
/// bindings the AOR had before the request: under [`Overflow::Reject`] a request that adds none
/// (a refresh, a removal) passes even above a limit lowered since, so that a phone can always
/// refresh or leave; only growth past the limit is refused.
fn enforce_limit(
    next: &mut Vec<Binding>,
    held: usize,
    policy: &Policy,
    user_max: Option<u32>,
) -> Result<(), Refusal> {
    let max = effective_limit(policy, user_max);
    if next.len() <= max {
        return Ok(());
    }
    match policy.overflow {
        Overflow::Reject if next.len() <= held => Ok(()),
        Overflow::Reject => Err(Refusal::TooManyBindings {
            count: next.len(),
            max,
        }),
        Overflow::EvictOldest => {
            // Stable sort keeps insertion order among equal times, so the eviction is
            // deterministic on every replica.
            next.sort_by_key(|binding| std::cmp::Reverse(binding.updated_at_ms));
            next.truncate(max);
            Ok(())
        }
    }
}

/// The binding limit a REGISTER is held to: the policy's, lowered by the user's own. A user
/// limit of 0 (the CMS refuses it) counts as 1, so that a record can never forbid every binding
/// by accident.
fn effective_limit(policy: &Policy, user_max: Option<u32>) -> usize {
    let user = user_max.map_or(usize::MAX, |max| {
        usize::try_from(max.max(1)).unwrap_or(usize::MAX)
    });
    policy.bindings_per_aor_max.min(user)
}

fn new_binding(command: &RegisterCommand, update: &ContactUpdate, now_ms: u64) -> Binding {
    Binding {
        key: update.key.clone(),
        contact: update.contact.clone(),
        q_milli: update.q_milli,
        expires_at_ms: now_ms.saturating_add(u64::from(update.expires_s) * 1000),
        updated_at_ms: now_ms,
        call_id: command.call_id.clone(),
        cseq: command.cseq,
        instance: update.instance.clone(),
        reg_id: update.reg_id,
        path: command.path.clone(),
        received: command.received.clone(),
        user_agent: command.user_agent.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::BindingKey;

    const T0: u64 = 1_700_000_000_000;

    fn update(uri: &str, expires_s: u32) -> ContactUpdate {
        ContactUpdate {
            key: BindingKey::Uri(uri.to_string()),
            contact: format!("<{uri}>"),
            q_milli: None,
            expires_s,
            instance: None,
            reg_id: None,
        }
    }

    fn register(call_id: &str, cseq: u32, change: ContactChange) -> RegisterCommand {
        RegisterCommand {
            aor: "sip:alice@example.com".into(),
            call_id: call_id.into(),
            cseq,
            change,
            path: vec![],
            received: None,
            user_agent: None,
            bindings_max: None,
        }
    }

    fn contacts(bindings: &[Binding]) -> Vec<&str> {
        bindings.iter().map(|b| b.contact.as_str()).collect()
    }

    #[test]
    fn adds_refreshes_and_removes() {
        let policy = Policy::default();
        let mut bindings = vec![];
        let add = register("c1", 1, ContactChange::Update(vec![update("sip:a@h", 60)]));
        let applied = apply_register(&mut bindings, &add, T0, &policy).unwrap();
        assert!(applied.changed);
        assert_eq!(contacts(&bindings), ["<sip:a@h>"]);
        assert_eq!(bindings[0].expires_at_ms, T0 + 60_000);

        let refresh = register("c1", 2, ContactChange::Update(vec![update("sip:a@h", 120)]));
        apply_register(&mut bindings, &refresh, T0 + 1000, &policy).unwrap();
        assert_eq!(bindings[0].expires_at_ms, T0 + 1000 + 120_000);
        assert_eq!(bindings[0].cseq, 2);

        let remove = register("c1", 3, ContactChange::Update(vec![update("sip:a@h", 0)]));
        let applied = apply_register(&mut bindings, &remove, T0 + 2000, &policy).unwrap();
        assert!(applied.changed);
        assert!(bindings.is_empty());
    }

    #[test]
    fn same_call_id_needs_higher_cseq() {
        let policy = Policy::default();
        let mut bindings = vec![];
        let add = register("c1", 5, ContactChange::Update(vec![update("sip:a@h", 60)]));
        apply_register(&mut bindings, &add, T0, &policy).unwrap();
        for cseq in [4, 5] {
            let stale = register(
                "c1",
                cseq,
                ContactChange::Update(vec![update("sip:a@h", 0)]),
            );
            let refusal = apply_register(&mut bindings, &stale, T0, &policy).unwrap_err();
            assert_eq!(refusal, Refusal::OutOfOrder { cseq, stored: 5 });
            assert_eq!(refusal.status(), 500);
            assert_eq!(bindings.len(), 1);
        }
        // Another Call-ID may write with any CSeq.
        let other = register("c2", 1, ContactChange::Update(vec![update("sip:a@h", 0)]));
        apply_register(&mut bindings, &other, T0, &policy).unwrap();
        assert!(bindings.is_empty());
    }

    #[test]
    fn a_request_applied_already_is_answered_with_the_bindings_and_changes_nothing() {
        let policy = Policy::default();
        let mut bindings = vec![];
        let add = register(
            "c1",
            5,
            ContactChange::Update(vec![
                update("sip:a@h", 60),
                update("sip:b@h", 60),
                update("sip:gone@h", 0),
            ]),
        );
        apply_register(&mut bindings, &add, T0, &policy).unwrap();
        // Another Call-ID adds a contact; then the first request arrives again, later.
        let other = register("c2", 1, ContactChange::Update(vec![update("sip:c@h", 60)]));
        apply_register(&mut bindings, &other, T0 + 1000, &policy).unwrap();
        let before = bindings.clone();
        let applied = apply_register(&mut bindings, &add, T0 + 2000, &policy).unwrap();
        assert!(!applied.changed);
        assert_eq!(bindings, before);
        assert_eq!(contacts(&bindings), ["<sip:a@h>", "<sip:b@h>", "<sip:c@h>"]);
        assert_eq!(bindings[0].expires_at_ms, T0 + 60_000);
        // The same CSeq with other contents is not that request: out of order, as before.
        for change in [
            ContactChange::Update(vec![update("sip:a@h", 120)]),
            ContactChange::Update(vec![update("sip:a@h", 60), update("sip:c@h", 0)]),
            ContactChange::Update(vec![update("sip:a@h", 0)]),
            ContactChange::RemoveAll,
        ] {
            let again = register("c1", 5, change);
            let refusal = apply_register(&mut bindings, &again, T0 + 3000, &policy).unwrap_err();
            assert_eq!(refusal, Refusal::OutOfOrder { cseq: 5, stored: 5 });
        }
        assert_eq!(bindings, before);
    }

    #[test]
    fn all_or_nothing_across_contacts() {
        let policy = Policy::default();
        let mut bindings = vec![];
        let add = register("c1", 5, ContactChange::Update(vec![update("sip:a@h", 60)]));
        apply_register(&mut bindings, &add, T0, &policy).unwrap();
        let before = bindings.clone();
        // The first contact is new, the second is out of order: neither may land.
        let mixed = register(
            "c1",
            5,
            ContactChange::Update(vec![update("sip:b@h", 60), update("sip:a@h", 60)]),
        );
        assert!(apply_register(&mut bindings, &mixed, T0, &policy).is_err());
        assert_eq!(bindings, before);
    }

    #[test]
    fn remove_all_checks_every_binding() {
        let policy = Policy::default();
        let mut bindings = vec![];
        let add = register(
            "c1",
            5,
            ContactChange::Update(vec![update("sip:a@h", 60), update("sip:b@h", 60)]),
        );
        apply_register(&mut bindings, &add, T0, &policy).unwrap();
        let stale = register("c1", 5, ContactChange::RemoveAll);
        assert!(apply_register(&mut bindings, &stale, T0, &policy).is_err());
        assert_eq!(bindings.len(), 2);
        let fresh = register("c1", 6, ContactChange::RemoveAll);
        apply_register(&mut bindings, &fresh, T0, &policy).unwrap();
        assert!(bindings.is_empty());
    }

    #[test]
    fn limit_rejects_or_evicts_oldest() {
        let mut policy = Policy {
            bindings_per_aor_max: 2,
            ..Policy::default()
        };
        let mut bindings = vec![];
        for (i, uri) in ["sip:a@h", "sip:b@h"].iter().enumerate() {
            let add = register(
                "c",
                i as u32 + 1,
                ContactChange::Update(vec![update(uri, 60)]),
            );
            apply_register(&mut bindings, &add, T0 + i as u64, &policy).unwrap();
        }
        let third = register("c", 3, ContactChange::Update(vec![update("sip:c@h", 60)]));
        let refusal = apply_register(&mut bindings, &third, T0 + 10, &policy).unwrap_err();
        assert_eq!(refusal, Refusal::TooManyBindings { count: 3, max: 2 });
        assert_eq!(refusal.status(), 403);
        assert_eq!(bindings.len(), 2);

        policy.overflow = Overflow::EvictOldest;
        apply_register(&mut bindings, &third, T0 + 10, &policy).unwrap();
        let mut left = contacts(&bindings);
        left.sort();
        assert_eq!(left, ["<sip:b@h>", "<sip:c@h>"]);
    }

    /// Adds `uris` one REGISTER each (Call-ID `c`, rising CSeq) with the user limit `user_max`.
    fn fill(uris: &[&str], user_max: Option<u32>, policy: &Policy) -> Vec<Binding> {
        let mut bindings = vec![];
        for (i, uri) in uris.iter().enumerate() {
            let mut add = register(
                "c",
                i as u32 + 1,
                ContactChange::Update(vec![update(uri, 60)]),
            );
            add.bindings_max = user_max;
            apply_register(&mut bindings, &add, T0 + i as u64, policy).unwrap();
        }
        bindings
    }

    #[test]
    fn a_user_limit_below_the_policy_rejects_or_evicts() {
        let mut policy = Policy::default();
        assert_eq!(policy.bindings_per_aor_max, 8);
        let mut bindings = fill(&["sip:a@h", "sip:b@h"], Some(2), &policy);
        let mut third = register("c", 3, ContactChange::Update(vec![update("sip:c@h", 60)]));
        third.bindings_max = Some(2);
        let refusal = apply_register(&mut bindings, &third, T0 + 10, &policy).unwrap_err();
        assert_eq!(refusal, Refusal::TooManyBindings { count: 3, max: 2 });
        assert_eq!(contacts(&bindings), ["<sip:a@h>", "<sip:b@h>"]);
        // A refresh of a held binding is no new binding: the limit does not stand in its way.
        let mut refresh = register("c", 4, ContactChange::Update(vec![update("sip:a@h", 60)]));
        refresh.bindings_max = Some(2);
        apply_register(&mut bindings, &refresh, T0 + 11, &policy).unwrap();

        policy.overflow = Overflow::EvictOldest;
        third.cseq = 5;
        apply_register(&mut bindings, &third, T0 + 12, &policy).unwrap();
        let mut left = contacts(&bindings);
        left.sort();
        assert_eq!(
            left,
            ["<sip:a@h>", "<sip:c@h>"],
            "b was the least recently refreshed"
        );
    }

    #[test]
    fn a_user_limit_above_the_policy_does_not_raise_it() {
        let policy = Policy {
            bindings_per_aor_max: 2,
            ..Policy::default()
        };
        let mut bindings = fill(&["sip:a@h", "sip:b@h"], Some(50), &policy);
        let mut third = register("c", 3, ContactChange::Update(vec![update("sip:c@h", 60)]));
        third.bindings_max = Some(50);
        let refusal = apply_register(&mut bindings, &third, T0 + 10, &policy).unwrap_err();
        assert_eq!(refusal, Refusal::TooManyBindings { count: 3, max: 2 });
    }

    #[test]
    fn a_lowered_limit_refuses_growth_but_not_refreshes_or_removals() {
        // Bindings held under a higher limit stay; the limit a command carries stops growth.
        let policy = Policy::default();
        let mut bindings = fill(&["sip:a@h", "sip:b@h", "sip:c@h"], None, &policy);
        let limited = |cseq: u32, change: ContactChange| {
            let mut command = register("c", cseq, change);
            command.bindings_max = Some(1);
            command
        };
        let grow = limited(4, ContactChange::Update(vec![update("sip:d@h", 60)]));
        let refusal = apply_register(&mut bindings, &grow, T0 + 10, &policy).unwrap_err();
        assert_eq!(refusal, Refusal::TooManyBindings { count: 4, max: 1 });
        let refresh = limited(5, ContactChange::Update(vec![update("sip:a@h", 60)]));
        apply_register(&mut bindings, &refresh, T0 + 11, &policy).unwrap();
        let remove = limited(6, ContactChange::Update(vec![update("sip:c@h", 0)]));
        apply_register(&mut bindings, &remove, T0 + 12, &policy).unwrap();
        assert_eq!(bindings.len(), 2);
        // Evicting trims to the lowered limit on the next change, keeping the freshest.
        let evicting = Policy {
            overflow: Overflow::EvictOldest,
            ..Policy::default()
        };
        let refresh = limited(7, ContactChange::Update(vec![update("sip:b@h", 60)]));
        apply_register(&mut bindings, &refresh, T0 + 13, &evicting).unwrap();
        assert_eq!(contacts(&bindings), ["<sip:b@h>"]);
    }

    #[test]
    fn expired_bindings_are_not_returned_and_dropped() {
        let policy = Policy::default();
        let mut bindings = vec![];
        let add = register("c1", 1, ContactChange::Update(vec![update("sip:a@h", 60)]));
        apply_register(&mut bindings, &add, T0, &policy).unwrap();
        let query = register("c9", 1, ContactChange::Query);
        let applied = apply_register(&mut bindings, &query, T0 + 60_000, &policy).unwrap();
        assert!(!applied.changed);
        assert!(bindings.is_empty());
    }

    #[test]
    fn expired_binding_with_same_call_id_does_not_block() {
        let policy = Policy::default();
        let mut bindings = vec![];
        let add = register("c1", 9, ContactChange::Update(vec![update("sip:a@h", 60)]));
        apply_register(&mut bindings, &add, T0, &policy).unwrap();
        let again = register("c1", 1, ContactChange::Update(vec![update("sip:a@h", 60)]));
        apply_register(&mut bindings, &again, T0 + 61_000, &policy).unwrap();
        assert_eq!(bindings[0].cseq, 1);
    }

    #[test]
    fn removing_unknown_contact_is_no_change() {
        let policy = Policy::default();
        let mut bindings = vec![];
        let remove = register("c1", 1, ContactChange::Update(vec![update("sip:a@h", 0)]));
        let applied = apply_register(&mut bindings, &remove, T0, &policy).unwrap();
        assert!(!applied.changed);
    }

    #[test]
    fn flow_key_replaces_contact_of_same_flow() {
        let policy = Policy::default();
        let mut bindings = vec![];
        let flow = |uri: &str| ContactUpdate {
            key: BindingKey::Flow {
                instance: "<urn:uuid:1>".into(),
                reg_id: 1,
            },
            instance: Some("<urn:uuid:1>".into()),
            reg_id: Some(1),
            ..update(uri, 60)
        };
        let first = register("c1", 1, ContactChange::Update(vec![flow("sip:a@h1")]));
        apply_register(&mut bindings, &first, T0, &policy).unwrap();
        let second = register("c2", 1, ContactChange::Update(vec![flow("sip:a@h2")]));
        apply_register(&mut bindings, &second, T0, &policy).unwrap();
        assert_eq!(contacts(&bindings), ["<sip:a@h2>"]);
    }
}
