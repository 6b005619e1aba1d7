//! Two paired pools in one process over the simulated network, for the pairing and failover
//! tests: pool a (nodes 1–3, the CMS) and pool b (nodes 4–6), each the other's backup.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use roster_net::{Handler, Network, Peer, SimNetwork};
use roster_pool::{Partner, PoolError};
use roster_raft::config::GroupConfigOptions;
use roster_raft::{group_of, GroupKey, GroupRefusal, GroupResponse};
use roster_registrar::Binding;
use roster_topology::{Deployment, NodeId, PoolId};

use super::{register, Cluster, PoolShape};

pub const A: PoolId = 1;
pub const B: PoolId = 2;
pub const GROUPS: u32 = 4;
pub const A_NODES: [NodeId; 3] = [1, 2, 3];
pub const B_NODES: [NodeId; 3] = [4, 5, 6];
/// The witness of [`Pair::start_with_witness`], in a third site.
pub const WITNESS: NodeId = 100;

/// The two pools' deployment, as `roster init` would publish it.
pub fn deployment() -> Deployment {
    let mut text = String::from(
        "[deployment]\nname = \"pair\"\ncms = \"a\"\n[[site]]\nname = \"dc1\"\n[[site]]\nname = \"dc2\"\n\
         [[pool]]\nid = 1\nname = \"a\"\nsite = \"dc1\"\ngroups = 4\n\
         [[pool]]\nid = 2\nname = \"b\"\nsite = \"dc2\"\ngroups = 4\n\
         [[pair]]\npools = [\"a\", \"b\"]\n",
    );
    for id in A_NODES.iter().chain(&B_NODES) {
        let pool = if A_NODES.contains(id) { "a" } else { "b" };
        text += &format!(
            "[[node]]\nid = {id}\npool = \"{pool}\"\ncluster = \"127.0.0.1:{}\"\n",
            7000 + id
        );
    }
    Deployment::parse(&text).expect("valid deployment")
}

pub struct Pair {
    pub network: SimNetwork,
    pub a: Cluster,
    pub b: Cluster,
    /// The witness, when the pair has one ([`WITNESS`] on the network).
    pub witness: Option<Arc<roster_pool::witness::Witness>>,
}

impl Pair {
    pub async fn start(seed: u64, raft: GroupConfigOptions) -> Pair {
        Pair::start_with_detection(seed, raft, roster_pool::DETECTION_INTERVAL_DEFAULT).await
    }

    /// [`Pair::start`] with every node's resiliency-mode detection interval `detection`.
    pub async fn start_with_detection(
        seed: u64,
        raft: GroupConfigOptions,
        detection: Duration,
    ) -> Pair {
        Pair::start_with(seed, raft, detection, false).await
    }

    /// [`Pair::start_with_detection`] with a witness ([`WITNESS`]) watching both pools.
    pub async fn start_with_witness(
        seed: u64,
        raft: GroupConfigOptions,
        detection: Duration,
    ) -> Pair {
        Pair::start_with(seed, raft, detection, true).await
    }

    async fn start_with(
        seed: u64,
        raft: GroupConfigOptions,
        detection: Duration,
        with_witness: bool,
    ) -> Pair {
        let network = SimNetwork::new(seed);
        let witness = with_witness.then(|| {
            let witness = Arc::new(roster_pool::witness::Witness::new([A, B]));
            let identity = Peer {
                pool: roster_topology::WITNESS_POOL,
                node: WITNESS,
            };
            network.witness_endpoint(identity, [A, B], witness.clone());
            witness
        });
        let shape =
            |pool: PoolId, ids: [NodeId; 3], partner: PoolId, partner_ids: [NodeId; 3]| PoolShape {
                pool,
                ids: ids.to_vec(),
                groups: GROUPS,
                partner: Some(Partner {
                    pool: partner,
                    groups: GROUPS,
                    nodes: partner_ids.to_vec(),
                }),
                cms: Some(A),
                deployment: (pool == A).then(deployment),
                detection_interval: detection,
                witness: with_witness.then_some(WITNESS),
            };
        let a = Cluster::create(network.clone(), shape(A, A_NODES, B, B_NODES), raft.clone()).await;
        let b = Cluster::create(network.clone(), shape(B, B_NODES, A, A_NODES), raft).await;
        let (first, second) = tokio::join!(a.bootstrap(), b.bootstrap());
        let _ = (first, second);
        Pair {
            network,
            a,
            b,
            witness,
        }
    }

    pub fn pool(&self, pool: PoolId) -> &Cluster {
        if pool == A {
            &self.a
        } else {
            &self.b
        }
    }

    pub async fn stop(&self) {
        for cluster in [&self.a, &self.b] {
            for id in cluster.ids() {
                cluster.stop_node(id).await;
            }
        }
    }
}

/// Registers users `range` of pool `home` through its nodes in turn, each until acknowledged.
pub async fn write_users(pair: &Pair, home: PoolId, range: std::ops::Range<u32>, cseq: u32) {
    let cluster = pair.pool(home);
    for user in range {
        let user = user + u32::from(home) * 100_000;
        let (aor, command) = register(user, cseq);
        let group = GroupKey::routing(home, group_of(&aor, GROUPS));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ids = cluster.ids();
            let node = cluster.node(ids[user as usize % ids.len()]);
            match node.write(group, command.clone()).await {
                Ok(GroupResponse::Registered { .. }) => break,
                // An earlier attempt whose answer was lost (unavailable: outcome unknown) did
                // apply: the binding holds this CSeq already.
                Ok(GroupResponse::Refused(GroupRefusal::OutOfOrder { stored, .. }))
                    if stored == cseq =>
                {
                    break
                }
                Ok(other) => panic!("user {user}: {other:?}"),
                Err(PoolError::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("user {user}: {error}"),
            }
        }
    }
}

/// Every stored binding of a replica's registry, sorted.
pub type Bindings = Vec<(String, Vec<Binding>)>;

/// The applied index and bindings of `group` on the replica of `cluster` that leads it.
pub fn leader_view(cluster: &Cluster, group: GroupKey) -> Option<(u64, Bindings)> {
    for node in cluster.all() {
        let Some(raft) = node.raft(group) else {
            continue;
        };
        if raft.metrics().borrow_watched().current_leader != Some(node.node_id()) {
            continue;
        }
        let state = node.state(group)?;
        return state
            .read(|state| {
                let applied =
                    roster_raft::ReplicatedState::last_applied(state).map_or(0, |id| id.index);
                (applied, sorted(state))
            })
            .ok();
    }
    None
}

pub fn sorted(state: &roster_raft::GroupState) -> Bindings {
    state
        .registry()
        .map(roster_registrar::Registry::sorted_entries)
        .unwrap_or_default()
}

/// `Ok` when every replica of every copy in `copies` stands at its source leader's applied
/// index and holds exactly the source's bindings (and the CMS's copy its deployment and users).
pub fn converged(pair: &Pair) -> Result<(), String> {
    for (source_pool, copy_pool) in [(A, B), (B, A)] {
        let sources = pair.pool(source_pool);
        let copies = pair.pool(copy_pool);
        for group in 0..GROUPS {
            let source = GroupKey::routing(source_pool, group);
            let copy = source.copy().expect("a routing group has a copy");
            let (applied, bindings) =
                leader_view(sources, source).ok_or(format!("{source}: no leader"))?;
            let mut replicas = 0;
            for node in copies.all() {
                let Some(state) = node.state(copy) else {
                    continue;
                };
                replicas += 1;
                let (position, copy_bindings) = state
                    .read(|state| (state.stream().map(|stream| stream.index), sorted(state)))
                    .map_err(|error| error.to_string())?;
                if position != Some(applied) {
                    return Err(format!(
                        "{copy} on node {}: at {position:?}, source at {applied}",
                        node.node_id()
                    ));
                }
                if copy_bindings != bindings {
                    return Err(format!(
                        "{copy} on node {}: bindings differ",
                        node.node_id()
                    ));
                }
            }
            if replicas < 3 {
                return Err(format!("{copy}: {replicas} replicas"));
            }
        }
    }
    let cms = GroupKey::cms(A);
    let cms_copy = cms.copy().expect("the CMS has a copy");
    let source = pair
        .a
        .all()
        .into_iter()
        .find_map(|node| node.state(cms))
        .and_then(|state| {
            state
                .read(|state| state.cms_state().cloned())
                .ok()
                .flatten()
        })
        .ok_or("no CMS replica in pool a")?;
    for node in pair.b.all() {
        let Some(state) = node.state(cms_copy) else {
            return Err(format!("node {} holds no copy of the CMS", node.node_id()));
        };
        let copy = state
            .read(|state| state.cms_state().cloned())
            .map_err(|error| error.to_string())?;
        if copy.as_ref() != Some(&source) {
            return Err(format!("the CMS copy on node {} differs", node.node_id()));
        }
    }
    if source.deployment().is_none() {
        return Err("the CMS has no deployment yet".into());
    }
    Ok(())
}

pub async fn wait_converged(pair: &Pair, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match converged(pair) {
            Ok(()) => return,
            Err(reason) if tokio::time::Instant::now() < deadline => {
                let _ = reason;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(reason) => panic!("copies did not converge within {within:?}: {reason}"),
        }
    }
}

/// Sends `request` as partner node `from` to node `to` and decodes the answer.
pub async fn ask_as(
    network: &SimNetwork,
    from: Peer,
    to: NodeId,
    body: Vec<u8>,
) -> Result<Vec<u8>, roster_net::NetError> {
    struct Nobody;
    impl Handler for Nobody {
        async fn handle(&self, _from: Peer, _body: Vec<u8>) -> Vec<u8> {
            Vec::new()
        }
    }
    let endpoint = network.endpoint_with_partner(from, Some(A), Arc::new(Nobody));
    endpoint.request(to, body, Duration::from_secs(5)).await
}
