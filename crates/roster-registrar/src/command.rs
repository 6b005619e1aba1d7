//! Commands: what a registry applies, and what a replicated log carries.
//!
//! A command's encoding is a log format: entries written by an older build must decode in a
//! newer one. Bincode (the log's codec) is not self-describing, so a field added to a struct
//! cannot be read from an older entry, whatever `serde(default)` says. [`Command`] therefore
//! serializes through a private wire enum whose variants are only ever appended: a REGISTER
//! without a per-user binding limit is written exactly as before limits existed (variant 0,
//! seven fields), one with a limit as variant 2 (`RegisterLimited`, eight fields).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::binding::BindingKey;

/// A change to the registry. The timestamp it runs with travels beside it, set by whoever
/// orders the commands (the leader), never read from a local clock during apply.
///
/// Serialized through the wire form described in the module's documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A REGISTER that passed the stateless checks.
    Register(RegisterCommand),
    /// Remove every binding expired at the command's timestamp.
    PurgeExpired,
}

/// The facts of one REGISTER that the rules of RFC 3261 §10.3 steps 6–8 need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterCommand {
    /// Canonical address of record (`sip:user@host`).
    pub aor: String,
    /// The REGISTER's Call-ID.
    pub call_id: String,
    /// The REGISTER's CSeq number.
    pub cseq: u32,
    /// What the Contact headers ask for.
    pub change: ContactChange,
    /// Path header values, in order (RFC 3327).
    pub path: Vec<String>,
    /// Where the request came from, as `transport:address`.
    pub received: Option<String>,
    /// The User-Agent header.
    pub user_agent: Option<String>,
    /// The user's own binding limit, from its directory record (`None`: the policy's alone).
    /// The front reads it when it builds the command, so every replica applies the same limit:
    /// `min(policy, this)`.
    #[serde(default)]
    pub bindings_max: Option<u32>,
}

/// The Contact part of a REGISTER.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContactChange {
    /// No Contact header: return the current bindings.
    Query,
    /// `Contact: *` with `Expires: 0`: remove every binding.
    RemoveAll,
    /// Add, refresh or remove (expiry 0) these bindings, all or none.
    Update(Vec<ContactUpdate>),
}

/// One Contact of a REGISTER after validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactUpdate {
    /// How to find an existing binding for it.
    pub key: BindingKey,
    /// `<uri>` and header parameters, without `expires`.
    pub contact: String,
    /// q-value in thousandths.
    pub q_milli: Option<u16>,
    /// Granted expiry in seconds; 0 removes the binding.
    pub expires_s: u32,
    /// `+sip.instance` as sent.
    pub instance: Option<String>,
    /// `reg-id` when the contact is an Outbound flow.
    pub reg_id: Option<u32>,
}

/// The log's form of a [`Command`]. Variants are only appended, never reordered or changed:
/// their index is what bincode writes.
#[derive(Serialize)]
enum WireRef<'a> {
    /// A REGISTER without a per-user limit: the form of every REGISTER written before limits.
    Register(UnlimitedRef<'a>),
    /// See [`Command::PurgeExpired`].
    PurgeExpired,
    /// A REGISTER with the user's own binding limit.
    RegisterLimited(&'a RegisterCommand),
}

/// [`WireRef`] as read back.
#[derive(Deserialize)]
enum Wire {
    Register(Unlimited),
    PurgeExpired,
    RegisterLimited(RegisterCommand),
}

/// The seven fields of a REGISTER written before per-user limits, borrowed.
#[derive(Serialize)]
#[serde(rename = "RegisterCommand")]
struct UnlimitedRef<'a> {
    aor: &'a str,
    call_id: &'a str,
    cseq: u32,
    change: &'a ContactChange,
    path: &'a [String],
    received: &'a Option<String>,
    user_agent: &'a Option<String>,
}

/// [`UnlimitedRef`] as read back.
#[derive(Deserialize)]
#[serde(rename = "RegisterCommand")]
struct Unlimited {
    aor: String,
    call_id: String,
    cseq: u32,
    change: ContactChange,
    path: Vec<String>,
    received: Option<String>,
    user_agent: Option<String>,
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let wire = match self {
            Command::Register(register) if register.bindings_max.is_some() => {
                WireRef::RegisterLimited(register)
            }
            Command::Register(register) => WireRef::Register(UnlimitedRef {
                aor: &register.aor,
                call_id: &register.call_id,
                cseq: register.cseq,
                change: &register.change,
                path: &register.path,
                received: &register.received,
                user_agent: &register.user_agent,
            }),
            Command::PurgeExpired => WireRef::PurgeExpired,
        };
        wire.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Command, D::Error> {
        Ok(match Wire::deserialize(deserializer)? {
            Wire::Register(old) => Command::Register(RegisterCommand {
                aor: old.aor,
                call_id: old.call_id,
                cseq: old.cseq,
                change: old.change,
                path: old.path,
                received: old.received,
                user_agent: old.user_agent,
                bindings_max: None,
            }),
            Wire::PurgeExpired => Command::PurgeExpired,
            Wire::RegisterLimited(register) => Command::Register(register),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command types exactly as they were before per-user limits: what older entries hold.
    mod before {
        use serde::{Deserialize, Serialize};

        use crate::command::ContactChange;

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub enum Command {
            Register(RegisterCommand),
            PurgeExpired,
        }

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub struct RegisterCommand {
            pub aor: String,
            pub call_id: String,
            pub cseq: u32,
            pub change: ContactChange,
            pub path: Vec<String>,
            pub received: Option<String>,
            pub user_agent: Option<String>,
        }
    }

    fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
    }

    fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
        let (value, read) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard()).expect("decodes");
        assert_eq!(read, bytes.len(), "every byte read");
        value
    }

    fn register(bindings_max: Option<u32>) -> RegisterCommand {
        RegisterCommand {
            aor: "sip:alice@example.com".into(),
            call_id: "c1".into(),
            cseq: 7,
            change: ContactChange::Update(vec![ContactUpdate {
                key: BindingKey::Uri("sip:alice@192.0.2.1".into()),
                contact: "<sip:alice@192.0.2.1>".into(),
                q_milli: Some(500),
                expires_s: 3600,
                instance: None,
                reg_id: None,
            }]),
            path: vec!["<sip:edge.example.com;lr>".into()],
            received: Some("udp:192.0.2.1:5060".into()),
            user_agent: Some("phone/1".into()),
            bindings_max,
        }
    }

    #[test]
    fn an_entry_written_before_limits_decodes_without_a_limit() {
        let old = before::Command::Register(before::RegisterCommand {
            aor: "sip:alice@example.com".into(),
            call_id: "c1".into(),
            cseq: 7,
            change: register(None).change,
            path: vec!["<sip:edge.example.com;lr>".into()],
            received: Some("udp:192.0.2.1:5060".into()),
            user_agent: Some("phone/1".into()),
        });
        let bytes = encode(&old);
        assert_eq!(decode::<Command>(&bytes), Command::Register(register(None)));
        assert_eq!(
            decode::<Command>(&encode(&before::Command::PurgeExpired)),
            Command::PurgeExpired
        );
        // Without a limit, a command is written exactly as before: older builds read it.
        assert_eq!(encode(&Command::Register(register(None))), bytes);
        assert_eq!(decode::<before::Command>(&bytes), old);
    }

    #[test]
    fn a_limit_travels_in_the_command() {
        let limited = Command::Register(register(Some(2)));
        assert_eq!(decode::<Command>(&encode(&limited)), limited);
        // JSON too (status pages, tools): the limit is a named field.
        let json = serde_json::to_string(&limited).expect("json");
        assert!(json.contains("\"bindings_max\":2"), "{json}");
        assert_eq!(
            serde_json::from_str::<Command>(&json).expect("parses"),
            limited
        );
    }
}
