//! The SIP client, sans-IO: [`Client`] turns [`OpRequest`]s into requests on sessions, runs
//! their client transactions, answers digest challenges, and reports [`Completion`]s.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use roster_auth::Algorithm;
use roster_sip::{parse_message, Message, Method, Request, Response, Uri};

use crate::digest::{ChallengeResponse, ChallengeVerdict, DigestState, UserCredentials};
use crate::op::OpRequest;
use crate::request::{build_ack, build_request, method_and_uri, RequestParts};
use crate::transaction::{ClientTransaction, Timers, TransactionOutcome};

/// The RFC 3261 §8.1.1.7 magic cookie every branch starts with.
const BRANCH_COOKIE: &str = "z9hG4bK";

/// The client's settings, fixed for a run.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The registrar's domain URI, REGISTER's Request-URI (`sip:example.com`).
    pub domain_uri: Uri,
    /// The Via transport token: `UDP`, `TCP` or `TLS`.
    pub via_transport: &'static str,
    /// Whether the transport is reliable (TCP, TLS): no retransmissions.
    pub reliable: bool,
    /// T1 and T2.
    pub timers: Timers,
    /// Only answer challenges of this algorithm; `None`: the first supported one.
    pub algorithm: Option<Algorithm>,
    /// A short token unique to the run, in every branch, Call-ID, tag and cnonce.
    pub run_tag: String,
}

/// A session: one UA identity (AOR, Call-ID, CSeq, digest state) bound to one link.
pub struct SessionSpec {
    /// The AOR: From, To, and the Request-URI of lookups.
    pub aor: Uri,
    /// Credentials for challenges; `None` counts a challenge as a refusal.
    pub credentials: Option<UserCredentials>,
    /// The link (socket or connection) its requests go out on.
    pub link: usize,
}

/// Bytes to send on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The link.
    pub link: usize,
    /// One whole message.
    pub bytes: Vec<u8>,
}

/// How an operation ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A final response (after any challenges were answered).
    Final(Response),
    /// Timer F (or B) fired: no final response.
    TimedOut,
    /// The connection carrying the request closed before the answer.
    TransportError,
}

impl Outcome {
    /// The final status, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Final(response) => Some(response.status),
            Outcome::TimedOut | Outcome::TransportError => None,
        }
    }
}

/// One finished operation.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The operation as requested.
    pub op: OpRequest,
    /// How it ended.
    pub outcome: Outcome,
    /// When the last attempt (after challenges) was first sent.
    pub sent_at: Instant,
    /// When it ended.
    pub finished_at: Instant,
}

/// Counters of what the client saw, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientCounters {
    /// Requests sent, retransmissions and challenge answers included.
    pub requests_sent: u64,
    /// Retransmissions (Timer E or A).
    pub retransmissions: u64,
    /// `401`/`407` challenges received.
    pub challenges: u64,
    /// Challenges that could not be answered or whose answer was refused.
    pub auth_refused: u64,
    /// Of those, challenges left unanswered because the run has no password.
    pub challenged_without_password: u64,
    /// Responses matching no open transaction (late, retransmitted or foreign).
    pub stray_responses: u64,
    /// Messages that did not parse, or requests from the server.
    pub unparsable: u64,
}

/// Why [`Client::start`] refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The session has a transaction open; one at a time keeps CSeq order and nonce counts.
    #[error("session {0} is busy")]
    Busy(usize),
    /// No such session.
    #[error("no session {0}")]
    UnknownSession(usize),
}

/// The SIP client of a run, without I/O or clock.
///
/// Method families, in poll order after every input:
/// - setup: `add_session`;
/// - inputs: `start` (an operation), `handle_message` (bytes from a link),
///   `handle_link_closed`, `handle_timeout`;
/// - outputs: `poll_transmit` (bytes to send), `poll_completion` (finished operations),
///   `poll_timeout` (when to call `handle_timeout`).
///
/// `now` must never decrease. A session runs one transaction at a time; a `401`/`407` is
/// answered on the same operation (new CSeq and branch), so an operation's latency spans its
/// challenges.
pub struct Client {
    config: ClientConfig,
    link_addresses: Vec<SocketAddr>,
    sessions: Vec<Session>,
    pending: HashMap<u64, Pending>,
    /// (deadline, transaction id); entries of finished or re-armed transactions are skipped.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    completions: VecDeque<Completion>,
    counters: ClientCounters,
}

struct Session {
    aor: Uri,
    credentials: Option<UserCredentials>,
    link: usize,
    call_id: String,
    from_tag: String,
    cseq: u32,
    digest: DigestState,
    busy: bool,
}

struct Pending {
    op: OpRequest,
    transaction: ClientTransaction,
    link: usize,
    /// The request's wire form, for retransmissions.
    bytes: Vec<u8>,
    /// The INVITE itself, kept to build its ACK.
    invite: Option<Request>,
    sent_at: Instant,
    /// Whether this attempt answers a challenge received for this operation.
    answered: bool,
    challenges: u32,
}

impl Client {
    /// A client whose links have these local addresses (the Via sent-by of each link).
    pub fn new(config: ClientConfig, link_addresses: Vec<SocketAddr>) -> Client {
        Client {
            config,
            link_addresses,
            sessions: Vec::new(),
            pending: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            completions: VecDeque::new(),
            counters: ClientCounters::default(),
        }
    }

    /// Adds a session; returns its id (ids count from 0).
    pub fn add_session(&mut self, spec: SessionSpec) -> usize {
        let id = self.sessions.len();
        self.sessions.push(Session {
            aor: spec.aor,
            credentials: spec.credentials,
            link: spec.link,
            call_id: format!("{}-{id:x}@roster-load", self.config.run_tag),
            from_tag: format!("{}{id:x}", self.config.run_tag),
            cseq: 0,
            digest: DigestState::default(),
            busy: false,
        });
        id
    }

    /// The AOR of a session.
    pub fn session_aor(&self, session: usize) -> Option<&Uri> {
        self.sessions.get(session).map(|s| &s.aor)
    }

    /// Whether a session has a transaction open.
    pub fn is_busy(&self, session: usize) -> bool {
        self.sessions.get(session).is_some_and(|s| s.busy)
    }

    /// Operations in flight.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// What the client counted so far.
    pub fn counters(&self) -> ClientCounters {
        self.counters
    }

    /// Sends the first request of `op` now.
    pub fn start(&mut self, op: OpRequest, now: Instant) -> Result<(), StartError> {
        let session = self
            .sessions
            .get(op.session)
            .ok_or(StartError::UnknownSession(op.session))?;
        if session.busy {
            return Err(StartError::Busy(op.session));
        }
        self.send_attempt(op, now, false, 0);
        Ok(())
    }

    /// Takes in one message received on `link`.
    pub fn handle_message(&mut self, link: usize, bytes: &[u8], now: Instant) {
        let response = match parse_message(bytes) {
            Ok(Message::Response(response)) => response,
            Ok(Message::Request(_)) | Err(_) => {
                self.counters.unparsable += 1;
                return;
            }
        };
        let Some(id) = self.transaction_id(&response) else {
            self.counters.stray_responses += 1;
            return;
        };
        let Some(pending) = self.pending.get_mut(&id) else {
            self.counters.stray_responses += 1;
            return;
        };
        if self.config.reliable && pending.link != link {
            // A stream's answers come on the connection that carried the request.
            self.counters.stray_responses += 1;
            return;
        }
        pending.transaction.handle_response(response.status);
        if pending.transaction.outcome().is_none() {
            return;
        }
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        if let Some(invite) = &pending.invite {
            if response.status >= 300 {
                self.push_transmit(pending.link, &build_ack(invite, &response));
            }
        }
        if matches!(response.status, 401 | 407) {
            self.handle_challenge(pending, response, now);
        } else {
            self.complete(pending, Outcome::Final(response), now);
        }
    }

    /// The connection behind `link` closed: every operation waiting on it fails.
    pub fn handle_link_closed(&mut self, link: usize, now: Instant) {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.link == link)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(pending) = self.pending.remove(&id) {
                self.complete(pending, Outcome::TransportError, now);
            }
        }
    }

    /// Fires the transaction timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let Some(pending) = self.pending.get_mut(&id) else {
                continue;
            };
            if pending
                .transaction
                .poll_timeout()
                .is_none_or(|due| due > now)
            {
                continue;
            }
            pending.transaction.handle_timeout(now);
            if pending.transaction.poll_retransmit() {
                self.counters.retransmissions += 1;
                self.counters.requests_sent += 1;
                self.transmits.push_back(Transmit {
                    link: pending.link,
                    bytes: pending.bytes.clone(),
                });
            }
            match pending.transaction.outcome() {
                Some(TransactionOutcome::TimedOut) => {
                    if let Some(pending) = self.pending.remove(&id) {
                        self.complete(pending, Outcome::TimedOut, now);
                    }
                }
                Some(TransactionOutcome::Final(_)) => {}
                None => {
                    if let Some(next) = pending.transaction.poll_timeout() {
                        self.deadlines.push(Reverse((next, id)));
                    }
                }
            }
        }
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next finished operation.
    #[must_use]
    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    /// When to call [`Client::handle_timeout`] next (possibly early, never late).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines
            .peek()
            .map(|Reverse((deadline, _))| *deadline)
    }

    /// Builds and queues one attempt of `op` on its session.
    fn send_attempt(&mut self, op: OpRequest, now: Instant, answered: bool, challenges: u32) {
        let id = self.next_id;
        self.next_id += 1;
        let Some(session) = self.sessions.get_mut(op.session) else {
            return;
        };
        session.busy = true;
        session.cseq = session.cseq.wrapping_add(1);
        let (method, uri) = method_and_uri(&op.kind, &self.config.domain_uri, &session.aor);
        let algorithm = self.config.algorithm;
        let realm = &self.config.domain_uri.host;
        let authorization = session.credentials.as_ref().and_then(|credentials| {
            let uri = uri.to_string();
            session
                .digest
                .authorization(credentials, method.as_str(), &uri)
                .or_else(|| algorithm.map(|a| DigestState::hint(credentials, realm, &uri, a)))
        });
        let branch = format!("{BRANCH_COOKIE}{}.{id:x}", self.config.run_tag);
        let link = session.link;
        let sent_by = self
            .link_addresses
            .get(link)
            .copied()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let request = build_request(RequestParts {
            kind: &op.kind,
            domain_uri: &self.config.domain_uri,
            aor: &session.aor,
            from_tag: &session.from_tag,
            call_id: &session.call_id,
            cseq: session.cseq,
            branch: &branch,
            via_transport: self.config.via_transport,
            sent_by,
            authorization,
        });
        let mut bytes = Vec::with_capacity(512);
        request.encode(&mut bytes);
        let invite = method == Method::Invite;
        let transaction = if invite {
            ClientTransaction::new_invite(now, self.config.reliable, self.config.timers)
        } else {
            ClientTransaction::new(now, self.config.reliable, self.config.timers)
        };
        if let Some(deadline) = transaction.poll_timeout() {
            self.deadlines.push(Reverse((deadline, id)));
        }
        self.counters.requests_sent += 1;
        self.transmits.push_back(Transmit {
            link,
            bytes: bytes.clone(),
        });
        // Over a reliable transport nothing is retransmitted, so the copy is not kept.
        let bytes = if self.config.reliable {
            Vec::new()
        } else {
            bytes
        };
        self.pending.insert(
            id,
            Pending {
                op,
                transaction,
                link,
                bytes,
                invite: invite.then_some(request),
                sent_at: now,
                answered,
                challenges,
            },
        );
    }

    fn handle_challenge(&mut self, pending: Pending, response: Response, now: Instant) {
        self.counters.challenges += 1;
        let challenges = pending.challenges + 1;
        let cnonce = format!("{}{:x}", self.config.run_tag, self.next_id);
        let verdict = match self.sessions.get_mut(pending.op.session) {
            Some(session) if session.credentials.is_some() => session.digest.handle_challenge(
                ChallengeResponse {
                    status: response.status,
                    headers: &response.headers,
                    answered: pending.answered,
                    attempts: challenges,
                },
                self.config.algorithm,
                cnonce,
            ),
            _ => {
                self.counters.challenged_without_password += 1;
                ChallengeVerdict::Refused("no password given".to_owned())
            }
        };
        match verdict {
            ChallengeVerdict::Retry => {
                if let Some(session) = self.sessions.get_mut(pending.op.session) {
                    session.busy = false;
                }
                self.send_attempt(pending.op, now, true, challenges);
            }
            ChallengeVerdict::Refused(reason) => {
                self.counters.auth_refused += 1;
                tracing::debug!(%reason, status = response.status, "challenge not answered");
                self.complete(pending, Outcome::Final(response), now);
            }
        }
    }

    fn complete(&mut self, pending: Pending, outcome: Outcome, now: Instant) {
        if let Some(session) = self.sessions.get_mut(pending.op.session) {
            session.busy = false;
        }
        self.completions.push_back(Completion {
            op: pending.op,
            outcome,
            sent_at: pending.sent_at,
            finished_at: now,
        });
    }

    fn push_transmit(&mut self, link: usize, request: &Request) {
        let mut bytes = Vec::with_capacity(384);
        request.encode(&mut bytes);
        self.counters.requests_sent += 1;
        self.transmits.push_back(Transmit { link, bytes });
    }

    /// The transaction id in the response's top Via branch, if it is one of ours.
    fn transaction_id(&self, response: &Response) -> Option<u64> {
        let via = response.headers.top_via().ok()?;
        let rest = via.branch()?.strip_prefix(BRANCH_COOKIE)?;
        let hex = rest
            .strip_prefix(self.config.run_tag.as_str())?
            .strip_prefix('.')?;
        u64::from_str_radix(hex, 16).ok()
    }
}

#[cfg(test)]
mod tests;
