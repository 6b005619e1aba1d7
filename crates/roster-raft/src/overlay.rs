//! The resiliency overlay of a backup copy: what the backup registrar (resiliency mode)
//! acknowledged for its partner's users while the partner did not answer.
//!
//! A copy must stay a prefix of its source's history (the stream keeps applying into its
//! registry, and a failover promotes it), so resiliency writes never touch the copy's registry.
//! They change the [`Overlay`] beside it, through [`ResilientCommand`]s proposed on the copy
//! (Raft-replicated in the copy's pool: they survive the loss of one of its nodes):
//!
//! - `Register` runs the registrar's rules on the AOR's current view (the copy's bindings with
//!   the overlay's merged over them, newest per binding winning, as the homecoming will merge
//!   them at home) and keeps the result in the overlay: the bindings, which of them were written
//!   in resiliency mode, and a [`Tombstone`] for each binding it removed.
//! - `Clear` removes AORs sent home, each only at the version that was sent: an AOR written
//!   again meanwhile stays, to be sent again.
//!
//! Lookups on the copy read the same merged view ([`Overlay::lookup`]). The overlay is part of
//! the group's state (and snapshot) but not of its source's history: a restore replaces the
//! registry and keeps the overlay, and a source never ships it.
//!
//! Apply never reads a clock: the overlay keeps its own last time, and never moves the group's
//! (which belongs to the source's history).

use std::collections::BTreeMap;

use roster_registrar::{
    apply_register, merge_bindings, sort_for_lookup, Binding, BindingKey, MergeCommand,
    RegisterCommand, Registry, Tombstone, BINDINGS_PER_AOR_MAX,
};
use serde::{Deserialize, Serialize};

use crate::request::{GroupRefusal, GroupResponse};

/// AORs one overlay may hold: a copy of one routing group serves a share of its partner's
/// users (a pool of 500,000 users over 32 groups gives about 16,000), so a million is far
/// above any real resiliency period and still bounds the memory a flood of distinct AORs could
/// take (each AOR must be a user of the directory to get here).
pub const OVERLAY_AORS_MAX: usize = 1 << 20;

/// Removals one AOR keeps in the overlay: a removal is kept per binding key, and an AOR holds
/// at most [`BINDINGS_PER_AOR_MAX`] bindings at once; twice that allows for keys that came and
/// went. Past it the oldest removal is forgotten (its binding at home then stays until it
/// expires).
pub const TOMBSTONES_PER_AOR_MAX: usize = 2 * BINDINGS_PER_AOR_MAX;

/// AORs one `Clear` may name: each is an AOR and a version (at most about 300 bytes), so 256
/// fit a log entry many times over.
pub const CLEAR_AORS_MAX: usize = 256;

/// What resiliency mode proposes on a backup copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResilientCommand {
    /// A REGISTER for a partner's user, acknowledged by the backup registrar.
    Register(RegisterCommand),
    /// AORs sent home and merged there: remove each at the version that was sent.
    Clear(Vec<SentAor>),
}

/// An AOR sent home, at the overlay version that was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentAor {
    /// The AOR.
    pub aor: String,
    /// [`OverlayAor::version`] when it was read to be sent.
    pub version: u64,
}

/// Every AOR written in resiliency mode on one copy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    aors: BTreeMap<String, OverlayAor>,
    /// Changes applied so far: the next version.
    changes: u64,
    /// The effective time of the last resiliency command.
    last_time_ms: u64,
}

/// One AOR in the overlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayAor {
    /// The AOR's bindings as the backup registrar answered them last.
    pub bindings: Vec<Binding>,
    /// Keys of the bindings written (added or refreshed) in resiliency mode: those go home.
    pub written: Vec<BindingKey>,
    /// Bindings removed in resiliency mode.
    pub tombstones: Vec<Tombstone>,
    /// The overlay's change count when this AOR last changed.
    pub version: u64,
}

impl Overlay {
    /// Whether no AOR waits to go home.
    pub fn is_empty(&self) -> bool {
        self.aors.is_empty()
    }

    /// How many AORs wait to go home.
    pub fn len(&self) -> usize {
        self.aors.len()
    }

    /// The AOR's entry, if it was written in resiliency mode and not yet sent home.
    pub fn get(&self, aor: &str) -> Option<&OverlayAor> {
        self.aors.get(aor)
    }

    /// Every AOR as a merge for its home registry (as [`Overlay::home_bound`]), the overlay
    /// emptied: a promotion folds it into the group's own registry in one apply step.
    pub fn drain(&mut self) -> Vec<MergeCommand> {
        let merges = self
            .home_bound(usize::MAX)
            .into_iter()
            .map(|(merge, _)| merge)
            .collect();
        self.aors.clear();
        merges
    }

    /// Up to `max` AORs to send home, in AOR order: each as a merge for its home registry and
    /// the version it was read at.
    pub fn home_bound(&self, max: usize) -> Vec<(MergeCommand, SentAor)> {
        self.aors
            .iter()
            .take(max)
            .map(|(aor, entry)| {
                let bindings = entry
                    .bindings
                    .iter()
                    .filter(|binding| entry.written.contains(&binding.key))
                    .cloned()
                    .collect();
                let merge = MergeCommand {
                    aor: aor.clone(),
                    bindings,
                    tombstones: entry.tombstones.clone(),
                };
                let sent = SentAor {
                    aor: aor.clone(),
                    version: entry.version,
                };
                (merge, sent)
            })
            .collect()
    }

    /// The live bindings of `aor` at `now_ms` when the overlay has it (the copy's with the
    /// overlay's merged over them, in lookup order); `None` when it does not.
    pub fn lookup(&self, registry: &Registry, aor: &str, now_ms: u64) -> Option<Vec<Binding>> {
        let entry = self.aors.get(aor)?;
        let mut view = view_of(registry, aor, entry, now_ms);
        view.retain(|binding| binding.is_live(now_ms));
        sort_for_lookup(&mut view);
        Some(view)
    }

    /// Applies one resiliency command at the leader's `timestamp_ms` on a copy whose registry
    /// is `registry` (read, never changed).
    pub(crate) fn apply(
        &mut self,
        registry: &Registry,
        command: &ResilientCommand,
        timestamp_ms: u64,
        group_time_ms: u64,
        epoch: u64,
    ) -> GroupResponse {
        let now_ms = timestamp_ms.max(group_time_ms).max(self.last_time_ms);
        self.last_time_ms = now_ms;
        match command {
            ResilientCommand::Register(register) => {
                self.register(registry, register, now_ms, epoch)
            }
            ResilientCommand::Clear(sent) => {
                let mut cleared = 0u64;
                for sent in sent {
                    if self
                        .aors
                        .get(&sent.aor)
                        .is_some_and(|entry| entry.version == sent.version)
                    {
                        self.aors.remove(&sent.aor);
                        cleared += 1;
                    }
                }
                GroupResponse::OverlayCleared { aors: cleared }
            }
        }
    }

    fn register(
        &mut self,
        registry: &Registry,
        register: &RegisterCommand,
        now_ms: u64,
        epoch: u64,
    ) -> GroupResponse {
        let aor = register.aor.as_str();
        let held = self.aors.get(aor);
        if held.is_none() && self.aors.len() >= OVERLAY_AORS_MAX {
            return GroupResponse::OverlayFull;
        }
        let mut base = match held {
            Some(entry) => view_of(registry, aor, entry, now_ms),
            None => registry.stored_bindings(aor),
        };
        base.retain(|binding| binding.is_live(now_ms));
        let mut next = base.clone();
        let applied = match apply_register(&mut next, register, now_ms, registry.policy()) {
            Ok(applied) => applied,
            Err(refusal) => return GroupResponse::Refused(GroupRefusal::from(refusal)),
        };
        if applied.changed {
            self.changes += 1;
            let version = self.changes;
            let entry = self
                .aors
                .entry(aor.to_string())
                .or_insert_with(|| OverlayAor {
                    bindings: Vec::new(),
                    written: Vec::new(),
                    tombstones: Vec::new(),
                    version,
                });
            record_change(entry, &base, &next, register, now_ms);
            entry.bindings = next.clone();
            entry.version = version;
        }
        GroupResponse::Registered {
            bindings: next,
            changed: applied.changed,
            at_ms: now_ms,
            epoch,
        }
    }
}

/// The AOR's current view: the copy's stored bindings with the overlay entry merged over them.
fn view_of(registry: &Registry, aor: &str, entry: &OverlayAor, now_ms: u64) -> Vec<Binding> {
    let mut view = registry.stored_bindings(aor);
    let overlay = MergeCommand {
        aor: aor.to_string(),
        bindings: entry.bindings.clone(),
        tombstones: entry.tombstones.clone(),
    };
    merge_bindings(&mut view, &overlay, now_ms, registry.policy());
    view
}

/// Records in `entry` what one accepted REGISTER did, from the view before (`base`) to after
/// (`next`): keys it wrote, and a tombstone for each binding it removed.
fn record_change(
    entry: &mut OverlayAor,
    base: &[Binding],
    next: &[Binding],
    register: &RegisterCommand,
    now_ms: u64,
) {
    for binding in next {
        let before = base.iter().find(|old| old.key == binding.key);
        if before != Some(binding) {
            if !entry.written.contains(&binding.key) {
                entry.written.push(binding.key.clone());
            }
            entry.tombstones.retain(|gone| gone.key != binding.key);
        }
    }
    for old in base {
        if next.iter().any(|binding| binding.key == old.key) {
            continue;
        }
        entry.written.retain(|key| *key != old.key);
        entry.tombstones.retain(|gone| gone.key != old.key);
        entry.tombstones.push(Tombstone {
            key: old.key.clone(),
            call_id: register.call_id.clone(),
            cseq: register.cseq,
            removed_at_ms: now_ms,
        });
    }
    if entry.tombstones.len() > TOMBSTONES_PER_AOR_MAX {
        let excess = entry.tombstones.len() - TOMBSTONES_PER_AOR_MAX;
        entry.tombstones.drain(..excess);
    }
}

#[cfg(test)]
mod tests;
