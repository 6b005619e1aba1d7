//! Losing a site, in process: pool a's users move to pool b (a planned failover that loses
//! nothing, or a disaster failover while a is cut off but alive) and come back (failback), with
//! the CMS failed over first when its pool is the one lost. No write for a's users is ever
//! acknowledged by both pools in one epoch; failback loses nothing b acknowledged, and discards
//! what a acknowledged while it was cut off after b took over.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::pair::*;
use common::{clock, raft_options, register, Node};
use roster_pool::failover::OperationError;
use roster_pool::PoolError;
use roster_raft::{group_of, GroupKey, GroupRefusal, GroupResponse};
use roster_topology::PoolId;

/// The routing group of user `user` of pool `home`, in its home pool's terms.
fn group_of_user(home: PoolId, user: u32) -> (String, GroupKey) {
    let (aor, _) = register(user, 1);
    let group = GroupKey::routing(home, group_of(&aor, GROUPS));
    (aor, group)
}

/// Registers `user` (homed on `home`) at `cseq` through `node`, retrying while unavailable;
/// returns the epoch it was acknowledged under.
async fn register_via(node: &Node, home: PoolId, user: u32, cseq: u32) -> u64 {
    let (_, command) = register(user, cseq);
    let (_, group) = group_of_user(home, user);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match node.write_home(group, command.clone()).await {
            Ok(GroupResponse::Registered { epoch, .. }) => return epoch,
            Ok(GroupResponse::Refused(GroupRefusal::OutOfOrder { stored, .. }))
                if stored == cseq =>
            {
                // An earlier attempt applied; its epoch is the owner's now.
                return node.epoch_of(home);
            }
            Ok(other) => panic!("user {user}: {other:?}"),
            Err(PoolError::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("user {user}: {error}"),
        }
    }
}

/// Whether `user` (homed on `home`) has a binding, read through `node` (at the owner).
async fn registered(node: &Node, home: PoolId, user: u32) -> bool {
    let (aor, group) = group_of_user(home, user);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match node.read_home(group, &aor, clock()).await {
            Ok(bindings) => return !bindings.is_empty(),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("read {aor}: {error}"),
        }
    }
}

/// Users of `home` numbered in `range` (offset as `write_users` does).
fn users(home: PoolId, range: std::ops::Range<u32>) -> impl Iterator<Item = u32> {
    range.map(move |user| user + u32::from(home) * 100_000)
}

/// Waits until `node` knows that `home`'s users are owned by `owner`.
async fn await_owner(node: &Node, home: PoolId, owner: PoolId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.owner_of(home).owner != owner {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {} never learned that pool {owner} owns pool {home}'s users",
            node.node_id()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_failover_and_failback_lose_nothing() {
    let pair = Pair::start(51, raft_options()).await;
    write_users(&pair, A, 0..40, 1).await;
    // A disaster failover is refused while pool a answers: nothing changes.
    let refused = pair.b.node(4).fail_over(A, true).await;
    assert!(
        matches!(refused, Err(OperationError::Refused(_))),
        "{refused:?}"
    );
    assert_eq!(pair.b.node(4).owner_of(A).owner, A);

    let report = pair.b.node(4).fail_over(A, false).await.expect("failover");
    assert_eq!((report.owner, report.epoch), (B, 2), "{report:?}");
    // A second failover is refused.
    assert!(matches!(
        pair.b.node(5).fail_over(A, false).await,
        Err(OperationError::Refused(_))
    ));
    // Everything a acknowledged is served by b, through any node of either pool.
    for node in [pair.a.node(1), pair.b.node(5)] {
        await_owner(&node, A, B).await;
        for user in users(A, 0..40) {
            assert!(registered(&node, A, user).await, "user {user} lost");
        }
    }
    // a's users register through a's nodes as through b's: b acknowledges, at epoch 2.
    for user in users(A, 40..60) {
        let via = if user % 2 == 0 {
            pair.a.node(2)
        } else {
            pair.b.node(6)
        };
        assert_eq!(register_via(&via, A, user, 1).await, 2);
    }

    let report = pair.b.node(5).fail_back(A).await.expect("failback");
    assert_eq!((report.owner, report.epoch), (A, 3), "{report:?}");
    println!("failback: {report:?}");
    for node in [pair.a.node(3), pair.b.node(4)] {
        await_owner(&node, A, A).await;
        for user in users(A, 0..60) {
            assert!(
                registered(&node, A, user).await,
                "user {user} lost in the failback"
            );
        }
    }
    // a serves its users again, at epoch 3, and b's copies follow it.
    assert_eq!(
        register_via(&pair.a.node(1), A, users(A, 60..61).next().unwrap_or(0), 1).await,
        3
    );
    wait_converged(&pair, Duration::from_secs(30)).await;
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disaster_failover_of_a_live_cut_off_pool_never_shares_an_epoch() {
    let pair = Pair::start(52, raft_options()).await;
    write_users(&pair, A, 0..30, 1).await;
    wait_converged(&pair, Duration::from_secs(20)).await;
    // The sites are cut apart; a is alive and keeps serving its users.
    pair.network.partition_pools(A, B);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The CMS lives on a: b must take it over first.
    let refused = pair.b.node(4).fail_over(A, true).await;
    assert!(
        matches!(&refused, Err(OperationError::Refused(why)) if why.contains("cms failover")),
        "{refused:?}"
    );
    let cms = pair.b.node(4).fail_over_cms().await.expect("cms failover");
    assert_eq!(cms.owner, B, "{cms:?}");
    let report = pair
        .b
        .node(4)
        .fail_over(A, true)
        .await
        .expect("disaster failover");
    assert_eq!((report.owner, report.epoch), (B, 2), "{report:?}");

    // Both pools acknowledge writes for a's users now, never in the same epoch.
    let mut epochs_a = BTreeSet::new();
    let mut epochs_b = BTreeSet::new();
    for n in 100..110 {
        let user = users(A, n..n + 1).next().unwrap_or(0);
        epochs_a.insert(register_via(&pair.a.node(1), A, user, 1).await);
    }
    for n in 200..210 {
        let user = users(A, n..n + 1).next().unwrap_or(0);
        epochs_b.insert(register_via(&pair.b.node(5), A, user, 1).await);
    }
    assert_eq!(
        epochs_a,
        BTreeSet::from([1]),
        "a acknowledged under its old epoch"
    );
    assert_eq!(
        epochs_b,
        BTreeSet::from([2]),
        "b acknowledged under the new epoch"
    );
    assert!(epochs_a.is_disjoint(&epochs_b));
    // Everything a acknowledged before the cut (the copies had caught up) is at b.
    for user in users(A, 0..30) {
        assert!(
            registered(&pair.b.node(6), A, user).await,
            "user {user} lost"
        );
    }

    // a comes back: it learns the new owner from b and sends its users there.
    pair.network.heal_pools(A, B);
    for node in 1..=3 {
        await_owner(&pair.a.node(node), A, B).await;
    }
    let later = users(A, 300..301).next().unwrap_or(0);
    assert_eq!(register_via(&pair.a.node(2), A, later, 1).await, 2);

    let report = pair.b.node(4).fail_back(A).await.expect("failback");
    assert_eq!((report.owner, report.epoch), (A, 3), "{report:?}");
    await_owner(&pair.a.node(1), A, A).await;
    // Every write b acknowledged is at a; what a acknowledged alone while cut off is not.
    for user in users(A, 0..30)
        .chain(users(A, 200..210))
        .chain(users(A, 300..301))
    {
        assert!(
            registered(&pair.a.node(1), A, user).await,
            "user {user} lost in the failback"
        );
    }
    let mut discarded = 0;
    for user in users(A, 100..110) {
        if !registered(&pair.a.node(1), A, user).await {
            discarded += 1;
        }
    }
    assert_eq!(
        discarded, 10,
        "a's split-brain writes are discarded by the failback"
    );
    wait_converged(&pair, Duration::from_secs(30)).await;
    pair.stop().await;
}
