//! Losing a site, in process: pool a's users move to pool b (a planned failover that loses
//! nothing, or a disaster failover while a is cut off but alive) and come back (failback), with
//! the CMS failed over first when its pool is the one lost. No write for a's users is ever
//! acknowledged by both pools in one epoch; failback loses nothing b acknowledged, and discards
//! what a acknowledged while it was cut off after b took over. The CMS fails over to b when a
//! is lost, its old replica on a becomes b's copy when a returns, and `cms failback` brings it
//! home with every directory change b took meanwhile.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::pair::*;
use common::{clock, raft_options, register, Node};
use openraft::async_runtime::watch::WatchReceiver;
use roster_auth::Credentials;
use roster_cms::{
    CmsCommand, CmsOutcome, CmsRefusal, CmsState, Operation, OperationKind, Ownership, UserRecord,
};
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

/// Directory user `n`: homed on pool b from 5 to 9 (added at b while a is lost: a's users'
/// directory entries are read-only while b is their backup registrar), else on pool a.
fn directory_user(n: u32) -> UserRecord {
    UserRecord {
        aor: format!("sip:d{n}@example.com"),
        home: if (5..10).contains(&n) { B } else { A },
        credentials: Credentials::from_password(&format!("d{n}"), "example.com", "pw"),
        bindings_max: None,
        enabled: true,
    }
}

/// Adds directory user `n` through `node`, retrying while the CMS is unavailable (it elects,
/// moves, or `node` has just started).
async fn put_user(node: &Node, n: u32) {
    let put = CmsCommand::PutUsers {
        users: vec![directory_user(n)],
        replace: false,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match node.cms_write(put.clone()).await {
            Ok(CmsOutcome::UsersPut { added: 1, .. }) => return,
            // An earlier attempt whose answer was lost did apply.
            Ok(CmsOutcome::Refused(CmsRefusal::Exists(_))) => return,
            Ok(other) => panic!("user d{n}: {other:?}"),
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "user d{n} through node {}: {error}",
                    node.node_id()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `node`'s replica of the CMS (or of its copy).
fn cms_of(node: &Node) -> Option<CmsState> {
    node.cms_state()?
        .read(|state| state.cms_state().cloned())
        .ok()
        .flatten()
}

/// Waits until `node`'s own CMS replica records `owner` and holds directory users `users`.
async fn await_cms(node: &Node, owner: Ownership, users: std::ops::Range<u32>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let cms = cms_of(node);
        let has = |n: u32| {
            cms.as_ref()
                .is_some_and(|cms| cms.user(&directory_user(n).aor).is_some())
        };
        let missing: Vec<u32> = users.clone().filter(|&n| !has(n)).collect();
        let recorded = cms.as_ref().and_then(CmsState::cms_owner);
        if recorded == Some(owner) && missing.is_empty() && node.cms_owner() == Some(owner) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let streams = node.backup_report().await.streams;
            let cms: Vec<_> = streams
                .iter()
                .filter(|stream| stream.source.contains("cms"))
                .collect();
            panic!(
                "node {}: its CMS replica records {recorded:?} (view {:?}), lacks users \
                 {missing:?}; CMS streams {cms:?}",
                node.node_id(),
                node.cms_owner()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cms_fails_over_and_comes_home_with_nothing_lost() {
    // Production timings (heartbeat 150 ms, elections 450-700 ms): fewer heartbeats, and a
    // leader counts as cut off after 1.4 s without a quorum ack, not 1.2 s. On a machine shared
    // with other builds (load 50 on 2 cores), a's restarted CMS group stayed past 1.2 s while
    // it took its restore, and refused it for over a minute.
    let raft = roster_raft::config::GroupConfigOptions {
        snapshot_logs_since_last: 50,
        logs_kept_after_snapshot: 10,
        ..roster_raft::config::GroupConfigOptions::default()
    };
    let pair = Pair::start(53, raft).await;
    for n in 0..5 {
        put_user(&pair.a.node(1), n).await;
    }
    let home = Ownership { owner: A, epoch: 1 };
    for node in pair.b.all() {
        await_cms(&node, home, 0..5).await;
    }
    // The CMS is home: nothing to fail back.
    let refused = pair.b.node(4).fail_back_cms().await;
    assert!(
        matches!(&refused, Err(OperationError::Refused(why)) if why.contains("home on pool 1 already")),
        "{refused:?}"
    );

    // Pool a's site is lost; b takes the CMS over and the directory changes there (b's own
    // users: a's are read-only while b is their backup registrar).
    for id in A_NODES {
        pair.a.stop_node(id).await;
    }
    let report = pair.b.node(4).fail_over_cms().await.expect("cms failover");
    assert_eq!((report.owner, report.epoch), (B, 2), "{report:?}");
    let at_b = Ownership { owner: B, epoch: 2 };
    for n in 5..10 {
        put_user(&pair.b.node(5), n).await;
    }
    // a does not answer: refused, nothing changed.
    let refused = pair.b.node(6).fail_back_cms().await;
    assert!(
        matches!(&refused, Err(OperationError::Refused(why)) if why.contains("does not answer")),
        "{refused:?}"
    );
    assert_eq!(pair.b.node(6).cms_owner(), Some(at_b));

    // a returns. Its old CMS replica (still recording itself as the owner at epoch 1) takes
    // no change of its own: its nodes learn from b who holds the CMS and send changes there,
    // and the replica becomes a copy of b's CMS (restored, then streamed).
    for id in A_NODES {
        pair.a.start_node(id).await;
    }
    put_user(&pair.a.node(1), 10).await;
    put_user(&pair.b.node(4), 11).await;
    for node in pair.a.all() {
        await_cms(&node, at_b, 0..12).await;
    }
    let cms_copy = GroupKey::cms(A).copy().expect("the CMS has a copy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let stream = loop {
        let report = pair.a.node(2).backup_report().await;
        let stream = report
            .streams
            .into_iter()
            .find(|stream| stream.source == cms_copy.to_string());
        match stream {
            Some(stream) if stream.partner_index.is_some() && stream.lag_entries == 0 => {
                break stream
            }
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no steady CMS stream from b to a: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(stream.copy, "1/cms", "{stream:?}");
    assert!(stream.restores >= 1, "a's replica was restored: {stream:?}");
    println!("cms stream b -> a: {stream:?}");

    // a answers, but the node of b that ships the CMS cannot reach it: a's copy falls behind
    // by the next change, and the failback is refused after its wait, nothing changed.
    let shipper = pair
        .b
        .all()
        .into_iter()
        .find(|node| {
            node.raft(cms_copy).is_some_and(|raft| {
                raft.metrics().borrow_watched().current_leader == Some(node.node_id())
            })
        })
        .expect("a leader of b's CMS");
    pair.network.partition(&[shipper.node_id()], &A_NODES);
    let other = pair
        .b
        .all()
        .into_iter()
        .find(|node| node.node_id() != shipper.node_id())
        .expect("another node of b");
    put_user(&other, 12).await;
    // Until the shipper has failed to reach a, the stream lags one entry: caught up enough for
    // a failback, whose pause would then fail and give the CMS back to b.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while shipper
        .streams()
        .iter()
        .any(|stream| stream.source == cms_copy.to_string() && stream.partner_index.is_some())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = other.fail_back_cms().await;
    assert!(
        matches!(&refused, Err(OperationError::Refused(why)) if why.contains("behind")),
        "{refused:?}"
    );
    assert_eq!(other.cms_owner(), Some(at_b));
    let peek = other.peek(cms_copy).await.expect("b's CMS answers");
    assert_eq!(peek.epoch, 2, "the refused failback fenced nothing");
    pair.network.heal();

    // Not beside a failover or failback of a pool's users, whose steps write to the CMS the
    // failback fences: refused, nothing changed.
    let pool_failover = |started_ms| CmsCommand::BeginOperation {
        pool: B,
        operation: Operation {
            kind: OperationKind::Failover,
            by: A,
            from: Ownership { owner: B, epoch: 1 },
            started_ms,
        },
    };
    let begun = other.cms_write(pool_failover(1)).await;
    assert!(matches!(begun, Ok(CmsOutcome::OperationBegun)), "{begun:?}");
    let refused = other.fail_back_cms().await;
    assert!(
        matches!(&refused, Err(OperationError::Refused(why)) if why.contains("failover of pool 2 is under way")),
        "{refused:?}"
    );
    assert_eq!(other.cms_owner(), Some(at_b));
    let ended = other.cms_write(CmsCommand::EndOperation { pool: B }).await;
    assert!(matches!(ended, Ok(CmsOutcome::OperationEnded)), "{ended:?}");

    // A failback that stops halfway (a loaded machine: a's copy slower than the deadline to
    // apply the fence) says so and leaves b holding the CMS; the operator runs it again.
    let mut attempts = 0;
    let report = loop {
        attempts += 1;
        match pair.b.node(5).fail_back_cms().await {
            Ok(report) => break report,
            Err(OperationError::Failed(why)) if attempts < 3 && why.contains("resumed") => {
                println!("cms failback stopped, run again: {why}");
            }
            Err(error) => panic!("cms failback: {error:?}"),
        }
    };
    // The next epoch (one more for each run that stopped and gave the CMS back to b).
    assert_eq!(
        (report.owner, report.epoch),
        (A, 2 + attempts),
        "{report:?}"
    );
    assert!(report.paused_ms.is_some(), "{report:?}");
    println!("cms failback: {report:?}");
    let back = Ownership {
        owner: A,
        epoch: report.epoch,
    };
    let refused = pair.b.node(4).fail_back_cms().await;
    assert!(
        matches!(&refused, Err(OperationError::Refused(why)) if why.contains("home on pool 1 already")),
        "{refused:?}"
    );
    // Its record ended with it: a pool's failover can begin (and is ended here).
    let begun = pair.b.node(4).cms_write(pool_failover(2)).await;
    assert!(matches!(begun, Ok(CmsOutcome::OperationBegun)), "{begun:?}");
    let ended = pair
        .b
        .node(4)
        .cms_write(CmsCommand::EndOperation { pool: B })
        .await;
    assert!(matches!(ended, Ok(CmsOutcome::OperationEnded)), "{ended:?}");
    // Every node of both pools records a as the CMS's owner at epoch 3 and has every user.
    for node in pair.a.all().into_iter().chain(pair.b.all()) {
        await_cms(&node, back, 0..13).await;
    }
    // Changes go to a again, through either pool, and b's copy follows a's CMS.
    put_user(&pair.b.node(6), 13).await;
    put_user(&pair.a.node(2), 14).await;
    for node in pair.a.all().into_iter().chain(pair.b.all()) {
        await_cms(&node, back, 0..15).await;
    }
    wait_converged(&pair, Duration::from_secs(30)).await;
    pair.stop().await;
}
