//! The backup registrar (resiliency mode), in process: pool a is cut from pool b for longer
//! than the detection interval; b then answers REGISTERs and lookups for a's users from its
//! backup copies (never before the interval), without touching the copies' registries; when
//! the link heals, everything b acknowledged comes home to a, b's overlays empty, and a binding
//! a acknowledged later meanwhile wins.

mod common;

use std::time::{Duration, Instant};

use common::pair::*;
use common::{clock, raft_options, register, Node};
use roster_cms::CmsCommand;
use roster_pool::PoolError;
use roster_raft::{group_of, GroupKey, GroupRefusal, GroupResponse};
use roster_registrar::{Binding, Command, ContactChange};
use roster_topology::PoolId;

/// The detection interval of every node here: short, so the test does not wait 10 s.
const DETECTION: Duration = Duration::from_secs(2);

/// The number `write_users` gives user `n` of pool `home`.
fn user_of(home: PoolId, n: u32) -> u32 {
    n + u32::from(home) * 100_000
}

fn group_of_user(home: PoolId, user: u32) -> (String, GroupKey) {
    let (aor, _) = register(user, 1);
    (aor.clone(), GroupKey::routing(home, group_of(&aor, GROUPS)))
}

/// `user`'s REGISTER at `cseq` removing its one binding (expiry 0).
fn unregister(user: u32, cseq: u32) -> Command {
    let (_, mut command) = register(user, cseq);
    if let Command::Register(register) = &mut command {
        if let ContactChange::Update(updates) = &mut register.change {
            for update in updates {
                update.expires_s = 0;
            }
        }
    }
    command
}

/// Applies `command` for `user` (homed on a) through `node`'s `write_home`, retrying while
/// unavailable (an election), until acknowledged.
async fn write_via(node: &Node, user: u32, command: &Command, cseq: u32) -> GroupResponse {
    let (_, group) = group_of_user(A, user);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match node.write_home(group, command.clone()).await {
            Ok(response @ GroupResponse::Registered { .. }) => return response,
            Ok(GroupResponse::Refused(GroupRefusal::OutOfOrder { stored, .. }))
                if stored == cseq =>
            {
                // An earlier attempt whose answer was lost applied.
                return GroupResponse::Refused(GroupRefusal::OutOfOrder { stored, cseq });
            }
            Ok(other) => panic!("user {user}: {other:?}"),
            Err(PoolError::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("user {user}: {error}"),
        }
    }
}

/// `user`'s live bindings read through `node`'s `read_home`.
async fn bindings_via(node: &Node, user: u32) -> Vec<Binding> {
    let (aor, group) = group_of_user(A, user);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match node.read_home(group, &aor, clock()).await {
            Ok(bindings) => return bindings,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("read {aor}: {error}"),
        }
    }
}

/// The CSeqs of `user`'s live bindings, read through `node`.
async fn cseqs_via(node: &Node, user: u32) -> Vec<u32> {
    bindings_via(node, user)
        .await
        .iter()
        .map(|binding| binding.cseq)
        .collect()
}

/// AORs waiting in the overlays of b's copies, over every replica.
fn overlay_aors(pair: &Pair) -> usize {
    let mut total = 0;
    for node in pair.b.all() {
        for group in 0..GROUPS {
            if let Some(state) = node.state(GroupKey::backup(A, group)) {
                total += state.read(|state| state.overlay().len()).unwrap_or(0);
            }
        }
    }
    total
}

/// Whether any replica of b's copies holds `user` in its registry (the replicated part).
fn in_copy_registry(pair: &Pair, user: u32) -> bool {
    let (aor, group) = group_of_user(A, user);
    let copy = group.copy().expect("a routing group has a copy");
    pair.b.all().iter().any(|node| {
        node.state(copy).is_some_and(|state| {
            state
                .read(|state| {
                    state
                        .registry()
                        .is_some_and(|registry| !registry.stored_bindings(&aor).is_empty())
                })
                .unwrap_or(false)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_serves_as_backup_registrar_and_everything_comes_home() {
    let pair = Pair::start_with_detection(61, raft_options(), DETECTION).await;
    write_users(&pair, A, 0..20, 1).await;
    wait_converged(&pair, Duration::from_secs(30)).await;
    let b4 = pair.b.node(4);
    assert!(!b4.in_resiliency_mode(A));

    pair.network.partition_pools(A, B);
    let cut = Instant::now();
    // Before the detection interval b does not serve a's users: the write goes to a, and
    // fails there.
    for node in pair.b.all() {
        assert!(!node.in_resiliency_mode(A), "resiliency mode at once");
    }
    let early = b4
        .write_home(
            group_of_user(A, user_of(A, 0)).1,
            register(user_of(A, 0), 9).1,
        )
        .await;
    assert!(
        matches!(early, Err(PoolError::Unavailable { .. })),
        "{early:?}"
    );
    // Every node of b enters resiliency mode after the interval, not before.
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in pair.b.all() {
        while !node.in_resiliency_mode(A) {
            assert!(Instant::now() < deadline, "b never entered resiliency mode");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The silence counts from the last answered ping, at most one ping interval (1 s) before
    // the cut.
    let entered = cut.elapsed();
    assert!(
        entered >= DETECTION - Duration::from_secs(1),
        "resiliency mode after {entered:?}, before the detection interval"
    );
    println!("b in resiliency mode {entered:?} after the cut");
    // a still owns its users: no failover happened.
    assert_eq!(b4.owner_of(A).owner, A);

    // Directory changes for a's users are refused, naming resiliency mode.
    let change = CmsCommand::SetEnabled {
        aor: group_of_user(A, user_of(A, 1)).0,
        enabled: false,
    };
    match pair.b.node(5).cms_write(change).await {
        Err(PoolError::Unavailable { reason, .. }) => {
            assert!(reason.contains("resiliency mode"), "{reason}")
        }
        other => panic!("a directory change in resiliency mode: {other:?}"),
    }

    // b acknowledges a's users: refreshes of known users (cseq 2), new users, a removal, and
    // an older write of a user a refreshes meanwhile.
    let b_nodes = pair.b.all();
    for n in 0..10 {
        let user = user_of(A, n);
        let via = &b_nodes[n as usize % b_nodes.len()];
        let response = write_via(via, user, &register(user, 2).1, 2).await;
        if let GroupResponse::Registered { epoch, .. } = response {
            assert_eq!(epoch, 1, "resiliency writes carry a's epoch");
        }
    }
    for n in 20..30 {
        let user = user_of(A, n);
        let via = &b_nodes[n as usize % b_nodes.len()];
        write_via(via, user, &register(user, 1).1, 1).await;
    }
    let removed = user_of(A, 7);
    write_via(&b_nodes[0], removed, &unregister(removed, 3), 3).await;
    // a, alive and cut off, refreshes user 5 later than b did (a higher CSeq, same Call-ID).
    let newer = user_of(A, 5);
    write_via(&pair.a.node(1), newer, &register(newer, 10).1, 10).await;

    // Lookups at b see what b acknowledged.
    for n in (0..10).filter(|&n| n != 7) {
        assert_eq!(
            cseqs_via(&b_nodes[1], user_of(A, n)).await,
            [2],
            "user {n} at b"
        );
    }
    for n in 20..30 {
        assert_eq!(
            cseqs_via(&b_nodes[2], user_of(A, n)).await,
            [1],
            "user {n} at b"
        );
    }
    assert!(cseqs_via(&b_nodes[0], removed).await.is_empty());
    // ... from the overlays, never the copies' registries (they stay a's history).
    for n in 20..30 {
        assert!(
            !in_copy_registry(&pair, user_of(A, n)),
            "user {n} in a copy's registry"
        );
    }
    assert!(overlay_aors(&pair) > 0);

    // The link heals: a answers, b routes a's users to a and brings its overlays home.
    pair.network.heal_pools(A, B);
    let healed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while overlay_aors(&pair) > 0 {
        assert!(
            Instant::now() < deadline,
            "b's overlays still hold {} AORs 30 s after the heal",
            overlay_aors(&pair)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("overlays home {:?} after the heal", healed.elapsed());
    assert!(!b4.in_resiliency_mode(A));

    // a has every binding b acknowledged, and a's newer one for user 5.
    let a1 = pair.a.node(1);
    for n in (0..10).filter(|&n| n != 5 && n != 7) {
        assert_eq!(cseqs_via(&a1, user_of(A, n)).await, [2], "user {n} at a");
    }
    assert_eq!(cseqs_via(&a1, newer).await, [10], "a's newer write lost");
    assert!(cseqs_via(&a1, removed).await.is_empty(), "b's removal lost");
    for n in 20..30 {
        assert_eq!(cseqs_via(&a1, user_of(A, n)).await, [1], "user {n} lost");
    }
    for n in 10..20 {
        assert_eq!(cseqs_via(&a1, user_of(A, n)).await, [1], "user {n} changed");
    }
    // b reads through a again, and its copies follow a's history, merges included.
    assert_eq!(cseqs_via(&b_nodes[1], user_of(A, 25)).await, [1]);
    wait_converged(&pair, Duration::from_secs(30)).await;
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_folds_the_overlay_and_the_failback_brings_it_home() {
    let pair = Pair::start_with_detection(62, raft_options(), DETECTION).await;
    write_users(&pair, A, 0..10, 1).await;
    wait_converged(&pair, Duration::from_secs(30)).await;
    pair.network.partition_pools(A, B);
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in pair.b.all() {
        while !node.in_resiliency_mode(A) {
            assert!(Instant::now() < deadline, "b never entered resiliency mode");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let b_nodes = pair.b.all();
    for n in 20..26 {
        let user = user_of(A, n);
        write_via(&b_nodes[n as usize % 3], user, &register(user, 1).1, 1).await;
    }
    assert!(overlay_aors(&pair) > 0);

    // The operator declares a lost: b takes the CMS, then a's users.
    pair.b.node(4).fail_over_cms().await.expect("cms failover");
    let report = pair.b.node(4).fail_over(A, true).await.expect("failover");
    assert_eq!((report.owner, report.epoch), (B, 2), "{report:?}");
    // b's copies are a's groups now: the overlays fold into their registries.
    let deadline = Instant::now() + Duration::from_secs(30);
    while overlay_aors(&pair) > 0 {
        assert!(Instant::now() < deadline, "the overlays were not folded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 20..26 {
        let user = user_of(A, n);
        assert!(in_copy_registry(&pair, user), "user {n} not folded");
        assert_eq!(cseqs_via(&b_nodes[0], user).await, [1], "user {n} at b");
    }

    // a returns; the failback ships b's groups, folds included, to a.
    pair.network.heal_pools(A, B);
    let report = pair.b.node(5).fail_back(A).await.expect("failback");
    assert_eq!((report.owner, report.epoch), (A, 3), "{report:?}");
    let a1 = pair.a.node(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while a1.owner_of(A).owner != A {
        assert!(
            Instant::now() < deadline,
            "a never learned it owns its users again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in (0..10).chain(20..26) {
        assert_eq!(cseqs_via(&a1, user_of(A, n)).await, [1], "user {n} lost");
    }
    wait_converged(&pair, Duration::from_secs(30)).await;
    pair.stop().await;
}
