//! Merging bindings written elsewhere into an AOR's: the homecoming of what a backup registrar
//! (resiliency mode) acknowledged while the home pool was out of reach. A pure function of
//! (the home's bindings, the bindings and removals sent home, the command's timestamp).
//!
//! Newest per binding wins. Two writes of one binding from the same Call-ID are ordered by
//! CSeq (RFC 3261 §10.3 step 7), then by time; writes from different Call-IDs have unrelated
//! CSeqs (a phone that restarts begins again at 1), so time orders them. A removal travels as a
//! [`Tombstone`] with the same facts, and removes an older binding only.

use serde::{Deserialize, Serialize};

use crate::binding::{Binding, BindingKey};
use crate::policy::Policy;

/// A binding removed by a REGISTER (expiry 0, or `Contact: *`), kept so that the removal can
/// be sent home and win over an older copy of the binding there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The binding removed.
    pub key: BindingKey,
    /// Call-ID of the REGISTER that removed it.
    pub call_id: String,
    /// CSeq of the REGISTER that removed it.
    pub cseq: u32,
    /// When it was removed (the command's timestamp), in milliseconds since the Unix epoch.
    pub removed_at_ms: u64,
}

/// Bindings and removals of one AOR to merge into its home registry, newest per binding
/// winning (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeCommand {
    /// Canonical address of record.
    pub aor: String,
    /// Bindings written elsewhere (expired ones are ignored).
    pub bindings: Vec<Binding>,
    /// Bindings removed elsewhere.
    pub tombstones: Vec<Tombstone>,
}

/// The facts that order two writes of one binding.
#[derive(Clone, Copy, Debug)]
pub struct WriteStamp<'a> {
    /// The writing REGISTER's Call-ID.
    pub call_id: &'a str,
    /// Its CSeq.
    pub cseq: u32,
    /// When it was applied, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl<'a> WriteStamp<'a> {
    /// The stamp of the write that left `binding`.
    pub fn of_binding(binding: &'a Binding) -> WriteStamp<'a> {
        WriteStamp {
            call_id: &binding.call_id,
            cseq: binding.cseq,
            at_ms: binding.updated_at_ms,
        }
    }

    /// The stamp of the removal `tombstone`.
    pub fn of_tombstone(tombstone: &'a Tombstone) -> WriteStamp<'a> {
        WriteStamp {
            call_id: &tombstone.call_id,
            cseq: tombstone.cseq,
            at_ms: tombstone.removed_at_ms,
        }
    }

    /// Whether this write is strictly newer than `other`: by CSeq then time within one
    /// Call-ID, by time across Call-IDs. Equal writes are not newer (the held one stays).
    pub fn is_newer_than(&self, other: &WriteStamp<'_>) -> bool {
        if self.call_id == other.call_id {
            (self.cseq, self.at_ms) > (other.cseq, other.at_ms)
        } else {
            self.at_ms > other.at_ms
        }
    }
}

/// Merges `command` into `held` (an AOR's bindings at home) at `now_ms`; returns whether
/// anything changed. Expired bindings go (as an apply drops them). Never refused: what was
/// acknowledged elsewhere must land. When the result holds more bindings than the policy's
/// limit, the most recently written ones are kept whatever the overflow rule (a refusal would
/// leave the bindings out of reach for good).
pub fn merge_bindings(
    held: &mut Vec<Binding>,
    command: &MergeCommand,
    now_ms: u64,
    policy: &Policy,
) -> bool {
    held.retain(|binding| binding.is_live(now_ms));
    let mut changed = false;
    for incoming in command.bindings.iter().filter(|b| b.is_live(now_ms)) {
        let stamp = WriteStamp::of_binding(incoming);
        match held.iter_mut().find(|b| b.key == incoming.key) {
            Some(existing) => {
                if stamp.is_newer_than(&WriteStamp::of_binding(existing)) {
                    *existing = incoming.clone();
                    changed = true;
                }
            }
            None => {
                held.push(incoming.clone());
                changed = true;
            }
        }
    }
    for tombstone in &command.tombstones {
        let stamp = WriteStamp::of_tombstone(tombstone);
        let before = held.len();
        held.retain(|binding| {
            binding.key != tombstone.key || !stamp.is_newer_than(&WriteStamp::of_binding(binding))
        });
        changed |= held.len() != before;
    }
    let max = policy.bindings_per_aor_max;
    if held.len() > max {
        // Stable: equal times keep their order, the same on every replica.
        held.sort_by_key(|binding| std::cmp::Reverse(binding.updated_at_ms));
        held.truncate(max);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn binding(uri: &str, call_id: &str, cseq: u32, at_ms: u64) -> Binding {
        Binding {
            key: BindingKey::Uri(uri.into()),
            contact: format!("<{uri}>;c={cseq}"),
            q_milli: None,
            expires_at_ms: at_ms + 3_600_000,
            updated_at_ms: at_ms,
            call_id: call_id.into(),
            cseq,
            instance: None,
            reg_id: None,
            path: vec![],
            received: None,
            user_agent: None,
        }
    }

    fn tombstone(uri: &str, call_id: &str, cseq: u32, at_ms: u64) -> Tombstone {
        Tombstone {
            key: BindingKey::Uri(uri.into()),
            call_id: call_id.into(),
            cseq,
            removed_at_ms: at_ms,
        }
    }

    fn merge(bindings: Vec<Binding>, tombstones: Vec<Tombstone>) -> MergeCommand {
        MergeCommand {
            aor: "sip:a@x".into(),
            bindings,
            tombstones,
        }
    }

    fn contacts(held: &[Binding]) -> Vec<&str> {
        held.iter().map(|b| b.contact.as_str()).collect()
    }

    #[test]
    fn a_newer_binding_replaces_an_older_one_and_a_new_key_is_added() {
        let mut held = vec![binding("sip:1@h", "c", 3, T0)];
        let command = merge(
            vec![
                binding("sip:1@h", "c", 4, T0 + 10),
                binding("sip:2@h", "d", 1, T0 + 10),
            ],
            vec![],
        );
        assert!(merge_bindings(
            &mut held,
            &command,
            T0 + 20,
            &Policy::default()
        ));
        assert_eq!(contacts(&held), ["<sip:1@h>;c=4", "<sip:2@h>;c=1"]);
    }

    #[test]
    fn a_binding_home_wrote_later_wins() {
        // Same Call-ID: the higher CSeq wins even if its clock was behind.
        let mut held = vec![binding("sip:1@h", "c", 9, T0)];
        let command = merge(vec![binding("sip:1@h", "c", 8, T0 + 500)], vec![]);
        assert!(!merge_bindings(
            &mut held,
            &command,
            T0 + 600,
            &Policy::default()
        ));
        assert_eq!(contacts(&held), ["<sip:1@h>;c=9"]);
        // Another Call-ID: time orders, whatever the CSeqs.
        let mut held = vec![binding("sip:1@h", "phone-restarted", 1, T0 + 900)];
        let command = merge(vec![binding("sip:1@h", "c", 500, T0 + 500)], vec![]);
        assert!(!merge_bindings(
            &mut held,
            &command,
            T0 + 1000,
            &Policy::default()
        ));
        assert_eq!(contacts(&held), ["<sip:1@h>;c=1"]);
        // The same write twice changes nothing (a homecoming sent again).
        let again = merge(held.clone(), vec![]);
        assert!(!merge_bindings(
            &mut held,
            &again,
            T0 + 1000,
            &Policy::default()
        ));
    }

    #[test]
    fn a_tombstone_removes_only_an_older_binding() {
        let mut held = vec![
            binding("sip:1@h", "c", 3, T0),
            binding("sip:2@h", "d", 7, T0 + 100),
        ];
        let command = merge(
            vec![],
            vec![
                tombstone("sip:1@h", "c", 4, T0 + 50),
                // Older than home's write of sip:2@h (same Call-ID, lower CSeq): it stays.
                tombstone("sip:2@h", "d", 6, T0 + 200),
            ],
        );
        assert!(merge_bindings(
            &mut held,
            &command,
            T0 + 300,
            &Policy::default()
        ));
        assert_eq!(contacts(&held), ["<sip:2@h>;c=7"]);
    }

    #[test]
    fn expired_bindings_are_not_merged_and_the_limit_keeps_the_newest() {
        let mut expired = binding("sip:1@h", "c", 1, T0);
        expired.expires_at_ms = T0 + 10;
        let mut held = vec![];
        assert!(!merge_bindings(
            &mut held,
            &merge(vec![expired], vec![]),
            T0 + 20,
            &Policy::default()
        ));
        assert!(held.is_empty());
        let policy = Policy {
            bindings_per_aor_max: 2,
            ..Policy::default()
        };
        let mut held = vec![binding("sip:old@h", "c", 1, T0)];
        let command = merge(
            vec![
                binding("sip:2@h", "d", 1, T0 + 1),
                binding("sip:3@h", "e", 1, T0 + 2),
            ],
            vec![],
        );
        assert!(merge_bindings(&mut held, &command, T0 + 3, &policy));
        assert_eq!(contacts(&held), ["<sip:3@h>;c=1", "<sip:2@h>;c=1"]);
    }
}
