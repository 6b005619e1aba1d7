//! [`Ledger`]: every registration a registrar acknowledged, and what should therefore still
//! be there; [`check_bindings`] compares that with what the registrar lists.
//!
//! The load fills it; `--verify` and the chaos suite read it. Times are `Instant`s of one
//! process's monotonic clock.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use roster_sip::{NameAddr, Uri};

/// One acknowledged registration (a `2xx` to a REGISTER adding or refreshing a contact).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The AOR, canonical (`Uri::aor`).
    pub aor: String,
    /// The contact URI, as registered.
    pub contact: String,
    /// When the acknowledged REGISTER was sent: the registrar applied it later.
    pub sent_at: Instant,
    /// When the `2xx` arrived.
    pub acked_at: Instant,
    /// The expiry the registrar granted, from the send time, so the binding lives at least
    /// until `sent_at + expires` (the registrar started counting after that).
    pub expires: Duration,
}

impl Ack {
    /// The earliest time the registrar may drop the binding.
    pub fn expires_at(&self) -> Instant {
        self.sent_at + self.expires
    }
}

/// One binding the registrar must still hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedBinding {
    /// The contact URI, as registered.
    pub contact: String,
    /// The latest acknowledgement of it.
    pub ack: Ack,
}

/// The record of acknowledged registrations and of unregistrations.
///
/// A binding is expected at `now` when its latest acknowledgement was sent after every
/// unregistration of it had finished (otherwise the registrar may have applied them in either
/// order), and `now` is before the acknowledgement's expiry.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    /// By AOR, then by contact comparison key (RFC 3261 §19.1.4 URI equality, as a
    /// registrar applies it).
    bindings: HashMap<String, HashMap<String, Entry>>,
    acks: u64,
}

#[derive(Clone, Debug, Default)]
struct Entry {
    ack: Option<Ack>,
    unregistered_at: Option<Instant>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Records an acknowledged registration; a later one of the same binding replaces it.
    pub fn record_ack(&mut self, ack: Ack) {
        self.acks += 1;
        let entry = self.entry(&ack.aor, &ack.contact);
        let newer = entry
            .ack
            .as_ref()
            .is_none_or(|known| known.sent_at <= ack.sent_at);
        if newer {
            entry.ack = Some(ack);
        }
    }

    /// Records an unregistration of `contact`: `at` is when it finished (answered or given
    /// up); calling it when it starts too makes the binding unexpected at once. Any
    /// registration sent before `at` may have been removed.
    pub fn record_unregister(&mut self, aor: &str, contact: &str, at: Instant) {
        let entry = self.entry(aor, contact);
        entry.unregistered_at = Some(entry.unregistered_at.map_or(at, |known| known.max(at)));
    }

    /// Acknowledgements recorded.
    pub fn acks(&self) -> u64 {
        self.acks
    }

    /// Every AOR with a recorded binding, sorted.
    pub fn aors(&self) -> Vec<String> {
        let mut aors: Vec<String> = self.bindings.keys().cloned().collect();
        aors.sort();
        aors
    }

    /// The bindings expected at `now`, by AOR (sorted), contacts sorted.
    pub fn expected_at(&self, now: Instant) -> BTreeMap<String, Vec<ExpectedBinding>> {
        self.bindings
            .keys()
            .map(|aor| (aor.clone(), self.expected_for(aor, now)))
            .filter(|(_, bindings)| !bindings.is_empty())
            .collect()
    }

    /// The bindings of one AOR expected at `now`, contacts sorted.
    pub fn expected_for(&self, aor: &str, now: Instant) -> Vec<ExpectedBinding> {
        let mut expected: Vec<ExpectedBinding> = self
            .bindings
            .get(aor)
            .into_iter()
            .flat_map(|contacts| contacts.values())
            .filter_map(|entry| entry.expected(now))
            .collect();
        expected.sort_by(|a, b| a.contact.cmp(&b.contact));
        expected
    }

    fn entry(&mut self, aor: &str, contact: &str) -> &mut Entry {
        self.bindings
            .entry(aor.to_owned())
            .or_default()
            .entry(contact_key(contact))
            .or_default()
    }
}

impl Entry {
    fn expected(&self, now: Instant) -> Option<ExpectedBinding> {
        let ack = self.ack.as_ref()?;
        let unregistered_later = self
            .unregistered_at
            .is_some_and(|unregistered| unregistered >= ack.sent_at);
        if unregistered_later || ack.expires_at() <= now {
            return None;
        }
        Some(ExpectedBinding {
            contact: ack.contact.clone(),
            ack: ack.clone(),
        })
    }
}

/// What is wrong with one expected binding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "problem")]
pub enum Problem {
    /// The registrar does not list it.
    Missing,
    /// It is listed with less time left than was acknowledged.
    ExpiresEarly {
        /// Seconds left according to the acknowledgement, at the time of the query.
        expected_s: u64,
        /// Seconds left according to the registrar.
        listed_s: u64,
    },
}

/// One finding of a verification.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The AOR.
    pub aor: String,
    /// The contact.
    pub contact: String,
    /// What is wrong.
    #[serde(flatten)]
    pub problem: Problem,
}

/// Rounding the registrar may apply to a listed expiry (whole seconds, and the time between
/// its apply step and our send time counted twice).
pub const EXPIRES_SLACK: Duration = Duration::from_secs(2);

/// Compares the bindings expected for `aor` at `now` with the Contact values a registrar
/// listed (each with its `expires` parameter). A listed contact without `expires` is taken
/// to be fine; unexpected extra contacts are not findings (other clients may register).
pub fn check_bindings(
    aor: &str,
    expected: &[ExpectedBinding],
    listed: &[NameAddr],
    now: Instant,
) -> Vec<Finding> {
    let listed: HashMap<String, Option<u64>> = listed
        .iter()
        .map(|contact| {
            let expires = contact
                .param("expires")
                .and_then(|param| param.value.as_deref())
                .and_then(|value| value.parse().ok());
            (contact.uri.comparison_key(), expires)
        })
        .collect();
    let mut findings = Vec::new();
    for binding in expected {
        let finding = |problem| Finding {
            aor: aor.to_owned(),
            contact: binding.contact.clone(),
            problem,
        };
        let key = contact_key(&binding.contact);
        match listed.get(&key) {
            None => findings.push(finding(Problem::Missing)),
            Some(Some(listed_s)) => {
                let left = binding.ack.expires_at().saturating_duration_since(now);
                if Duration::from_secs(*listed_s) + EXPIRES_SLACK < left {
                    findings.push(finding(Problem::ExpiresEarly {
                        expected_s: left.as_secs(),
                        listed_s: *listed_s,
                    }));
                }
            }
            Some(None) => {}
        }
    }
    findings
}

/// The comparison key of a contact URI; text that does not parse is its own key.
fn contact_key(contact: &str) -> String {
    Uri::parse(contact).map_or_else(|_| contact.to_owned(), |uri| uri.comparison_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AOR: &str = "sip:u1@example.com";

    fn ack(contact: &str, sent_at: Instant, expires_s: u64) -> Ack {
        Ack {
            aor: AOR.into(),
            contact: contact.into(),
            sent_at,
            acked_at: sent_at + Duration::from_millis(5),
            expires: Duration::from_secs(expires_s),
        }
    }

    fn contacts(values: &[&str]) -> Vec<NameAddr> {
        values
            .iter()
            .map(|v| NameAddr::parse(v).unwrap_or_else(|e| panic!("{v}: {e}")))
            .collect()
    }

    #[test]
    fn expiry_and_unregistration_decide_what_is_expected() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut ledger = Ledger::new();
        ledger.record_ack(ack("sip:a@192.0.2.1", t0, 60));
        ledger.record_ack(ack("sip:b@192.0.2.1", t0, 10));
        ledger.record_ack(ack("sip:c@192.0.2.1", t0, 60));
        ledger.record_unregister(AOR, "sip:c@192.0.2.1", t0 + s);
        // Re-registered after the unregistration finished: expected again.
        ledger.record_ack(ack("sip:d@192.0.2.1", t0, 60));
        ledger.record_unregister(AOR, "sip:d@192.0.2.1", t0 + s);
        ledger.record_ack(ack("sip:d@192.0.2.1", t0 + 2 * s, 60));
        let contacts_at = |at| -> Vec<String> {
            ledger
                .expected_for(AOR, at)
                .into_iter()
                .map(|b| b.contact)
                .collect()
        };
        assert_eq!(
            contacts_at(t0 + 5 * s),
            ["sip:a@192.0.2.1", "sip:b@192.0.2.1", "sip:d@192.0.2.1"]
        );
        assert_eq!(
            contacts_at(t0 + 10 * s),
            ["sip:a@192.0.2.1", "sip:d@192.0.2.1"]
        );
        assert_eq!(contacts_at(t0 + 61 * s), ["sip:d@192.0.2.1"]);
        assert_eq!(ledger.acks(), 5);
        assert_eq!(ledger.aors(), [AOR]);
        assert_eq!(
            ledger.expected_at(t0 + 5 * s).get(AOR).map(Vec::len),
            Some(3)
        );
    }

    #[test]
    fn an_older_ack_does_not_replace_a_newer_one() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new();
        ledger.record_ack(ack("sip:a@192.0.2.1", t0 + Duration::from_secs(5), 60));
        ledger.record_ack(ack("sip:a@192.0.2.1", t0, 10));
        let expected = ledger.expected_for(AOR, t0 + Duration::from_secs(30));
        assert_eq!(expected.len(), 1);
    }

    #[test]
    fn check_finds_missing_and_early_expiry_by_uri_equality() {
        let t0 = Instant::now();
        let expected = vec![
            ExpectedBinding {
                contact: "sip:a@192.0.2.1:5060".into(),
                ack: ack("sip:a@192.0.2.1:5060", t0, 600),
            },
            ExpectedBinding {
                contact: "sip:b@192.0.2.1".into(),
                ack: ack("sip:b@192.0.2.1", t0, 600),
            },
            ExpectedBinding {
                contact: "sip:c@192.0.2.1".into(),
                ack: ack("sip:c@192.0.2.1", t0, 600),
            },
        ];
        // `a` listed with a different host case and an extra parameter; `b` with 100 s where
        // about 590 s were acknowledged; `c` absent; `x` unexpected but not a finding.
        let listed = contacts(&[
            "<sip:a@192.0.2.1:5060;ob>;expires=589",
            "<sip:b@192.0.2.1>;expires=100",
            "<sip:x@192.0.2.1>;expires=100",
        ]);
        let findings = check_bindings(AOR, &expected, &listed, t0 + Duration::from_secs(10));
        assert_eq!(
            findings,
            [
                Finding {
                    aor: AOR.into(),
                    contact: "sip:b@192.0.2.1".into(),
                    problem: Problem::ExpiresEarly {
                        expected_s: 590,
                        listed_s: 100
                    },
                },
                Finding {
                    aor: AOR.into(),
                    contact: "sip:c@192.0.2.1".into(),
                    problem: Problem::Missing,
                },
            ]
        );
    }
}
