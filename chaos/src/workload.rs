//! The load, on roster-load's sans-IO [`Client`] and its driver: logical clients (one contact
//! each, one operation at a time) registering, refreshing, unregistering, querying and looking
//! up, on many distinct AORs and a few hot AORs shared by several clients; every operation is
//! recorded as an [`Op`] with its invoke and completion times and its outcome.
//!
//! [`Scheduler`] decides (sans-IO: fed `Instant`s and completions): open-loop arrivals at the
//! scenario's rate, each for a random idle client, sent to the node the client sticks to; a
//! client whose operation got no clear answer moves to another node, as a phone fails over to
//! the next SRV target. After the load, the runner asks for *directed* operations: one write per
//! node and routing group (the liveness probes) and one read per AOR through every node (the
//! durability reads), each retried a few times.
//!
//! Each node gets its own roster-load [`Client`] and UDP link, driven by `roster_load::driver::drive`
//! with a [`NodeSource`]; all of them share the scheduler, on one thread.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roster_load::client::{ClientConfig, Completion, Outcome, SessionSpec};
use roster_load::config::{TargetSpec, TransportKind};
use roster_load::driver::{drive, DriveLimits, DriveSummary};
use roster_load::link::Links;
use roster_load::op::{LookupMethod, OpRequest, Operation, RequestKind};
use roster_load::progress::Progress;
use roster_load::transaction::Timers;
use roster_load::{Client, Source, Stats, Target};
use roster_sip::{Contacts, HeaderName, Response, Uri};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::history::{Op, OpKind, OpOutcome, Phase, Served};

/// The header a pool node names who answered in (see `roster`'s `sip::service`).
pub const SERVED_HEADER: &str = "X-Roster-Served";

/// The expiry every REGISTER asks for: the registrar's default maximum, longer than any run
/// the suite makes (the model of [`crate::check::linear`] has no expiry).
pub const EXPIRES_S: u32 = 7200;

/// The SIP domain of every AOR.
pub const DOMAIN: &str = "example.com";

/// Load operations waiting for their node's driver; past it arrivals are dropped (counted).
/// A second of load at the highest rate a scenario uses.
pub const QUEUED_PER_NODE_MAX: usize = 2_000;

/// Transactions one node's driver keeps open: the load's clients, the probes and the final
/// reads (one per AOR) all fit.
pub const OUTSTANDING_PER_NODE_MAX: usize = 20_000;

/// Most attempts of one final read: a group may answer `503` for a moment after a heal.
pub const FINAL_READ_ATTEMPTS_MAX: u32 = 8;

/// Final reads one node's driver has in flight at once: each is a REGISTER query, a Raft
/// command of its group, and sent all at once (hundreds per node) they overran a loaded
/// machine's nodes, which answered `503` until the reads ran out of attempts.
pub const FINAL_READS_IN_FLIGHT_PER_NODE_MAX: usize = 16;

/// Wait between attempts of a directed operation.
const DIRECTED_RETRY: Duration = Duration::from_millis(500);

/// How often an idle driver looks at the scheduler again (directed operations are added by the
/// runner, which cannot wake a sleeping driver).
const IDLE_TICK: Duration = Duration::from_millis(50);

/// Random picks of an idle client per arrival before the arrival is dropped.
const PICK_TRIES_MAX: usize = 8;

/// Names tried for a routing group's probe AOR (`probe<G>-<k>`): a name lands in a given group
/// with probability 1/G, so 64 × 64 tries leave no group of at most 64 without one.
const PROBE_NAME_TRIES_MAX: u64 = 4_096;

/// Relative weights of the load's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixSpec {
    /// REGISTER of the client's contact (new, or a refresh).
    pub register: u32,
    /// Unregistration of the client's contact (a register when it holds none).
    pub unregister: u32,
    /// REGISTER without Contact.
    pub query: u32,
    /// OPTIONS to the AOR.
    pub lookup: u32,
}

impl Default for MixSpec {
    fn default() -> MixSpec {
        MixSpec {
            register: 40,
            unregister: 15,
            query: 25,
            lookup: 20,
        }
    }
}

/// The `[workload]` of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// Operations started per second, open loop. Default 120.
    pub rate: f64,
    /// Distinct AORs, one client each. Default 300.
    pub aors: usize,
    /// Hot AORs, each shared by `clients_per_hot_aor` clients. Default 3.
    pub hot_aors: usize,
    /// Clients (contacts) per hot AOR; at most 7, under the registrar's default of 8
    /// bindings per AOR with room for nothing else. Default 4.
    pub clients_per_hot_aor: usize,
    /// Share of arrivals that go to a hot AOR's client, 0..1. Default 0.3.
    pub hot_share: f64,
    /// The operation mix.
    pub mix: MixSpec,
    /// SIP T1 in milliseconds: retransmissions at T1, 2T1, ..., timeout at 64×T1. Default 100.
    pub t1_ms: u64,
}

impl Default for WorkloadSpec {
    fn default() -> WorkloadSpec {
        WorkloadSpec {
            rate: 120.0,
            aors: 300,
            hot_aors: 3,
            clients_per_hot_aor: 4,
            hot_share: 0.3,
            mix: MixSpec::default(),
            t1_ms: 100,
        }
    }
}

impl WorkloadSpec {
    /// Checks the bounds.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.rate > 0.0 && self.rate <= 5_000.0,
            "workload.rate must be in (0, 5000]"
        );
        anyhow::ensure!(
            (1..=100_000).contains(&self.aors),
            "workload.aors must be 1..=100000"
        );
        anyhow::ensure!(
            self.clients_per_hot_aor <= 7,
            "workload.clients_per_hot_aor must be at most 7"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.hot_share),
            "workload.hot_share must be in 0..=1"
        );
        let mix = self.mix;
        anyhow::ensure!(
            mix.register + mix.unregister + mix.query + mix.lookup > 0,
            "workload.mix has no weight"
        );
        anyhow::ensure!(
            (10..=1_000).contains(&self.t1_ms),
            "workload.t1_ms must be 10..=1000"
        );
        Ok(())
    }

    /// The SIP timers of every client.
    pub fn timers(&self) -> Timers {
        let t1 = Duration::from_millis(self.t1_ms);
        Timers {
            t1,
            t2: (t1 * 8).max(Duration::from_secs(1)),
        }
    }
}

/// What the logical client is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Load { hot: bool },
    Probe { node: usize },
}

struct LogicalClient {
    aor: usize,
    contact_uri: String,
    contact_key: String,
    node: usize,
    busy: bool,
    registered: bool,
    role: Role,
}

struct Aor {
    uri: Uri,
    canonical: String,
    group: u32,
    /// The home pool (index).
    home: usize,
}

/// The workload's users (user part) and the index of each one's home pool, in the order the
/// scheduler makes its AORs: `spec.aors` distinct ones (`chaos<i>`, homed on pool `i mod
/// pools`), `spec.hot_aors` hot ones (`hot<h>`, on pool `h mod pools`), then a probe AOR per
/// pool and routing group (`probe<G>-<k>`, `p<P>probe<G>-<k>` for the second pool), named so
/// that it lands in group `G`.
pub fn users(spec: &WorkloadSpec, pools: usize, groups: u32) -> Vec<(String, usize)> {
    let pools = pools.max(1);
    let mut names: Vec<(String, usize)> = (0..spec.aors)
        .map(|user| (format!("chaos{user}"), user % pools))
        .collect();
    names.extend((0..spec.hot_aors).map(|hot| (format!("hot{hot}"), hot % pools)));
    for pool in 0..pools {
        let prefix = if pool == 0 {
            String::new()
        } else {
            format!("p{}", pool + 1)
        };
        for group in 0..groups {
            let name = (0..PROBE_NAME_TRIES_MAX)
                .map(|k| format!("{prefix}probe{group}-{k}"))
                .find(|name| {
                    roster_raft::group_of(&format!("sip:{name}@{DOMAIN}"), groups.max(1)) == group
                })
                .unwrap_or_else(|| format!("{prefix}probe{group}"));
            names.push((name, pool));
        }
    }
    names
}

#[derive(Clone, Debug)]
struct Directed {
    client: usize,
    kind: OpKind,
    phase: Phase,
    not_before: Instant,
    deadline: Instant,
    attempts: u32,
}

struct Pending {
    id: u64,
    client: usize,
    kind: OpKind,
    phase: Phase,
    invoke: Duration,
    directed: Option<Directed>,
}

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchedulerCounters {
    /// Arrivals dropped: no idle client found, or the node's queue was full.
    pub dropped: u64,
    /// Directed operations that gave up (probes past their deadline, reads past their tries).
    pub directed_given_up: u64,
}

/// The shared decision-maker of every node's driver: see the module doc.
pub struct Scheduler {
    start: Instant,
    spec: WorkloadSpec,
    rng: StdRng,
    clients: Vec<LogicalClient>,
    aors: Vec<Aor>,
    load_clients: usize,
    hot_first_client: usize,
    nodes: usize,
    next_arrival: Instant,
    interval: Duration,
    arriving: bool,
    stopped: bool,
    queued: Vec<VecDeque<(usize, OpKind)>>,
    directed: Vec<VecDeque<Directed>>,
    pending: HashMap<(usize, usize), Pending>,
    ops: Vec<Op>,
    next_id: u64,
    last_poll: Instant,
    counters: SchedulerCounters,
}

impl Scheduler {
    /// A workload of `spec` over `nodes` nodes of `pools` pools (the AORs homed on them as
    /// [`users`] says) of `groups` routing groups each, starting at `start`, every random
    /// choice from `seed`.
    pub fn new(
        spec: &WorkloadSpec,
        nodes: usize,
        pools: usize,
        groups: u32,
        seed: u64,
        start: Instant,
    ) -> Scheduler {
        let mut aors = Vec::new();
        let mut clients = Vec::new();
        let add_aor = |(name, home): &(String, usize), aors: &mut Vec<Aor>| -> usize {
            let uri = Uri::parse(&format!("sip:{name}@{DOMAIN}"))
                .unwrap_or_else(|_| Uri::new(roster_sip::Scheme::Sip, DOMAIN));
            let canonical = uri.aor();
            let group = roster_raft::group_of(&canonical, groups.max(1));
            aors.push(Aor {
                uri,
                canonical,
                group,
                home: *home,
            });
            aors.len() - 1
        };
        let add_client = |aor: usize, role: Role, node: usize, clients: &mut Vec<LogicalClient>| {
            let index = clients.len();
            let contact_uri = format!("sip:c{index}@192.0.2.1:5060");
            let contact_key = Uri::parse(&contact_uri)
                .map(|uri| uri.comparison_key())
                .unwrap_or_else(|_| contact_uri.clone());
            clients.push(LogicalClient {
                aor,
                contact_uri,
                contact_key,
                node,
                busy: false,
                registered: false,
                role,
            });
        };
        let names = users(spec, pools, groups);
        for (user, name) in names.iter().take(spec.aors).enumerate() {
            let aor = add_aor(name, &mut aors);
            add_client(
                aor,
                Role::Load { hot: false },
                user % nodes.max(1),
                &mut clients,
            );
        }
        let hot_first_client = clients.len();
        for (hot, name) in names.iter().skip(spec.aors).take(spec.hot_aors).enumerate() {
            let aor = add_aor(name, &mut aors);
            for k in 0..spec.clients_per_hot_aor {
                add_client(
                    aor,
                    Role::Load { hot: true },
                    (hot + k) % nodes.max(1),
                    &mut clients,
                );
            }
        }
        let load_clients = clients.len();
        // One probe AOR per pool and routing group, a contact per node on it.
        for name in names.iter().skip(spec.aors + spec.hot_aors) {
            let aor = add_aor(name, &mut aors);
            for node in 0..nodes {
                add_client(aor, Role::Probe { node }, node, &mut clients);
            }
        }
        let interval = Duration::from_secs_f64(1.0 / spec.rate.max(0.001));
        Scheduler {
            start,
            spec: spec.clone(),
            rng: StdRng::seed_from_u64(seed),
            clients,
            aors,
            load_clients,
            hot_first_client,
            nodes,
            next_arrival: start,
            interval,
            arriving: true,
            stopped: false,
            queued: (0..nodes).map(|_| VecDeque::new()).collect(),
            directed: (0..nodes).map(|_| VecDeque::new()).collect(),
            pending: HashMap::new(),
            ops: Vec::new(),
            next_id: 0,
            last_poll: start,
            counters: SchedulerCounters::default(),
        }
    }

    /// The AOR and credentials-free session of every logical client, in session order: each
    /// node's [`Client`] gets them all.
    pub fn sessions(&self) -> Vec<SessionSpec> {
        self.clients
            .iter()
            .map(|client| SessionSpec {
                aor: self.aors[client.aor].uri.clone(),
                credentials: None,
                link: 0,
            })
            .collect()
    }

    /// Stops the load's arrivals (directed operations still run).
    pub fn stop_arrivals(&mut self) {
        self.arriving = false;
        for queue in &mut self.queued {
            for (client, _) in queue.drain(..) {
                self.clients[client].busy = false;
            }
        }
    }

    /// Ends the run: drivers finish once their open transactions are done.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Operations queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
            + self.queued.iter().map(VecDeque::len).sum::<usize>()
            + self.directed.iter().map(VecDeque::len).sum::<usize>()
    }

    /// One write per routing group through each of `nodes`, retried until `deadline`.
    pub fn enqueue_probes(&mut self, nodes: &BTreeSet<usize>, now: Instant, deadline: Instant) {
        for index in self.load_clients..self.clients.len() {
            if let Role::Probe { node } = self.clients[index].role {
                if nodes.contains(&node) {
                    self.directed[node].push_back(Directed {
                        client: index,
                        kind: OpKind::Register,
                        phase: Phase::Probe,
                        not_before: now,
                        deadline,
                        attempts: 0,
                    });
                }
            }
        }
    }

    /// One query of every AOR through each of `nodes`; returns the (AOR, node) pairs to read.
    pub fn enqueue_final_reads(
        &mut self,
        nodes: &BTreeSet<usize>,
        now: Instant,
    ) -> BTreeSet<(String, usize)> {
        let mut targets = BTreeSet::new();
        // The reader of an AOR: its first load client, or the node's probe client.
        let mut readers: HashMap<(usize, usize), usize> = HashMap::new();
        for (index, client) in self.clients.iter().enumerate() {
            for &node in nodes {
                let mine = match client.role {
                    Role::Load { .. } => true,
                    Role::Probe { node: probe_node } => probe_node == node,
                };
                if mine {
                    readers.entry((client.aor, node)).or_insert(index);
                }
            }
        }
        let mut pairs: Vec<((usize, usize), usize)> = readers.into_iter().collect();
        pairs.sort_unstable();
        for ((aor, node), client) in pairs {
            targets.insert((self.aors[aor].canonical.clone(), node));
            self.directed[node].push_back(Directed {
                client,
                kind: OpKind::Query,
                phase: Phase::Final,
                not_before: now,
                deadline: now,
                attempts: 0,
            });
        }
        targets
    }

    /// Gives up the history at the end.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// What was counted.
    pub fn counters(&self) -> SchedulerCounters {
        self.counters
    }

    /// The next operation for `node`'s driver at `now`, if any.
    fn poll(&mut self, node: usize, now: Instant) -> Option<OpRequest> {
        self.last_poll = now;
        if self.stopped {
            return None;
        }
        self.generate(now);
        let finals_in_flight = self
            .pending
            .iter()
            .filter(|((at, _), pending)| *at == node && pending.phase == Phase::Final)
            .count();
        let finals_allowed = finals_in_flight < FINAL_READS_IN_FLIGHT_PER_NODE_MAX;
        let ready = self.directed[node].iter().position(|d| {
            d.not_before <= now
                && !self.clients[d.client].busy
                && (finals_allowed || d.phase != Phase::Final)
        });
        if let Some(position) = ready {
            let directed = self.directed[node].remove(position)?;
            return Some(self.begin(
                node,
                directed.client,
                directed.kind,
                directed.phase,
                Some(directed),
                now,
            ));
        }
        let (client, kind) = self.queued[node].pop_front()?;
        Some(self.begin(node, client, kind, Phase::Load, None, now))
    }

    /// Turns the arrivals due by `now` into queued operations.
    fn generate(&mut self, now: Instant) {
        let mix = self.spec.mix;
        let total = mix.register + mix.unregister + mix.query + mix.lookup;
        while self.arriving && self.next_arrival <= now {
            self.next_arrival += self.interval;
            let Some(client) = self.pick_client() else {
                self.counters.dropped += 1;
                continue;
            };
            let draw = self.rng.random_range(0..total.max(1));
            let registered = self.clients[client].registered;
            let kind = if draw < mix.register {
                OpKind::Register
            } else if draw < mix.register + mix.unregister {
                if registered {
                    OpKind::Unregister
                } else {
                    OpKind::Register
                }
            } else if draw < mix.register + mix.unregister + mix.query {
                OpKind::Query
            } else {
                OpKind::Lookup
            };
            let node = self.clients[client].node;
            if self.queued[node].len() >= QUEUED_PER_NODE_MAX {
                self.counters.dropped += 1;
                continue;
            }
            self.clients[client].busy = true;
            self.queued[node].push_back((client, kind));
        }
    }

    fn pick_client(&mut self) -> Option<usize> {
        let hot_clients = self.load_clients - self.hot_first_client;
        for _ in 0..PICK_TRIES_MAX {
            let hot = hot_clients > 0 && self.rng.random_bool(self.spec.hot_share);
            let client = if hot {
                self.hot_first_client + self.rng.random_range(0..hot_clients)
            } else {
                self.rng.random_range(0..self.hot_first_client.max(1))
            };
            if client < self.load_clients && !self.clients[client].busy {
                return Some(client);
            }
        }
        None
    }

    fn begin(
        &mut self,
        node: usize,
        client: usize,
        kind: OpKind,
        phase: Phase,
        directed: Option<Directed>,
        now: Instant,
    ) -> OpRequest {
        let id = self.next_id;
        self.next_id += 1;
        let logical = &mut self.clients[client];
        logical.busy = true;
        let (operation, request) = match kind {
            OpKind::Register => (
                if logical.registered {
                    Operation::Refresh
                } else {
                    Operation::Register
                },
                RequestKind::Register {
                    contact: logical.contact_uri.clone(),
                    expires_s: EXPIRES_S,
                },
            ),
            OpKind::Unregister => (
                Operation::Unregister,
                RequestKind::Unregister {
                    contact: logical.contact_uri.clone(),
                },
            ),
            OpKind::Query => (Operation::Query, RequestKind::Query),
            OpKind::Lookup => (
                Operation::Lookup,
                RequestKind::Lookup(LookupMethod::Options),
            ),
        };
        self.pending.insert(
            (node, client),
            Pending {
                id,
                client,
                kind,
                phase,
                invoke: now.saturating_duration_since(self.start),
                directed,
            },
        );
        OpRequest {
            session: client,
            operation,
            kind: request,
            intended_at: now,
        }
    }

    fn complete(&mut self, node: usize, completion: &Completion) {
        let Some(pending) = self.pending.remove(&(node, completion.op.session)) else {
            return;
        };
        let (outcome, status, listed) = classify(pending.kind, &completion.outcome);
        let client = &mut self.clients[pending.client];
        client.busy = false;
        if outcome == OpOutcome::Ok {
            match pending.kind {
                OpKind::Register => client.registered = true,
                OpKind::Unregister => client.registered = false,
                OpKind::Query | OpKind::Lookup => {}
            }
        }
        if outcome == OpOutcome::Unknown && pending.phase == Phase::Load && self.nodes > 1 {
            // Fail over, as a phone moves to the next SRV target.
            let step = self.rng.random_range(1..self.nodes);
            client.node = (client.node + step) % self.nodes;
        }
        let aor = &self.aors[client.aor];
        let served = match &completion.outcome {
            Outcome::Final(response) if outcome == OpOutcome::Ok => response
                .headers
                .get(&HeaderName::Other(SERVED_HEADER.into()))
                .and_then(Served::parse),
            _ => None,
        };
        self.ops.push(Op {
            id: pending.id,
            client: pending.client,
            node,
            aor: aor.canonical.clone(),
            group: aor.group,
            home: aor.home,
            served,
            kind: pending.kind,
            contact: pending.kind.is_write().then(|| client.contact_key.clone()),
            invoke: pending.invoke,
            complete: completion.finished_at.saturating_duration_since(self.start),
            outcome,
            status,
            listed,
            phase: pending.phase,
        });
        if let Some(mut directed) = pending.directed {
            if outcome != OpOutcome::Ok {
                directed.attempts += 1;
                let again = match directed.phase {
                    Phase::Probe => completion.finished_at < directed.deadline,
                    _ => directed.attempts < FINAL_READ_ATTEMPTS_MAX,
                };
                if again {
                    directed.not_before = completion.finished_at + DIRECTED_RETRY;
                    self.directed[node].push_back(directed);
                } else {
                    self.counters.directed_given_up += 1;
                }
            }
        }
    }

    fn due_at(&self, node: usize) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let queued = (!self.queued[node].is_empty()).then_some(self.last_poll);
        let directed = self.directed[node].iter().map(|d| d.not_before).min();
        let arrival = self.arriving.then_some(self.next_arrival);
        let tick = Some(self.last_poll + IDLE_TICK);
        [queued, directed, arrival, tick]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The checkers' reading of an answer: outcome, status, and the contacts listed.
fn classify(kind: OpKind, outcome: &Outcome) -> (OpOutcome, Option<u16>, Vec<String>) {
    let response = match outcome {
        Outcome::Final(response) => response,
        Outcome::TimedOut | Outcome::TransportError => {
            return (OpOutcome::Unknown, None, Vec::new())
        }
    };
    let status = response.status;
    let ok = match kind {
        OpKind::Lookup => matches!(status, 200..=299 | 302 | 480),
        _ => (200..300).contains(&status),
    };
    let outcome = if ok {
        OpOutcome::Ok
    } else if (400..500).contains(&status) {
        OpOutcome::Fail
    } else {
        OpOutcome::Unknown
    };
    let listed = if ok {
        listed_contacts(response)
    } else {
        Vec::new()
    };
    (outcome, Some(status), listed)
}

fn listed_contacts(response: &Response) -> Vec<String> {
    let mut listed: Vec<String> = match response.headers.contacts() {
        Ok(Contacts::List(list)) => list
            .iter()
            .map(|contact| contact.uri.comparison_key())
            .collect(),
        Ok(Contacts::Star) | Err(_) => Vec::new(),
    };
    listed.sort();
    listed.dedup();
    listed
}

/// One node's view of the shared scheduler, as roster-load's driver wants it.
pub struct NodeSource {
    node: usize,
    scheduler: Rc<RefCell<Scheduler>>,
}

impl Source for NodeSource {
    fn poll_op(&mut self, now: Instant, _client: &Client) -> Option<OpRequest> {
        self.scheduler.borrow_mut().poll(self.node, now)
    }

    fn due_at(&self) -> Option<Instant> {
        self.scheduler.borrow().due_at(self.node)
    }

    fn handle_completion(&mut self, completion: &Completion) {
        self.scheduler.borrow_mut().complete(self.node, completion);
    }

    fn is_finished(&self, _now: Instant) -> bool {
        self.scheduler.borrow().stopped
    }

    fn stop(&mut self) {
        self.scheduler.borrow_mut().stop();
    }
}

/// Drives the scheduler's operations for `node` at `target` over UDP until the scheduler
/// stops (or `cancel`), then drains open transactions for one Timer F.
pub async fn drive_node(
    node: usize,
    target: SocketAddr,
    scheduler: Rc<RefCell<Scheduler>>,
    timers: Timers,
    cancel: CancellationToken,
) -> anyhow::Result<DriveSummary> {
    let spec = TargetSpec {
        host: target.ip().to_string(),
        port: target.port(),
        transport: TransportKind::Udp,
        tls_ca: None,
        tls_name: None,
    };
    let target = Target::resolve(&spec).await?;
    let mut links = Links::open(&target, 1, None).await?;
    let domain_uri = Uri::parse(&format!("sip:{DOMAIN}"))?;
    let mut client = Client::new(
        ClientConfig {
            domain_uri,
            via_transport: "UDP",
            reliable: false,
            timers,
            algorithm: None,
            // Random per run and node: a registrar orders CSeqs per Call-ID.
            run_tag: format!("{:08x}", rand::random::<u32>()),
        },
        links.local_addresses(),
    );
    for session in scheduler.borrow().sessions() {
        client.add_session(session);
    }
    let mut source = NodeSource { node, scheduler };
    let mut stats = Stats::new();
    let start = Instant::now();
    let mut progress = Progress::new("chaos", start);
    let limits = DriveLimits {
        max_outstanding: OUTSTANDING_PER_NODE_MAX,
        drain: timers.timer_f() + Duration::from_secs(1),
    };
    let summary = drive(
        &mut client,
        &mut source,
        &mut links,
        &mut stats,
        &mut progress,
        limits,
        &cancel,
    )
    .await;
    progress.finish();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_go_to_idle_clients_on_their_node_and_probes_cover_every_group() {
        let start = Instant::now();
        let spec = WorkloadSpec {
            rate: 100.0,
            aors: 10,
            hot_aors: 1,
            clients_per_hot_aor: 3,
            ..WorkloadSpec::default()
        };
        let mut scheduler = Scheduler::new(&spec, 3, 1, 4, 7, start);
        assert_eq!(scheduler.sessions().len(), 10 + 3 + 4 * 3);
        // One second of arrivals: 100, each for an idle client, queued on its node.
        let now = start + Duration::from_secs(1);
        let mut started = BTreeSet::new();
        for node in 0..3 {
            while let Some(op) = scheduler.poll(node, now) {
                assert!(
                    started.insert(op.session),
                    "one operation per client at a time"
                );
            }
        }
        assert_eq!(
            started.len(),
            13,
            "every load client busy, no probe client used"
        );
        assert!(scheduler.counters().dropped > 0);
        scheduler.stop_arrivals();
        let nodes = BTreeSet::from([0, 1, 2]);
        scheduler.enqueue_probes(&nodes, now, now + Duration::from_secs(5));
        let probes: usize = scheduler.directed.iter().map(VecDeque::len).sum();
        assert_eq!(probes, 12);
        let groups: BTreeSet<u32> = scheduler.aors.iter().skip(11).map(|a| a.group).collect();
        assert_eq!(groups, BTreeSet::from([0, 1, 2, 3]));
        let targets = scheduler.enqueue_final_reads(&nodes, now);
        assert_eq!(targets.len(), (10 + 1 + 4) * 3);
    }

    #[test]
    fn final_reads_go_out_a_few_at_a_time() {
        let start = Instant::now();
        let spec = WorkloadSpec {
            aors: 100,
            hot_aors: 0,
            ..WorkloadSpec::default()
        };
        let mut scheduler = Scheduler::new(&spec, 1, 1, 2, 7, start);
        scheduler.stop_arrivals();
        scheduler.enqueue_final_reads(&BTreeSet::from([0]), start);
        let mut sent = 0;
        while scheduler.poll(0, start).is_some() {
            sent += 1;
        }
        assert_eq!(sent, FINAL_READS_IN_FLIGHT_PER_NODE_MAX);
    }
}
