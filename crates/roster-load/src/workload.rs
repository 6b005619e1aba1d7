//! The load itself, sans-IO: [`Workload`] simulates N users × M endpoints — a registration
//! storm, refreshes before each binding expires, and a mix of registrations, unregistrations,
//! queries and lookups at an open-loop rate — and records every acknowledgement in a
//! [`Ledger`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roster_sip::{HeaderName, Response, Uri};

use crate::arrivals::{ArrivalProcess, Arrivals};
use crate::client::{Client, Completion, Outcome, SessionSpec};
use crate::digest::UserCredentials;
use crate::ledger::{Ack, Ledger};
use crate::op::{LookupMethod, OpRequest, Operation, RequestKind};
use crate::source::Source;

/// How many random endpoints or users a mix operation tries before it gives up on finding
/// one that is free (and in the wanted state); small, since at sane concurrency most are.
const PICK_TRIES_MAX: usize = 4;

/// Longest wait before a failed registration or refresh is tried again. Phones retry within
/// tens of seconds; short enough that a test outage shows recovery within a run.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(5);

/// Relative weights of the operations after the storm; all zero means refreshes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mix {
    /// REGISTER of a random endpoint (a new binding, or an early refresh).
    pub register: u32,
    /// Unregistration of a random registered endpoint.
    pub unregister: u32,
    /// REGISTER without Contact for a random user.
    pub query: u32,
    /// OPTIONS or INVITE to a random user's AOR.
    pub lookup: u32,
}

impl Mix {
    fn total(&self) -> u32 {
        self.register + self.unregister + self.query + self.lookup
    }
}

/// Who is simulated.
#[derive(Clone)]
pub struct Population {
    /// The AOR domain, e.g. `example.com`.
    pub domain: String,
    /// User names are this prefix and a number, e.g. `u` → `u0`, `u1`, ...
    pub user_prefix: String,
    /// The number of the first user.
    pub first_user: u64,
    /// How many users.
    pub users: usize,
    /// Endpoints (contacts, each with its own Call-ID) per user.
    pub endpoints: usize,
    /// The password of every user; `None` when the target does not challenge.
    pub password: Option<String>,
}

/// The schedule of a run.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Arrivals per second of storm and mix operations (refreshes come on top, when due).
    pub rate_per_s: f64,
    /// Uniform or Poisson.
    pub arrivals: ArrivalProcess,
    /// Nothing is started after this long.
    pub duration: Duration,
    /// Nothing is started after this many operations, refreshes included.
    pub count: Option<u64>,
    /// The expiry requested by each REGISTER, seconds.
    pub expires_s: u32,
    /// A binding is refreshed this fraction of its granted expiry after its `2xx` (0..1).
    pub refresh_at: f64,
    /// The mix after the storm.
    pub mix: Mix,
    /// What lookups send.
    pub lookup: LookupMethod,
    /// The seed of every random choice.
    pub seed: u64,
}

/// Where each link's contacts point and with which transport parameter.
#[derive(Clone, Debug)]
pub struct Contacts {
    /// Each link's local address.
    pub link_addresses: Vec<SocketAddr>,
    /// `;transport=` value for contacts (`tcp`, `tls`), or none for UDP.
    pub transport_param: Option<&'static str>,
}

/// Counters of the workload, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadCounters {
    /// Operations started.
    pub started: u64,
    /// Operations skipped because their endpoint or user had a transaction open.
    pub skipped_busy: u64,
    /// `423` answers followed by a retry at the registrar's `Min-Expires`.
    pub interval_too_brief: u64,
}

struct Endpoint {
    user: usize,
    contact: String,
    registered: bool,
    expires_s: u32,
    /// Bumped whenever the pending due entry of this endpoint becomes obsolete.
    generation: u64,
}

/// The load of a run: see the module doc.
pub struct Workload {
    schedule: Schedule,
    end: Instant,
    endpoints: Vec<Endpoint>,
    /// Per user: the session of its queries and lookups (endpoint sessions come first).
    user_sessions: Vec<usize>,
    aors: Vec<String>,
    arrivals: Arrivals,
    storm_next: usize,
    /// (due, endpoint, generation): refreshes and retries.
    due: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    rng: StdRng,
    stopped: bool,
    counters: WorkloadCounters,
    ledger: Ledger,
}

impl Workload {
    /// Creates the sessions of `population` in `client` (which must have none yet: endpoint
    /// `i` is session `i`) and a workload starting at `start`.
    pub fn new(
        population: &Population,
        schedule: Schedule,
        contacts: &Contacts,
        client: &mut Client,
        start: Instant,
    ) -> Workload {
        let links = contacts.link_addresses.len().max(1);
        let mut endpoints = Vec::with_capacity(population.users * population.endpoints);
        let mut aors = Vec::with_capacity(population.users);
        let mut user_uris = Vec::with_capacity(population.users);
        for user in 0..population.users {
            let name = format!(
                "{}{}",
                population.user_prefix,
                population.first_user + user as u64
            );
            let aor = Uri::parse(&format!("sip:{name}@{}", population.domain));
            // The domain and prefix were checked when the configuration was built.
            let aor = aor.unwrap_or_else(|_| Uri::new(roster_sip::Scheme::Sip, &population.domain));
            aors.push(aor.aor());
            user_uris.push((name, aor));
        }
        for (user, (name, aor)) in user_uris.iter().enumerate() {
            for endpoint in 0..population.endpoints {
                let index = endpoints.len();
                let link = index % links;
                let contact = contact_uri(name, endpoint, contacts, link);
                let session = client.add_session(SessionSpec {
                    aor: aor.clone(),
                    credentials: credentials(population, name),
                    link,
                });
                assert_eq!(session, index, "endpoint sessions come first");
                endpoints.push(Endpoint {
                    user,
                    contact,
                    registered: false,
                    expires_s: schedule.expires_s,
                    generation: 0,
                });
            }
        }
        let user_sessions = user_uris
            .iter()
            .enumerate()
            .map(|(user, (name, aor))| {
                client.add_session(SessionSpec {
                    aor: aor.clone(),
                    credentials: credentials(population, name),
                    link: user % links,
                })
            })
            .collect();
        Workload {
            arrivals: Arrivals::new(schedule.arrivals, start, schedule.rate_per_s),
            end: start + schedule.duration,
            rng: StdRng::seed_from_u64(schedule.seed),
            schedule,
            endpoints,
            user_sessions,
            aors,
            storm_next: 0,
            due: BinaryHeap::new(),
            stopped: false,
            counters: WorkloadCounters::default(),
            ledger: Ledger::new(),
        }
    }

    /// What was counted so far.
    pub fn counters(&self) -> WorkloadCounters {
        self.counters
    }

    /// The record of acknowledged registrations.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Gives up the ledger at the end of the run.
    pub fn into_ledger(self) -> Ledger {
        self.ledger
    }

    /// Endpoints holding a binding now.
    pub fn registered(&self) -> usize {
        self.endpoints.iter().filter(|e| e.registered).count()
    }

    fn count_reached(&self) -> bool {
        self.schedule
            .count
            .is_some_and(|count| self.counters.started >= count)
    }

    /// The next arrival, if it falls before the end.
    fn next_arrival(&self) -> Option<Instant> {
        let at = self.arrivals.peek();
        (at < self.end).then_some(at)
    }

    fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The operation of one arrival: the storm first, then the mix.
    fn arrival_op(&mut self, intended_at: Instant, client: &Client) -> Option<OpRequest> {
        if self.storm_next < self.endpoints.len() {
            let index = self.storm_next;
            self.storm_next += 1;
            if client.is_busy(index) {
                self.counters.skipped_busy += 1;
                return None;
            }
            return Some(self.register_op(index, intended_at));
        }
        let total = self.schedule.mix.total();
        if total == 0 {
            return None;
        }
        let mix = self.schedule.mix;
        let draw = self.rng.random_range(0..total);
        let op = if draw < mix.register {
            self.pick_endpoint(client, |_| true)
                .map(|index| self.register_op(index, intended_at))
        } else if draw < mix.register + mix.unregister {
            self.pick_endpoint(client, |endpoint| endpoint.registered)
                .map(|index| self.unregister_op(index, intended_at))
        } else {
            let kind = if draw < mix.register + mix.unregister + mix.query {
                (Operation::Query, RequestKind::Query)
            } else {
                (Operation::Lookup, RequestKind::Lookup(self.schedule.lookup))
            };
            self.pick_user_session(client).map(|session| OpRequest {
                session,
                operation: kind.0,
                kind: kind.1,
                intended_at,
            })
        };
        if op.is_none() {
            self.counters.skipped_busy += 1;
        }
        op
    }

    fn pick_endpoint(&mut self, client: &Client, wanted: fn(&Endpoint) -> bool) -> Option<usize> {
        for _ in 0..PICK_TRIES_MAX {
            let index = self.rng.random_range(0..self.endpoints.len());
            if !client.is_busy(index) && wanted(&self.endpoints[index]) {
                return Some(index);
            }
        }
        None
    }

    fn pick_user_session(&mut self, client: &Client) -> Option<usize> {
        for _ in 0..PICK_TRIES_MAX {
            let user = self.rng.random_range(0..self.user_sessions.len());
            let session = self.user_sessions[user];
            if !client.is_busy(session) {
                return Some(session);
            }
        }
        None
    }

    fn register_op(&mut self, index: usize, intended_at: Instant) -> OpRequest {
        let endpoint = &mut self.endpoints[index];
        endpoint.generation += 1;
        let operation = if endpoint.registered {
            Operation::Refresh
        } else {
            Operation::Register
        };
        OpRequest {
            session: index,
            operation,
            kind: RequestKind::Register {
                contact: endpoint.contact.clone(),
                expires_s: endpoint.expires_s,
            },
            intended_at,
        }
    }

    fn unregister_op(&mut self, index: usize, intended_at: Instant) -> OpRequest {
        let endpoint = &mut self.endpoints[index];
        endpoint.generation += 1;
        endpoint.registered = false;
        // Unexpected from now on: the registrar may apply it any time from here.
        self.ledger
            .record_unregister(&self.aors[endpoint.user], &endpoint.contact, intended_at);
        OpRequest {
            session: index,
            operation: Operation::Unregister,
            kind: RequestKind::Unregister {
                contact: endpoint.contact.clone(),
            },
            intended_at,
        }
    }

    fn schedule_due(&mut self, index: usize, at: Instant) {
        let generation = self.endpoints[index].generation;
        self.due.push(Reverse((at, index, generation)));
    }

    fn handle_register(&mut self, index: usize, completion: &Completion) {
        let requested = self.endpoints[index].expires_s;
        let finished = completion.finished_at;
        let retry_at = finished + RETRY_AFTER_MAX.min(self.refresh_delay(requested));
        let response = match &completion.outcome {
            Outcome::Final(response) => response,
            Outcome::TimedOut | Outcome::TransportError => {
                self.schedule_due(index, retry_at);
                return;
            }
        };
        if response.status == 423 {
            if let Some(minimum) = min_expires(response) {
                self.counters.interval_too_brief += 1;
                self.endpoints[index].expires_s = minimum;
                self.schedule_due(index, finished);
                return;
            }
        }
        if !(200..300).contains(&response.status) {
            self.schedule_due(index, retry_at);
            return;
        }
        let endpoint = &self.endpoints[index];
        let granted = granted_expires(response, &endpoint.contact).unwrap_or(requested);
        self.ledger.record_ack(Ack {
            aor: self.aors[endpoint.user].clone(),
            contact: endpoint.contact.clone(),
            sent_at: completion.sent_at,
            acked_at: finished,
            expires: Duration::from_secs(u64::from(granted)),
        });
        self.endpoints[index].registered = granted > 0;
        if granted > 0 {
            let at = finished + self.refresh_delay(granted);
            self.schedule_due(index, at);
        }
    }

    fn refresh_delay(&self, expires_s: u32) -> Duration {
        Duration::from_secs_f64(f64::from(expires_s) * self.schedule.refresh_at)
    }
}

impl Source for Workload {
    fn poll_op(&mut self, now: Instant, client: &Client) -> Option<OpRequest> {
        // Bounded: every pass consumes one due entry or one arrival; the bound caps the work
        // of one call when many are skipped (busy endpoints, obsolete entries).
        for _ in 0..64 {
            if self.stopped || self.count_reached() || now >= self.end {
                return None;
            }
            let due = self.next_due().filter(|at| *at <= now);
            let arrival = self.next_arrival().filter(|at| *at <= now);
            let op = match (due, arrival) {
                (None, None) => return None,
                (Some(due_at), arrival) if arrival.is_none_or(|a| due_at <= a) => {
                    let Reverse((_, index, generation)) = self.due.pop()?;
                    if self.endpoints[index].generation != generation {
                        continue;
                    }
                    if client.is_busy(index) {
                        self.counters.skipped_busy += 1;
                        continue;
                    }
                    Some(self.register_op(index, due_at))
                }
                (_, Some(arrival_at)) => {
                    self.arrivals.advance(&mut self.rng);
                    self.arrival_op(arrival_at, client)
                }
                (Some(_), None) => return None,
            };
            if let Some(op) = op {
                self.counters.started += 1;
                return Some(op);
            }
        }
        None
    }

    fn due_at(&self) -> Option<Instant> {
        if self.stopped || self.count_reached() {
            return None;
        }
        let next = match (self.next_due(), self.next_arrival()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.filter(|at| *at < self.end)
    }

    fn handle_completion(&mut self, completion: &Completion) {
        let index = completion.op.session;
        match completion.op.operation {
            Operation::Register | Operation::Refresh if index < self.endpoints.len() => {
                self.handle_register(index, completion);
            }
            Operation::Unregister if index < self.endpoints.len() => {
                let endpoint = &self.endpoints[index];
                self.ledger.record_unregister(
                    &self.aors[endpoint.user],
                    &endpoint.contact,
                    completion.finished_at,
                );
            }
            _ => {}
        }
    }

    fn is_finished(&self, now: Instant) -> bool {
        self.stopped || self.count_reached() || now >= self.end
    }

    fn stop(&mut self) {
        self.stopped = true;
    }
}

fn credentials(population: &Population, name: &str) -> Option<UserCredentials> {
    population
        .password
        .as_ref()
        .map(|password| UserCredentials {
            username: name.to_owned(),
            password: password.clone(),
        })
}

/// `sip:<user>.<endpoint>@<link address>[;transport=...]`: distinct per endpoint under
/// RFC 3261 URI equality, which ignores most parameters.
fn contact_uri(user: &str, endpoint: usize, contacts: &Contacts, link: usize) -> String {
    let address = contacts
        .link_addresses
        .get(link)
        .copied()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5060)));
    match contacts.transport_param {
        Some(transport) => format!("sip:{user}.{endpoint}@{address};transport={transport}"),
        None => format!("sip:{user}.{endpoint}@{address}"),
    }
}

/// The expiry granted to `contact` in a `2xx`: its Contact's `expires` parameter, else the
/// Expires header (RFC 3261 §10.2.4); `None` when the registrar says neither.
fn granted_expires(response: &Response, contact: &str) -> Option<u32> {
    let key = Uri::parse(contact).ok()?.comparison_key();
    let listed = response
        .headers
        .contacts()
        .ok()
        .and_then(|contacts| match contacts {
            roster_sip::Contacts::List(list) => list
                .into_iter()
                .find(|listed| listed.uri.comparison_key() == key),
            roster_sip::Contacts::Star => None,
        });
    let from_param = listed
        .as_ref()
        .and_then(|listed| listed.param("expires"))
        .and_then(|param| param.value.as_deref())
        .and_then(|value| value.parse().ok());
    from_param.or_else(|| response.headers.expires().ok().flatten())
}

fn min_expires(response: &Response) -> Option<u32> {
    response
        .headers
        .get(&HeaderName::MinExpires)
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests;
