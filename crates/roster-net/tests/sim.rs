//! The simulated network: faults take effect and go away, lost replies, size limits and
//! determinism for a seed. Tests run under paused Tokio time, so timeouts cost no wall time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster_net::{Handler, NetError, Network, Peer, SimNetwork, MESSAGE_SIZE_MAX};
use roster_topology::{NodeId, PoolId};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_millis(500);

/// The pool of the nodes of most tests.
const POOL: PoolId = 1;

/// Node `node` of [`POOL`].
fn member(node: NodeId) -> Peer {
    Peer { pool: POOL, node }
}

/// Answers its own id and the body, and counts calls.
#[derive(Default)]
struct Echo {
    node_id: NodeId,
    calls: AtomicUsize,
    callers: Mutex<Vec<Peer>>,
}

impl Echo {
    fn new(node_id: NodeId) -> Arc<Echo> {
        Arc::new(Echo {
            node_id,
            ..Echo::default()
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Handler for Echo {
    async fn handle(&self, from: Peer, body: Vec<u8>) -> Vec<u8> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.callers.lock().unwrap().push(from);
        if body == b"huge" {
            return vec![0; MESSAGE_SIZE_MAX + 1];
        }
        [self.node_id.to_be_bytes().as_slice(), &body].concat()
    }
}

fn reply(node_id: NodeId, body: &[u8]) -> Vec<u8> {
    [node_id.to_be_bytes().as_slice(), body].concat()
}

#[tokio::test(start_paused = true)]
async fn round_trip_carries_the_caller_id() {
    let network = SimNetwork::new(1);
    let echo = Echo::new(2);
    let one = network.endpoint(member(1), Echo::new(1));
    network.endpoint(member(2), Arc::clone(&echo));
    assert_eq!(
        one.request(2, b"hi".to_vec(), TIMEOUT).await.unwrap(),
        reply(2, b"hi")
    );
    assert_eq!(*echo.callers.lock().unwrap(), [member(1)]);
    // A node can ask itself.
    assert_eq!(
        one.request(1, b"me".to_vec(), TIMEOUT).await.unwrap(),
        reply(1, b"me")
    );
}

#[tokio::test(start_paused = true)]
async fn partition_blocks_both_directions_then_heal_restores() {
    let network = SimNetwork::new(2);
    let nodes: Vec<_> = (1..=3)
        .map(|id| network.endpoint(member(id), Echo::new(id)))
        .collect();
    let ask = |from: usize, to: NodeId| {
        let endpoint = nodes[from - 1].clone();
        async move { endpoint.request(to, b"x".to_vec(), TIMEOUT).await }
    };

    network.partition(&[1], &[2, 3]);
    let started = Instant::now();
    assert_eq!(ask(1, 2).await, Err(NetError::Timeout { to: 2 }));
    // A lost request is noticed only when the timeout passes, as on a real network.
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(ask(3, 1).await, Err(NetError::Timeout { to: 1 }));
    assert_eq!(ask(2, 3).await.unwrap(), reply(3, b"x"));

    network.heal();
    assert_eq!(ask(1, 2).await.unwrap(), reply(2, b"x"));
    assert_eq!(ask(3, 1).await.unwrap(), reply(1, b"x"));

    network.isolate(3);
    assert_eq!(ask(3, 1).await, Err(NetError::Timeout { to: 1 }));
    assert_eq!(ask(2, 3).await, Err(NetError::Timeout { to: 3 }));
    assert_eq!(ask(1, 2).await.unwrap(), reply(2, b"x"));
    network.heal();
    assert_eq!(ask(2, 3).await.unwrap(), reply(3, b"x"));
}

/// Pools 1 and 2 are partners: their nodes talk both ways and handlers see the caller's pool.
/// Pool 3 says pool 1 is its partner, but pool 1's partner is pool 2: refused both ways, at
/// once, and no handler runs.
#[tokio::test(start_paused = true)]
async fn partners_talk_and_a_pool_that_is_not_the_partner_is_refused() {
    let network = SimNetwork::new(8);
    let (one, three, five) = (
        member(1),
        Peer { pool: 2, node: 3 },
        Peer { pool: 3, node: 5 },
    );
    let (echo_one, echo_three, echo_five) = (Echo::new(1), Echo::new(3), Echo::new(5));
    let a = network.endpoint_with_partner(one, Some(2), Arc::clone(&echo_one));
    let b = network.endpoint_with_partner(three, Some(1), Arc::clone(&echo_three));
    let c = network.endpoint_with_partner(five, Some(1), Arc::clone(&echo_five));
    assert_eq!(
        a.request(3, b"x".to_vec(), TIMEOUT).await.unwrap(),
        reply(3, b"x")
    );
    assert_eq!(
        b.request(1, b"y".to_vec(), TIMEOUT).await.unwrap(),
        reply(1, b"y")
    );
    assert_eq!(*echo_three.callers.lock().unwrap(), [one]);
    assert_eq!(*echo_one.callers.lock().unwrap(), [three]);

    let started = Instant::now();
    let error = a.request(5, b"z".to_vec(), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(error, NetError::Untrusted { to: 5, ref reason }
            if reason.contains("pool 3 node 5") && reason.contains("partner pool 2")),
        "{error:?}"
    );
    let error = c.request(1, b"z".to_vec(), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(error, NetError::Untrusted { to: 1, ref reason }
            if reason.contains("does not trust this node's pool")),
        "{error:?}"
    );
    // Pool 2 has no business with pool 3 either.
    let error = b.request(5, b"z".to_vec(), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(error, NetError::Untrusted { to: 5, .. }),
        "{error:?}"
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a refusal is not a timeout"
    );
    assert_eq!(echo_five.calls(), 0);
    assert_eq!(echo_one.calls(), 1);
    assert_eq!(echo_three.calls(), 1);
    let stats = network.stats();
    assert_eq!(stats.requests_refused, 3);
    assert_eq!(
        stats.requests_sent,
        stats.requests_delivered + stats.requests_lost + stats.requests_refused
    );

    // A node of pool 1 without a partner refuses pool 2 as well; its own pool is fine.
    let lone = network.endpoint(member(2), Echo::new(2));
    let error = lone.request(3, b"?".to_vec(), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(error, NetError::Untrusted { to: 3, .. }),
        "{error:?}"
    );
    assert_eq!(
        lone.request(1, b"?".to_vec(), TIMEOUT).await.unwrap(),
        reply(1, b"?")
    );
}

/// Cutting two pools apart cuts every link between their nodes, even a node connected after
/// the cut, and nothing else; healing the pools restores them and leaves node cuts alone.
#[tokio::test(start_paused = true)]
async fn partition_pools_cuts_the_link_between_two_pools_only() {
    let network = SimNetwork::new(9);
    let pool_a: Vec<_> = (1..=2)
        .map(|id| network.endpoint_with_partner(member(id), Some(2), Echo::new(id)))
        .collect();
    let peer_b = |node| Peer { pool: 2, node };
    let pool_b: Vec<_> = (3..=4)
        .map(|id| network.endpoint_with_partner(peer_b(id), Some(1), Echo::new(id)))
        .collect();
    network.partition_pools(2, 1);
    let late = network.endpoint_with_partner(peer_b(6), Some(1), Echo::new(6));
    for (from, to) in [
        (&pool_a[0], 3),
        (&pool_b[1], 2),
        (&pool_a[1], 6),
        (&late, 1),
    ] {
        let answer = from.request(to, b"x".to_vec(), TIMEOUT).await;
        assert_eq!(
            answer,
            Err(NetError::Timeout { to }),
            "{} to {to}",
            from.node_id()
        );
    }
    for (from, to) in [(&pool_a[0], 2), (&pool_b[0], 4), (&late, 3)] {
        let answer = from.request(to, b"x".to_vec(), TIMEOUT).await;
        assert_eq!(
            answer.unwrap(),
            reply(to, b"x"),
            "{} to {to}",
            from.node_id()
        );
    }
    network.partition(&[1], &[2]);
    network.heal_pools(1, 2);
    assert_eq!(
        pool_a[0].request(3, b"x".to_vec(), TIMEOUT).await.unwrap(),
        reply(3, b"x")
    );
    assert_eq!(
        late.request(2, b"x".to_vec(), TIMEOUT).await.unwrap(),
        reply(2, b"x")
    );
    let answer = pool_a[0].request(2, b"x".to_vec(), TIMEOUT).await;
    assert_eq!(
        answer,
        Err(NetError::Timeout { to: 2 }),
        "the node cut stays"
    );
    // `heal` restores pool cuts too.
    network.partition_pools(1, 2);
    network.heal();
    assert_eq!(
        pool_a[0].request(2, b"x".to_vec(), TIMEOUT).await.unwrap(),
        reply(2, b"x")
    );
    assert_eq!(
        pool_b[1].request(1, b"x".to_vec(), TIMEOUT).await.unwrap(),
        reply(1, b"x")
    );
}

#[tokio::test(start_paused = true)]
async fn drop_probability_loses_about_that_share_of_messages() {
    let network = SimNetwork::new(3);
    let one = network.endpoint(member(1), Echo::new(1));
    let echo = Echo::new(2);
    network.endpoint(member(2), Arc::clone(&echo));
    network.set_drop_probability(0.25);
    let mut answered = 0;
    for index in 0..400u32 {
        if one
            .request(2, index.to_be_bytes().to_vec(), TIMEOUT)
            .await
            .is_ok()
        {
            answered += 1;
        }
    }
    // Both the request and the reply must survive: 0.75 * 0.75 = 0.5625 of 400 is 225.
    assert!((190..=260).contains(&answered), "{answered} answered");
    let stats = network.stats();
    assert_eq!(stats.requests_sent, 400);
    assert_eq!(stats.requests_delivered, echo.calls() as u64);
    assert_eq!(
        stats.requests_sent,
        stats.requests_delivered + stats.requests_lost
    );
    assert_eq!(stats.requests_delivered, answered + stats.replies_lost);

    network.set_drop_probability(1.0);
    assert_eq!(
        one.request(2, b"x".to_vec(), TIMEOUT).await,
        Err(NetError::Timeout { to: 2 })
    );
    network.set_drop_probability(0.0);
    assert!(one.request(2, b"x".to_vec(), TIMEOUT).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_leaves_the_request_executed() {
    let network = SimNetwork::new(4);
    let one = network.endpoint(member(1), Echo::new(1));
    let echo = Echo::new(2);
    network.endpoint(member(2), Arc::clone(&echo));
    network.set_reply_drop_probability(1.0);
    let started = Instant::now();
    assert_eq!(
        one.request(2, b"x".to_vec(), TIMEOUT).await,
        Err(NetError::Timeout { to: 2 })
    );
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(echo.calls(), 1, "the request was executed");
    assert_eq!(network.stats().replies_lost, 1);
}

#[tokio::test(start_paused = true)]
async fn delays_stay_within_bounds_and_past_the_timeout_is_a_timeout() {
    let network = SimNetwork::new(5);
    let one = network.endpoint(member(1), Echo::new(1));
    network.endpoint(member(2), Echo::new(2));
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(20));
    network.set_delay(min, max);
    for _ in 0..20 {
        let started = Instant::now();
        one.request(2, b"x".to_vec(), TIMEOUT).await.unwrap();
        let elapsed = started.elapsed();
        assert!(2 * min <= elapsed && elapsed <= 2 * max, "{elapsed:?}");
    }
    let short = Duration::from_millis(15);
    assert_eq!(
        one.request(2, b"x".to_vec(), short).await,
        Err(NetError::Timeout { to: 2 })
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_that_is_down_is_unreachable_until_it_returns() {
    let network = SimNetwork::new(6);
    let one = network.endpoint(member(1), Echo::new(1));
    network.endpoint(member(2), Echo::new(2));
    network.remove(2);
    let started = Instant::now();
    let error = one.request(2, b"x".to_vec(), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(error, NetError::Unreachable { to: 2, .. }),
        "{error:?}"
    );
    assert_eq!(started.elapsed(), TIMEOUT);
    let restarted = Echo::new(2);
    network.endpoint(member(2), Arc::clone(&restarted));
    assert_eq!(
        one.request(2, b"x".to_vec(), TIMEOUT).await.unwrap(),
        reply(2, b"x")
    );
    assert_eq!(restarted.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn oversize_bodies_are_refused() {
    let network = SimNetwork::new(7);
    let one = network.endpoint(member(1), Echo::new(1));
    let echo = Echo::new(2);
    network.endpoint(member(2), Arc::clone(&echo));
    let error = one
        .request(2, vec![0; MESSAGE_SIZE_MAX + 1], TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, NetError::TooLarge { .. }), "{error:?}");
    assert_eq!(echo.calls(), 0);
    let error = one.request(2, b"huge".to_vec(), TIMEOUT).await.unwrap_err();
    assert!(matches!(error, NetError::Remote(_)), "{error:?}");
}

/// Every node asks every other many times at once with drops and delays; the outcome of each
/// request as a whole is the run's fingerprint.
async fn run(seed: u64) -> Vec<(NodeId, NodeId, u32, bool)> {
    let network = SimNetwork::new(seed);
    let nodes: Vec<_> = (1..=4)
        .map(|id| network.endpoint(member(id), Echo::new(id)))
        .collect();
    network.set_drop_probability(0.2);
    network.set_delay(Duration::from_millis(1), Duration::from_millis(50));
    let mut requests = tokio::task::JoinSet::new();
    for endpoint in &nodes {
        for to in 1..=4 {
            for index in 0..25u32 {
                let endpoint = endpoint.clone();
                requests.spawn(async move {
                    let answered = endpoint
                        .request(to, index.to_be_bytes().to_vec(), TIMEOUT)
                        .await
                        .is_ok();
                    (endpoint.node_id(), to, index, answered)
                });
            }
        }
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = requests.join_next().await {
        outcomes.push(joined.unwrap());
    }
    outcomes.sort_unstable();
    outcomes
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_run() {
    let first = run(42).await;
    assert_eq!(first.len(), 400);
    let lost = first.iter().filter(|outcome| !outcome.3).count();
    assert!(lost > 0 && lost < 400, "{lost} lost");
    assert_eq!(run(42).await, first);
    assert_ne!(run(43).await, first);
}
