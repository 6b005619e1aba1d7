//! Losing a site with a witness, in process: two paired pools and a witness in a third site over
//! the simulated network. Pool a's site is lost: b serves a's users as backup registrar, then
//! fails a over by itself (the witness agrees a is gone), a returns and fails back, nothing
//! acknowledged lost. Pool a cut off but alive (from b and from the witness): a fences itself
//! before b serves its users, so no write of a's users is acknowledged by both pools at once.
//! Only the link between a and b cut (the witness hears both): no automatic failover.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pair::*;
use common::{clock, raft_options, register, Node};
use roster_pool::PoolError;
use roster_raft::{group_of, GroupKey, GroupRefusal, GroupResponse};
use roster_topology::{NodeId, PoolId};

/// The detection interval of every node: the shortest a witness allows, so the tests wait
/// seconds, not tens of them.
const DETECTION: Duration = roster_pool::witness::WITNESS_DETECTION_INTERVAL_MIN;

/// The routing group of user `user` of pool `home`, in its home pool's terms.
fn group_of_user(home: PoolId, user: u32) -> (String, GroupKey) {
    let (aor, _) = register(user, 1);
    let group = GroupKey::routing(home, group_of(&aor, GROUPS));
    (aor, group)
}

/// The number `write_users` gives user `n` of pool a.
fn user_of(n: u32) -> u32 {
    n + u32::from(A) * 100_000
}

/// One acknowledged write of a's users: which pool acknowledged it (the node it went through
/// tells which pool served it: its owner, or itself as backup registrar), at which epoch,
/// when the successful attempt began and when it was answered.
#[derive(Clone, Copy, Debug)]
struct Ack {
    user: u32,
    cseq: u32,
    /// The pool of the node the write went through.
    via: PoolId,
    pool: PoolId,
    epoch: u64,
    resilient: bool,
    began: Instant,
    answered: Instant,
}

/// Every acknowledged write, in the order answered.
type Acks = Arc<Mutex<Vec<Ack>>>;

/// Registers `user` at `cseq` through `node`; `Some` once acknowledged, `None` when refused
/// (the outcome may be unknown: the caller moves to a higher CSeq).
async fn try_register(node: &Node, user: u32, cseq: u32) -> Option<Ack> {
    let (_, command) = register(user, cseq);
    let (_, group) = group_of_user(A, user);
    let resilient_before = node.in_resiliency_mode(A);
    let owner = node.owner_of(A).owner;
    let began = Instant::now();
    match node.write_home(group, command).await {
        Ok(GroupResponse::Registered { epoch, .. }) => {
            let resilient = resilient_before || node.in_resiliency_mode(A);
            // Acknowledged by the pool of `node` when it owns a's users or serves them as
            // backup registrar; else by the owner it forwarded to.
            let pool = if resilient || owner == node.pool() {
                node.pool()
            } else {
                owner
            };
            Some(Ack {
                user,
                cseq,
                via: node.pool(),
                pool,
                epoch,
                resilient,
                began,
                answered: Instant::now(),
            })
        }
        Ok(GroupResponse::Refused(GroupRefusal::OutOfOrder { .. })) => None,
        Ok(other) => panic!("user {user}: {other:?}"),
        Err(PoolError::Unavailable { .. }) => None,
        Err(error) => panic!("user {user}: {error}"),
    }
}

/// Registers `user` at `cseq` through `node` until acknowledged (bounded).
async fn register_until_acked(node: &Node, user: u32, cseq: u32, within: Duration) -> Ack {
    let deadline = Instant::now() + within;
    loop {
        if let Some(ack) = try_register(node, user, cseq).await {
            return ack;
        }
        assert!(
            Instant::now() < deadline,
            "user {user} at cseq {cseq} not acknowledged through node {} within {within:?}",
            node.node_id()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes users `users` of a through `nodes` (one after another, CSeq rising from `cseq`) until
/// `stop`, recording every acknowledged write in `acks`.
async fn write_until(
    nodes: Vec<Node>,
    users: std::ops::Range<u32>,
    cseq: u32,
    acks: Acks,
    stop: Arc<AtomicBool>,
) {
    let mut cseqs: BTreeMap<u32, u32> = users.clone().map(|user| (user, cseq)).collect();
    // Bounded: a writer stops after this many attempts even if nobody says stop.
    for turn in 0..100_000usize {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let n = users.start + (turn as u32 % (users.end - users.start));
        let user = user_of(n);
        let node = &nodes[turn % nodes.len()];
        let cseq = cseqs.entry(user).or_insert(cseq);
        *cseq += 1;
        if let Some(ack) = try_register(node, user, *cseq).await {
            acks.lock().expect("acks").push(ack);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The CSeqs of `user`'s live bindings, read through `node` (where a's users are served).
async fn cseqs_via(node: &Node, user: u32) -> Vec<u32> {
    let (aor, group) = group_of_user(A, user);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match node.read_home(group, &aor, clock()).await {
            Ok(bindings) => return bindings.iter().map(|binding| binding.cseq).collect(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("read {aor}: {error}"),
        }
    }
}

/// Waits until every node of `nodes` knows `owner` owns a's users; the time it took.
async fn await_owner(nodes: &[Node], owner: PoolId, within: Duration) -> Duration {
    let started = Instant::now();
    for node in nodes {
        while node.owner_of(A).owner != owner {
            assert!(
                started.elapsed() < within,
                "node {} never learned that pool {owner} owns a's users within {within:?}",
                node.node_id()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    started.elapsed()
}

/// Per copy group of a's routing groups in b: the AORs with the CSeq of their one binding, as
/// b's replicas hold them (the replicated registry, not the backup registrar's overlay).
fn copy_registries(pair: &Pair) -> BTreeMap<u32, BTreeMap<String, u32>> {
    let mut copies = BTreeMap::new();
    for group in 0..GROUPS {
        let key = GroupKey::backup(A, group);
        let entries = leader_view(&pair.b, key)
            .map(|(_, entries)| entries)
            .unwrap_or_default();
        let by_aor = entries
            .into_iter()
            .filter_map(|(aor, bindings)| Some((aor, bindings.first()?.cseq)))
            .collect();
        copies.insert(group, by_aor);
    }
    copies
}

/// Stops every node of a (its whole site lost).
async fn lose_site_a(pair: &Pair) {
    let ids: Vec<NodeId> = pair.a.ids();
    for id in ids {
        pair.a.stop_node(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_site_fails_over_by_itself_and_fails_back_with_nothing_lost() {
    let pair = Pair::start_with_witness(71, raft_options(), DETECTION).await;
    write_users(&pair, A, 0..30, 1).await;
    wait_converged(&pair, Duration::from_secs(30)).await;

    // a keeps writing its users up to the moment its site is lost.
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(
        pair.a.all(),
        0..30,
        1,
        acks.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    lose_site_a(&pair).await;
    let lost = Instant::now();
    writer.abort();
    let _ = writer.await;
    let a_acks: Vec<Ack> = acks.lock().expect("acks").clone();
    assert!(
        a_acks.len() > 10,
        "a acknowledged only {} writes",
        a_acks.len()
    );
    assert!(a_acks.iter().all(|ack| ack.pool == A && ack.epoch == 1));

    // b serves a's users as backup registrar after the detection interval.
    let b_nodes = pair.b.all();
    let deadline = Instant::now() + DETECTION + Duration::from_secs(10);
    while !b_nodes[0].in_resiliency_mode(A) && b_nodes[0].owner_of(A).owner == A {
        assert!(Instant::now() < deadline, "b never served a's users");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The copies as they stand when a is lost: a prefix of a's history.
    let copies = copy_registries(&pair);
    let resilient =
        register_until_acked(&b_nodes[1], user_of(40), 1, Duration::from_secs(20)).await;
    println!(
        "b served a's users {:?} after the loss (backup registrar: {}, epoch {})",
        resilient.answered - lost,
        resilient.resilient,
        resilient.epoch
    );

    // Prefix: per group, the writes a acknowledged that b's copy holds are the first ones a
    // acknowledged in that group, and every write acknowledged more than the lag before the
    // loss is there.
    let lag = Duration::from_secs(1);
    let mut late_missing = 0;
    for group in 0..GROUPS {
        let held = &copies[&group];
        let in_group: Vec<&Ack> = a_acks
            .iter()
            .filter(|ack| group_of_user(A, ack.user).1.routing_group() == Some(group))
            .collect();
        let mut missing_seen = false;
        for ack in in_group {
            let (aor, _) = group_of_user(A, ack.user);
            let present = held.get(&aor).is_some_and(|&cseq| cseq >= ack.cseq);
            if present {
                assert!(
                    !missing_seen,
                    "group {group}: b holds a later write of a but not an earlier one"
                );
            } else {
                missing_seen = true;
                assert!(
                    lost - ack.answered < lag,
                    "user {} cseq {} acknowledged {:?} before the loss is not at b",
                    ack.user,
                    ack.cseq,
                    lost - ack.answered
                );
                late_missing += 1;
            }
        }
    }
    println!(
        "{} writes acknowledged by a, {late_missing} of them in the last {lag:?} not at b",
        a_acks.len()
    );

    // b fails a over by itself: the witness has not heard a either.
    let took_over = await_owner(&b_nodes, B, DETECTION + Duration::from_secs(30)).await;
    println!("b owns a's users {:?} after the loss", lost.elapsed());
    let _ = took_over;
    assert_eq!(b_nodes[0].owner_of(A).epoch, 2);
    // A second (manual) failover is refused: it has happened.
    assert!(b_nodes[1].fail_over(A, true).await.is_err());
    let mut b_acks = vec![resilient];
    for n in 0..10 {
        let user = user_of(n);
        let ack = register_until_acked(
            &b_nodes[n as usize % 3],
            user,
            1_000,
            Duration::from_secs(20),
        )
        .await;
        assert_eq!((ack.pool, ack.epoch), (B, 2), "{ack:?}");
        b_acks.push(ack);
    }

    // a's site comes back: its nodes learn b owns their users and send them there.
    for id in A_NODES {
        pair.a.start_node(id).await;
    }
    let a_nodes = pair.a.all();
    await_owner(&a_nodes, B, Duration::from_secs(30)).await;
    let via_a =
        register_until_acked(&a_nodes[0], user_of(11), 1_000, Duration::from_secs(20)).await;
    assert_eq!((via_a.pool, via_a.epoch), (B, 2), "{via_a:?}");
    b_acks.push(via_a);

    let report = pair.b.node(5).fail_back(A).await.expect("failback");
    assert_eq!((report.owner, report.epoch), (A, 3), "{report:?}");
    println!("failback: {report:?}");
    await_owner(&a_nodes, A, Duration::from_secs(20)).await;
    // Nothing b acknowledged is lost.
    for ack in &b_acks {
        let cseqs = cseqs_via(&a_nodes[1], ack.user).await;
        assert!(
            cseqs.iter().any(|&cseq| cseq >= ack.cseq),
            "{ack:?} lost in the failback: {cseqs:?}"
        );
    }
    let back = register_until_acked(&a_nodes[2], user_of(12), 2_000, Duration::from_secs(20)).await;
    assert_eq!((back.pool, back.epoch), (A, 3), "{back:?}");
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_pool_fences_itself_before_its_partner_takes_over() {
    let pair = Pair::start_with_witness(72, raft_options(), DETECTION).await;
    write_users(&pair, A, 0..20, 1).await;
    wait_converged(&pair, Duration::from_secs(30)).await;
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Users 0..10 write through a's nodes, users 10..20 through b's, all the time.
    let through_a = tokio::spawn(write_until(
        pair.a.all(),
        0..10,
        1,
        acks.clone(),
        stop.clone(),
    ));
    let through_b = tokio::spawn(write_until(
        pair.b.all(),
        10..20,
        1,
        acks.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // a is cut from b and from the witness, and stays alive.
    pair.network.partition_pools(A, B);
    pair.network.partition(&A_NODES, &[WITNESS]);
    let cut = Instant::now();
    let b_nodes = pair.b.all();
    let a_nodes = pair.a.all();
    let took_over = await_owner(&b_nodes, B, DETECTION + Duration::from_secs(30)).await;
    println!("b owns a's users {took_over:?} after the cut");
    // a learns nothing (it hears nobody) but has fenced itself.
    for node in &a_nodes {
        assert_eq!(node.owner_of(A).owner, A);
        assert!(node.self_fenced(), "node {} not fenced", node.node_id());
        // Its status document says so: no lease left, the witness unheard since the cut.
        let state = node.witness_lease().expect("a has a witness");
        assert!(
            state.self_fenced && state.lease_left_ms == 0,
            "node {}: {state:?}",
            node.node_id()
        );
        assert!(
            state.heard_ms_ago.is_some_and(|ago| ago >= 1_000),
            "node {}: {state:?}",
            node.node_id()
        );
        assert_eq!(node.status()["witness"]["self_fenced"], true);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // a hears the witness again, not b: the witness relays that b owns a's users.
    pair.network.heal();
    pair.network.partition_pools(A, B);
    await_owner(&a_nodes, B, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Everything heals: a's users are b's, through either pool.
    pair.network.heal();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::join!(through_a, through_b);

    // A write through b's nodes after the cut cannot have reached a: b acknowledged it (its
    // node may have seen the failover happen meanwhile).
    let mut acks = acks.lock().expect("acks").clone();
    for ack in &mut acks {
        if ack.via == B && ack.began >= cut {
            ack.pool = B;
        }
    }
    let by_a: Vec<&Ack> = acks.iter().filter(|ack| ack.pool == A).collect();
    let by_b: Vec<&Ack> = acks.iter().filter(|ack| ack.pool == B).collect();
    let epochs = |acks: &[&Ack]| acks.iter().map(|ack| ack.epoch).collect::<BTreeSet<_>>();
    println!(
        "acknowledged: by a {} (epochs {:?}), by b {} (epochs {:?}, {} as backup registrar)",
        by_a.len(),
        epochs(&by_a),
        by_b.len(),
        epochs(&by_b),
        by_b.iter().filter(|ack| ack.resilient).count()
    );
    // a acknowledged only at epoch 1, b as owner only at epoch 2: no epoch shared by owners.
    assert!(
        by_a.iter().all(|ack| ack.epoch == 1),
        "a acknowledged in b's epoch"
    );
    assert!(by_b
        .iter()
        .filter(|ack| ack.began >= cut && ack.epoch != 1)
        .all(|ack| ack.epoch == 2));
    assert!(
        by_b.iter().any(|ack| ack.epoch == 2),
        "b acknowledged nothing as owner"
    );
    // And never at once: after the cut, a's last acknowledgement came before b's first
    // (backup registrar or owner) began.
    let a_last = by_a
        .iter()
        .map(|ack| ack.answered)
        .max()
        .expect("a acknowledged before the cut");
    let b_first = by_b
        .iter()
        .filter(|ack| ack.began >= cut)
        .map(|ack| ack.began)
        .min()
        .expect("b acknowledged after the cut");
    println!(
        "a's last acknowledgement {:?} after the cut, b's first after the cut began {:?} after it",
        a_last.saturating_duration_since(cut),
        b_first - cut
    );
    assert!(
        a_last < b_first,
        "a acknowledged {:?} after b began serving its users",
        a_last - b_first
    );
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_between_the_pools_is_no_reason_to_fail_over() {
    let pair = Pair::start_with_witness(73, raft_options(), DETECTION).await;
    write_users(&pair, A, 0..10, 1).await;
    wait_converged(&pair, Duration::from_secs(30)).await;
    pair.network.partition_pools(A, B);
    // Several detection intervals: b and the witness disagree about a, so nothing moves.
    tokio::time::sleep(DETECTION * 3).await;
    for node in pair.a.all().iter().chain(&pair.b.all()) {
        let ownership = node.owner_of(A);
        assert_eq!(
            (ownership.owner, ownership.epoch),
            (A, 1),
            "node {}",
            node.node_id()
        );
        assert!(!node.self_fenced(), "node {} fenced", node.node_id());
        // Its status document: the witness heard within two heartbeats, a lease left.
        let state = node.witness_lease().expect("the pools have a witness");
        assert_eq!(state.witness, WITNESS, "node {}", node.node_id());
        assert!(
            !state.self_fenced
                && state.lease_left_ms > 0
                && state.heard_ms_ago.is_some_and(|ago| ago < 2_000),
            "node {}: {state:?}",
            node.node_id()
        );
        let status = node.status();
        assert_eq!(status["witness"]["self_fenced"], false, "{status}");
    }
    let report = pair
        .b
        .node(4)
        .witness_report()
        .expect("b hears the witness");
    let a_heard = report.of(A).expect("the witness watches a");
    assert!(
        a_heard.silent_ms < 2_000 && !a_heard.reported_lost,
        "{report:?}"
    );
    // a serves its users all along.
    let ack = register_until_acked(&pair.a.node(1), user_of(1), 5, Duration::from_secs(10)).await;
    assert_eq!((ack.pool, ack.epoch), (A, 1), "{ack:?}");
    pair.network.heal_pools(A, B);
    wait_converged(&pair, Duration::from_secs(30)).await;
    pair.stop().await;
}
