//! Deterministic simulation: in-process pools over the simulated network under a seeded
//! schedule of faults, hundreds of seeds, each run a pure function of its seed.
//!
//! One seed fixes everything that varies: the faults and when they come (partitions: one node
//! isolated, a minority or a half cut off, two paired pools cut apart; lost requests and
//! replies, delays, a node stopped and restarted from its disk), the simulated network's drops
//! and delays (`SimNetwork`), the writers' choices, and every Raft's election timeouts
//! (`roster_raft::runtime::seed_thread`). Each run has a one-threaded Tokio runtime of its own
//! with a paused clock that jumps to the next timer whenever every task waits, so simulated
//! seconds cost only the CPU they use; the nodes' stores run their flushes on the calling task
//! (`StoreIo::Inline`), so no other thread completes anything. A run records a trace: each
//! write's outcome, each leader seen (group, term, node) and each fault, with its simulated
//! time, and at the end the network's counters and each group's members; two runs of one seed,
//! each in a process of its own, give the same trace (`a_seed_replays_the_same_run`). Not every
//! seed does, in one process or across processes alike: pool seed 2 gives one of two traces
//! (two writes through node 1 failing in either order when it stops at 263 ms). The source is
//! Tokio's `watch`: each waiter of `changed()` is filed under one of eight `Notify`s chosen by
//! the runtime's random generator (tokio 1.54 `sync/watch.rs`, `BigNotify::notified`), and a
//! change wakes the eight in turn, so waiters of one change (here openraft's
//! `wait_core_stopped`, on its metrics) wake in a random order. Only `Builder::rng_seed`, which
//! needs `--cfg tokio_unstable`, seeds that generator.
//!
//! Checked after healing: writes are served again through every node; every acknowledged write
//! is present (linearizable reads); the replicas of each group that applied the same log are
//! equal; no write was applied twice; at most one leader per group and term; and for two
//! paired pools every backup copy holds exactly its source's state at the source's index.
//!
//! `ROSTER_SIM_SEEDS=first..=last` (or one seed) runs other seeds than the default sets
//! (pools 1..=200, pairs 1..=8); `ROSTER_SIM_REPLAY=1` runs each seed twice in the process and
//! compares the traces (see above); `ROSTER_SIM_TRACE=1` prints every trace. A failure prints its seed and the command
//! that replays it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::RangeInclusive;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use common::pair::{self, Pair, A, B};
use common::{
    check_acknowledged, check_replicas_agree, raft_options, register, write_until_ok, Cluster,
    Node, Oracle, Rng,
};
use openraft::async_runtime::watch::WatchReceiver;
use roster_raft::typ::ServerState;
use roster_raft::{group_of, GroupKey, GroupResponse};
use roster_topology::{NodeId, PoolId};

/// Routing groups of a simulated lone pool: leaders spread over the nodes, little CPU.
const POOL_GROUPS: u32 = 3;
/// Writers of a lone pool, each with its own users.
const POOL_WRITERS: u32 = 3;
/// Writers per pool of a pair.
const PAIR_WRITERS: u32 = 2;
/// Users per writer.
const USERS_PER_WRITER: u32 = 10;
/// Fault steps of a run's safety phase, each held 200–800 ms.
const FAULT_STEPS: u32 = 6;
/// A writer stops after this many writes even if nobody says stop (a livelock fails a run).
const WRITES_PER_WRITER_MAX: u32 = 10_000;
/// How often the leader monitor looks at every replica's metrics.
const MONITOR_INTERVAL: Duration = Duration::from_millis(10);
/// Lone-pool seeds run by default: a few minutes of CI on two cores in a debug build.
const POOL_SEEDS: RangeInclusive<u64> = 1..=200;
/// Pair seeds run by default (a pair has six nodes and three times the groups of a pool).
const PAIR_SEEDS: RangeInclusive<u64> = 1..=8;

#[test]
fn pool_seeds_odd() {
    for seed in seeds(POOL_SEEDS).filter(|seed| seed % 2 == 1) {
        simulate_seed("pool", seed, pool_run);
    }
}

#[test]
fn pool_seeds_even() {
    for seed in seeds(POOL_SEEDS).filter(|seed| seed % 2 == 0) {
        simulate_seed("pool", seed, pool_run);
    }
}

#[test]
fn pair_seeds() {
    for seed in seeds(PAIR_SEEDS) {
        simulate_seed("pair", seed, pair_run);
    }
}

/// Two runs of one seed, each in a process of its own, have the same trace, and two seeds have
/// different ones: the check that the simulation is deterministic, and that the trace would
/// notice if it were not. (Some seeds still differ, pool seed 2 among them: see the module doc.)
#[test]
fn a_seed_replays_the_same_run() {
    for (family, seed) in [("pool", 3), ("pool", 4), ("pair", 3)] {
        let first = trace_in_a_process(family, seed);
        let second = trace_in_a_process(family, seed);
        assert_same_trace(family, seed, &first, &second);
        assert!(
            first.len() > 100,
            "{family} seed {seed}: {} events",
            first.len()
        );
    }
    assert_ne!(
        trace_in_a_process("pool", 5),
        trace_in_a_process("pool", 6),
        "two seeds gave one trace"
    );
}

/// Two runs of one seed in one process have the same trace: pool seed 2, whose two writes
/// failing as node 1 stops woke in either order before Tokio's generator was seeded. Only a
/// build with `--cfg tokio_unstable` can seed it (see the module doc):
/// `RUSTFLAGS="--cfg tokio_unstable" cargo test -p roster-pool --test sim a_seed_replays_in_one_process`.
#[test]
#[cfg_attr(
    not(tokio_unstable),
    ignore = "Tokio's random generator orders watch waiters unless --cfg tokio_unstable seeds it"
)]
fn a_seed_replays_in_one_process() {
    for seed in [2, 3] {
        let first = simulate("pool", seed, pool_run);
        let second = simulate("pool", seed, pool_run);
        assert_same_trace("pool", seed, &first, &second);
        assert!(
            first.len() > 100,
            "pool seed {seed}: {} events",
            first.len()
        );
    }
}

/// The trace of `seed` of `family`, run by this test binary in a new process.
fn trace_in_a_process(family: &str, seed: u64) -> Vec<String> {
    let test = if family == "pair" {
        "pair_seeds"
    } else if seed % 2 == 1 {
        "pool_seeds_odd"
    } else {
        "pool_seeds_even"
    };
    let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("ROSTER_SIM_SEEDS", seed.to_string())
        .env("ROSTER_SIM_TRACE", "1")
        .env_remove("ROSTER_SIM_REPLAY")
        .output()
        .expect("the test binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{family} seed {seed} failed:\n{stderr}"
    );
    let prefix = format!("{family} seed {seed}: ");
    let trace: Vec<String> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        // The summary line carries the wall time, which differs.
        .filter(|line| !line.contains(" events, trace "))
        .map(str::to_owned)
        .collect();
    trace
}

/// The seeds to run: `ROSTER_SIM_SEEDS` (`first..=last` or one seed), else `default`.
fn seeds(default: RangeInclusive<u64>) -> RangeInclusive<u64> {
    let Ok(text) = std::env::var("ROSTER_SIM_SEEDS") else {
        return default;
    };
    let parse = |text: &str| -> u64 {
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("ROSTER_SIM_SEEDS={text:?}: want first..=last or a seed"))
    };
    match text.split_once("..=") {
        Some((first, last)) => parse(first)..=parse(last),
        None => parse(&text)..=parse(&text),
    }
}

/// Runs `seed` of `family` (once, or twice with `ROSTER_SIM_REPLAY` set, comparing traces),
/// and prints the seed, its time and the trace's length.
fn simulate_seed<F, Fut>(family: &str, seed: u64, run: F)
where
    F: Fn(u64, Trace) -> Fut + Copy,
    Fut: Future<Output = ()>,
{
    let started = std::time::Instant::now();
    let trace = simulate(family, seed, run);
    if std::env::var_os("ROSTER_SIM_REPLAY").is_some() {
        assert_same_trace(family, seed, &trace, &simulate(family, seed, run));
    }
    if std::env::var_os("ROSTER_SIM_TRACE").is_some() {
        for line in &trace {
            eprintln!("{family} seed {seed}: {line}");
        }
    }
    eprintln!(
        "{family} seed {seed}: {} events, trace {:016x}, {:?}",
        trace.len(),
        fingerprint(&trace),
        started.elapsed()
    );
}

/// Runs `seed` in a runtime of its own (one thread, paused clock) with the thread's Raft rng
/// seeded, and returns its trace. A failure prints the seed and the command that replays it.
fn simulate<F, Fut>(family: &str, seed: u64, run: F) -> Vec<String>
where
    F: Fn(u64, Trace) -> Fut,
    Fut: Future<Output = ()>,
{
    let trace = Trace::default();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(true);
    // Tokio's own random generator orders the waiters of a `watch` change (see the module
    // doc); only an unstable build can seed it.
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    let runtime = builder.build().expect("a runtime");
    let raft_seed = roster_raft::runtime::seed_thread(seed);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async {
            let _simulation = common::simulate();
            run(seed, trace.clone()).await;
        });
    }));
    drop(runtime);
    drop(raft_seed);
    if let Err(panic) = outcome {
        eprintln!(
            "simulation failed: {family} seed {seed}; replay it with\n  \
             ROSTER_SIM_SEEDS={seed} cargo test -p roster-pool --test sim {family}_seeds -- --nocapture"
        );
        std::panic::resume_unwind(panic);
    }
    trace.events()
}

fn assert_same_trace(family: &str, seed: u64, first: &[String], second: &[String]) {
    if let Some(index) = (0..first.len().max(second.len())).find(|&i| first.get(i) != second.get(i))
    {
        panic!(
            "{family} seed {seed} ran twice with different traces ({} and {} events); first \
             difference at event {index}:\n  {:?}\n  {:?}",
            first.len(),
            second.len(),
            first.get(index),
            second.get(index)
        );
    }
}

/// FNV-1a of the trace's lines: a short name for a run.
fn fingerprint(trace: &[String]) -> u64 {
    trace
        .iter()
        .flat_map(|line| line.bytes().chain([b'\n']))
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// What happened in a run, in order, each event stamped with its simulated time.
#[derive(Clone, Default)]
struct Trace(Arc<Mutex<Vec<String>>>);

impl Trace {
    fn note(&self, event: impl std::fmt::Display) {
        let line = format!(
            "{:>6} {event}",
            common::clock() - common::SIMULATED_EPOCH_MS
        );
        self.0.lock().expect("trace").push(line);
    }

    fn events(&self) -> Vec<String> {
        self.0.lock().expect("trace").clone()
    }
}

/// Each (group, term) with the nodes seen leading it.
type Claims = BTreeMap<(GroupKey, u64), BTreeSet<NodeId>>;

/// Looks at every replica of `keys` on every running node each [`MONITOR_INTERVAL`] until
/// `stop`, noting each node seen as a group's leader in a term.
async fn watch_leaders(
    pools: Vec<Arc<RwLock<BTreeMap<NodeId, Node>>>>,
    keys: Vec<GroupKey>,
    trace: Trace,
    stop: Arc<AtomicBool>,
) -> Claims {
    let mut claims = Claims::new();
    while !stop.load(Ordering::Relaxed) {
        for nodes in &pools {
            let running: Vec<Node> = nodes.read().expect("nodes").values().cloned().collect();
            for node in running {
                for &key in &keys {
                    let Some(raft) = node.raft(key) else {
                        continue;
                    };
                    let (state, term) = {
                        let metrics = raft.metrics();
                        let metrics = metrics.borrow_watched();
                        (metrics.state, metrics.current_term)
                    };
                    if state == ServerState::Leader
                        && claims
                            .entry((key, term))
                            .or_default()
                            .insert(node.node_id())
                    {
                        trace.note(format_args!(
                            "leader {key} term {term} node {}",
                            node.node_id()
                        ));
                    }
                }
            }
        }
        tokio::time::sleep(MONITOR_INTERVAL).await;
    }
    claims
}

/// At most one leader per group and term.
fn check_election_safety(claims: &Claims, seed: u64) {
    for ((key, term), leaders) in claims {
        assert!(
            leaders.len() <= 1,
            "seed {seed}: {key} had leaders {leaders:?} in term {term}"
        );
    }
}

/// What a writer saw.
#[derive(Clone, Copy, Debug, Default)]
struct Written {
    acknowledged: u64,
    unknown: u64,
    /// Refusals as an old CSeq: every write has a CSeq above the user's last, so a refusal is
    /// a write applied twice.
    refused: u64,
    /// Simulated time of the last acknowledgement.
    last_acknowledged_ms: u64,
}

/// One writer: REGISTERs of its users (CSeq rising) through random running nodes of its pool,
/// a seeded pause between writes, until told to stop.
struct Writer {
    nodes: Arc<RwLock<BTreeMap<NodeId, Node>>>,
    pool: PoolId,
    groups: u32,
    users: std::ops::Range<u32>,
    seed: u64,
    oracle: Arc<Oracle>,
    stop: Arc<AtomicBool>,
    trace: Trace,
}

impl Writer {
    async fn run(self) -> Written {
        let mut rng = Rng::new(self.seed);
        let mut written = Written::default();
        let mut cseqs: BTreeMap<u32, u32> = BTreeMap::new();
        for _ in 0..WRITES_PER_WRITER_MAX {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let node = {
                let nodes = self.nodes.read().expect("nodes");
                let index = rng.below(nodes.len() as u64) as usize;
                nodes.values().nth(index).cloned()
            };
            let Some(node) = node else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let user = self.users.start + rng.below(u64::from(self.users.len() as u32)) as u32;
            let cseq = cseqs.entry(user).or_insert(0);
            *cseq += 1;
            let (aor, command) = register(user, *cseq);
            let group = GroupKey::routing(self.pool, group_of(&aor, self.groups));
            let result = node.write(group, command).await;
            let via = node.node_id();
            match &result {
                Ok(GroupResponse::Refused(refusal)) => {
                    self.trace.note(format_args!(
                        "refused u{user} cseq {cseq} via {via}: {refusal:?}"
                    ));
                    written.refused += 1;
                }
                Ok(_) => {
                    self.trace
                        .note(format_args!("ack u{user} cseq {cseq} via {via}"));
                    written.acknowledged += 1;
                    written.last_acknowledged_ms = common::clock();
                }
                Err(error) => {
                    self.trace.note(format_args!(
                        "unknown u{user} cseq {cseq} via {via}: {error}"
                    ));
                    written.unknown += 1;
                }
            }
            self.oracle.record(user, *cseq, result.is_ok());
            tokio::time::sleep(Duration::from_millis(10 + rng.below(40))).await;
        }
        written
    }
}

/// A message's base latency, always on: with none, a write's round trips take no simulated
/// time and the clock never moves while writers write.
fn base_delay(cluster_network: &roster_net::SimNetwork, rng: &mut Rng) {
    let max = Duration::from_millis(1 + rng.below(5));
    cluster_network.set_delay(Duration::from_millis(1), max);
}

/// One seed of a lone pool of three or four nodes.
async fn pool_run(seed: u64, trace: Trace) {
    let mut rng = Rng::new(seed);
    let count = 3 + rng.below(2);
    let cluster = Cluster::start(count, seed, POOL_GROUPS, sim_raft_options()).await;
    let network = cluster.network.clone();
    base_delay(&network, &mut rng);
    let stop = Arc::new(AtomicBool::new(false));
    let keys: Vec<GroupKey> = (0..POOL_GROUPS)
        .map(|group| GroupKey::routing(cluster.pool, group))
        .collect();
    let monitor = tokio::spawn(watch_leaders(
        vec![cluster.nodes.clone()],
        keys,
        trace.clone(),
        stop.clone(),
    ));
    let oracle = Arc::new(Oracle::default());
    let writing = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..POOL_WRITERS)
        .map(|index| {
            tokio::spawn(
                Writer {
                    nodes: cluster.nodes.clone(),
                    pool: cluster.pool,
                    groups: POOL_GROUPS,
                    users: index * USERS_PER_WRITER..(index + 1) * USERS_PER_WRITER,
                    seed: seed * 100 + u64::from(index),
                    oracle: oracle.clone(),
                    stop: writing.clone(),
                    trace: trace.clone(),
                }
                .run(),
            )
        })
        .collect();

    // Safety phase: faults come and go while the writers write.
    let ids: Vec<NodeId> = (1..=count).collect();
    let mut nemesis = Nemesis::new(&network, vec![&cluster], &trace);
    for _ in 0..FAULT_STEPS {
        match rng.below(7) {
            0 => nemesis.isolate(&mut rng),
            1 => {
                // A minority (one node) or half the pool (two of four) cut from the rest.
                let side = shuffled(&ids, &mut rng)[..(count as usize) / 2].to_vec();
                let rest: Vec<NodeId> = ids
                    .iter()
                    .copied()
                    .filter(|id| !side.contains(id))
                    .collect();
                trace.note(format_args!("fault: {side:?} cut from {rest:?}"));
                network.partition(&side, &rest);
            }
            2 => {
                let percent = 5 + rng.below(16);
                trace.note(format_args!("fault: {percent}% of messages lost"));
                network.set_drop_probability(percent as f64 / 100.0);
            }
            3 => {
                trace.note("fault: 10% of replies lost");
                network.set_reply_drop_probability(0.1);
            }
            4 => {
                let max = 20 + rng.below(80);
                trace.note(format_args!("fault: delays 1-{max} ms"));
                network.set_delay(Duration::from_millis(1), Duration::from_millis(max));
            }
            5 => nemesis.stop_or_restart(&mut rng).await,
            _ => nemesis.heal_links(&mut rng),
        }
        nemesis.hold(&mut rng).await;
    }

    // Liveness phase: no faults.
    nemesis.heal_all(&mut rng).await;
    for (index, node) in cluster.all().into_iter().enumerate() {
        // A fresh user each, so that the writers' users keep one writer each.
        let user = 1_000 + index as u32;
        let cseq = write_until_ok(&node, POOL_GROUPS, user, Duration::from_secs(10), seed).await;
        trace.note(format_args!(
            "ack u{user} cseq {cseq} via {} (liveness)",
            node.node_id()
        ));
        oracle.record(user, cseq, true);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    writing.store(true, Ordering::Relaxed);
    let mut acknowledged = 0;
    for writer in writers {
        let written = writer.await.expect("writer");
        assert_eq!(written.refused, 0, "seed {seed}: a write was applied twice");
        acknowledged += written.acknowledged;
    }
    assert!(acknowledged > 0, "seed {seed}: no write acknowledged");
    check_acknowledged(&cluster, &oracle, seed).await;
    let members = check_replicas_agree(&cluster, seed, Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    let claims = monitor.await.expect("monitor");
    check_election_safety(&claims, seed);
    trace.note(format_args!("members {members:?}"));
    trace.note(format_args!("network {:?}", network.stats()));
    for node in cluster.all() {
        node.shutdown().await;
    }
}

/// One seed of two paired pools of three nodes (a with the CMS, b), each the other's backup.
async fn pair_run(seed: u64, trace: Trace) {
    let mut rng = Rng::new(seed);
    let pair = Pair::start(seed, sim_raft_options()).await;
    let network = pair.network.clone();
    base_delay(&network, &mut rng);
    let stop = Arc::new(AtomicBool::new(false));
    let mut keys = Vec::new();
    for pool in [A, B] {
        for group in 0..pair::GROUPS {
            let source = GroupKey::routing(pool, group);
            keys.extend([source, source.copy().expect("a routing group has a copy")]);
        }
    }
    let cms = GroupKey::cms(A);
    keys.extend([cms, cms.copy().expect("the CMS has a copy")]);
    let monitor = tokio::spawn(watch_leaders(
        vec![pair.a.nodes.clone(), pair.b.nodes.clone()],
        keys,
        trace.clone(),
        stop.clone(),
    ));
    let writing = Arc::new(AtomicBool::new(false));
    let oracles: BTreeMap<PoolId, Arc<Oracle>> = [(A, Arc::default()), (B, Arc::default())]
        .into_iter()
        .collect();
    let mut writers = Vec::new();
    for pool in [A, B] {
        for index in 0..PAIR_WRITERS {
            let first = u32::from(pool) * 100_000 + index * USERS_PER_WRITER;
            let writer = Writer {
                nodes: pair.pool(pool).nodes.clone(),
                pool,
                groups: pair::GROUPS,
                users: first..first + USERS_PER_WRITER,
                seed: seed * 100 + u64::from(pool) * 10 + u64::from(index),
                oracle: oracles[&pool].clone(),
                stop: writing.clone(),
                trace: trace.clone(),
            };
            writers.push((pool, tokio::spawn(writer.run())));
        }
    }

    // Safety phase.
    let mut nemesis = Nemesis::new(&network, vec![&pair.a, &pair.b], &trace);
    for _ in 0..FAULT_STEPS {
        match rng.below(6) {
            0 | 1 => {
                trace.note("fault: the sites cut apart");
                network.partition_pools(A, B);
            }
            2 => nemesis.isolate(&mut rng),
            3 => {
                trace.note("fault: 5% of messages lost");
                network.set_drop_probability(0.05);
            }
            4 => nemesis.stop_or_restart(&mut rng).await,
            _ => nemesis.heal_links(&mut rng),
        }
        nemesis.hold(&mut rng).await;
    }

    // Liveness phase.
    nemesis.heal_all(&mut rng).await;
    let healed_ms = common::clock();
    tokio::time::sleep(Duration::from_secs(3)).await;
    writing.store(true, Ordering::Relaxed);
    let mut last_acknowledged: BTreeMap<PoolId, u64> = BTreeMap::new();
    for (pool, writer) in writers {
        let written = writer.await.expect("writer");
        assert_eq!(written.refused, 0, "seed {seed}: a write was applied twice");
        let last = last_acknowledged.entry(pool).or_default();
        *last = (*last).max(written.last_acknowledged_ms);
    }
    for (pool, last) in &last_acknowledged {
        assert!(
            *last > healed_ms,
            "seed {seed}: pool {pool} acknowledged no write in the 3 s after the heal"
        );
    }
    for pool in [A, B] {
        check_acknowledged(pair.pool(pool), &oracles[&pool], seed).await;
        let members = check_replicas_agree(pair.pool(pool), seed, Duration::from_secs(15)).await;
        trace.note(format_args!("pool {pool} members {members:?}"));
    }
    // Every copy holds exactly its source's state at the source's index.
    pair::wait_converged(&pair, Duration::from_secs(30)).await;
    stop.store(true, Ordering::Relaxed);
    let claims = monitor.await.expect("monitor");
    check_election_safety(&claims, seed);
    trace.note(format_args!("network {:?}", network.stats()));
    pair.stop().await;
}

/// The pool tests' Raft timings with a heartbeat of 100 ms, not 50: half the messages, the
/// same elections (timeouts 300–600 ms, three heartbeats and more).
fn sim_raft_options() -> roster_raft::config::GroupConfigOptions {
    roster_raft::config::GroupConfigOptions {
        heartbeat_interval_ms: 100,
        ..raft_options()
    }
}

/// The faults every run draws from, on the nodes of one pool or two, and their undoing.
struct Nemesis<'a> {
    network: &'a roster_net::SimNetwork,
    pools: Vec<&'a Cluster>,
    trace: &'a Trace,
    /// Every node of the pools (by index into `pools`), as started.
    nodes: Vec<(usize, NodeId)>,
    /// The stopped node, while one is.
    stopped: Option<(usize, NodeId)>,
}

impl<'a> Nemesis<'a> {
    fn new(network: &'a roster_net::SimNetwork, pools: Vec<&'a Cluster>, trace: &'a Trace) -> Self {
        let nodes = pools
            .iter()
            .enumerate()
            .flat_map(|(index, cluster)| cluster.ids().into_iter().map(move |id| (index, id)))
            .collect();
        Nemesis {
            network,
            pools,
            trace,
            nodes,
            stopped: None,
        }
    }

    /// A node of any pool, running or not.
    fn any_node(&self, rng: &mut Rng) -> (usize, NodeId) {
        self.nodes[rng.below(self.nodes.len() as u64) as usize]
    }

    fn isolate(&self, rng: &mut Rng) {
        let (_, id) = self.any_node(rng);
        self.trace.note(format_args!("fault: node {id} isolated"));
        self.network.isolate(id);
    }

    /// Stops a node when none is stopped, else restarts the stopped one from its disk.
    async fn stop_or_restart(&mut self, rng: &mut Rng) {
        match self.stopped.take() {
            None => {
                let (index, id) = self.any_node(rng);
                self.trace.note(format_args!("fault: node {id} stopped"));
                self.pools[index].stop_node(id).await;
                self.stopped = Some((index, id));
            }
            Some((index, id)) => {
                self.trace.note(format_args!("heal: node {id} restarted"));
                self.pools[index].start_node(id).await;
            }
        }
    }

    /// Restores every link, loses nothing, and keeps a base latency.
    fn heal_links(&self, rng: &mut Rng) {
        self.trace.note("heal: links");
        self.network.heal();
        self.network.set_drop_probability(0.0);
        base_delay(self.network, rng);
    }

    /// Every link back and the stopped node restarted.
    async fn heal_all(&mut self, rng: &mut Rng) {
        self.heal_links(rng);
        if let Some((index, id)) = self.stopped.take() {
            self.trace.note(format_args!("heal: node {id} restarted"));
            self.pools[index].start_node(id).await;
        }
    }

    /// Holds the faults as they are for 200–800 ms.
    async fn hold(&self, rng: &mut Rng) {
        tokio::time::sleep(Duration::from_millis(200 + rng.below(600))).await;
    }
}

/// `ids` in a seeded order.
fn shuffled(ids: &[NodeId], rng: &mut Rng) -> Vec<NodeId> {
    let mut ids = ids.to_vec();
    for index in (1..ids.len()).rev() {
        let other = rng.below(index as u64 + 1) as usize;
        ids.swap(index, other);
    }
    ids
}
