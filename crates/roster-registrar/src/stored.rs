//! [`StoredBinding`]: a [`Binding`] as the [`crate::Registry`] keeps it, in 48 bytes and one
//! allocation.
//!
//! A pool holds a million bindings per node, most of them one per AOR and idle for an hour, so
//! their size is the node's memory. A `Binding` is 208 bytes with up to six strings and a Path
//! vector, each a separate heap allocation. Here the strings share one buffer: a header of
//! LEB128 lengths, then the strings. The registry converts to `Binding` for the rules
//! ([`crate::apply_register`]) and for readers, and serializes as `Binding`, so snapshots keep
//! their format.

use serde::{Deserialize, Serialize};

use crate::binding::{Binding, BindingKey};

/// The key is a flow (`+sip.instance` and `reg-id`), not a URI.
const KEY_IS_FLOW: u8 = 1;
const HAS_INSTANCE: u8 = 1 << 1;
const HAS_RECEIVED: u8 = 1 << 2;
const HAS_USER_AGENT: u8 = 1 << 3;
/// The key's text is not stored: it is the contact's URI between `<` and the first `>` (a
/// Uri key), or the instance (a Flow key), as it usually is.
const KEY_DERIVED: u8 = 1 << 4;
const HAS_REG_ID: u8 = 1 << 5;
const HAS_Q: u8 = 1 << 6;

/// The strings of `data`, in order: the key's text (the comparison URI, or the flow's
/// instance; empty when derived), the contact, the Call-ID, the instance, `received`, the
/// User-Agent; then the Path hops.
const PARTS: usize = 6;

/// A binding in compact form; see the module doc.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Binding", into = "Binding")]
pub(crate) struct StoredBinding {
    /// LEB128 lengths of the `PARTS` strings, the number of Path hops and each hop's length;
    /// then the strings themselves, UTF-8.
    data: Box<[u8]>,
    pub(crate) expires_at_ms: u64,
    pub(crate) updated_at_ms: u64,
    cseq: u32,
    /// `reg-id` (when `HAS_REG_ID`).
    reg_id: u32,
    /// The flow key's `reg-id` (when `KEY_IS_FLOW`).
    key_reg_id: u32,
    /// q in thousandths (when `HAS_Q`).
    q_milli: u16,
    flags: u8,
}

/// The strings of a [`StoredBinding`], borrowed from its buffer.
struct Strings<'a> {
    parts: [&'a str; PARTS],
    path: Vec<&'a str>,
}

impl StoredBinding {
    /// Whether the binding is still live at `now_ms` (as [`Binding::is_live`]).
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Splits the buffer. It was written by `From<&Binding>`, so this cannot fail; should it,
    /// the strings read as empty rather than as garbage.
    fn strings(&self) -> Strings<'_> {
        let decoded = decode(&self.data);
        debug_assert!(
            decoded.is_some(),
            "a StoredBinding's buffer does not decode"
        );
        decoded.unwrap_or(Strings {
            parts: [""; PARTS],
            path: Vec::new(),
        })
    }

    /// The binding in its ordinary form.
    pub(crate) fn to_binding(&self) -> Binding {
        let Strings { parts, path } = self.strings();
        let [key_text, contact, call_id, instance, received, user_agent] = parts;
        let optional = |flag: u8, value: &str| self.has(flag).then(|| value.to_owned());
        let key_text = if !self.has(KEY_DERIVED) {
            key_text
        } else if self.has(KEY_IS_FLOW) {
            instance
        } else {
            contact_uri(contact).unwrap_or_default()
        };
        let key = if self.has(KEY_IS_FLOW) {
            BindingKey::Flow {
                instance: key_text.to_owned(),
                reg_id: self.key_reg_id,
            }
        } else {
            BindingKey::Uri(key_text.to_owned())
        };
        Binding {
            key,
            contact: contact.to_owned(),
            q_milli: self.has(HAS_Q).then_some(self.q_milli),
            expires_at_ms: self.expires_at_ms,
            updated_at_ms: self.updated_at_ms,
            call_id: call_id.to_owned(),
            cseq: self.cseq,
            instance: optional(HAS_INSTANCE, instance),
            reg_id: self.has(HAS_REG_ID).then_some(self.reg_id),
            path: path.into_iter().map(str::to_owned).collect(),
            received: optional(HAS_RECEIVED, received),
            user_agent: optional(HAS_USER_AGENT, user_agent),
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
        for (present, flag) in [
            (binding.instance.is_some(), HAS_INSTANCE),
            (binding.received.is_some(), HAS_RECEIVED),
            (binding.user_agent.is_some(), HAS_USER_AGENT),
            (binding.reg_id.is_some(), HAS_REG_ID),
            (binding.q_milli.is_some(), HAS_Q),
        ] {
            if present {
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
        StoredBinding {
            data: encode(&parts, &binding.path),
            expires_at_ms: binding.expires_at_ms,
            updated_at_ms: binding.updated_at_ms,
            cseq: binding.cseq,
            reg_id: binding.reg_id.unwrap_or_default(),
            key_reg_id,
            q_milli: binding.q_milli.unwrap_or_default(),
            flags,
        }
    }
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

/// The URI of a contact written `<uri>...`: between the `<` and the first `>`.
fn contact_uri(contact: &str) -> Option<&str> {
    let inner = contact.strip_prefix('<')?;
    inner.get(..inner.find('>')?)
}

/// The buffer of `parts` and `path`: their lengths (LEB128), then their bytes.
fn encode(parts: &[&str; PARTS], path: &[String]) -> Box<[u8]> {
    let strings = || parts.iter().copied().chain(path.iter().map(String::as_str));
    let mut data = Vec::with_capacity(strings().map(|part| part.len() + 2).sum::<usize>() + 1);
    for part in parts {
        push_length(&mut data, part.len());
    }
    push_length(&mut data, path.len());
    for hop in path {
        push_length(&mut data, hop.len());
    }
    for part in strings() {
        data.extend_from_slice(part.as_bytes());
    }
    data.into_boxed_slice()
}

fn push_length(data: &mut Vec<u8>, mut length: usize) {
    loop {
        let low = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            data.push(low);
            return;
        }
        data.push(low | 0x80);
    }
}

/// Reads what `encode` wrote; `None` if `data` is not such a buffer.
fn decode(data: &[u8]) -> Option<Strings<'_>> {
    let mut at = 0usize;
    let mut length = || -> Option<usize> {
        let mut value = 0usize;
        for shift in (0..usize::BITS).step_by(7) {
            let byte = *data.get(at)?;
            at += 1;
            value |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    };
    let mut part_lengths = [0usize; PARTS];
    for part_length in &mut part_lengths {
        *part_length = length()?;
    }
    let hops = length()?;
    let hop_lengths = (0..hops)
        .map(|_| length())
        .collect::<Option<Vec<usize>>>()?;
    let mut body = data.get(at..)?;
    let mut take = |length: usize| -> Option<&str> {
        let (string, rest) = body.split_at_checked(length)?;
        body = rest;
        std::str::from_utf8(string).ok()
    };
    let mut parts = [""; PARTS];
    for (part, part_length) in parts.iter_mut().zip(part_lengths) {
        *part = take(part_length)?;
    }
    let path = hop_lengths
        .into_iter()
        .map(&mut take)
        .collect::<Option<Vec<&str>>>()?;
    body.is_empty().then_some(Strings { parts, path })
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
        let text = String::from_utf8_lossy(&stored.data);
        assert_eq!(text.matches("sip:alice@192.0.2.1:5060").count(), 1);
    }

    #[test]
    fn long_strings_take_multi_byte_lengths() {
        let long = Binding {
            contact: format!("<sip:alice@192.0.2.1:5060;x={}>", "y".repeat(70_000)),
            path: vec!["a".repeat(200), String::new(), "<sip:p;lr>".into()],
            ..plain()
        };
        assert_eq!(StoredBinding::from(&long).to_binding(), long);
    }

    #[test]
    fn a_damaged_buffer_does_not_decode() {
        let stored = StoredBinding::from(&plain());
        assert!(decode(&stored.data).is_some());
        assert!(decode(&stored.data[..stored.data.len() - 1]).is_none());
        let mut longer = stored.data.to_vec();
        longer.push(b'x');
        assert!(decode(&longer).is_none());
        assert!(decode(&[0x80; 12]).is_none());
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
