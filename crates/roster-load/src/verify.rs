//! `--verify`: after the load, [`Verifier`] queries every AOR of a [`Ledger`] (a REGISTER
//! without Contact, authenticated if challenged) and checks each acknowledged binding is
//! listed; [`VerifyReport`] says what was missing or wrong.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use roster_sip::{Contacts, HeaderName, Uri};

use crate::arrivals::{ArrivalProcess, Arrivals};
use crate::client::{Client, Completion, Outcome, SessionSpec};
use crate::digest::UserCredentials;
use crate::ledger::{check_bindings, Finding, Ledger, Problem, EXPIRES_SLACK};
use crate::op::{OpRequest, Operation, RequestKind};
use crate::source::Source;

/// Most findings and unverified AORs a report lists; the counts are always complete.
pub const FINDINGS_LISTED_MAX: usize = 1_000;

/// Queries per AOR before it counts as unverified: a registrar may answer `503` for a
/// moment (a Raft group electing a leader), which says nothing about its bindings.
pub const VERIFY_ATTEMPTS_MAX: u32 = 4;

/// Wait before asking again, unless `Retry-After` says otherwise (capped here).
const RETRY_DELAY: Duration = Duration::from_secs(1);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);

/// The outcome of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// AORs queried.
    pub aors_checked: u64,
    /// Bindings expected, summed over the AORs at the time of each query.
    pub bindings_expected: u64,
    /// Expected bindings not listed.
    pub missing: u64,
    /// Expected bindings listed with less time left than acknowledged.
    pub expires_early: u64,
    /// AORs whose query got no `2xx` (timeout, error), so nothing is known of them.
    pub unverified: u64,
    /// The first [`FINDINGS_LISTED_MAX`] findings.
    pub findings: Vec<Finding>,
    /// The first [`FINDINGS_LISTED_MAX`] unverified AORs, with what their query got.
    pub unverified_aors: Vec<(String, String)>,
}

impl VerifyReport {
    /// Whether every expected binding was found as acknowledged.
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.expires_early == 0 && self.unverified == 0
    }

    fn add_findings(&mut self, findings: Vec<Finding>) {
        for finding in findings {
            match finding.problem {
                Problem::Missing => self.missing += 1,
                Problem::ExpiresEarly { .. } => self.expires_early += 1,
            }
            if self.findings.len() < FINDINGS_LISTED_MAX {
                self.findings.push(finding);
            }
        }
    }
}

/// Who to query as: `username` for an AOR, and the shared password.
#[derive(Clone)]
pub struct VerifyCredentials {
    /// The password; `None` when the target does not challenge.
    pub password: Option<String>,
}

/// The verification as a [`Source`]: one query per AOR of the ledger at `rate_per_s`.
pub struct Verifier {
    ledger: Ledger,
    /// (AOR, session), in order.
    targets: Vec<(String, usize)>,
    /// Session → index into `targets`.
    by_session: HashMap<usize, usize>,
    /// Queries sent per target.
    attempts: Vec<u32>,
    /// (when, target index): queries to ask again.
    retries: BinaryHeap<Reverse<(Instant, usize)>>,
    in_flight: usize,
    next: usize,
    arrivals: Arrivals,
    rng: StdRng,
    stopped: bool,
    report: VerifyReport,
}

impl Verifier {
    /// Creates one session per AOR of `ledger` in `client` (links assigned round robin over
    /// `links`) and a verification starting at `start`. The digest user name of an AOR is
    /// its user part.
    pub fn new(
        ledger: Ledger,
        client: &mut Client,
        links: usize,
        credentials: &VerifyCredentials,
        (start, rate_per_s): (Instant, f64),
    ) -> Verifier {
        let mut targets = Vec::new();
        for (index, aor) in ledger.aors().into_iter().enumerate() {
            let Ok(uri) = Uri::parse(&aor) else {
                continue;
            };
            let credentials = credentials
                .password
                .as_ref()
                .map(|password| UserCredentials {
                    username: uri.user.clone().unwrap_or_default(),
                    password: password.clone(),
                });
            let session = client.add_session(SessionSpec {
                aor: uri,
                credentials,
                link: index % links.max(1),
            });
            targets.push((aor, session));
        }
        let by_session = targets
            .iter()
            .enumerate()
            .map(|(index, (_, session))| (*session, index))
            .collect();
        Verifier {
            ledger,
            attempts: vec![0; targets.len()],
            targets,
            by_session,
            retries: BinaryHeap::new(),
            in_flight: 0,
            next: 0,
            arrivals: Arrivals::new(ArrivalProcess::Uniform, start, rate_per_s),
            rng: StdRng::seed_from_u64(0),
            stopped: false,
            report: VerifyReport::default(),
        }
    }

    /// The report so far; complete once the source is finished and nothing is outstanding.
    pub fn report(&self) -> &VerifyReport {
        &self.report
    }

    /// Gives up the report.
    pub fn into_report(self) -> VerifyReport {
        self.report
    }

    fn query(&mut self, index: usize, intended_at: Instant) -> Option<OpRequest> {
        let (_, session) = self.targets.get(index)?;
        self.attempts[index] += 1;
        self.in_flight += 1;
        Some(OpRequest {
            session: *session,
            operation: Operation::Verify,
            kind: RequestKind::Query,
            intended_at,
        })
    }

    /// Schedules another query of target `index` if it has attempts left.
    fn retry(&mut self, index: usize, completion: &Completion) -> bool {
        if self.stopped || self.attempts[index] >= VERIFY_ATTEMPTS_MAX {
            return false;
        }
        let delay = match &completion.outcome {
            Outcome::Final(response) => response
                .headers
                .get(&HeaderName::RetryAfter)
                .and_then(|value| value.split([' ', ';', '(']).next())
                .and_then(|seconds| seconds.trim().parse().ok())
                .map_or(RETRY_DELAY, Duration::from_secs),
            Outcome::TimedOut | Outcome::TransportError => RETRY_DELAY,
        };
        let at = completion.finished_at + delay.min(RETRY_DELAY_MAX);
        self.retries.push(Reverse((at, index)));
        true
    }
}

impl Source for Verifier {
    fn poll_op(&mut self, now: Instant, _client: &Client) -> Option<OpRequest> {
        if self.stopped {
            return None;
        }
        if let Some(&Reverse((at, index))) = self.retries.peek() {
            if at <= now {
                self.retries.pop();
                return self.query(index, at);
            }
        }
        let intended_at = self.arrivals.peek();
        if self.next >= self.targets.len() || intended_at > now {
            return None;
        }
        let index = self.next;
        self.next += 1;
        self.arrivals.advance(&mut self.rng);
        self.query(index, intended_at)
    }

    fn due_at(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let retry = self.retries.peek().map(|Reverse((at, _))| *at);
        let next = (self.next < self.targets.len()).then(|| self.arrivals.peek());
        [retry, next].into_iter().flatten().min()
    }

    fn handle_completion(&mut self, completion: &Completion) {
        let Some(&index) = self.by_session.get(&completion.op.session) else {
            return;
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        let aor = self.targets[index].0.clone();
        let response = match &completion.outcome {
            Outcome::Final(response) if (200..300).contains(&response.status) => response,
            _ if self.retry(index, completion) => return,
            other => {
                self.report.aors_checked += 1;
                self.report.unverified += 1;
                if self.report.unverified_aors.len() < FINDINGS_LISTED_MAX {
                    let got = other
                        .status()
                        .map_or_else(|| format!("{other:?}").to_lowercase(), |s| s.to_string());
                    self.report.unverified_aors.push((aor, got));
                }
                return;
            }
        };
        self.report.aors_checked += 1;
        // Bindings the registrar may just have dropped (within the slack) are not expected.
        let expected = self
            .ledger
            .expected_for(&aor, completion.finished_at + EXPIRES_SLACK);
        self.report.bindings_expected += expected.len() as u64;
        let listed = match response.headers.contacts() {
            Ok(Contacts::List(list)) => list,
            Ok(Contacts::Star) | Err(_) => Vec::new(),
        };
        let findings = check_bindings(&aor, &expected, &listed, completion.finished_at);
        self.report.add_findings(findings);
    }

    fn is_finished(&self, _now: Instant) -> bool {
        self.stopped
            || (self.next >= self.targets.len() && self.retries.is_empty() && self.in_flight == 0)
    }

    fn stop(&mut self) {
        self.stopped = true;
    }
}

/// How long a verification of `aors` at `rate_per_s` takes to send, for deadlines.
pub fn send_time(aors: usize, rate_per_s: f64) -> Duration {
    Duration::from_secs_f64(aors as f64 / rate_per_s.max(1.0))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::ledger::Ack;
    use crate::testing::{client_config, drive, FakeRegistrar};

    fn run(server: &mut FakeRegistrar, ledger: Ledger, start: Instant) -> VerifyReport {
        let config = client_config("v", false);
        let mut client = Client::new(config, vec![SocketAddr::from(([127, 0, 0, 1], 1))]);
        let credentials = VerifyCredentials {
            password: Some("pw".into()),
        };
        let mut verifier = Verifier::new(ledger, &mut client, 1, &credentials, (start, 100.0));
        let end = start + Duration::from_secs(30);
        drive(&mut client, &mut verifier, server, (start, end), 1_000);
        verifier.into_report()
    }

    fn ledger_with(contacts: &[&str], start: Instant) -> Ledger {
        let mut ledger = Ledger::new();
        for contact in contacts {
            ledger.record_ack(Ack {
                aor: "sip:u1@example.com".into(),
                contact: (*contact).into(),
                sent_at: start,
                acked_at: start,
                expires: Duration::from_secs(600),
            });
        }
        ledger
    }

    #[test]
    fn passes_when_the_registrar_holds_every_binding_behind_digest() {
        let start = Instant::now();
        let mut server = FakeRegistrar::new(true, 200);
        server
            .bindings
            .entry("sip:u1@example.com".into())
            .or_default()
            .extend([
                ("sip:a@192.0.2.1".to_owned(), 600),
                ("sip:b@192.0.2.1".to_owned(), 600),
            ]);
        let report = run(
            &mut server,
            ledger_with(&["sip:a@192.0.2.1", "sip:b@192.0.2.1"], start),
            start,
        );
        assert!(report.passed(), "{report:?}");
        assert_eq!((report.aors_checked, report.bindings_expected), (1, 2));
    }

    #[test]
    fn reports_a_missing_binding() {
        let start = Instant::now();
        let mut server = FakeRegistrar::new(false, 200);
        server
            .bindings
            .entry("sip:u1@example.com".into())
            .or_default()
            .insert("sip:a@192.0.2.1".into(), 600);
        let report = run(
            &mut server,
            ledger_with(&["sip:a@192.0.2.1", "sip:b@192.0.2.1"], start),
            start,
        );
        assert!(!report.passed());
        assert_eq!(report.missing, 1);
        assert_eq!(
            report.findings.first().map(|f| f.contact.as_str()),
            Some("sip:b@192.0.2.1")
        );
    }

    #[test]
    fn an_error_answer_leaves_the_aor_unverified() {
        let start = Instant::now();
        let mut server = FakeRegistrar::new(false, 503);
        let report = run(&mut server, ledger_with(&["sip:a@192.0.2.1"], start), start);
        assert!(!report.passed());
        assert_eq!(
            report.unverified_aors,
            [("sip:u1@example.com".to_owned(), "503".to_owned())]
        );
        assert_eq!(
            server.requests,
            u64::from(VERIFY_ATTEMPTS_MAX),
            "asked again after 503"
        );
    }
}
