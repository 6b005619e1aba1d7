//! What the load asks for: an [`Operation`] (the label statistics are kept under), the
//! [`RequestKind`] it sends, and the [`OpRequest`] handed to the client.

use std::fmt;
use std::time::Instant;

/// The kinds of operation, each with its own latency histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// A REGISTER adding a binding the endpoint did not hold (the storm, and re-registrations).
    Register,
    /// A REGISTER renewing a held binding before it expires.
    Refresh,
    /// A REGISTER with `Expires: 0` for the endpoint's contact.
    Unregister,
    /// A REGISTER without Contact: lists the AOR's bindings.
    Query,
    /// An OPTIONS or INVITE to the AOR, answered `302` by a redirect server.
    Lookup,
    /// The query `--verify` sends for each AOR after the load.
    Verify,
}

impl Operation {
    /// The name in tables and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Register => "register",
            Operation::Refresh => "refresh",
            Operation::Unregister => "unregister",
            Operation::Query => "query",
            Operation::Lookup => "lookup",
            Operation::Verify => "verify",
        }
    }

    /// Whether a final status counts as success: 2xx for REGISTERs; for lookups also 3xx and
    /// `480` (the AOR has no binding, a true answer when the load unregistered them all).
    pub fn is_success(self, status: u16) -> bool {
        match self {
            Operation::Lookup => (200..400).contains(&status) || status == 480,
            _ => (200..300).contains(&status),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SIP method a lookup sends to the AOR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupMethod {
    /// `OPTIONS sip:user@domain`.
    Options,
    /// `INVITE sip:user@domain` without a body; a final answer of 3xx or above is ACKed.
    Invite,
}

/// What one request carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// REGISTER `contact` for `expires_s` seconds.
    Register {
        /// The contact URI, without `<>`.
        contact: String,
        /// The requested expiry, seconds.
        expires_s: u32,
    },
    /// REGISTER `contact` with `Expires: 0`.
    Unregister {
        /// The contact URI, without `<>`.
        contact: String,
    },
    /// REGISTER without Contact.
    Query,
    /// OPTIONS or INVITE to the session's AOR.
    Lookup(LookupMethod),
}

/// One operation for [`crate::client::Client::start`].
#[derive(Clone, Debug)]
pub struct OpRequest {
    /// The session that sends it (its AOR, Call-ID, CSeq and digest state).
    pub session: usize,
    /// The statistics label.
    pub operation: Operation,
    /// What to send.
    pub kind: RequestKind,
    /// When the load meant to send it; latency is measured from here, so a late start
    /// (the client was saturated) counts against the target (no coordinated omission).
    pub intended_at: Instant,
}
