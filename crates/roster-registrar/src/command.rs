//! Commands: what a registry applies, and what a replicated log will carry.

use serde::{Deserialize, Serialize};

use crate::binding::BindingKey;

/// A change to the registry. The timestamp it runs with travels beside it, set by whoever
/// orders the commands (the leader), never read from a local clock during apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
