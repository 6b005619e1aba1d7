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
