//! Two paired pools in one process over the simulated network: every routing group of each
//! pool (and the CMS) streams to its backup copy in the other. The copies equal their sources
//! at the same index after steady writes, after an inter-site cut (caught up by the stream, and
//! by a restore when the source purged its log), across leader changes at both ends and the
//! restart of a node of either pool; a pool that is not the partner is refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{raft_options, register, Cluster, PoolShape};
use openraft::async_runtime::watch::WatchReceiver;
use roster_net::{Handler, Network, Peer, SimNetwork};
use roster_pool::pair::{decode_pair, encode_pair, PairRequest, PairResponse};
use roster_pool::protocol::{encode, PoolRequest};
use roster_pool::{Partner, PoolError};
use roster_raft::config::GroupConfigOptions;
use roster_raft::{group_of, GroupKey, GroupRefusal, GroupResponse};
use roster_registrar::Binding;
use roster_topology::{Deployment, NodeId, PoolId};

const A: PoolId = 1;
const B: PoolId = 2;
const GROUPS: u32 = 4;
const A_NODES: [NodeId; 3] = [1, 2, 3];
const B_NODES: [NodeId; 3] = [4, 5, 6];

/// The two pools' deployment, as `roster init` would publish it.
fn deployment() -> Deployment {
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

struct Pair {
    network: SimNetwork,
    a: Cluster,
    b: Cluster,
}

impl Pair {
    async fn start(seed: u64, raft: GroupConfigOptions) -> Pair {
        let network = SimNetwork::new(seed);
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
            };
        let a = Cluster::create(network.clone(), shape(A, A_NODES, B, B_NODES), raft.clone()).await;
        let b = Cluster::create(network.clone(), shape(B, B_NODES, A, A_NODES), raft).await;
        let (first, second) = tokio::join!(a.bootstrap(), b.bootstrap());
        let _ = (first, second);
        Pair { network, a, b }
    }

    fn pool(&self, pool: PoolId) -> &Cluster {
        if pool == A {
            &self.a
        } else {
            &self.b
        }
    }

    async fn stop(&self) {
        for cluster in [&self.a, &self.b] {
            for id in cluster.ids() {
                cluster.stop_node(id).await;
            }
        }
    }
}

/// Registers users `range` of pool `home` through its nodes in turn, each until acknowledged.
async fn write_users(pair: &Pair, home: PoolId, range: std::ops::Range<u32>, cseq: u32) {
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
type Bindings = Vec<(String, Vec<Binding>)>;

/// The applied index and bindings of `group` on the replica of `cluster` that leads it.
fn leader_view(cluster: &Cluster, group: GroupKey) -> Option<(u64, Bindings)> {
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

fn sorted(state: &roster_raft::GroupState) -> Bindings {
    state
        .registry()
        .map(roster_registrar::Registry::sorted_entries)
        .unwrap_or_default()
}

/// `Ok` when every replica of every copy in `copies` stands at its source leader's applied
/// index and holds exactly the source's bindings (and the CMS's copy its deployment and users).
fn converged(pair: &Pair) -> Result<(), String> {
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

async fn wait_converged(pair: &Pair, within: Duration) {
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
async fn ask_as(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_writes_reach_every_copy_in_both_directions() {
    let pair = Pair::start(41, raft_options()).await;
    let (a, b) = tokio::join!(
        write_users(&pair, A, 0..60, 1),
        write_users(&pair, B, 0..60, 1)
    );
    let _ = (a, b);
    wait_converged(&pair, Duration::from_secs(20)).await;
    // Refreshes and re-registrations go the same way.
    write_users(&pair, A, 0..30, 2).await;
    wait_converged(&pair, Duration::from_secs(20)).await;
    status_shows_the_copies_at_their_sources(&pair);
    let streams: Vec<_> = pair
        .a
        .all()
        .iter()
        .flat_map(|node| node.streams())
        .collect();
    assert_eq!(streams.len(), GROUPS as usize + 1, "{streams:?}");
    assert!(
        streams.iter().all(|stream| stream.lag_entries == 0),
        "{streams:?}"
    );
    pair.stop().await;
}

/// Once converged, every node's status document says so: each copy's `stream_position` is its
/// source leader's `applied`, and the copy holds the source's `aors`.
fn status_shows_the_copies_at_their_sources(pair: &Pair) {
    for (source_pool, copy_pool) in [(A, B), (B, A)] {
        for group in 0..GROUPS {
            let source = GroupKey::routing(source_pool, group);
            let copy = source.copy().expect("a routing group has a copy");
            let (applied, bindings) = leader_view(pair.pool(source_pool), source).expect("leader");
            for node in pair.pool(copy_pool).all() {
                let row = status_row(&node.status(), copy, node.node_id());
                assert_eq!(row["stream_position"], applied, "{copy}: {row}");
                assert_eq!(row["aors"], bindings.len(), "{copy}: {row}");
            }
            for node in pair.pool(source_pool).all() {
                let row = status_row(&node.status(), source, node.node_id());
                assert!(row["stream_position"].is_null(), "{source}: {row}");
                assert_eq!(row["aors"], bindings.len(), "{source}: {row}");
            }
        }
    }
}

/// The row of `key` in a node's status document.
fn status_row(status: &serde_json::Value, key: GroupKey, node: u64) -> serde_json::Value {
    status["groups"]
        .as_array()
        .and_then(|groups| {
            groups
                .iter()
                .find(|row| row["key"] == key.to_string().as_str())
        })
        .cloned()
        .unwrap_or_else(|| panic!("{key} in node {node}'s status"))
}

/// Cuts the sites apart while both pools take writes, heals, and waits for the copies; returns
/// the restores the sources of pool a sent.
async fn cut_and_heal(pair: &Pair) -> u64 {
    write_users(pair, A, 0..20, 1).await;
    wait_converged(pair, Duration::from_secs(20)).await;
    pair.network.partition_pools(A, B);
    // Both pools keep serving their own users while cut off.
    write_users(pair, A, 20..200, 1).await;
    write_users(pair, B, 0..40, 1).await;
    assert!(
        converged(pair).is_err(),
        "the copies cannot have these writes yet"
    );
    pair.network.heal_pools(A, B);
    wait_converged(pair, Duration::from_secs(30)).await;
    pair.a
        .all()
        .iter()
        .flat_map(|node| node.streams())
        .map(|stream| stream.restores)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_between_the_sites_heals_by_the_stream() {
    let raft = GroupConfigOptions {
        snapshot_logs_since_last: 100_000,
        ..raft_options()
    };
    let pair = Pair::start(42, raft).await;
    assert_eq!(
        cut_and_heal(&pair).await,
        0,
        "the logs had every entry the copies lacked"
    );
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_between_the_sites_heals_by_restore_when_the_log_is_purged() {
    // Snapshots every 20 entries with nothing kept behind them: after the cut, the sources have
    // purged what the copies lack, and must send their state.
    let raft = GroupConfigOptions {
        snapshot_logs_since_last: 20,
        logs_kept_after_snapshot: 0,
        ..raft_options()
    };
    let pair = Pair::start(45, raft).await;
    let restores = cut_and_heal(&pair).await;
    assert!(
        restores > 0,
        "no restore: the purged logs cannot have been streamed"
    );
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_changes_and_restarts_at_both_ends_keep_the_copies_whole() {
    let pair = Pair::start(43, raft_options()).await;
    write_users(&pair, A, 0..30, 1).await;
    // Stop one node of each pool (each leads some sources or copies), write on, restart.
    pair.a.stop_node(1).await;
    pair.b.stop_node(4).await;
    let (a, b) = tokio::join!(
        write_users(&pair, A, 30..80, 1),
        write_users(&pair, B, 0..50, 1)
    );
    let _ = (a, b);
    pair.a.start_node(1).await;
    pair.b.start_node(4).await;
    write_users(&pair, A, 80..100, 1).await;
    wait_converged(&pair, Duration::from_secs(30)).await;
    // And again with other nodes, the copies' leaders this time.
    pair.b.stop_node(5).await;
    write_users(&pair, A, 100..140, 1).await;
    pair.b.start_node(5).await;
    wait_converged(&pair, Duration::from_secs(30)).await;
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_partner_speaks_the_pair_protocol() {
    let pair = Pair::start(44, raft_options()).await;
    let ping = encode_pair(&PairRequest::Ping).expect("encode");
    // The partner is answered.
    let reply = ask_as(&pair.network, Peer { pool: B, node: 7 }, 1, ping.clone())
        .await
        .expect("the partner is answered");
    assert!(matches!(
        decode_pair::<PairResponse>(&reply),
        Ok(PairResponse::Pong)
    ));
    // A node of a third pool is refused by the network before any handler runs.
    let stranger = ask_as(&pair.network, Peer { pool: 3, node: 8 }, 1, ping).await;
    assert!(stranger.is_err(), "{stranger:?}");
    // The partner may not speak the pool's own protocol.
    let members = encode(&PoolRequest::Members {
        group: GroupKey::routing(A, 0),
    })
    .expect("encode");
    let reply = ask_as(&pair.network, Peer { pool: B, node: 9 }, 1, members)
        .await
        .expect("answered");
    assert!(
        matches!(
            decode_pair::<PairResponse>(&reply),
            Ok(PairResponse::Error(_))
        ),
        "{:?}",
        decode_pair::<PairResponse>(&reply)
    );
    // Nor write into a group that is not a copy it owns.
    let (_, command) = register(1, 1);
    let stream = encode_pair(&PairRequest::Stream {
        copy: GroupKey::routing(A, 0),
        request: roster_raft::GroupRequest::registrar(1, 0, command),
    })
    .expect("encode");
    let reply = ask_as(&pair.network, Peer { pool: B, node: 9 }, 1, stream)
        .await
        .expect("answered");
    assert!(matches!(
        decode_pair::<PairResponse>(&reply),
        Ok(PairResponse::Error(_))
    ));
    pair.stop().await;
}
