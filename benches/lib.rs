//! Shared inputs of Roster's benchmarks: typical messages as a phone sends them, and the Raft
//! log entries that carry the registrar commands they become.
#![deny(missing_docs)]

use openraft::vote::RaftLeaderIdExt;
use roster_raft::{typ, GroupRequest};
use roster_registrar::{BindingKey, Command, ContactChange, ContactUpdate, RegisterCommand};

/// The leader time of every benchmark entry, in milliseconds since the Unix epoch: fixed, so
/// that no binding expires during a run.
pub const ENTRY_TIME_MS: u64 = 1_795_378_472_000;

/// A REGISTER as a typical soft phone sends it (about 550 bytes), for user `u{n}`.
pub fn typical_register(n: u32, cseq: u32) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK-{n}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: \"User {n}\" <sip:u{n}@example.com>;tag=as{n}f\r\n\
         To: \"User {n}\" <sip:u{n}@example.com>\r\n\
         Call-ID: {n}-reg@192.0.2.10\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:u{n}@192.0.2.10:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-00000000{n:04}>\";q=0.8\r\n\
         Expires: 3600\r\n\
         Supported: path, gruu\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, NOTIFY\r\n\
         User-Agent: BenchPhone/1.0\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// What the front makes of [`typical_register`] for user `u{n}`: one contact for an hour.
/// Applied to an AOR without bindings it adds one; applied again with a higher `cseq` it
/// refreshes it.
pub fn register_command(n: u32, cseq: u32) -> Command {
    let uri = format!("sip:u{n}@192.0.2.10:5060;transport=udp");
    let instance = format!("<urn:uuid:00000000-0000-1000-8000-00000000{n:04}>");
    register(
        n,
        cseq,
        ContactChange::Update(vec![ContactUpdate {
            key: BindingKey::Uri(uri.clone()),
            contact: format!("<{uri}>;+sip.instance=\"{instance}\";q=0.8"),
            q_milli: Some(800),
            expires_s: 3600,
            instance: Some(instance),
            reg_id: None,
        }]),
    )
}

/// What the front makes of `benches/sipp/register_unique.xml`'s REGISTER for user `m{n}`
/// (the fill of `benches/pool/million`): one plain contact for an hour, no instance.
pub fn minimal_register_command(n: u32) -> Command {
    let uri = format!("sip:m{n}@192.0.2.1:5060;transport=udp");
    Command::Register(RegisterCommand {
        aor: format!("sip:m{n}@example.com"),
        call_id: format!("{n}-24573@127.0.0.1"),
        cseq: 1,
        change: ContactChange::Update(vec![ContactUpdate {
            key: BindingKey::Uri(uri.clone()),
            contact: format!("<{uri}>"),
            q_milli: None,
            expires_s: 3600,
            instance: None,
            reg_id: None,
        }]),
        path: vec![],
        received: Some("udp:127.0.0.1:5061".into()),
        user_agent: Some("SIPp roster-benches".into()),
        bindings_max: None,
    })
}

/// `Contact: *` with `Expires: 0` for user `u{n}`: removes the AOR's bindings, and the AOR.
pub fn unregister_command(n: u32, cseq: u32) -> Command {
    register(n, cseq, ContactChange::RemoveAll)
}

/// The log entry at `index` (term 1, leader 1) carrying `command` under epoch 1 at
/// [`ENTRY_TIME_MS`].
pub fn command_entry(index: u64, command: Command) -> typ::Entry {
    typ::Entry {
        log_id: log_id(index),
        payload: typ::EntryPayload::Normal(GroupRequest::registrar(1, ENTRY_TIME_MS, command)),
    }
}

/// The log id of the entry at `index` in term 1 under leader 1.
pub fn log_id(index: u64) -> typ::LogId {
    typ::LogId::new(typ::LeaderId::new_committed(1, 1), index)
}

fn register(n: u32, cseq: u32, change: ContactChange) -> Command {
    Command::Register(RegisterCommand {
        aor: format!("sip:u{n}@example.com"),
        call_id: format!("{n}-reg@192.0.2.10"),
        cseq,
        change,
        path: vec![],
        received: Some("udp:192.0.2.10:5060".into()),
        user_agent: Some("BenchPhone/1.0".into()),
        bindings_max: None,
    })
}

pub mod driving;
