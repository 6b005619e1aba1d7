//! Shared harness of the pool tests: an in-process pool over `SimNetwork` whose nodes can stop
//! and restart from their disk, writers that go on through random nodes, an oracle that knows
//! which writes were acknowledged, and the checks run after healing (acknowledged writes are
//! present; replicas that applied the same log agree). `ROSTER_TRACE_WRITES=1` prints each
//! write's node, latency and outcome.
#![allow(dead_code)]

pub mod pair;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use roster_net::{Peer, SimEndpoint, SimNetwork};
use roster_pool::placement::{self, Assignment};
use roster_pool::{Partner, PoolError, PoolHandler, PoolNode, PoolOptions};
use roster_raft::config::GroupConfigOptions;
use roster_raft::{group_of, GroupKey, ReplicatedState};
use roster_registrar::{
    BindingKey, Command, ContactChange, ContactUpdate, Policy, RegisterCommand,
};
use roster_store::{DiskFault, NodeStore, StoreIo, StoreOptions};
use roster_topology::{Deployment, NodeId, PoolId};

/// The pool id of every test pool.
pub const POOL: roster_topology::PoolId = 1;

/// The routing groups `0..groups` of the test pool.
pub fn routing_keys(groups: u32) -> Vec<GroupKey> {
    (0..groups)
        .map(|group| GroupKey::routing(POOL, group))
        .collect()
}

/// A pool node over the simulated network.
pub type Node = Arc<PoolNode<SimEndpoint>>;

/// Milliseconds since the Unix epoch (bindings only need to live for the test's hour); in a
/// deterministic simulation ([`simulate`]), a fixed epoch plus the paused Tokio clock's time
/// since the simulation began.
pub fn clock() -> u64 {
    if let Some(since) = SIMULATED_SINCE.with(std::cell::Cell::get) {
        let elapsed = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
        return SIMULATED_EPOCH_MS.saturating_add(elapsed);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(1_795_378_472_000)
}

/// The wall clock a simulation starts at: 2026-11-19 13:34:32 UTC, any fixed time will do.
pub const SIMULATED_EPOCH_MS: u64 = 1_795_378_472_000;

thread_local! {
    /// When this thread's deterministic simulation began, while one runs.
    static SIMULATED_SINCE: std::cell::Cell<Option<tokio::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// Marks this thread as running a deterministic simulation until the guard is dropped (call it
/// inside the simulation's paused, one-threaded runtime): [`clock`] reads the paused Tokio
/// clock from a fixed epoch, and nodes started meanwhile open their stores with
/// `StoreIo::Inline` in a temporary directory under `/dev/shm` when there is one.
pub fn simulate() -> SimulationGuard {
    SIMULATED_SINCE.with(|since| since.set(Some(tokio::time::Instant::now())));
    SimulationGuard(std::marker::PhantomData)
}

/// Ends this thread's simulation when dropped; see [`simulate`].
pub struct SimulationGuard(std::marker::PhantomData<*const ()>);

impl Drop for SimulationGuard {
    fn drop(&mut self) {
        SIMULATED_SINCE.with(|since| since.set(None));
    }
}

/// Whether this thread runs a deterministic simulation ([`simulate`]).
pub fn simulating() -> bool {
    SIMULATED_SINCE.with(std::cell::Cell::get).is_some()
}

/// Fast timings for in-process pools: heartbeat 50 ms, elections 300–600 ms.
pub fn raft_options() -> GroupConfigOptions {
    GroupConfigOptions {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        snapshot_logs_since_last: 50,
        logs_kept_after_snapshot: 10,
        install_snapshot_timeout_ms: 2_000,
        ..GroupConfigOptions::default()
    }
}

/// A small deterministic generator (splitmix64), one per seed.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// An in-process pool.
pub struct Cluster {
    /// The simulated network.
    pub network: SimNetwork,
    /// Holds every node's database.
    pub dir: tempfile::TempDir,
    /// Routing groups.
    pub groups: u32,
    /// The assignment the pool was created with.
    pub assignment: Assignment,
    /// Raft options of every node.
    pub raft: GroupConfigOptions,
    /// Running nodes; writers clone handles out (a `std` lock, never held across an await).
    pub nodes: Arc<RwLock<BTreeMap<NodeId, Node>>>,
    /// This pool's id.
    pub pool: PoolId,
    /// The paired pool, if any.
    pub partner: Option<Partner>,
    /// Where the CMS lives, if this pool takes part in one.
    pub cms: Option<PoolId>,
    /// The deployment published in the CMS at bootstrap.
    pub deployment: Option<Deployment>,
    /// Every node's resiliency-mode detection interval.
    pub detection_interval: Duration,
    /// The witness's id, if the pool has one.
    pub witness: Option<NodeId>,
    /// Shippers of the backup stream, one per running node (aborted when the node stops).
    pub shippers: Mutex<BTreeMap<NodeId, tokio::task::JoinHandle<()>>>,
    /// Each node's disk, which a test can make look full ([`Cluster::disk`]).
    pub disks: Mutex<BTreeMap<NodeId, DiskFault>>,
}

/// What a test pool is: its id, nodes, routing groups, partner and CMS.
#[derive(Clone, Debug)]
pub struct PoolShape {
    /// The pool's id.
    pub pool: PoolId,
    /// Its nodes.
    pub ids: Vec<NodeId>,
    /// Its routing groups.
    pub groups: u32,
    /// The paired pool.
    pub partner: Option<Partner>,
    /// Where the CMS lives.
    pub cms: Option<PoolId>,
    /// The deployment its CMS publishes (on the CMS's pool).
    pub deployment: Option<Deployment>,
    /// The resiliency-mode detection interval of its nodes.
    pub detection_interval: Duration,
    /// The witness's id, if the pool has one.
    pub witness: Option<NodeId>,
}

impl Cluster {
    /// Starts nodes `1..=count` of a lone pool and initializes the groups.
    pub async fn start(count: u64, seed: u64, groups: u32, raft: GroupConfigOptions) -> Cluster {
        let shape = PoolShape {
            pool: POOL,
            ids: (1..=count).collect(),
            groups,
            partner: None,
            cms: None,
            deployment: None,
            detection_interval: roster_pool::DETECTION_INTERVAL_DEFAULT,
            witness: None,
        };
        let cluster = Cluster::create(SimNetwork::new(seed), shape, raft).await;
        cluster.bootstrap().await;
        cluster
    }

    /// Starts the nodes of `shape` on `network` (shared with a partner pool), without
    /// initializing anything.
    pub async fn create(
        network: SimNetwork,
        shape: PoolShape,
        raft: GroupConfigOptions,
    ) -> Cluster {
        let mut cluster = Cluster {
            network,
            dir: temp_dir(),
            groups: shape.groups,
            assignment: Assignment::new(),
            raft,
            nodes: Arc::new(RwLock::new(BTreeMap::new())),
            pool: shape.pool,
            partner: shape.partner,
            cms: shape.cms,
            deployment: shape.deployment,
            detection_interval: shape.detection_interval,
            witness: shape.witness,
            shippers: Mutex::new(BTreeMap::new()),
            disks: Mutex::new(BTreeMap::new()),
        };
        let keys = cluster.options(shape.ids[0]).keys();
        cluster.assignment = placement::initial(&shape.ids, &keys);
        for id in shape.ids {
            cluster.start_node(id).await;
        }
        cluster
    }

    /// Initializes the pool's groups (and publishes the deployment in its CMS).
    pub async fn bootstrap(&self) {
        let addresses = self.addresses();
        for node in self.all() {
            node.bootstrap(&self.assignment, &addresses, self.deployment.as_ref())
                .await
                .expect("bootstrap");
        }
    }

    /// Every node id the pool has had, with a made-up address.
    pub fn addresses(&self) -> BTreeMap<NodeId, String> {
        let ids = self
            .nodes
            .read()
            .expect("nodes")
            .keys()
            .copied()
            .collect::<Vec<_>>();
        ids.into_iter()
            .map(|id| (id, format!("node-{id}")))
            .collect()
    }

    /// Options of node `id`.
    pub fn options(&self, id: NodeId) -> PoolOptions {
        PoolOptions {
            node_id: id,
            pool: self.pool,
            groups: self.groups,
            partner: self.partner.clone(),
            cms: self.cms,
            raft: self.raft.clone(),
            policy: Policy::default(),
            request_timeout: Duration::from_secs(2),
            leader_wait: Duration::from_secs(2),
            detection_interval: self.detection_interval,
            witness: self.witness,
        }
    }

    /// Starts (or restarts from its disk) node `id` with the creation assignment.
    pub async fn start_node(&self, id: NodeId) {
        let handler = Arc::new(PoolHandler::default());
        let peer = Peer {
            pool: self.pool,
            node: id,
        };
        let endpoint = match &self.partner {
            Some(partner) => {
                self.network
                    .endpoint_with_partner(peer, Some(partner.pool), handler.clone())
            }
            None => self.network.endpoint(peer, handler.clone()),
        };
        let options = StoreOptions {
            path: self.dir.path().join(format!("node-{id}")),
            io: if simulating() {
                StoreIo::Inline
            } else {
                StoreIo::Threads
            },
            ..StoreOptions::default()
        };
        let disk = self.disk(id);
        // The previous incarnation's database may still be closing (its flusher joins on
        // drop): retry for a bounded time.
        let mut store = None;
        for _ in 0..100 {
            match NodeStore::open_with_fault(&options, disk.clone()) {
                Ok(opened) => {
                    store = Some(opened);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let store = store.expect("store reopens within 5 s");
        let node = PoolNode::start(self.options(id), store, endpoint, &self.assignment, clock)
            .await
            .expect("start node");
        handler.attach(&node);
        if self.partner.is_some() {
            let (ship, watch) = (node.clone(), node.clone());
            let shipper = tokio::spawn(async move {
                tokio::join!(ship.ship_forever(), watch.watch_partner_forever());
            });
            if let Some(old) = self.shippers.lock().expect("shippers").insert(id, shipper) {
                old.abort();
            }
        }
        self.nodes.write().expect("nodes").insert(id, node);
    }

    /// Stops node `id`: off the network, Raft groups shut down, database closed once the last
    /// request in flight lets go of it (bounded wait).
    pub async fn stop_node(&self, id: NodeId) {
        let shipper = self.shippers.lock().expect("shippers").remove(&id);
        if let Some(shipper) = shipper {
            shipper.abort();
            let _ = shipper.await;
        }
        let node = self.nodes.write().expect("nodes").remove(&id);
        if let Some(node) = node {
            self.network.remove(id);
            node.shutdown().await;
            for _ in 0..200 {
                if Arc::strong_count(&node) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }

    /// Node `id`'s disk: set it full and its flushes fail (its store is poisoned).
    pub fn disk(&self, id: NodeId) -> DiskFault {
        self.disks
            .lock()
            .expect("disks")
            .entry(id)
            .or_default()
            .clone()
    }

    /// Node `id`.
    pub fn node(&self, id: NodeId) -> Node {
        self.nodes.read().expect("nodes")[&id].clone()
    }

    /// Every running node.
    pub fn all(&self) -> Vec<Node> {
        self.nodes
            .read()
            .expect("nodes")
            .values()
            .cloned()
            .collect()
    }

    /// Running node ids.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.read().expect("nodes").keys().copied().collect()
    }
}

/// A directory for the nodes' databases: under `/dev/shm` in a simulation (a memory file
/// system: its syncs cost nothing, and a simulation syncs at every durable point), else the
/// system's temporary directory.
fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if simulating() && shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

/// The AOR and REGISTER of `user` at `cseq`.
pub fn register(user: u32, cseq: u32) -> (String, Command) {
    let aor = format!("sip:u{user}@example.com");
    let contact = format!("sip:u{user}@192.0.2.1");
    let command = Command::Register(RegisterCommand {
        aor: aor.clone(),
        call_id: format!("call-{user}"),
        cseq,
        change: ContactChange::Update(vec![ContactUpdate {
            key: BindingKey::Uri(contact.clone()),
            contact: format!("<{contact}>"),
            q_milli: None,
            expires_s: 3600,
            instance: None,
            reg_id: None,
        }]),
        path: vec![],
        received: None,
        user_agent: None,
        bindings_max: None,
    });
    (aor, command)
}

/// What the writers know: per user, the highest CSeq acknowledged and the highest tried.
#[derive(Default)]
pub struct Oracle {
    users: Mutex<BTreeMap<u32, (Option<u32>, u32)>>,
}

/// Outcome counts of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcomes {
    /// Writes acknowledged.
    pub acknowledged: u64,
    /// Writes that timed out or were refused as unavailable (unknown outcome).
    pub unknown: u64,
    /// Writes refused by the registrar rules. Every write has a CSeq above the user's last,
    /// so a refusal is a wrong answer: the same command applied twice.
    pub refused: u64,
}

impl Oracle {
    /// Notes the outcome of `user`'s write at `cseq`.
    pub fn record(&self, user: u32, cseq: u32, acknowledged: bool) {
        let mut users = self.users.lock().expect("oracle");
        let entry = users.entry(user).or_insert((None, 0));
        entry.1 = entry.1.max(cseq);
        if acknowledged {
            entry.0 = Some(entry.0.map_or(cseq, |c| c.max(cseq)));
        }
    }

    /// Users with an acknowledged write, with its CSeq.
    pub fn acknowledged(&self) -> BTreeMap<u32, u32> {
        let users = self.users.lock().expect("oracle");
        users
            .iter()
            .filter_map(|(user, (acked, _))| acked.map(|cseq| (*user, cseq)))
            .collect()
    }
}

/// Writes REGISTERs of users `users` (CSeq rising) through random running nodes until `stop`;
/// every outcome goes to `oracle`. A write that is not `Ok` is unknown, never retried with the
/// same CSeq.
pub async fn writer(
    nodes: Arc<RwLock<BTreeMap<NodeId, Node>>>,
    groups: u32,
    users: std::ops::Range<u32>,
    seed: u64,
    oracle: Arc<Oracle>,
    stop: Arc<AtomicBool>,
) -> Outcomes {
    let mut rng = Rng::new(seed);
    let mut outcomes = Outcomes::default();
    let mut cseqs: BTreeMap<u32, u32> = BTreeMap::new();
    // Bounded: a writer stops after this many writes even if nobody says stop.
    for _ in 0..100_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let node = {
            let nodes = nodes.read().expect("nodes");
            let index = rng.below(nodes.len() as u64) as usize;
            nodes.values().nth(index).cloned()
        };
        let Some(node) = node else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let user = users.start + rng.below(u64::from(users.end - users.start)) as u32;
        let cseq = cseqs.entry(user).or_insert(0);
        *cseq += 1;
        let (aor, command) = register(user, *cseq);
        let began = std::time::Instant::now();
        let result = node
            .write(GroupKey::routing(POOL, group_of(&aor, groups)), command)
            .await;
        if std::env::var("ROSTER_TRACE_WRITES").is_ok() {
            eprintln!(
                "write u{user} via {} took {:?}: {:?}",
                node.node_id(),
                began.elapsed(),
                result.as_ref().map(|_| ()).map_err(|e| e.to_string())
            );
        }
        if let Ok(roster_raft::GroupResponse::Refused(refusal)) = &result {
            eprintln!("seed {seed}: u{user} CSeq {cseq} refused: {refusal:?}");
            outcomes.refused += 1;
        }
        let acknowledged = result.is_ok();
        oracle.record(user, *cseq, acknowledged);
        if acknowledged {
            outcomes.acknowledged += 1;
        } else {
            outcomes.unknown += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    outcomes
}

/// Writes `user`'s REGISTER through `node` with rising CSeqs until one is acknowledged, within
/// `timeout`; returns the acknowledged CSeq.
pub async fn write_until_ok(
    node: &PoolNode<SimEndpoint>,
    groups: u32,
    user: u32,
    timeout: Duration,
    seed: u64,
) -> u32 {
    let deadline = tokio::time::Instant::now() + timeout;
    for cseq in 1..=u32::MAX {
        let (aor, command) = register(user, cseq);
        match node
            .write(GroupKey::routing(POOL, group_of(&aor, groups)), command)
            .await
        {
            Ok(_) => return cseq,
            Err(error) => assert!(
                tokio::time::Instant::now() < deadline,
                "seed {seed}: writes through node {} not back within {timeout:?}: {error}",
                node.node_id()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!("u32::MAX writes")
}

/// Reads `aor` linearizably through `node`, retrying while the group is unavailable, within
/// `timeout`.
pub async fn read_until_ok(
    node: &PoolNode<SimEndpoint>,
    groups: u32,
    aor: &str,
    timeout: Duration,
) -> Vec<roster_registrar::Binding> {
    let group = GroupKey::routing(POOL, group_of(aor, groups));
    read_group_until_ok(node, group, aor, timeout).await
}

/// Reads `aor` of routing group `group` linearizably through `node`, retrying while the group
/// is unavailable, within `timeout`.
pub async fn read_group_until_ok(
    node: &PoolNode<SimEndpoint>,
    group: GroupKey,
    aor: &str,
    timeout: Duration,
) -> Vec<roster_registrar::Binding> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match node.read(group, aor, clock()).await {
            Ok(bindings) => return bindings,
            Err(PoolError::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("read of {aor} failed: {error}"),
        }
    }
}

/// Every acknowledged write is there: the AOR's binding has at least the acknowledged CSeq.
pub async fn check_acknowledged(cluster: &Cluster, oracle: &Oracle, seed: u64) {
    let mut rng = Rng::new(seed.wrapping_mul(31));
    let ids = cluster.ids();
    for (user, cseq) in oracle.acknowledged() {
        let node = cluster.node(ids[rng.below(ids.len() as u64) as usize]);
        let aor = format!("sip:u{user}@example.com");
        let group = GroupKey::routing(cluster.pool, group_of(&aor, cluster.groups));
        let bindings = read_group_until_ok(&node, group, &aor, Duration::from_secs(10)).await;
        assert_eq!(bindings.len(), 1, "seed {seed}: {aor} lost its binding");
        assert!(
            bindings[0].cseq >= cseq,
            "seed {seed}: {aor} has CSeq {} below acknowledged {cseq}",
            bindings[0].cseq
        );
    }
}

/// The state of a replica in canonical form: JSON with AORs sorted (serde_json's map is
/// ordered) and each AOR's bindings sorted.
pub fn canonical(state: &roster_raft::GroupState) -> serde_json::Value {
    let mut value = serde_json::to_value(state).expect("state serializes");
    if let Some(aors) = value
        .get_mut("registry")
        .and_then(|r| r.get_mut("aors"))
        .and_then(|a| a.as_object_mut())
    {
        for bindings in aors.values_mut() {
            if let Some(list) = bindings.as_array_mut() {
                list.sort_by_key(|b| b.to_string());
            }
        }
    }
    value
}

/// Waits until every member of every group has applied its leader's last log entry, then
/// checks that their states are identical. Returns the members of each group.
pub async fn check_replicas_agree(
    cluster: &Cluster,
    seed: u64,
    timeout: Duration,
) -> BTreeMap<GroupKey, Vec<NodeId>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut all_members = BTreeMap::new();
    for group in (0..cluster.groups).map(|group| GroupKey::routing(cluster.pool, group)) {
        loop {
            match converged(cluster, group) {
                Ok(members) => {
                    all_members.insert(group, members);
                    break;
                }
                Err(reason) if tokio::time::Instant::now() < deadline => {
                    let _ = reason;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(reason) => panic!("seed {seed}: group {group} did not converge: {reason}"),
            }
        }
    }
    all_members
}

/// `Ok(members)` when every member of `group` holds a replica whose state applied the
/// leader's last entry and all those states are equal.
fn converged(cluster: &Cluster, group: GroupKey) -> Result<Vec<NodeId>, String> {
    let nodes = cluster.all();
    let leader = nodes
        .iter()
        .filter_map(|n| n.raft(group).map(|raft| (n.node_id(), raft)))
        .find(|(id, raft)| raft.metrics().borrow_watched().current_leader == Some(*id))
        .ok_or("no leader")?;
    let metrics = leader.1.metrics().borrow_watched().clone();
    let last = metrics.last_log_index;
    if metrics.last_applied.map(|id| id.index) != last {
        return Err(format!(
            "leader applied {:?} of {last:?}",
            metrics.last_applied
        ));
    }
    let membership = metrics.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return Err("joint configuration".into());
    }
    let mut members: Vec<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
    members.sort_unstable();
    let mut reference: Option<(NodeId, serde_json::Value)> = None;
    for id in &members {
        let node = nodes
            .iter()
            .find(|n| n.node_id() == *id)
            .ok_or(format!("member {id} is not running"))?;
        let state = node
            .state(group)
            .ok_or(format!("member {id} has no replica"))?
            .snapshot()
            .map_err(|e| e.to_string())?;
        if state.last_applied().map(|id| id.index) != last {
            return Err(format!("member {id} applied {:?}", state.last_applied()));
        }
        let value = canonical(&state);
        match &reference {
            None => reference = Some((*id, value)),
            Some((first, expected)) => assert_eq!(
                &value, expected,
                "group {group}: replicas {first} and {id} applied the same log and differ"
            ),
        }
    }
    Ok(members)
}
