//! [`StoredBinding`]: a [`Binding`] as the [`crate::Registry`] keeps it, its strings in one
//! allocation.
//!
//! A pool holds a million bindings per node, most of them one per AOR and idle for an hour, so
//! their size is the node's memory. A `Binding` carries up to six strings, each a separate heap
//! allocation behind a 24-byte `String`; here they share one `Box<str>` and `u32` offsets. The
//! registry converts to `Binding` for the rules ([`crate::apply_register`]) and for readers, and
//! serializes as `Binding`, so snapshots keep their format.

use serde::{Deserialize, Serialize};

use crate::binding::{Binding, BindingKey};

/// Which of the optional strings are present, and the key's kind.
const KEY_IS_FLOW: u8 = 1;
const HAS_INSTANCE: u8 = 1 << 1;
const HAS_RECEIVED: u8 = 1 << 2;
const HAS_USER_AGENT: u8 = 1 << 3;
/// The key's text is not stored: it is the contact's URI between `<` and the first `>` (a
/// Uri key), or the instance (a Flow key), as it usually is.
const KEY_DERIVED: u8 = 1 << 4;

/// The strings of `text`, in order: the key's text (the comparison URI, or the flow's
/// instance), the contact, the Call-ID, the instance, `received`, the User-Agent.
const PARTS: usize = 6;

/// A binding in compact form; see the module doc.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Binding", into = "Binding")]
pub(crate) struct StoredBinding {
    text: Box<str>,
    /// End offset in `text` of each part (the start is the previous part's end).
    ends: [u32; PARTS],
    path: Box<[Box<str>]>,
    pub(crate) expires_at_ms: u64,
    pub(crate) updated_at_ms: u64,
    cseq: u32,
    reg_id: Option<u32>,
    /// The flow key's `reg-id` (meaningful when `flags` has `KEY_IS_FLOW`).
    key_reg_id: u32,
    q_milli: Option<u16>,
    flags: u8,
}

impl StoredBinding {
    /// Whether the binding is still live at `now_ms` (as [`Binding::is_live`]).
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }

    fn part(&self, index: usize) -> &str {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        // Offsets come from `From<&Binding>`, which cut `text` at these char boundaries.
        self.text
            .get(start as usize..self.ends[index] as usize)
            .unwrap_or_default()
    }

    fn optional(&self, flag: u8, index: usize) -> Option<String> {
        (self.flags & flag != 0).then(|| self.part(index).to_owned())
    }

    /// The key's text: stored, or derived (see `KEY_DERIVED`).
    fn key_text(&self) -> &str {
        if self.flags & KEY_DERIVED == 0 {
            self.part(0)
        } else if self.flags & KEY_IS_FLOW != 0 {
            self.part(3)
        } else {
            contact_uri(self.part(1)).unwrap_or_default()
        }
    }

    /// The binding in its ordinary form.
    pub(crate) fn to_binding(&self) -> Binding {
        let key = if self.flags & KEY_IS_FLOW != 0 {
            BindingKey::Flow {
                instance: self.key_text().to_owned(),
                reg_id: self.key_reg_id,
            }
        } else {
            BindingKey::Uri(self.key_text().to_owned())
        };
        Binding {
            key,
            contact: self.part(1).to_owned(),
            q_milli: self.q_milli,
            expires_at_ms: self.expires_at_ms,
            updated_at_ms: self.updated_at_ms,
            call_id: self.part(2).to_owned(),
            cseq: self.cseq,
            instance: self.optional(HAS_INSTANCE, 3),
            reg_id: self.reg_id,
            path: self.path.iter().map(|hop| hop.to_string()).collect(),
            received: self.optional(HAS_RECEIVED, 4),
            user_agent: self.optional(HAS_USER_AGENT, 5),
        }
    }
}

impl From<&Binding> for StoredBinding {
    fn from(binding: &Binding) -> StoredBinding {
        let mut flags = 0;
        let (mut key_text, key_reg_id) = match &binding.key {
            BindingKey::Uri(uri) => {
                if contact_uri(&binding.contact) == Some(uri.as_str()) {
                    flags |= KEY_DERIVED;
                }
                (uri.as_str(), 0)
            }
            BindingKey::Flow { instance, reg_id } => {
                flags |= KEY_IS_FLOW;
                if binding.instance.as_ref() == Some(instance) {
                    flags |= KEY_DERIVED;
                }
                (instance.as_str(), *reg_id)
            }
        };
        if flags & KEY_DERIVED != 0 {
            key_text = "";
        }
        for (value, flag) in [
            (&binding.instance, HAS_INSTANCE),
            (&binding.received, HAS_RECEIVED),
            (&binding.user_agent, HAS_USER_AGENT),
        ] {
            if value.is_some() {
                flags |= flag;
            }
        }
        let parts: [&str; PARTS] = [
            key_text,
            &binding.contact,
            &binding.call_id,
            binding.instance.as_deref().unwrap_or_default(),
            binding.received.as_deref().unwrap_or_default(),
            binding.user_agent.as_deref().unwrap_or_default(),
        ];
        let mut text = String::with_capacity(parts.iter().map(|part| part.len()).sum());
        let mut ends = [0u32; PARTS];
        for (end, part) in ends.iter_mut().zip(parts) {
            text.push_str(part);
            // A SIP message is far below 4 GiB (the parser's limit is 64 KiB); saturating keeps
            // this total even so, at the price of a truncated part.
            *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        StoredBinding {
            text: text.into_boxed_str(),
            ends,
            path: binding.path.iter().map(|hop| hop.as_str().into()).collect(),
            expires_at_ms: binding.expires_at_ms,
            updated_at_ms: binding.updated_at_ms,
            cseq: binding.cseq,
            reg_id: binding.reg_id,
            key_reg_id,
            q_milli: binding.q_milli,
            flags,
        }
    }
}

/// The URI of a contact written `<uri>...`: between the `<` and the first `>`.
fn contact_uri(contact: &str) -> Option<&str> {
    let inner = contact.strip_prefix('<')?;
    inner.get(..inner.find('>')?)
}

impl From<Binding> for StoredBinding {
    fn from(binding: Binding) -> StoredBinding {
        StoredBinding::from(&binding)
    }
}

impl From<StoredBinding> for Binding {
    fn from(stored: StoredBinding) -> Binding {
        stored.to_binding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Binding {
        Binding {
            key: BindingKey::Uri("sip:alice@192.0.2.1:5060".into()),
            contact: "<sip:alice@192.0.2.1:5060>;+sip.ice".into(),
            q_milli: Some(500),
            expires_at_ms: 1_700_000_060_000,
            updated_at_ms: 1_700_000_000_000,
            call_id: "a84b4c76e66710@pc33".into(),
            cseq: 314_159,
            instance: None,
            reg_id: None,
            path: vec![],
            received: Some("udp:192.0.2.1:5060".into()),
            user_agent: None,
        }
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let outbound = Binding {
            key: BindingKey::Flow {
                instance: "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>".into(),
                reg_id: 2,
            },
            instance: Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>".into()),
            reg_id: Some(2),
            path: vec![
                "<sip:edge1.example.com;lr>".into(),
                "<sip:é.example;lr>".into(),
            ],
            user_agent: Some("Sofphone/1.0 (ünïcode)".into()),
            received: None,
            q_milli: None,
            ..plain()
        };
        let empty_strings = Binding {
            key: BindingKey::Uri(String::new()),
            contact: String::new(),
            call_id: String::new(),
            received: Some(String::new()),
            ..plain()
        };
        let key_not_in_contact = Binding {
            key: BindingKey::Uri("sip:alice@192.0.2.1".into()),
            contact: "<sip:ALICE@192.0.2.1>".into(),
            ..plain()
        };
        let flow_key_not_the_instance = Binding {
            key: BindingKey::Flow {
                instance: "<urn:uuid:1>".into(),
                reg_id: 1,
            },
            instance: None,
            ..plain()
        };
        let unbracketed = Binding {
            key: BindingKey::Uri("sip:alice@192.0.2.1".into()),
            contact: "sip:alice@192.0.2.1".into(),
            ..plain()
        };
        for binding in [
            plain(),
            outbound,
            empty_strings,
            key_not_in_contact,
            flow_key_not_the_instance,
            unbracketed,
        ] {
            let stored = StoredBinding::from(&binding);
            assert_eq!(stored.to_binding(), binding);
            assert_eq!(
                stored.is_live(binding.expires_at_ms - 1),
                binding.is_live(binding.expires_at_ms - 1)
            );
        }
    }

    #[test]
    fn serializes_exactly_as_a_binding() {
        let config = bincode::config::standard();
        let binding = plain();
        let as_binding = bincode::serde::encode_to_vec(&binding, config).unwrap();
        let as_stored =
            bincode::serde::encode_to_vec(StoredBinding::from(&binding), config).unwrap();
        assert_eq!(as_stored, as_binding);
        let (decoded, _): (StoredBinding, usize) =
            bincode::serde::decode_from_slice(&as_binding, config).unwrap();
        assert_eq!(decoded.to_binding(), binding);
    }

    #[test]
    fn a_key_found_in_the_contact_or_the_instance_is_not_stored_twice() {
        let stored = StoredBinding::from(&plain());
        assert_ne!(stored.flags & KEY_DERIVED, 0);
        assert_eq!(stored.text.matches("sip:alice@192.0.2.1:5060").count(), 1);
    }

    #[test]
    fn is_smaller_than_a_binding() {
        assert!(
            std::mem::size_of::<StoredBinding>() <= 96,
            "{}",
            std::mem::size_of::<StoredBinding>()
        );
        assert!(std::mem::size_of::<Binding>() > 2 * std::mem::size_of::<StoredBinding>());
    }
}
