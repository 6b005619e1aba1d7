//! Two paired pools in one process over the simulated network: every routing group of each
//! pool (and the CMS) streams to its backup copy in the other. The copies equal their sources
//! at the same index after steady writes, after an inter-site cut (caught up by the stream, and
//! by a restore when the source purged its log), across leader changes at both ends and the
//! restart of a node of either pool; a pool that is not the partner is refused.

mod common;

use std::time::Duration;

use roster_net::Peer;
use roster_pool::pair::{decode_pair, encode_pair, PairRequest, PairResponse};
use roster_pool::protocol::{encode, PoolRequest};
use roster_raft::config::GroupConfigOptions;
use roster_raft::{GroupKey, GroupResponse};

use common::pair::*;
use common::{raft_options, register};

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
        Ok(PairResponse::Pong(_))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_leaves_the_partners_copies_to_their_stream() {
    let pair = Pair::start(43, raft_options()).await;
    // Bindings of a's users that expire after a second.
    for user in 0..8 {
        let (aor, mut command) = register(user, 1);
        if let roster_registrar::Command::Register(register) = &mut command {
            if let roster_registrar::ContactChange::Update(updates) = &mut register.change {
                updates[0].expires_s = 1;
            }
        }
        let group = GroupKey::routing(A, roster_raft::group_of(&aor, GROUPS));
        let response = pair.a.node(1).write(group, command).await.expect("write");
        assert!(
            matches!(response, GroupResponse::Registered { .. }),
            "{response:?}"
        );
    }
    wait_converged(&pair, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // b purges what b's users own, and leaves its copies of a's groups alone: they change only
    // by a's stream (a has not purged).
    for node in pair.b.all() {
        node.purge_expired(common::clock()).await.expect("purge");
    }
    assert_eq!(converged(&pair), Ok(()), "a purge at b changed a copy");
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_routed_to_a_pool_that_is_not_the_users_home_is_refused() {
    use roster_auth::Credentials;
    use roster_cms::{CmsCommand, UserRecord};
    use roster_pool::PoolError;

    let pair = Pair::start(43, raft_options()).await;
    // u7 is homed on pool b in the directory.
    let (aor, command) = register(7, 1);
    let user = UserRecord {
        aor: aor.clone(),
        home: B,
        credentials: Credentials::from_password("u7", "example.com", "pw"),
        bindings_max: None,
        enabled: true,
    };
    let put = CmsCommand::PutUsers {
        users: vec![user],
        replace: false,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pair
        .a
        .node(A_NODES[0])
        .cms_write(put.clone())
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CMS took no user"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every node's directory knows it (each reads its own CMS replica or copy).
    for node in pair.a.all().into_iter().chain(pair.b.all()) {
        let knows = || {
            node.cms_state().is_some_and(|cms| {
                cms.read(|state| state.cms_state().and_then(|cms| cms.user(&aor)).is_some())
                    .unwrap_or(false)
            })
        };
        while !knows() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} never learned u7",
                node.node_id()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A node that guessed wrong (its directory unread) sends it to pool a's group: refused
    // at a's nodes and at b's, nothing written; b's own group takes it.
    let wrong = GroupKey::routing(A, roster_raft::group_of(&aor, GROUPS));
    for node in [pair.a.node(A_NODES[0]), pair.b.node(B_NODES[0])] {
        match node.write_home(wrong, command.clone()).await {
            Err(PoolError::Unavailable {
                retry_after_s: 1, ..
            }) => {}
            other => panic!("node {}: {other:?}", node.node_id()),
        }
    }
    let right = GroupKey::routing(B, roster_raft::group_of(&aor, GROUPS));
    let written = write_until_acknowledged(&pair.b.node(B_NODES[0]), right, &command).await;
    assert!(
        matches!(written, GroupResponse::Registered { .. }),
        "{written:?}"
    );
    pair.stop().await;
}

/// Writes `command` to `group` through `node` until it is acknowledged (groups elect first).
async fn write_until_acknowledged(
    node: &common::Node,
    group: GroupKey,
    command: &roster_registrar::Command,
) -> GroupResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match node.write_home(group, command.clone()).await {
            Ok(response) => return response,
            Err(error) => {
                assert!(tokio::time::Instant::now() < deadline, "{error:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
