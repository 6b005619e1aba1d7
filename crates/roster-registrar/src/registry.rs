//! Every AOR's bindings, changed only by applying [`Command`]s.

use std::collections::HashMap;

use crate::apply::{apply_register_owned, Refusal};
use crate::binding::Binding;
use crate::command::Command;
use crate::merge::{merge_bindings, MergeCommand};
use crate::policy::Policy;
use crate::stored::StoredBinding;

/// The bindings of every AOR: the registrar's state machine.
///
/// Changed only through [`Registry::apply`], with the command's timestamp; reads take the
/// reader's `now_ms` only to hide bindings that have expired but are not purged yet.
///
/// Bindings are kept compact ([`StoredBinding`]: one allocation for a binding's strings) and
/// serialize as [`Binding`]s.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Registry {
    aors: HashMap<Box<str>, Box<[StoredBinding]>>,
    policy: Policy,
}

/// The result of applying one [`Command`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    /// A REGISTER was applied; these are the AOR's live bindings now.
    Registered {
        /// Live bindings after the apply, for the `200 OK`.
        bindings: Vec<Binding>,
        /// Whether anything was added, refreshed or removed.
        changed: bool,
    },
    /// A REGISTER was refused; nothing changed.
    Refused(Refusal),
    /// Expired bindings were removed.
    Purged {
        /// How many bindings went.
        bindings_removed: usize,
    },
}

impl Registry {
    /// An empty registry applying `policy`.
    pub fn new(policy: Policy) -> Registry {
        Registry {
            aors: HashMap::new(),
            policy,
        }
    }

    /// The policy commands are applied with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Applies one command at the command's timestamp `now_ms`.
    pub fn apply(&mut self, command: &Command, now_ms: u64) -> CommandOutcome {
        match command {
            Command::Register(register) => {
                let aor = register.aor.as_str();
                // One lookup for an AOR already held; a refusal leaves its stored form as it was.
                let held = self.aors.get_mut(aor);
                let bindings = held
                    .as_deref()
                    .map(|stored| stored.iter().map(StoredBinding::to_binding).collect())
                    .unwrap_or_default();
                let (bindings, applied) =
                    match apply_register_owned(bindings, register, now_ms, &self.policy) {
                        Ok(applied) => applied,
                        Err(refusal) => return CommandOutcome::Refused(refusal),
                    };
                let stored = || bindings.iter().map(StoredBinding::from).collect();
                match held {
                    Some(slot) if !bindings.is_empty() => *slot = stored(),
                    Some(_) => {
                        self.aors.remove(aor);
                    }
                    None if !bindings.is_empty() => {
                        self.aors.insert(aor.into(), stored());
                    }
                    None => {}
                }
                CommandOutcome::Registered {
                    bindings,
                    changed: applied.changed,
                }
            }
            Command::PurgeExpired => CommandOutcome::Purged {
                bindings_removed: self.purge_expired(now_ms),
            },
        }
    }

    /// Merges bindings written elsewhere into `command.aor`'s at the command's timestamp
    /// `now_ms`, newest per binding winning (see [`merge_bindings`]); returns the AOR's live
    /// bindings after it. Never refused.
    pub fn merge(&mut self, command: &MergeCommand, now_ms: u64) -> CommandOutcome {
        let aor = command.aor.as_str();
        let mut bindings = self.stored_bindings(aor);
        let changed = merge_bindings(&mut bindings, command, now_ms, &self.policy);
        if bindings.is_empty() {
            self.aors.remove(aor);
        } else {
            let stored = bindings.iter().map(StoredBinding::from).collect();
            self.aors.insert(aor.into(), stored);
        }
        CommandOutcome::Registered { bindings, changed }
    }

    /// Every stored binding of `aor`, expired ones included, in stored order: what the rules
    /// start from.
    pub fn stored_bindings(&self, aor: &str) -> Vec<Binding> {
        self.aors
            .get(aor)
            .map(|stored| stored.iter().map(StoredBinding::to_binding).collect())
            .unwrap_or_default()
    }

    /// The live bindings of `aor` at `now_ms`, highest q first (absent q counts as 1.0), then
    /// most recently refreshed first.
    pub fn lookup(&self, aor: &str, now_ms: u64) -> Vec<Binding> {
        let mut live: Vec<Binding> = self
            .aors
            .get(aor)
            .into_iter()
            .flat_map(|stored| stored.iter())
            .filter(|binding| binding.is_live(now_ms))
            .map(StoredBinding::to_binding)
            .collect();
        sort_for_lookup(&mut live);
        live
    }

    /// Every AOR with its stored bindings, expired ones included, in no particular order: what
    /// a copy of this registry must hold to be equal to it (`roster-raft`'s restore).
    pub fn entries(&self) -> impl Iterator<Item = (&str, Vec<Binding>)> {
        self.aors.iter().map(|(aor, stored)| {
            let bindings = stored.iter().map(StoredBinding::to_binding).collect();
            (aor.as_ref(), bindings)
        })
    }

    /// [`Registry::entries`] sorted by AOR: two registries hold the same bindings exactly when
    /// these are equal (their hash maps' orders differ).
    pub fn sorted_entries(&self) -> Vec<(String, Vec<Binding>)> {
        let mut all: Vec<(String, Vec<Binding>)> = self
            .entries()
            .map(|(aor, bindings)| (aor.to_string(), bindings))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Adds `bindings` to `aor`'s stored ones, exactly as given (expired ones too). Only for
    /// filling an empty copy from its source's [`Registry::entries`], an AOR's bindings in one
    /// or more pieces: it bypasses the registrar rules and their limits.
    pub fn restore_extend(&mut self, aor: &str, bindings: &[Binding]) {
        if bindings.is_empty() {
            return;
        }
        let stored = bindings.iter().map(StoredBinding::from);
        match self.aors.get_mut(aor) {
            Some(held) => {
                let mut all = std::mem::take(held).into_vec();
                all.extend(stored);
                *held = all.into_boxed_slice();
            }
            None => {
                self.aors.insert(aor.into(), stored.collect());
            }
        }
    }

    /// Number of AORs with at least one stored binding (expired ones included until purged).
    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    /// Number of stored bindings (expired ones included until purged).
    pub fn binding_count(&self) -> usize {
        self.aors.values().map(|stored| stored.len()).sum()
    }

    /// Whether any stored binding has expired at `now_ms`: a purge would do something.
    pub fn has_expired(&self, now_ms: u64) -> bool {
        self.aors
            .values()
            .flat_map(|stored| stored.iter())
            .any(|binding| !binding.is_live(now_ms))
    }

    fn purge_expired(&mut self, now_ms: u64) -> usize {
        let mut removed = 0;
        self.aors.retain(|_, bindings| {
            let live = bindings
                .iter()
                .filter(|binding| binding.is_live(now_ms))
                .count();
            if live < bindings.len() {
                removed += bindings.len() - live;
                *bindings = bindings
                    .iter()
                    .filter(|binding| binding.is_live(now_ms))
                    .cloned()
                    .collect();
            }
            live > 0
        });
        removed
    }
}

/// Puts bindings in the order a lookup answers them: highest q first (absent q counts as 1.0),
/// then most recently refreshed first.
pub fn sort_for_lookup(bindings: &mut [Binding]) {
    bindings.sort_by(|a, b| {
        b.q_order()
            .cmp(&a.q_order())
            .then(b.updated_at_ms.cmp(&a.updated_at_ms))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::BindingKey;
    use crate::command::{ContactChange, ContactUpdate, RegisterCommand};

    const T0: u64 = 1_700_000_000_000;

    fn register(aor: &str, cseq: u32, contacts: &[(&str, u32, Option<u16>)]) -> Command {
        let updates = contacts
            .iter()
            .map(|(uri, expires_s, q_milli)| ContactUpdate {
                key: BindingKey::Uri(uri.to_string()),
                contact: format!("<{uri}>"),
                q_milli: *q_milli,
                expires_s: *expires_s,
                instance: None,
                reg_id: None,
            })
            .collect();
        Command::Register(RegisterCommand {
            aor: aor.into(),
            call_id: "call".into(),
            cseq,
            change: ContactChange::Update(updates),
            path: vec![],
            received: None,
            user_agent: None,
            bindings_max: None,
        })
    }

    #[test]
    fn lookup_orders_by_q_and_hides_expired() {
        let mut registry = Registry::new(Policy::default());
        let command = register(
            "sip:a@x",
            1,
            &[
                ("sip:low@h", 3600, Some(100)),
                ("sip:none@h", 60, None),
                ("sip:mid@h", 3600, Some(500)),
            ],
        );
        registry.apply(&command, T0);
        let order: Vec<String> = registry
            .lookup("sip:a@x", T0)
            .into_iter()
            .map(|b| b.contact)
            .collect();
        assert_eq!(order, ["<sip:none@h>", "<sip:mid@h>", "<sip:low@h>"]);
        assert_eq!(registry.lookup("sip:a@x", T0 + 60_000).len(), 2);
    }

    #[test]
    fn a_refusal_changes_nothing_and_removing_the_last_binding_drops_the_aor() {
        let mut registry = Registry::new(Policy::default());
        registry.apply(&register("sip:a@x", 5, &[("sip:1@h", 60, None)]), T0);
        registry.apply(&register("sip:a@x", 6, &[("sip:2@h", 3600, None)]), T0);
        let before = registry.aors.clone();
        // Out of order (same Call-ID, lower CSeq), applied after sip:1@h expired: refused,
        // and the expired binding is still held until a purge or an accepted command.
        let outcome = registry.apply(
            &register("sip:a@x", 4, &[("sip:2@h", 0, None)]),
            T0 + 61_000,
        );
        assert!(matches!(
            outcome,
            CommandOutcome::Refused(Refusal::OutOfOrder { .. })
        ));
        assert_eq!(registry.aors, before);
        assert_eq!(registry.binding_count(), 2);
        // Accepted: the expired binding goes with it.
        registry.apply(
            &register("sip:a@x", 7, &[("sip:2@h", 0, None)]),
            T0 + 61_000,
        );
        assert_eq!(registry.aor_count(), 0);
        // Removing a binding of an AOR never held stores nothing.
        let outcome = registry.apply(&register("sip:b@x", 1, &[("sip:3@h", 0, None)]), T0);
        assert!(matches!(
            outcome,
            CommandOutcome::Registered { changed: false, .. }
        ));
        assert_eq!(registry.aor_count(), 0);
    }

    #[test]
    fn purge_removes_expired_and_empty_aors() {
        let mut registry = Registry::new(Policy::default());
        registry.apply(&register("sip:a@x", 1, &[("sip:1@h", 60, None)]), T0);
        registry.apply(&register("sip:b@x", 1, &[("sip:2@h", 3600, None)]), T0);
        assert!(!registry.has_expired(T0 + 59_999));
        assert!(registry.has_expired(T0 + 60_000));
        let outcome = registry.apply(&Command::PurgeExpired, T0 + 60_000);
        assert_eq!(
            outcome,
            CommandOutcome::Purged {
                bindings_removed: 1
            }
        );
        assert_eq!(registry.aor_count(), 1);
        assert_eq!(registry.binding_count(), 1);
    }

    #[test]
    fn same_commands_same_state() {
        let commands = [
            register("sip:a@x", 1, &[("sip:1@h", 60, None)]),
            register("sip:a@x", 2, &[("sip:2@h", 60, Some(300))]),
            register("sip:a@x", 2, &[("sip:1@h", 0, None)]),
            Command::PurgeExpired,
        ];
        let run = || {
            let mut registry = Registry::new(Policy::default());
            let outcomes: Vec<CommandOutcome> = commands
                .iter()
                .enumerate()
                .map(|(i, c)| registry.apply(c, T0 + i as u64 * 1000))
                .collect();
            (outcomes, registry.lookup("sip:a@x", T0 + 5000))
        };
        assert_eq!(run(), run());
    }
}
